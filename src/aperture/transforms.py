"""Small pure transforms over profiles."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from aperture import histogram
from aperture.model import Frame, LockStat, Profile, Sample, SyscallStat

_SampleKey = tuple[int, int, str, str, tuple[Frame, ...]]


# Window labels that are settings or states (the last window's holds), not counts: every
# other label with a whole-number value counts something in its window, and windows add.
STATE_LABELS = frozenset({
    "unwind_table_bytes", "unwind_tables_loaded",  # CPU: the unwind tables at the drain
    "min_block_ns", "sample_every",  # off-CPU: --offcpu-min, --offcpu-sample
})  # fmt: skip


def merge_labels(into: dict[str, str], window: dict[str, str]) -> None:
    """Add a later window's labels: counts summed, the rest (states, names) the latest."""
    for key, value in window.items():
        old = into.get(key)
        if key not in STATE_LABELS and value.isdigit() and old is not None and old.isdigit():
            into[key] = str(int(old) + int(value))
        else:
            into[key] = value


def merge(profiles: Iterable[Profile]) -> Profile:
    """Merge windows of one event type into one profile (values of equal samples summed,
    window counts in the labels summed)."""
    merged: Counter[_SampleKey] = Counter()
    losses: Counter[str] = Counter()
    locks: dict[LockKey, LockStat] = {}
    syscalls: dict[tuple[int, str, int], SyscallStat] = {}
    result: Profile | None = None
    for profile in profiles:
        if result is None:
            result = Profile(
                event_type=profile.event_type,
                unit=profile.unit,
                start_ns=profile.start_ns,
                end_ns=profile.end_ns,
                frequency_hz=profile.frequency_hz,
                labels=dict(profile.labels),
            )
        elif profile.event_type != result.event_type:
            raise ValueError(f"cannot merge {profile.event_type} into {result.event_type}")
        else:
            merge_labels(result.labels, profile.labels)
        result.start_ns = min(result.start_ns, profile.start_ns)
        result.end_ns = max(result.end_ns, profile.end_ns)
        losses.update(profile.losses)
        for s in profile.samples:
            merged[(s.pid, s.tid, s.comm, s.thread, s.stack)] += s.value
        for lock in profile.locks:
            key = lock_key(lock)
            locks[key] = merge_lock(locks[key], lock) if key in locks else lock
        for call in profile.syscalls:
            ckey = (call.pid, call.comm, call.nr)
            syscalls[ckey] = merge_syscall(syscalls[ckey], call) if ckey in syscalls else call
    if result is None:
        raise ValueError("nothing to merge")
    result.locks = list(locks.values())
    result.syscalls = list(syscalls.values())
    result.losses = {name: losses[name] for name in sorted(losses)}
    result.samples = [
        Sample(stack=stack, value=value, pid=pid, tid=tid, comm=comm, thread=thread)
        for (pid, tid, comm, thread, stack), value in merged.items()
    ]
    return result


def filter_pid(profile: Profile, pid: int) -> Profile:
    """Only the samples of one process."""
    kept = [s for s in profile.samples if s.pid == pid]
    return Profile(
        event_type=profile.event_type,
        unit=profile.unit,
        samples=kept,
        start_ns=profile.start_ns,
        end_ns=profile.end_ns,
        frequency_hz=profile.frequency_hz,
        losses=dict(profile.losses),
        labels=dict(profile.labels),
    )


LockKey = tuple[int, str, int, str, tuple[Frame, ...]]


def lock_key(lock: LockStat) -> LockKey:
    """What lock records merge by: the lock in its process, the stack and its role."""
    return (lock.pid, lock.comm, lock.address, lock.role, lock.stack)


def merge_lock(a: LockStat, b: LockStat) -> LockStat:
    """Two records of the same lock, role and stack, summed."""
    return LockStat(
        pid=a.pid,
        comm=a.comm,
        address=a.address,
        stack=a.stack,
        contentions=a.contentions + b.contentions,
        wait_ns=a.wait_ns + b.wait_ns,
        max_ns=max(a.max_ns, b.max_ns),
        eagain=a.eagain + b.eagain,
        timeouts=a.timeouts + b.timeouts,
        timeout_ns=a.timeout_ns + b.timeout_ns,
        interrupted=a.interrupted + b.interrupted,
        hist=histogram.add(a.hist, b.hist),
        kind=a.kind or b.kind,
        role=a.role,
        releases=a.releases + b.releases,
    )


def merge_syscall(a: SyscallStat, b: SyscallStat) -> SyscallStat:
    """Two records of the same syscall in the same process, summed."""
    errnos = Counter(a.errnos)
    errnos.update(b.errnos)
    mins = [s.min_ns for s in (a, b) if s.count]
    return SyscallStat(
        pid=a.pid,
        comm=a.comm,
        nr=a.nr,
        name=a.name,
        count=a.count + b.count,
        errors=a.errors + b.errors,
        total_ns=a.total_ns + b.total_ns,
        min_ns=min(mins) if mins else 0,
        max_ns=max(a.max_ns, b.max_ns),
        hist=histogram.add(a.hist, b.hist),
        errnos=dict(errnos),
    )


def lock_samples(locks: Iterable[LockStat], role: str = "wait") -> list[Sample]:
    """Time-weighted stacks of one role's lock records: by default the waiters', the lock
    flamegraph's samples (holder and waker records are other views of the same waits,
    not more of them)."""
    weights: Counter[tuple[int, str, tuple[Frame, ...]]] = Counter()
    for lock in locks:
        if lock.wait_ns and lock.role == role:
            weights[(lock.pid, lock.comm, lock.stack)] += lock.wait_ns
    return [
        Sample(stack=stack, value=value, pid=pid, comm=comm)
        for (pid, comm, stack), value in weights.items()
    ]
