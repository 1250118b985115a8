import { describe, expect, it } from "vitest";
import { densify, effectiveStep, pickStep } from "./buckets";

const S = 1e9;

describe("timeline buckets", () => {
  it("asks for at most ~150 buckets", () => {
    expect(pickStep(3600e3)).toBe(30);
    expect(pickStep(300e3)).toBe(5);
    expect(pickStep(7 * 86400e3)).toBe(7200);
  });

  it("widens the step to the agents' window spacing", () => {
    const series = [{ key: "a", points: [[0, 1], [120 * S, 1], [240 * S, 1]] as [number, number][] }];
    expect(effectiveStep(series, 30)).toBe(120);
    expect(effectiveStep(series, 300)).toBe(300);
    expect(effectiveStep([{ key: "a", points: [[0, 1]] }], 30)).toBe(30);
  });

  it("fills empty buckets with zeros and sums points that share one", () => {
    const series = [{ key: "a", points: [[60 * S, 5], [90 * S, 2], [240 * S, 7]] as [number, number][] }];
    const [d] = densify(series, 0, 300e3, 60);
    expect(d.points.map((p) => p[1])).toEqual([0, 7, 0, 0, 7]); // the open bucket at 300 s is left out
    expect(d.points[1][0]).toBe(60 * S);
    const [closed] = densify(series, 0, 400e3, 60);
    expect(closed.points.map((p) => p[1])).toEqual([0, 7, 0, 0, 7, 0]);
    const [cut] = densify(series, 10e3, 300e3, 60); // the bucket at 0 starts before the range
    expect(cut.points.map((p) => p[1])).toEqual([7, 0, 0, 7]);
    expect(cut.points[0][0]).toBe(60 * S);
  });
});
