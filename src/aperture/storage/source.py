"""The store as a :class:`~aperture.query.source.StackSource`: SQL selects and sums.

SQL does the heavy part (filter and ``GROUP BY stack_hash, sum(value)`` over
millions of rows); the stack cache resolves the few thousand distinct stacks,
and :mod:`aperture.query.answers` builds every answer from these rows, as it
does from the buffer's. Every filter value is a bound parameter
(see :mod:`aperture.storage.filters`). Calls block on ClickHouse: from the
event loop, run them in a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from aperture.model import EventType, LockStat, Profile, Sample, SyscallStat
from aperture.profile_types import PROFILE_TYPES, value_unit
from aperture.query.filter import QueryFilter
from aperture.query.source import WeightedStacks
from aperture.query.tree import Row
from aperture.storage.filters import where
from aperture.storage.store import Store
from aperture.unwind_stats import UnwindTotals

GROUP_BY_SQL = {None: "'all'", "host": "host", "comm": "comm", "pid": "toString(pid)"}
HOUR_NS = 3600 * 10**9
_MAX_HOUR_NS = (2**32 - 7200) * 10**9  # DateTime (seconds, UInt32) ends in 2106


def _source(f: QueryFilter) -> tuple[str, str]:
    """(table, value column) holding the weighted stacks of a filter."""
    if f.event_type is EventType.LOCK and (f.address is not None or f.lock_role is not None):
        # one lock, or holders and wakers: only the lock records know them
        return "lock_stats", "wait_ns"
    return "samples", "value"


def _stack_where(f: QueryFilter, table: str) -> tuple[str, dict[str, Any]]:
    """:func:`where` for weighted stacks: lock records weigh the waiters' unless asked."""
    if table == "lock_stats" and f.lock_role is None:
        f = replace(f, lock_role="wait")
    return where(f, table)


# The series a sample row belongs to: its agent and labels (a gauge is averaged per series).
_SERIES = "cityHash64(agent_id, toString(labels))"


def averaged(f: QueryFilter) -> bool:
    """Whether the filter's type is a gauge, whose windows are averaged, not summed."""
    return PROFILE_TYPES[f.event_type].aggregation == "average"


def _any_process(f: QueryFilter) -> tuple[str, dict[str, Any]]:
    """:func:`where` of ``f`` for any pid and process, its parameters named apart (``w_``)
    so it can sit beside ``f``'s own in one statement: a series' windows are its windows,
    whichever processes had samples in them."""
    return where(replace(f, pid=None, comm=None), "samples", prefix="w_")


def _averaged_sql(store: Store, f: QueryFilter, columns: str) -> tuple[str, dict[str, Any]]:
    """Sample rows of ``f`` with ``columns`` and each value divided by how many windows
    its series has in the range (any process's): summed over the windows, their average."""
    table = store.table("samples")
    cond, params = where(f, "samples")
    any_cond, any_params = _any_process(f)
    return (
        f"SELECT {columns}, value / n AS v FROM (SELECT *, {_SERIES} AS series FROM {table} "
        f"WHERE {cond}) AS r INNER JOIN (SELECT {_SERIES} AS series, uniqExact(ts) AS n "
        f"FROM {table} WHERE {any_cond} GROUP BY series) AS w USING series"
    ), {**params, **any_params}


