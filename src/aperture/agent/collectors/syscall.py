"""The syscall latency tracer: per (process, syscall) stats aggregated by syscall.bpf.c."""

from __future__ import annotations

import ctypes
import platform
import struct
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


# the same layouts, for unpacking drained entries in bulk
_KEY = struct.Struct("<II")
_STATS = struct.Struct(f"<{COMM_LEN}s5Q{HIST_BUCKETS}Q")
_ERRNO_KEY = struct.Struct("<IIII")
_U64 = struct.Struct("<Q")
assert _KEY.size == ctypes.sizeof(SyscallKey) and _STATS.size == ctypes.sizeof(SyscallStats)
assert _ERRNO_KEY.size == ctypes.sizeof(SyscallErrnoKey)

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
    leave_out_agent: bool = False  # the agent's own syscalls not recorded (base.own_tgid)


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
        config.agent_tgid = own_tgid(self.options.pid, self.options.leave_out_agent)

    def _attach(self, obj: BpfObject) -> None:
        for prog in ("on_sys_enter", "on_sys_exit"):
            obj.keep(obj.program(prog).attach())

    def _read(self, obj: BpfObject, idle: int, profile: Profile) -> None:
        # Unpacked in bulk: a busy host's window holds thousands of (process, syscall)s.
        keys, values = obj.map(f"stats{idle}").drain_raw(_KEY.size, _STATS.size)
        ekeys, evalues = obj.map(f"errnos{idle}").drain_raw(_ERRNO_KEY.size, 8)
        by_call: defaultdict[tuple[int, int], dict[int, int]] = defaultdict(dict)
        for (tgid, nr, err, _), (count,) in zip(
            _ERRNO_KEY.iter_unpack(ekeys), _U64.iter_unpack(evalues), strict=True
        ):
            by_call[(tgid, nr)][err] = count
        comms: dict[bytes, str] = {}
        names: dict[int, str] = {}
        out = []
        for (tgid, nr), (comm, count, errors, total, low, high, *hist) in zip(
            _KEY.iter_unpack(keys), _STATS.iter_unpack(values), strict=True
        ):
            name = comms.get(comm)
            if name is None:
                name = comms[comm] = decode_comm(comm)
            call = names.get(nr)
            if call is None:
                call = names[nr] = syscall_name(nr)
            out.append(
                SyscallStat(
                    pid=tgid,
                    comm=name,
                    nr=nr,
                    name=call,
                    count=count,
                    errors=errors,
                    total_ns=total,
                    min_ns=low if count else 0,
                    max_ns=high,
                    hist=tuple(hist),
                    errnos=by_call.get((tgid, nr), {}),
                )
            )
        profile.syscalls = out
        delta = self._window_counters(profile)
        profile.labels = {"exits_without_enter": str(delta["no_start"])}
