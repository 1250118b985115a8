// JSON shapes of the aggregator's REST API (docs/api.md is the contract).

export type EventType = "cpu" | "lock" | "syscall";

export interface FlatNodes {
  name: number[];
  module: number[];
  kind: number[];
  depth: number[];
  self: number[];
  total: number[];
}

export interface FlamegraphResponse {
  type: EventType;
  unit: string;
  from_ns: number;
  to_ns: number;
  total: number;
  names: string[];
  nodes: FlatNodes;
}

export interface TopFunction {
  name: string;
  module: string;
  self: number;
  self_pct: number;
  total: number;
  total_pct: number;
}

export interface TopResponse {
  type: EventType;
  unit: string;
  total: number;
  functions: TopFunction[];
}

export interface DiffNodes {
  name: number[];
  module: number[];
  kind: number[];
  depth: number[];
  baseline: number[];
  comparison: number[];
  baseline_self: number[];
  comparison_self: number[];
}

export interface DiffFunction {
  name: string;
  module: string;
  baseline_self: number;
  comparison_self: number;
  baseline_pct: number;
  comparison_pct: number;
  delta_pct: number;
}

export interface DiffResponse {
  type: EventType;
  unit: string;
  baseline_total: number;
  comparison_total: number;
  names: string[];
  nodes: DiffNodes;
  functions: DiffFunction[];
}

export interface TimelineSeries {
  key: string;
  points: [number, number][];
}

export interface TimelineResponse {
  type: EventType;
  unit: string;
  step_s: number;
  series: TimelineSeries[];
}

export interface SyscallRow {
  name: string;
  nr: number;
  pid: number | null;
  comm: string | null;
  count: number;
  rate: number;
  errors: number;
  error_rate: number;
  top_errno: [string, number][];
  total_ns: number;
  avg_ns: number;
  p50_ns: number;
  p90_ns: number;
  p99_ns: number;
  max_ns: number;
  hist: number[];
}

export interface SyscallsResponse {
  duration_s: number;
  syscalls: SyscallRow[];
}

export interface StackFrame {
  name: string;
  module: string;
}

export interface LockRow {
  address: string;
  pid: number;
  comm: string;
  contentions: number;
  wait_ns: number;
  avg_ns: number;
  max_ns: number;
  p99_ns: number;
  eagain: number;
  timeouts: number;
  top_stack: StackFrame[];
}

export interface LocksResponse {
  locks: LockRow[];
}

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
