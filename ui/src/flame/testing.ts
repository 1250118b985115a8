// Test helper: a FlameTree from folded stacks ("proc;a;b" -> value), built the
// slow obvious way (nested maps, insertion order) so transforms can be checked
// against an independent construction.

import { buildTree, type FlameTree } from "./tree";

interface Node {
  name: string;
  module: string;
  self: number;
  total: number;
  kids: Map<string, Node>;
}

export function folded(stacks: Record<string, number>): FlameTree {
  const root: Node = { name: "all", module: "", self: 0, total: 0, kids: new Map() };
  for (const [line, value] of Object.entries(stacks)) {
    let cur = root;
    cur.total += value;
    for (const part of line.split(";")) {
      const [name, module = "app"] = part.split("@");
      let next = cur.kids.get(part);
      if (!next) {
        next = { name, module: cur === root ? "" : module, self: 0, total: 0, kids: new Map() };
        cur.kids.set(part, next);
      }
      next.total += value;
      cur = next;
    }
    cur.self += value;
  }
  const names: string[] = [];
  const ids = new Map<string, number>();
  const intern = (s: string): number => {
    let id = ids.get(s);
    if (id === undefined) {
      id = names.length;
      names.push(s);
      ids.set(s, id);
    }
    return id;
  };
  const cols = { name: [] as number[], module: [] as number[], kind: [] as number[], depth: [] as number[], self: [] as number[], total: [] as number[] };
  const walk = (node: Node, depth: number): void => {
    cols.name.push(intern(node.name));
    cols.module.push(intern(node.module));
    cols.kind.push(depth <= 1 ? 0 : 1);
    cols.depth.push(depth);
    cols.self.push(node.self);
    cols.total.push(node.total);
    for (const kid of node.kids.values()) walk(kid, depth + 1);
  };
  walk(root, 0);
  return buildTree(names, cols);
}

/** Every root-to-leaf path of a tree as "a;b;c" -> self value (what folded() took). */
export function unfold(tree: FlameTree): Record<string, number> {
  const out: Record<string, number> = {};
  for (let i = 1; i < tree.n; i++) {
    if (tree.self[i] <= 0) continue;
    const parts: string[] = [];
    for (let j = i; j > 0; j = tree.parent[j]) parts.push(tree.names[tree.name[j]]);
    const key = parts.reverse().join(";");
    out[key] = (out[key] ?? 0) + tree.self[i];
  }
  return out;
}

/** A synthetic tree of about `n` nodes (fan-out `fan`), for layout and culling tests. */
export function wide(n: number, fan: number): FlameTree {
  const name: number[] = [];
  const depth: number[] = [];
  const self: number[] = [];
  const total: number[] = [];
  const names = ["all", ""];
  for (let k = 0; k < fan; k++) names.push(`f${k}`);
  // recursive generation with a budget; leaves get value 1..fan
  let budget = n;
  const gen = (d: number, k: number): number => {
    const at = name.length;
    name.push(d === 0 ? 0 : 2 + k);
    depth.push(d);
    self.push(0);
    total.push(0);
    budget--;
    let sum = 0;
    if (d < 12) {
      for (let c = 0; c < fan; c++) {
        if (budget <= 0) break;
        sum += gen(d + 1, c);
      }
    }
    if (sum === 0) {
      sum = 1 + (k % fan);
      self[at] = sum;
    }
    total[at] = sum;
    return sum;
  };
  gen(0, 0);
  const module = name.map(() => 1);
  const kind = name.map((_, i) => (depth[i] <= 1 ? 0 : 1));
  return buildTree(names, { name, module, kind, depth, self, total });
}
