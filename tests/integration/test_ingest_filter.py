"""`aperture-aggregator --ingest-filter`: a real aggregator filters what agents push."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from aggregator_client import raw_push
from aggregator_proc import AggregatorProcess
from aperture.model import EventType, Frame, Profile, Sample
from aperture.proto.v1 import aggregator_pb2 as apb
from aperture.proto.v1 import aggregator_pb2_grpc
from aperture.wire import Identity, encode

pytest.importorskip("wasmtime", reason="wasmtime is in the filters extra (make setup)")

WAT = Path(__file__).resolve().parents[2] / "src/aperture/filters/examples"


def batch(seq: int) -> bytes:
    now = time.time_ns()
    samples = [
        Sample((Frame("main", "app"), Frame("hot", "app")), 10, pid=42, comm="app"),
        Sample((Frame("main", "noise"),), 7, pid=43, comm="noise"),
    ]
    profile = Profile(EventType.CPU, "samples", samples=samples, start_ns=now - 10**10,
                      end_ns=now, frequency_hz=99)  # fmt: skip
    return encode([profile], Identity("agent-1", "host-1"), seq).SerializeToString()


def test_ingest_filter_keeps_only_what_the_filter_keeps(tmp_path: Path) -> None:
    agg = AggregatorProcess(
        tmp_path / "agg", "--no-storage", "--ingest-filter", str(WAT / "comm_prefix.wat"),
        "--ingest-filter-arg", "app",
    ).start()  # fmt: skip
    try:
        channel = grpc.insecure_channel(agg.grpc_target)
        push = raw_push(channel)
        md = [("authorization", f"Bearer {agg.token}")]
        assert push(batch(1), metadata=md, timeout=10).accepted
        stub = aggregator_pb2_grpc.AggregatorStub(channel)  # type: ignore[no-untyped-call]
        queried = stub.Query(apb.QueryRequest(limit=10), metadata=md)
        assert [b.cpu_samples for b in queried.batches] == [10]
        channel.close()
    finally:
        assert agg.stop() == 0, agg.log.read_text()


def test_a_bad_ingest_filter_stops_the_start(tmp_path: Path) -> None:
    junk = tmp_path / "junk.wasm"
    junk.write_bytes(b"\0asm\x02\0\0\0")
    result = subprocess.run(
        [sys.executable, "-m", "aperture.aggregator.cli", "--no-storage",
         "--data-dir", str(tmp_path / "d"), "--ingest-filter", str(junk)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "is not a valid WASM module" in result.stderr
    assert result.stderr.strip().count("\n") == 0
