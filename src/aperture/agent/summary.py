"""The end-of-run summary: what was recorded and what was lost."""

from __future__ import annotations

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


def format_cpu_summary(profile: Profile, *, top: int = 10) -> str:
    total = profile.total
    processes = {s.pid for s in profile.samples}
    lines = [
        f"CPU: {total} samples at {profile.frequency_hz} Hz over {profile.duration_s:.1f}s, "
        f"{len(processes)} processes, {len({s.tid for s in profile.samples})} threads",
    ]
    idle = profile.labels.get("idle_samples")
    if idle and idle != "0":
        lines.append(f"  idle samples not recorded: {idle} (use --include-idle to keep them)")
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


def format_lock_summary(profile: Profile, *, top: int = 10) -> str:
    waits = sum(lock.contentions for lock in profile.locks)
    wait_ns = sum(lock.wait_ns for lock in profile.locks)
    addresses = {(lock.pid, lock.address) for lock in profile.locks if lock.contentions}
    lines = [
        f"Locks: {waits} futex waits, {format_ns(wait_ns)} waited in total, "
        f"{len(addresses)} contended lock addresses over {profile.duration_s:.1f}s "
        "(wait time, not hold time)",
        _losses(profile),
    ]
    if addresses:
        lines.append(format_lock_table(profile, limit=top).rstrip())
    return "\n".join(lines)


def format_syscall_summary(profile: Profile, *, top: int = 15, per_process: bool = False) -> str:
    calls = sum(s.count for s in profile.syscalls)
    errors = sum(s.errors for s in profile.syscalls)
    lines = [
        f"Syscalls: {calls} calls ({errors} errors) by "
        f"{len({s.pid for s in profile.syscalls})} processes over {profile.duration_s:.1f}s",
        _losses(profile),
    ]
    if calls:
        lines.append(format_syscall_table(profile, per_process=per_process, limit=top).rstrip())
    return "\n".join(lines)


def format_summary(profiles: dict[str, Profile], *, per_process: bool = False) -> str:
    """One summary for every mode that ran."""
    parts = []
    if "cpu" in profiles:
        parts.append(format_cpu_summary(profiles["cpu"]))
    if "lock" in profiles:
        parts.append(format_lock_summary(profiles["lock"]))
    if "syscall" in profiles:
        parts.append(format_syscall_summary(profiles["syscall"], per_process=per_process))
    return "\n\n".join(parts)
