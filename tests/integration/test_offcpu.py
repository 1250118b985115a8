"""Off-CPU time by stack on the real kernel: sched_switch, the table unwinder, real waits."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from aperture.model import Profile

pytestmark = pytest.mark.usefixtures("bpf")


@contextmanager
def offcpu(pid: int, *, min_block_ns: int = 10_000, sample_every: int = 1) -> Iterator[object]:
    from aperture.agent.collectors.cpu import CpuCollector, CpuOptions, OffCpuOptions
    from aperture.agent.collectors.offcpu import OffCpuCollector
    from aperture.agent.symbols.symbolizer import Symbolizer

    options = CpuOptions(pid=pid, sample_cpu=False,
                         offcpu=OffCpuOptions(min_block_ns, sample_every))  # fmt: skip
    collector = OffCpuCollector(CpuCollector(options, Symbolizer()), owns_engine=True)
    collector.start()
    try:
        yield collector
    finally:
        collector.close()


def waits(workloads: Path, mode: str, seconds: float) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [str(workloads / "offcpu_waits"), mode, str(seconds)], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    assert int(proc.stdout.readline()) == proc.pid
    return proc


def finish(proc: subprocess.Popen[bytes]) -> tuple[int, int]:
    """The workload's CPU time (ns) and round trips, printed as it ends."""
    out, _ = proc.communicate(timeout=60)
    cpu_ns, trips = out.split()
    return int(cpu_ns), int(trips)


def names(profile: Profile, thread_of: int | None = None) -> dict[str, int]:
    """Off-CPU ns under each function name (each stack counted once per name)."""
    out: dict[str, int] = {}
    for s in profile.samples:
        if thread_of is None or s.tid == thread_of:
            for name in {f.name for f in s.stack}:
                out[name] = out.get(name, 0) + s.value
    return out


def test_sleeps_split_by_function_and_add_up_to_the_time_off_cpu(
    workloads: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    with offcpu(0) as c:  # the process is started after the probe: every block is seen
        proc = waits(workloads, "sleep", 3.0)
        spawn.append(proc)
        started = time.monotonic_ns()
        cpu_ns, _ = finish(proc)
        wall_ns = time.monotonic_ns() - started
        profile = c.drain()  # type: ignore[attr-defined]
    mine = [s for s in profile.samples if s.pid == proc.pid]
    total = sum(s.value for s in mine)
    by_name = names(Profile(profile.event_type, profile.unit, samples=mine))
    a, b = by_name.get("sleep_a", 0), by_name.get("sleep_b", 0)
    assert a and b, f"sleep_a/sleep_b missing: {sorted(by_name)}"
    share = 100 * a / (a + b)
    assert abs(share - 75) <= 5, f"sleep_a is {share:.1f}% of the sleeps, expected 75 +- 5"
    assert by_name["main"] == a + b  # every sleep's stack reaches main
    assert by_name["[off-CPU: sleeping]"] >= 0.95 * total
    # the whole life of the thread: wall time = CPU time + off-CPU time (+- 10%)
    expected = wall_ns - cpu_ns
    assert abs(total - expected) <= 0.1 * expected, (total, expected, wall_ns, cpu_ns)
    for s in mine:  # no frame of the probe itself
        assert not any(f.name.startswith("bpf_prog_") for f in s.stack), s.stack
    assert profile.losses and not any(profile.losses.values()), profile.losses


def test_a_thread_blocked_on_a_pipe_shows_read_and_the_pipe_wait(
    workloads: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    # A thread blocked before the probe is attached is seen from its next block on:
    # the program starts after it.
    with offcpu(0) as c:
        proc = waits(workloads, "pipe", 1.5)
        spawn.append(proc)
        finish(proc)  # the reader is woken as the program ends
        profile = c.drain()  # type: ignore[attr-defined]
    blocked = [
        s for s in profile.samples
        if s.pid == proc.pid and "wait_for_pipe" in {f.name for f in s.stack}
    ]  # fmt: skip
    assert blocked, f"no stack with wait_for_pipe in {len(profile.samples)} stacks"
    stack = max(blocked, key=lambda s: s.value)
    frames = [f.name for f in stack.stack]
    pipe = next(n for n in frames if n.endswith("pipe_read"))  # anon_pipe_read on 6.18
    assert "read" in frames[frames.index("wait_for_pipe") : frames.index(pipe)]
    assert frames.index("wait_for_pipe") < frames.index(pipe) < frames.index("schedule")
    assert stack.value >= 1e9  # blocked for the 1.5 s but its first 0.2
    assert frames[-1] == "[off-CPU: sleeping]"


def test_a_context_switch_storm_loses_nothing_uncounted(
    workloads: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    """Every block's time is either recorded or counted as short: together they are the
    threads' time off CPU; 1-in-N stacks keep the others' time under [stack not sampled]."""
    with offcpu(0, min_block_ns=20_000, sample_every=8) as c:
        proc = waits(workloads, "storm", 2.0)
        spawn.append(proc)
        started = time.monotonic_ns()
        cpu_ns, trips = finish(proc)
        wall_ns = time.monotonic_ns() - started
        profile = c.drain()  # type: ignore[attr-defined]
    labels = {k: int(v) for k, v in profile.labels.items()}
    assert trips > 1000 and labels["blocks"] >= trips  # each trip blocks a thread at least once
    assert not any(profile.losses.values()), profile.losses
    mine = sum(s.value for s in profile.samples if s.pid == proc.pid)
    unsampled = sum(
        s.value for s in profile.samples
        if s.pid == proc.pid and any(f.name == "[stack not sampled]" for f in s.stack)
    )  # fmt: skip
    assert 0 < unsampled < mine
    # two threads for the wall time: off CPU = 2 x wall - CPU time (+- 15%, the short
    # blocks of other processes are in short_ns too, so that side is an upper bound)
    expected = 2 * wall_ns - cpu_ns
    assert mine <= expected * 1.15
    assert mine + labels["short_ns"] >= expected * 0.85, (mine, labels, expected)


PY_SLEEPER = """
import sys, time
def wait_for_work():
    time.sleep(0.02)
def serve():
    end = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < end:
        wait_for_work()
print(flush=True)
serve()
"""


def test_a_python_program_waits_in_its_python_functions(
    tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    python = Path("/usr/bin/python3.11")
    if not python.exists():
        pytest.skip("Debian's python3.11 is not installed")
    script = tmp_path / "sleeper.py"
    script.write_text(PY_SLEEPER)
    with offcpu(0) as c:
        proc = subprocess.Popen([str(python), str(script), "2.5"], stdout=subprocess.PIPE)
        spawn.append(proc)
        assert proc.stdout is not None
        proc.stdout.readline()
        proc.wait(timeout=60)
        profile = c.drain()  # type: ignore[attr-defined]
    mine = [s for s in profile.samples if s.pid == proc.pid]
    total = sum(s.value for s in mine)
    in_python = sum(
        s.value for s in mine
        if [f.name for f in s.stack if f.kind.value == "python"][-2:] == ["serve", "wait_for_work"]
    )  # fmt: skip
    # the first sleeps may come before the interpreter is registered: most, not all
    assert in_python >= 0.8 * total, (in_python, total)
    assert 1.5e9 < in_python < 2.7e9
