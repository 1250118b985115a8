"""The alert engine with an injected clock: rules, states, notifications, persistence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aperture.aggregator.alerts.engine import AlertEngine
from aperture.aggregator.alerts.notify import Attempt, Notifier
from aperture.aggregator.alerts.persist import JsonFilePersistence
from aperture.aggregator.alerts.rules import RuleError, parse_rule
from aperture.aggregator.alerts.sources import Sources
from aperture.aggregator.backend import BufferBackend
from aperture.aggregator.buffer import AgentInfo, BatchBuffer
from aperture.aggregator.ingest import Ingest
from aperture.aggregator.metrics import Metrics


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Recorder(Notifier):
    def __init__(self) -> None:
        super().__init__(sleep=lambda _s: None)
        self.sent: list[dict[str, Any]] = []

    def send(self, payload: dict[str, Any], webhook: str | None) -> list[Attempt]:
        self.sent.append(payload)
        return [Attempt("log", 1, True)]


def silent_rule(**extra: Any) -> dict[str, Any]:
    return {"name": "quiet", "expression": {"metric": "agent_silent_seconds",
            "params": {"agent": "a1"}}, "operator": ">", "threshold": 10, **extra}  # fmt: skip


def engine(tmp_path: Path, clock: Clock, recorder: Recorder, **kw: Any) -> AlertEngine:
    ingest = Ingest(BatchBuffer(1 << 20), Metrics())
    ingest.agents["a1"] = AgentInfo("a1", "h", last_push_ns=int(clock.now * 1e9))
    return AlertEngine(Sources(ingest, BufferBackend(ingest.buffer)),
                       JsonFilePersistence(tmp_path / "alerts.json"), ingest.metrics.registry,
                       notifier=recorder, clock=clock, **kw)  # fmt: skip


def push(e: AlertEngine, clock: Clock) -> None:
    e.sources.ingest.agents["a1"].last_push_ns = int(clock.now * 1e9)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"expression": {"metric": "nope"}}, "unknown metric 'nope'"),
        ({"operator": "!="}, "bad operator"),
        ({"threshold": -1}, "threshold must not be negative"),
        ({"severity": "fatal"}, "bad severity"),
        ({"for": "soon"}, "is not a duration"),
        ({"expression": {"metric": "cpu_share"}}, "needs params.function"),
        ({"name": ""}, "name is required"),
    ],
)
def test_invalid_rules_name_the_reason(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(RuleError, match=reason):
        parse_rule({**silent_rule(), **change})


def test_for_duration_then_firing_once_then_resolved(tmp_path: Path) -> None:
    clock, rec = Clock(), Recorder()
    e = engine(tmp_path, clock, rec)
    rule = e.put_rule(parse_rule(silent_rule(**{"for": "30s"})))
    clock.now += 11
    assert e.evaluate()[0]["state"] == "pending"
    clock.now += 20
    assert e.evaluate()[0]["state"] == "pending"  # 20 s pending < 30 s
    clock.now += 10
    assert e.evaluate()[0]["state"] == "firing"
    for _ in range(5):
        clock.now += 60
        assert e.evaluate()[0]["state"] == "firing"
    assert [p["status"] for p in rec.sent] == ["firing"]  # no repeat while firing
    push(e, clock)
    assert e.evaluate()[0]["state"] == "resolved"
    assert e.evaluate()[0]["state"] == "inactive"
    assert [p["status"] for p in rec.sent] == ["firing", "resolved"]
    assert e.metrics.firing._value.get() == 0
    states = [h["state"] for h in e.history_for(rule.id, 100)[::-1] if h["kind"] == "state"]
    assert states == ["pending", "firing", "resolved", "inactive"]


def test_flapping_value_does_not_notify(tmp_path: Path) -> None:
    clock, rec = Clock(), Recorder()
    e = engine(tmp_path, clock, rec)
    e.put_rule(parse_rule(silent_rule(**{"for": "1m"})))
    for _ in range(10):
        clock.now += 15
        assert e.evaluate()[0]["state"] == "pending"
        clock.now += 15
        push(e, clock)
        assert e.evaluate()[0]["state"] == "inactive"
    assert rec.sent == []


def test_renotify_interval(tmp_path: Path) -> None:
    clock, rec = Clock(), Recorder()
    e = engine(tmp_path, clock, rec)
    e.put_rule(parse_rule(silent_rule(renotify_interval="5m")))
    for _ in range(12):
        clock.now += 60
        e.evaluate()
    assert [p["status"] for p in rec.sent] == ["firing"] * 3  # at 1, 6, 11 min


def test_restart_keeps_rules_state_and_history(tmp_path: Path) -> None:
    clock, rec = Clock(), Recorder()
    e = engine(tmp_path, clock, rec)
    rule = e.put_rule(parse_rule(silent_rule()))
    clock.now += 11
    e.evaluate()
    again = engine(tmp_path, clock, rec)
    assert again.rules[rule.id] == rule
    assert again.state_of(rule.id).state == "firing"
    assert again.history_for(rule.id, 10) == e.history_for(rule.id, 10)
    again.sources.ingest.agents["a1"].last_push_ns = int((clock.now - 11) * 1e9)
    clock.now += 1
    again.evaluate()
    assert [p["status"] for p in rec.sent] == ["firing"]  # still firing: not sent again


def test_rates_cover_the_window(tmp_path: Path) -> None:
    clock, rec = Clock(), Recorder()
    e = engine(tmp_path, clock, rec)
    e.put_rule(parse_rule({"name": "errs", "expression": {"metric": "push_error_rate",
               "params": {"window": "1m"}}, "operator": ">", "threshold": 1}))  # fmt: skip
    clock.now += 10
    e.evaluate()
    for _ in range(50):
        e.sources.ingest.push(b"not a batch")
    clock.now += 10
    result = e.evaluate()[0]
    assert result["value"] == pytest.approx(50 / 20)
    assert result["state"] == "firing"
