// Draw a layout: frames rasterised straight into a pixel buffer, labels on top.
//
// Filling spans of a Uint32Array costs one native fill per frame on one scanline
// per row, then each row's scanline is copied down its height: the work is bounded
// by frames + pixels, never by canvas path building (which takes ~2 µs per rect in
// software-rendered Chromium and made 100k visible frames cost ~240 ms).

import type { Colors } from "./colors";
import { fitLabel, type Layout } from "./layout";
import type { FlameTree } from "./tree";

export interface Geometry {
  rowHeight: number;
  /** rows grow upward from the bottom (a callers tree) */
  upsideDown: boolean;
  /** CSS height of the drawing area */
  height: number;
}

export interface PaintOptions extends Geometry {
  colors: Colors;
  /** packed RGBA (little-endian ImageData order) of each palette entry, then the dim colour */
  rgba: Uint32Array;
  /** when set, frames not marked here are drawn dimmed */
  highlight: Uint8Array | null;
  /** device pixels per CSS pixel */
  dpr: number;
}

export interface Raster {
  /** one 32-bit RGBA value per device pixel, row-major */
  data: Uint32Array;
  width: number;
  height: number;
}

export function rowY(row: number, o: Geometry): number {
  return o.upsideDown ? o.height - (row + 1) * o.rowHeight : row * o.rowHeight;
}

/** ImageData's byte order on a little-endian machine (every platform browsers run on). */
export function packRgba(r: number, g: number, b: number, a = 255): number {
  return ((a << 24) | (b << 16) | (g << 8) | r) >>> 0;
}

/** Fill the frames of a layout into the raster; returns the number of frames painted. */
export function paint(r: Raster, l: Layout, o: PaintOptions): number {
  const { index } = o.colors;
  const dim = o.rgba[o.rgba.length - 1];
  const { dpr, rowHeight } = o;
  const W = r.width;
  const frameH = Math.max(1, Math.round((rowHeight - 1) * dpr));
  const gap = Math.max(1, Math.round(dpr));
  const hl = o.highlight;
  const data = r.data;
  const { node, x: xs, w: ws, byRow } = l;
  const rgba = o.rgba;
  for (let row = 0; row < l.rows; row++) {
    const from = l.rowStart[row];
    const to = l.rowStart[row + 1];
    if (from === to) continue;
    const y0 = Math.round(rowY(row, o) * dpr);
    if (y0 < 0 || y0 + frameH > r.height) continue;
    const line = y0 * W;
    for (let m = from; m < to; m++) {
      const k = byRow[m];
      const i = node[k];
      const color = hl !== null && hl[i] === 0 && i !== 0 ? dim : rgba[index[i]];
      const xk = xs[k];
      const wk = ws[k];
      let x0 = Math.floor(xk * dpr);
      let x1 = Math.floor((xk + wk) * dpr);
      // a frame over 3 px wide keeps a 1 px gap to its right neighbour
      if (wk > 3) x1 -= gap;
      if (x1 <= x0) x1 = x0 + 1; // half a pixel or more still shows
      if (x0 < 0) x0 = 0;
      if (x1 > W) x1 = W;
      // most frames of a big graph are a pixel or two: a store beats a fill call
      if (x1 - x0 <= 8) for (let x = line + x0, end = line + x1; x < end; x++) data[x] = color;
      else data.fill(color, line + x0, line + x1);
    }
    for (let y = 1; y < frameH; y++) data.copyWithin(line + y * W, line, line + W);
  }
  return l.count;
}

export type TextCtx = Pick<CanvasRenderingContext2D, "fillStyle" | "font" | "textBaseline" | "fillText">;

/** Frame names where they fit, truncated with an ellipsis; returns how many were drawn. */
export function drawLabels(
  ctx: TextCtx,
  tree: FlameTree,
  l: Layout,
  o: Geometry & { font: string; charWidth: number; textColor: string },
): number {
  let labels = 0;
  const minLabel = o.charWidth * 3 + 8;
  ctx.font = o.font;
  ctx.textBaseline = "middle";
  ctx.fillStyle = o.textColor;
  const names = tree.names;
  for (let k = 0; k < l.count; k++) {
    if (l.w[k] < minLabel) continue;
    const text = fitLabel(names[tree.name[l.node[k]]], l.w[k], o.charWidth);
    if (!text) continue;
    ctx.fillText(text, l.x[k] + 4, rowY(l.row[k], o) + o.rowHeight / 2);
    labels++;
  }
  return labels;
}
