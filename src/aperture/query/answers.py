"""The analysis API's answers, each written once over any :class:`StackSource`.

The buffer's decoded batches and the store's SQL select and sum; everything
after that (the tree, percentages, ordering, quantiles, units) happens here,
so both sources give the same answer to the same question by construction.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np

from aperture import lock_kinds
from aperture.formats.tables import lock_rows, syscall_rows
from aperture.model import EventType, Frame, Profile
from aperture.profile_types import PROFILE_TYPES, series_unit, value_unit
from aperture.query import models
from aperture.query.filter import QueryFilter
from aperture.query.source import GROUP_BY, StackSource, WeightedStacks
from aperture.query.tree import OTHER, ROOT, Flat, flat_tree

FunctionKey = tuple[str, str]  # name, module


def _nodes(flat: Flat) -> models.FlameNodes:
    """A one-sided tree's columns."""
    return models.FlameNodes(
        name=flat.name,
        module=flat.module,
        kind=flat.kind,
        line=flat.line,
        depth=flat.depth,
        self_=flat.self_values[0],
        total=flat.total_values[0],
    )


def flamegraph(source: StackSource, f: QueryFilter, max_nodes: int) -> models.Flamegraph:
    """The ``/flamegraph`` answer: flat pre-order arrays, pruned to about ``max_nodes``."""
    ws = source.weighted_stacks([f])
    flat = flat_tree(ws.index, ws.sides, ws.stacks, max_nodes)
    return models.Flamegraph(
        type=f.event_type,
        unit=value_unit(f.event_type),
        from_ns=f.from_ns,
        to_ns=f.to_ns,
        total=flat.total_values[0][0],
        names=flat.names,
        nodes=_nodes(flat),
    )


def wallclock(source: StackSource, f: QueryFilter, max_nodes: int) -> models.WallClock:
    """The ``/wallclock`` answer: a process's CPU samples as time, with its off-CPU time.

    Samples count at the CPU profiles' rate (the highest of the windows, which one agent
    keeps the same); ValueError when the process has CPU samples but no rate.
    """
    if f.pid is None:
        raise ValueError("the wall-clock view is of one process: give pid=")
    cpu = replace(f, event_type=EventType.CPU)
    off = replace(f, event_type=EventType.OFFCPU)
    hz = source.frequency_hz(cpu)
    ws = source.weighted_stacks([cpu, off])
    if ws.sides[0] and hz <= 0:
        raise ValueError("the process's CPU samples have no sampling rate: time is unknown")
    period_ns = round(1e9 / hz) if hz > 0 else 0
    on = [(comm, pid, h, v * period_ns) for comm, pid, h, v in ws.sides[0]]
    flat = flat_tree(ws.index, [on + ws.sides[1]], ws.stacks, max_nodes)
    return models.WallClock(
        unit="nanoseconds",
        from_ns=f.from_ns,
        to_ns=f.to_ns,
        pid=f.pid,
        total=flat.total_values[0][0],
        on_cpu_ns=sum(row[3] for row in on),
        off_cpu_ns=sum(row[3] for row in ws.sides[1]),
        frequency_hz=hz if ws.sides[0] else 0,
        names=flat.names,
        nodes=_nodes(flat),
    )


def function_values(ws: WeightedStacks) -> tuple[int, Counter[FunctionKey], Counter[FunctionKey]]:
    """Grand total, self value per leaf function, total per function (once per stack)."""
    per_stack: Counter[int] = Counter()
    for _, _, h, v in ws.sides[0]:
        per_stack[h] += v
    resolved = [(ws.stacks[h], v) for h, v in per_stack.items()]
    grand = sum(v for _, v in resolved)
    self_: Counter[FunctionKey] = Counter()
    total: Counter[FunctionKey] = Counter()
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
    for st, v in resolved:  # the stack cache was reset mid-query: plain Python
        if st.frames:
            self_[(st.frames[-1].name, st.frames[-1].module)] += v
            for key in {(fr.name, fr.module) for fr in st.frames}:
                total[key] += v
    return grand, self_, total


def top(source: StackSource, f: QueryFilter, limit: int, sort: str = "self") -> models.Top:
    """The ``/top`` answer: functions by self or total value, with percentages."""
    if sort not in ("self", "total"):
        raise ValueError(f"sort must be self or total, not {sort!r}")
    grand, self_, total = function_values(source.weighted_stacks([f]))
    order = self_ if sort == "self" else total
    keys = sorted(total, key=lambda k: (-order[k], -total[k], k))[:limit]
    pct = 100.0 / grand if grand else 0.0
    return models.Top(
        type=f.event_type,
        unit=value_unit(f.event_type),
        total=grand,
        functions=[
            models.TopFunction(name=n, module=m, self_=self_[(n, m)],
                               self_pct=self_[(n, m)] * pct, total=total[(n, m)],
                               total_pct=total[(n, m)] * pct)
            for n, m in keys
        ],
    )  # fmt: skip


def _tree_self(flat: Flat, side: int) -> Counter[FunctionKey]:
    """Self value per function over the (pruned) tree's frame nodes."""
    out: Counter[FunctionKey] = Counter()
    for i, kind in enumerate(flat.kind):
        if kind not in (ROOT, OTHER):
            out[(flat.names[flat.name[i]], flat.names[flat.module[i]])] += flat.self_values[side][i]
    return out


