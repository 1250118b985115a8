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
  Unwind,
  UnwindSamples as GeneratedUnwindSamples,
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

// -- how user stacks were unwound (GET /api/v1/unwind): generated (schema.ts) ----------

export type UnwindSamples = GeneratedUnwindSamples;
export type UnwindResponse = Unwind;
