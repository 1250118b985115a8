// How alert values, conditions and durations read on screen. Every metric has a unit
// (GET /api/v1/alerts/metrics); a threshold is in the same unit as the value.

import * as fmt from "../format";
import type { AlertRuleBody } from "../api/types";

/** A metric's value in its unit: 42.0%, +3.10 pp, 1.2 ms, 0.5/s. */
export function metricValue(value: number | null | undefined, unit: string): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  switch (unit) {
    case "percent":
      return `${value.toFixed(1)}%`;
    case "pp":
      return `${value > 0 ? "+" : value < 0 ? "−" : "±"}${Math.abs(value).toFixed(2)} pp`;
    case "ratio":
      return fmt.pct(value, 1);
    case "ns":
      return fmt.duration(value);
    case "seconds":
      return fmt.seconds(value);
    case "per_second":
      return `${fmt.count(value)}/s`;
    case "seconds_per_second":
      return `${value.toFixed(3)} s/s`;
    case "rows":
      return `${fmt.exact(value)} rows`;
    default:
      return fmt.count(value);
  }
}

/** What to type a threshold in, shown next to the input. */
export function thresholdUnit(unit: string): string {
  return (
    {
      percent: "%",
      pp: "pp",
      ratio: "0..1",
      ns: "ns",
      seconds: "s",
      per_second: "/s",
      seconds_per_second: "s/s",
      rows: "rows",
    }[unit] ?? ""
  );
}

/** "cpu_share(function=parse_json, window=5m)" */
export function expression(rule: Pick<AlertRuleBody, "expression">): string {
  const params = Object.entries(rule.expression.params ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(", ");
  return `${rule.expression.metric}(${params})`;
}

/** "> 40.0%" */
export function condition(rule: Pick<AlertRuleBody, "operator" | "threshold">, unit: string): string {
  return `${rule.operator} ${metricValue(rule.threshold, unit)}`;
}

/** A rule's `for` / renotify seconds as people write them: 0 s, 90 s, 2m, 1h. */
export function seconds(s: number | null | undefined): string {
  if (s === null || s === undefined) return "–";
  if (s === 0) return "0";
  if (s % 3600 === 0) return `${s / 3600}h`;
  if (s % 60 === 0) return `${s / 60}m`;
  return `${s}s`;
}

/** Unix seconds → local date and time, to the second. */
export function when(ts: number | null | undefined): string {
  if (ts === null || ts === undefined || ts <= 0) return "never";
  const d = new Date(ts * 1000);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
