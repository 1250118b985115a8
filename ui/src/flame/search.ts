// Search: which frames match, and what share of the total they cover.

import type { FlameTree } from "./tree";

export interface SearchResult {
  /** 1 where the node's function matches */
  match: Uint8Array;
  /** value under matching frames, each stack counted once */
  total: number;
  /** number of matching nodes */
  nodes: number;
}

/**
 * A case-insensitive matcher: `/re/` is a regular expression, anything else a
 * substring. Returns null for an empty query or an invalid expression.
 */
export function compileQuery(query: string): ((s: string) => boolean) | null {
  const q = query.trim();
  if (!q) return null;
  if (q.length > 2 && q.startsWith("/") && q.endsWith("/")) {
    try {
      const re = new RegExp(q.slice(1, -1), "i");
      return (s) => re.test(s);
    } catch {
      return null;
    }
  }
  const lower = q.toLowerCase();
  return (s) => s.toLowerCase().includes(lower);
}

/** Nodes whose name satisfies `test`; the covered total counts outermost matches only. */
export function search(tree: FlameTree, test: (name: string) => boolean): SearchResult {
  const names = tree.names;
  // test each distinct string once, not each node
  const byName = new Int8Array(names.length).fill(-1);
  const match = new Uint8Array(tree.n);
  let total = 0;
  let nodes = 0;
  let coveredUntil = 0; // inside a matching subtree until this index
  for (let i = 1; i < tree.n; i++) {
    const id = tree.name[i];
    let m = byName[id];
    if (m < 0) {
      m = test(names[id]) ? 1 : 0;
      byName[id] = m;
    }
    if (m === 1) {
      match[i] = 1;
      nodes++;
      if (i >= coveredUntil) {
        total += tree.total[i];
        coveredUntil = tree.end[i];
      }
    }
  }
  return { match, total, nodes };
}

/** Match one function exactly (name, and module when given): the table's selection. */
export function exactFunction(name: string, module: string | null, tree: FlameTree): SearchResult {
  const names = tree.names;
  const match = new Uint8Array(tree.n);
  let total = 0;
  let nodes = 0;
  let coveredUntil = 0;
  for (let i = 1; i < tree.n; i++) {
    if (names[tree.name[i]] !== name) continue;
    if (module !== null && names[tree.module[i]] !== module) continue;
    match[i] = 1;
    nodes++;
    if (i >= coveredUntil) {
      total += tree.total[i];
      coveredUntil = tree.end[i];
    }
  }
  return { match, total, nodes };
}