def _stack_rows_sql(store: Store, f: QueryFilter) -> tuple[str, dict[str, Any]]:
    """A subquery of (comm, p, stack_hash, v) rows selected by the filter.

    Fleet-wide CPU/lock questions over whole hours read the hourly rollup for
    those hours and raw samples only for the partial hours at either end.
    """
    table, value = _source(f)
    cond, params = _stack_where(f, table)
    if averaged(f):
        return _averaged_sql(store, f, "comm, if(comm = '', pid, toUInt32(0)) AS p, stack_hash")
    raw = (
        f"SELECT comm, if(comm = '', pid, toUInt32(0)) AS p, stack_hash, {value} AS v "
        f"FROM {store.table(table)} WHERE {cond}"
    )
    fleet = f.host is None and f.agent is None and f.pid is None and not f.labels
    first = -(-max(f.from_ns, 0) // HOUR_NS) * HOUR_NS  # the first whole hour
    end = min(f.to_ns, _MAX_HOUR_NS) // HOUR_NS * HOUR_NS  # where whole hours end
    if table != "samples" or not fleet or end - first < 2 * HOUR_NS:
        return raw, params
    params.update(h0=first // 10**9, h1=end // 10**9, h0_ns=first, h1_ns=end)
    rolled = (
        "SELECT comm, proc_pid AS p, stack_hash, value AS v "
        f"FROM {store.table('samples_hourly')} WHERE event_type = {{event_type:String}} "
        "AND hour >= toDateTime({h0:Int64}, 'UTC') AND hour < toDateTime({h1:Int64}, 'UTC')"
    )
    if f.comm is not None:
        rolled += " AND comm = {comm:String}"
    edges = (
        " AND (ts < fromUnixTimestamp64Nano({h0_ns:Int64}, 'UTC') "
        "OR ts >= fromUnixTimestamp64Nano({h1_ns:Int64}, 'UTC'))"
    )
    return f"{raw}{edges} UNION ALL {rolled}", params


def _series_of(rows: Sequence[Sequence[Any]], step_ns: int) -> dict[str, list[tuple[int, int]]]:
    series: dict[str, list[tuple[int, int]]] = {}
    for key, bucket, v in rows:
        series.setdefault(str(key), []).append((int(bucket) * step_ns, round(v)))
    return series


class StoreSource:
    """Profiles as the store holds them, every one it has kept."""

    def __init__(self, store: Store, before_query: Callable[[], object] | None = None) -> None:
        """``before_query`` runs before every query (the aggregator lets the batches
        queued for the store reach it first: read your writes)."""
        self.store = store
        self._before = before_query

    def _store(self) -> Store:
        if self._before is not None:
            self._before()
        return self.store

    def weighted_stacks(self, sides: Sequence[QueryFilter]) -> WeightedStacks:
        store = self._store()
        rows = [self._rows(store, f) for f in sides]
        stacks = store.resolve_stacks({h for side in rows for _, _, h, _ in side})
        return WeightedStacks(rows, stacks, store.paths())

    @staticmethod
    def _rows(store: Store, f: QueryFilter) -> list[Row]:
        sql, params = _stack_rows_sql(store, f)
        positive = " HAVING total > 0" if _source(f)[0] == "lock_stats" else ""
        rows = [
            (str(c), int(p), int(h), round(v))
            for c, p, h, v in store.select(
                f"SELECT comm, p, stack_hash, sum(v) AS total FROM ({sql}) "
                f"GROUP BY comm, p, stack_hash{positive}",
                params,
            )
        ]
        return [r for r in rows if r[3]] if averaged(f) else rows

    def series(
        self, f: QueryFilter, step_s: int, group_by: str | None
    ) -> dict[str, list[tuple[int, int]]]:
        store = self._store()
        if f.event_type is EventType.SYSCALL:
            table, value = "syscall_stats", "count"
        else:
            table, value = _source(f)
        cond, params = _stack_where(f, table)
        params["step"] = step_s * 1_000_000_000
        if averaged(f):
            # per step: each series' windows in the step (any process's) averaged, summed
            any_cond, any_params = _any_process(f)
            bucket = "intDiv(toUnixTimestamp64Nano(ts), {step:Int64}) AS b"
            rows = store.select(
                f"SELECT key, b, round(sum(s / m)) FROM (SELECT {GROUP_BY_SQL[group_by]} AS key, "
                f"{_SERIES} AS series, {bucket}, sum(value) AS s FROM {store.table(table)} "
                f"WHERE {cond} GROUP BY key, series, b) AS r INNER JOIN (SELECT {_SERIES} AS "
                f"series, {bucket}, uniqExact(ts) AS m FROM {store.table(table)} WHERE "
                f"{any_cond} GROUP BY series, b) AS w USING (series, b) GROUP BY key, b",
                {**params, **any_params},
            )
            return _series_of(rows, params["step"])
        rows = store.select(
            f"SELECT {GROUP_BY_SQL[group_by]} AS key, "
            "intDiv(toUnixTimestamp64Nano(ts), {step:Int64}) AS bucket, "
            f"sum({value}) FROM {store.table(table)} WHERE {cond} GROUP BY key, bucket",
            params,
        )
        return _series_of(rows, params["step"])

    def window(self, f: QueryFilter) -> tuple[int, int] | None:
        store = self._store()
        cond, params = where(f, "batches")
        rows = store.select(
            "SELECT count(), toUnixTimestamp64Nano(min(window_start)), "
            f"toUnixTimestamp64Nano(max(ts)) FROM {store.table('batches')} WHERE {cond}",
            params,
        )
        if not rows or not rows[0][0]:
            return None
        return int(rows[0][1]), int(rows[0][2])

    def types_present(self, f: QueryFilter) -> set[EventType]:
        store = self._store()
        cond, params = where(f, "batches", any_type=True)
        rows = store.select(
            f"SELECT DISTINCT arrayJoin(event_types) FROM {store.table('batches')} WHERE {cond}",
            params,
        )
        return {EventType(str(r[0])) for r in rows if str(r[0]) in EventType.__members__.values()}

    def frequency_hz(self, f: QueryFilter) -> int:
        store = self._store()
        cond, params = where(replace(f, event_type=EventType.CPU), "batches")
        rows = store.select(
            f"SELECT max(frequency_hz) FROM {store.table('batches')} WHERE {cond}", params
        )
        return int(rows[0][0]) if rows and rows[0][0] else 0

    def syscall_stats(self, f: QueryFilter) -> list[SyscallStat]:
        store = self._store()
        cond, params = where(f, "syscall_stats")
        rows = store.select(
            "SELECT pid, comm, nr, name, sum(count), sum(errors), sum(total_ns), "
            "minIf(min_ns, count > 0), max(max_ns), sumForEach(hist), sumMap(errnos) "
            f"FROM {store.table('syscall_stats')} WHERE {cond} GROUP BY pid, comm, nr, name "
            "ORDER BY pid, comm, nr",
            params,
        )
        return [
            SyscallStat(int(pid), str(comm), int(nr), str(name), count=int(count),
                        errors=int(errors), total_ns=int(total), min_ns=int(lo), max_ns=int(hi),
                        hist=tuple(int(x) for x in hist),
                        errnos={int(k): int(v) for k, v in dict(errnos).items()})
            for pid, comm, nr, name, count, errors, total, lo, hi, hist, errnos in rows
        ]  # fmt: skip

    def lock_stats(self, f: QueryFilter, limit: int | None) -> list[LockStat]:
        """Lock records merged per (pid, comm, address, role, stack), of the ``limit`` top
        locks by wait time."""
        store = self._store()
        cond, params = where(f, "lock_stats")
        table = store.table("lock_stats")
        top_only = ""
        if limit is not None:
            params["limit"] = limit
            top_only = (
                f" AND (pid, address) IN (SELECT pid, address FROM {table} WHERE {cond} "
                "GROUP BY pid, address ORDER BY sumIf(wait_ns, role = 'wait') DESC, "
                "sumIf(contentions, role = 'wait') DESC, address LIMIT {limit:UInt32})"
            )
        rows = store.select(
            "SELECT pid, comm, address, role, stack_hash, max(kind), sum(contentions), "
            "sum(wait_ns), max(max_ns), sum(eagain), sum(timeouts), sum(timeout_ns), "
            "sum(interrupted), sumForEach(hist), sum(releases) "
            f"FROM {table} WHERE {cond}{top_only} GROUP BY pid, comm, address, role, stack_hash "
            "ORDER BY pid, address, comm, role, stack_hash",
            params,
        )
        stacks = store.resolve_stacks(int(r[4]) for r in rows)
        return [
            LockStat(int(pid), str(comm), int(address), stacks[int(h)].frames,
                     contentions=int(c), wait_ns=int(w), max_ns=int(m), eagain=int(e),
                     timeouts=int(t), timeout_ns=int(tn), interrupted=int(i),
                     hist=tuple(int(x) for x in hist), kind=str(kind), role=str(role),
                     releases=int(rel))
            for pid, comm, address, role, h, kind, c, w, m, e, t, tn, i, hist, rel in rows
        ]  # fmt: skip

    def unwind(self, f: QueryFilter) -> UnwindTotals:
        """Counted per batch (agent window): pid and comm filters do not apply."""
        store = self._store()
        cond, params = where(replace(f, event_type=EventType.CPU), "batches")
        rows = store.select(
            "SELECT unwind_mode, unwind_mode != '' OR notEmpty(window_stats) AS has, count(), "
            "sumMap(window_stats), maxMap(window_stats), sumMap(losses) "
            f"FROM {store.table('batches')} WHERE {cond} GROUP BY unwind_mode, has "
            "ORDER BY unwind_mode, has",
            params,
        )
        totals = UnwindTotals()
        for mode, has, n, sums, maxes, losses in rows:
            totals.add(str(mode), int(n), bool(has), dict(sums), dict(maxes), dict(losses))
        return totals

    def export_profile(self, f: QueryFilter) -> Profile:
        """The filter's data merged into one :class:`Profile` (for every export format)."""
        store = self._store()
        event_type = f.event_type
        cond, params = where(f, "batches")
        meta = store.select(
            "SELECT count(), toUnixTimestamp64Nano(min(window_start)), "
            "toUnixTimestamp64Nano(max(ts)), max(frequency_hz), sumMap(losses) "
            f"FROM {store.table('batches')} WHERE {cond}",
            params,
        )
        profile = Profile(event_type, value_unit(event_type), start_ns=f.from_ns, end_ns=f.from_ns)
        if meta and meta[0][0]:
            _, start, end, freq, losses = meta[0]
            profile.start_ns, profile.end_ns = int(start), int(end)
            profile.frequency_hz = int(freq) if event_type is EventType.CPU else 0
            prefix = f"{event_type}."
            profile.losses = {
                k[len(prefix) :]: int(v)
                for k, v in sorted(dict(losses).items())
                if k.startswith(prefix)
            }
        if event_type is EventType.SYSCALL:
            profile.syscalls = self.syscall_stats(f)
            return profile
        if event_type is EventType.LOCK:
            profile.locks = self.lock_stats(f, None)
        table, value = _source(f)
        cond, params = _stack_where(f, table)
        tid, thread = ("0", "''") if table == "lock_stats" else ("tid", "thread")
        rows_sql = f"SELECT * FROM {store.table(table)} WHERE {cond}"
        summed = f"sum({value})"
        if averaged(f):
            rows_sql, params = _averaged_sql(store, f, "pid, tid, comm, thread, stack_hash")
            summed = "toUInt64(round(sum(v)))"
        rows = store.select(
            f"SELECT pid, {tid} AS t, comm, {thread} AS th, stack_hash, {summed} AS total "
            f"FROM ({rows_sql}) GROUP BY pid, t, comm, th, stack_hash HAVING total > 0 "
            "ORDER BY total DESC, comm, pid, t, th, stack_hash",
            params,
        )
        stacks = store.resolve_stacks(int(r[4]) for r in rows)
        profile.samples = [
            Sample(stacks[int(h)].frames, int(v), pid=int(pid), tid=int(t), comm=str(comm),
                   thread=str(th))
            for pid, t, comm, th, h, v in rows
        ]  # fmt: skip
        return profile
