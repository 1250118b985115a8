"""The `aperture` query commands against a real aggregator with a constructed regression."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator

import grpc
import pytest

from aggregator_proc import AggregatorProcess
from aperture.cli.filters import parse_range
from aperture.errors import UsageError
from aperture.model import EventType, Frame, Profile, Sample, SyscallStat
from aperture.proto.v1 import aggregator_pb2_grpc
from aperture.wire import Identity, encode

MAIN, A, B = Frame("main", "app"), Frame("a", "app"), Frame("b", "app")
MIN = 60 * 10**9


@pytest.fixture(scope="module")
def agg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AggregatorProcess]:
    proc = AggregatorProcess(tmp_path_factory.mktemp("cli") / "agg").start()
    stub = aggregator_pb2_grpc.AggregatorStub(grpc.insecure_channel(proc.grpc_target))  # type: ignore[no-untyped-call]
    md = [("authorization", "Bearer test-token")]
    now = time.time_ns()
    # a: 80% of the baseline hour, 20% of the last one; b the reverse
    for seq, (end, va, vb) in enumerate([(now - 90 * MIN, 80, 20), (now - 10 * MIN, 40, 160)], 1):
        cpu = Profile(EventType.CPU, "samples", start_ns=end - 10**10, end_ns=end,
                      samples=[Sample((MAIN, A), va, pid=3, comm="app"),
                               Sample((MAIN, B), vb, pid=3, comm="app")])  # fmt: skip
        calls = Profile(EventType.SYSCALL, "nanoseconds", start_ns=end - 10**10, end_ns=end,
                        syscalls=[SyscallStat(3, "app", 0, "read", count=5, total_ns=500,
                                              min_ns=50, max_ns=200,
                                              hist=(0,) * 6 + (5,))])  # fmt: skip
        stub.Push(encode([cpu, calls], Identity("cli-agent", "h"), seq), metadata=md)
    proc.wait_stored()
    yield proc
    proc.stop()


def cli(agg: AggregatorProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aperture.cli.main", *args, "--token", "test-token",
         "--endpoint", agg.endpoint, "--api", agg.http],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_diff_shows_the_regression(agg: AggregatorProcess) -> None:
    out = cli(agg, "diff", "--baseline", "-2h:-1h", "--comparison", "-1h:now", "--json")
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)["functions"]}
    assert rows["b"]["delta_share"] == pytest.approx(0.8 - 0.2)
    assert rows["a"]["baseline_share"] == pytest.approx(0.8)
    table = cli(agg, "diff", "--baseline", "-2h:-1h", "--comparison", "-1h:now")
    assert "+60.00pp" in table.stdout and "-60.00pp" in table.stdout


def test_aggregate_top_and_syscalls(agg: AggregatorProcess) -> None:
    data = json.loads(cli(agg, "aggregate", "--from", "-3h", "--json").stdout)
    assert data["total"] == 300
    assert {f["name"]: f["self"] for f in data["functions"]}["b"] == 180
    top = cli(agg, "top", "--from", "-3h")
    assert top.returncode == 0 and "60.00%" in top.stdout  # b: 180 of 300
    calls = cli(agg, "syscalls", "--from", "-3h")
    assert calls.returncode == 0 and "read" in calls.stdout and " 10 " in calls.stdout


def test_ranges_and_errors(agg: AggregatorProcess) -> None:
    assert parse_range("-2h:-1h", "--baseline", now_ns=7200 * 10**9) == (0, 3600 * 10**9)
    start, end = parse_range("2026-11-25T10:00:00Z:2026-11-25T11:00:00Z", "--b", now_ns=0)
    assert end - start == 3600 * 10**9
    with pytest.raises(UsageError):
        parse_range("-1h", "--baseline", now_ns=0)
    bad = cli(agg, "diff", "--baseline", "now:-1h")
    assert bad.returncode == 2 and "later than the start" in bad.stderr
    assert "Traceback" not in bad.stderr
