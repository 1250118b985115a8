// Every piece of view state lives in the URL, so a link reproduces what you see.

import type { DiffScheme } from "../flame/colors";
import { EventTypeValues, type EventType } from "../api/schema";

export const VIEWS = ["overview", "flamegraph", "diff", "timeline", "syscalls", "locks", "alerts"] as const;
export type View = (typeof VIEWS)[number];

export const VIEW_TITLES: Record<View, string> = {
  overview: "Overview",
  flamegraph: "Flamegraph",
  diff: "Diff",
  timeline: "Timeline",
  syscalls: "Syscalls",
  locks: "Locks",
  alerts: "Alerts",
};

/** A profile type the aggregator's registry names (which have stacks, /api/v1/profile-types says). */
export const PROFILE_TYPES = EventTypeValues;
export type ProfileType = EventType;
export function isProfileType(t: string): t is ProfileType {
  return (PROFILE_TYPES as readonly string[]).includes(t);
}
export type GroupBy = "host" | "comm" | "pid";
/** What a lock wait was: contention for a held lock, idle waiting for work or a signal, or not known. */
export const LOCK_CLASSES = ["contention", "idle", "unknown"] as const;
export type LockClass = (typeof LOCK_CLASSES)[number];

export interface UrlState {
  view: View;
  // filters (every view)
  from: string;
  to: string;
  host: string;
  comm: string;
  pid: string;
  labels: Record<string, string>;
  live: boolean;
  // flamegraph
  type: ProfileType;
  focus: string[];
  search: string;
  invert: boolean;
  wall: boolean; // one process's on- and off-CPU time as one tree (needs pid)
  fn: string;
  fnModule: string;
  sandwich: boolean;
  topSort: "self" | "total";
  maxNodes: number;
  // diff
  bfrom: string;
  bto: string;
  palette: DiffScheme;
  // timeline
  group: GroupBy;
  // syscalls
  sort: string;
  asc: boolean;
  perProcess: boolean;
  // locks
  lock: string;
  lockPid: string;
  lockClass: LockClass;
  // alerts: the selected rule's id
  alert: string;
}

export const DEFAULTS: UrlState = {
  view: "overview",
  from: "-1h",
  to: "now",
  host: "",
  comm: "",
  pid: "",
  labels: {},
  live: false,
  type: "cpu",
  focus: [],
  search: "",
  invert: false,
  wall: false,
  fn: "",
  fnModule: "",
  sandwich: false,
  topSort: "self",
  maxNodes: 20000,
  bfrom: "",
  bto: "",
  palette: "redgreen",
  group: "host",
  sort: "total_ns",
  asc: false,
  perProcess: false,
  lock: "",
  lockPid: "",
  lockClass: "contention",
  alert: "",
};

// URL parameter name of each field (the path carries the view)
const PARAMS: Partial<Record<keyof UrlState, string>> = {
  from: "from",
  to: "to",
  host: "host",
  comm: "comm",
  pid: "pid",
  live: "live",
  type: "type",
  search: "search",
  invert: "invert",
  wall: "wall",
  fn: "fn",
  fnModule: "fn_module",
  sandwich: "sandwich",
  topSort: "top_sort",
  maxNodes: "max_nodes",
  bfrom: "baseline_from",
  bto: "baseline_to",
  palette: "palette",
  group: "group_by",
  sort: "sort",
  asc: "asc",
  perProcess: "per_process",
  lock: "lock",
  lockPid: "lock_pid",
  lockClass: "lock_class",
  alert: "alert",
};

// the focused frame is a path of names; ";" as in folded stacks
const FOCUS = "focus";
const LABEL = "label.";

function oneOf<T extends string>(value: string | null, allowed: readonly T[], fallback: T): T {
  return value !== null && (allowed as readonly string[]).includes(value) ? (value as T) : fallback;
}

