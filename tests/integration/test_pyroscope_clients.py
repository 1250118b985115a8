"""Real Pyroscope SDKs (PyPI `pyroscope-io`) push to our aggregator as if it were Pyroscope.

The current 1.x pushes Connect `POST /push.v1.PusherService/Push` (gzip, basic auth);
the legacy 0.8.x posts `POST /ingest?name=pyapp&format=pprof` (gzip, bearer, tags as
pprof sample labels). Each profiles tests/workloads/pyroscope_app.py, whose hot_loop
burns 3/4 of its CPU: that share must come out of /api/v1/top, filtered by the app's tags.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aggregator_proc import AggregatorProcess

APP = Path(__file__).parent.parent / "workloads" / "pyroscope_app.py"
TAGS = {"label.team": "perf", "label.region": "eu"}


def client_python(tmp_path_factory: pytest.TempPathFactory, requirement: str) -> str:
    """A Python with ``requirement`` installed in a venv of its own, or a visible skip."""
    venv = tmp_path_factory.mktemp("pyroscope-venv")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True,
                       capture_output=True, timeout=120)  # fmt: skip
        pip = subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
             requirement], capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"cannot make a venv for {requirement}: {exc}")
    if pip.returncode != 0:
        last = (pip.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"{requirement} cannot be installed here (no PyPI access?): {last}")
    return str(venv / "bin" / "python")


def has_pyroscope_1x(python: str) -> bool:
    probe = (
        "import pyroscope, sys; sys.exit(0 if hasattr(pyroscope, 'ProfilerImplementation') else 1)"
    )
    return subprocess.run([python, "-c", probe], capture_output=True, timeout=60).returncode == 0


@pytest.fixture(scope="module")
def agg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AggregatorProcess]:
    proc = AggregatorProcess(tmp_path_factory.mktemp("pyroscope") / "agg").start()
    yield proc
    proc.stop()


def run_app(python: str, agg: AggregatorProcess, seconds: float, name: str) -> None:
    result = subprocess.run([python, str(APP), agg.http, str(seconds), agg.token or "", name],
                            capture_output=True, text=True, timeout=seconds + 60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    # py-spy reads the interpreter's memory: where that is forbidden nothing is pushed
    stored = top(agg, agent=f"pyroscope:{name}")["total"]
    if not stored and "permission" in result.stderr.lower():
        pytest.skip(f"the client could not read its own stacks here: {result.stderr[-300:]}")


def top(agg: AggregatorProcess, **params: str) -> dict[str, Any]:
    response = httpx.get(f"{agg.http}/api/v1/top", headers=agg.headers(), timeout=10,
                         params={"from": "-1h", "limit": "50", **TAGS, **params})  # fmt: skip
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def check_hot_loop(agg: AggregatorProcess, service: str, client: str) -> float:
    agent_id = f"pyroscope:{service}"
    data = top(agg, agent=agent_id, **{"label.service_name": service})
    functions = {f["name"]: f for f in data["functions"]}
    assert "hot_loop" in functions, f"{client}: no hot_loop in {list(functions)}"
    assert data["functions"][0]["name"] == "hot_loop"
    hot, warm = functions["hot_loop"]["self"], functions.get("warm_loop", {"self": 0})["self"]
    assert hot + warm >= 50, f"{client}: only {hot + warm} samples"
    share = hot / (hot + warm)
    assert 0.6 <= share <= 0.9, f"{client}: hot_loop share {share:.3f}, expected about 0.75"
    # the tags are the batches' labels: another value matches nothing
    assert top(agg, agent=agent_id, **{"label.region": "us"})["total"] == 0
    tree = httpx.get(f"{agg.http}/api/v1/flamegraph", headers=agg.headers(),
                     params={"from": "-1h", "agent": agent_id, **TAGS}).json()  # fmt: skip
    assert service in tree["names"]  # the service is the process root
    of_all = functions["hot_loop"]["self_pct"]
    print(f"\n{client}: hot_loop {100 * share:.1f}% of hot+warm samples "
          f"({of_all:.1f}% of all {data['total']}) per /api/v1/top")  # fmt: skip
    return share


def test_pyroscope_io_1x_pushes_connect(
    agg: AggregatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    python = sys.executable
    if not has_pyroscope_1x(python):
        python = client_python(tmp_path_factory, "pyroscope-io>=1,<2")
    before = agg.metric('aperture_pushes_total{status="accepted"}')
    run_app(python, agg, 6, "pyapp1")
    assert agg.metric('aperture_pushes_total{status="accepted"}') >= before + 2
    assert agg.metric('aperture_pushes_total{status="unauthenticated"}') == 0
    check_hot_loop(agg, "pyapp1", "pyroscope-io 1.x")
    agents = {a["agent_id"]: a for a in httpx.get(f"{agg.http}/api/v1/agents",
                                                  headers=agg.headers()).json()}  # fmt: skip
    labels = agents["pyroscope:pyapp1"]["labels"]
    assert labels["team"] == "perf" and labels["process.runtime.name"] == "cpython"


def test_pyroscope_io_08_posts_legacy_ingest(
    agg: AggregatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    python = client_python(tmp_path_factory, "pyroscope-io==0.8.*")
    start = time.time_ns()
    before = agg.metric('aperture_pushes_total{status="accepted"}')
    # 0.8 uploads every 10 s and once more at shutdown
    run_app(python, agg, 6, "pyapp08")
    assert agg.metric('aperture_pushes_total{status="accepted"}') >= before + 1
    check_hot_loop(agg, "pyapp08", "pyroscope-io 0.8")
    # its window ends when it was received at the latest, so "to=now" queries see it
    assert top(agg, agent="pyroscope:pyapp08", **{"from": str(start)})["total"] > 0
