"""Finding CPython in real processes and reading their frames from memory.

Each interpreter on the host (Debian's python3.11 and the pyenv builds of
3.10-3.13) runs a script whose main thread spins in ``outer → Box.middle → inner``
and whose second thread sleeps in ``worker_fn → wait_é → wait_λ``; the script's
file name has an emoji in it, so file and function names cover every string kind
(ASCII, UCS1, UCS2, UCS4). The frames are walked as the BPF walker will and
resolved from the child's memory, and must name the script's functions and lines.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from aperture.agent.python.code import CodeResolver, PyFrameInfo
from aperture.agent.python.frames import list_threads, walk_frames, walk_thread
from aperture.agent.python.interpreter import (
    Interpreter,
    ProcessMemory,
    UnsupportedPython,
    find_interpreter,
    read_memory,
)
from aperture.agent.python.offsets import offsets_for, read_debug_offsets
from aperture.agent.symbols.process import ProcessMaps

SCRIPT = textwrap.dedent(
    """\
    import sys, threading, time

    def wait_λ():
        time.sleep(600)  # WORKER_LEAF

    def wait_é():
        wait_λ()  # WORKER_MID

    def worker_fn():
        wait_é()  # WORKER_FN

    def inner():
        print(threading.get_ident(), worker.ident, threading.get_native_id(),
              worker.native_id, sys.version_info[:3], flush=True)
        n = 0
        while True: n += 1  # INNER

    class Box:
        def middle(self):
            inner()  # MIDDLE

    def outer():
        Box().middle()  # OUTER

    worker = threading.Thread(target=worker_fn, daemon=True)
    worker.start()
    time.sleep(0.05)
    outer()  # MODULE
    """
)
LINES = {
    marker: i + 1
    for i, text in enumerate(SCRIPT.splitlines())
    for marker in re.findall(r"# (\w+)$", text)
}


def _pyenv_root() -> Path:
    try:
        out = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=True)
        return Path(out.stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        return Path.home() / ".pyenv"


def _interpreters() -> list[tuple[str, str]]:
    root = _pyenv_root() / "versions"
    out = [("debian-3.11", "/usr/bin/python3.11")]
    for version in ("3.10.13", "3.11.7", "3.12.1", "3.13.0"):
        minor = version.rsplit(".", 1)[0]
        out.append((f"pyenv-{version}", str(root / version / "bin" / f"python{minor}")))
    return out


@dataclass
class Child:
    pid: int
    path: Path
    main_ident: int
    worker_ident: int
    main_native: int
    worker_native: int
    version: tuple[int, int, int]


@pytest.fixture(params=_interpreters(), ids=lambda p: p[0])
def child(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Child]:
    _, exe = request.param
    if not os.access(exe, os.X_OK):
        pytest.skip(f"{exe} is not installed")
    script = tmp_path / "probe_🐍.py"
    script.write_text(SCRIPT, encoding="utf-8")
    proc = subprocess.Popen([exe, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        nums = re.findall(r"-?\d+", line)
        assert len(nums) == 7, f"child said {line!r}"
        main_ident, worker_ident, main_native, worker_native, *ver = map(int, nums)
        yield Child(
            proc.pid,
            script,
            main_ident,
            worker_ident,
            main_native,
            worker_native,
            (ver[0], ver[1], ver[2]),
        )
    finally:
        proc.kill()
        proc.wait()


def _find(pid: int) -> Interpreter:
    maps = ProcessMaps.read(pid)
    assert maps is not None
    interp = find_interpreter(pid, maps)
    assert interp is not None
    return interp


def _nm_dynamic(path: str) -> dict[str, tuple[int, int]]:
    """Defined dynamic symbols of ``path``: name -> (value, size)."""
    out = subprocess.run(
        ["nm", "-D", "-S", "--defined-only", path], capture_output=True, text=True, check=True
    ).stdout
    syms = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4:
            syms[parts[3]] = (int(parts[0], 16), int(parts[1], 16))
    return syms


def test_find_interpreter(child: Child) -> None:
    maps = ProcessMaps.read(child.pid)
    assert maps is not None
    interp = _find(child.pid)
    assert interp.version == child.version
    text = maps.find(interp.eval_start)
    assert text is not None and "x" in text.perms and text.file_path == interp.path
    if shutil.which("nm") is None:
        pytest.skip("nm is not installed (binutils)")
    syms = _nm_dynamic(interp.path)
    bias = interp.runtime_addr - syms["_PyRuntime"][0]
    value, size = syms["_PyEval_EvalFrameDefault"]
    assert (interp.eval_start, interp.eval_end) == (value + bias, value + size + bias)


def test_offsets_match_the_process(child: Child) -> None:
    """The thread states the offsets find are the child's threads (ids from the child)."""
    interp = _find(child.pid)
    if child.version[1] >= 13:
        # The process's own _Py_DebugOffsets agree with the DWARF table.
        own = read_debug_offsets(lambda a, n: read_memory(child.pid, a, n), interp.runtime_addr)
        assert own == offsets_for(13) == interp.offsets
    else:
        assert interp.offsets == offsets_for(child.version[1])
    with ProcessMemory(child.pid) as mem:
        threads = list_threads(mem, interp)
    by_ident = {t.thread_id: t for t in threads}
    assert set(by_ident) == {child.main_ident, child.worker_ident}
    if child.version[1] >= 11:
        assert by_ident[child.main_ident].native_thread_id == child.main_native
        assert by_ident[child.worker_ident].native_thread_id == child.worker_native
    # The list is newest first: the worker, then the main thread.
    assert [t.thread_id for t in threads] == [child.worker_ident, child.main_ident]


