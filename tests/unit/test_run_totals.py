"""The run's totals: exact numbers, memory bounded by code rather than by process churn."""

from __future__ import annotations

from aperture.agent.run_totals import RunTotals
from aperture.agent.summary import format_summary
from aperture.model import EventType, Frame, LockStat, Profile, Sample, SyscallStat
from aperture.transforms import merge

MAIN, WORK, SPIN = Frame("main", "app"), Frame("work", "app"), Frame("spin", "app")
HOT = (MAIN, WORK, SPIN)


def cpu_window(i: int) -> Profile:
    """One window of a forking workload: the same two stacks, in new pids and tids."""
    pid = 1000 + i
    return Profile(EventType.CPU, "samples", start_ns=i * 10**9, end_ns=(i + 1) * 10**9,
                   frequency_hz=99, labels={"idle_samples": "3"}, losses={"stack_collisions": 1},
                   samples=[Sample((MAIN, WORK), 3, pid=pid, tid=pid, comm="w"),
                            Sample(HOT, 1, pid=pid, tid=-pid, comm="w")])  # fmt: skip


def syscall_window(i: int) -> Profile:
    pid = 1000 + i
    return Profile(EventType.SYSCALL, "calls", start_ns=i * 10**9, end_ns=(i + 1) * 10**9,
                   syscalls=[SyscallStat(pid, "w", 0, "read", count=10, errors=1, total_ns=100 * i,
                                         min_ns=5, max_ns=50 + i, hist=(0, 10), errnos={11: 1}),
                             SyscallStat(pid, "w", 1, "write", count=2, total_ns=40, min_ns=20,
                                         max_ns=20, hist=(0, 2))])  # fmt: skip


def lock_window(i: int) -> Profile:
    pid = 1000 + i
    return Profile(EventType.LOCK, "nanoseconds", start_ns=i * 10**9, end_ns=(i + 1) * 10**9,
                   locks=[LockStat(pid, "w", 0x1000, (MAIN, WORK), contentions=2, wait_ns=i + 1,
                                   max_ns=i + 1, hist=(0, 2))])  # fmt: skip


def test_cpu_totals_are_exact_and_do_not_grow_with_new_processes() -> None:
    totals = RunTotals()
    windows = [cpu_window(i) for i in range(1000)]
    for w in windows:
        totals.add("cpu", w)
    cpu = totals.modes["cpu"]
    assert len(cpu.stacks) == 2  # 2,000 (pid, tid, stack) keys in a running merge
    merged = merge(windows)
    assert cpu.profile().total == merged.total == 4000
    assert str(cpu.processes) == "1000" and str(cpu.threads) == "2000"
    assert cpu.idle_samples == 3000  # every window's, not the first one's
    assert cpu.profile().losses == {"stack_collisions": 1000}
    text = format_summary(totals)
    assert "CPU: 4000 samples at 99 Hz over 1000.0s, 1000 processes, 2000 threads" in text
    assert "idle samples not recorded: 3000" in text
    assert "75.0%     3000  work" in text


def test_distinct_counts_saturate_instead_of_growing() -> None:
    totals = RunTotals()
    totals.modes.clear()
    totals.add("cpu", cpu_window(0))
    totals.modes["cpu"].processes.cap = 10
    for i in range(1, 50):
        totals.add("cpu", cpu_window(i))
    assert str(totals.modes["cpu"].processes) == "at least 10"


def test_syscall_rows_merge_processes_but_totals_stay_exact() -> None:
    totals = RunTotals()
    for i in range(500):
        totals.add("syscall", syscall_window(i))
    sc = totals.modes["syscall"]
    assert len(sc.syscalls) == 2  # one row per syscall, not per process
    assert (sc.calls, sc.errors, str(sc.processes)) == (6000, 500, "500")
    read = next(r for r in sc.syscalls.values() if r.name == "read")
    assert read.max_ns == 50 + 499 and read.errnos == {11: 500} and read.hist == (0, 5000)
    assert "Syscalls: 6000 calls (500 errors) by 500 processes" in format_summary(totals)


def test_per_process_rows_are_capped_keeping_the_largest() -> None:
    totals = RunTotals(per_process=True, max_rows=100)
    for i in range(500):
        totals.add("syscall", syscall_window(i))
    sc = totals.modes["syscall"]
    assert len(sc.syscalls) <= 200
    assert sc.calls == 6000  # the totals count every row, kept or not
    # the slowest processes' read rows are the ones kept
    assert max(r.total_ns for r in sc.syscalls.values()) == 100 * 499