def diff(
    source: StackSource, base: QueryFilter, comp: QueryFilter, max_nodes: int, limit: int = 200
) -> models.Diff:
    """The ``/diff`` answer: the union tree with both sides, and functions by share change."""
    ws = source.weighted_stacks([base, comp])
    flat = flat_tree(ws.index, ws.sides, ws.stacks, max_nodes)
    bt, ct = flat.total_values[0][0], flat.total_values[1][0]
    self_b, self_c = _tree_self(flat, 0), _tree_self(flat, 1)
    rows = []
    for key in set(self_b) | set(self_c):
        b_pct = 100.0 * self_b[key] / bt if bt else 0.0
        c_pct = 100.0 * self_c[key] / ct if ct else 0.0
        rows.append(models.DiffFunction(name=key[0], module=key[1], baseline_self=self_b[key],
                                        comparison_self=self_c[key], baseline_pct=b_pct,
                                        comparison_pct=c_pct, delta_pct=c_pct - b_pct))  # fmt: skip
    rows.sort(key=lambda r: (-abs(r.delta_pct), r.name))
    return models.Diff(
        type=base.event_type,
        unit=value_unit(base.event_type),
        baseline_total=bt,
        comparison_total=ct,
        names=flat.names,
        nodes=models.DiffNodes(
            name=flat.name,
            module=flat.module,
            kind=flat.kind,
            line=flat.line,
            depth=flat.depth,
            baseline=flat.total_values[0],
            comparison=flat.total_values[1],
            baseline_self=flat.self_values[0],
            comparison_self=flat.self_values[1],
        ),
        functions=rows[:limit],
    )


def timeline(
    source: StackSource, f: QueryFilter, step_s: int, group_by: str | None = None
) -> models.Timeline:
    """The ``/timeline`` answer: value per bucket of window ends, per host/comm/pid or all."""
    if group_by not in GROUP_BY:
        raise ValueError(f"group_by must be host, comm or pid, not {group_by!r}")
    if step_s < 1:
        raise ValueError("the step must be at least 1 s")
    series = source.series(f, step_s, group_by)
    ordered = sorted(series.items(), key=lambda kv: (-sum(v for _, v in kv[1]), kv[0]))
    return models.Timeline(
        type=f.event_type,
        unit=series_unit(f.event_type),
        step_s=step_s,
        series=[models.Series(key=key, points=sorted(points)) for key, points in ordered],
    )


def syscalls(source: StackSource, f: QueryFilter, per_process: bool = False) -> models.Syscalls:
    """The ``/syscalls`` answer: per syscall counts, errors, time and latency quantiles."""
    f = replace(f, event_type=EventType.SYSCALL)
    window = source.window(f)
    duration = 0.0
    if window is not None:
        start, end = max(f.from_ns, window[0]), min(f.to_ns, window[1])
        duration = max(0.0, (end - start) / 1e9)
    profile = Profile(EventType.SYSCALL, value_unit(EventType.SYSCALL),
                      syscalls=source.syscall_stats(f))  # fmt: skip
    return models.Syscalls(
        duration_s=duration,
        syscalls=[
            models.SyscallSummary(
                name=r.name, nr=r.nr, pid=r.pid, comm=r.comm, count=r.count,
                rate=r.count / duration if duration else 0.0, errors=r.errors,
                error_rate=r.error_rate, top_errno=r.top_errnos(3), total_ns=r.total_ns,
                avg_ns=r.avg_ns, p50_ns=r.quantile(0.5), p90_ns=r.quantile(0.9),
                p99_ns=r.quantile(0.99), max_ns=r.max_ns, hist=list(r.hist))
            for r in syscall_rows(profile, per_process=per_process)
        ],
    )  # fmt: skip


def locks(source: StackSource, f: QueryFilter, limit: int = 50) -> models.Locks:
    """The ``/locks`` answer: top locks by wait time, with kind, class, holds and stacks."""
    f = replace(f, event_type=EventType.LOCK)

    def names(stack: tuple[Frame, ...]) -> list[models.FrameName]:
        return [models.FrameName(name=fr.name, module=fr.module) for fr in stack]

    return models.Locks(
        locks=[
            models.LockSummary(
                address=f"0x{r.address:x}", pid=r.pid, comm=r.comm, kind=r.kind,
                kind_label=lock_kinds.label(r.kind) if r.kind else "not known",
                lock_class=r.lock_class, contentions=r.contentions,
                wait_ns=r.wait_ns, avg_ns=r.avg_ns, max_ns=r.max_ns, p99_ns=r.p99_ns,
                eagain=r.eagain, timeouts=r.timeouts, releases=r.releases, holds=r.holds,
                hold_ns=r.hold_ns, hold_p50_ns=r.hold_quantile(0.5),
                hold_p99_ns=r.hold_quantile(0.99), hold_max_ns=r.hold_max_ns,
                top_stack=names(r.top_stack), top_holder=names(r.top_holder))
            for r in lock_rows(source.lock_stats(f, limit))[:limit]
        ]
    )  # fmt: skip


def unwind(source: StackSource, f: QueryFilter) -> models.Unwind:
    """The ``/unwind`` answer: how the selected CPU batches' user stacks were unwound."""
    totals = source.unwind(replace(f, event_type=EventType.CPU, pid=None, comm=None))
    return models.Unwind.model_validate(totals.answer())


def profile_types(present: set[EventType] | None = None) -> models.ProfileTypes:
    """The ``/profile-types`` answer: the registry, as the dashboard reads it; with
    ``present`` (the types of a time range's data), whether each has data there."""
    return models.ProfileTypes(
        types=[
            models.ProfileTypeInfo(
                type=t.event_type, label=t.label, value_unit=t.value_unit,
                series_unit=t.series_unit, has_stacks=t.has_stacks,
                pprof_sample_types=[f"{vt.type}/{vt.unit}" for vt in t.pprof],
                aggregation=t.aggregation,
                present=None if present is None else t.event_type in present)
            for t in PROFILE_TYPES.values()
        ]
    )  # fmt: skip
