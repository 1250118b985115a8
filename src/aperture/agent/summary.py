"""The end-of-run summary: what was recorded and what was lost."""

from __future__ import annotations

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
    lost = {name: n for name, n in profile.losses.items() if n}
    lines.append(
        "  losses: " + (", ".join(f"{n} {name}" for name, n in lost.items()) if lost else "none")
    )
    if total:
        self_, _ = self_and_total(profile)
        lines.append(f"  top {top} functions by self samples:")
        for name, value in self_.most_common(top):
            lines.append(f"    {value / total:6.1%} {value:>8}  {name}")
    return "\n".join(lines)
