"""What each profile type is: the one place that knows, read by every part that asks.

A type's stacks carry values in ``value_unit`` (a CPU stack's value is how many
times it was sampled; a lock stack's, the nanoseconds waited there); its timeline
counts ``series_unit`` per step (syscalls are counted in calls, their stacks'
latency in nanoseconds). The collectors write their profiles in these units, the
buffer's and the store's answers state them. Types to come (off-CPU, memory, GPU)
start here.
"""

from __future__ import annotations

from dataclasses import dataclass

from aperture.model import EventType


@dataclass(frozen=True, slots=True)
class ProfileType:
    event_type: EventType
    value_unit: str
    series_unit: str


PROFILE_TYPES: dict[EventType, ProfileType] = {
    t.event_type: t
    for t in (
        ProfileType(EventType.CPU, "samples", "samples"),
        ProfileType(EventType.LOCK, "nanoseconds", "nanoseconds"),
        ProfileType(EventType.SYSCALL, "nanoseconds", "calls"),
    )
}


def value_unit(event_type: EventType) -> str:
    """The unit of a stack's value in profiles of ``event_type``."""
    return PROFILE_TYPES[event_type].value_unit


def series_unit(event_type: EventType) -> str:
    """What a timeline of ``event_type`` counts per step."""
    return PROFILE_TYPES[event_type].series_unit
