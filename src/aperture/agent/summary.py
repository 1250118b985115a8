"""The end-of-run summary: what was recorded and what was lost."""

from __future__ import annotations

from collections import Counter

from aperture.agent.run_totals import ModeTotals, RunTotals
from aperture.analysis import aggregate
from aperture.formats.humanize import format_duration_ns
from aperture.formats.tables import format_lock_table, format_syscall_table
from aperture.model import Frame, FrameKind, Profile


def unknown_frame_share(profile: Profile) -> float:
    """Fraction of sampled frames (weighted by value) that resolved to no symbol."""
    frames = unknown = 0
    for sample in profile.samples:
        for frame in sample.stack:
            frames += sample.value
            if frame.kind is FrameKind.UNKNOWN or "+0x" in frame.name:
                unknown += sample.value
    return unknown / frames if frames else 0.0


def format_cpu_summary(totals: ModeTotals, *, top: int = 10) -> str:
    profile = totals.profile()
    total = profile.total
    lines = [
        f"CPU: {total} samples at {profile.frequency_hz} Hz over {profile.duration_s:.1f}s, "
        f"{totals.processes} processes, {totals.threads} threads",
    ]
    if totals.idle_samples:
        lines.append(
            f"  idle samples not recorded: {totals.idle_samples} (use --include-idle to keep them)"
        )
    lines.append(f"  unknown frames: {unknown_frame_share(profile):.1%}")
    lines.extend(_unwind_lines(totals))
    lines.append(_losses(profile))
    if total:
        functions = [f for f in aggregate([profile], limit=top).functions if f.self_value]
        names = Counter(f.name for f in functions)
        lines.append(f"  top {top} functions by self samples:")
        for f in functions:
            # one function per (name, module), as the API and the exports count them
            shown = f"{f.name} ({f.module})" if names[f.name] > 1 else f.name
            lines.append(f"    {f.self_value / total:6.1%} {f.self_value:>8}  {shown}")
    return "\n".join(lines)


# enum unwind_end but the bottom, as the summary words them
_EARLY_ENDS = {
    "depth": "128 frames reached",
    "no_mapping": "pc in no known mapping",
    "no_table": "code without a table",
    "no_info": "pc not covered by its table",
    "unsupported": "unwind rule not supported",
    "read_fault": "stack memory unreadable",
    "bad_frame": "frame going nowhere",
}


def _unwind_lines(totals: ModeTotals) -> list[str]:
    """How user stacks were unwound, as shares of the samples that had one."""
    u = totals.unwind
    if not totals.unwind_mode or totals.unwind_mode == "fp":
        return [f"  user stacks: frame pointers (--unwind {totals.unwind_mode or 'fp'})"]
    walks, fp_only = u["table_walks"], u["fp_only"]
    stacks = walks + fp_only
    if not stacks:
        return [f"  user stacks: none recorded (--unwind {totals.unwind_mode})"]
    lines = [
        f"  user stacks (--unwind {totals.unwind_mode}): {u['complete'] / stacks:.1%} complete "
        f"to their entry point, {u['truncated'] / stacks:.1%} stopped early, "
        f"{fp_only / stacks:.1%} by frame pointers only (process not registered yet); "
        f"{u['fp_frames']} walks used a frame pointer for a frame without a table"
    ]
    early = {e: u[f"end_{e}"] for e in _EARLY_ENDS if u[f"end_{e}"]}
    if early:
        lines.append(
            "    stopped early because: "
            + ", ".join(
                f"{_EARLY_ENDS[e]} {n}" for e, n in sorted(early.items(), key=lambda kv: -kv[1])
            )
        )
    python = u["python_samples"] + u["python_native_threads"] + u["python_incomplete"]
    if u["python_unsupported"]:
        lines.append(
            f"  Python: {u['python_unsupported']} processes run an interpreter that cannot be "
            "read (not CPython 3.10-3.13): their stacks stay native"
        )
    if python:
        lines.append(
            f"  Python: {u['python_samples'] / python:.1%} of Python processes' samples show their "
            f"Python functions; {u['python_native_threads']} from threads running no Python, "
            f"{u['python_incomplete']} cut short, {u['python_unmerged']} stacks kept native "
            "(frames that did not pair up with the eval loop's)"
        )
    tables = totals.unwind_tables
    if tables:
        lines.append(
            f"  unwind tables: {tables.get('unwind_tables_loaded', 0)} binaries, "
            f"{tables.get('unwind_table_bytes', 0) / (1 << 20):.1f} MiB of kernel memory"
        )
    return lines


