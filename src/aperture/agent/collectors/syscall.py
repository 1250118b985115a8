"""The syscall latency tracer: per (process, syscall) stats aggregated by syscall.bpf.c."""

from __future__ import annotations

import ctypes
import platform
import time
from collections import defaultdict
from ctypes import c_char, c_int64, c_uint32, c_uint64
from dataclasses import dataclass

from aperture.agent.collectors.bpfobj import (
    DoubleBuffer,
    PerCpuCounters,
    check_layout,
    decode_comm,
    object_path,
)
from aperture.agent.libbpf import BpfObject
from aperture.agent.syscall_table import AARCH64, X86_64
from aperture.errors import UserError
from aperture.model import EventType, Profile, SyscallStat
from aperture.profile_types import value_unit

COMM_LEN = 16
HIST_BUCKETS = 40


# ctypes mirrors of src/aperture/bpf/aperture.h
class SyscallConfig(ctypes.Structure):
    _fields_ = (("target_tgid", c_uint32), ("reserved", c_uint32))


class SyscallStart(ctypes.Structure):
    _fields_ = (("start_ns", c_uint64), ("nr", c_int64))


class SyscallKey(ctypes.Structure):
    _fields_ = (("tgid", c_uint32), ("nr", c_uint32))


class SyscallStats(ctypes.Structure):
    _fields_ = (
        ("comm", c_char * COMM_LEN),
        ("count", c_uint64),
        ("errors", c_uint64),
        ("total_ns", c_uint64),
        ("min_ns", c_uint64),
        ("max_ns", c_uint64),
        ("hist", c_uint64 * HIST_BUCKETS),
    )


class SyscallErrnoKey(ctypes.Structure):
    _fields_ = (("tgid", c_uint32), ("nr", c_uint32), ("err", c_uint32), ("reserved", c_uint32))


# enum syscall_stat, in order
STAT_NAMES = ("events", "no_start", "task_storage_full", "stats_map_full", "errno_map_full")
LOSS_NAMES = ("task_storage_full", "stats_map_full", "errno_map_full")

_TABLES = {"x86_64": X86_64, "aarch64": AARCH64}


def syscall_name(nr: int, machine: str | None = None) -> str:
    """The syscall's name on this architecture, or ``syscall_NR`` when unknown."""
    table = _TABLES.get(machine or platform.machine(), {})
    return table.get(nr, f"syscall_{nr}")


@dataclass(frozen=True)
class SyscallOptions:
    pid: int = 0


class SyscallCollector:
    """Loads and attaches syscall.bpf.c; :meth:`drain` returns one window's stats."""

    def __init__(self, options: SyscallOptions) -> None:
        self.options = options
        self._obj: BpfObject | None = None
        self._stats_prev = [0] * len(STAT_NAMES)
        self._window_start_ns = 0

    def start(self) -> None:
        obj = BpfObject(object_path("syscall"))
        self._obj = obj
        try:
            config = SyscallConfig.from_buffer(obj.map(".rodata").initial_value())
            config.target_tgid = self.options.pid
            obj.load()
            for n in (0, 1):
                check_layout(obj.map(f"stats{n}"), SyscallKey, SyscallStats)
                check_layout(obj.map(f"errnos{n}"), SyscallErrnoKey, c_uint64)
            check_layout(obj.map("starts"), ctypes.c_int, SyscallStart)
            self._buffers = DoubleBuffer(obj.map("control"))
            self._counters = PerCpuCounters(obj.map("counters"), len(STAT_NAMES))
            for prog in ("on_sys_enter", "on_sys_exit"):
                obj.keep(obj.program(prog).attach())
        except BaseException:
            self.close()
            raise
        self._window_start_ns = time.time_ns()

    def close(self) -> None:
        if self._obj is not None:
            self._obj.close()
            self._obj = None

    def sample_count(self) -> int:
        return self._counters.read()[0]

    def drain(self) -> Profile:
        if self._obj is None:
            raise UserError("the syscall tracer is not running")
        end_ns = time.time_ns()
        idle = self._buffers.flip()
        stats = self._obj.map(f"stats{idle}").drain(SyscallKey, SyscallStats)
        errnos = self._obj.map(f"errnos{idle}").drain(SyscallErrnoKey, c_uint64)
        by_call: defaultdict[tuple[int, int], dict[int, int]] = defaultdict(dict)
        for ekey, count in errnos:
            by_call[(ekey.tgid, ekey.nr)][ekey.err] = int(count)
        records = [
            SyscallStat(
                pid=key.tgid,
                comm=decode_comm(value.comm),
                nr=key.nr,
                name=syscall_name(key.nr),
                count=value.count,
                errors=value.errors,
                total_ns=value.total_ns,
                min_ns=value.min_ns if value.count else 0,
                max_ns=value.max_ns,
                hist=tuple(value.hist),
                errnos=by_call.get((key.tgid, key.nr), {}),
            )
            for key, value in stats
        ]
        counters = self._counters.read()
        delta = {n: counters[i] - self._stats_prev[i] for i, n in enumerate(STAT_NAMES)}
        self._stats_prev = counters
        profile = Profile(
            event_type=EventType.SYSCALL,
            unit=value_unit(EventType.SYSCALL),
            start_ns=self._window_start_ns,
            end_ns=end_ns,
            losses={n: delta[n] for n in LOSS_NAMES},
            labels={"exits_without_enter": str(delta["no_start"])},
            syscalls=records,
        )
        self._window_start_ns = end_ns
        return profile
