"""Lock contention, holds and wakes by stack, from the CPU profiler's object (locks.bpf.h).

The futex programs ride in the CPU profiler's object: waiter, holder and waker
stacks come from the same unwinder as CPU samples (tables, Python frames).
With ``--mode lock`` alone this collector also starts that object, with CPU
sampling off.

Each window gives :class:`LockStat` records in three roles (see the model):
the waits by waiter stack, the releases by holder stack with hold times, and
the waits again by the stack of the wake that ended them. Every lock word is
given a kind (mutex, condition variable, ...) from the stacks of its waiters,
remembered across windows, and a waiter stack ends with a frame naming the
kind and whether it was contention or idle waiting.
"""

from __future__ import annotations

import ctypes
from collections import Counter, OrderedDict
from ctypes import c_char, c_int32, c_uint32, c_uint64
from dataclasses import dataclass, field

from aperture import lock_kinds
from aperture.agent.collectors.bpfobj import decode_comm
from aperture.agent.collectors.cpu import CpuCollector, UserStack
from aperture.agent.collectors.riders import EngineRider
from aperture.model import EventType, Frame, FrameKind, LockStat, Profile
from aperture.transforms import lock_samples

COMM_LEN = 16
HIST_BUCKETS = 160  # APERTURE_FINE_BUCKETS: 4 per power of two


# ctypes mirrors of src/aperture/bpf/aperture.h
class LockWaitKey(ctypes.Structure):
    _fields_ = (
        ("tgid", c_uint32),
        ("flags", c_uint32),
        ("uaddr", c_uint64),
        ("waiter_hash", c_uint64),
        ("waker_hash", c_uint64),
        ("waiter_err", c_int32),
        ("waker_err", c_int32),
    )


class LockStats(ctypes.Structure):
    _fields_ = (
        ("comm", c_char * COMM_LEN),
        ("contentions", c_uint64),
        ("wait_ns", c_uint64),
        ("max_ns", c_uint64),
        ("eagain", c_uint64),
        ("timeouts", c_uint64),
        ("timeout_ns", c_uint64),
        ("interrupted", c_uint64),
        ("hist", c_uint64 * HIST_BUCKETS),
    )


class LockHoldKey(ctypes.Structure):
    _fields_ = (
        ("tgid", c_uint32),
        ("holder_err", c_int32),
        ("uaddr", c_uint64),
        ("holder_hash", c_uint64),
    )


class LockHoldStats(ctypes.Structure):
    _fields_ = (
        ("comm", c_char * COMM_LEN),
        ("releases", c_uint64),
        ("woken", c_uint64),
        ("timed", c_uint64),
        ("hold_ns", c_uint64),
        ("max_ns", c_uint64),
        ("hist", c_uint64 * HIST_BUCKETS),
    )


# Stack states beside a hash (LOCK_STACK_* in aperture.h); else -errno
STACK_OK, NOT_SAMPLED, NO_WAKER = 0, 1, 2
EFAULT = 14

# enum lock_stat, in order
STAT_NAMES = (
    "waits",
    "no_task_storage",
    "waits_map_full",
    "holds_map_full",
    "stacks_map_full",
    "stack_collisions",
)
LOSS_NAMES = STAT_NAMES[1:]

UNSAMPLED = Frame("[stack not sampled]", "[lock]", FrameKind.UNKNOWN)
LOST = Frame("[user stack lost]", "[unknown]", FrameKind.UNKNOWN)
# Lock words whose kind is remembered across windows (a few hundred bytes each).
MAX_KINDS = 16384


@dataclass
class _Acc:
    """One record being summed (a mutable LockStat)."""

    comm: str
    contentions: int = 0
    wait_ns: int = 0
    max_ns: int = 0
    eagain: int = 0
    timeouts: int = 0
    timeout_ns: int = 0
    interrupted: int = 0
    releases: int = 0
    hist: list[int] = field(default_factory=lambda: [0] * HIST_BUCKETS)

    def add(self, v: LockStats) -> None:
        self.contentions += v.contentions
        self.wait_ns += v.wait_ns
        self.max_ns = max(self.max_ns, v.max_ns)
        self.eagain += v.eagain
        self.timeouts += v.timeouts
        self.timeout_ns += v.timeout_ns
        self.interrupted += v.interrupted
        for i, n in enumerate(v.hist):
            self.hist[i] += n


