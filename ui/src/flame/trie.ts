// Build a new flame tree by adding paths, then emit it in pre-order.
// Used by the client-side transforms (invert, sandwich); children are
// ordered heaviest first, as speedscope's left-heavy view does.

import { buildTree, type FlameTree } from "./tree";

export class Trie {
  private readonly nameOf: number[] = [];
  private readonly moduleOf: number[] = [];
  private readonly kindOf: number[] = [];
  private readonly selfOf: number[] = [];
  private readonly totalOf: number[] = [];
  private readonly kids: number[][] = [];
  private readonly childIndex = new Map<number, number>();
  private readonly frameIds = new Map<number, number>();
  private readonly stride: number;

  constructor(
    private readonly names: readonly string[],
    rootName: number,
    rootModule: number,
    rootKind: number,
  ) {
    this.stride = names.length + 1;
    this.add(rootName, rootModule, rootKind);
  }

  private add(name: number, module: number, kind: number): number {
    const id = this.nameOf.length;
    this.nameOf.push(name);
    this.moduleOf.push(module);
    this.kindOf.push(kind);
    this.selfOf.push(0);
    this.totalOf.push(0);
    this.kids.push([]);
    return id;
  }

  /** The child of `parent` for frame (name, module), created on first use. */
  child(parent: number, name: number, module: number, kind: number): number {
    const fkey = name * this.stride + module;
    let frame = this.frameIds.get(fkey);
    if (frame === undefined) {
      frame = this.frameIds.size;
      this.frameIds.set(fkey, frame);
    }
    // node ids stay far below 2^53 / stride, so the key is exact
    const key = parent * (this.stride * this.stride) + frame;
    let c = this.childIndex.get(key);
    if (c === undefined) {
      c = this.add(name, module, kind);
      this.kids[parent].push(c);
      this.childIndex.set(key, c);
    }
    return c;
  }

  addValue(node: number, total: number, self = 0): void {
    this.totalOf[node] += total;
    this.selfOf[node] += self;
  }

  get size(): number {
    return this.nameOf.length;
  }

  /** The tree in pre-order with every child list sorted heaviest first. */
  finish(unit: string): FlameTree {
    const n = this.nameOf.length;
    const name = new Int32Array(n);
    const module = new Int32Array(n);
    const kind = new Uint8Array(n);
    const depth = new Int32Array(n);
    const self = new Float64Array(n);
    const total = new Float64Array(n);
    const stack: number[] = [0];
    const depths: number[] = [0];
    let out = 0;
    while (stack.length > 0) {
      const node = stack.pop()!;
      const d = depths.pop()!;
      name[out] = this.nameOf[node];
      module[out] = this.moduleOf[node];
      kind[out] = this.kindOf[node];
      depth[out] = d;
      self[out] = this.selfOf[node];
      total[out] = this.totalOf[node];
      out++;
      const kids = this.kids[node];
      if (kids.length > 1) kids.sort((a, b) => this.totalOf[a] - this.totalOf[b]);
      // pushed lightest first so the heaviest is popped (and emitted) first
      for (const k of kids) {
        stack.push(k);
        depths.push(d + 1);
      }
    }
    return buildTree(this.names, { name, module, kind, depth, self, total }, unit);
  }
}
