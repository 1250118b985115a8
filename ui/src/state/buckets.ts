// Time buckets of the timeline: the step to ask for, and the points to plot.

import type { TimelineSeries } from "../api/types";

const STEPS = [1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400];

/** A bucket size giving at most ~150 points over the range. */
export function pickStep(rangeMs: number): number {
  const want = rangeMs / 1e3 / 150;
  return STEPS.find((s) => s >= want) ?? 86400;
}

/**
 * The bucket width to plot with: the requested step, or the spacing of the
 * agents' windows when that is wider (a 2-minute window in 30 s buckets would
 * otherwise draw as spikes at 4x its real rate between zeros).
 */
export function effectiveStep(series: TimelineSeries[], stepS: number): number {
  let gap = Infinity;
  for (const s of series) {
    for (let k = 1; k < s.points.length; k++) {
      const d = (s.points[k][0] - s.points[k - 1][0]) / 1e9;
      if (d > 0 && d < gap) gap = d;
    }
  }
  return Number.isFinite(gap) && gap > stepS ? Math.round(gap / stepS) * stepS : stepS;
}

/**
 * Points re-bucketed to stepS, with zeros for the buckets a series has no
 * point in: a bucket with no data had no samples (otherwise a line would
 * bridge the gap as if it had).
 */
export function densify(series: TimelineSeries[], fromMs: number, toMs: number, stepS: number): TimelineSeries[] {
  const stepMs = stepS * 1e3;
  const first = Math.floor(fromMs / stepMs) * stepMs;
  let n = Math.min(20_000, Math.floor((toMs - first) / stepMs) + 1);
  const all = series.map((s) => {
    const values = new Float64Array(n);
    for (const [t, v] of s.points) {
      const k = Math.floor((t / 1e6 - first) / stepMs);
      if (k >= 0 && k < n) values[k] += v;
    }
    return values;
  });
  // the bucket still being filled shows as a drop to zero: leave it out until it has data
  while (n > 1 && first + (n - 1) * stepMs > toMs - stepMs && all.every((v) => v[n - 1] === 0)) n--;
  // likewise a bucket cut by the range's start, when it has nothing
  const lead = first < fromMs && n > 1 && all.every((v) => v[0] === 0) ? 1 : 0;
  return series.map((s, j) => ({
    key: s.key,
    points: Array.from(all[j].subarray(lead, n), (v, k): [number, number] => [(first + (k + lead) * stepMs) * 1e6, v]),
  }));
}
