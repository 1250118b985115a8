// The canvas icicle graph: layout + draw in one pass per change (timed), hover
// hit-testing by binary search, a DOM tooltip, click to focus.

import { useEffect, useLayoutEffect, useMemo, useRef, useState, type ReactNode } from "react";
import type { Colors } from "./colors";
import { hitTest, layout, type Layout } from "./layout";
import { drawLabels, paint, rowY } from "./render";
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
  // the hover outline is a small positioned box: redrawing a canvas overlay as big as
  // the graph on every hover made the compositor repaint all of it (30 ms at 1 Mpx)
  const outlineBox = useRef<HTMLDivElement>(null);
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

  // the layout decides the height: rows that are all culled take no space
  const laid = useMemo(() => {
    if (width === 0) return null;
    const t0 = performance.now();
    const out = layout(tree, focus, width);
    return { l: out, ms: performance.now() - t0 };
  }, [tree, focus, width]);
  const l = laid?.l ?? null;
  const height = Math.max(1, l?.rows ?? 1) * ROW_HEIGHT;

  useLayoutEffect(() => {
    const c = canvas.current;
    if (!c || !l || !laid) return;
    const t0 = performance.now();
    const dpr = window.devicePixelRatio || 1;
    const pw = Math.round(width * dpr);
    const ph = Math.round(height * dpr);
    c.width = pw;
    c.height = ph;
    c.style.width = `${width}px`;
    c.style.height = `${height}px`;
    const ctx = c.getContext("2d");
    if (!ctx) return;
    const image = ctx.createImageData(pw, ph);
    const geometry = { rowHeight: ROW_HEIGHT, upsideDown, height };
    const t1 = performance.now();
    const rects = paint(
      { data: new Uint32Array(image.data.buffer), width: pw, height: ph },
      l,
      { ...geometry, colors, rgba: colors.rgba, highlight, dpr },
    );
    const t2 = performance.now();
    ctx.putImageData(image, 0, 0);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const labels = drawLabels(ctx, tree, l, { ...geometry, font: FONT, charWidth: charWidth(ctx), textColor: "#1f2328" });
    // layout + raster + labels: what a new tree, zoom or resize costs
    const ms = performance.now() - t0 + laid.ms;
    layoutRef.current = l;
    c.dataset.renderMs = ms.toFixed(2);
    // the parts, for the performance test's report
    c.dataset.phases = [laid.ms, t1 - t0, t2 - t1, performance.now() - t2].map((v) => v.toFixed(1)).join(" ");
    c.dataset.rects = String(rects);
    c.dataset.labels = String(labels);
    c.dataset.culled = String(l.culled);
    c.dataset.nodes = String(tree.n);
    c.dataset.paintedAt = performance.now().toFixed(1);
    c.apertureFrames = () => {
      const out: FrameInfo[] = [];
      for (let k = 0; k < l.count; k++) {
        const i = l.node[k];
        out.push({ name: tree.names[tree.name[i]], x: l.x[k], y: rowY(l.row[k], geometry), w: l.w[k], node: i });
      }
      return out;
    };
    if (outlineBox.current) outlineBox.current.hidden = true;
    hoverRef.current = -1;
    setHover(-1);
  }, [laid, l, tree, width, height, colors, highlight, upsideDown]);

  // outline the hovered frame; the canvas itself is not redrawn
  const outline = (k: number) => {
    const box = outlineBox.current;
    const l = layoutRef.current;
    if (!box || !l) return;
    box.hidden = k < 0;
    if (k < 0) return;
    const y = rowY(l.row[k], { rowHeight: ROW_HEIGHT, upsideDown, height });
    box.style.transform = `translate(${l.x[k]}px, ${y}px)`;
    box.style.width = `${Math.max(l.w[k], 2)}px`;
    box.style.height = `${ROW_HEIGHT - 1}px`;
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
      <div ref={outlineBox} className="flame-outline" aria-hidden="true" hidden />
      <div ref={tip} className="tooltip" role="tooltip" hidden={hover < 0} data-testid="flame-tooltip">
        {hover >= 0 && tooltip(hover)}
      </div>
    </div>
  );
}
