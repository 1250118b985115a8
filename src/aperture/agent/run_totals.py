"""What the end-of-run summary needs, kept in memory bounded by the code profiled,
not by how many processes and threads came and went.

An agent that pushes for weeks on a host that forks all day must not keep a record
per pid and tid: the 30-minute churn soak (docs/reliability.md) grew a running merge
of every window, keyed by pid and tid, from 227 MB to 1 GB and spent a third of a
core re-merging it each window. Here each window is folded in once:

- CPU: sample counts per stack of function names (pid, tid and each frame's address
  dropped: a function called from many places is one frame), distinct pids and tids
  counted;
- locks: exact totals, and records per lock and stack, the smallest dropped past a cap;
- syscalls: exact totals, rows per syscall (per process and syscall with
  ``per_process``, the smallest dropped past a cap).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from aperture import histogram, lock_kinds
from aperture.model import EventType, Frame, FrameKind, LockStat, Profile, Sample, SyscallStat
from aperture.profile_types import PROFILE_TYPES
from aperture.transforms import STATE_LABELS, LockKey, lock_key, merge_lock, merge_syscall

# Distinct pids/tids are counted exactly up to this many, then shown as "at least".
DISTINCT_CAP = 100_000
# Lock records and per-process syscall rows kept for the summary's tables.
MAX_ROWS = 20_000


@dataclass
class Distinct:
    """Distinct ids, counted exactly up to ``cap``."""

    cap: int = DISTINCT_CAP
    seen: set[object] = field(default_factory=set)

    def update(self, ids: Iterable[object]) -> None:
        for i in ids:
            if len(self.seen) >= self.cap:
                return
            self.seen.add(i)

    def __str__(self) -> str:
        n = len(self.seen)
        return f"at least {n}" if n >= self.cap else str(n)


@dataclass
class ModeTotals:
    """One mode's totals over the whole run."""

    event_type: EventType
    unit: str
    start_ns: int
    end_ns: int
    frequency_hz: int = 0
    losses: Counter[str] = field(default_factory=Counter)
    idle_samples: int = 0
    processes: Distinct = field(default_factory=Distinct)
    threads: Distinct = field(default_factory=Distinct)
    stacks: Counter[tuple[Frame, ...]] = field(default_factory=Counter)
    locks: dict[LockKey, LockStat] = field(default_factory=dict)
    lock_waits: int = 0
    lock_wait_ns: int = 0
    contended: Distinct = field(default_factory=Distinct)  # lock words waited on, any kind
    contention_ns: int = 0  # of lock_wait_ns, the waits for a lock another thread held
    syscalls: dict[tuple[int, str, int], SyscallStat] = field(default_factory=dict)
    calls: int = 0
    errors: int = 0
    # CPU: how user stacks were unwound (sample counts summed over windows) and
    # the unwind tables' latest state.
    unwind_mode: str = ""
    unwind: Counter[str] = field(default_factory=Counter)
    unwind_tables: dict[str, int] = field(default_factory=dict)
    # Off-CPU: the windows' counts (blocks, short_blocks, short_ns, blocks_not_sampled)
    counts: Counter[str] = field(default_factory=Counter)
    options: dict[str, str] = field(default_factory=dict)  # min_block_ns, sample_every

    def profile(self) -> Profile:
        """A compact profile for the tables: samples per stack, the records kept."""
        return Profile(
            event_type=self.event_type,
            unit=self.unit,
            samples=[Sample(stack, value) for stack, value in self.stacks.items()],
            start_ns=self.start_ns,
            end_ns=self.end_ns,
            frequency_hz=self.frequency_hz,
            losses={name: self.losses[name] for name in sorted(self.losses)},
            locks=list(self.locks.values()),
            syscalls=list(self.syscalls.values()),
        )


