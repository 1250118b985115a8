"""The buffer of recent batches as a :class:`~aperture.query.source.StackSource`.

Answers recent data without the store (``--no-storage``, or before the first
write): batches are decoded once (cached), selected by the filter and summed in
Python; :mod:`aperture.query.answers` builds every answer from these sums, as
it does from the store's.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import replace

from aperture import histogram
from aperture.aggregator.buffer import BatchBuffer, BufferedBatch
from aperture.model import EventType, Frame, LockStat, Profile, Sample, SyscallStat
from aperture.profile_types import PROFILE_TYPES, value_unit
from aperture.query.filter import QueryFilter
from aperture.query.source import WeightedStacks
from aperture.query.stacks import Stack, StackCache
from aperture.query.tree import PathIndex, Row
from aperture.transforms import lock_samples, merge
from aperture.unwind_stats import UnwindTotals, reported, unwind_stats
from aperture.wire import Decoded, decode, parse

MAX_STACKS = 200_000  # distinct stacks given ids before the ids start over


def _narrow(profile: Profile, f: QueryFilter) -> Profile:
    """Only the samples and records of the filter's process and lock."""
    if f.pid is None and f.comm is None and f.address is None and f.lock_role is None:
        return profile

    def keep(pid: int, comm: str) -> bool:
        return (f.pid is None or pid == f.pid) and (f.comm is None or comm == f.comm)

    locks = [
        lk
        for lk in profile.locks
        if keep(lk.pid, lk.comm)
        and (f.address is None or lk.address == f.address)
        and (f.lock_role is None or lk.role == f.lock_role)
    ]
    samples = [s for s in profile.samples if keep(s.pid, s.comm)]
    if f.address is not None or f.lock_role is not None:
        samples = lock_samples(locks, f.lock_role or "wait")
    return replace(
        profile,
        samples=samples,
        locks=locks,
        syscalls=[s for s in profile.syscalls if keep(s.pid, s.comm)],
    )


class _StackIds:
    """An id per distinct stack of frames, its :class:`Stack`, and the paths of those ids.

    Replaced whole when full, so ids are never reused within one instance: a
    query holds the instance it started with.
    """

    def __init__(self) -> None:
        self.ids: dict[tuple[Frame, ...], int] = {}
        self.stacks: dict[int, Stack] = {}
        self.cache = StackCache(max_stacks=MAX_STACKS + 1)
        self.index = PathIndex()
        self._lock = threading.Lock()

    def id_of(self, frames: tuple[Frame, ...]) -> int:
        h = self.ids.get(frames)
        if h is None:
            with self._lock:
                h = self.ids.get(frames)
                if h is None:
                    h = len(self.ids)
                    self.stacks[h] = self.cache.put(h, frames)
                    self.ids[frames] = h
        return h


