import { describe, expect, it } from "vitest";
import { condition, expression, metricValue, seconds, thresholdUnit } from "./text";

describe("alert values", () => {
  it("reads each unit as people do", () => {
    expect(metricValue(42, "percent")).toBe("42.0%");
    expect(metricValue(-3.1, "pp")).toBe("−3.10 pp");
    expect(metricValue(3.1, "pp")).toBe("+3.10 pp");
    expect(metricValue(0.25, "ratio")).toBe("25.0%");
    expect(metricValue(1_500_000, "ns")).toBe("1.5 ms");
    expect(metricValue(90, "seconds")).toBe("1.5 min");
    expect(metricValue(0.5, "per_second")).toBe("0.50/s");
    expect(metricValue(12345, "rows")).toBe("12,345 rows");
    expect(metricValue(null, "percent")).toBe("–");
  });

  it("writes a rule's condition and expression", () => {
    const rule = {
      expression: { metric: "cpu_share", params: { function: "parse_json", window: "5m" } },
      operator: ">" as const,
      threshold: 40,
    };
    expect(expression(rule)).toBe("cpu_share(function=parse_json, window=5m)");
    expect(condition(rule, "percent")).toBe("> 40.0%");
    expect(thresholdUnit("ns")).toBe("ns");
  });

  it("writes durations the way a rule file does", () => {
    expect(seconds(0)).toBe("0");
    expect(seconds(120)).toBe("2m");
    expect(seconds(3600)).toBe("1h");
    expect(seconds(45)).toBe("45s");
    expect(seconds(null)).toBe("–");
  });
});
