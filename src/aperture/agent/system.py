"""Start-up checks of what the agent needs from the host, each with a fix."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

from aperture.errors import UserError

CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39
TRACEFS = Path("/sys/kernel/tracing")
BTF = Path("/sys/kernel/btf/vmlinux")


def effective_caps(status: Path = Path("/proc/self/status")) -> int:
    for line in status.read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def check_privileges() -> None:
    """Fail with a sentence saying what is missing unless BPF and perf events are allowed."""
    caps = effective_caps()

    def has(cap: int) -> bool:
        return bool(caps & (1 << cap))

    if has(CAP_SYS_ADMIN) or (has(CAP_BPF) and has(CAP_PERFMON)):
        return
    missing = [n for n, c in (("CAP_BPF", CAP_BPF), ("CAP_PERFMON", CAP_PERFMON)) if not has(c)]
    raise UserError(
        f"the agent lacks {' and '.join(missing)}: run it as root "
        "(sudo aperture-agent ...) or grant those capabilities."
    )


def check_btf() -> None:
    if not BTF.exists():
        raise UserError(
            f"this kernel exposes no BTF ({BTF} is missing): CO-RE programs need a kernel "
            "built with CONFIG_DEBUG_INFO_BTF=y."
        )


def _tracefs_ready() -> bool:
    try:
        return (TRACEFS / "events").is_dir()
    except PermissionError:
        raise UserError(
            f"cannot read {TRACEFS}: run the agent as root or grant it CAP_DAC_READ_SEARCH."
        ) from None


def ensure_tracefs() -> None:
    """Mount tracefs if it is not mounted: libbpf resolves tracepoint ids through it."""
    if _tracefs_ready():
        return
    libc = ctypes.CDLL(None, use_errno=True)
    mount = libc.mount
    mount.argtypes = [
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_ulong,
        ctypes.c_void_p,
    ]
    mount.restype = ctypes.c_int
    rc = mount(b"nodev", str(TRACEFS).encode(), b"tracefs", 0, None)
    if rc != 0 and not _tracefs_ready():
        err: int = ctypes.get_errno()
        raise UserError(
            f"tracefs is not mounted at {TRACEFS} and mounting it failed "
            f"({os.strerror(err)}): run `mount -t tracefs nodev {TRACEFS}`."
        )


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
# Allocations from this size up get pages of their own, given back when freed.
MMAP_THRESHOLD = 256 << 10
# Heaps for the agent's threads: the main thread's and one shared by the others.
ARENA_MAX = 2


def release_native_heap() -> bool:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``);
    False if not glibc.

    Freed blocks below the mmap threshold stay in the heap, and only its top is
    trimmed by itself: libbpf's copy of the kernel's BTF at load (about 11 MB here)
    and the buffers of the first tables and drains left the agent's resident size
    at its first window's peak for good.
    """
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes = (ctypes.c_size_t,)
    trim.restype = ctypes.c_int
    trim(0)
    return True


def bound_native_heap() -> bool:
    """Keep the C heap from holding on to memory the agent has freed; False if not glibc.

    glibc raises its mmap threshold each time a large block is freed, up to 32 MB, so
    the per-window buffers (drained stacks, section reads, table layouts) end up in
    heaps that never shrink, and gives each thread a heap of its own (up to 8 per
    core). A fixed threshold returns every large block at once; two arenas bound the
    rest.
    """
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return all(
        mallopt(param, value)
        for param, value in (
            (_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
            (_M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD),
            (_M_ARENA_MAX, ARENA_MAX),
        )
    )


_PR_SET_NAME = 15


def name_thread(name: str) -> None:
    """Give the calling thread ``name`` as the kernel shows it (top -H, perf, /proc/PID/task):
    Python names its threads for itself only. At most 15 bytes are kept."""
    libc = ctypes.CDLL(None)
    libc.prctl(_PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)
