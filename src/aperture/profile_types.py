"""What each profile type is: the one place that knows, read by every part that asks.

A type's stacks carry values in ``value_unit`` (a CPU stack's value is how many
times it was sampled; a lock stack's, the nanoseconds waited there); its timeline
counts ``series_unit`` per step (syscalls are counted in calls, their stacks'
latency in nanoseconds). Values of one stack add up across windows, processes
and agents (every type so far sums). The collectors write their profiles in
these units; the answers state them; the REST routes refuse stack questions for
a type without stacks; the pprof writer and reader name a type's values by its
``pprof`` sample types; the dashboard shows ``label`` (``/api/v1/profile-types``), the
text and SVG outputs ``time_phrase`` and ``flamegraph_title``.
Types to come (off-CPU, memory, GPU) start here.
"""

from __future__ import annotations

from dataclasses import dataclass

from aperture.model import EventType


@dataclass(frozen=True, slots=True)
class SampleType:
    """A pprof ``ValueType``: what one column of a sample's values counts."""

    type: str
    unit: str


@dataclass(frozen=True, slots=True)
class ProfileType:
    event_type: EventType
    label: str  # the dashboard's name for the type
    time_phrase: str  # what a span of its time is ("1.2 ms of wait")
    flamegraph_title: str  # an SVG flamegraph's heading
    value_unit: str
    series_unit: str
    has_stacks: bool  # flamegraph, top, diff and pprof apply
    # pprof: the sample types an export carries (each value column), the period's type and
    # the default; an import recognises the type by any of them
    pprof: tuple[SampleType, ...] = ()
    pprof_period: SampleType | None = None
    pprof_default: str = ""
    route: str = ""  # the analysis route of a type without stacks


CPU_SAMPLES = SampleType("samples", "count")
CPU_TIME = SampleType("cpu", "nanoseconds")
LOCK_CONTENTIONS = SampleType("contentions", "count")
LOCK_DELAY = SampleType("delay", "nanoseconds")

PROFILE_TYPES: dict[EventType, ProfileType] = {
    t.event_type: t
    for t in (
        ProfileType(EventType.CPU, "CPU", "on CPU", "CPU Flame Graph", "samples", "samples", True,
                    (CPU_SAMPLES, CPU_TIME), CPU_TIME, "cpu"),
        ProfileType(EventType.LOCK, "Lock wait", "of wait", "Lock Contention Flame Graph",
                    "nanoseconds", "nanoseconds", True,
                    (LOCK_CONTENTIONS, LOCK_DELAY), LOCK_CONTENTIONS, "delay"),
        ProfileType(EventType.SYSCALL, "Syscalls", "in syscalls", "Syscall Latency Flame Graph",
                    "nanoseconds", "calls", False,
                    route="/api/v1/syscalls"),
    )
}  # fmt: skip


def value_unit(event_type: EventType) -> str:
    """The unit of a stack's value in profiles of ``event_type``."""
    return PROFILE_TYPES[event_type].value_unit


def series_unit(event_type: EventType) -> str:
    """What a timeline of ``event_type`` counts per step."""
    return PROFILE_TYPES[event_type].series_unit


def with_stacks() -> list[ProfileType]:
    """The types whose data are stacks (what flamegraph, top, diff and pprof take)."""
    return [t for t in PROFILE_TYPES.values() if t.has_stacks]


def no_stacks_message(event_type: EventType) -> str:
    """The one sentence a stack question about a type without stacks gets."""
    choices = " or ".join(f"type={t.event_type}" for t in with_stacks())
    route = PROFILE_TYPES[event_type].route
    return f"{event_type} data has no stacks: use {route + ', or ' if route else ''}{choices}"
