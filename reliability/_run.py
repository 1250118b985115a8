"""What the load, soak and fault runs share: result files, process sampling, real agents.

Every run writes one ``results/<name>.json`` in the schema of ``README.md``;
``tools/gen_reliability_doc.py`` renders them. Processes are real: the
aggregator is ``tests/aggregator_proc.AggregatorProcess``, the agent is
``aperture-agent`` with real BPF, simulated agents come from ``bench/ingest.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "reliability" / "results"
for _path in (ROOT / "tests", ROOT / "bench"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import grpc  # noqa: E402

from _common import build_c, cpu_seconds  # noqa: E402
from aggregator_proc import AggregatorProcess  # noqa: E402
from aperture.proto.v1 import aggregator_pb2 as apb  # noqa: E402
from aperture.proto.v1 import aggregator_pb2_grpc  # noqa: E402

__all__ = ["AggregatorProcess", "build_c", "cpu_seconds"]


def log(text: str) -> None:
    """Progress on stderr with the wall-clock time."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def host_info() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "load_at_start": load_average(), "kernel": os.uname().release}


def rss_mb(pid: int) -> float:
    """VmRSS of a live process in MiB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@dataclass
class Result:
    """One run's result file (README.md schema); ``save`` stamps duration and load."""

    kind: str
    name: str
    title: str
    tried: str
    started: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    host: dict[str, Any] = field(default_factory=host_info)
    held: bool = False
    lost: str = "not measured"
    recovery_s: float | None = None
    metrics: dict[str, float | int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    _t0: float = field(default_factory=time.monotonic)

    def save(self) -> Path:
        self.host["load_at_end"] = load_average()
        doc = {
            "kind": self.kind,
            "name": self.name,
            "title": self.title,
            "held": self.held,
            "tried": self.tried,
            "lost": self.lost,
            "recovery_s": None if self.recovery_s is None else round(self.recovery_s, 2),
            "metrics": {k: round(v, 3) if isinstance(v, float) else v
                        for k, v in self.metrics.items()},
            "notes": " ".join(self.notes),
            "started": self.started,
            "duration_s": round(time.monotonic() - self._t0, 1),
            "host": self.host,
        }  # fmt: skip
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{self.name}.json"
        path.write_text(json.dumps(doc, indent=2) + "\n")
        log(f"wrote {path.relative_to(ROOT)}: held={self.held}, lost={self.lost}")
        return path


class Sampler:
    """Samples RSS (MiB) and CPU seconds of some processes every ``period_s`` in a thread."""

    def __init__(self, pids: dict[str, int], period_s: float = 5.0, extra: Any = None) -> None:
        self.pids = pids
        self.period_s = period_s
        self.extra = extra  # () -> dict of more numbers per sample (e.g. /metrics)
        self.rows: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = time.monotonic()

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            row = {"t": time.monotonic() - self._t0, "load1": os.getloadavg()[0]}
            for name, pid in self.pids.items():
                row[f"{name}_rss_mb"] = rss_mb(pid)
                with contextlib.suppress(OSError):
                    row[f"{name}_cpu_s"] = cpu_seconds(pid)
            if self.extra is not None:
                # a sample missed while a process restarts or is stopped
                with contextlib.suppress(Exception):
                    row.update(self.extra())
            self.rows.append(row)
            self._stop.wait(self.period_s)

    def stop(self) -> list[dict[str, float]]:
        self._stop.set()
        self._thread.join()
        return self.rows

    def series(self, key: str, after_s: float = 0.0) -> list[float]:
        return [r[key] for r in self.rows if key in r and r["t"] >= after_s]


def growth_pct(values: list[float]) -> float:
    """Growth from the first to the max of the last quarter of a series, in percent."""
    if len(values) < 4 or values[0] <= 0:
        return float("nan")
    return (max(values[-max(1, len(values) // 4) :]) / values[0] - 1) * 100


def batches(agg: AggregatorProcess, agent_id: str) -> list[apb.BatchSummary]:
    """Every batch of one agent the aggregator holds (buffer and store), via gRPC Query."""
    channel = grpc.insecure_channel(
        agg.grpc_target, options=[("grpc.max_receive_message_length", 256 << 20)]
    )
    stub = aggregator_pb2_grpc.AggregatorStub(channel)  # type: ignore[no-untyped-call]
    md = [("authorization", f"Bearer {agg.token}")] if agg.token else []
    try:
        response = stub.Query(
            apb.QueryRequest(agent_id=agent_id, limit=10_000), metadata=md, timeout=120
        )
    finally:
        channel.close()
    return list(response.batches)


def sequence_gaps(seqs: list[int]) -> tuple[int, int]:
    """(missing, duplicated) sequences between the first and last one seen."""
    if not seqs:
        return 0, 0
    unique = set(seqs)
    return (max(unique) - min(unique) + 1 - len(unique)), len(seqs) - len(unique)


def workloads() -> dict[str, Path]:
    """The churn and syscall-storm workloads of tests/workloads, built with frame pointers."""
    src = ROOT / "tests" / "workloads"
    names = ("churn", "syscall_heavy", "cpu_ratio")
    return {name: build_c(src / f"{name}.c", "-pthread") for name in names}


def agent_cmd(agg: AggregatorProcess, agent_id: str, *args: str) -> list[str]:
    """A real ``aperture-agent`` pushing to ``agg`` (needs root for BPF)."""
    return [sys.executable, "-m", "aperture.agent.cli", "--aggregator", agg.endpoint,
            "--agent-id", agent_id, *args]  # fmt: skip


def agent_env(agg: AggregatorProcess) -> dict[str, str]:
    env = dict(os.environ)
    if agg.token:
        env["APERTURE_AUTH_TOKEN"] = agg.token
    return env


def start_agent(
    agg: AggregatorProcess,
    agent_id: str,
    log_path: Path,
    *args: str,
    prefix: tuple[str, ...] = (),
    endpoint: str | None = None,
) -> subprocess.Popen[bytes]:
    """A real agent; ``prefix`` runs it under e.g. ``ip netns exec NS``."""
    cmd = agent_cmd(agg, agent_id, *args)
    if endpoint is not None:
        cmd[cmd.index(agg.endpoint)] = endpoint
    out = log_path.open("ab")
    return subprocess.Popen([*prefix, *cmd], stdout=out, stderr=out, env=agent_env(agg))


def store_contents(store_dir: Path) -> dict[str, Any]:
    """What a stopped aggregator's embedded store holds (see ``_store_probe.py``)."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "reliability" / "_store_probe.py"), str(store_dir)],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc
