"""A real Prometheus (Debian `prometheus`) scrapes the aggregator's /metrics with the token,
and its query API returns our ingest counters."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from aggregator_proc import AggregatorProcess, free_port
from aperture.model import EventType, Frame, Profile, Sample
from aperture.proto.v1 import aggregator_pb2_grpc
from aperture.wire import Identity, encode

CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: aperture
    authorization:
      type: Bearer
      credentials: {token}
    static_configs:
      - targets: ["127.0.0.1:{port}"]
  - job_name: aperture-no-token
    static_configs:
      - targets: ["127.0.0.1:{port}"]
"""


def query(base: str, promql: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{base}/api/v1/query", params={"query": promql}, timeout=5)
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def test_prometheus_scrapes_ingest_counters(tmp_path: Path) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (Debian prometheus, `make apt`)")
    agg = AggregatorProcess(tmp_path / "agg").start()
    prom: subprocess.Popen[bytes] | None = None
    try:
        channel = grpc.insecure_channel(agg.grpc_target)
        stub = aggregator_pb2_grpc.AggregatorStub(channel)  # type: ignore[no-untyped-call]
        now = time.time_ns()
        for seq in range(1, 4):
            sample = Sample((Frame("main"), Frame("hot")), 10 * seq)
            profile = Profile(EventType.CPU, "samples", [sample], start_ns=now - 10**10, end_ns=now)
            md = [("authorization", "Bearer test-token")]
            assert stub.Push(encode([profile], Identity("p1", "h1"), seq), metadata=md).accepted
        channel.close()

        config = tmp_path / "prometheus.yml"
        config.write_text(CONFIG.format(token=agg.token, port=agg.http_port))
        port = free_port()
        log = (tmp_path / "prometheus.log").open("wb")
        prom = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=log,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        accepted: list[dict[str, Any]] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert prom.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            try:
                accepted = query(base, 'aperture_pushes_total{status="accepted",job="aperture"}')
            except httpx.HTTPError:
                accepted = []  # not listening yet
            if accepted:
                break
            time.sleep(0.5)
        assert accepted, "Prometheus never stored aperture_pushes_total within 60 s"
        assert float(accepted[0]["value"][1]) == 3
        samples = query(base, 'aperture_samples_ingested_total{event_type="cpu"}')
        assert float(samples[0]["value"][1]) == 10 + 20 + 30
        ups = {r["metric"]["job"]: r["value"][1] for r in query(base, "up")}
        assert ups["aperture"] == "1"
        # without the token the aggregator refuses the scrape
        assert ups.get("aperture-no-token", "0") == "0"
    finally:
        if prom is not None:
            prom.send_signal(signal.SIGTERM)
            try:
                prom.wait(timeout=20)
            except subprocess.TimeoutExpired:
                prom.kill()
                prom.wait()
        agg.stop()
