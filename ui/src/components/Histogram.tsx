// log2 latency histogram: hist[i] counts calls in [2^i, 2^(i+1)) ns.

import * as fmt from "../format";

export function range(hist: number[]): [number, number] {
  let lo = hist.findIndex((v) => v > 0);
  let hi = hist.length - 1;
  while (hi > 0 && hist[hi] === 0) hi--;
  if (lo < 0) lo = 0;
  return [lo, Math.max(lo, hi)];
}

export function bucketLabel(i: number): string {
  return fmt.duration(2 ** i);
}

/** The bucket range covering every histogram, so the table's sparklines share one axis. */
export function sharedRange(hists: number[][]): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (const h of hists) {
    if (!h.some((v) => v > 0)) continue;
    const [a, b] = range(h);
    lo = Math.min(lo, a);
    hi = Math.max(hi, b);
  }
  return Number.isFinite(lo) ? [lo, hi] : [0, 0];
}

/** A sparkline of the histogram for a table cell, on the table's shared latency axis. */
export function MiniHistogram({ hist, domain, width = 150, height = 22 }: { hist: number[]; domain: [number, number]; width?: number; height?: number }) {
  if (hist.length === 0 || hist.every((v) => v === 0)) return <span className="muted small">—</span>;
  const [lo, hi] = domain;
  const n = hi - lo + 1;
  const max = Math.max(...hist);
  const bw = width / n;
  const [a, b] = range(hist);
  return (
    <svg width={width} height={height} className="mini-hist" aria-label={`latency ${bucketLabel(a)} to ${bucketLabel(b + 1)}`} role="img">
      <title>{`${bucketLabel(a)} – ${bucketLabel(b + 1)}`}</title>
      <line x1={0} x2={width} y1={height - 0.5} y2={height - 0.5} className="mini-hist-axis" />
      {hist.slice(lo, hi + 1).map((v, k) => {
        const h = v > 0 ? Math.max(1.5, (Math.log1p(v) / Math.log1p(max)) * (height - 2)) : 0;
        return <rect key={k} x={k * bw} y={height - h} width={Math.max(bw - 1, 1)} height={h} />;
      })}
    </svg>
  );
}

/** The full histogram with bucket labels and counts. */
export function Histogram({ hist }: { hist: number[] }) {
  const [lo, hi] = range(hist);
  const max = Math.max(1, ...hist);
  const total = hist.reduce((a, b) => a + b, 0);
  return (
    <div className="histogram" data-testid="histogram">
      {hist.slice(lo, hi + 1).map((v, k) => (
        <div className="hist-row" key={k}>
          <span className="hist-label">
            {bucketLabel(lo + k)} – {bucketLabel(lo + k + 1)}
          </span>
          <span className="hist-bar-wrap">
            <span className="hist-bar" style={{ width: `${(v / max) * 100}%` }} />
          </span>
          <span className="hist-count">
            {fmt.exact(v)} <span className="muted">({fmt.pct(total > 0 ? v / total : 0, 1)})</span>
          </span>
        </div>
      ))}
    </div>
  );
}
