"""Lock kinds, contention against idle waiting, holders and wakers, on the real kernel.

Each program is a real C (or Python) program contending or idling on a real
lock; the agent's lock collector watches it with its BPF programs and the
records are checked against what the program measured itself.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from aperture.formats.tables import LockRow, lock_rows
from aperture.model import Frame, FrameKind, LockStat, Profile

pytestmark = pytest.mark.usefixtures("bpf")

WORKLOADS = Path(__file__).parent.parent / "workloads"


@contextmanager
def lock_collector(pid: int, *, every: int = 16) -> Iterator[object]:
    from aperture.agent.collectors.cpu import CpuCollector, CpuOptions, LockOptions
    from aperture.agent.collectors.lock import LockCollector
    from aperture.agent.symbols.symbolizer import Symbolizer

    engine = CpuCollector(
        CpuOptions(pid=pid, sample_cpu=False, lock=LockOptions(sample_every=every)), Symbolizer()
    )
    collector = LockCollector(engine, owns_engine=True)
    collector.start()
    try:
        yield collector
    finally:
        collector.close()


def drain(collector: object) -> Profile:
    from aperture.agent.collectors.lock import LockCollector

    assert isinstance(collector, LockCollector)
    return collector.drain()


def watched(
    argv: list[str], tmp_path: Path, spawn: list[subprocess.Popen[bytes]], after: int
) -> tuple[subprocess.Popen[bytes], str, list[str], Profile]:
    """Run a workload under the lock collector (``GO`` in ``argv``: the file it waits for):
    the process, its first line (printed before go), the ``after`` lines it prints at the
    end, and the profile of its run."""
    go = tmp_path / "go"
    proc = subprocess.Popen([str(go) if a == "GO" else a for a in argv], stdout=subprocess.PIPE)
    spawn.append(proc)
    assert proc.stdout is not None
    first = proc.stdout.readline().decode().strip()
    with lock_collector(proc.pid) as collector:
        go.touch()
        lines = [proc.stdout.readline().decode().strip() for _ in range(after)]
        proc.wait(timeout=60)
        profile = drain(collector)
    return proc, first, lines, profile


def names(stacks: object) -> set[str]:
    return {f.name for stack in stacks for f in stack}  # type: ignore[attr-defined]


def rows_in(profile: Profile, lo: int, size: int) -> list[LockRow]:
    """The lock words of one lock object: [lo, lo + size)."""
    return [r for r in lock_rows(profile.locks) if lo <= r.address < lo + size]


def test_mutex_waits_holds_and_the_holder(
    workloads: Path, tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    proc, first, (measured, median), profile = watched(
        [str(workloads / "mutex_contend"), "GO", "4", "40", "2000"], tmp_path, spawn, after=2
    )
    address, measured_ns, hold_median_ns = int(first, 16), int(measured), int(median)
    rows = {row.address: row for row in lock_rows(profile.locks)}
    assert address in rows, f"lock 0x{address:x} not among {[hex(a) for a in rows]}"
    row = rows[address]
    assert (row.pid, row.comm, row.kind, row.lock_class) == (
        proc.pid, "mutex_contend", "mutex", "contention"
    )  # fmt: skip
    assert abs(row.wait_ns - measured_ns) <= 0.2 * measured_ns, (row.wait_ns, measured_ns)
    # Holds: almost every release that woke a waiter is timed, and the median is the program's.
    assert row.releases > 100 and row.holds >= 0.8 * row.releases, (row.releases, row.holds)
    p50 = row.hold_quantile(0.5)
    assert abs(p50 - hold_median_ns) <= 0.2 * hold_median_ns, (p50, hold_median_ns)
    # The holder at release is the critical section; waiters and wakers have their stacks.
    assert "hold_the_lock" in names(row.holders), names(row.holders)
    assert {"hold_the_lock", "contend", "pthread_mutex_lock"} <= names(row.stacks)
    assert "hold_the_lock" in names(row.wakers)
    # Every waiting stack ends with its kind; the flamegraph carries the waits only.
    assert all(s[-1].name == "[contention: mutex]" for s in row.stacks)
    waits = [lk for lk in profile.locks if lk.role == "wait"]
    assert profile.total == sum(lk.wait_ns for lk in waits)
    assert {lk.role for lk in profile.locks} == {"wait", "hold", "wake"}


def test_an_idle_pool_on_a_condition_variable_is_idle_waiting_not_contention(
    workloads: Path, tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    _, first, done, profile = watched(
        [str(workloads / "condvar_pool"), "GO", "4", "1500", "12"], tmp_path, spawn, after=1
    )
    cond = int(first, 16)
    assert done == ["done"]
    # pthread_cond_t is 48 bytes; its waiters sleep on words inside it.
    condvar = rows_in(profile, cond, 48)
    assert condvar, [hex(r.address) for r in lock_rows(profile.locks)]
    assert {(r.kind, r.lock_class) for r in condvar} == {("condvar", "idle")}
    waits = sum(r.contentions for r in condvar)
    assert waits >= 12, waits  # the 12 signals and the final broadcast each end waits
    assert "wait_for_work" in names(s for r in condvar for s in r.stacks)
    # The waker is the working thread's signal, and a condvar has no holder on screen.
    assert "signal_pool" in names(s for r in condvar for s in r.wakers)
    # Nothing of the condition variable is listed as contention.
    contended = [r for r in lock_rows(profile.locks) if r.lock_class == "contention"]
    assert not [r for r in contended if cond <= r.address < cond + 48]
    assert all(s[-1].name == "[idle: condition variable]" for r in condvar for s in r.stacks)


def test_readers_waits_are_attributed_to_the_writer(
    workloads: Path, tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    _, first, done, profile = watched(
        [str(workloads / "rwlock_readers"), "GO", "3", "150", "2000"], tmp_path, spawn, after=1
    )
    rwlock = int(first, 16)
    assert done == ["done"]
    # pthread_rwlock_t is 56 bytes; readers and the writer sleep on words inside it.
    inside = [lk for lk in profile.locks if rwlock <= lk.address < rwlock + 56]
    reads = [lk for lk in inside if lk.role == "wait" and lk.kind == "rwlock_read"]
    assert reads, [(hex(lk.address), lk.kind, lk.role) for lk in inside]
    assert "read_section" in {f.name for lk in reads for f in lk.stack}
    assert all(lk.stack[-1].name == "[contention: rwlock (read)]" for lk in reads)
    # The readers' wait time, by the stack of the release that ended it: the writer's.
    ended: dict[str, int] = {}
    for lk in inside:
        if lk.role == "wake" and lk.kind == "rwlock_read":
            key = "writer" if "write_section" in {f.name for f in lk.stack} else "other"
            ended[key] = ended.get(key, 0) + lk.wait_ns
    read_wait = sum(lk.wait_ns for lk in reads)
    assert ended.get("writer", 0) >= 0.8 * read_wait, (ended, read_wait)
    rows = rows_in(profile, rwlock, 56)
    assert {r.lock_class for r in rows} == {"contention"}
    assert "write_section" in names(s for r in rows for s in r.holders)


def test_a_python_lock_is_contention_with_its_python_frames(
    tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    python = Path("/usr/bin/python3.11")
    if not python.exists():
        pytest.skip("Debian's /usr/bin/python3.11 is not installed")
    _, first, (measured,), profile = watched(
        [str(python), str(WORKLOADS / "py_lock_contend.py"), "GO", "4", "40", "2"],
        tmp_path, spawn, after=1,
    )  # fmt: skip
    assert first == "ready"
    measured_ns = int(measured)
    rows = [r for r in lock_rows(profile.locks) if r.kind == "mutex"]
    assert rows, [(hex(r.address), r.kind, r.contentions) for r in lock_rows(profile.locks)]
    top = max(rows, key=lambda r: r.wait_ns)
    assert top.lock_class == "contention"
    python_frames = {f.name for s in top.stacks for f in s if f.kind is FrameKind.PYTHON}
    assert "worker" in python_frames, python_frames
    assert abs(top.wait_ns - measured_ns) <= 0.25 * measured_ns, (top.wait_ns, measured_ns)
    assert "hold_the_lock" not in python_frames  # the waiters wait in worker's `with`
    assert "worker" in {f.name for s in top.holders for f in s if f.kind is FrameKind.PYTHON}


def test_lock_records_round_trip_through_the_wire_and_json(tmp_path: Path) -> None:
    """Kind, role and releases survive encode/decode and the JSON file format."""
    from aperture.formats.json_format import load_json, to_json
    from aperture.model import EventType
    from aperture.wire import Identity, decode, encode

    stack = (Frame("main", "prog", FrameKind.USER), Frame("[contention: mutex]", "[lock]",
                                                          FrameKind.UNKNOWN))  # fmt: skip
    locks = [
        LockStat(1, "p", 0x10, stack, contentions=3, wait_ns=30, hist=(0,) * 160, kind="mutex"),
        LockStat(1, "p", 0x10, stack[:1], contentions=2, wait_ns=4_000, kind="mutex",
                 role="hold", releases=3),
        LockStat(1, "p", 0x10, stack[:1], contentions=3, wait_ns=30, kind="mutex", role="wake"),
    ]  # fmt: skip
    profile = Profile(EventType.LOCK, "nanoseconds", start_ns=1, end_ns=2, locks=locks)
    decoded = decode(encode([profile], Identity("a", "h"), 1))
    assert decoded.profiles[EventType.LOCK].locks == locks
    assert load_json(to_json(profile)).locks == locks


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
