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

A type whose records are plain weighted stacks (``wire="stacks"``) needs
nothing else: the wire carries it as ``StackSamples`` named by its ``name``,
the store files its rows under that name, and every answer, export and the
dashboard's type switch read it from here. An aggregator refuses a batch
naming a type it does not know. Lock and syscall records carry more than a
stack and value, and have wire messages of their own.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal


class EventType(enum.StrEnum):
    """A profile type's name: on the wire, in the store, in ``type=`` of the API."""

    CPU = "cpu"
    LOCK = "lock"
    SYSCALL = "syscall"
    OFFCPU = "offcpu"


WireShape = Literal["cpu", "lock", "syscall", "stacks"]


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
    # How a batch carries it: its own message (cpu, lock, syscall) or a StackSamples set
    wire: WireShape = "stacks"
    filter_code: int = 0  # the event code a WASM filter sees (filters/abi.py); unique


CPU_SAMPLES = SampleType("samples", "count")
CPU_TIME = SampleType("cpu", "nanoseconds")
LOCK_CONTENTIONS = SampleType("contentions", "count")
LOCK_DELAY = SampleType("delay", "nanoseconds")
OFFCPU_TIME = SampleType("off_cpu", "nanoseconds")

PROFILE_TYPES: dict[EventType, ProfileType] = {
    t.event_type: t
    for t in (
        ProfileType(EventType.CPU, "CPU", "on CPU", "CPU Flame Graph", "samples", "samples", True,
                    (CPU_SAMPLES, CPU_TIME), CPU_TIME, "cpu", wire="cpu", filter_code=1),
        ProfileType(EventType.LOCK, "Lock wait", "of wait", "Lock Contention Flame Graph",
                    "nanoseconds", "nanoseconds", True,
                    (LOCK_CONTENTIONS, LOCK_DELAY), LOCK_CONTENTIONS, "delay",
                    wire="lock", filter_code=2),
        ProfileType(EventType.SYSCALL, "Syscalls", "in syscalls", "Syscall Latency Flame Graph",
                    "nanoseconds", "calls", False,
                    route="/api/v1/syscalls", wire="syscall", filter_code=3),
        ProfileType(EventType.OFFCPU, "Off-CPU", "off CPU", "Off-CPU Time Flame Graph",
                    "nanoseconds", "nanoseconds", True,
                    (OFFCPU_TIME,), pprof_default=OFFCPU_TIME.type, filter_code=4),
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


def stack_type_names() -> list[str]:
    """The names of the types with stacks (what ``--type`` of top, diff, export take)."""
    return [str(t.event_type) for t in with_stacks()]


def stack_types() -> list[ProfileType]:
    """The types a batch carries as ``StackSamples`` sets (no message of their own)."""
    return [t for t in PROFILE_TYPES.values() if t.wire == "stacks"]


def known_names() -> str:
    """Every type's name, for the sentence that refuses an unknown one."""
    return ", ".join(PROFILE_TYPES)


def by_name(name: str) -> ProfileType | None:
    """The type called ``name`` on the wire or in the API, or None when there is none."""
    try:
        return PROFILE_TYPES[EventType(name)]
    except ValueError:
        return None
