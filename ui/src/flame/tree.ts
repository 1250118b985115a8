// A flamegraph tree in flat typed arrays, in depth-first pre-order (docs/api.md).
//
// Node i's subtree is the index range [i, end[i]); its x offset `start[i]` is in
// value units from the root's left edge. Every transform (invert, sandwich,
// search, layout) works on these arrays without building objects per node.

import type { DiffResponse, FlamegraphResponse } from "../api/types";

export const Kind = {
  root: 0,
  user: 1,
  kernel: 2,
  jit: 3,
  unknown: 4,
  other: 5,
  python: 6,
} as const;

export const KIND_NAMES = ["process", "user", "kernel", "jit", "unknown", "other", "python"];

export interface DiffValues {
  baseline: Float64Array;
  comparison: Float64Array;
  baselineSelf: Float64Array;
  comparisonSelf: Float64Array;
  baselineTotal: number;
  comparisonTotal: number;
}

export interface FlameTree {
  n: number;
  names: readonly string[];
  name: Int32Array;
  module: Int32Array;
  kind: Uint8Array;
  /**
   * Each node's hottest source line (Python frames: the line with the most value
   * through the node), 0 for none. Only on trees read from the API: derived trees
   * (inverted, sandwich) group by function and carry no line.
   */
  line?: Int32Array;
  depth: Int32Array;
  self: Float64Array;
  total: Float64Array;
  parent: Int32Array;
  end: Int32Array;
  start: Float64Array;
  maxDepth: number;
  unit: string;
  diff?: DiffValues;
  /**
   * Set on caller trees (inverted, sandwich callers), where a node's value is the
   * time of the function at the root end of the path, not the node's own: the
   * tooltip shows one value under this label instead of self and total.
   */
  pathValue?: string;
}

export interface Columns {
  name: ArrayLike<number>;
  module: ArrayLike<number>;
  kind: ArrayLike<number>;
  line?: ArrayLike<number>;
  depth: ArrayLike<number>;
  self: ArrayLike<number>;
  total: ArrayLike<number>;
}

export class MalformedTree extends Error {}

/** Build a tree from pre-order columns; throws MalformedTree when the order is broken. */
export function buildTree(names: readonly string[], cols: Columns, unit = "samples"): FlameTree {
  const n = cols.depth.length;
  for (const key of ["name", "module", "kind", "self", "total"] as const) {
    if (cols[key].length !== n) {
      throw new MalformedTree(`nodes.${key} has ${cols[key].length} entries, nodes.depth has ${n}`);
    }
  }
  const tree: FlameTree = {
    n,
    names,
    name: Int32Array.from(cols.name),
    module: Int32Array.from(cols.module),
    kind: Uint8Array.from(cols.kind),
    depth: Int32Array.from(cols.depth),
    self: Float64Array.from(cols.self),
    total: Float64Array.from(cols.total),
    parent: new Int32Array(n),
    end: new Int32Array(n),
    start: new Float64Array(n),
    maxDepth: 0,
    unit,
  };
  // a line column of the wrong length is ignored: the tooltip then shows the file alone
  if (cols.line && cols.line.length === n) tree.line = Int32Array.from(cols.line);
  if (n === 0) return tree;
  const { depth, parent, end, start, total } = tree;
  if (depth[0] !== 0) throw new MalformedTree("node 0 is not the root (depth 0)");
  // path[d] = the open node at depth d; cursor[i] = where node i's next child starts
  const path = new Int32Array(n + 1);
  const cursor = new Float64Array(n);
  let top = 0; // number of open nodes on the path
  let maxDepth = 0;
  parent[0] = -1;
  path[0] = 0;
  top = 1;
  for (let i = 1; i < n; i++) {
    const d = depth[i];
    if (d < 1 || d > top) {
      throw new MalformedTree(`node ${i} has depth ${d} after a node of depth ${depth[i - 1]}`);
    }
    while (top > d) end[path[--top]] = i;
    const p = path[d - 1];
    parent[i] = p;
    start[i] = start[p] + cursor[p];
    cursor[p] += total[i];
    path[top++] = i;
    if (d > maxDepth) maxDepth = d;
  }
  while (top > 0) end[path[--top]] = n;
  tree.maxDepth = maxDepth;
  return tree;
}

export function fromFlamegraph(res: Pick<FlamegraphResponse, "names" | "nodes" | "unit">): FlameTree {
  return buildTree(res.names, res.nodes, res.unit);
}

/**
 * A diff tree: widths are each side's share added (value / side total), so a frame
 * that vanished still shows and the sides weigh the same whatever their lengths.
 */
export function fromDiff(res: DiffResponse): FlameTree {
  const { nodes } = res;
  const n = nodes.depth.length;
  const bt = res.baseline_total;
  const ct = res.comparison_total;
  const bs = bt > 0 ? 1 / bt : 0;
  const cs = ct > 0 ? 1 / ct : 0;
  const self = new Float64Array(n);
  const total = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    total[i] = nodes.baseline[i] * bs + nodes.comparison[i] * cs;
    self[i] = nodes.baseline_self[i] * bs + nodes.comparison_self[i] * cs;
  }
  const tree = buildTree(
    res.names,
    { name: nodes.name, module: nodes.module, kind: nodes.kind, line: nodes.line, depth: nodes.depth, self, total },
    res.unit,
  );
  tree.diff = {
    baseline: Float64Array.from(nodes.baseline),
    comparison: Float64Array.from(nodes.comparison),
    baselineSelf: Float64Array.from(nodes.baseline_self),
    comparisonSelf: Float64Array.from(nodes.comparison_self),
    baselineTotal: bt,
    comparisonTotal: ct,
  };
  return tree;
}

/** Share change of node i (comparison share minus baseline share, in [-1, 1]). */
export function diffDelta(d: DiffValues, i: number): number {
  const b = d.baselineTotal > 0 ? d.baseline[i] / d.baselineTotal : 0;
  const c = d.comparisonTotal > 0 ? d.comparison[i] / d.comparisonTotal : 0;
  return c - b;
}

/** Node indices from the root down to i, root first. */
export function ancestry(tree: FlameTree, i: number): number[] {
  const out: number[] = [];
  for (let j = i; j >= 0; j = tree.parent[j]) out.push(j);
  return out.reverse();
}

/** The names of the path from the root's child down to i (how the URL names a frame). */
export function framePath(tree: FlameTree, i: number): string[] {
  return ancestry(tree, i)
    .slice(1)
    .map((j) => tree.names[tree.name[j]]);
}

/** The node a name path leads to, following the heaviest match at each level; -1 if none. */
export function findPath(tree: FlameTree, path: readonly string[]): number {
  if (tree.n === 0) return -1;
  let node = 0;
  for (const want of path) {
    let best = -1;
    for (let c = node + 1; c < tree.end[node]; c = tree.end[c]) {
      if (tree.names[tree.name[c]] === want && (best < 0 || tree.total[c] > tree.total[best])) {
        best = c;
      }
    }
    if (best < 0) return -1;
    node = best;
  }
  return node;
}

/** Children of node i, in order. */
export function children(tree: FlameTree, i: number): number[] {
  const out: number[] = [];
  for (let c = i + 1; c < tree.end[i]; c = tree.end[c]) out.push(c);
  return out;
}
