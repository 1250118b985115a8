import { describe, expect, it } from "vitest";
import { folded, unfold, wide } from "./testing";
import { buildTree, children, findPath, framePath, fromDiff, diffDelta, MalformedTree } from "./tree";

describe("buildTree", () => {
  it("derives parents, subtree ends and x offsets from pre-order depths", () => {
    const t = folded({ "p;main;a": 3, "p;main;b": 5, "p;main": 2, "q;x": 4 });
    // all, p, main, a, b, q, x
    expect(Array.from(t.parent)).toEqual([-1, 0, 1, 2, 2, 0, 5]);
    expect(Array.from(t.end)).toEqual([7, 5, 5, 4, 5, 7, 7]);
    expect(Array.from(t.start)).toEqual([0, 0, 0, 0, 3, 10, 10]);
    expect(Array.from(t.total)).toEqual([14, 10, 10, 3, 5, 4, 4]);
    expect(t.maxDepth).toBe(3);
    expect(children(t, 2)).toEqual([3, 4]);
  });

  it("takes the contract's example", () => {
    const t = buildTree(["all", "python3", "main", "[kernel]", "app"], {
      name: [0, 1, 2], module: [0, 4, 4], kind: [0, 0, 1], depth: [0, 1, 2],
      self: [0, 0, 100], total: [12345, 600, 100],
    });
    expect(Array.from(t.parent)).toEqual([-1, 0, 1]);
    expect(framePath(t, 2)).toEqual(["python3", "main"]);
  });

  it("refuses a broken order with a reason", () => {
    const cols = { name: [0, 0], module: [0, 0], kind: [0, 0], depth: [0, 2], self: [0, 1], total: [1, 1] };
    expect(() => buildTree(["all"], cols)).toThrow(MalformedTree);
    expect(() => buildTree(["all"], { ...cols, depth: [1, 2] })).toThrow(/root/);
    expect(() => buildTree(["all"], { ...cols, total: [1] })).toThrow(/nodes.total/);
  });

  it("is empty for no nodes", () => {
    const t = buildTree([], { name: [], module: [], kind: [], depth: [], self: [], total: [] });
    expect(t.n).toBe(0);
  });

  it("finds a frame again by its name path (the URL's focus)", () => {
    const t = folded({ "p;main;a": 3, "p;main;b": 5 });
    const b = findPath(t, ["p", "main", "b"]);
    expect(t.names[t.name[b]]).toBe("b");
    expect(framePath(t, b)).toEqual(["p", "main", "b"]);
    expect(findPath(t, ["p", "nope"])).toBe(-1);
    expect(findPath(t, [])).toBe(0);
  });

  it("builds large trees in linear time", () => {
    const t = wide(100_000, 8);
    expect(t.n).toBeGreaterThan(99_000);
    // every node's children sum to at most its total
    let wrong = 0;
    for (let i = 0; i < t.n; i++) {
      let sum = t.self[i];
      for (const c of children(t, i)) sum += t.total[c];
      if (sum !== t.total[i]) wrong++;
    }
    expect(wrong).toBe(0);
    expect(Object.keys(unfold(t)).length).toBeGreaterThan(50_000);
  });
});

describe("fromDiff", () => {
  const res = {
    type: "cpu" as const, unit: "samples", baseline_total: 1000, comparison_total: 4000,
    names: ["all", "app", "hot", "cold"],
    nodes: {
      name: [0, 1, 2, 3], module: [0, 0, 1, 1], kind: [0, 0, 1, 1], line: [0, 0, 0, 0], depth: [0, 1, 2, 2],
      baseline: [1000, 1000, 100, 900], comparison: [4000, 4000, 2000, 2000],
      baseline_self: [0, 0, 100, 900], comparison_self: [0, 0, 2000, 2000],
    },
    functions: [],
  };

  it("weighs each side by its share, so lengths of time do not matter", () => {
    const t = fromDiff(res);
    expect(t.total[0]).toBeCloseTo(2);
    expect(t.total[2]).toBeCloseTo(0.1 + 0.5);
    expect(t.total[3]).toBeCloseTo(0.9 + 0.5);
    expect(diffDelta(t.diff!, 2)).toBeCloseTo(0.4); // 10% -> 50%: grew
    expect(diffDelta(t.diff!, 3)).toBeCloseTo(-0.4); // 90% -> 50%: shrank
    expect(diffDelta(t.diff!, 0)).toBeCloseTo(0);
  });

  it("survives an empty side", () => {
    const t = fromDiff({ ...res, baseline_total: 0, nodes: { ...res.nodes, baseline: [0, 0, 0, 0], baseline_self: [0, 0, 0, 0] } });
    expect(t.total[0]).toBeCloseTo(1);
    expect(diffDelta(t.diff!, 2)).toBeCloseTo(0.5);
  });
});
