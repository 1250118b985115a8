"""The profile data model every part of Aperture shares.

A collector produces a :class:`Profile`; every output format is a function of a
profile (never of a collector's internals). Stacks are root-first with kernel
frames above user frames, so the leaf is the last frame.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field


class FrameKind(enum.StrEnum):
    """Where a frame's code lives."""

    KERNEL = "kernel"
    USER = "user"
    JIT = "jit"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Frame:
    """One resolved stack frame.

    ``name`` is the function name, or ``module+0xoffset`` when no symbol covers
    the address (never a bare address). ``module`` is the file's base name
    (``libc.so.6``), ``[kernel]``/``[modname]`` for kernel code, ``[jit]`` for
    perf-map frames and ``[unknown]`` when no mapping covers the address.
    ``offset`` is the address relative to the module (the ELF virtual address
    for user code, the raw address for kernel code).
    """

    name: str
    module: str = ""
    kind: FrameKind = FrameKind.USER
    offset: int = 0


@dataclass(frozen=True, slots=True)
class Sample:
    """Aggregated samples sharing one stack in one thread.

    ``value`` is in the profile's unit (sample count for CPU, nanoseconds of
    wait for locks). ``comm`` is the process name, ``thread`` the thread name.
    """

    stack: tuple[Frame, ...]
    value: int
    pid: int = 0
    tid: int = 0
    comm: str = ""
    thread: str = ""


class EventType(enum.StrEnum):
    CPU = "cpu"
    LOCK = "lock"
    SYSCALL = "syscall"


@dataclass
class Profile:
    """Samples of one event type collected over one window."""

    event_type: EventType
    unit: str
    samples: list[Sample] = field(default_factory=list)
    start_ns: int = 0
    end_ns: int = 0
    # Sampling frequency in Hz for CPU profiles (0 when not sampled).
    frequency_hz: int = 0
    # Named loss counters (stack collisions, dropped samples, ...): never hidden.
    losses: dict[str, int] = field(default_factory=dict)
    # Free-form identity: host, kernel, agent version, ...
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(s.value for s in self.samples)

    @property
    def duration_s(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e9


def stack_names(sample: Sample, *, with_process: bool = True) -> list[str]:
    """Frame names of a sample, root first, optionally rooted at its process name."""
    names = [f.name for f in sample.stack]
    if with_process:
        names.insert(0, sample.comm or f"pid {sample.pid}")
    return names


def fold(profile: Profile, *, with_process: bool = True) -> Counter[tuple[str, ...]]:
    """Merge samples with identical frame-name paths: ``{path: value}``."""
    folded: Counter[tuple[str, ...]] = Counter()
    for sample in profile.samples:
        folded[tuple(stack_names(sample, with_process=with_process))] += sample.value
    return folded


def self_and_total(
    profile: Profile,
) -> tuple[Counter[str], Counter[str]]:
    """Per-function self value (leaf) and total value (anywhere on the stack once)."""
    self_: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for sample in profile.samples:
        if not sample.stack:
            continue
        self_[sample.stack[-1].name] += sample.value
        for name in {f.name for f in sample.stack}:
            total[name] += sample.value
    return self_, total


def iter_frames(samples: Iterable[Sample]) -> Iterator[Frame]:
    for sample in samples:
        yield from sample.stack
