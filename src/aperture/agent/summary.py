"""The end-of-run summary: what was recorded and what was lost."""

from __future__ import annotations

from aperture.agent.run_totals import ModeTotals, RunTotals
from aperture.formats.tables import format_lock_table, format_ns, format_syscall_table
from aperture.model import FrameKind, Profile, self_and_total


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
    lines.append(_losses(profile))
    if total:
        self_, _ = self_and_total(profile)
        lines.append(f"  top {top} functions by self samples:")
        for name, value in self_.most_common(top):
            lines.append(f"    {value / total:6.1%} {value:>8}  {name}")
    return "\n".join(lines)


def _losses(profile: Profile) -> str:
    lost = {name: n for name, n in profile.losses.items() if n}
    return "  losses: " + (", ".join(f"{n} {name}" for name, n in lost.items()) if lost else "none")


def format_lock_summary(totals: ModeTotals, *, top: int = 10) -> str:
    profile = totals.profile()
    lines = [
        f"Locks: {totals.lock_waits} futex waits, {format_ns(totals.lock_wait_ns)} waited in "
        f"total, {totals.contended} contended lock addresses over {profile.duration_s:.1f}s "
        "(wait time, not hold time)",
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
    return "\n\n".join(parts)
