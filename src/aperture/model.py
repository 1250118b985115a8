"""The profile data model every part of Aperture shares.

A collector produces a :class:`Profile`; every output format is a function of a
profile (never of a collector's internals). Stacks are root-first with kernel
frames above user frames, so the leaf is the last frame.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

# Defined with everything else each type declares; re-exported for the many users of both.
from aperture.profile_types import EventType as EventType


class FrameKind(enum.StrEnum):
    """Where a frame's code lives."""

    KERNEL = "kernel"
    USER = "user"
    JIT = "jit"
    # A Python function: ``name`` is its qualified name, ``module`` its source file.
    PYTHON = "python"
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

    A :attr:`FrameKind.PYTHON` frame names a Python function: ``name`` is its
    qualified name (``Encoder.encode``), ``module`` its source file as the
    interpreter reports it (``/usr/lib/python3.11/json/encoder.py``), ``line``
    the source line being run (0 when unknown) and ``offset`` 0. Native frames
    keep ``line`` 0.

    Frames compare and hash on every field, line included, so a frame is never
    silently merged with a different line of the same function. Grouping by
    function (flamegraph nodes, top tables) keys on :func:`function_key`
    instead, which drops the line.
    """

    name: str
    module: str = ""
    kind: FrameKind = FrameKind.USER
    offset: int = 0
    line: int = 0
    # Stacks are tuples of frames hashed on every drain and merge: each frame's hash is
    # computed once (a dataclass's own __hash__ builds a tuple of the fields per call).
    _hash: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "_hash", hash((self.name, self.module, self.kind, self.offset, self.line))
        )

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[type[Frame], tuple[str, str, FrameKind, int, int]]:
        # rebuilt, not restored: string hashes differ between processes
        return (Frame, (self.name, self.module, self.kind, self.offset, self.line))


def function_key(frame: Frame) -> tuple[str, str, FrameKind]:
    """What flamegraph nodes and top tables group a frame by: its function, not line or offset."""
    return (frame.name, frame.module, frame.kind)


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


# LockStat.role values, in the wire format's LockRole order
LOCK_ROLES = ("wait", "hold", "wake")


@dataclass(frozen=True, slots=True)
class LockStat:
    """Futex events on one lock word from one stack in one process.

    ``role`` says whose stack it is and what the counters count:
    - ``wait``: the waiters' stack; contentions/wait_ns/max_ns/hist are their waits;
    - ``hold``: the holder's stack at a release that woke a waiter; ``releases``
      counts those, ``contentions`` the ones whose acquisition was seen, and
      wait_ns/max_ns/hist are those holds' times;
    - ``wake``: the stack of the wake that ended waits; the counters are the
      waits it ended (the waiters' time attributed to the waker).
    ``kind`` is a :mod:`aperture.lock_kinds` kind ("" when not known).
    """

    pid: int
    comm: str
    address: int
    stack: tuple[Frame, ...]
    contentions: int = 0
    wait_ns: int = 0
    max_ns: int = 0
    eagain: int = 0
    timeouts: int = 0
    timeout_ns: int = 0
    interrupted: int = 0
    # log2 wait histogram: hist[i] counts waits in [2^i, 2^(i+1)) ns
    hist: tuple[int, ...] = ()
    kind: str = ""
    role: str = "wait"
    releases: int = 0


@dataclass(frozen=True, slots=True)
class SyscallStat:
    """Latency and errors of one syscall in one process."""

    pid: int
    comm: str
    nr: int
    name: str
    count: int = 0
    errors: int = 0
    total_ns: int = 0
    min_ns: int = 0
    max_ns: int = 0
    hist: tuple[int, ...] = ()
    # positive errno -> returns with that error
    errnos: dict[int, int] = field(default_factory=dict)


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
    # Per-lock records of a LOCK profile (its samples are the wait-weighted stacks).
    locks: list[LockStat] = field(default_factory=list)
    # Per-syscall records of a SYSCALL profile.
    syscalls: list[SyscallStat] = field(default_factory=list)

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


def iter_frames(samples: Iterable[Sample]) -> Iterator[Frame]:
    for sample in samples:
        yield from sample.stack


def hottest_line(lines: Mapping[int, int]) -> int:
    """The line with the most value (the smallest on a tie), 0 for none."""
    return min(lines.items(), key=lambda kv: (-kv[1], kv[0]))[0] if lines else 0