class LockCollector(EngineRider):
    """Drains the lock records of a CPU collector's object; one :meth:`drain` per window
    (``--mode lock`` without ``cpu`` or ``offcpu`` owns the engine)."""

    event_type = EventType.LOCK
    option = "lock"
    control_map = "lock_control"
    counters_map = "lock_counters"
    stat_names = STAT_NAMES
    layouts = (
        ("lock_waits0", LockWaitKey, LockStats),
        ("lock_holds0", LockHoldKey, LockHoldStats),
        ("lustacks0", c_uint64, UserStack),
    )

    def __init__(self, engine: CpuCollector, *, owns_engine: bool) -> None:
        super().__init__(engine, owns_engine=owns_engine)
        self._kinds: OrderedDict[tuple[int, int], str] = OrderedDict()

    def drain(self) -> Profile:
        obj, idle, profile = self._next_window()
        waits = obj.map(f"lock_waits{idle}").drain(LockWaitKey, LockStats)
        holds = obj.map(f"lock_holds{idle}").drain(LockHoldKey, LockHoldStats)
        unwound = self.engine.read_unwound(f"lustacks{idle}")
        frames: dict[tuple[int, int, int], tuple[Frame, ...]] = {}

        def stack(tgid: int, h: int, err: int) -> tuple[Frame, ...]:
            if (tgid, h, err) not in frames:
                if h:
                    frames[(tgid, h, err)] = self.engine.user_stack(tgid, h, unwound)
                elif err == NOT_SAMPLED:
                    frames[(tgid, h, err)] = (UNSAMPLED,)
                else:
                    frames[(tgid, h, err)] = () if err == -EFAULT else (LOST,)
            return frames[(tgid, h, err)]

        # Each waiting stack names its kind; a lock word's kind (for waits without a stack,
        # and for its releases) is its most waited-on kind, else remembered, else the op's.
        classified: dict[tuple[int, int, int], str | None] = {}
        votes: dict[tuple[int, int], Counter[str]] = {}
        ops: dict[tuple[int, int], int] = {}
        for key, value in waits:
            lock = (key.tgid, key.uaddr)
            ops.setdefault(lock, key.flags)
            if key.waiter_hash:
                ck = (key.tgid, key.waiter_hash, key.waiter_err)
                if ck not in classified:
                    classified[ck] = lock_kinds.classify(stack(*ck))
                named = classified[ck]
                if named is not None:
                    votes.setdefault(lock, Counter())[named] += 1 + value.contentions
        for lock, counts in votes.items():
            self._remember(lock, counts.most_common(1)[0][0])
        kind_of = {lock: self._kinds.get(lock) or lock_kinds.from_op(f) for lock, f in ops.items()}

        acc: dict[tuple[str, int, int, str, tuple[Frame, ...]], _Acc] = {}
        comms: dict[int, str] = {}

        def entry(
            role: str, tgid: int, uaddr: int, kind: str, frames_: tuple[Frame, ...], comm: str
        ) -> _Acc:
            k = (role, tgid, uaddr, kind, frames_)
            if k not in acc:
                acc[k] = _Acc(comms.setdefault(tgid, comm))
            return acc[k]

        for key, value in waits:
            comm = decode_comm(value.comm)
            kind = (
                classified.get((key.tgid, key.waiter_hash, key.waiter_err))
                or kind_of[(key.tgid, key.uaddr)]
            )
            waiter = stack(key.tgid, key.waiter_hash, key.waiter_err)
            frames_ = (*waiter, lock_kinds.leaf_frame(kind))
            entry("wait", key.tgid, key.uaddr, kind, frames_, comm).add(value)
            if key.waker_err != NO_WAKER and value.contentions:
                # the waits a wake ended, under the waker's stack and the waiters' kind
                waker = stack(key.tgid, key.waker_hash, key.waker_err)
                woke = entry("wake", key.tgid, key.uaddr, kind, waker, comm)
                woke.contentions += value.contentions
                woke.wait_ns += value.wait_ns
                woke.max_ns = max(woke.max_ns, value.max_ns)
                for i, n in enumerate(value.hist):
                    woke.hist[i] += n
        for hkey, hvalue in holds:
            holder = stack(hkey.tgid, hkey.holder_hash, hkey.holder_err)
            kind = self._kind_for(kind_of, hkey.tgid, hkey.uaddr)
            held = entry("hold", hkey.tgid, hkey.uaddr, kind, holder, decode_comm(hvalue.comm))
            held.releases += hvalue.releases
            held.contentions += hvalue.timed
            held.wait_ns += hvalue.hold_ns
            held.max_ns = max(held.max_ns, hvalue.max_ns)
            for i, n in enumerate(hvalue.hist):
                held.hist[i] += n

        locks = [
            LockStat(
                pid=tgid, comm=a.comm, address=uaddr, stack=frames_,
                contentions=a.contentions, wait_ns=a.wait_ns, max_ns=a.max_ns, eagain=a.eagain,
                timeouts=a.timeouts, timeout_ns=a.timeout_ns, interrupted=a.interrupted,
                hist=tuple(a.hist), kind=kind, role=role, releases=a.releases,
            )
            for (role, tgid, uaddr, kind, frames_), a in acc.items()
        ]  # fmt: skip
        self.engine.touch({k.tgid for k, _ in waits})
        delta = self._deltas()
        profile.losses = {n: delta[n] for n in LOSS_NAMES}
        options = self.engine.options.lock
        assert options is not None  # checked at construction
        profile.labels = {
            "waits": str(delta["waits"]),
            "wakes": str(sum(h.releases for _, h in holds)),
            "waits_not_sampled": str(
                sum(
                    v.contentions + v.eagain + v.timeouts + v.interrupted
                    for k, v in waits
                    if k.waiter_err == NOT_SAMPLED
                )
            ),
            "stack_min_ns": str(options.min_stack_ns),
            "sample_every": str(options.sample_every),
        }
        profile.samples = lock_samples(locks)
        profile.locks = locks
        return profile

    def _kind_for(self, kind_of: dict[tuple[int, int], str], tgid: int, uaddr: int) -> str:
        """A lock word's kind; one only released this window has its remembered kind, if any."""
        return kind_of.get((tgid, uaddr)) or self._kinds.get((tgid, uaddr), "")

    def _remember(self, lock: tuple[int, int], kind: str) -> None:
        self._kinds[lock] = kind
        self._kinds.move_to_end(lock)
        while len(self._kinds) > MAX_KINDS:
            self._kinds.popitem(last=False)
