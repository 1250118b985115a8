"""Opening software CPU-clock perf events, one per online CPU."""

from __future__ import annotations

import ctypes
import errno
import os
import platform
from pathlib import Path

from aperture.errors import UserError

PERF_TYPE_SOFTWARE = 1
PERF_COUNT_SW_CPU_CLOCK = 0
PERF_FLAG_FD_CLOEXEC = 1 << 3
_ATTR_FREQ = 1 << 10  # bit 10 of the perf_event_attr flag word
_SYSCALL_NR = {"x86_64": 298, "aarch64": 241}


class PerfEventAttr(ctypes.Structure):
    """struct perf_event_attr up to PERF_ATTR_SIZE_VER5 (112 bytes)."""

    _fields_ = (
        ("type", ctypes.c_uint32),
        ("size", ctypes.c_uint32),
        ("config", ctypes.c_uint64),
        ("sample_period_or_freq", ctypes.c_uint64),
        ("sample_type", ctypes.c_uint64),
        ("read_format", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
        ("wakeup_events", ctypes.c_uint32),
        ("bp_type", ctypes.c_uint32),
        ("config1", ctypes.c_uint64),
        ("config2", ctypes.c_uint64),
        ("branch_sample_type", ctypes.c_uint64),
        ("sample_regs_user", ctypes.c_uint64),
        ("sample_stack_user", ctypes.c_uint32),
        ("clockid", ctypes.c_int32),
        ("sample_regs_intr", ctypes.c_uint64),
    )


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def parse_cpu_list(text: str) -> list[int]:
    """Parse a kernel CPU list such as ``0-3,6,8-9``."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def online_cpus(path: Path = Path("/sys/devices/system/cpu/online")) -> list[int]:
    return parse_cpu_list(path.read_text())


def max_sample_rate(path: Path = Path("/proc/sys/kernel/perf_event_max_sample_rate")) -> int:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return 100_000


def open_cpu_clock(cpu: int, frequency_hz: int) -> int:
    """Open a CPU-clock sampling event on one CPU for all processes; returns its fd."""
    nr = _SYSCALL_NR.get(platform.machine())
    if nr is None:
        raise UserError(f"CPU profiling is not supported on {platform.machine()} yet.")
    attr = PerfEventAttr()
    attr.type = PERF_TYPE_SOFTWARE
    attr.size = ctypes.sizeof(PerfEventAttr)
    attr.config = PERF_COUNT_SW_CPU_CLOCK
    attr.sample_period_or_freq = frequency_hz
    attr.flags = _ATTR_FREQ
    fd = _libc.syscall(nr, ctypes.byref(attr), -1, cpu, -1, PERF_FLAG_FD_CLOEXEC)
    if fd < 0:
        err = ctypes.get_errno()
        if err == errno.EINVAL and frequency_hz > max_sample_rate():
            raise UserError(
                f"the kernel caps sampling at {max_sample_rate()} Hz "
                f"(kernel.perf_event_max_sample_rate): use a lower --frequency."
            )
        if err in (errno.EACCES, errno.EPERM):
            raise UserError(
                "opening perf events was refused: run the agent as root or with "
                "CAP_PERFMON (and CAP_BPF)."
            )
        raise UserError(f"perf_event_open on CPU {cpu} failed: {os.strerror(err)}.")
    return int(fd)
