"""Answers to the analysis API from the in-memory buffer of recent batches.

Every method returns JSON-ready data in the shapes docs/api.md specifies; a
store-backed implementation answers the same questions from ClickHouse.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import replace
from typing import Any, Protocol

from aperture import flamegraph
from aperture.aggregator.buffer import BatchBuffer, BufferedBatch
from aperture.formats.tables import lock_rows, syscall_rows
from aperture.model import EventType, Profile
from aperture.profile_types import series_unit, value_unit
from aperture.query.filter import QueryFilter
from aperture.transforms import merge
from aperture.unwind_stats import UnwindTotals, reported, unwind_stats
from aperture.wire import Decoded, decode, parse


class Backend(Protocol):
    def flamegraph(self, f: QueryFilter, max_nodes: int) -> dict[str, Any]: ...
    def top(self, f: QueryFilter, limit: int, sort: str) -> dict[str, Any]: ...
    def diff(
        self, base: QueryFilter, comp: QueryFilter, max_nodes: int, limit: int
    ) -> dict[str, Any]: ...
    def timeline(self, f: QueryFilter, step_s: int, group_by: str | None) -> dict[str, Any]: ...
    def syscalls(self, f: QueryFilter, per_process: bool) -> dict[str, Any]: ...
    def locks(self, f: QueryFilter, limit: int) -> dict[str, Any]: ...
    def unwind(self, f: QueryFilter) -> dict[str, Any]: ...
    def export_profile(self, f: QueryFilter) -> Profile: ...


def _narrow(profile: Profile, f: QueryFilter) -> Profile:
    """Only the samples and records of the filter's process and lock."""
    if f.pid is None and f.comm is None and f.address is None:
        return profile

    def keep(pid: int, comm: str) -> bool:
        return (f.pid is None or pid == f.pid) and (f.comm is None or comm == f.comm)

    locks = [
        lk
        for lk in profile.locks
        if keep(lk.pid, lk.comm) and (f.address is None or lk.address == f.address)
    ]
    samples = [s for s in profile.samples if keep(s.pid, s.comm)]
    if f.address is not None:
        from aperture.transforms import lock_samples

        samples = lock_samples(locks)
    return replace(
        profile,
        samples=samples,
        locks=locks,
        syscalls=[s for s in profile.syscalls if keep(s.pid, s.comm)],
    )