def _resolved(child: Child, interp: Interpreter, ident: int) -> list[PyFrameInfo]:
    with ProcessMemory(child.pid) as mem:
        tstate = {t.thread_id: t.tstate for t in list_threads(mem, interp)}[ident]
        frames = walk_frames(mem, interp, tstate)
    resolver = CodeResolver(child.pid, interp)
    try:
        out = []
        for code, instr in frames:
            info = resolver.resolve(code, instr)
            assert info is not None, f"code object {code:#x} (instr {instr}) did not resolve"
            out.append(info)
        return out
    finally:
        resolver.close()


def _in_loop(child: Child, interp: Interpreter) -> list[PyFrameInfo]:
    """The main thread's frames once it is past its ``print`` and in the loop (≤ 5 s)."""
    deadline = time.monotonic() + 5
    while True:
        frames = _resolved(child, interp, child.main_ident)
        if (frames and frames[0].line == LINES["INNER"]) or time.monotonic() > deadline:
            return frames
        time.sleep(0.01)


def test_main_thread_frames(child: Child) -> None:
    interp = _find(child.pid)
    frames = _in_loop(child, interp)
    qual = "middle" if child.version[1] == 10 else "Box.middle"
    got = [(f.qualname, f.filename, f.line) for f in frames]
    path = str(child.path)
    assert got == [
        ("inner", path, LINES["INNER"]),
        (qual, path, LINES["MIDDLE"]),
        ("outer", path, LINES["OUTER"]),
        ("<module>", path, LINES["MODULE"]),
    ]
    assert [f.firstlineno for f in frames][-1] == 1


def test_worker_thread_frames(child: Child) -> None:
    interp = _find(child.pid)
    frames = _resolved(child, interp, child.worker_ident)
    path = str(child.path)
    got = [(f.qualname, f.filename, f.line) for f in frames[:3]]
    assert got == [
        ("wait_λ", path, LINES["WORKER_LEAF"]),
        ("wait_é", path, LINES["WORKER_MID"]),
        ("worker_fn", path, LINES["WORKER_FN"]),
    ]
    rest = frames[3:]
    assert rest and all(f.filename.endswith("threading.py") for f in rest), rest
    assert rest[-1].qualname.endswith("_bootstrap")
    assert all(f.line > 0 for f in rest)


def test_walk_thread_by_index(child: Child) -> None:
    interp = _find(child.pid)
    _in_loop(child, interp)
    # Index 1 is the main thread (the list is newest first); past the end: nothing.
    resolver = CodeResolver(child.pid, interp)
    try:
        names = [resolver.resolve(c, i) for c, i in walk_thread(child.pid, interp, 1)]
    finally:
        resolver.close()
    middle = "middle" if child.version[1] == 10 else "Box.middle"
    assert [n.qualname if n else None for n in names] == ["inner", middle, "outer", "<module>"]
    assert walk_thread(child.pid, interp, 2) == []


def test_bad_code_pointers_resolve_to_none(child: Child) -> None:
    interp = _find(child.pid)
    resolver = CodeResolver(child.pid, interp)
    try:
        assert resolver.resolve(0, 0) is None
        assert resolver.resolve(interp.runtime_addr, 0) is None  # mapped, not a code object
        assert resolver.resolve(0x10, 0) is None
    finally:
        resolver.close()


def test_gone_process_reads_none() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert read_memory(proc.pid, 0x400000, 8) is None


def test_unsupported_version_raises() -> None:
    exe = _pyenv_root() / "versions" / "3.9.18" / "bin" / "python3.9"
    if not os.access(exe, os.X_OK):
        pytest.skip(f"{exe} is not installed")
    proc = subprocess.Popen(
        [str(exe), "-c", "import time; print(1, flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        maps = ProcessMaps.read(proc.pid)
        assert maps is not None
        with pytest.raises(UnsupportedPython, match=r"3\.9"):
            find_interpreter(proc.pid, maps)
    finally:
        proc.kill()
        proc.wait()


def test_not_python() -> None:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        maps = None
        for _ in range(100):
            maps = ProcessMaps.read(proc.pid)
            if maps and any("sleep" in m.path for m in maps.mappings):
                break
        assert maps is not None
        assert find_interpreter(proc.pid, maps) is None
    finally:
        proc.kill()
        proc.wait()


def test_processes_of_the_same_files_as_one_without_python_are_answered_from_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A busy host starts the same programs over and over: the second `sleep` is not
    looked at. A gone process (its executable unknown) settles nothing."""
    from aperture.agent.python import interpreter

    monkeypatch.setattr(interpreter, "_no_interpreter", type(interpreter._no_interpreter)())
    gone = subprocess.Popen(["true"])
    gone.wait()
    procs = [subprocess.Popen(["sleep", "60"]) for _ in range(2)]
    try:
        maps = []
        for proc in procs:
            found = None
            for _ in range(100):
                found = ProcessMaps.read(proc.pid)
                if found and any("libc.so" in m.path for m in found.mappings):
                    break
                time.sleep(0.01)
            assert found is not None
            maps.append(found)
        # the first one's files, as a process already gone would show them
        assert find_interpreter(gone.pid, maps[0]) is None
        assert not interpreter._no_interpreter, "its executable was not known: not settled"
        assert find_interpreter(procs[0].pid, maps[0]) is None
        assert len(interpreter._no_interpreter) == 1
        looked: list[int] = []
        monkeypatch.setattr(interpreter, "_candidates", lambda pid, _m: looked.append(pid))
        assert find_interpreter(procs[1].pid, maps[1]) is None
        assert looked == [], "answered without looking at the process"
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