class RunTotals:
    """Each window folded into per-mode totals, once."""

    def __init__(self, *, per_process: bool = False, max_rows: int = MAX_ROWS) -> None:
        self.per_process = per_process
        self.max_rows = max_rows
        self.modes: dict[str, ModeTotals] = {}
        # one Frame per (name, module, kind): the summary reads names, not addresses
        self._frames: dict[tuple[str, str, FrameKind], Frame] = {}

    def _function(self, frame: Frame) -> Frame:
        key = (frame.name, frame.module, frame.kind)
        found = self._frames.get(key)
        if found is None:
            found = self._frames[key] = Frame(frame.name, frame.module, frame.kind)
        return found

    def add(self, name: str, window: Profile) -> None:
        t = self.modes.get(name)
        if t is None:
            t = self.modes[name] = ModeTotals(
                window.event_type, window.unit, window.start_ns, window.end_ns
            )
        t.start_ns = min(t.start_ns, window.start_ns)
        t.end_ns = max(t.end_ns, window.end_ns)
        t.frequency_hz = window.frequency_hz or t.frequency_hz
        t.losses.update(window.losses)
        idle = window.labels.get("idle_samples", "0")
        t.idle_samples += int(idle) if idle.isdigit() else 0
        _add_unwind(t, window.labels)
        if window.event_type is EventType.OFFCPU:
            for key, value in window.labels.items():
                if key in STATE_LABELS:
                    t.options[key] = value
                elif value.isdigit():
                    t.counts[key] += int(value)
        if window.samples and PROFILE_TYPES[window.event_type].wire in ("cpu", "stacks"):
            t.processes.update(s.pid for s in window.samples)
            t.threads.update(s.tid for s in window.samples)
            function = self._function
            for s in window.samples:
                t.stacks[tuple(function(f) for f in s.stack)] += s.value
        self._add_locks(t, window.locks)
        self._add_syscalls(t, window.syscalls)

    def _add_locks(self, t: ModeTotals, locks: list[LockStat]) -> None:
        for lock in locks:
            if lock.role == "wait":
                t.lock_waits += lock.contentions
                t.lock_wait_ns += lock.wait_ns
                if lock_kinds.lock_class(lock.kind) == "contention":
                    t.contention_ns += lock.wait_ns
                if lock.contentions:
                    t.contended.update([(lock.pid, lock.address)])
            key = lock_key(lock)
            t.locks[key] = merge_lock(t.locks[key], lock) if key in t.locks else lock
        if len(t.locks) > 2 * self.max_rows:
            kept = sorted(t.locks.items(), key=lambda kv: -kv[1].wait_ns)[: self.max_rows]
            t.locks = dict(kept)

    def _add_syscalls(self, t: ModeTotals, calls: list[SyscallStat]) -> None:
        t.calls += sum(call.count for call in calls)
        t.errors += sum(call.errors for call in calls)
        t.processes.update(call.pid for call in calls)
        if self.per_process:
            merged = {(call.pid, call.comm, call.nr): call for call in calls}
        else:  # the summary's table merges processes: so does the record, a window at once
            by_nr: defaultdict[int, list[SyscallStat]] = defaultdict(list)
            for call in calls:
                by_nr[call.nr].append(call)
            merged = {(0, "", nr): _sum_processes(group) for nr, group in by_nr.items()}
        for key, call in merged.items():
            t.syscalls[key] = merge_syscall(t.syscalls[key], call) if key in t.syscalls else call
        if len(t.syscalls) > 2 * self.max_rows:
            kept = sorted(t.syscalls.items(), key=lambda kv: -kv[1].total_ns)[: self.max_rows]
            t.syscalls = dict(kept)


def _sum_processes(calls: list[SyscallStat]) -> SyscallStat:
    """One syscall's records of several processes as one (pid 0), summed in one pass."""
    first = calls[0]
    if len(calls) == 1:
        return replace(first, pid=0, comm="")
    errnos: Counter[int] = Counter()
    for call in calls:
        errnos.update(call.errnos)
    lows = [call.min_ns for call in calls if call.count]
    return SyscallStat(
        pid=0,
        comm="",
        nr=first.nr,
        name=first.name,
        count=sum(call.count for call in calls),
        errors=sum(call.errors for call in calls),
        total_ns=sum(call.total_ns for call in calls),
        min_ns=min(lows) if lows else 0,
        max_ns=max(call.max_ns for call in calls),
        hist=histogram.merge(call.hist for call in calls),
        errnos=dict(errnos),
    )


def _add_unwind(t: ModeTotals, labels: dict[str, str]) -> None:
    t.unwind_mode = labels.get("unwind", t.unwind_mode)
    for key, value in labels.items():
        if key.startswith("unwind_") and value.isdigit():
            if key in STATE_LABELS:
                t.unwind_tables[key] = int(value)
            else:
                t.unwind[key.removeprefix("unwind_")] += int(value)
        elif key.startswith("python_") and value.isdigit():
            t.unwind[key] += int(value)
