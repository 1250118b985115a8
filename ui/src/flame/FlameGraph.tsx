// The canvas icicle graph: layout + draw in one pass per change (timed), hover
// hit-testing by binary search, a DOM tooltip, click to focus.

import { useEffect, useLayoutEffect, useMemo, useRef, useState, type ReactNode } from "react";
import type { Colors } from "./colors";
import { hitTest, layout, type Layout } from "./layout";
import { draw, rowY } from "./render";
import type { FlameTree } from "./tree";

export const ROW_HEIGHT = 18;
const FONT = '11.5px ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace';

export interface FrameInfo {
  name: string;
  x: number;
  y: number;
  w: number;
  node: number;
}

/** Test and automation hook on the canvas element: frames as drawn, in CSS pixels. */
export interface FlameCanvas extends HTMLCanvasElement {
  apertureFrames?: () => FrameInfo[];
}

interface Props {
  tree: FlameTree;
  colors: Colors;
  focus: number;
  highlight: Uint8Array | null;
  upsideDown?: boolean;
  onFocus?: (node: number) => void;
  onHover?: (node: number) => void;
  tooltip: (node: number) => ReactNode;
  label: string;
}

let charWidthCache = 0;
function charWidth(ctx: CanvasRenderingContext2D): number {
  if (charWidthCache === 0) {
    ctx.font = FONT;
    charWidthCache = ctx.measureText("MMMMMMMMMM").width / 10 || 7;
  }
  return charWidthCache;
}

export function FlameGraph({ tree, colors, focus, highlight, upsideDown = false, onFocus, onHover, tooltip, label }: Props) {
  const wrap = useRef<HTMLDivElement>(null);
  const canvas = useRef<FlameCanvas>(null);
  const overlay = useRef<HTMLCanvasElement>(null);
  const tip = useRef<HTMLDivElement>(null);
  const layoutRef = useRef<Layout | null>(null);
  const [width, setWidth] = useState(0);
  const [hover, setHover] = useState(-1);
  const hoverRef = useRef(-1);

  useLayoutEffect(() => {
    const el = wrap.current;
    if (!el) return;
    setWidth(Math.floor(el.clientWidth));
    const ro = new ResizeObserver(() => setWidth(Math.floor(el.clientWidth)));
    ro.observe(el);
    return () => ro.disconnect();
  }, []);

  const rows = useMemo(() => tree.maxDepth + 1, [tree]);
  const height = rows * ROW_HEIGHT;

  useLayoutEffect(() => {
    const c = canvas.current;
    const o = overlay.current;
    if (!c || !o || width === 0) return;
    const t0 = performance.now();
    const l = layout(tree, focus, width);
    layoutRef.current = l;
    const dpr = window.devicePixelRatio || 1;
    for (const el of [c, o]) {
      el.width = Math.round(width * dpr);
      el.height = Math.round(height * dpr);
      el.style.width = `${width}px`;
      el.style.height = `${height}px`;
    }
    const ctx = c.getContext("2d");
    if (!ctx) return;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const stats = draw(ctx, tree, l, {
      rowHeight: ROW_HEIGHT,
      upsideDown,
      height,
      colors,
      highlight,
      font: FONT,
      charWidth: charWidth(ctx),
      textColor: "#1f2328",
    });
    const ms = performance.now() - t0;
    c.dataset.renderMs = ms.toFixed(2);
    c.dataset.rects = String(stats.rects);
    c.dataset.labels = String(stats.labels);
    c.dataset.culled = String(l.culled);
    c.dataset.nodes = String(tree.n);
    c.apertureFrames = () => {
      const out: FrameInfo[] = [];
      for (let k = 0; k < l.count; k++) {
        const i = l.node[k];
        out.push({ name: tree.names[tree.name[i]], x: l.x[k], y: rowY(l.row[k], { rowHeight: ROW_HEIGHT, upsideDown, height }), w: l.w[k], node: i });
      }
      return out;
    };
    const octx = o.getContext("2d");
    octx?.setTransform(dpr, 0, 0, dpr, 0, 0);
    octx?.clearRect(0, 0, width, height);
    hoverRef.current = -1;
    setHover(-1);
  }, [tree, focus, width, height, colors, highlight, upsideDown]);

  // outline the hovered frame on the overlay; the big canvas is not redrawn
  const outline = (k: number) => {
    const o = overlay.current;
    const l = layoutRef.current;
    const ctx = o?.getContext("2d");
    if (!ctx || !l) return;
    ctx.clearRect(0, 0, width, height);
    if (k < 0) return;
    const y = rowY(l.row[k], { rowHeight: ROW_HEIGHT, upsideDown, height });
    ctx.strokeStyle = "#111827";
    ctx.lineWidth = 1.5;
    ctx.strokeRect(l.x[k] + 0.75, y + 0.75, Math.max(l.w[k] - 1.5, 1), ROW_HEIGHT - 2.5);
  };

  const locate = (e: React.MouseEvent): number => {
    const l = layoutRef.current;
    const c = canvas.current;
    if (!l || !c) return -1;
    const r = c.getBoundingClientRect();
    const x = e.clientX - r.left;
    const y = e.clientY - r.top;
    const row = upsideDown ? Math.floor((height - y) / ROW_HEIGHT) : Math.floor(y / ROW_HEIGHT);
    return hitTest(l, x, row);
  };

  const onMove = (e: React.MouseEvent) => {
    const k = locate(e);
    const t = tip.current;
    if (t && k >= 0) {
      // fixed to the viewport, so no scrolling box clips it; flipped near the edges
      const tw = t.offsetWidth || 320;
      const th = t.offsetHeight || 120;
      const x = e.clientX + 16 + tw > window.innerWidth ? e.clientX - tw - 12 : e.clientX + 16;
      const y = e.clientY + 18 + th > window.innerHeight ? e.clientY - th - 12 : e.clientY + 18;
      t.style.left = `${Math.max(4, x)}px`;
      t.style.top = `${Math.max(4, y)}px`;
    }
    if (k !== hoverRef.current) {
      hoverRef.current = k;
      outline(k);
      const node = k >= 0 ? (layoutRef.current?.node[k] ?? -1) : -1;
      setHover(node);
      onHover?.(node);
    }
  };

  const onLeave = () => {
    hoverRef.current = -1;
    outline(-1);
    setHover(-1);
    onHover?.(-1);
  };

  const onClick = (e: React.MouseEvent) => {
    const k = locate(e);
    const l = layoutRef.current;
    if (k < 0 || !l || !onFocus) return;
    onFocus(l.node[k]);
  };

  useEffect(() => () => onHover?.(-1), [onHover]);

  return (
    <div className="flame" ref={wrap} onMouseLeave={onLeave} data-testid={`flame-${label}`}>
      <canvas
        ref={canvas}
        className="flame-canvas"
        aria-label={`${label} flame graph`}
        role="img"
        onMouseMove={onMove}
        onClick={onClick}
        style={{ cursor: onFocus ? "pointer" : "default" }}
      />
      <canvas ref={overlay} className="flame-overlay" aria-hidden="true" />
      <div ref={tip} className="tooltip" role="tooltip" hidden={hover < 0} data-testid="flame-tooltip">
        {hover >= 0 && tooltip(hover)}
      </div>
    </div>
  );
}
