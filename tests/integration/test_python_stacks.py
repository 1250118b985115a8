"""Python functions in the agent's stacks, for each CPython on this machine, on the real kernel."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from aperture.formats.json_format import load_json
from aperture.model import FrameKind, Profile, Sample

pytestmark = pytest.mark.usefixtures("bpf")

AGENT = [sys.executable, "-m", "aperture.agent.cli"]
PYENV_ROOT = Path(os.environ.get("PYENV_ROOT", "/root/.pyenv"))
INTERPRETERS = {
    "debian-3.11": Path("/usr/bin/python3.11"),
    "3.10": PYENV_ROOT / "versions/3.10.13/bin/python3.10",
    "3.11": PYENV_ROOT / "versions/3.11.7/bin/python3.11",
    "3.12": PYENV_ROOT / "versions/3.12.1/bin/python3.12",
    "3.13": PYENV_ROOT / "versions/3.13.0/bin/python3.13",
}

HOT = textwrap.dedent(
    """
    import sys, time

    def hot_a():
        s = 0
        for i in range(300000):
            s += i * i
        return s

    def hot_b():
        s = 0
        for i in range(100000):
            s += i * i
        return s

    def main(seconds):
        end = time.time() + seconds
        while time.time() < end:
            hot_a()
            hot_b()

    print("ready", flush=True)
    main(float(sys.argv[1]))
    """
)


def interpreter(name: str) -> Path:
    path = INTERPRETERS[name]
    if not path.exists():
        pytest.skip(f"{path} is not installed (pyenv {name} on this kind of machine)")
    return path


def start(python: Path, script: Path, *args: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([str(python), str(script), *args], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    return proc


def run_agent(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*AGENT, *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result


def python_names(sample: Sample) -> list[str]:
    return [f.name for f in sample.stack if f.kind is FrameKind.PYTHON]


def with_function(samples: list[Sample], name: str) -> list[Sample]:
    return [s for s in samples if name in python_names(s)]


def total(samples: list[Sample]) -> int:
    return sum(s.value for s in samples)


def chained(sample: Sample, chain: list[str]) -> bool:
    """``chain`` in a row among the Python frames (3.10 recurses through C between them)."""
    names = python_names(sample)
    n = len(chain)
    return any(names[i : i + n] == chain for i in range(len(names) - n + 1))


def check_hot_profile(profile: Profile, pid: int, script: Path) -> None:
    samples = [s for s in profile.samples if s.pid == pid]
    a, b = with_function(samples, "hot_a"), with_function(samples, "hot_b")
    first = [f.name for f in samples[0].stack] if samples else None
    # a share of what the process got: on a loaded 2-core host a late one gets few samples
    assert total(samples) > 100, f"pid {pid}: only {total(samples)} samples"
    shown = (total(a) + total(b)) / total(samples)
    assert shown >= 0.8, f"pid {pid}: {total(a)}+{total(b)}/{total(samples)}: {first}"
    share = total(a) / (total(a) + total(b))
    assert 0.70 <= share <= 0.80, f"pid {pid}: hot_a share {share:.3f}, expected 0.75 +- 0.05"
    good = total([s for s in a if chained(s, ["<module>", "main", "hot_a"])])
    assert good / total(a) >= 0.90, (
        f"only {good}/{total(a)} hot_a samples have <module> → main → hot_a"
    )
    frame = next(f for s in a for f in s.stack if f.name == "hot_a")
    assert frame.module == str(script) and frame.line >= 4, frame
    # The Python frames sit where the eval loop was, under the interpreter's own frames.
    replaced = total([s for s in a if all(f.name != "_PyEval_EvalFrameDefault" for f in s.stack)])
    assert replaced / total(a) >= 0.90, f"{replaced}/{total(a)} hot_a samples without the eval loop"


@pytest.mark.parametrize("name", list(INTERPRETERS))
def test_python_functions_under_pid(
    name: str, tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    python = interpreter(name)
    script = tmp_path / "hot.py"
    script.write_text(HOT)
    proc = start(python, script, "30")
    spawn.append(proc)
    out = tmp_path / "py.json"
    result = run_agent("--pid", str(proc.pid), "-F", "499", "-d", "4s", "-o", str(out))
    check_hot_profile(load_json(out.read_text()), proc.pid, script)
    assert "Python: 100.0% of Python processes' samples show their Python functions" in (
        result.stderr
    ), result.stderr


def test_python_functions_shown_while_the_interpreter_has_no_unwind_table(
    tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    """The native walk stops in libpython (its table refused by a small
    --unwind-table-memory, as while a new process's table is still being built):
    the Python functions still show, rootward of an [unknown] frame for the
    native frames between."""
    python = interpreter("3.12")
    script = tmp_path / "hot.py"
    script.write_text(HOT)
    proc = start(python, script, "30")
    spawn.append(proc)
    out = tmp_path / "py.json"
    result = run_agent(
        *("--pid", str(proc.pid), "-F", "499", "-d", "4s", "--unwind-table-memory", "1MiB"),
        *("-o", str(out)),
    )
    profile = load_json(out.read_text())
    assert profile.labels["unwind_complete"] == "0", result.stderr  # no walk got past libpython
    check_hot_profile(profile, proc.pid, script)
    a = with_function([s for s in profile.samples if s.pid == proc.pid], "hot_a")
    gapped = total([s for s in a if any(f.kind is FrameKind.UNKNOWN for f in s.stack)])
    assert gapped / total(a) >= 0.5, f"only {gapped}/{total(a)} hot_a samples behind a gap"


def test_python_functions_system_wide_with_late_and_exiting_processes(
    tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    """Every interpreter at once: three started before the agent, two after it, exiting
    mid-window (before the agent drains their samples)."""
    script = tmp_path / "hot.py"
    script.write_text(HOT)
    pythons = {name: path for name, path in INTERPRETERS.items() if path.exists()}
    assert "debian-3.11" in pythons, "Debian's python3.11 is on every machine of this kind"
    names = list(pythons)
    early, late = names[: (len(names) + 1) // 2], names[(len(names) + 1) // 2 :]
    procs = {name: start(pythons[name], script, "30") for name in early}
    spawn.extend(procs.values())
    out = tmp_path / "sys.json"
    agent = subprocess.Popen(
        [*AGENT, "-F", "499", "-d", "10s", "-q", "--push-interval", "30s", "-o", str(out)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(3)
        for name in late:
            procs[name] = start(pythons[name], script, "4")
            spawn.append(procs[name])
        for name in late:
            procs[name].wait(timeout=30)
        _, err = agent.communicate(timeout=60)
    finally:
        if agent.poll() is None:
            agent.kill()
    assert agent.returncode == 0, err
    profile = load_json(out.read_text())
    for proc in procs.values():
        check_hot_profile(profile, proc.pid, script)


JSON_SCRIPT = textwrap.dedent(
    """
    import json, sys, time

    DATA = [{"k%d" % i: [i, str(i) * 5, {"x": i * 0.5}]} for i in range(4000)]

    def encode():
        return json.dumps(DATA)

    def main(seconds):
        end = time.time() + seconds
        while time.time() < end:
            encode()

    print("ready", flush=True)
    main(float(sys.argv[1]))
    """
)


# Debian's python3.11 has no .symtab: _json's static functions are built in and unnamed.
@pytest.mark.parametrize("name", ["3.10", "3.11", "3.12", "3.13"])
def test_c_extension_frames_sit_under_the_python_function_that_called_them(
    name: str, tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    python = interpreter(name)
    script = tmp_path / "enc.py"
    script.write_text(JSON_SCRIPT)
    proc = start(python, script, "30")
    spawn.append(proc)
    out = tmp_path / "enc.json"
    run_agent("--pid", str(proc.pid), "-F", "499", "-d", "4s", "-o", str(out))
    samples = [s for s in load_json(out.read_text()).samples if s.pid == proc.pid]
    in_encoder = [s for s in samples if any("encoder_listencode" in f.name for f in s.stack)]
    assert total(in_encoder) > 0.3 * total(samples), "json.dumps should be busy in _json's encoder"

    def under_encode(s: Sample) -> bool:
        names = [f.name for f in s.stack]
        c = next(i for i, n in enumerate(names) if "encoder_listencode" in n)
        rootward = [f.name.rpartition(".")[2] for f in s.stack[:c] if f.kind is FrameKind.PYTHON]
        # 3.10 has no qualified names: JSONEncoder.encode is "encode" there
        return rootward[-4:] == ["encode", "dumps", "encode", "iterencode"]

    good = total([s for s in in_encoder if under_encode(s)])
    assert good / total(in_encoder) >= 0.9, (
        f"{good}/{total(in_encoder)} _json encoder samples under encode → dumps → "
        f"JSONEncoder.encode → JSONEncoder.iterencode; one: {[f.name for f in in_encoder[0].stack]}"
    )


THREADS_SCRIPT = textwrap.dedent(
    """
    import sys, threading, time

    def spin_one(end):
        s = 0
        while time.time() < end:
            s += 1

    def spin_two(end):
        s = 0
        while time.time() < end:
            s -= 1

    end = time.time() + float(sys.argv[1])
    threads = [threading.Thread(target=f, args=(end,)) for f in (spin_one, spin_two)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    print(" ".join(str(t.native_id) for t in threads), flush=True)
    print("ready", flush=True)
    for t in threads:
        t.join()
    """
)


@pytest.mark.parametrize("name", ["3.10", "debian-3.11", "3.13"])
def test_each_thread_shows_its_own_functions(
    name: str, tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    python = interpreter(name)
    script = tmp_path / "threads.py"
    script.write_text(THREADS_SCRIPT)
    proc = subprocess.Popen([str(python), str(script), "30"], stdout=subprocess.PIPE)
    spawn.append(proc)
    assert proc.stdout is not None
    one, two = (int(t) for t in proc.stdout.readline().split())
    assert proc.stdout.readline() == b"ready\n"
    out = tmp_path / "threads.json"
    run_agent("--pid", str(proc.pid), "-F", "499", "-d", "4s", "-o", str(out))
    samples = [s for s in load_json(out.read_text()).samples if s.pid == proc.pid]
    for tid, mine, other in ((one, "spin_one", "spin_two"), (two, "spin_two", "spin_one")):
        thread = [s for s in samples if s.tid == tid]
        assert total(thread) > 100, f"thread {tid}: {total(thread)} samples"
        assert total(with_function(thread, other)) == 0, f"{other} shown in {mine}'s thread"
        assert total(with_function(thread, mine)) / total(thread) >= 0.9
        # A thread's stack starts at the thread's start, then its Python frames.
        sample = with_function(thread, mine)[0]
        assert "Thread._bootstrap" in python_names(sample) or "_bootstrap" in python_names(sample)
