// Time expressions as the API takes them (docs/api.md): RFC 3339, unix ns, or
// relative (-15m, -1h, -7d, now). The URL keeps the user's expression; the
// dashboard resolves it to milliseconds only to draw axes and shift ranges.

const UNIT_MS: Record<string, number> = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 7 * 86400e3 };
const RELATIVE = /^-(\d+(?:\.\d+)?)(s|m|h|d|w)$/;

export interface Preset {
  label: string;
  from: string;
}

export const PRESETS: Preset[] = [
  { label: "5m", from: "-5m" },
  { label: "15m", from: "-15m" },
  { label: "1h", from: "-1h" },
  { label: "6h", from: "-6h" },
  { label: "24h", from: "-24h" },
  { label: "7d", from: "-7d" },
];

export function isRelative(expr: string): boolean {
  return expr === "now" || RELATIVE.test(expr);
}

/** Milliseconds since the epoch, or NaN for an expression the API would refuse. */
export function resolveMs(expr: string, nowMs: number): number {
  const e = expr.trim();
  if (e === "now") return nowMs;
  const rel = RELATIVE.exec(e);
  if (rel) return nowMs - Number(rel[1]) * UNIT_MS[rel[2]];
  if (/^\d{10,20}$/.test(e)) return Number(BigInt(e) / 1000000n);
  if (/^\d{4}-\d{2}-\d{2}T/.test(e)) return Date.parse(e);
  return Number.NaN;
}

/** Exact unix-ns string of a millisecond time (no float rounding in the URL). */
export function msToNs(ms: number): string {
  return (BigInt(Math.round(ms)) * 1000000n).toString();
}

/** "-90m" -> "-1h30m"-free canonical form: the largest unit that divides evenly. */
export function relativeFromMs(ms: number): string {
  if (ms <= 0) return "now";
  for (const unit of ["d", "h", "m", "s"]) {
    const n = ms / UNIT_MS[unit];
    if (Number.isInteger(n)) return `-${n}${unit}`;
  }
  return `-${Math.round(ms / 1e3)}s`;
}

/**
 * The range just before [from, to] with the same length: the diff's default
 * baseline. Relative ranges stay relative so a live view keeps moving.
 */
export function previousRange(from: string, to: string, nowMs: number): [string, string] {
  const f = resolveMs(from, nowMs);
  const t = resolveMs(to, nowMs);
  if (Number.isNaN(f) || Number.isNaN(t) || t <= f) return [from, to];
  const len = t - f;
  if (isRelative(from) && isRelative(to)) {
    return [relativeFromMs(nowMs - f + len), relativeFromMs(nowMs - f)];
  }
  return [msToNs(f - len), msToNs(f)];
}

/** A short human description of a range, for titles and empty states. */
export function describeRange(from: string, to: string, nowMs: number): string {
  if (to === "now" && RELATIVE.test(from)) return `last ${from.slice(1)}`;
  const f = resolveMs(from, nowMs);
  const t = resolveMs(to, nowMs);
  if (Number.isNaN(f) || Number.isNaN(t)) return `${from} → ${to}`;
  return `${formatTime(f)} → ${formatTime(t)}`;
}

export function formatTime(ms: number): string {
  const d = new Date(ms);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** Value for an <input type="datetime-local"> (local time, to the second). */
export function toLocalInput(ms: number): string {
  return formatTime(ms).replace(" ", "T");
}

export function fromLocalInput(value: string): number {
  return new Date(value).getTime();
}
