"""The value of each alert metric now: operational counters, agents and profile queries."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from aperture.aggregator.alerts.rules import Rule
from aperture.aggregator.ingest import Ingest, Outcome
from aperture.aggregator.storage_link import StorageLink
from aperture.model import EventType
from aperture.profile_types import PROFILE_TYPES
from aperture.query import answers
from aperture.query.filter import QueryFilter
from aperture.query.source import StackSource

# Counter series sampled at each evaluation, so rates cover the rule's window.
# Every refusing outcome of the ingest, and the two refusals made before it.
_ERROR_PUSHES = (
    *(o.value for o in Outcome if o not in (Outcome.ACCEPTED, Outcome.DUPLICATE)),
    "unauthenticated",
    "forbidden",
)


@dataclass
class Sources:
    """What rules look at; ``storage`` is None with --no-storage."""

    ingest: Ingest
    source: StackSource
    storage: StorageLink | None = None

    def __post_init__(self) -> None:
        self._snapshots: deque[tuple[float, dict[str, float]]] = deque(maxlen=4096)

    def _counters(self) -> dict[str, float]:
        registry = self.ingest.metrics.registry

        def value(name: str, labels: dict[str, str] | None = None) -> float:
            return registry.get_sample_value(name, labels or {}) or 0.0

        out = {
            "push_errors": sum(
                value("aperture_pushes_total", {"status": s}) for s in _ERROR_PUSHES
            ),
            "auth_failures": sum(
                value("aperture_auth_failures_total", {"transport": t}) for t in ("grpc", "http")
            ),
            "flush_failures": value("aperture_storage_flush_total", {"status": "error"}),
        }
        for event_type in PROFILE_TYPES:
            out[f"samples_{event_type}"] = value(
                "aperture_samples_ingested_total", {"event_type": event_type}
            )
        return out

    def snapshot(self, now: float) -> None:
        """Record the counters at ``now`` (each evaluation, and once at start)."""
        self._snapshots.append((now, self._counters()))

    def _increase(self, key: str, window_s: float, now: float) -> tuple[float, float]:
        """(increase of a counter over the window, seconds it covers) from the snapshots."""
        current = self._counters()[key]
        base_t, base = now, current
        for t, counters in self._snapshots:
            if t >= now - window_s and t < now:
                base_t, base = t, counters[key]
                break
        return max(0.0, current - base), now - base_t

    def _rate(self, key: str, window_s: float, now: float) -> float | None:
        increase, seconds = self._increase(key, window_s, now)
        return increase / seconds if seconds > 0 else None

    def value(self, rule: Rule, now: float) -> float | None:
        """The metric's value, or None when there is no data to judge."""
        p = rule.params
        m = rule.metric
        if m == "buffer_utilization":
            return self.ingest.buffer.utilization
        if m == "push_error_rate":
            return self._rate("push_errors", rule.window_s, now)
        if m == "auth_failure_rate":
            return self._rate("auth_failures", rule.window_s, now)
        if m == "storage_flush_failures":
            return self._increase("flush_failures", rule.window_s, now)[0]
        if m == "storage_pending_rows":
            return float(self.storage.writer.stats().pending_rows) if self.storage else 0.0
        if m == "ingest_samples_rate":
            types = [p["event_type"]] if p.get("event_type") else list(PROFILE_TYPES)
            rates = [self._rate(f"samples_{t}", rule.window_s, now) for t in types]
            known = [r for r in rates if r is not None]
            return float(sum(known)) if known else None
        if m == "agent_silent_seconds":
            return self._silent(p.get("agent"), now)
        if m == "cpu_share":
            return self._share(rule, now - rule.window_s, now)
        if m == "cpu_share_change":
            current = self._share(rule, now - rule.window_s, now)
            previous = self._share(rule, now - 2 * rule.window_s, now - rule.window_s)
            if current is None or previous is None:
                return None
            return current - previous
        if m in ("syscall_p99_ns", "syscall_error_rate"):
            return self._syscall(rule, now)
        if m == "lock_wait_per_second":
            f = self._filter(rule, EventType.LOCK, now)
            wait_ns = sum(lk.wait_ns for lk in answers.locks(self.source, f, 1_000_000).locks)
            return wait_ns / 1e9 / rule.window_s
        raise ValueError(f"unknown metric {m!r}")

    def _silent(self, agent: str | None, now: float) -> float | None:
        agents = self.ingest.agents
        if agent:
            info = agents.get(agent)
            return None if info is None else max(0.0, now - info.last_push_ns / 1e9)
        if not agents:
            return None
        return max(0.0, max(now - a.last_push_ns / 1e9 for a in agents.values()))

    def _filter(self, rule: Rule, event_type: EventType, now: float, *,
                start: float | None = None) -> QueryFilter:  # fmt: skip
        p = rule.params
        from_s = now - rule.window_s if start is None else start
        return QueryFilter(
            event_type=event_type,
            from_ns=int(from_s * 1e9),
            to_ns=int(now * 1e9),
            host=p.get("host") or None,
            agent=p.get("agent") or None,
            comm=p.get("comm") or None,
            pid=p.get("pid"),
        )

    def _share(self, rule: Rule, start: float, end: float) -> float | None:
        """Percent of CPU samples in [start, end) with the function on top (self) or in stack."""
        mode = rule.params.get("mode", "self")
        f = self._filter(rule, EventType.CPU, end, start=start)
        top = answers.top(self.source, f, 1_000_000, mode)
        if not top.total:
            return None
        module = rule.params.get("module")
        return sum(
            fn.self_pct if mode == "self" else fn.total_pct
            for fn in top.functions
            if fn.name == rule.params["function"] and (module is None or fn.module == module)
        )

    def _syscall(self, rule: Rule, now: float) -> float | None:
        f = self._filter(rule, EventType.SYSCALL, now)
        for row in answers.syscalls(self.source, f, False).syscalls:
            if row.name == rule.params["syscall"]:
                return row.p99_ns if rule.metric == "syscall_p99_ns" else row.error_rate
        return None
