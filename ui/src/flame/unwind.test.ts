import { describe, expect, it } from "vitest";
import type { UnwindResponse } from "../api/types";
import { unwindText } from "./unwind";

const ENDS = { bottom: 971, depth: 20, no_mapping: 0, no_table: 4, no_info: 0, unsupported: 0, read_fault: 0, bad_frame: 0 };

function answer(over: Partial<UnwindResponse> = {}): UnwindResponse {
  return {
    batches: 4,
    batches_with_unwind_data: 4,
    modes: { auto: 4 },
    samples: { table_walks: 995, complete: 971, truncated: 24, fp_only: 5, fp_frames: 7 },
    ends: ENDS,
    tables: { bytes_max: 3 << 20, loaded_max: 12 },
    losses: { unwound_stack_collisions: 0, unwound_stacks_full: 2, unwind_tables_evicted: 0, unwind_tables_too_large: 1 },
    ...over,
  };
}

describe("unwindText", () => {
  it("gives shares over table walks plus frame-pointer-only samples", () => {
    const t = unwindText(answer())!;
    expect(t.line).toBe(
      "User stacks: 97.1% complete to their entry point · 2.4% stopped early · 0.5% frame pointers only",
    );
    expect(t.title.split("\n")).toEqual([
      "1,000 user stacks in 4 windows (--unwind auto): 971 complete, 24 stopped early, 5 by frame pointers only (process not registered yet)",
      "Stopped early because: 128 frames reached 20, code without a table 4",
      "7 table walks used a frame pointer for a frame without a table",
      "Unwind tables: 12 binaries, 3.0 MiB of kernel memory (the most one agent reported at a window's end)",
      "Lost: 2 unwound stacks lost to a full map, 1 unwind tables refused as too large",
    ]);
  });

  it("says which windows reported when some agents are older", () => {
    expect(unwindText(answer({ batches: 6 }))!.line).toMatch(/ · 4 of 6 windows reported$/);
  });

  it("says unwinding is not reported, never 0% complete", () => {
    const t = unwindText(answer({ batches_with_unwind_data: 0, modes: {}, samples: null, ends: null, tables: null, losses: null }))!;
    expect(t.line).toBe("User stacks: unwinding not reported by these agents");
    expect(t.line).not.toMatch(/%/);
    expect(t.title).toBe("None of the 4 windows in this range came from an agent that reports how it unwound user stacks.");
  });

  it("shows nothing for a range without CPU windows", () => {
    expect(unwindText(answer({ batches: 0, batches_with_unwind_data: 0, modes: {}, samples: null }))).toBeNull();
  });

  it("names frame-pointer mode instead of dividing by zero", () => {
    const zero = { table_walks: 0, complete: 0, truncated: 0, fp_only: 0, fp_frames: 0 };
    expect(unwindText(answer({ modes: { fp: 4 }, samples: zero }))!.line).toBe("User stacks: frame pointers (--unwind fp)");
    expect(unwindText(answer({ samples: zero }))!.line).toBe("User stacks: none recorded (--unwind auto)");
  });

  it("says a process filter does not narrow the counts", () => {
    expect(unwindText(answer(), true)!.line).toMatch(/ \(all processes of these agents: counted per window\)$/);
  });
});
