"""A CPU-share alert on data from a real agent run: real BPF samples of a known
workload, pushed to a real aggregator with the embedded store, evaluated on the
aggregator's own schedule, notified to a real webhook."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from aggregator_proc import AggregatorProcess
from webhook_receiver import Receiver

pytestmark = pytest.mark.usefixtures("bpf")


def test_cpu_share_rule_fires_on_a_real_agent_and_resolves_when_the_work_stops(
    workloads: Path, tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    receiver = Receiver()
    agg = AggregatorProcess(tmp_path / "agg", "--alert-interval", "1s").start()
    try:
        # cpu_ratio spends 3/4 of its time under hot_a (test_cpu_profiler.py checks that)
        rule = {"name": "hot_a hot", "operator": ">", "threshold": 50, "for": "2s",
                "webhook": receiver.url,
                "expression": {"metric": "cpu_share",
                               "params": {"function": "hot_a", "mode": "total",
                                          "comm": "cpu_ratio", "window": "4s"}}}  # fmt: skip
        r = httpx.post(f"{agg.http}/api/v1/alerts/rules", json=rule, headers=agg.headers())
        assert r.status_code == 201, r.text
        work = subprocess.Popen([str(workloads / "cpu_ratio"), "10"])
        spawn.append(work)
        agent = subprocess.Popen(
            [sys.executable, "-m", "aperture.agent.cli", "--aggregator", agg.endpoint,
             "--token", "test-token", "--agent-id", "alert-agent", "-q", "--pid", str(work.pid),
             "-F", "199", "--push-interval", "1s", "--duration", "14s"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        started = time.monotonic()
        # pending first, firing once the share held for 2 s of evaluations
        receiver.wait_for("hot_a hot", ["firing"], timeout=30)
        fired_after = time.monotonic() - started
        assert work.poll() is None, "the rule fired only after the workload had finished"
        firing = receiver.bodies[0]
        assert 60 <= firing["value"] <= 90, firing  # about 75%: hot_a's share of the process
        history = httpx.get(f"{agg.http}/api/v1/alerts/history", headers=agg.headers()).json()
        states = [h["state"] for h in history[::-1] if h["kind"] == "state"]
        assert states[:2] == ["pending", "firing"]
        pending, fired = (h["ts"] for h in history[::-1] if h["kind"] == "state")
        assert fired - pending >= 2  # the rule's `for`
        # the workload exits after 10 s; 4 s later its samples have left the window
        work.wait(timeout=30)
        receiver.wait_for("hot_a hot", ["firing", "resolved"], timeout=30)
        agent.wait(timeout=60)
        assert agent.returncode == 0, agent.stderr.read() if agent.stderr else ""
        print(f"fired {fired_after:.1f} s after the workload started, at {firing['value']:.1f}%")
    finally:
        receiver.server.shutdown()
        assert agg.stop() == 0
