"""The aggregator as a real process, spoken to by real gRPC and HTTP clients on loopback."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from aggregator_client import AggregatorClient
from aggregator_proc import AggregatorProcess
from aperture.model import EventType, Frame, Profile, Sample
from aperture.proto.v1 import aggregator_pb2 as apb
from aperture.wire import Identity, encode

HOT = (Frame("main", "app"), Frame("hot", "app"))


def batch(seq: int, agent: str = "agent-1", value: int = 10, pad: int = 0) -> bytes:
    now = time.time_ns()
    samples = [Sample(HOT, value, pid=42, comm="app")]
    # distinct stacks make a batch bigger without changing its hot function
    samples += [Sample((Frame(f"pad{i}", "app"),), 1, pid=42, comm="app") for i in range(pad)]
    profile = Profile(EventType.CPU, "samples", samples=samples, start_ns=now - 10**10,
                      end_ns=now, frequency_hz=99)  # fmt: skip
    return encode([profile], Identity(agent, "host-1"), seq).SerializeToString()


@pytest.fixture
def agg(tmp_path: Path) -> Iterator[AggregatorProcess]:
    proc = AggregatorProcess(tmp_path / "agg").start()
    yield proc
    assert proc.stop() == 0, proc.log.read_text()


def test_push_query_and_rest(agg: AggregatorProcess) -> None:
    raw = AggregatorClient(agg)
    assert raw.push(batch(1)).accepted
    again = raw.push(batch(1))
    assert again.accepted and again.duplicate
    queried = raw.stub.Query(apb.QueryRequest(limit=10), metadata=raw.md)
    assert [(b.agent_id, b.sequence, b.cpu_samples) for b in queried.batches] == [
        ("agent-1", 1, 10)
    ]
    agg.wait_stored()
    summed = raw.stub.Aggregate(apb.AggregateRequest(event_type="cpu"), metadata=raw.md)
    assert summed.total == 10 and summed.functions[0].name == "hot"
    rows = httpx.get(f"{agg.http}/api/v1/batches", headers=agg.headers()).json()
    assert [r["sequence"] for r in rows] == [1]
    agents = httpx.get(f"{agg.http}/api/v1/agents", headers=agg.headers()).json()
    assert agents[0]["agent_id"] == "agent-1" and agents[0]["duplicates"] == 1
    assert agg.metric("aperture_dedupe_hits_total") == 1
    assert agg.metric('aperture_samples_ingested_total{event_type="cpu"}') == 10


def test_bad_pushes_are_refused_counted_and_harmless(agg: AggregatorProcess) -> None:
    raw = AggregatorClient(agg)
    good = batch(1)
    assert raw.code(good, [("authorization", "Bearer wrong")]) == grpc.StatusCode.UNAUTHENTICATED
    assert raw.code(good, []) == grpc.StatusCode.UNAUTHENTICATED
    assert raw.code(b"\x00garbage\xff\xff") == grpc.StatusCode.INVALID_ARGUMENT
    oversize = b"\x0a" + b"\xff" * (17 << 20)  # over the 16 MiB default, under gRPC's own cap
    assert raw.code(oversize) == grpc.StatusCode.RESOURCE_EXHAUSTED
    from aperture.proto.v1 import profile_pb2 as pb

    bad_index = pb.ProfileBatch.FromString(good)
    bad_index.cpu.comm[0] = 9999  # a string index past the table
    assert raw.code(bad_index.SerializeToString()) == grpc.StatusCode.INVALID_ARGUMENT
    assert agg.metric('aperture_auth_failures_total{transport="grpc"}') == 2
    assert agg.metric('aperture_pushes_total{status="unauthenticated"}') == 2
    assert agg.metric('aperture_pushes_total{status="malformed"}') == 2
    assert agg.metric('aperture_pushes_total{status="too_large"}') == 1
    # nothing bad reached the buffer, and the server still serves
    assert raw.push(good).accepted
    assert agg.metric("aperture_buffer_batches") == 1
    assert httpx.get(f"{agg.http}/healthz").json() == {"status": "ok"}


def test_http_auth(agg: AggregatorProcess) -> None:
    for path in ("/api/v1/batches", "/api/v1/agents", "/api/v1/health", "/metrics"):
        assert httpx.get(agg.http + path).status_code == 401, path
        bad = {"Authorization": "Bearer nope"}
        assert httpx.get(agg.http + path, headers=bad).status_code == 401, path
        assert httpx.get(agg.http + path, headers=agg.headers()).status_code == 200, path
    assert httpx.get(agg.http + "/readyz").status_code == 200
    assert agg.metric('aperture_auth_failures_total{transport="http"}') == 8


def test_buffer_evicts_by_bytes_and_shows_it(tmp_path: Path) -> None:
    agg = AggregatorProcess(tmp_path / "agg", "--buffer-bytes", "64KiB").start()
    try:
        raw = AggregatorClient(agg)
        sizes = []
        for seq in range(1, 41):
            data = batch(seq, pad=200)
            sizes.append(len(data))
            assert raw.push(data).accepted
        held = agg.metric("aperture_buffer_bytes")
        assert held <= 64 * 1024
        assert agg.metric("aperture_buffer_evictions_total") > 0
        assert 0.5 < agg.metric("aperture_buffer_utilization_ratio") <= 1.0
        kept = raw.stub.Query(apb.QueryRequest(limit=1000), metadata=raw.md).batches
        # the newest are kept, the oldest went first
        assert [b.sequence for b in kept] == list(range(40, 40 - len(kept), -1))
    finally:
        assert agg.stop() == 0


def test_kill_9_loses_nothing_acknowledged(tmp_path: Path) -> None:
    agg = AggregatorProcess(tmp_path / "agg").start()
    raw = AggregatorClient(agg)
    for seq in range(1, 21):
        assert raw.push(batch(seq)).accepted
    agg.kill()
    agg.start()
    raw = AggregatorClient(agg)
    # a retry of an acknowledged batch after the restart is still a duplicate
    assert raw.push(batch(20)).duplicate
    assert raw.push(batch(21)).accepted
    kept = raw.stub.Query(apb.QueryRequest(limit=1000), metadata=raw.md).batches
    assert sorted(b.sequence for b in kept) == list(range(1, 22))
    assert agg.stop() == 0


def test_tls(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    agg = AggregatorProcess(tmp_path / "agg", tls=(cert, key)).start()
    try:
        assert agg.get("/api/v1/health", headers=agg.headers()).status_code == 200
        result = subprocess.run(
            [sys.executable, "-m", "aperture.cli.main", "query", "--endpoint",
             f"https://localhost:{agg.grpc_port}", "--tls-ca", str(cert), "--token", "test-token"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "no batches" in result.stdout
        plain = subprocess.run(
            [sys.executable, "-m", "aperture.cli.main", "query", "--endpoint",
             f"http://127.0.0.1:{agg.grpc_port}", "--token", "test-token"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert plain.returncode != 0
    finally:
        assert agg.stop() == 0


def test_cli_query_table_and_json(agg: AggregatorProcess) -> None:
    import json

    AggregatorClient(agg).push(batch(7))
    base = [sys.executable, "-m", "aperture.cli.main", "query", "--endpoint", agg.endpoint,
            "--token", "test-token"]  # fmt: skip
    table = subprocess.run(base, capture_output=True, text=True, timeout=30)
    assert table.returncode == 0 and "agent-1" in table.stdout
    data = json.loads(subprocess.run([*base, "--json"], capture_output=True, text=True).stdout)
    assert data[0]["sequence"] == 7 and data[0]["cpu_samples"] == 10
    wrong = subprocess.run([*base[:-1], "wrong"], capture_output=True, text=True)
    assert wrong.returncode == 1 and "rejected the token" in wrong.stderr
    assert "Traceback" not in wrong.stderr


def test_a_restart_keeps_the_data_in_the_store(tmp_path: Path) -> None:
    agg = AggregatorProcess(tmp_path / "agg").start()
    raw = AggregatorClient(agg)
    for seq in range(1, 6):
        assert raw.push(batch(seq, value=7)).accepted
    agg.wait_stored()
    assert agg.stop() == 0
    # no journal this time: whatever answers now comes from the store
    agg.args.append("--no-journal")
    agg.start()
    try:
        top = agg.get("/api/v1/top", params={"from": "-1h"}, headers=agg.headers()).json()
        assert top["total"] == 35
        health = agg.get("/api/v1/health", headers=agg.headers()).json()
        assert health["buffer"]["batches"] == 0 and health["storage"]["reachable"]
    finally:
        assert agg.stop() == 0
