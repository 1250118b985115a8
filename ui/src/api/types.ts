// JSON shapes of the aggregator's REST API (docs/api.md is the contract).

import type {
  Diff,
  DiffFunction as GeneratedDiffFunction,
  DiffNodes as GeneratedDiffNodes,
  EventType as GeneratedEventType,
  FlameNodes,
  Flamegraph,
  FrameName,
  LockSummary,
  Locks,
  ProfileTypes as GeneratedProfileTypes,
  Series,
  SyscallSummary,
  Syscalls,
  Timeline,
  Top,
  TopFunction as GeneratedTopFunction,
} from "./schema";

// The analysis answers: generated from the aggregator's models (schema.ts), named as the
// dashboard has always named them.
export type EventType = GeneratedEventType;
export type FlatNodes = FlameNodes;
export type FlamegraphResponse = Flamegraph;
export type TopFunction = GeneratedTopFunction;
export type TopResponse = Top;
export type DiffNodes = GeneratedDiffNodes;
export type DiffFunction = GeneratedDiffFunction;
export type DiffResponse = Diff;
export type TimelineSeries = Series;
export type TimelineResponse = Timeline;
export type SyscallRow = SyscallSummary;
export type SyscallsResponse = Syscalls;
export type StackFrame = FrameName;
export type LockRow = LockSummary;
export type LocksResponse = Locks;
export type ProfileTypes = GeneratedProfileTypes;

export interface Agent {
  agent_id: string;
  host: string;
  labels: Record<string, string>;
  version?: string;
  first_seen_ns?: number;
  last_push_ns: number;
  seconds_since_last_push: number;
  pushes: number;
  pushes_per_minute: number;
  duplicates?: number;
  bytes?: number;
  last_sequence?: number;
}

export interface Health {
  status: string;
  version?: string;
  uptime_s?: number;
  agents?: number;
  buffer?: {
    bytes: number;
    max_bytes: number;
    batches: number;
    utilization: number;
    evictions: number;
  };
  journal_bytes?: number | null;
  [key: string]: unknown;
}

// -- alerts (docs/alerting.md) --------------------------------------------------

export type AlertState = "inactive" | "pending" | "firing" | "resolved";
export type Severity = "info" | "warning" | "critical";
export type Operator = ">" | ">=" | "<" | "<=" | "==";

export interface AlertMetric {
  metric: string;
  required: string[];
  optional: string[];
  /** percent, pp, ratio, ns, seconds, per_second, seconds_per_second, rows, count */
  unit: string;
  description: string;
}

export interface RuleStatus {
  rule_id: string;
  state: AlertState;
  since: number;
  value: number | null;
  last_evaluated: number | null;
  last_notified: number | null;
  error: string | null;
}

/** A rule as the API stores it (what POST/PUT take, plus id and status). */
export interface AlertRuleBody {
  name: string;
  expression: { metric: string; params: Record<string, string | number> };
  operator: Operator;
  threshold: number;
  for: number | string;
  severity: Severity;
  labels: Record<string, string>;
  enabled: boolean;
  renotify_interval: number | string | null;
  webhook: string | null;
}

export interface AlertRule extends AlertRuleBody {
  id: string;
  for: number;
  renotify_interval: number | null;
  status: RuleStatus;
}

export interface AlertHistoryEntry {
  ts: number;
  rule_id: string;
  rule_name: string;
  kind: "state" | "notification";
  value: number | null;
  state?: AlertState;
  status?: "firing" | "resolved";
  target?: string;
  attempt?: number;
  ok?: boolean;
  error?: string | null;
}

export interface EvaluateResult {
  rule_id: string;
  name: string;
  value: number | null;
  matches: boolean;
  state: AlertState;
  error: string | null;
}

// -- how user stacks were unwound (GET /api/v1/unwind) ----------------------------

export interface UnwindSamples {
  /** user stacks made by the table walker */
  table_walks: number;
  /** of those, reached the stack's bottom (_start or thread start) */
  complete: number;
  /** of those, stopped early (see ends) */
  truncated: number;
  /** samples of processes not registered yet: kernel frame-pointer walk */
  fp_only: number;
  /** table walks that used a frame pointer for at least one frame */
  fp_frames: number;
}

export interface UnwindResponse {
  /** CPU batches (agent windows) the filters select */
  batches: number;
  /** of those, from agents that report unwinding; the sections below are null when 0 */
  batches_with_unwind_data: number;
  /** batches per --unwind mode (auto, dwarf, fp) */
  modes: Record<string, number>;
  samples: UnwindSamples | null;
  /** table walks by how they ended: bottom, depth, no_mapping, no_table, no_info, unsupported, read_fault, bad_frame */
  ends: Record<string, number> | null;
  /** gauges: the largest value one agent reported at a window's end */
  tables: { bytes_max: number; loaded_max: number } | null;
  losses: {
    unwound_stack_collisions: number;
    unwound_stacks_full: number;
    unwind_tables_evicted: number;
    unwind_tables_too_large: number;
  } | null;
}
