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

from aperture import histogram, lock_kinds
from aperture.agent.collectors.bpfobj import decode_comm
from aperture.agent.collectors.cpu import CpuCollector, UserStack
from aperture.agent.collectors.riders import EngineRider
from aperture.model import EventType, Frame, FrameKind, LockStat, Profile
from aperture.transforms import LockKey, lock_key, lock_samples, merge_lock

COMM_LEN = 16
HIST_BUCKETS = histogram.FINE_BUCKETS  # APERTURE_FINE_BUCKETS: 4 per power of two


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


class LockCollector(EngineRider):
    """Drains the lock records of a CPU collector's object; one :meth:`drain` per window
    (``--mode lock`` without ``cpu`` or ``offcpu`` owns the engine)."""

    event_type = EventType.LOCK
    option = "lock"
    control_map = "lock_control"
    counters_map = "lock_counters"
    stat_names = STAT_NAMES
    loss_names = LOSS_NAMES
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

        # Records merged by lock, role, stack and kind (the waits a wake ended keep their
        # waiters' kind: a writer's release ends readers' and writers' waits).
        merged: dict[tuple[LockKey, str], LockStat] = {}
        comms: dict[int, str] = {}

        def add(rec: LockStat) -> None:
            k = (lock_key(rec), rec.kind)
            merged[k] = merge_lock(merged[k], rec) if k in merged else rec

        for key, value in waits:
            pid, uaddr = key.tgid, key.uaddr
            comm = comms.setdefault(pid, decode_comm(value.comm))
            kind = classified.get((pid, key.waiter_hash, key.waiter_err)) or kind_of[(pid, uaddr)]
            waiter = stack(pid, key.waiter_hash, key.waiter_err)
            hist = tuple(value.hist)
            add(LockStat(pid, comm, uaddr, (*waiter, lock_kinds.leaf_frame(kind)),
                         contentions=value.contentions, wait_ns=value.wait_ns,
                         max_ns=value.max_ns, eagain=value.eagain, timeouts=value.timeouts,
                         timeout_ns=value.timeout_ns, interrupted=value.interrupted, hist=hist,
                         kind=kind))  # fmt: skip
            if key.waker_err != NO_WAKER and value.contentions:
                # the waits a wake ended, under the waker's stack
                add(LockStat(pid, comm, uaddr, stack(pid, key.waker_hash, key.waker_err),
                             contentions=value.contentions, wait_ns=value.wait_ns,
                             max_ns=value.max_ns, hist=hist, kind=kind,
                             role="wake"))  # fmt: skip
        for hkey, hvalue in holds:
            pid, uaddr = hkey.tgid, hkey.uaddr
            add(LockStat(pid, comms.setdefault(pid, decode_comm(hvalue.comm)), uaddr,
                         stack(pid, hkey.holder_hash, hkey.holder_err),
                         contentions=hvalue.timed, wait_ns=hvalue.hold_ns, max_ns=hvalue.max_ns,
                         hist=tuple(hvalue.hist), kind=self._kind_for(kind_of, pid, uaddr),
                         role="hold", releases=hvalue.releases))  # fmt: skip
        locks = list(merged.values())
        self.engine.touch({k.tgid for k, _ in waits})
        delta = self._window_counters(profile)
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
