// Bottom-up (inverted) tree: leaf functions at the root, their callers below.

import type { FlameTree } from "./tree";
import { Trie } from "./trie";

/**
 * Every node's self value walked up to the process level, reversed: the result's
 * depth-1 nodes are the functions where time was spent, their children the callers.
 */
export function invert(tree: FlameTree): FlameTree {
  if (tree.n === 0) return tree;
  const trie = new Trie(tree.names, tree.name[0], tree.module[0], tree.kind[0]);
  const { self, parent, name, module, kind } = tree;
  let sum = 0;
  for (let i = 1; i < tree.n; i++) {
    const v = self[i];
    if (v <= 0) continue;
    sum += v;
    let cur = 0;
    for (let j = i; j > 0; j = parent[j]) {
      cur = trie.child(cur, name[j], module[j], kind[j]);
      trie.addValue(cur, v);
    }
    trie.addValue(cur, 0, v);
  }
  trie.addValue(0, sum);
  const out = trie.finish(tree.unit);
  out.pathValue = "Self time via this path";
  return out;
}
