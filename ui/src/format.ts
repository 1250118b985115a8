// Numbers as people read them: 1.2k, 3.4 ms, 12.3%.

export function count(n: number): string {
  if (!Number.isFinite(n)) return "–";
  const a = Math.abs(n);
  if (a >= 1e9) return `${(n / 1e9).toFixed(a >= 1e10 ? 0 : 1)}G`;
  if (a >= 1e6) return `${(n / 1e6).toFixed(a >= 1e7 ? 0 : 1)}M`;
  if (a >= 1e4) return `${(n / 1e3).toFixed(a >= 1e5 ? 0 : 1)}k`;
  return Number.isInteger(n) ? n.toLocaleString("en-US") : n.toFixed(a >= 100 ? 0 : a >= 1 ? 1 : 2);
}

export function exact(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

export function duration(ns: number): string {
  if (!Number.isFinite(ns)) return "–";
  const a = Math.abs(ns);
  if (a < 1e3) return `${Math.round(ns)} ns`;
  if (a < 1e6) return `${(ns / 1e3).toFixed(a < 1e4 ? 1 : 0)} µs`;
  if (a < 1e9) return `${(ns / 1e6).toFixed(a < 1e7 ? 1 : 0)} ms`;
  if (a < 60e9) return `${(ns / 1e9).toFixed(a < 1e10 ? 2 : 1)} s`;
  if (a < 3600e9) return `${(ns / 60e9).toFixed(1)} min`;
  return `${(ns / 3600e9).toFixed(1)} h`;
}

export function seconds(s: number): string {
  return duration(s * 1e9);
}

/** A value in a profile's unit: samples counted, lock wait in ns, bytes allocated. */
export function value(v: number, unit: string): string {
  if (unit === "nanoseconds" || unit === "ns") return duration(v);
  if (unit === "bytes") return bytes(v);
  return `${count(v)} ${unit === "samples" ? (Math.round(v) === 1 ? "sample" : "samples") : unit}`;
}

/** A table cell's number: bytes in B/KiB/MiB (a bare 298M would not say which), else a count. */
export function compact(v: number, unit: string): string {
  return unit === "bytes" ? bytes(v) : count(v);
}

export function pct(fraction: number, digits = 2): string {
  if (!Number.isFinite(fraction)) return "–";
  return `${(fraction * 100).toFixed(digits)}%`;
}

/** Percentage points with a sign, for diffs. */
export function pp(fraction: number): string {
  const v = fraction * 100;
  return `${v > 0 ? "+" : v < 0 ? "−" : "±"}${Math.abs(v).toFixed(2)} pp`;
}

export function bytes(n: number): string {
  if (n < 1024) return `${Math.round(n)} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1 << 30) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  return `${(n / (1 << 30)).toFixed(2)} GiB`;
}

export function ago(s: number): string {
  if (s < 1) return "just now";
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}