def tree_json(root: flamegraph.Node, f: QueryFilter) -> dict[str, Any]:
    flat = flamegraph.flatten(root)
    return {
        "type": str(f.event_type),
        "unit": value_unit(f.event_type),
        "from_ns": f.from_ns,
        "to_ns": f.to_ns,
        "total": root.total_values[0],
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


class BufferBackend:
    def __init__(self, buffer: BatchBuffer, cache_size: int = 512) -> None:
        self.buffer = buffer
        self._cache: OrderedDict[tuple[str, int], Decoded] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

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

    def flamegraph(self, f: QueryFilter, max_nodes: int) -> dict[str, Any]:
        root = flamegraph.build([self._profiles(f)])
        flamegraph.prune(root, max_nodes)
        return tree_json(root, f)

    def top(self, f: QueryFilter, limit: int, sort: str) -> dict[str, Any]:
        self_: Counter[tuple[str, str]] = Counter()
        total: Counter[tuple[str, str]] = Counter()
        grand = 0
        for profile in self._profiles(f):
            for s in profile.samples:
                grand += s.value
                if s.stack:
                    self_[(s.stack[-1].name, s.stack[-1].module)] += s.value
                    for key in {(fr.name, fr.module) for fr in s.stack}:
                        total[key] += s.value
        order = self_ if sort == "self" else total
        keys = sorted(total, key=lambda k: (-order[k], -total[k], k))[:limit]
        pct = 100.0 / grand if grand else 0.0
        return {
            "type": str(f.event_type),
            "unit": value_unit(f.event_type),
            "total": grand,
            "functions": [
                {
                    "name": n,
                    "module": m,
                    "self": self_[(n, m)],
                    "self_pct": self_[(n, m)] * pct,
                    "total": total[(n, m)],
                    "total_pct": total[(n, m)] * pct,
                }
                for n, m in keys
            ],
        }

    def diff(
        self, base: QueryFilter, comp: QueryFilter, max_nodes: int, limit: int
    ) -> dict[str, Any]:
        root = flamegraph.build([self._profiles(base), self._profiles(comp)])
        flamegraph.prune(root, max_nodes)
        flat = flamegraph.flatten(root)
        bt, ct = root.total_values
        self_b: Counter[tuple[str, str]] = Counter()
        self_c: Counter[tuple[str, str]] = Counter()
        _collect_self(root, self_b, self_c)
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

    def timeline(self, f: QueryFilter, step_s: int, group_by: str | None) -> dict[str, Any]:
        step_ns = step_s * 1_000_000_000
        series: dict[str, Counter[int]] = {}
        for decoded, profile in self.select(f):
            bucket = decoded.end_ns // step_ns * step_ns
            for key, value in _values(profile, decoded, group_by):
                series.setdefault(key, Counter())[bucket] += value
        return {
            "type": str(f.event_type),
            "unit": series_unit(f.event_type),
            "step_s": step_s,
            "series": [
                {"key": key, "points": sorted([t, v] for t, v in points.items())}
                for key, points in sorted(series.items(), key=lambda kv: -sum(kv[1].values()))
            ],
        }

    def syscalls(self, f: QueryFilter, per_process: bool) -> dict[str, Any]:
        f = replace(f, event_type=EventType.SYSCALL)
        profiles = self._profiles(f)
        duration = _duration_s(f, profiles)
        merged = merge(profiles) if profiles else Profile(EventType.SYSCALL, "nanoseconds")
        return {
            "duration_s": duration,
            "syscalls": [
                {
                    "name": r.name,
                    "nr": r.nr,
                    "pid": r.pid,
                    "comm": r.comm,
                    "count": r.count,
                    "rate": r.count / duration if duration else 0.0,
                    "errors": r.errors,
                    "error_rate": r.error_rate,
                    "top_errno": r.top_errnos(3),
                    "total_ns": r.total_ns,
                    "avg_ns": r.avg_ns,
                    "p50_ns": r.quantile(0.5),
                    "p90_ns": r.quantile(0.9),
                    "p99_ns": r.quantile(0.99),
                    "max_ns": r.max_ns,
                    "hist": list(r.hist),
                }
                for r in syscall_rows(merged, per_process=per_process)
            ],
        }

    def locks(self, f: QueryFilter, limit: int) -> dict[str, Any]:
        f = replace(f, event_type=EventType.LOCK)
        locks = [lk for p in self._profiles(f) for lk in p.locks]
        return {
            "locks": [
                {
                    "address": f"0x{r.address:x}",
                    "pid": r.pid,
                    "comm": r.comm,
                    "contentions": r.contentions,
                    "wait_ns": r.wait_ns,
                    "avg_ns": r.avg_ns,
                    "max_ns": r.max_ns,
                    "p99_ns": r.p99_ns,
                    "eagain": r.eagain,
                    "timeouts": r.timeouts,
                    "top_stack": [{"name": fr.name, "module": fr.module} for fr in r.top_stack],
                }
                for r in lock_rows(locks)[:limit]
            ]
        }

    def unwind(self, f: QueryFilter) -> dict[str, Any]:
        """How the selected CPU batches' user stacks were unwound (pid and comm do not apply)."""
        totals = UnwindTotals()
        for decoded, _ in self.select(replace(f, event_type=EventType.CPU, pid=None, comm=None)):
            cpu = decoded.profiles[EventType.CPU]
            mode, stats = unwind_stats({f"cpu.{k}": v for k, v in cpu.labels.items()})
            totals.add(mode, 1, reported(mode, stats), stats, stats, decoded.losses)
        return totals.answer()

    def export_profile(self, f: QueryFilter) -> Profile:
        profiles = self._profiles(f)
        if not profiles:
            return Profile(
                f.event_type, value_unit(f.event_type), start_ns=f.from_ns, end_ns=f.from_ns
            )
        return merge(profiles)


def _collect_self(
    node: flamegraph.Node, base: Counter[tuple[str, str]], comp: Counter[tuple[str, str]]
) -> None:
    name, module, kind = node.key
    if kind not in (flamegraph.ROOT, flamegraph.OTHER):
        base[(name, module)] += node.self_values[0]
        comp[(name, module)] += node.self_values[1]
    for child in node.children.values():
        _collect_self(child, base, comp)


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


def _duration_s(f: QueryFilter, profiles: list[Profile]) -> float:
    if not profiles:
        return 0.0
    start = max(f.from_ns, min(p.start_ns for p in profiles))
    end = min(f.to_ns, max(p.end_ns for p in profiles))
    return max(0.0, (end - start) / 1e9)
