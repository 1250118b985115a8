import { describe, expect, it } from "vitest";
import { DEFAULTS, filterParams, formatUrl, parseLabels, parseUrl } from "./url";
import { describeRange, msToNs, previousRange, resolveMs } from "./time";

describe("URL state", () => {
  it("round-trips every field", () => {
    const s = {
      ...DEFAULTS,
      view: "flamegraph" as const,
      from: "-6h",
      host: "web-1",
      pid: "42",
      labels: { service: "api", zone: "b" },
      live: true,
      type: "lock" as const,
      focus: ["python3", "main", "a;b"].slice(0, 2),
      search: "parse",
      invert: true,
      fn: "hot",
      fnModule: "app",
      sandwich: true,
      palette: "colorblind" as const,
      lockClass: "idle" as const,
    };
    const url = formatUrl(s);
    const [path, query] = url.split("?");
    expect(path).toBe("/flamegraph");
    expect(parseUrl(path, "?" + query)).toEqual(s);
  });

  it("keeps defaults out of the URL", () => {
    expect(formatUrl(DEFAULTS)).toBe("/");
    expect(formatUrl({ ...DEFAULTS, view: "syscalls" })).toBe("/syscalls");
  });

  it("falls back to defaults on nonsense", () => {
    const s = parseUrl("/nope", "?type=gpu&max_nodes=-3&group_by=x");
    expect(s.view).toBe("overview");
    expect(s.type).toBe("cpu");
    expect(s.maxNodes).toBe(DEFAULTS.maxNodes);
    expect(s.group).toBe("host");
    expect(parseUrl("/locks", "?lock_class=busy").lockClass).toBe("contention");
  });

  it("turns filters into API parameters", () => {
    const s = parseUrl("/", "?host=a&label.service=api&from=-5m");
    expect(filterParams(s)).toEqual({ from: "-5m", to: "now", host: "a", "label.service": "api" });
  });

  it("parses the labels box", () => {
    expect(parseLabels("service=api, zone = b")).toEqual({ service: "api", zone: "b" });
    expect(parseLabels("")).toEqual({});
    expect(parseLabels("novalue")).toBeNull();
  });
});

describe("time", () => {
  const now = Date.UTC(2026, 10, 25, 12, 0, 0);

  it("resolves the API's expressions", () => {
    expect(resolveMs("now", now)).toBe(now);
    expect(resolveMs("-15m", now)).toBe(now - 15 * 60e3);
    expect(resolveMs("-7d", now)).toBe(now - 7 * 86400e3);
    expect(resolveMs("2026-11-25T10:00:00Z", now)).toBe(Date.UTC(2026, 10, 25, 10));
    expect(resolveMs(msToNs(now), now)).toBe(now);
    expect(resolveMs("yesterday", now)).toBeNaN();
  });

  it("writes exact nanoseconds", () => {
    expect(msToNs(1795600000123)).toBe("1795600000123000000");
  });

  it("puts the default baseline just before the range", () => {
    expect(previousRange("-1h", "now", now)).toEqual(["-2h", "-1h"]);
    expect(previousRange("-30m", "-10m", now)).toEqual(["-50m", "-30m"]);
    const [f, t] = previousRange(msToNs(now - 60e3), msToNs(now), now);
    expect(resolveMs(f, now)).toBe(now - 120e3);
    expect(resolveMs(t, now)).toBe(now - 60e3);
  });

  it("describes ranges", () => {
    expect(describeRange("-1h", "now", now)).toBe("last 1h");
  });
});