def _losses(profile: Profile) -> str:
    lost = {name: n for name, n in profile.losses.items() if n}
    return "  losses: " + (", ".join(f"{n} {name}" for name, n in lost.items()) if lost else "none")


def format_lock_summary(totals: ModeTotals, *, top: int = 10) -> str:
    profile = totals.profile()
    lines = [
        f"Locks: {totals.lock_waits} futex waits on {totals.contended} lock words over "
        f"{profile.duration_s:.1f}s, {format_duration_ns(totals.lock_wait_ns)} waited: "
        f"{format_duration_ns(totals.contention_ns)} of it contention (a lock another "
        "thread held), the rest idle or unclassified waiting",
        _losses(profile),
    ]
    if totals.contended.seen:
        lines.append(format_lock_table(profile, limit=top).rstrip())
    return "\n".join(lines)


def format_syscall_summary(totals: ModeTotals, *, top: int = 15, per_process: bool = False) -> str:
    profile = totals.profile()
    lines = [
        f"Syscalls: {totals.calls} calls ({totals.errors} errors) by "
        f"{totals.processes} processes over {profile.duration_s:.1f}s",
        _losses(profile),
    ]
    if totals.calls:
        lines.append(format_syscall_table(profile, per_process=per_process, limit=top).rstrip())
    return "\n".join(lines)


def _wait_site(stack: tuple[Frame, ...]) -> str:
    """Where in the program a wait began: its innermost frame outside the kernel."""
    for frame in reversed(stack):
        if frame.module == "[sched]":  # the state leaf; or no stack was taken
            if frame.kind is not FrameKind.KERNEL:
                return "(stacks not sampled)"
        elif frame.kind is not FrameKind.KERNEL:
            return f"{frame.name} ({frame.module})" if frame.module else frame.name
    return "(kernel threads)"


def format_offcpu_summary(totals: ModeTotals, *, top: int = 10) -> str:
    profile = totals.profile()
    total = profile.total
    c = totals.counts
    min_ns = int(totals.options.get("min_block_ns", "0") or 0)
    lines = [
        f"Off-CPU: {format_duration_ns(total)} off CPU in {totals.processes} processes, "
        f"{totals.threads} threads over {profile.duration_s:.1f}s",
        f"  blocks: {c['blocks']} ended, {c['short_blocks']} shorter than "
        f"{format_duration_ns(min_ns)} not recorded ({format_duration_ns(c['short_ns'])} in all), "
        f"{c['blocks_not_sampled']} recorded without stacks "
        f"(--offcpu-sample {totals.options.get('sample_every', '1')})",
        _losses(profile),
    ]
    if total:
        states: Counter[str] = Counter()
        sites: Counter[str] = Counter()
        for s in profile.samples:
            leaf = s.stack[-1].name if s.stack else ""
            states[leaf.removeprefix("[off-CPU: ").removesuffix("]")] += s.value
            sites[_wait_site(s.stack)] += s.value
        lines.append(
            "  by state: "
            + ", ".join(f"{name} {value / total:.1%}" for name, value in states.most_common())
        )
        lines.append(f"  top {top} places waited (the innermost frame outside the kernel):")
        for site, value in sites.most_common(top):
            lines.append(f"    {value / total:6.1%} {format_duration_ns(value):>9}  {site}")
    return "\n".join(lines)


def format_summary(totals: RunTotals) -> str:
    """One summary for every mode that ran."""
    parts = []
    if "cpu" in totals.modes:
        parts.append(format_cpu_summary(totals.modes["cpu"]))
    if "lock" in totals.modes:
        parts.append(format_lock_summary(totals.modes["lock"]))
    if "syscall" in totals.modes:
        parts.append(
            format_syscall_summary(totals.modes["syscall"], per_process=totals.per_process)
        )
    if "offcpu" in totals.modes:
        parts.append(format_offcpu_summary(totals.modes["offcpu"]))
    return "\n\n".join(parts)
