"""Small pure transforms over profiles."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from aperture.model import Frame, Profile, Sample

_SampleKey = tuple[int, int, str, str, tuple[Frame, ...]]


def merge(profiles: Iterable[Profile]) -> Profile:
    """Merge windows of one event type into one profile (values of equal samples summed)."""
    merged: Counter[_SampleKey] = Counter()
    losses: Counter[str] = Counter()
    result: Profile | None = None
    for profile in profiles:
        if result is None:
            result = Profile(
                event_type=profile.event_type,
                unit=profile.unit,
                start_ns=profile.start_ns,
                end_ns=profile.end_ns,
                frequency_hz=profile.frequency_hz,
                labels=dict(profile.labels),
            )
        elif profile.event_type != result.event_type:
            raise ValueError(f"cannot merge {profile.event_type} into {result.event_type}")
        result.start_ns = min(result.start_ns, profile.start_ns)
        result.end_ns = max(result.end_ns, profile.end_ns)
        losses.update(profile.losses)
        for s in profile.samples:
            merged[(s.pid, s.tid, s.comm, s.thread, s.stack)] += s.value
    if result is None:
        raise ValueError("nothing to merge")
    result.losses = {name: losses[name] for name in sorted(losses)}
    result.samples = [
        Sample(stack=stack, value=value, pid=pid, tid=tid, comm=comm, thread=thread)
        for (pid, tid, comm, thread, stack), value in merged.items()
    ]
    return result


def filter_pid(profile: Profile, pid: int) -> Profile:
    """Only the samples of one process."""
    kept = [s for s in profile.samples if s.pid == pid]
    return Profile(
        event_type=profile.event_type,
        unit=profile.unit,
        samples=kept,
        start_ns=profile.start_ns,
        end_ns=profile.end_ns,
        frequency_hz=profile.frequency_hz,
        losses=dict(profile.losses),
        labels=dict(profile.labels),
    )
