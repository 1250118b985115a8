"""What each profile type is: the one place that knows, read by every part that asks.

A type's stacks carry values in ``value_unit`` (a CPU stack's value is how many
times it was sampled; a lock stack's, the nanoseconds waited there); its timeline
counts ``series_unit`` per step (syscalls are counted in calls, their stacks'
latency in nanoseconds). Values of one stack add up across processes and agents;
across windows they add up too (``aggregation="sum"``), except a gauge's (bytes
in use, goroutines alive: ``"average"``), whose windows of one series are
averaged. The collectors write their profiles in these units; the answers state
them; the REST routes refuse stack questions for a type without stacks; the
pprof writer and reader name a type's values by its ``pprof`` sample types; the
dashboard shows ``label`` (``/api/v1/profile-types``), the text and SVG outputs
``time_phrase`` and ``flamegraph_title``.

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
    WALL = "wall"
    CYCLES = "cycles"
    ALLOC_OBJECTS = "alloc_objects"
    ALLOC_SPACE = "alloc_space"
    INUSE_OBJECTS = "inuse_objects"
    INUSE_SPACE = "inuse_space"
    GOROUTINES = "goroutines"
    MUTEX_CONTENTIONS = "mutex_contentions"
    MUTEX_DELAY = "mutex_delay"
    BLOCK_CONTENTIONS = "block_contentions"
    BLOCK_DELAY = "block_delay"
    EXCEPTIONS = "exceptions"


WireShape = Literal["cpu", "lock", "syscall", "stacks"]
# How a stack's values over several windows of one series combine: summed (time,
# allocations, contentions) or averaged (a gauge: bytes in use, goroutines alive).
Aggregation = Literal["sum", "average"]


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
    aggregation: Aggregation = "sum"
    # Other tools' names for the same values (pprof sample types an import maps here,
    # ``(type, unit)``; the unit "" matches any): dotnet's alloc_samples, Node's space, ...
    aliases: tuple[SampleType, ...] = ()


CPU_SAMPLES = SampleType("samples", "count")
CPU_TIME = SampleType("cpu", "nanoseconds")
LOCK_CONTENTIONS = SampleType("contentions", "count")
LOCK_DELAY = SampleType("delay", "nanoseconds")
OFFCPU_TIME = SampleType("off_cpu", "nanoseconds")
WALL_TIME = SampleType("wall", "nanoseconds")
CYCLES_COUNT = SampleType("cycles", "count")
ALLOC_OBJECTS = SampleType("alloc_objects", "count")
ALLOC_SPACE = SampleType("alloc_space", "bytes")
INUSE_OBJECTS = SampleType("inuse_objects", "count")
INUSE_SPACE = SampleType("inuse_space", "bytes")
HEAP_PERIOD = SampleType("space", "bytes")
GOROUTINE_COUNT = SampleType("goroutine", "count")
EXCEPTION_COUNT = SampleType("exceptions", "count")

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
        ProfileType(EventType.WALL, "Wall time", "of wall time", "Wall Time Flame Graph",
                    "nanoseconds", "nanoseconds", True, (WALL_TIME,), WALL_TIME, "wall",
                    filter_code=5, aliases=(SampleType("wall", "microseconds"),
                                            SampleType("wall", "milliseconds"))),
        ProfileType(EventType.CYCLES, "CPU cycles", "", "CPU Cycles Flame Graph", "cycles",
                    "cycles", True, (CYCLES_COUNT,), CYCLES_COUNT, "cycles", filter_code=6),
        ProfileType(EventType.ALLOC_OBJECTS, "Allocated objects", "", "Allocations Flame Graph",
                    "objects", "objects", True, (ALLOC_OBJECTS,), HEAP_PERIOD,
                    "alloc_objects", filter_code=7,
                    aliases=(SampleType("alloc_samples", "count"),)),
        ProfileType(EventType.ALLOC_SPACE, "Allocated bytes", "", "Allocated Bytes Flame Graph",
                    "bytes", "bytes", True, (ALLOC_SPACE,), HEAP_PERIOD, "alloc_space",
                    filter_code=8, aliases=(SampleType("alloc_size", "bytes"),)),
        ProfileType(EventType.INUSE_OBJECTS, "In-use objects", "", "In-Use Objects Flame Graph",
                    "objects", "objects", True, (INUSE_OBJECTS,), HEAP_PERIOD,
                    "inuse_objects", filter_code=9, aggregation="average",
                    aliases=(SampleType("objects", "count"),)),
        ProfileType(EventType.INUSE_SPACE, "In-use bytes", "", "In-Use Bytes Flame Graph",
                    "bytes", "bytes", True, (INUSE_SPACE,), HEAP_PERIOD, "inuse_space",
                    filter_code=10, aggregation="average",
                    aliases=(SampleType("space", "bytes"),)),
        ProfileType(EventType.GOROUTINES, "Goroutines", "", "Goroutines Flame Graph",
                    "goroutines", "goroutines", True, (GOROUTINE_COUNT,), GOROUTINE_COUNT,
                    "goroutine", filter_code=11, aggregation="average",
                    aliases=(SampleType("goroutines", "count"),)),
        ProfileType(EventType.MUTEX_CONTENTIONS, "Mutex contentions", "",
                    "Mutex Contentions Flame Graph", "contentions", "contentions", True,
                    (LOCK_CONTENTIONS,), LOCK_CONTENTIONS, "contentions", filter_code=12,
                    aliases=(SampleType("lock_count", "count"), SampleType("mutex_count", ""))),
        ProfileType(EventType.MUTEX_DELAY, "Mutex delay", "of mutex delay",
                    "Mutex Delay Flame Graph", "nanoseconds", "nanoseconds", True,
                    (LOCK_DELAY,), LOCK_CONTENTIONS, "delay", filter_code=13,
                    aliases=(SampleType("lock_time", "nanoseconds"),
                             SampleType("mutex_duration", "nanoseconds"))),
        ProfileType(EventType.BLOCK_CONTENTIONS, "Block contentions", "",
                    "Block Contentions Flame Graph", "contentions", "contentions", True,
                    (LOCK_CONTENTIONS,), LOCK_CONTENTIONS, "contentions", filter_code=14,
                    aliases=(SampleType("block_count", ""),)),
        ProfileType(EventType.BLOCK_DELAY, "Block delay", "blocked",
                    "Block Delay Flame Graph", "nanoseconds", "nanoseconds", True,
                    (LOCK_DELAY,), LOCK_CONTENTIONS, "delay", filter_code=15,
                    aliases=(SampleType("block_duration", "nanoseconds"),)),
        ProfileType(EventType.EXCEPTIONS, "Exceptions", "", "Exceptions Flame Graph",
                    "exceptions", "exceptions", True, (EXCEPTION_COUNT,), EXCEPTION_COUNT,
                    "exceptions", filter_code=16, aliases=(SampleType("exception", "count"),)),
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
