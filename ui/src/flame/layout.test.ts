import { describe, expect, it } from "vitest";
import { diffColors, diffLevel, DIFF_NOISE, isGrew, isShrank, moduleColors } from "./colors";
import { fitLabel, hitTest, layout } from "./layout";
import { draw, type Ctx } from "./render";
import { folded, wide } from "./testing";
import { findPath, fromDiff } from "./tree";

describe("layout", () => {
  const t = folded({ "p;main;a": 3, "p;main;b": 5, "p;main": 2, "q;x": 10 });

  it("scales frames to the width", () => {
    const l = layout(t, 0, 200);
    expect(l.count).toBe(t.n);
    const at = (i: number) => Array.from(l.node.subarray(0, l.count)).indexOf(i);
    expect(l.w[at(0)]).toBe(200);
    expect(l.w[at(1)]).toBe(100); // p: 10 of 20
    expect(l.x[at(5)]).toBe(100); // q starts after p
    expect(l.x[at(4)]).toBe(30); // b after a (3 of 20 = 30px)
    expect(l.rows).toBe(4);
  });

  it("zooms: the focus fills the width, its ancestors stay above at full width", () => {
    const main = findPath(t, ["p", "main"]);
    const l = layout(t, main, 100);
    const nodes = Array.from(l.node.subarray(0, l.count));
    expect(nodes).toEqual([0, 1, 2, 3, 4]); // q and x are outside the focus
    expect(l.w[0]).toBe(100);
    expect(l.w[1]).toBe(100);
    expect(l.w[3]).toBeCloseTo(30);
    expect(l.x[4]).toBeCloseTo(30);
  });

  it("culls frames below half a pixel with their subtrees", () => {
    const big = wide(100_000, 10);
    const l = layout(big, 0, 1280);
    expect(l.count + l.culled).toBe(big.n);
    expect(l.count).toBeLessThan(big.n / 10);
    let narrow = 0;
    for (let k = 0; k < l.count; k++) if (l.w[k] < 0.5) narrow++;
    expect(narrow).toBe(0);
    // nothing is culled when everything is wide enough
    expect(layout(big, 0, 1280, 0).count).toBe(big.n);
  });

  it("lays out 100k nodes quickly", () => {
    const big = wide(100_000, 8);
    const t0 = performance.now();
    for (let k = 0; k < 10; k++) layout(big, 0, 1280);
    expect((performance.now() - t0) / 10).toBeLessThan(50);
  });

  it("finds the frame under the pointer", () => {
    const l = layout(t, 0, 200);
    const k = hitTest(l, 35, 3);
    expect(t.names[t.name[l.node[k]]]).toBe("b");
    expect(hitTest(l, 10, 3)).toBe(Array.from(l.node).indexOf(3));
    expect(hitTest(l, 150, 3)).toBe(-1); // q;x has no row 3
    expect(hitTest(l, 150, 9)).toBe(-1);
    expect(t.names[t.name[l.node[hitTest(l, 199.9, 1)]]]).toBe("q");
  });

  it("fits labels or leaves them out", () => {
    expect(fitLabel("parse_request", 200, 7)).toBe("parse_request");
    expect(fitLabel("parse_request", 60, 7)).toBe("parse_…"); // (60 - 8) / 7 = 7 characters
    expect(fitLabel("parse_request", 20, 7)).toBe("");
  });
});

function recorder(): Ctx & { rects: number; fills: string[]; texts: string[] } {
  const r = {
    fillStyle: "" as string | CanvasGradient | CanvasPattern,
    font: "",
    textBaseline: "alphabetic" as CanvasTextBaseline,
    rects: 0,
    fills: [] as string[],
    texts: [] as string[],
    beginPath() {},
    rect() { r.rects++; },
    fill() { r.fills.push(String(r.fillStyle)); },
    fillText(text: string) { r.texts.push(text); },
    clearRect() {},
  };
  return r;
}

describe("draw", () => {
  it("fills once per colour and labels only frames that fit", () => {
    const t = folded({ "p;main@app;a@libc.so.6": 30, "p;main@app;b@app": 1, "q;x@libz": 1000 });
    const l = layout(t, 0, 300);
    const ctx = recorder();
    const stats = draw(ctx, t, l, {
      rowHeight: 18, upsideDown: false, height: 100, colors: moduleColors(t), highlight: null,
      font: "12px monospace", charWidth: 7, textColor: "#000",
    });
    expect(ctx.rects).toBe(l.count);
    expect(new Set(ctx.fills).size).toBe(ctx.fills.length);
    expect(ctx.texts).toContain("all");
    expect(ctx.texts).toContain("x");
    expect(ctx.texts).not.toContain("b"); // under a pixel wide
    expect(stats.labels).toBe(ctx.texts.length);
  });

  it("colours the same module the same way", () => {
    const t = folded({ "p;a@libc.so.6;b@app;c@libc.so.6": 1 });
    const c = moduleColors(t);
    expect(c.index[2]).toBe(c.index[4]);
    expect(c.index[2]).not.toBe(c.index[3]);
  });
});

describe("diff colours", () => {
  it("red for grew, green for shrank, neutral for noise", () => {
    expect(isGrew(diffLevel(0.2, 0.4))).toBe(true);
    expect(isShrank(diffLevel(-0.2, 0.4))).toBe(true);
    expect(diffLevel(DIFF_NOISE / 2, 0.4)).toBe(0);
    expect(diffLevel(0.4, 0.4)).toBeGreaterThan(diffLevel(0.1, 0.4));
  });

  it("colours a constructed regression", () => {
    const t = fromDiff({
      type: "cpu", unit: "samples", baseline_total: 100, comparison_total: 100,
      names: ["all", "app", "hot", "cold", "same"],
      nodes: {
        name: [0, 1, 2, 3, 4], module: [0, 0, 1, 1, 1], kind: [0, 0, 1, 1, 1], depth: [0, 1, 2, 2, 2],
        baseline: [100, 100, 10, 60, 30], comparison: [100, 100, 60, 10, 30],
        baseline_self: [0, 0, 10, 60, 30], comparison_self: [0, 0, 60, 10, 30],
      },
      functions: [],
    });
    for (const scheme of ["redgreen", "colorblind"] as const) {
      const c = diffColors(t, scheme);
      expect(isGrew(c.index[2])).toBe(true);
      expect(isShrank(c.index[3])).toBe(true);
      expect(c.index[4]).toBe(0);
      expect(c.index[0]).toBe(0);
    }
    expect(diffColors(t, "redgreen").palette[1]).not.toBe(diffColors(t, "colorblind").palette[1]);
  });
});