class BufferSource:
    """Profiles of the batches the buffer holds (the last minutes of every agent)."""

    def __init__(self, buffer: BatchBuffer, cache_size: int = 512) -> None:
        self.buffer = buffer
        self._cache: OrderedDict[tuple[str, int], Decoded] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._stack_ids = _StackIds()

    def _decoded(self, batch: BufferedBatch) -> Decoded:
        key = (batch.agent_id, batch.sequence)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        decoded = decode(parse(batch.data))
        with self._lock:
            self._cache[key] = decoded
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return decoded

    def select(self, f: QueryFilter) -> list[tuple[Decoded, Profile]]:
        """Batches whose window ends in [from, to) and match, with the filtered profile."""
        out = []
        for batch in self.buffer.snapshot():
            if f.event_type not in batch.event_types:
                continue
            if not f.from_ns <= batch.end_ns < f.to_ns:
                continue
            if (f.agent and batch.agent_id != f.agent) or (f.host and batch.host != f.host):
                continue
            decoded = self._decoded(batch)
            labels = decoded.identity.labels
            if any(labels.get(k) != v for k, v in f.labels.items()):
                continue
            out.append((decoded, _narrow(decoded.profiles[f.event_type], f)))
        return out

    def _profiles(self, f: QueryFilter) -> list[Profile]:
        return [p for _, p in self.select(f)]

    def _weighted(self, f: QueryFilter) -> list[tuple[Decoded, Profile, float]]:
        """:meth:`select` with each window's weight: 1, or for a gauge (bytes in use)
        1 / the windows of its series (agent and labels), so values are averaged."""
        chosen = self.select(f)
        if PROFILE_TYPES[f.event_type].aggregation == "sum":
            return [(d, p, 1.0) for d, p in chosen]
        windows = Counter(_series_key(d) for d, _ in chosen)
        return [(d, p, 1.0 / windows[_series_key(d)]) for d, p in chosen]

    def weighted_stacks(self, sides: Sequence[QueryFilter]) -> WeightedStacks:
        ids = self._stack_ids
        if len(ids.ids) > MAX_STACKS or len(ids.index) > 20 * MAX_STACKS:
            ids = self._stack_ids = _StackIds()
        rows: list[list[Row]] = []
        for f in sides:
            sums: dict[tuple[str, int, int], float] = {}
            for _, profile, weight in self._weighted(f):
                for s in profile.samples:
                    key = (s.comm, 0 if s.comm else s.pid, ids.id_of(s.stack))
                    sums[key] = sums.get(key, 0.0) + s.value * weight
            rows.append([(c, pid, h, round(v)) for (c, pid, h), v in sums.items() if round(v)])
        return WeightedStacks(rows, ids.stacks, ids.index)

    def series(
        self, f: QueryFilter, step_s: int, group_by: str | None
    ) -> dict[str, list[tuple[int, int]]]:
        step_ns = step_s * 1_000_000_000
        chosen = self.select(f)
        averaged = PROFILE_TYPES[f.event_type].aggregation == "average"
        # A gauge's value per step: its series' windows in the step averaged, then summed.
        windows = Counter(
            (decoded.end_ns // step_ns, _series_key(decoded)) for decoded, _ in chosen
        )
        series: dict[str, dict[int, float]] = {}
        for decoded, profile in chosen:
            bucket = decoded.end_ns // step_ns * step_ns
            weight = 1.0 / windows[(bucket // step_ns, _series_key(decoded))] if averaged else 1.0
            for key, value in _values(profile, decoded, group_by):
                points = series.setdefault(key, {})
                points[bucket] = points.get(bucket, 0.0) + value * weight
        return {
            key: sorted((b, round(v)) for b, v in points.items()) for key, points in series.items()
        }

    def window(self, f: QueryFilter) -> tuple[int, int] | None:
        profiles = self._profiles(f)
        if not profiles:
            return None
        return min(p.start_ns for p in profiles), max(p.end_ns for p in profiles)

    def types_present(self, f: QueryFilter) -> set[EventType]:
        present: set[EventType] = set()
        for batch in self.buffer.snapshot():
            if not f.from_ns <= batch.end_ns < f.to_ns:
                continue
            if (f.agent and batch.agent_id != f.agent) or (f.host and batch.host != f.host):
                continue
            labels = self._decoded(batch).identity.labels if f.labels else {}
            if any(labels.get(k) != v for k, v in f.labels.items()):
                continue
            present.update(batch.event_types)
        return present

    def frequency_hz(self, f: QueryFilter) -> int:
        return max((p.frequency_hz for p in self._profiles(replace(f, event_type=EventType.CPU))),
                   default=0)  # fmt: skip

    def syscall_stats(self, f: QueryFilter) -> list[SyscallStat]:
        profiles = self._profiles(f)
        return merge(profiles).syscalls if profiles else []

    def lock_stats(self, f: QueryFilter, limit: int | None) -> list[LockStat]:
        # Histograms in the store's layout (old agents send coarse ones; the store keeps fine)
        return [
            lk
            if histogram.is_fine(lk.hist) or not lk.hist
            else replace(lk, hist=histogram.fine(lk.hist))
            for p in self._profiles(f)
            for lk in p.locks
        ]

    def unwind(self, f: QueryFilter) -> UnwindTotals:
        totals = UnwindTotals()
        for decoded, _ in self.select(f):
            cpu = decoded.profiles[EventType.CPU]
            mode, stats = unwind_stats({f"cpu.{k}": v for k, v in cpu.labels.items()})
            totals.add(mode, 1, reported(mode, stats), stats, stats, decoded.losses)
        return totals

    def export_profile(self, f: QueryFilter) -> Profile:
        weighted = self._weighted(f)
        if not weighted:
            return Profile(
                f.event_type, value_unit(f.event_type), start_ns=f.from_ns, end_ns=f.from_ns
            )
        merged = merge([p for _, p, _ in weighted])
        if PROFILE_TYPES[f.event_type].aggregation == "average":
            sums: dict[tuple[int, int, str, str, tuple[Frame, ...]], float] = {}
            for _, profile, weight in weighted:
                for s in profile.samples:
                    key = (s.pid, s.tid, s.comm, s.thread, s.stack)
                    sums[key] = sums.get(key, 0.0) + s.value * weight
            merged.samples = [
                Sample(stack, round(v), pid=pid, tid=tid, comm=comm, thread=thread)
                for (pid, tid, comm, thread, stack), v in sums.items()
                if round(v)
            ]
        return merged


def _series_key(decoded: Decoded) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The series a window belongs to: its agent and labels."""
    return decoded.identity.agent_id, tuple(sorted(decoded.identity.labels.items()))


def _values(profile: Profile, decoded: Decoded, group_by: str | None) -> Iterable[tuple[str, int]]:
    """(series key, value) pairs of one window: samples, wait ns or syscall counts."""
    host = decoded.identity.host
    if profile.event_type is EventType.SYSCALL:
        rows: Iterable[tuple[int, str, int]] = ((s.pid, s.comm, s.count) for s in profile.syscalls)
    else:
        rows = ((s.pid, s.comm, s.value) for s in profile.samples)
    for pid, comm, value in rows:
        key = {"host": host, "comm": comm, "pid": str(pid)}.get(group_by or "", "all")
        yield key, value
