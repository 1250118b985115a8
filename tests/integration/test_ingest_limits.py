"""What one ingest token can make the aggregator hold or do is bounded (issue 17):
identity strings and labels, the agent table and its /metrics series, the windows
taken, and the gRPC ``limit``; Query scans the buffer off the event loop."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from aggregator_client import AggregatorClient
from aggregator_proc import AggregatorProcess
from aperture.aggregator.agents import MAX_LAST_SEEN_SERIES, AgentTable
from aperture.aggregator.buffer import BatchBuffer, BufferedBatch
from aperture.aggregator.ingest import Ingest, Outcome
from aperture.aggregator.metrics import Metrics
from aperture.aggregator.server import Aggregator, Settings
from aperture.model import EventType, Frame, Profile, Sample
from aperture.proto.v1 import aggregator_pb2 as apb
from aperture.proto.v1 import aggregator_pb2_grpc
from aperture.wire import Identity, encode

S = 10**9
LAST_SEEN = "aperture_agent_last_seen_timestamp_seconds{"


def batch(
    seq: int = 1,
    agent: str = "agent-1",
    *,
    host: str = "host-1",
    labels: dict[str, str] | None = None,
    end_ns: int | None = None,
) -> bytes:
    end = time.time_ns() if end_ns is None else end_ns
    profile = Profile(EventType.CPU, "samples", start_ns=end - 10 * S, end_ns=end,
                      samples=[Sample((Frame("main", "app"), Frame("hot", "app")), 10, pid=42,
                                      comm="app")], frequency_hz=99)  # fmt: skip
    return encode([profile], Identity(agent, host, labels or {}), seq).SerializeToString()


@pytest.fixture
def agg(tmp_path: Path) -> Iterator[AggregatorProcess]:
    proc = AggregatorProcess(tmp_path / "agg", "--no-storage").start()
    yield proc
    assert proc.stop() == 0, proc.log.read_text()


def metrics_page(agg: AggregatorProcess) -> str:
    return agg.get("/metrics", headers=agg.headers()).text


def test_identity_strings_past_the_limits_are_refused(agg: AggregatorProcess) -> None:
    client = AggregatorClient(agg)
    # The measurement: 2,000 distinct 10 KB agent ids were all held (~86 MB)
    # and made a 20 MB /metrics page.
    for i in range(2000):
        message = client.refused(batch(1, f"{i:06d}" + "x" * 10_234))
    assert message == (
        "malformed ProfileBatch: the agent_id is 10240 bytes, over the limit of 256: "
        "send a shorter one"
    )
    assert agg.get("/api/v1/agents", headers=agg.headers()).json() == []
    page = metrics_page(agg)
    assert LAST_SEEN not in page and len(page) < 20_000
    assert agg.metric('aperture_pushes_total{status="malformed"}') == 2000
    assert agg.metric("aperture_buffer_batches") == 0

    assert "the host is 300 bytes" in client.refused(batch(host="h" * 300))
    many = {f"k{i}": "v" for i in range(65)}
    assert "65 labels, over the limit of 64" in client.refused(batch(labels=many))
    long_key = client.refused(batch(labels={"k" * 257: "v"}))
    assert "is 257 bytes, over the limit of 256: use a shorter key" in long_key
    value = client.refused(batch(labels={"pod": "é" * 513}))  # 1,026 bytes in UTF-8
    assert "the value of label 'pod' is 1026 bytes, over the limit of 1024" in value
    wide = {f"k{i}": "v" * 1000 for i in range(5)}
    assert "labels are 5010 bytes in all, over the limit of 4096" in client.refused(
        batch(labels=wide)
    )
    # At the limits exactly: taken.
    edge = {f"{i:02d}" + "k" * 30: "v" * 30 for i in range(64)}  # 64 labels, 3,968 bytes
    assert client.push(batch(1, "a" * 256, host="h" * 256, labels=edge)).accepted
    agents = agg.get("/api/v1/agents", headers=agg.headers()).json()
    assert [(a["agent_id"], len(a["labels"])) for a in agents] == [("a" * 256, 64)]


def test_many_agents_keep_the_last_seen_series_bounded(agg: AggregatorProcess) -> None:
    client = AggregatorClient(agg)
    count = MAX_LAST_SEEN_SERIES + 200
    for i in range(count):
        assert client.push(batch(1, f"{i:06d}" + "a" * 250)).accepted  # 256-byte ids
    page = metrics_page(agg)
    series = [line for line in page.splitlines() if line.startswith(LAST_SEEN)]
    assert len(series) == MAX_LAST_SEEN_SERIES
    assert agg.metric("aperture_agents") == count
    assert agg.metric("aperture_agents_untracked") == 200
    assert len(page) < 400_000, len(page)  # 1,000 series of 256-byte ids: ~340 KB
    assert len(agg.get("/api/v1/agents", headers=agg.headers()).json()) == count


def test_agent_table_forgets_idle_agents_and_the_least_recent_past_its_cap() -> None:
    now = [time.time_ns()]
    metrics = Metrics()
    table = AgentTable(metrics, idle_s=3600, max_agents=5, max_series=3)
    ingest = Ingest(BatchBuffer(1 << 20, max_batches=6), metrics, agents=table,
                    clock=lambda: now[0])  # fmt: skip

    def push(agent: str, seq: int = 1) -> None:
        now[0] += S
        assert ingest.push(batch(seq, agent, end_ns=now[0])).outcome is Outcome.ACCEPTED

    def series() -> set[str]:
        return {s.labels["agent_id"] for m in metrics.agent_last_seen.collect() for s in m.samples}

    def value(name: str) -> float | None:
        return metrics.registry.get_sample_value(name)

    for i in range(8):
        push(f"a{i}")
    assert set(ingest.agents) == {"a3", "a4", "a5", "a6", "a7"}  # a0-a2 forgotten
    # a0-a2 had the first series; each one freed went to the next new agent
    assert series() == {"a5", "a6", "a7"}
    assert (value("aperture_agents"), value("aperture_agents_untracked")) == (5, 2)
    push("a3", 2)  # pushed again: now the most recent
    push("a8")  # the least recently pushed goes: a4, not a3
    assert set(ingest.agents) == {"a3", "a5", "a6", "a7", "a8"}
    assert value("aperture_agents_forgotten_total") == 4
    now[0] += 3601 * S  # an hour of silence, then one push
    push("b")
    assert list(ingest.agents) == ["b"] and series() == {"b"}
    assert (value("aperture_agents"), value("aperture_agents_untracked")) == (1, 0)
    assert value("aperture_agents_forgotten_total") == 9
    push("a4", 2)  # a forgotten agent that comes back is held anew
    assert ingest.agents["a4"].pushes == 1 and series() == {"b", "a4"}


def test_windows_outside_the_retention_are_refused_and_not_stored(tmp_path: Path) -> None:
    agg = AggregatorProcess(tmp_path / "agg").start()  # the embedded store, 7-day retention
    try:
        client = AggregatorClient(agg)
        now = time.time_ns()
        future = client.refused(batch(1, end_ns=now + 3600 * S))
        assert "more than 10 minutes ahead of this aggregator's clock" in future
        assert future.endswith("check the sender's clock, or give the profile's real time")
        old = client.refused(batch(2, end_ns=now - 30 * 86400 * S))
        assert "before the store's 7-day retention, so it would be dropped at once" in old
        assert client.push(batch(3, end_ns=now + 5 * 60 * S)).accepted  # within the skew
        queried = client.stub.Query(apb.QueryRequest(), metadata=client.md).batches
        assert [b.sequence for b in queried] == [3]
        agg.wait_stored()
        wide = {"from": str(now - 60 * 86400 * S), "to": str(now + 2 * 3600 * S)}
        top = agg.get("/api/v1/top", headers=agg.headers(), params=wide).json()
        assert top["total"] == 10  # batch 3 only
        assert agg.metric('aperture_pushes_total{status="outside_retention"}') == 2
    finally:
        assert agg.stop() == 0, agg.log.read_text()


def test_without_a_store_only_the_future_bound_applies(agg: AggregatorProcess) -> None:
    client = AggregatorClient(agg)
    now = time.time_ns()
    assert client.push(batch(1, end_ns=now - 30 * 86400 * S)).accepted
    assert "ahead of this aggregator's clock" in client.refused(batch(2, end_ns=now + 3600 * S))


def test_grpc_limit_is_at_most_10000(agg: AggregatorProcess) -> None:
    client = AggregatorClient(agg)
    assert client.push(batch(1)).accepted
    aggregate = apb.AggregateRequest(event_type="cpu", limit=1_000_000)
    calls = [
        (client.stub.Query, apb.QueryRequest(limit=1_000_000)),
        (client.stub.Aggregate, aggregate),
        (
            client.stub.Diff,
            apb.DiffRequest(baseline=aggregate, comparison=aggregate, limit=1_000_000),
        ),
    ]
    for call, request in calls:
        with pytest.raises(grpc.RpcError) as err:
            call(request, metadata=client.md, timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details() == (
            "limit 1,000,000 is over the maximum of 10,000: ask for at most 10,000 rows, "
            "or narrow the request"
        )
    full = client.stub.Query(apb.QueryRequest(limit=10_000), metadata=client.md)
    assert len(full.batches) == 1


def test_query_scans_the_buffer_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(grpc_host="127.0.0.1", grpc_port=0, http_host="127.0.0.1", http_port=0,
                        data_dir=tmp_path, journal=False, storage=None)  # fmt: skip
    aggregator = Aggregator(settings)
    loop = asyncio.new_event_loop()
    server = threading.Thread(target=loop.run_until_complete, args=(aggregator.run(),))
    server.start()
    try:
        deadline = time.monotonic() + 30
        while not aggregator.state.ready:
            assert time.monotonic() < deadline and server.is_alive()
            time.sleep(0.05)
        loop_thread = server.ident
        buffer = aggregator.ingest.buffer
        scanned_in: list[int | None] = []
        real_snapshot = buffer.snapshot

        def slow_snapshot() -> list[BufferedBatch]:
            scanned_in.append(threading.get_ident())
            time.sleep(2.0)  # a scan of a very large buffer
            return list(real_snapshot())

        monkeypatch.setattr(buffer, "snapshot", slow_snapshot)
        with grpc.insecure_channel(f"127.0.0.1:{aggregator.grpc_port}") as channel:
            stub = aggregator_pb2_grpc.AggregatorStub(channel)  # type: ignore[no-untyped-call]
            query = stub.Query.future(apb.QueryRequest(), timeout=30)
            while not scanned_in:
                time.sleep(0.01)
            started = time.monotonic()
            ready = httpx.get(f"http://127.0.0.1:{aggregator.http_port}/readyz", timeout=10)
            answered_s = time.monotonic() - started
            assert ready.status_code == 200
            assert not query.done()  # still scanning while /readyz answered
            assert query.result().batches == []
        assert answered_s < 1.0, answered_s  # the loop was free: not held for the 2 s scan
        assert scanned_in and scanned_in[0] != loop_thread
    finally:
        loop.call_soon_threadsafe(aggregator.stop_event.set)
        server.join(30)
        loop.close()
