"""Evaluates rules, moves each through inactive → pending → firing → resolved, notifies."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from aperture.aggregator.alerts.notify import Notifier
from aperture.aggregator.alerts.persist import HISTORY_KEEP, AlertPersistence
from aperture.aggregator.alerts.rules import Rule, compare, parse_rule
from aperture.aggregator.alerts.sources import Sources

log = logging.getLogger("aperture.alerts")


@dataclass
class RuleState:
    rule_id: str
    state: str = "inactive"  # inactive | pending | firing | resolved
    since: float = 0.0  # when this state began
    value: float | None = None
    last_evaluated: float | None = None
    last_notified: float | None = None
    error: str | None = None


class AlertMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.evaluations = Counter(
            "aperture_alert_evaluations", "Alert rule evaluations.", registry=registry
        )
        self.firing = Gauge("aperture_alerts_firing", "Alert rules now firing.", registry=registry)
        self.notifications = Counter(
            "aperture_alert_notifications", "Notification attempts by outcome (ok, error).",
            ["status"], registry=registry,
        )  # fmt: skip
        for status in ("ok", "error"):
            self.notifications.labels(status)


class AlertEngine:
    """Rules, their states and history in memory, written through to ``persistence``."""

    def __init__(
        self,
        sources: Sources,
        persistence: AlertPersistence,
        registry: CollectorRegistry,
        *,
        notifier: Notifier | None = None,
        webhook: str | None = None,
        renotify_s: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sources = sources
        self.persistence = persistence
        self.notifier = notifier or Notifier()
        self.webhook = webhook
        self.renotify_s = renotify_s  # 0: never repeat while firing
        self.clock = clock
        self.metrics = AlertMetrics(registry)
        self._lock = threading.RLock()
        rules, states, history = persistence.load()
        self.rules: dict[str, Rule] = {}
        for body in rules:
            self.rules[body["id"]] = parse_rule(body, body["id"])
        self.states: dict[str, RuleState] = {
            s["rule_id"]: RuleState(**s) for s in states if s["rule_id"] in self.rules
        }
        self.history: list[dict[str, Any]] = history
        self.metrics.firing.set(self._firing_count())
        sources.snapshot(clock())

    # -- rules -------------------------------------------------------------

    def put_rule(self, rule: Rule) -> Rule:
        with self._lock:
            old = self.rules.get(rule.id)
            self.rules[rule.id] = rule
            self.persistence.put_rule(rule.to_json())
            if old is not None and (old.metric, old.params) != (rule.metric, rule.params):
                self.states.pop(rule.id, None)  # another question: start over
            return rule

    def delete_rule(self, rule_id: str) -> bool:
        with self._lock:
            if self.rules.pop(rule_id, None) is None:
                return False
            self.states.pop(rule_id, None)
            self.persistence.delete_rule(rule_id)
            self.metrics.firing.set(self._firing_count())
            return True

    def state_of(self, rule_id: str) -> RuleState:
        return self.states.get(rule_id) or RuleState(rule_id)

    def _firing_count(self) -> int:
        return sum(1 for s in self.states.values() if s.state == "firing")

    # -- evaluation --------------------------------------------------------

    def evaluate(self, *, dry_run: bool = False, rule_id: str | None = None,
                 rule: Rule | None = None) -> list[dict[str, Any]]:  # fmt: skip
        """Evaluate every enabled rule (or one); ``dry_run`` changes and sends nothing."""
        with self._lock:
            now = self.clock()
            if rule is not None:
                rules = [rule]
            elif rule_id is not None:
                rules = [self.rules[rule_id]]
            else:
                rules = [r for r in self.rules.values() if r.enabled]
            outbox: list[tuple[Rule, RuleState, str]] = []
            results = [self._evaluate_one(r, now, dry_run, outbox) for r in rules]
            if not dry_run:
                self.sources.snapshot(now)
                self.metrics.firing.set(self._firing_count())
        # Sent without the lock: a slow webhook (retries, timeouts) must not hold up
        # rule edits or another evaluation.
        for target, st, status in outbox:
            entries = self._notify(target, st, now, status)
            with self._lock:
                self.history = (self.history + entries)[-HISTORY_KEEP:]
                self.persistence.add_history(entries)
        return results

    def _evaluate_one(self, rule: Rule, now: float, dry_run: bool,
                      outbox: list[tuple[Rule, RuleState, str]]) -> dict[str, Any]:  # fmt: skip
        error = None
        try:
            value = self.sources.value(rule, now)
        except Exception as exc:  # a store hiccup must not stop the other rules
            log.warning("alert rule %s: evaluation failed: %s", rule.name, exc)
            value, error = None, str(exc)
        matches = value is not None and compare(value, rule.operator, rule.threshold)
        if dry_run:
            return {"rule_id": rule.id, "name": rule.name, "value": value, "matches": matches,
                    "state": self.state_of(rule.id).state, "error": error}  # fmt: skip
        self.metrics.evaluations.inc()
        old = self.states.get(rule.id) or RuleState(rule.id, since=now)
        st = RuleState(**asdict(old))
        st.value, st.last_evaluated, st.error = value, now, error
        events: list[dict[str, Any]] = []

        def move(to: str) -> None:
            st.state, st.since = to, now
            events.append(self._entry(rule, now, "state", value, state=to))

        def notify(status: str) -> None:
            st.last_notified = now
            outbox.append((rule, RuleState(**asdict(st)), status))

        if matches:
            if st.state in ("inactive", "resolved"):
                move("pending")
            if st.state == "pending" and now - st.since >= rule.for_s:
                move("firing")
                notify("firing")
            elif st.state == "firing":
                renotify = rule.renotify_s if rule.renotify_s is not None else self.renotify_s
                if renotify and st.last_notified is not None and now - st.last_notified >= renotify:
                    notify("firing")
        elif st.state == "firing":
            move("resolved")
            notify("resolved")
        elif st.state in ("pending", "resolved"):
            move("inactive")
        self.states[rule.id] = st
        if st != old or rule.id not in self.states:
            self.persistence.put_state(asdict(st))
        if events:
            self.history = (self.history + events)[-HISTORY_KEEP:]
            self.persistence.add_history(events)
        return {"rule_id": rule.id, "name": rule.name, "value": value, "matches": matches,
                "state": st.state, "error": error}  # fmt: skip

    def _notify(self, rule: Rule, st: RuleState, now: float, status: str) -> list[dict[str, Any]]:
        payload = {
            "status": status,
            "summary": f"{rule.name} {status}: {rule.metric} = {st.value} "
            f"({rule.operator} {rule.threshold:g})",
            "rule": {k: v for k, v in rule.to_json().items() if k != "webhook"},
            "value": st.value,
            "since": st.since,
            "timestamp": now,
            "labels": rule.labels,
            "severity": rule.severity,
        }
        out = []
        for a in self.notifier.send(payload, rule.webhook or self.webhook):
            self.metrics.notifications.labels("ok" if a.ok else "error").inc()
            out.append(self._entry(rule, self.clock(), "notification", st.value, status=status,
                                   target=a.target, attempt=a.attempt, ok=a.ok,
                                   error=a.error))  # fmt: skip
        return out

    @staticmethod
    def _entry(rule: Rule, ts: float, kind: str, value: float | None,
               **extra: Any) -> dict[str, Any]:  # fmt: skip
        return {"ts": ts, "rule_id": rule.id, "rule_name": rule.name, "kind": kind,
                "value": value, **extra}  # fmt: skip

    def history_for(self, rule_id: str | None, limit: int) -> list[dict[str, Any]]:
        rows = [h for h in self.history if rule_id is None or h["rule_id"] == rule_id]
        return rows[-limit:][::-1]

    async def run(self, interval_s: float, stop: asyncio.Event) -> None:
        """Evaluate every ``interval_s`` until ``stop`` is set (in a thread: queries block)."""
        # The first run waits an interval too: agents reconnecting after a restart are
        # not silent, and states loaded from before the restart stand until then.
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
            if stop.is_set():
                return
            try:
                await asyncio.to_thread(self.evaluate)
            except Exception:
                log.exception("alert evaluation failed")
