// Sandwich view of one function: who calls it (callers) and what it calls (callees).

import type { FlameTree } from "./tree";
import { Trie } from "./trie";

export interface Sandwich {
  /** Root = the function; children = its direct callers, then theirs (drawn upward). */
  callers: FlameTree;
  /** Root = the function; its callees merged over every call site. */
  callees: FlameTree;
  /** Nodes of the function in the source tree, outermost occurrences only. */
  sites: number[];
}

/** Is node i the function? Module is compared only when given. */
function matcher(tree: FlameTree, fn: string, module: string | null): (i: number) => boolean {
  const names = tree.names;
  return (i) =>
    names[tree.name[i]] === fn && (module === null || names[tree.module[i]] === module);
}

/** Outermost occurrences of a function: a recursive call is counted once per stack. */
export function outermost(tree: FlameTree, isFn: (i: number) => boolean): number[] {
  const sites: number[] = [];
  for (let i = 1; i < tree.n; ) {
    if (isFn(i)) {
      sites.push(i);
      i = tree.end[i];
    } else {
      i++;
    }
  }
  return sites;
}

export function sandwich(tree: FlameTree, fn: string, module: string | null = null): Sandwich | null {
  const isFn = matcher(tree, fn, module);
  const sites = outermost(tree, isFn);
  if (sites.length === 0) return null;
  const first = sites[0];
  const { name, parent, kind, total, self, end } = tree;
  const mod = tree.module;
  const callers = new Trie(tree.names, name[first], mod[first], kind[first]);
  const callees = new Trie(tree.names, name[first], mod[first], kind[first]);
  // trie node of each source node within the current site's subtree
  const mapped = new Int32Array(tree.n);
  for (const s of sites) {
    const v = total[s];
    callers.addValue(0, v);
    let cur = 0;
    for (let j = parent[s]; j > 0; j = parent[j]) {
      cur = callers.child(cur, name[j], mod[j], kind[j]);
      callers.addValue(cur, v);
    }
    // the outermost caller (the process) holds the value as its own
    callers.addValue(cur, 0, v);

    callees.addValue(0, v, self[s]);
    mapped[s] = 0;
    for (let j = s + 1; j < end[s]; j++) {
      const c = callees.child(mapped[parent[j]], name[j], mod[j], kind[j]);
      mapped[j] = c;
      callees.addValue(c, total[j], self[j]);
    }
  }
  const up = callers.finish(tree.unit);
  up.pathValue = `Time in ${fn} via this path`;
  return { callers: up, callees: callees.finish(tree.unit), sites };
}
