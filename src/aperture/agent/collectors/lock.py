"""The lock contention tracer: futex wait time per (process, lock, stack) from lock.bpf.c."""

from __future__ import annotations

import ctypes
from ctypes import c_char, c_int32, c_uint32, c_uint64
from dataclasses import dataclass

from aperture.agent.collectors.base import BpfCollector, rodata
from aperture.agent.collectors.bpfobj import decode_comm
from aperture.agent.collectors.processes import ProcessWatcher
from aperture.agent.collectors.unwind import trim_user_stack
from aperture.agent.libbpf import BpfError, BpfObject
from aperture.agent.symbols.symbolizer import Symbolizer
from aperture.agent.symbols.threadsafe import ThreadSafeSymbolizer
from aperture.model import EventType, Frame, FrameKind, LockStat, Profile
from aperture.transforms import lock_samples

COMM_LEN = 16
HIST_BUCKETS = 40
MAX_STACK_DEPTH = 127
EFAULT = 14


# ctypes mirrors of src/aperture/bpf/aperture.h
class LockConfig(ctypes.Structure):
    _fields_ = (("target_tgid", c_uint32), ("reserved", c_uint32))


class LockStart(ctypes.Structure):
    _fields_ = (
        ("start_ns", c_uint64),
        ("uaddr", c_uint64),
        ("op", c_uint32),
        ("reserved", c_uint32),
    )


class LockKey(ctypes.Structure):
    _fields_ = (("tgid", c_uint32), ("user_stack_id", c_int32), ("uaddr", c_uint64))


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


StackTrace = c_uint64 * MAX_STACK_DEPTH

# enum lock_stat, in order
STAT_NAMES = (
    "waits",
    "no_start",
    "starts_map_full",
    "stats_map_full",
    "stack_collisions",
    "process_events_dropped",
)
LOSS_NAMES = STAT_NAMES[2:]
LOST_STACK = Frame("[user stack lost]", "[unknown]", FrameKind.UNKNOWN)


@dataclass(frozen=True)
class LockOptions:
    pid: int = 0


class LockCollector(BpfCollector):
    """Loads and attaches lock.bpf.c; :meth:`drain` returns one window of waits."""

    object_name = "lock"
    event_type = EventType.LOCK
    not_running = "the lock tracer is not running"
    layouts = (
        ("stats0", LockKey, LockStats),
        ("stats1", LockKey, LockStats),
        ("starts", c_uint32, LockStart),
    )
    stat_names = STAT_NAMES
    loss_names = LOSS_NAMES

    def __init__(self, options: LockOptions, symbolizer: Symbolizer | ThreadSafeSymbolizer) -> None:
        super().__init__()
        self.options = options
        self._symbolizer = symbolizer

    def _configure(self, obj: BpfObject) -> None:
        rodata(obj, LockConfig).target_tgid = self.options.pid

    def _attach(self, obj: BpfObject) -> None:
        self._watcher = ProcessWatcher(obj, self._symbolizer)
        obj.keep(obj.program("on_exec").attach())
        obj.keep(obj.program("on_futex_enter").attach())
        obj.keep(obj.program("on_futex_exit").attach())
        try:  # futex_waitv exists from Linux 5.16
            obj.keep(obj.program("on_futex_waitv_enter").attach())
            obj.keep(obj.program("on_futex_waitv_exit").attach())
        except BpfError:
            pass

    def _read(self, obj: BpfObject, idle: int, profile: Profile) -> None:
        entries = obj.map(f"stats{idle}").drain(LockKey, LockStats)
        stack_map = obj.map(f"stacks{idle}")
        raw_stacks: dict[int, tuple[int, ...]] = {}
        trace = StackTrace()
        for stack_id in {k.user_stack_id for k, _ in entries if k.user_stack_id >= 0}:
            if stack_map.lookup(c_uint32(stack_id), trace):
                raw_stacks[stack_id] = tuple(a for a in trace if a)
        for stale in list(stack_map.keys(c_uint32)):
            stack_map.delete(stale)

        frames_of: dict[tuple[int, int], tuple[Frame, ...]] = {}
        locks: list[LockStat] = []
        for key, value in entries:
            sid = key.user_stack_id
            if (key.tgid, sid) not in frames_of:
                if sid in raw_stacks:
                    leaf_first = self._symbolizer.user_frames(key.tgid, raw_stacks[sid])
                    frames_of[(key.tgid, sid)] = trim_user_stack(leaf_first)
                else:
                    frames_of[(key.tgid, sid)] = () if sid == -EFAULT else (LOST_STACK,)
            stack = frames_of[(key.tgid, sid)]
            comm = decode_comm(value.comm)
            locks.append(
                LockStat(
                    pid=key.tgid,
                    comm=comm,
                    address=key.uaddr,
                    stack=stack,
                    contentions=value.contentions,
                    wait_ns=value.wait_ns,
                    max_ns=value.max_ns,
                    eagain=value.eagain,
                    timeouts=value.timeouts,
                    timeout_ns=value.timeout_ns,
                    interrupted=value.interrupted,
                    hist=tuple(value.hist),
                )
            )
        delta = self._window_counters(profile)
        profile.labels = {"exits_without_enter": str(delta["no_start"])}
        profile.samples = lock_samples(locks)
        profile.locks = locks
