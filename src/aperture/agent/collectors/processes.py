"""New-process announcements from procs.bpf.h: maps read while the process lives."""

from __future__ import annotations

import ctypes
import threading
from collections import OrderedDict
from collections.abc import Callable
from ctypes import c_char, c_uint32
from typing import Protocol

from aperture.agent.collectors.bpfobj import check_layout, decode_comm
from aperture.agent.libbpf import BpfObject, RingBuffer
from aperture.agent.symbols.process import PROC_ROOT, ProcessMaps
from aperture.agent.system import name_thread

COMM_LEN = 16
# Process names kept (most recently announced or looked up).
MAX_NAMES = 16_384


# ctypes mirrors of src/aperture/bpf/aperture.h
class ProcInfo(ctypes.Structure):
    _fields_ = (("comm", c_char * COMM_LEN),)


class ProcEvent(ctypes.Structure):
    _fields_ = (("tgid", c_uint32), ("kind", c_uint32), ("comm", c_char * COMM_LEN))


# enum proc_event_kind
PROC_EVENT_NEW = 0
PROC_EVENT_MAPS_CHANGED = 1
PROC_EVENT_TABLE_WANTED = 2  # its tgid field holds a file id, not a process
PROC_EVENT_PYTHON_STACK = 3  # a PyStackEvent
MAX_PY = 128  # APERTURE_MAX_PY_FRAMES


class PyStackEvent(ctypes.Structure):
    _fields_ = (
        ("tgid", c_uint32),
        ("kind", c_uint32),
        ("py_len", c_uint32),
        ("reserved", c_uint32),
        ("py", ctypes.c_uint64 * MAX_PY),
    )


class Remembers(Protocol):
    def keep(self, pid: int, maps: ProcessMaps | None) -> bool: ...


class ProcessWatcher:
    """Polls an object's ``proc_events`` ring buffer on a thread of its own.

    Each announced process has its maps snapshotted by the symbolizer at once,
    and its name kept, so frames and names resolve after it exits;
    ``on_event(kind, tgid, maps)`` gets every event too (the unwinder registers
    mappings and builds the tables samples ask for), and ``on_python_stack(tgid,
    entries)`` each new stack's Python frames (resolved while the process lives).
    ``adopt(tgid)``, when given, is asked first for a new process's maps (the
    unwinder's own registration of it, when complete): a process it answers for
    is not read from ``/proc`` and not passed to ``on_event``.
    """

    def __init__(
        self,
        obj: BpfObject,
        symbolizer: Remembers,
        on_event: Callable[[int, int, ProcessMaps | None], object] | None = None,
        on_python_stack: Callable[[int, tuple[int, ...]], object] | None = None,
        proc_root: str = PROC_ROOT,
        adopt: Callable[[int], ProcessMaps | None] | None = None,
    ) -> None:
        check_layout(obj.map("procs"), c_uint32, ProcInfo)
        self._adopt = adopt
        self._procs = obj.map("procs")
        self._symbolizer = symbolizer
        self._notify = on_event
        self._python_stack = on_python_stack
        self._proc_root = proc_root
        # A name is needed until the process's last samples are drained (a window or
        # two after it exits); capped so a host that forks all day does not grow it.
        self._names: OrderedDict[int, str] = OrderedDict()
        self._names_lock = threading.Lock()  # the ring's thread and the drain both write
        self._ring = RingBuffer(obj.map("proc_events"), self._on_event)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="proc-events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._ring.wake()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        self._ring.close()

    def _poll(self) -> None:
        name_thread("proc-events")
        while not self._stop.is_set():
            # Woken by each record and by close(): the timeout is only a backstop (a
            # wake-up every 100 ms was a tenth of this thread's time on a quiet host).
            self._ring.poll(2000)

    def _on_event(self, data: bytes) -> None:
        if len(data) >= 8 and int.from_bytes(data[4:8], "little") == PROC_EVENT_PYTHON_STACK:
            if self._python_stack is not None:
                stack = PyStackEvent.from_buffer_copy(data[: ctypes.sizeof(PyStackEvent)])
                self._python_stack(stack.tgid, tuple(stack.py[: min(stack.py_len, MAX_PY)]))
            return
        event = ProcEvent.from_buffer_copy(data[: ctypes.sizeof(ProcEvent)])
        if event.kind == PROC_EVENT_NEW:
            self._keep(event.tgid, decode_comm(event.comm))
        # The process's maps, read once for the unwinder and the symbolizer (most
        # announced processes live for milliseconds: this read is most of their cost,
        # saved when the unwinder's kernel registration of the process is complete).
        maps = None
        if event.kind == PROC_EVENT_NEW and self._adopt is not None:
            maps = self._adopt(event.tgid)
        adopted = maps is not None
        if event.kind != PROC_EVENT_TABLE_WANTED and not adopted:
            maps = ProcessMaps.read(event.tgid, self._proc_root)
        # Unwinding first: the walker waits for it, the symbolizer not.
        if self._notify is not None and not adopted:
            self._notify(event.kind, event.tgid, maps)
        if event.kind != PROC_EVENT_TABLE_WANTED:
            self._symbolizer.keep(event.tgid, maps)

    def _keep(self, tgid: int, name: str) -> None:
        with self._names_lock:
            self._names[tgid] = name
            self._names.move_to_end(tgid)
            while len(self._names) > MAX_NAMES:
                self._names.popitem(last=False)

    def name(self, tgid: int, fallback: str) -> str:
        """The process name: announced, else still in the kernel map, else ``fallback``."""
        name = self._names.get(tgid)
        if name is None:
            info = ProcInfo()
            name = decode_comm(info.comm) if self._procs.lookup(c_uint32(tgid), info) else fallback
            self._keep(tgid, name)
        return name
