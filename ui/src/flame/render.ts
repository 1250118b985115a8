// Draw a layout on a 2D canvas: one path per colour, labels only where they fit.

import { DIM, type Colors } from "./colors";
import { fitLabel, type Layout } from "./layout";
import type { FlameTree } from "./tree";

export interface DrawOptions {
  rowHeight: number;
  /** rows grow upward from the bottom (a callers tree) */
  upsideDown: boolean;
  /** CSS height of the drawing area, used when upsideDown */
  height: number;
  colors: Colors;
  /** when set, frames not marked here are drawn dimmed */
  highlight: Uint8Array | null;
  font: string;
  charWidth: number;
  textColor: string;
}

export interface DrawStats {
  rects: number;
  labels: number;
}

export type Ctx = Pick<
  CanvasRenderingContext2D,
  "fillStyle" | "font" | "textBaseline" | "beginPath" | "rect" | "fill" | "fillText" | "clearRect"
>;

export function rowY(row: number, o: Pick<DrawOptions, "rowHeight" | "upsideDown" | "height">): number {
  return o.upsideDown ? o.height - (row + 1) * o.rowHeight : row * o.rowHeight;
}

export function draw(ctx: Ctx, tree: FlameTree, l: Layout, o: DrawOptions): DrawStats {
  const { palette, index } = o.colors;
  const dim = palette.length; // virtual palette slot for dimmed frames
  const slots = palette.length + 1;
  // counting sort of rectangles by colour
  const bucket = new Int32Array(slots + 1);
  const color = new Uint16Array(l.count);
  for (let k = 0; k < l.count; k++) {
    const i = l.node[k];
    const c = o.highlight && !o.highlight[i] && i !== 0 ? dim : index[i];
    color[k] = c;
    bucket[c + 1]++;
  }
  for (let c = 0; c < slots; c++) bucket[c + 1] += bucket[c];
  const order = new Int32Array(l.count);
  const fill = bucket.slice(0, slots);
  for (let k = 0; k < l.count; k++) order[fill[color[k]]++] = k;

  const h = o.rowHeight - 1;
  for (let c = 0; c < slots; c++) {
    const from = bucket[c];
    const to = bucket[c + 1];
    if (from === to) continue;
    ctx.fillStyle = c === dim ? DIM : palette[c];
    ctx.beginPath();
    for (let m = from; m < to; m++) {
      const k = order[m];
      // a 1px gap between frames once they are wide enough to afford it
      const w = l.w[k] > 3 ? l.w[k] - 1 : l.w[k];
      ctx.rect(l.x[k], rowY(l.row[k], o), w, h);
    }
    ctx.fill();
  }

  let labels = 0;
  const minLabel = o.charWidth * 3 + 8;
  ctx.font = o.font;
  ctx.textBaseline = "middle";
  ctx.fillStyle = o.textColor;
  const names = tree.names;
  for (let k = 0; k < l.count; k++) {
    if (l.w[k] < minLabel) continue;
    const i = l.node[k];
    const text = fitLabel(names[tree.name[i]], l.w[k], o.charWidth);
    if (!text) continue;
    ctx.fillText(text, l.x[k] + 4, rowY(l.row[k], o) + o.rowHeight / 2);
    labels++;
  }
  return { rects: l.count, labels };
}
