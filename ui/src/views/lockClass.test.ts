import { describe, expect, it } from "vitest";
import type { LockRow } from "../api/types";
import { classOf, countByClass, shownClass } from "./lockClass";

function row(address: string, lock_class: string): LockRow {
  return {
    address, pid: 1, comm: "app", kind: "", kind_label: "", lock_class, contentions: 1, wait_ns: 1, avg_ns: 1,
    max_ns: 1, p99_ns: 1, eagain: 0, timeouts: 0, releases: 0, holds: 0, hold_ns: 0, hold_p50_ns: 0,
    hold_p99_ns: 0, hold_max_ns: 0, top_stack: [], top_holder: [],
  };
}

describe("lock classes", () => {
  const mutex = row("0x1", "contention");
  const condvar = row("0x2", "idle");
  const odd = row("0x3", "something new");

  it("counts each class, an unknown class as unclassified", () => {
    expect(classOf(odd)).toBe("unknown");
    expect(countByClass([mutex, condvar, odd, row("0x4", "idle")])).toEqual({ contention: 1, idle: 2, unknown: 1 });
  });

  it("shows the selected lock's class, else the one asked for if it has locks, else the first that has", () => {
    expect(shownClass([mutex, condvar], "contention", condvar)).toBe("idle");
    expect(shownClass([mutex, condvar], "idle", null)).toBe("idle");
    expect(shownClass([condvar, odd], "contention", null)).toBe("idle");
    expect(shownClass([], "unknown", null)).toBe("unknown");
  });
});
