// A small SVG line chart over time; drag across it to select a range.

import { useRef, useState } from "react";
import type { TimelineSeries } from "../api/types";
import { formatTime } from "../state/time";

export const SERIES_COLORS = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#6b7280", "#f0e442"];

interface Props {
  title: string;
  series: TimelineSeries[];
  fromMs: number;
  toMs: number;
  /** raw point value -> plotted value (e.g. per second) */
  scale: (v: number) => number;
  format: (v: number) => string;
  onSelect: (fromMs: number, toMs: number) => void;
  testid: string;
}

const H = 150;
const PAD = { l: 56, r: 12, t: 8, b: 22 };

/** A round step giving about n intervals up to max. */
export function niceStep(max: number, n: number): number {
  if (max <= 0) return 1;
  const raw = max / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
}

function timeTicks(lo: number, hi: number, n: number): number[] {
  const steps = [1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400].map((s) => s * 1e3);
  const step = steps.find((s) => (hi - lo) / s <= n) ?? 86400e3;
  const out: number[] = [];
  const tz = new Date().getTimezoneOffset() * 60e3;
  for (let v = Math.ceil((lo - tz) / step) * step + tz; v <= hi; v += step) out.push(v);
  return out;
}

/** A time label as precise as the span needs: dates past a day, seconds under 10 minutes. */
export function axisTime(ms: number, spanMs: number): string {
  const text = formatTime(ms);
  if (spanMs > 86400e3) return text.slice(5, 16);
  if (spanMs > 600e3) return text.slice(11, 16);
  return text.slice(11, 19);
}

export function TimeChart({ title, series, fromMs, toMs, scale, format, onSelect, testid }: Props) {
  const svg = useRef<SVGSVGElement>(null);
  const [width, setWidth] = useState(900);
  const [drag, setDrag] = useState<[number, number] | null>(null);
  const [hoverX, setHoverX] = useState<number | null>(null);
  const W = width;
  const plotW = W - PAD.l - PAD.r;
  const plotH = H - PAD.t - PAD.b;
  let max = 0;
  for (const s of series) for (const [, v] of s.points) max = Math.max(max, scale(v));
  const yStep = niceStep(max, 4);
  // the axis ends on a round tick above the highest point
  const yMax = max > 0 ? Math.ceil((max * 1.02) / yStep) * yStep : 1;
  const yTicks: number[] = [];
  for (let v = 0; v <= yMax + yStep / 2; v += yStep) yTicks.push(v);
  const x = (ms: number) => PAD.l + ((ms - fromMs) / (toMs - fromMs)) * plotW;
  const y = (v: number) => PAD.t + plotH - (v / yMax) * plotH;
  const msAt = (px: number) => fromMs + ((px - PAD.l) / plotW) * (toMs - fromMs);

  const localX = (e: React.MouseEvent): number => {
    const r = svg.current!.getBoundingClientRect();
    return Math.max(PAD.l, Math.min(W - PAD.r, e.clientX - r.left));
  };

  const hoverMs = hoverX !== null ? msAt(hoverX) : null;
  const values =
    hoverMs !== null
      ? series
          .map((s, k) => {
            let best: [number, number] | null = null;
            for (const p of s.points) if (p[0] / 1e6 <= hoverMs) best = p;
            return { key: s.key, color: SERIES_COLORS[k % SERIES_COLORS.length], v: best ? scale(best[1]) : 0 };
          })
          .sort((a, b) => b.v - a.v)
          .slice(0, 6)
      : [];

  return (
    <div className="chart" data-testid={testid}>
      <div className="chart-title">{title}</div>
      <svg
        ref={(el) => {
          svg.current = el;
          if (el && Math.abs(el.clientWidth - width) > 1) setWidth(el.clientWidth);
        }}
        width="100%"
        height={H}
        onMouseDown={(e) => {
          const px = localX(e);
          setDrag([px, px]);
        }}
        onMouseMove={(e) => {
          const px = localX(e);
          setHoverX(px);
          if (drag) setDrag([drag[0], px]);
        }}
        onMouseUp={() => {
          if (drag && Math.abs(drag[1] - drag[0]) > 4) {
            const a = msAt(Math.min(...drag));
            const b = msAt(Math.max(...drag));
            onSelect(a, b);
          }
          setDrag(null);
        }}
        onMouseLeave={() => {
          setDrag(null);
          setHoverX(null);
        }}
        style={{ cursor: "crosshair", userSelect: "none" }}
      >
        {yTicks.map((v) => (
          <g key={v}>
            <line x1={PAD.l} x2={W - PAD.r} y1={y(v)} y2={y(v)} className="grid" />
            <text x={PAD.l - 6} y={y(v)} className="axis" textAnchor="end" dominantBaseline="middle">
              {format(v)}
            </text>
          </g>
        ))}
        {timeTicks(fromMs, toMs, Math.max(2, Math.floor(plotW / 110))).map((t) => (
          <text key={t} x={x(t)} y={H - 6} className="axis" textAnchor="middle">
            {axisTime(t, toMs - fromMs)}
          </text>
        ))}
        {series.map((s, k) => (
          <polyline
            key={s.key}
            fill="none"
            stroke={SERIES_COLORS[k % SERIES_COLORS.length]}
            strokeWidth={1.6}
            points={s.points.map(([t, v]) => `${x(t / 1e6).toFixed(1)},${y(scale(v)).toFixed(1)}`).join(" ")}
          />
        ))}
        {hoverX !== null && !drag && <line x1={hoverX} x2={hoverX} y1={PAD.t} y2={PAD.t + plotH} className="crosshair" />}
        {drag && (
          <rect
            x={Math.min(...drag)}
            y={PAD.t}
            width={Math.abs(drag[1] - drag[0])}
            height={plotH}
            className="selection"
            data-testid="selection"
          />
        )}
      </svg>
      {hoverMs !== null && !drag && values.length > 0 && (
        <div className="chart-hover small">
          <span className="muted">{formatTime(hoverMs)}</span>
          {values.map((v) => (
            <span key={v.key}>
              <span className="swatch" style={{ background: v.color }} /> {v.key}: {format(v.v)}
            </span>
          ))}
        </div>
      )}
    </div>
  );
}
