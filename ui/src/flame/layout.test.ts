import { describe, expect, it } from "vitest";
import { diffColors, diffLevel, DIFF_NOISE, hslToRgb, isGrew, isShrank, moduleColors } from "./colors";
import { fitLabel, hitTest, layout } from "./layout";
import { drawLabels, paint, type Raster } from "./render";
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
    expect((performance.now() - t0) / 10).toBeLessThan(100); // ~5 ms warm: a guard against going quadratic
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

function textRecorder() {
  const r = {
    fillStyle: "" as string | CanvasGradient | CanvasPattern,
    font: "",
    textBaseline: "alphabetic" as CanvasTextBaseline,
    texts: [] as string[],
    fillText(text: string) {
      r.texts.push(text);
    },
  };
  return r;
}

function raster(width: number, height: number): Raster {
  return { data: new Uint32Array(width * height), width, height };
}

const GEOMETRY = { rowHeight: 18, upsideDown: false };

describe("paint", () => {
  const t = folded({ "p;main@app;a@libc.so.6": 30, "p;main@app;b@app": 1, "q;x@libz": 1000 });
  const colors = moduleColors(t);

  it("fills each frame with its colour, 1 px gap to the right, 1 px below", () => {
    const l = layout(t, 0, 300);
    const r = raster(300, l.rows * 18);
    expect(paint(r, l, { ...GEOMETRY, height: l.rows * 18, colors, rgba: colors.rgba, highlight: null, dpr: 1 })).toBe(l.count);
    const at = (x: number, y: number) => r.data[y * r.width + x];
    const main = findPath(t, ["p", "main"]);
    const a = findPath(t, ["p", "main", "a"]);
    expect(at(2, 18 * 2 + 5)).toBe(colors.rgba[colors.index[main]]);
    expect(at(2, 18 * 3 + 5)).toBe(colors.rgba[colors.index[a]]);
    expect(at(2, 18 * 3 + 17)).toBe(0); // the gap under a row
    const aw = l.w[Array.from(l.node).indexOf(a)];
    expect(at(Math.floor(aw) - 1, 18 * 3 + 5)).toBe(0); // the gap right of a frame
    expect(at(299, 18 * 3 + 5)).toBe(0); // x has no children
  });

  it("keeps a frame of half a pixel visible, one device pixel wide", () => {
    const l = layout(t, 0, 620); // b: 1 of 1031 samples = 0.6 px
    const b = findPath(t, ["p", "main", "b"]);
    const k = Array.from(l.node.subarray(0, l.count)).indexOf(b);
    expect(l.w[k]).toBeGreaterThan(0.5);
    expect(l.w[k]).toBeLessThan(1);
    const r = raster(620, l.rows * 18);
    paint(r, l, { ...GEOMETRY, height: l.rows * 18, colors, rgba: colors.rgba, highlight: null, dpr: 1 });
    expect(r.data[(18 * 3 + 5) * 620 + Math.floor(l.x[k])]).toBe(colors.rgba[colors.index[b]]);
  });

  it("dims what the search did not match, and scales by the device pixel ratio", () => {
    const l = layout(t, 0, 300);
    const highlight = new Uint8Array(t.n);
    const x = findPath(t, ["q", "x"]);
    highlight[x] = 1;
    const r = raster(600, l.rows * 36);
    paint(r, l, { ...GEOMETRY, height: l.rows * 18, colors, rgba: colors.rgba, highlight, dpr: 2 });
    const dim = colors.rgba[colors.rgba.length - 1];
    expect(r.data[(36 * 2 + 10) * 600 + 4]).toBe(dim); // main
    expect(r.data[(36 * 2 + 10) * 600 + 590]).toBe(colors.rgba[colors.index[x]]);
    expect(r.data[10 * 600 + 4]).toBe(colors.rgba[colors.index[0]]); // the root is never dimmed
  });

  it("draws callers upward from the bottom", () => {
    const l = layout(t, 0, 300);
    const h = l.rows * 18;
    const r = raster(300, h);
    paint(r, l, { rowHeight: 18, upsideDown: true, height: h, colors, rgba: colors.rgba, highlight: null, dpr: 1 });
    expect(r.data[(h - 10) * 300 + 4]).toBe(colors.rgba[colors.index[0]]);
  });

  it("paints 100k visible frames quickly", () => {
    // 1600 chains of 62 frames: every frame over half a pixel at 835 px
    const stacks: Record<string, number> = {};
    for (let c = 0; c < 1600; c++) {
      const tail = Array.from({ length: 62 }, (_, k) => `s${k}_${c % 5}`).join(";");
      stacks[`p;m${c % 10};op${c};${tail}`] = 5;
    }
    const big = folded(stacks);
    expect(big.n).toBeGreaterThan(100_000);
    const big_colors = moduleColors(big);
    const l = layout(big, 0, 835);
    expect(l.count).toBe(big.n);
    const r = raster(835, l.rows * 18);
    const t0 = performance.now();
    paint(r, l, { ...GEOMETRY, height: l.rows * 18, colors: big_colors, rgba: big_colors.rgba, highlight: null, dpr: 1 });
    expect(performance.now() - t0).toBeLessThan(250); // ~5-40 ms: a guard against going quadratic
  });
});

describe("labels", () => {
  it("labels only frames that fit", () => {
    const t = folded({ "p;main@app;a@libc.so.6": 30, "p;main@app;b@app": 1, "q;x@libz": 1000 });
    const l = layout(t, 0, 300);
    const ctx = textRecorder();
    const n = drawLabels(ctx, t, l, { ...GEOMETRY, height: 100, font: "12px monospace", charWidth: 7, textColor: "#000" });
    expect(ctx.texts).toContain("all");
    expect(ctx.texts).toContain("x");
    expect(ctx.texts).not.toContain("b"); // under a pixel wide
    expect(n).toBe(ctx.texts.length);
  });

  it("colours the same module the same way", () => {
    const t = folded({ "p;a@libc.so.6;b@app;c@libc.so.6": 1 });
    const c = moduleColors(t);
    expect(c.index[2]).toBe(c.index[4]);
    expect(c.index[2]).not.toBe(c.index[3]);
    expect(c.rgba.length).toBe(c.palette.length + 1);
  });

  it("converts HSL like CSS does", () => {
    expect(hslToRgb(0, 100, 50)).toEqual([255, 0, 0]);
    expect(hslToRgb(120, 100, 25)).toEqual([0, 128, 0]);
    expect(hslToRgb(210, 0, 50)).toEqual([128, 128, 128]);
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
        name: [0, 1, 2, 3, 4], module: [0, 0, 1, 1, 1], kind: [0, 0, 1, 1, 1], line: [0, 0, 0, 0, 0], depth: [0, 1, 2, 2, 2],
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
