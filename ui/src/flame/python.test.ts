import { describe, expect, it } from "vitest";
import { kindColor, kindsIn, moduleColors } from "./colors";
import { frameWhere } from "./Tooltip";
import { buildTree, fromDiff, Kind, KIND_NAMES } from "./tree";

// all → python3 → Py_RunMain (user) → <module> (python) → hot_a (python) → encoder (user)
const names = ["all", "python3", "Py_RunMain", "libpython3.11.so", "<module>", "/srv/app/work.py", "hot_a", "encoder", "_json.so", ""];
const cols = {
  name: [0, 1, 2, 4, 6, 7],
  module: [9, 9, 3, 5, 5, 8],
  kind: [Kind.root, Kind.root, Kind.user, Kind.python, Kind.python, Kind.user],
  line: [0, 0, 0, 40, 12, 0],
  depth: [0, 1, 2, 3, 4, 5],
  self: [0, 0, 0, 0, 90, 10],
  total: [100, 100, 100, 100, 100, 10],
};

function rgbOf(css: string): number[] {
  return (css.match(/\d+/g) ?? []).map(Number);
}

describe("python frames", () => {
  const tree = buildTree(names, cols);

  it("are a kind of their own, named python", () => {
    expect(KIND_NAMES[Kind.python]).toBe("python");
    expect(kindsIn(tree)).toEqual([Kind.user, Kind.python]);
  });

  it("are coloured apart from native user, kernel and JIT frames", () => {
    const colors = moduleColors(tree);
    const py = colors.palette[colors.index[4]];
    const native = colors.palette[colors.index[2]];
    expect(py).not.toBe(native);
    const [r, g, b] = rgbOf(py);
    expect(b).toBeGreaterThan(g); // violet: blue over green, unlike user red and JIT green
    expect(r).toBeGreaterThan(g);
    for (const other of [Kind.user, Kind.kernel, Kind.jit, Kind.unknown]) {
      expect(kindColor(Kind.python)).not.toBe(kindColor(other));
    }
  });

  it("show file:line in the tooltip; native frames show their module", () => {
    expect(frameWhere(tree, 4)).toBe("/srv/app/work.py:12");
    expect(frameWhere(tree, 3)).toBe("/srv/app/work.py:40");
    expect(frameWhere(tree, 5)).toBe("_json.so");
    expect(frameWhere(tree, 2)).toBe("libpython3.11.so");
  });

  it("show the file alone when the line is unknown or the aggregator sends no lines", () => {
    const noLines = buildTree(names, { ...cols, line: undefined });
    expect(noLines.line).toBeUndefined();
    expect(frameWhere(noLines, 4)).toBe("/srv/app/work.py");
    const zero = buildTree(names, { ...cols, line: [0, 0, 0, 0, 0, 0] });
    expect(frameWhere(zero, 4)).toBe("/srv/app/work.py");
  });

  it("keep their line in diff trees", () => {
    const diff = fromDiff({
      type: "cpu",
      unit: "samples",
      baseline_total: 100,
      comparison_total: 100,
      names,
      nodes: {
        name: cols.name,
        module: cols.module,
        kind: cols.kind,
        line: cols.line,
        depth: cols.depth,
        baseline: cols.total,
        comparison: cols.total,
        baseline_self: cols.self,
        comparison_self: cols.self,
      },
      functions: [],
    });
    expect(frameWhere(diff, 4)).toBe("/srv/app/work.py:12");
  });
});
