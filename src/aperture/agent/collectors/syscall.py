"""The syscall latency tracer: per (process, syscall) stats aggregated by syscall.bpf.c."""

from __future__ import annotations

import ctypes
import platform
from collections import defaultdict
from ctypes import c_char, c_int64, c_uint32, c_uint64
from dataclasses import dataclass

from aperture.agent.collectors.base import BpfCollector, own_tgid, rodata
from aperture.agent.collectors.bpfobj import decode_comm
from aperture.agent.libbpf import BpfObject
from aperture.agent.syscall_table import AARCH64, X86_64
from aperture.model import EventType, Profile, SyscallStat

COMM_LEN = 16
HIST_BUCKETS = 40


# ctypes mirrors of src/aperture/bpf/aperture.h
class SyscallConfig(ctypes.Structure):
    _fields_ = (("target_tgid", c_uint32), ("agent_tgid", c_uint32))


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


class SyscallCollector(BpfCollector):
    """Loads and attaches syscall.bpf.c; :meth:`drain` returns one window's stats."""

    object_name = "syscall"
    event_type = EventType.SYSCALL
    not_running = "the syscall tracer is not running"
    layouts = (
        ("stats0", SyscallKey, SyscallStats),
        ("errnos0", SyscallErrnoKey, c_uint64),
        ("stats1", SyscallKey, SyscallStats),
        ("errnos1", SyscallErrnoKey, c_uint64),
        ("starts", ctypes.c_int, SyscallStart),
    )
    stat_names = STAT_NAMES
    loss_names = LOSS_NAMES

    def __init__(self, options: SyscallOptions) -> None:
        super().__init__()
        self.options = options

    def _configure(self, obj: BpfObject) -> None:
        config = rodata(obj, SyscallConfig)
        config.target_tgid = self.options.pid
        config.agent_tgid = own_tgid(self.options.pid)

    def _attach(self, obj: BpfObject) -> None:
        for prog in ("on_sys_enter", "on_sys_exit"):
            obj.keep(obj.program(prog).attach())

    def _read(self, obj: BpfObject, idle: int, profile: Profile) -> None:
        stats = obj.map(f"stats{idle}").drain(SyscallKey, SyscallStats)
        errnos = obj.map(f"errnos{idle}").drain(SyscallErrnoKey, c_uint64)
        by_call: defaultdict[tuple[int, int], dict[int, int]] = defaultdict(dict)
        for ekey, count in errnos:
            by_call[(ekey.tgid, ekey.nr)][ekey.err] = int(count)
        profile.syscalls = [
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
        delta = self._window_counters(profile)
        profile.labels = {"exits_without_enter": str(delta["no_start"])}