export function parseUrl(pathname: string, search: string): UrlState {
  const q = new URLSearchParams(search);
  const seg = pathname.replace(/^\/+|\/+$/g, "").split("/")[0] || "overview";
  const s: UrlState = { ...DEFAULTS, labels: {}, focus: [] };
  s.view = oneOf(seg, VIEWS, "overview");
  const str = (k: keyof UrlState): string | null => q.get(PARAMS[k]!);
  s.from = str("from") || DEFAULTS.from;
  s.to = str("to") || DEFAULTS.to;
  s.host = str("host") ?? "";
  s.comm = str("comm") ?? "";
  s.pid = str("pid") ?? "";
  s.live = str("live") === "1";
  s.type = oneOf(str("type"), PROFILE_TYPES, "cpu");
  s.search = str("search") ?? "";
  s.invert = str("invert") === "1";
  s.wall = str("wall") === "1";
  s.fn = str("fn") ?? "";
  s.fnModule = str("fnModule") ?? "";
  s.sandwich = str("sandwich") === "1" && s.fn !== "";
  s.topSort = oneOf(str("topSort"), ["self", "total"] as const, "self");
  const max = Number(str("maxNodes"));
  s.maxNodes = Number.isInteger(max) && max > 0 ? Math.min(max, 1_000_000) : DEFAULTS.maxNodes;
  s.bfrom = str("bfrom") ?? "";
  s.bto = str("bto") ?? "";
  s.palette = oneOf(str("palette"), ["redgreen", "colorblind"] as const, "redgreen");
  s.group = oneOf(str("group"), ["host", "comm", "pid"] as const, "host");
  s.sort = str("sort") || DEFAULTS.sort;
  s.asc = str("asc") === "1";
  s.perProcess = str("perProcess") === "1";
  s.lock = str("lock") ?? "";
  s.lockPid = str("lockPid") ?? "";
  s.lockClass = oneOf(str("lockClass"), LOCK_CLASSES, "contention");
  s.alert = str("alert") ?? "";
  const focus = q.get(FOCUS);
  s.focus = focus ? focus.split(";") : [];
  for (const [k, v] of q) {
    if (k.startsWith(LABEL) && k.length > LABEL.length) s.labels[k.slice(LABEL.length)] = v;
  }
  return s;
}

export function formatUrl(s: UrlState): string {
  const q = new URLSearchParams();
  for (const [field, param] of Object.entries(PARAMS) as [keyof UrlState, string][]) {
    const v = s[field];
    if (v === DEFAULTS[field]) continue;
    if (typeof v === "boolean") {
      if (v) q.set(param, "1");
    } else if (typeof v === "string" || typeof v === "number") {
      if (v !== "") q.set(param, String(v));
    }
  }
  if (s.focus.length > 0) q.set(FOCUS, s.focus.join(";"));
  for (const [k, v] of Object.entries(s.labels).sort()) q.set(LABEL + k, v);
  const path = s.view === "overview" ? "/" : `/${s.view}`;
  const query = q.toString();
  return query ? `${path}?${query}` : path;
}

/** The common filter parameters every data endpoint takes (docs/api.md). */
export function filterParams(s: UrlState): Record<string, string> {
  const p: Record<string, string> = { from: s.from, to: s.to };
  if (s.host) p.host = s.host;
  if (s.comm) p.comm = s.comm;
  if (s.pid) p.pid = s.pid;
  for (const [k, v] of Object.entries(s.labels)) p[LABEL + k] = v;
  return p;
}

/** "a=b, c=d" <-> {a: "b", c: "d"} for the labels box. */
export function parseLabels(text: string): Record<string, string> | null {
  const out: Record<string, string> = {};
  for (const part of text.split(",")) {
    const p = part.trim();
    if (!p) continue;
    const eq = p.indexOf("=");
    if (eq <= 0) return null;
    out[p.slice(0, eq).trim()] = p.slice(eq + 1).trim();
  }
  return out;
}

export function formatLabels(labels: Record<string, string>): string {
  return Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(", ");
}
