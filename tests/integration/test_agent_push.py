"""A real agent (real BPF) pushing to a real aggregator over loopback."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

from aggregator_proc import AggregatorProcess
from aperture.formats.json_format import load_json
from aperture.proto.v1 import aggregator_pb2 as apb
from aperture.proto.v1 import aggregator_pb2_grpc

pytestmark = pytest.mark.usefixtures("bpf")


def agent(agg: AggregatorProcess, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "aperture.agent.cli", "--aggregator", agg.endpoint,
         "--token", "test-token", "--agent-id", "e2e-agent", "-q", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def batches(agg: AggregatorProcess) -> list[apb.BatchSummary]:
    channel = grpc.insecure_channel(agg.grpc_target)
    stub = aggregator_pb2_grpc.AggregatorStub(channel)  # type: ignore[no-untyped-call]
    md = [("authorization", "Bearer test-token")]
    response = stub.Query(apb.QueryRequest(agent_id="e2e-agent", limit=10_000), metadata=md)
    channel.close()
    return list(response.batches)


def test_hot_function_arrives_with_the_counts_the_agent_recorded(
    workloads: Path, tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    agg = AggregatorProcess(tmp_path / "agg").start()
    try:
        work = subprocess.Popen([str(workloads / "cpu_ratio"), "60"])
        spawn.append(work)
        local = tmp_path / "local.json"
        proc = agent(agg, "--pid", str(work.pid), "-F", "499", "--push-interval", "1s",
                     "--duration", "4s", "-o", str(local))  # fmt: skip
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        recorded = load_json(local.read_text())
        agg.wait_stored()
        channel = grpc.insecure_channel(agg.grpc_target)
        stub = aggregator_pb2_grpc.AggregatorStub(channel)  # type: ignore[no-untyped-call]
        md = [("authorization", "Bearer test-token")]
        summed = stub.Aggregate(apb.AggregateRequest(event_type="cpu", pid=work.pid,
                                                     limit=50), metadata=md)  # fmt: skip
        channel.close()
        assert summed.total == recorded.total > 200  # every sample, exactly (fewer if loaded)
        totals = {f.name: f.total for f in summed.functions}
        share = totals["hot_a"] / (totals["hot_a"] + totals["hot_b"])
        assert 0.70 <= share <= 0.80, share
    finally:
        assert agg.stop() == 0


def test_aggregator_killed_mid_stream_gets_every_batch_exactly_once(
    workloads: Path, tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    agg = AggregatorProcess(tmp_path / "agg").start()
    work = subprocess.Popen([str(workloads / "cpu_ratio"), "60"])
    spawn.append(work)
    local = tmp_path / "local.json"
    proc = agent(agg, "--pid", str(work.pid), "-F", "199", "--push-interval", "1s",
                 "--duration", "9s", "--spool-dir", str(tmp_path / "spool"),
                 "--flush-timeout", "30s", "-o", str(local))  # fmt: skip

    def outage() -> None:
        time.sleep(3)
        agg.kill()  # kill -9 while the agent pushes every second
        time.sleep(2.5)
        agg.start()

    chaos = threading.Thread(target=outage)
    chaos.start()
    _, err = proc.communicate(timeout=180)
    chaos.join()
    try:
        assert proc.returncode == 0, err
        got = batches(agg)
        seqs = sorted(b.sequence for b in got)
        assert len(seqs) == len(set(seqs)), "a batch was stored twice"
        assert seqs == list(range(seqs[0], seqs[-1] + 1)), "a batch is missing"
        assert len(seqs) >= 9
        # every sample the agent recorded locally reached the aggregator once
        assert sum(b.cpu_samples for b in got) == load_json(local.read_text()).total
    finally:
        assert agg.stop() == 0


def test_off_cpu_time_arrives_as_its_own_type_and_is_answered(
    workloads: Path, tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    """A new stack type end to end: agent, wire (a StackSamples set), store, REST answers."""
    import httpx

    agg = AggregatorProcess(tmp_path / "agg").start()
    try:
        work = subprocess.Popen([str(workloads / "offcpu_waits"), "sleep", "60"],
                                stdout=subprocess.DEVNULL)  # fmt: skip
        spawn.append(work)
        local = tmp_path / "local.json"
        proc = agent(agg, "--mode", "offcpu", "--pid", str(work.pid), "--push-interval", "1s",
                     "--duration", "4s", "-o", str(local))  # fmt: skip
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        recorded = load_json(local.read_text())
        assert recorded.event_type == "offcpu" and recorded.unit == "nanoseconds"
        agg.wait_stored()
        params = {"type": "offcpu", "pid": str(work.pid), "from": "-10m"}
        fg = httpx.get(f"{agg.http}/api/v1/flamegraph", params=params, headers=agg.headers())
        assert fg.status_code == 200, fg.text
        body = fg.json()
        assert (body["type"], body["unit"], body["total"]) == (
            "offcpu", "nanoseconds", recorded.total)  # fmt: skip
        assert 2.5e9 < recorded.total < 4.5e9  # ~4 s of one sleeping thread
        names = {body["names"][i] for i in body["nodes"]["name"]}
        assert {"sleep_a", "sleep_b", "[off-CPU: sleeping]"} <= names
        pprof = httpx.get(f"{agg.http}/api/v1/export", params={**params, "format": "pprof"},
                          headers=agg.headers())  # fmt: skip
        assert pprof.status_code == 200
        from aperture.formats.pprof import from_pprof

        back = from_pprof(pprof.content)
        assert [i.profile.event_type for i in back] == ["offcpu"]
        assert sum(s.value for s in back[0].profile.samples) == recorded.total
    finally:
        assert agg.stop() == 0


def test_lock_kinds_holders_and_wakers_arrive_and_are_answered(
    workloads: Path, tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    """Locks end to end: agent, wire (roles, kinds), store, /locks and the role flamegraphs."""
    import httpx

    agg = AggregatorProcess(tmp_path / "agg").start()
    try:
        go = tmp_path / "go"
        work = subprocess.Popen([str(workloads / "mutex_contend"), str(go), "4", "60", "2000"],
                                stdout=subprocess.PIPE)  # fmt: skip
        spawn.append(work)
        assert work.stdout is not None
        address = int(work.stdout.readline(), 16)
        local = tmp_path / "local.json"
        proc = agent(agg, "--mode", "lock", "--pid", str(work.pid), "--push-interval", "1s",
                     "--duration", "5s", "-o", str(local))  # fmt: skip
        time.sleep(2)  # attached
        go.touch()
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        recorded = load_json(local.read_text())
        agg.wait_stored()
        params = {"pid": str(work.pid), "from": "-10m"}
        answer = httpx.get(f"{agg.http}/api/v1/locks", params=params, headers=agg.headers())
        assert answer.status_code == 200, answer.text
        locks = {lk["address"]: lk for lk in answer.json()["locks"]}
        mutex = locks[f"0x{address:x}"]
        assert (mutex["kind"], mutex["lock_class"]) == ("mutex", "contention")
        waits = [lk for lk in recorded.locks if lk.role == "wait" and lk.address == address]
        assert mutex["wait_ns"] == sum(lk.wait_ns for lk in waits)
        assert mutex["holds"] > 0 and 1.6e6 < mutex["hold_p50_ns"] < 2.6e6, mutex
        assert "hold_the_lock" in {f["name"] for f in mutex["top_holder"]}
        for role, wanted in (("wait", "[contention: mutex]"), ("hold", "hold_the_lock"),
                             ("wake", "hold_the_lock")):  # fmt: skip
            fg = httpx.get(f"{agg.http}/api/v1/flamegraph", headers=agg.headers(),
                           params={**params, "type": "lock", "address": hex(address),
                                   "role": role})  # fmt: skip
            assert fg.status_code == 200, fg.text
            body = fg.json()
            assert wanted in {body["names"][i] for i in body["nodes"]["name"]}, role
        bad = httpx.get(f"{agg.http}/api/v1/flamegraph", headers=agg.headers(),
                        params={**params, "type": "lock", "role": "owner"})  # fmt: skip
        assert bad.status_code == 400 and "not a lock role" in bad.text
    finally:
        assert agg.stop() == 0
