// Icicle layout in flat typed arrays, with sub-pixel culling.
//
// Rows: the focused node's ancestors fill the top rows at full width (so the
// breadcrumb is visible in the graph too), then the focused subtree scaled to the
// width. A frame narrower than `minWidth` pixels is skipped with its whole
// subtree (its children are narrower still), so the work is bounded by what can
// be seen, not by the size of the tree.

import type { FlameTree } from "./tree";

export interface Layout {
  /** number of rectangles */
  count: number;
  node: Int32Array;
  x: Float32Array;
  w: Float32Array;
  row: Int32Array;
  /** number of rows used */
  rows: number;
  /** rectangle indices grouped by row, left to right; row r is byRow[rowStart[r]..rowStart[r+1]) */
  byRow: Int32Array;
  rowStart: Int32Array;
  /** nodes skipped because they were narrower than minWidth (subtrees included) */
  culled: number;
  width: number;
  focus: number;
}

export const MIN_WIDTH_PX = 0.5;

export function layout(
  tree: FlameTree,
  focus: number,
  width: number,
  minWidth: number = MIN_WIDTH_PX,
): Layout {
  const n = tree.n;
  const node = new Int32Array(n);
  const x = new Float32Array(n);
  const w = new Float32Array(n);
  const row = new Int32Array(n);
  let count = 0;
  let culled = 0;
  let rows = 0;
  if (n > 0 && focus >= 0 && focus < n && tree.total[focus] > 0) {
    const { depth, start, total, end } = tree;
    // ancestors of the focus, full width
    const chain: number[] = [];
    for (let j = tree.parent[focus]; j >= 0; j = tree.parent[j]) chain.push(j);
    chain.reverse();
    for (const a of chain) {
      node[count] = a;
      x[count] = 0;
      w[count] = width;
      row[count] = depth[a];
      count++;
    }
    const scale = width / total[focus];
    const origin = start[focus];
    const base = depth[focus];
    const stop = end[focus];
    let maxRow = base;
    for (let i = focus; i < stop; ) {
      const wi = total[i] * scale;
      if (wi < minWidth) {
        culled += end[i] - i;
        i = end[i];
        continue;
      }
      node[count] = i;
      x[count] = (start[i] - origin) * scale;
      w[count] = wi;
      const r = depth[i];
      row[count] = r;
      if (r > maxRow) maxRow = r;
      count++;
      i++;
    }
    rows = maxRow + 1;
  }
  // group by row (counting sort keeps the left-to-right order within a row)
  const rowStart = new Int32Array(rows + 1);
  for (let k = 0; k < count; k++) rowStart[row[k] + 1]++;
  for (let r = 0; r < rows; r++) rowStart[r + 1] += rowStart[r];
  const fill = rowStart.slice(0, rows);
  const byRow = new Int32Array(count);
  for (let k = 0; k < count; k++) byRow[fill[row[k]]++] = k;
  return { count, node, x, w, row, rows, byRow, rowStart, culled, width, focus };
}

/** The rectangle under (px, row), or -1. Binary search within the row. */
export function hitTest(l: Layout, px: number, r: number): number {
  if (r < 0 || r >= l.rows) return -1;
  let lo = l.rowStart[r];
  let hi = l.rowStart[r + 1] - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const k = l.byRow[mid];
    if (px < l.x[k]) hi = mid - 1;
    else if (px >= l.x[k] + l.w[k]) lo = mid + 1;
    else return k;
  }
  return -1;
}

/** The visible label of a frame `w` pixels wide, or "" when none fits. */
export function fitLabel(text: string, w: number, charWidth: number, pad = 4): string {
  const room = Math.floor((w - 2 * pad) / charWidth);
  if (room < 3) return "";
  if (text.length <= room) return text;
  return text.slice(0, room - 1) + "…";
}
