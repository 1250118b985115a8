"""The analysis API answered from the store, in the shapes docs/api.md specifies.

SQL does the heavy part (filter and ``GROUP BY stack_hash, sum(value)`` over
millions of rows); Python resolves the few thousand distinct stacks through
the cache and builds trees with :mod:`aperture.flamegraph`, so the store and
the in-memory buffer (``aggregator/backend.py``) give identical answers.
Every filter value is a bound parameter (see :mod:`aperture.storage.filters`).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from aperture import flamegraph
from aperture.formats.tables import lock_rows, syscall_rows
from aperture.model import EventType, LockStat, Profile, Sample, SyscallStat
from aperture.profile_types import series_unit, value_unit
from aperture.query.filter import QueryFilter
from aperture.storage import trees
from aperture.storage.filters import where
from aperture.storage.stacks import Stack
from aperture.storage.store import Store
from aperture.unwind_stats import UnwindTotals

GROUP_BY = {None: "'all'", "host": "host", "comm": "comm", "pid": "toString(pid)"}


def _source(f: QueryFilter) -> tuple[str, str]:
    """(table, value column) holding the weighted stacks of a filter."""
    if f.event_type is EventType.LOCK and f.address is not None:
        return "lock_stats", "wait_ns"  # one lock: only its records know the address
    return "samples", "value"


def _positive(table: str) -> str:
    # Lock records without wait time are no flamegraph samples (as transforms.lock_samples).
    return " HAVING v > 0" if table == "lock_stats" else ""


HOUR_NS = 3600 * 10**9
_MAX_HOUR_NS = (2**32 - 7200) * 10**9  # DateTime (seconds, UInt32) ends in 2106


def _stack_rows_sql(store: Store, f: QueryFilter) -> tuple[str, dict[str, Any]]:
    """A subquery of (comm, p, stack_hash, v) rows selected by the filter.

    Fleet-wide CPU/lock questions over whole hours read the hourly rollup for
    those hours and raw samples only for the partial hours at either end.
    """
    table, value = _source(f)
    cond, params = where(f, table)
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


def weighted_stacks(store: Store, f: QueryFilter) -> list[tuple[str, int, int, int]]:
    """(comm, pid if comm is empty else 0, stack_hash, value) summed over the filter."""
    rows, params = _stack_rows_sql(store, f)
    positive = " HAVING total > 0" if _source(f)[0] == "lock_stats" else ""
    return [
        (str(c), int(p), int(h), int(v))
        for c, p, h, v in store.select(
            f"SELECT comm, p, stack_hash, sum(v) AS total FROM ({rows}) "
            f"GROUP BY comm, p, stack_hash{positive}",
            params,
        )
    ]


def _resolve(store: Store, *sides: list[tuple[str, int, int, int]]) -> dict[int, Stack]:
    return store.resolve_stacks({h for rows in sides for _, _, h, _ in rows})


def flamegraph_tree(store: Store, f: QueryFilter, max_nodes: int) -> dict[str, Any]:
    """The ``/flamegraph`` answer: flat pre-order arrays, pruned to about ``max_nodes``."""
    rows = weighted_stacks(store, f)
    flat = trees.flat_tree(store.paths(), [rows], _resolve(store, rows), max_nodes)
    return {
        "type": str(f.event_type),
        "unit": value_unit(f.event_type),
        "from_ns": f.from_ns,
        "to_ns": f.to_ns,
        "total": flat.total_values[0][0],
        "names": flat.names,
        "nodes": {
            "name": flat.name,
            "module": flat.module,
            "kind": flat.kind,
            "line": flat.line,
            "depth": flat.depth,
            "self": flat.self_values[0],
            "total": flat.total_values[0],
        },
    }


def _function_values(
    store: Store, f: QueryFilter
) -> tuple[int, Counter[tuple[str, str]], Counter[tuple[str, str]]]:
    """Grand total, self value per leaf function, total per function (once per stack)."""
    source, params = _stack_rows_sql(store, f)
    rows = store.select(f"SELECT stack_hash, sum(v) FROM ({source}) GROUP BY stack_hash", params)
    stacks = store.resolve_stacks(int(h) for h, _ in rows)
    resolved = [(stacks[int(h)], int(v)) for h, v in rows]
    grand = sum(v for _, v in resolved)
    self_: Counter[tuple[str, str]] = Counter()
    total: Counter[tuple[str, str]] = Counter()
    tables = {id(st.table): st.table for st, _ in resolved if st.frames}
    if len(tables) == 1:  # the usual case: sum per function id with numpy
        (names,) = tables.values()
        real = [(st, v) for st, v in resolved if st.frames]
        values = np.array([v for _, v in real], dtype=np.int64)
        sums = np.zeros(len(names), dtype=np.int64)
        np.add.at(sums, np.concatenate([st.functions for st, _ in real]),
                  np.repeat(values, [len(st.functions) for st, _ in real]))  # fmt: skip
        leaves = np.zeros(len(names), dtype=np.int64)
        np.add.at(leaves, np.array([st.leaf for st, _ in real], dtype=np.int64), values)
        for i in np.flatnonzero(sums).tolist():
            total[names[i]] = int(sums[i])
        for i in np.flatnonzero(leaves).tolist():
            self_[names[i]] = int(leaves[i])
        return grand, self_, total
    for st, v in resolved:  # the cache was reset mid-query: plain Python
        if st.frames:
            self_[(st.frames[-1].name, st.frames[-1].module)] += v
            for key in {(fr.name, fr.module) for fr in st.frames}:
                total[key] += v
    return grand, self_, total


def top(store: Store, f: QueryFilter, limit: int, sort: str = "self") -> dict[str, Any]:
    """The ``/top`` answer: functions by self or total value, with percentages."""
    if sort not in ("self", "total"):
        raise ValueError(f"sort must be self or total, not {sort!r}")
    grand, self_, total = _function_values(store, f)
    order = self_ if sort == "self" else total
    keys = sorted(total, key=lambda k: (-order[k], -total[k], k))[:limit]
    pct = 100.0 / grand if grand else 0.0
    return {
        "type": str(f.event_type),
        "unit": value_unit(f.event_type),
        "total": grand,
        "functions": [
            {"name": n, "module": m, "self": self_[(n, m)], "self_pct": self_[(n, m)] * pct,
             "total": total[(n, m)], "total_pct": total[(n, m)] * pct}
            for n, m in keys
        ],
    }  # fmt: skip


def diff(
    store: Store, base: QueryFilter, comp: QueryFilter, max_nodes: int, limit: int = 200
) -> dict[str, Any]:
    """The ``/diff`` answer: the union tree with both sides, and functions by share change."""
    rows_b, rows_c = weighted_stacks(store, base), weighted_stacks(store, comp)
    stacks = _resolve(store, rows_b, rows_c)
    flat = trees.flat_tree(store.paths(), [rows_b, rows_c], stacks, max_nodes)
    bt, ct = flat.total_values[0][0], flat.total_values[1][0]
    # self per function over the (pruned) tree's frame nodes, as the buffer backend counts it
    self_b: Counter[tuple[str, str]] = Counter()
    self_c: Counter[tuple[str, str]] = Counter()
    for i, kind in enumerate(flat.kind):
        if kind not in (flamegraph.ROOT, flamegraph.OTHER):
            key = (flat.names[flat.name[i]], flat.names[flat.module[i]])
            self_b[key] += flat.self_values[0][i]
            self_c[key] += flat.self_values[1][i]
    rows: list[dict[str, Any]] = []
    for key in set(self_b) | set(self_c):
        b_pct = 100.0 * self_b[key] / bt if bt else 0.0
        c_pct = 100.0 * self_c[key] / ct if ct else 0.0
        rows.append({"name": key[0], "module": key[1], "baseline_self": self_b[key],
                     "comparison_self": self_c[key], "baseline_pct": b_pct,
                     "comparison_pct": c_pct, "delta_pct": c_pct - b_pct})  # fmt: skip
    rows.sort(key=lambda r: (-abs(r["delta_pct"]), r["name"]))
    return {
        "type": str(base.event_type),
        "unit": value_unit(base.event_type),
        "baseline_total": bt,
        "comparison_total": ct,
        "names": flat.names,
        "nodes": {
            "name": flat.name,
            "module": flat.module,
            "kind": flat.kind,
            "line": flat.line,
            "depth": flat.depth,
            "baseline": flat.total_values[0],
            "comparison": flat.total_values[1],
            "baseline_self": flat.self_values[0],
            "comparison_self": flat.self_values[1],
        },
        "functions": rows[:limit],
    }


def timeline(
    store: Store, f: QueryFilter, step_s: int, group_by: str | None = None
) -> dict[str, Any]:
    """The ``/timeline`` answer: value per bucket of window ends, per host/comm/pid or all."""
    if group_by not in GROUP_BY:
        raise ValueError(f"group_by must be host, comm or pid, not {group_by!r}")
    if step_s < 1:
        raise ValueError("the step must be at least 1 s")
    if f.event_type is EventType.SYSCALL:
        table, value = "syscall_stats", "count"
    else:
        table, value = _source(f)
    cond, params = where(f, table)
    params["step"] = step_s * 1_000_000_000
    rows = store.select(
        f"SELECT {GROUP_BY[group_by]} AS key, "
        "intDiv(toUnixTimestamp64Nano(ts), {step:Int64}) AS bucket, "
        f"sum({value}) FROM {store.table(table)} WHERE {cond} GROUP BY key, bucket",
        params,
    )
    series: dict[str, list[list[int]]] = {}
    for key, bucket, v in rows:
        series.setdefault(str(key), []).append([int(bucket) * params["step"], int(v)])
    ordered = sorted(series.items(), key=lambda kv: (-sum(v for _, v in kv[1]), kv[0]))
    return {
        "type": str(f.event_type),
        "unit": series_unit(f.event_type),
        "step_s": step_s,
        "series": [{"key": key, "points": sorted(points)} for key, points in ordered],
    }


def _window(store: Store, f: QueryFilter) -> tuple[int, int] | None:
    """First window start and last window end of the batches a filter selects."""
    cond, params = where(f, "batches")
    rows = store.select(
        "SELECT count(), toUnixTimestamp64Nano(min(window_start)), "
        f"toUnixTimestamp64Nano(max(ts)) FROM {store.table('batches')} WHERE {cond}",
        params,
    )
    if not rows or not rows[0][0]:
        return None
    return int(rows[0][1]), int(rows[0][2])


def _syscall_stats(store: Store, f: QueryFilter) -> list[SyscallStat]:
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


def syscalls(store: Store, f: QueryFilter, per_process: bool = False) -> dict[str, Any]:
    """The ``/syscalls`` answer: per syscall counts, errors, time and latency quantiles."""
    window = _window(store, _with_type(f, EventType.SYSCALL))
    duration = 0.0
    if window is not None:
        start, end = max(f.from_ns, window[0]), min(f.to_ns, window[1])
        duration = max(0.0, (end - start) / 1e9)
    profile = Profile(EventType.SYSCALL, "nanoseconds", syscalls=_syscall_stats(store, f))
    return {
        "duration_s": duration,
        "syscalls": [
            {"name": r.name, "nr": r.nr, "pid": r.pid, "comm": r.comm, "count": r.count,
             "rate": r.count / duration if duration else 0.0, "errors": r.errors,
             "error_rate": r.error_rate, "top_errno": r.top_errnos(3), "total_ns": r.total_ns,
             "avg_ns": r.avg_ns, "p50_ns": r.quantile(0.5), "p90_ns": r.quantile(0.9),
             "p99_ns": r.quantile(0.99), "max_ns": r.max_ns, "hist": list(r.hist)}
            for r in syscall_rows(profile, per_process=per_process)
        ],
    }  # fmt: skip


def _lock_stats(store: Store, f: QueryFilter, limit: int | None) -> list[LockStat]:
    """Lock records merged per (pid, comm, address, stack), of the ``limit`` top locks."""
    cond, params = where(f, "lock_stats")
    table = store.table("lock_stats")
    top_only = ""
    if limit is not None:
        params["limit"] = limit
        top_only = (
            f" AND (pid, address) IN (SELECT pid, address FROM {table} WHERE {cond} "
            "GROUP BY pid, address ORDER BY sum(wait_ns) DESC, sum(contentions) DESC, address "
            "LIMIT {limit:UInt32})"
        )
    rows = store.select(
        "SELECT pid, comm, address, stack_hash, sum(contentions), sum(wait_ns), max(max_ns), "
        "sum(eagain), sum(timeouts), sum(timeout_ns), sum(interrupted), sumForEach(hist) "
        f"FROM {table} WHERE {cond}{top_only} GROUP BY pid, comm, address, stack_hash "
        "ORDER BY pid, address, comm, stack_hash",
        params,
    )
    stacks = store.resolve_stacks(int(r[3]) for r in rows)
    return [
        LockStat(int(pid), str(comm), int(address), stacks[int(h)].frames,
                 contentions=int(c), wait_ns=int(w), max_ns=int(m), eagain=int(e),
                 timeouts=int(t), timeout_ns=int(tn), interrupted=int(i),
                 hist=tuple(int(x) for x in hist))
        for pid, comm, address, h, c, w, m, e, t, tn, i, hist in rows
    ]  # fmt: skip


def locks(store: Store, f: QueryFilter, limit: int = 50) -> dict[str, Any]:
    """The ``/locks`` answer: top locks by wait time with p99 and their top stack."""
    return {
        "locks": [
            {"address": f"0x{r.address:x}", "pid": r.pid, "comm": r.comm,
             "contentions": r.contentions, "wait_ns": r.wait_ns, "avg_ns": r.avg_ns,
             "max_ns": r.max_ns, "p99_ns": r.p99_ns, "eagain": r.eagain, "timeouts": r.timeouts,
             "top_stack": [{"name": fr.name, "module": fr.module} for fr in r.top_stack]}
            for r in lock_rows(_lock_stats(store, f, limit))[:limit]
        ]
    }  # fmt: skip


def unwind(store: Store, f: QueryFilter) -> dict[str, Any]:
    """The ``/unwind`` answer: how the selected CPU batches' user stacks were unwound.

    Counted per batch (agent window): pid and comm filters do not apply.
    """
    cond, params = where(_with_type(f, EventType.CPU), "batches")
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
    return totals.answer()


def _with_type(f: QueryFilter, event_type: EventType) -> QueryFilter:
    return QueryFilter(event_type, f.from_ns, f.to_ns, f.host, f.agent, f.pid, f.comm,
                  dict(f.labels), f.address)  # fmt: skip


def export_profile(store: Store, f: QueryFilter) -> Profile:
    """The filter's data merged into one :class:`Profile` (for collapsed/json/speedscope)."""
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
        profile.syscalls = _syscall_stats(store, f)
        return profile
    if event_type is EventType.LOCK:
        profile.locks = _lock_stats(store, f, None)
    table, value = _source(f)
    cond, params = where(f, table)
    tid, thread = ("0", "''") if table == "lock_stats" else ("tid", "thread")
    rows = store.select(
        f"SELECT pid, {tid} AS t, comm, {thread} AS th, stack_hash, sum({value}) AS v "
        f"FROM {store.table(table)} WHERE {cond} GROUP BY pid, t, comm, th, stack_hash"
        f"{_positive(table)} ORDER BY v DESC, comm, pid, t, th, stack_hash",
        params,
    )
    stacks = store.resolve_stacks(int(r[4]) for r in rows)
    profile.samples = [
        Sample(stacks[int(h)].frames, int(v), pid=int(pid), tid=int(t), comm=str(comm),
               thread=str(th))
        for pid, t, comm, th, h, v in rows
    ]  # fmt: skip
    return profile
