"""Each Python process's interpreter, described to the BPF walker in ``py_procs``.

Filled when the unwinder registers a process (it has just read the process's
maps); a process whose interpreter cannot be used (another version, an
unreadable runtime) is counted and keeps its native stacks.
"""

from __future__ import annotations

import ctypes
import os
import threading
from ctypes import c_int16, c_uint16, c_uint32, c_uint64
from dataclasses import dataclass

from aperture.agent.libbpf import BpfError, BpfMap
from aperture.agent.python.code import CodeResolver
from aperture.agent.python.interpreter import Interpreter, find_interpreter
from aperture.agent.python.merge import decode_entries
from aperture.agent.python.offsets import UnsupportedPython
from aperture.agent.symbols.process import ProcessMaps

# The PyOffsets fields struct py_proc carries, in its order (aperture.h).
_FIELDS = (
    "runtime_interpreters_head",
    "interp_threads_head",
    "tstate_next",
    "tstate_thread_id",
    "tstate_frame",
    "cframe_current_frame",
    "frame_code",
    "frame_previous",
    "frame_instr",
    "frame_instr_size",
    "frame_is_entry",
    "frame_owner",
)


# ctypes mirror of struct py_proc in src/aperture/bpf/aperture.h
class PyProc(ctypes.Structure):
    _fields_ = (
        ("runtime", c_uint64),
        ("minor", c_uint32),
        *((name, c_int16) for name in _FIELDS),
        ("reserved", c_uint16),
    )


def py_proc(interpreter: Interpreter) -> PyProc:
    """The walker's description of an interpreter."""
    value = PyProc(runtime=interpreter.runtime_addr, minor=interpreter.version[1])
    for name in _FIELDS:
        setattr(value, name, getattr(interpreter.offsets, name))
    return value


@dataclass(frozen=True, slots=True)
class PythonStats:
    processes: int = 0  # Python processes described to the walker now
    unsupported: int = 0  # interpreters found but not usable (version, unreadable)


class PythonRegistry:
    """Interpreters by pid, in ``py_procs`` and with a code resolver each; thread-safe."""

    def __init__(self, py_procs: BpfMap) -> None:
        self._map = py_procs
        self._lock = threading.Lock()
        self._procs: dict[int, tuple[Interpreter, CodeResolver]] = {}
        self._dying: set[int] = set()  # forgotten this window
        self._dying_last: set[int] = set()  # forgotten last window: dropped at the next
        self._unsupported: set[int] = set()  # live pids counted (a process counts once)
        self._unsupported_count = 0

    def register(self, pid: int, maps: ProcessMaps) -> Interpreter | None:
        """Find ``pid``'s interpreter (if any) and describe it to the walker."""
        try:
            interpreter = find_interpreter(pid, maps)
        except UnsupportedPython:
            if not os.path.exists(os.path.join(maps.proc_root, str(pid))):
                return None  # gone before its memory was read: not a Python it cannot read
            with self._lock:
                if pid not in self._unsupported:
                    self._unsupported.add(pid)
                    self._unsupported_count += 1
            self._drop(pid)
            return None
        if interpreter is None:
            self._drop(pid)
            return None
        try:
            self._map.update(c_uint32(pid), py_proc(interpreter))
        except BpfError:
            return None
        with self._lock:
            self._dying.discard(pid)
            self._dying_last.discard(pid)
            old = self._procs.get(pid)
            if old is not None and old[0] == interpreter:
                return interpreter  # same process, maps re-read: keep its code cache
            if old is not None:
                old[1].close()
            self._procs[pid] = (
                interpreter,
                CodeResolver(pid, interpreter, proc_root=maps.proc_root),
            )
        return interpreter

    def preresolve(self, pid: int, raw: tuple[int, ...]) -> None:
        """Read the code objects of a new stack's Python frames now (they are cached)."""
        found = self.get(pid)
        if found is None:
            return
        resolver = found[1]
        for entry in decode_entries(raw):
            resolver.resolve(entry.code, entry.instr)

    def get(self, pid: int) -> tuple[Interpreter, CodeResolver] | None:
        with self._lock:
            return self._procs.get(pid)

    def forget(self, pid: int) -> None:
        """Forget an exited process's interpreter, after one more window.

        Its last samples may sit in the buffer drained next (the kernel writes one
        while the agent drains the other): they still need its resolved code objects.
        """
        with self._lock:
            self._unsupported.discard(pid)
        self._drop(pid)

    def _drop(self, pid: int) -> None:
        """No interpreter for ``pid`` from now on (its resolver goes a window later)."""
        with self._lock:
            if pid not in self._procs:
                return
            self._dying.add(pid)
        self._map.delete(c_uint32(pid))

    def forget_dying(self) -> None:
        """Drop the processes forgotten before the last window (call once per window)."""
        with self._lock:
            gone, self._dying_last = self._dying_last, self._dying
            self._dying = set()
            closing = [self._procs.pop(pid) for pid in gone if pid in self._procs]
        for _interpreter, resolver in closing:
            resolver.close()

    def stats(self) -> PythonStats:
        with self._lock:
            return PythonStats(len(self._procs), self._unsupported_count)
