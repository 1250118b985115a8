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
from aperture.aggregator.buffer import AgentInfo, BatchBuffer
from aperture.aggregator.buffer_source import BufferSource
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
    return AlertEngine(Sources(ingest, BufferSource(ingest.buffer)),
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
        ({"webhook": "http://"}, "webhook must be an http"),  # the old check took a bare scheme
        ({"webhook": "https://:8080/hook"}, "webhook must be an http"),
        ({"webhook": "ftp://ops/hook"}, "webhook must be an http"),
        ({"renotify_interval": "1s"}, "at least 60s"),  # the old check took any duration
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


def test_every_refused_push_counts_as_a_push_error(tmp_path: Path) -> None:
    """Each refusing outcome of the ingest is an error to push_error_rate (the old list
    was written by hand and missed outside_retention: agents with a wrong clock, whose
    every batch is refused, never fired the rule)."""
    from aperture.aggregator.ingest import Outcome
    from aperture.model import EventType, Frame, Profile, Sample
    from aperture.wire import Identity, encode

    clock, rec = Clock(), Recorder()
    e = engine(tmp_path, clock, rec)
    e.sources.ingest.retention_days = 7
    e.put_rule(parse_rule({"name": "errs", "expression": {"metric": "push_error_rate",
               "params": {"window": "1m"}}, "operator": ">", "threshold": 0.5}))  # fmt: skip
    clock.now += 10
    e.evaluate()
    day = 86_400 * 10**9
    old_end = 1_506_718_681 * 10**9  # 2017
    stale = Profile(EventType.CPU, "samples", samples=[Sample((Frame("main", "app"),), 1, pid=1)],
                    start_ns=old_end - day, end_ns=old_end, frequency_hz=99)  # fmt: skip
    for seq in range(1, 21):
        raw = encode([stale], Identity("skewed", "h"), seq).SerializeToString()
        assert e.sources.ingest.push(raw).outcome is Outcome.OUTSIDE_RETENTION
    clock.now += 10
    result = e.evaluate()[0]
    assert result["value"] == pytest.approx(20 / 20)
    assert result["state"] == "firing"


def test_webhook_retries_with_backoff_and_records_attempts(tmp_path: Path) -> None:
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    got: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(503 if len(got) < 3 else 200)  # two failures, then ok
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    sleeps: list[float] = []
    clock = Clock()
    try:
        e = engine(tmp_path, clock, Recorder())
        e.notifier = Notifier(sleep=sleeps.append, backoff_s=0.5)
        rule = e.put_rule(parse_rule(silent_rule(webhook=url)))
        clock.now += 11
        e.evaluate()
    finally:
        server.shutdown()
    assert sleeps == [0.5, 1.0]
    assert [g["status"] for g in got] == ["firing"] * 3
    attempts = [(h["target"], h["attempt"], h["ok"]) for h in e.history_for(rule.id, 10)[::-1]
                if h["kind"] == "notification"]  # fmt: skip
    assert attempts == [("log", 1, True), (url, 1, False), (url, 2, False), (url, 3, True)]
    registry = e.sources.ingest.metrics.registry
    errors = {"status": "error"}
    assert registry.get_sample_value("aperture_alert_notifications_total", errors) == 2


def test_profile_metrics_from_pushed_batches(tmp_path: Path) -> None:
    from aperture.model import EventType, Frame, LockStat, Profile, Sample, SyscallStat
    from aperture.wire import Identity, encode

    clock, rec = Clock(), Recorder()
    e = engine(tmp_path, clock, rec)
    main, hot, cold = (Frame(n, "app") for n in ("main", "hot", "cold"))
    end = int(clock.now * 1e9)
    seq = iter(range(1, 100))

    def push_batch(*profiles: Profile) -> None:
        batch = encode(list(profiles), Identity("a1", "h", {}), next(seq))
        assert e.sources.ingest.push(batch.SerializeToString()).outcome.value == "accepted"

    def cpu(end_ns: int, hot_n: int, cold_n: int) -> Profile:
        return Profile(EventType.CPU, "samples", start_ns=end_ns - 10**9, end_ns=end_ns,
                       samples=[Sample((main, hot), hot_n, pid=7, comm="app"),
                                Sample((main, cold), cold_n, pid=7, comm="app")])  # fmt: skip

    push_batch(cpu(end - 90 * 10**9, 10, 90))  # previous minute: hot 10 %
    push_batch(cpu(end - 10 * 10**9, 40, 60))  # this minute: hot 40 %
    calls = [SyscallStat(7, "app", 257, "openat", count=10, errors=4, total_ns=50_000,
                         min_ns=2000, max_ns=8000, hist=(0,) * 11 + (10,))]  # fmt: skip
    locks = [LockStat(7, "app", 0xABC0, (main, hot), contentions=3, wait_ns=3 * 10**9,
                      max_ns=2 * 10**9, hist=(0,) * 30 + (3,))]  # fmt: skip
    push_batch(
        Profile(EventType.SYSCALL, "nanoseconds", start_ns=end - 2 * 10**9, end_ns=end - 10**9,
                syscalls=calls),
        Profile(EventType.LOCK, "nanoseconds", start_ns=end - 2 * 10**9, end_ns=end - 10**9,
                locks=locks),
    )  # fmt: skip

    def value(metric: str, **params: Any) -> float | None:
        rule = parse_rule({"name": metric, "expression": {"metric": metric, "params": params},
                           "operator": ">", "threshold": 0})  # fmt: skip
        return e.evaluate(dry_run=True, rule=rule)[0]["value"]  # type: ignore[no-any-return]

    assert value("cpu_share", function="hot", window="1m") == pytest.approx(40.0)
    assert value("cpu_share", function="main", mode="total", window="1m") == pytest.approx(100)
    assert value("cpu_share_change", function="hot", window="1m") == pytest.approx(30.0)
    assert value("cpu_share", function="hot", comm="other", window="1m") is None  # no data
    assert value("syscall_error_rate", syscall="openat") == pytest.approx(0.4)
    assert value("syscall_p99_ns", syscall="openat") > 1000  # type: ignore[operator]
    assert value("syscall_p99_ns", syscall="read") is None
    assert value("lock_wait_per_second", pid=7, window="10s") == pytest.approx(0.3)
    assert value("ingest_samples_rate") is None  # no time has passed since the start
    clock.now += 10
    # 200 CPU samples + 10 syscalls + 3 contentions over the 10 s since the engine started
    assert value("ingest_samples_rate") == pytest.approx(21.3)
    assert value("ingest_samples_rate", event_type="cpu") == pytest.approx(20.0)


def test_corrupt_rules_file_is_one_sentence(tmp_path: Path) -> None:
    from aperture.aggregator.alerts.setup import build_engine
    from aperture.errors import UserError

    (tmp_path / "alerts.json").write_text("{not json")
    ingest = Ingest(BatchBuffer(1 << 20), Metrics())
    with pytest.raises(UserError, match=r"cannot load the alert rules from .*alerts\.json"):
        build_engine(ingest, BufferSource(ingest.buffer), None, tmp_path)


def test_every_metric_has_a_unit_and_a_description() -> None:
    from aperture.aggregator.alerts.rules import METRICS, metric_catalog

    catalog = {m["metric"]: m for m in metric_catalog()}
    assert set(catalog) == set(METRICS)
    for name, (required, optional) in METRICS.items():
        entry = catalog[name]
        assert entry["required"] == list(required) and entry["optional"] == list(optional)
        assert entry["unit"] and entry["description"]
