"""A thread's Python frames read from process memory, the way the BPF walker reads them.

This is the reference for the BPF walk and what the tests check it against: the
same offsets, the same pointer chain, the same ``(code object, instruction)`` pairs.
"""

from __future__ import annotations

from typing import NamedTuple

from aperture.agent.python.interpreter import Interpreter, ProcessMemory
from aperture.agent.python.offsets import FRAME_OWNED_BY_CSTACK
from aperture.agent.symbols.process import PROC_ROOT

MAX_FRAMES = 128
_MAX_THREADS = 4096


class PyThread(NamedTuple):
    """One ``PyThreadState`` of the interpreter's thread list."""

    tstate: int
    thread_id: int
    """``pthread_self()`` of the thread (its FS base on x86_64 glibc)"""
    native_thread_id: int
    """``gettid()`` (3.11+; -1 on 3.10)"""


def list_threads(mem: ProcessMemory, interpreter: Interpreter) -> list[PyThread]:
    """The main interpreter's threads, newest first (the order of its list)."""
    o = interpreter.offsets
    interp = mem.u64(interpreter.runtime_addr + o.runtime_interpreters_head)
    if not interp:
        return []
    out: list[PyThread] = []
    tstate = mem.u64(interp + o.interp_threads_head)
    while tstate and len(out) < _MAX_THREADS:
        thread_id = mem.u64(tstate + o.tstate_thread_id)
        native = (
            mem.u64(tstate + o.tstate_native_thread_id) if o.tstate_native_thread_id >= 0 else -1
        )
        if thread_id is None or native is None:
            break
        out.append(PyThread(tstate, thread_id, native))
        tstate = mem.u64(tstate + o.tstate_next)
    return out


def walk_frames(mem: ProcessMemory, interpreter: Interpreter, tstate: int) -> list[tuple[int, int]]:
    """``(code object address, instr)`` of the thread's frames, leaf first.

    ``instr`` is 3.10's ``f_lasti`` (code units), else the byte offset of the
    frame's instruction pointer from the code object. C-stack shim frames (3.12+)
    are skipped; 3.11's entry frames are kept (``is_entry`` only marks where one C
    call of the eval loop ends).
    """
    o = interpreter.offsets
    frame = mem.u64(tstate + o.tstate_frame)
    if frame and o.cframe_current_frame >= 0:
        frame = mem.u64(frame + o.cframe_current_frame)
    out: list[tuple[int, int]] = []
    steps = 0
    while frame and steps < MAX_FRAMES:
        steps += 1
        if o.frame_owner >= 0:
            owner = mem.read(frame + o.frame_owner, 1)
            if owner is None:
                break
            if owner[0] == FRAME_OWNED_BY_CSTACK:
                frame = mem.u64(frame + o.frame_previous)
                continue
        code = mem.u64(frame + o.frame_code)
        raw = mem.read(frame + o.frame_instr, o.frame_instr_size)
        if code is None or raw is None:
            break
        instr = int.from_bytes(raw, "little", signed=o.frame_instr_size == 4)
        out.append((code, instr if o.frame_instr_size == 4 else instr - code))
        frame = mem.u64(frame + o.frame_previous)
    return out


def walk_thread(
    pid: int, interpreter: Interpreter, thread_index: int = 0, *, proc_root: str = PROC_ROOT
) -> list[tuple[int, int]]:
    """The frames of the interpreter's ``thread_index``-th thread (0 = newest), leaf first."""
    with ProcessMemory(pid, proc_root) as mem:
        threads = list_threads(mem, interpreter)
        if thread_index >= len(threads):
            return []
        return walk_frames(mem, interpreter, threads[thread_index].tstate)
