// The line under the CPU flame graph that says how its user stacks were unwound,
// worded as the agent's own summary words it (agent/summary.py), from /api/v1/unwind.

import type { UnwindResponse } from "../api/types";
import * as fmt from "../format";

// enum unwind_end but the bottom (a complete walk)
const EARLY_ENDS: Record<string, string> = {
  depth: "128 frames reached",
  no_mapping: "pc in no known mapping",
  no_table: "code without a table",
  no_info: "pc not covered by its table",
  unsupported: "unwind rule not supported",
  read_fault: "stack memory unreadable",
  bad_frame: "frame going nowhere",
};

const LOSSES: Record<string, string> = {
  unwound_stack_collisions: "unwound stacks lost to hash collisions",
  unwound_stacks_full: "unwound stacks lost to a full map",
  unwind_tables_evicted: "unwind tables evicted",
  unwind_tables_too_large: "unwind tables refused as too large",
};

export interface UnwindText {
  line: string;
  /** the tooltip: end reasons, tables' memory, losses */
  title: string;
}

function windows(n: number): string {
  return `${fmt.exact(n)} window${n === 1 ? "" : "s"}`;
}

/**
 * What to show for an answer; null when the range has no CPU windows at all.
 * `perProcess`: the view filters by pid or comm, which unwind counts cannot follow.
 */
export function unwindText(u: UnwindResponse, perProcess = false): UnwindText | null {
  if (u.batches === 0) return null;
  const scope = perProcess ? " (all processes of these agents: counted per window)" : "";
  if (u.batches_with_unwind_data === 0 || !u.samples) {
    return {
      line: `User stacks: unwinding not reported by these agents${scope}`,
      title: `None of the ${windows(u.batches)} in this range came from an agent that reports how it unwound user stacks.`,
    };
  }
  const s = u.samples;
  const modes = Object.keys(u.modes);
  const modeText = modes.length ? ` (--unwind ${modes.join(", ")})` : "";
  const partial =
    u.batches_with_unwind_data < u.batches ? ` · ${fmt.exact(u.batches_with_unwind_data)} of ${windows(u.batches)} reported` : "";
  const stacks = s.table_walks + s.fp_only;
  let line: string;
  if (stacks === 0) {
    line =
      modes.length > 0 && modes.every((m) => m === "fp")
        ? "User stacks: frame pointers (--unwind fp)"
        : `User stacks: none recorded${modeText}`;
  } else {
    line =
      `User stacks: ${fmt.pct(s.complete / stacks, 1)} complete to their entry point` +
      ` · ${fmt.pct(s.truncated / stacks, 1)} stopped early` +
      ` · ${fmt.pct(s.fp_only / stacks, 1)} frame pointers only`;
  }
  const title = [
    `${fmt.exact(stacks)} user stacks in ${windows(u.batches_with_unwind_data)}${modeText}: ` +
      `${fmt.exact(s.complete)} complete, ${fmt.exact(s.truncated)} stopped early, ` +
      `${fmt.exact(s.fp_only)} by frame pointers only (process not registered yet)`,
  ];
  const early = Object.entries(u.ends ?? {})
    .filter(([end, n]) => end !== "bottom" && n > 0)
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  title.push(
    early.length
      ? `Stopped early because: ${early.map(([end, n]) => `${EARLY_ENDS[end] ?? end} ${fmt.exact(n)}`).join(", ")}`
      : "Stopped early because: —",
  );
  title.push(`${fmt.exact(s.fp_frames)} table walks used a frame pointer for a frame without a table`);
  if (u.tables) {
    title.push(
      `Unwind tables: ${fmt.exact(u.tables.loaded_max)} binaries, ${fmt.bytes(u.tables.bytes_max)} of kernel memory ` +
        "(the most one agent reported at a window's end)",
    );
  }
  const lost = Object.entries(u.losses ?? {}).filter(([, n]) => n > 0);
  if (lost.length) title.push(`Lost: ${lost.map(([k, n]) => `${fmt.exact(n)} ${LOSSES[k] ?? k}`).join(", ")}`);
  return { line: line + partial + scope, title: title.join("\n") };
}