def test_lock_totals_and_capped_records() -> None:
    totals = RunTotals(max_rows=10)
    for i in range(100):
        totals.add("lock", lock_window(i))
    lk = totals.modes["lock"]
    assert (lk.lock_waits, lk.lock_wait_ns, str(lk.contended)) == (200, sum(range(1, 101)), "100")
    assert len(lk.locks) <= 20
    assert max(lock.wait_ns for lock in lk.locks.values()) == 100
    assert "Locks: 200 futex waits" in format_summary(totals)


def test_stacks_are_kept_by_function_not_by_call_site() -> None:
    totals = RunTotals()
    for offset in range(100):  # one function sampled at 100 different addresses
        stack = (MAIN, Frame("spin", "app", offset=offset))
        totals.add("cpu", Profile(EventType.CPU, "samples", samples=[Sample(stack, 1)]))
    assert dict(totals.modes["cpu"].stacks) == {(MAIN, SPIN): 100}


def test_offcpu_totals_sum_time_by_state_and_wait_site() -> None:
    from aperture.agent.collectors.offcpu import STATE_FRAMES, UNSAMPLED
    from aperture.model import FrameKind

    sleeping, runnable = STATE_FRAMES[1], STATE_FRAMES[0]
    read = Frame("read", "libc.so.6")
    wait = Frame("pipe_read", "[kernel]", FrameKind.KERNEL)
    totals = RunTotals()
    for i in range(3):
        totals.add("offcpu", Profile(
            EventType.OFFCPU, "nanoseconds", start_ns=i * 10**9, end_ns=(i + 1) * 10**9,
            labels={"blocks": "10", "short_blocks": "4", "short_ns": "2000",
                    "blocks_not_sampled": "1", "min_block_ns": "10000", "sample_every": "2"},
            samples=[Sample((MAIN, read, wait, sleeping), 600_000_000, pid=7, tid=7),
                     Sample((MAIN, WORK, runnable), 300_000_000, pid=7, tid=8),
                     Sample((UNSAMPLED, sleeping), 100_000_000, pid=9, tid=9)]))  # fmt: skip
    t = totals.modes["offcpu"]
    assert t.profile().total == 3 * 10**9
    assert t.counts == {"blocks": 30, "short_blocks": 12, "short_ns": 6000,
                        "blocks_not_sampled": 3}  # fmt: skip
    text = format_summary(totals)
    assert "Off-CPU: 3.00 s off CPU in 2 processes, 3 threads over 3.0s" in text
    assert "30 ended, 12 shorter than 10.0 µs not recorded (6.00 µs in all)" in text
    assert "3 recorded without stacks (--offcpu-sample 2)" in text
    assert "by state: sleeping 70.0%, runnable 30.0%" in text
    assert "60.0%    1.80 s  read (libc.so.6)" in text
    assert "30.0%    900 ms  work (app)" in text
    assert "10.0%    300 ms  (stacks not sampled)" in text


def test_a_merged_file_counts_every_window_and_keeps_the_latest_state() -> None:
    """The labels of a merged -o file: counts summed over the windows, states the last one's."""
    windows = [
        Profile(EventType.CPU, "samples", start_ns=i, end_ns=i + 1, frequency_hz=99,
                labels={"idle_samples": str(3 + i), "unwind": "auto",
                        "unwind_table_bytes": str(1000 * (i + 1)), "python_samples": "2"})
        for i in range(3)
    ]  # fmt: skip
    labels = merge(windows).labels
    assert labels == {"idle_samples": "12", "unwind": "auto", "unwind_table_bytes": "3000",
                      "python_samples": "6"}  # fmt: skip
    assert windows[0].labels["idle_samples"] == "3"  # the windows are not changed


def test_a_windows_syscalls_of_many_processes_merge_as_pairwise_merging_would() -> None:
    """One pass per syscall gives what merging each process's record in turn gives,
    histograms of both layouts (coarse syscall, fine) and errnos included."""
    from aperture.agent.run_totals import _sum_processes
    from aperture.transforms import merge_syscall

    calls = [
        SyscallStat(100 + i, f"p{i}", 0, "read", count=i, errors=i % 3, total_ns=7 * i,
                    min_ns=0 if i == 0 else 10 - i, max_ns=3 * i,
                    hist=tuple(range(i, i + 40)) if i != 4 else tuple(range(160)),
                    errnos={11: i} if i % 2 else {})
        for i in range(6)
    ]  # fmt: skip
    pairwise = calls[0]
    for call in calls[1:]:
        pairwise = merge_syscall(pairwise, call)
    one_pass = _sum_processes(calls)
    assert (one_pass.pid, one_pass.comm) == (0, "")
    fields = ("count", "errors", "total_ns", "min_ns", "max_ns", "hist", "errnos")
    assert {f: getattr(one_pass, f) for f in fields} == {f: getattr(pairwise, f) for f in fields}
