"""The real `go tool pprof` reads what we write: a constructed profile, a real agent's
`-o x.pb.gz`, and an aggregator's /api/v1/export?format=pprof, with the hot function's
share equal to what our own API reports."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import httpx
import pytest

from aggregator_proc import AggregatorProcess
from aperture.formats.pprof import from_pprof, to_pprof
from aperture.model import EventType, Frame, FrameKind, LockStat, Profile, Sample
from aperture.proto.v1 import aggregator_pb2_grpc
from aperture.wire import Identity, encode

MAIN, RUN, HOT, COLD = (Frame(n, "app", offset=0x1000 + i) for i, n in
                        enumerate(("main", "run", "hot", "cold")))  # fmt: skip
READ = Frame("vfs_read", "[kernel]", FrameKind.KERNEL, 0xFFFF_FFFF_8120_0000)
# flat% sum% cum cum% name, e.g. "  7.58s 75.00% 75.00%   7.58s 75.00%  hot"
GoPprof = Callable[..., str]
_TOP_LINE = re.compile(r"^\s*\S+\s+([\d.]+)%\s+[\d.]+%\s+\S+\s+([\d.]+)%\s+(.+?)\s*$")


@pytest.fixture(scope="module")
def go_pprof(tmp_path_factory: pytest.TempPathFactory) -> GoPprof:
    """Runs `go tool pprof` offline, with its caches in a temporary directory."""
    go = shutil.which("go")
    if go is None:
        pytest.skip("go is not installed (Debian golang-go, `make apt`): cannot run go tool pprof")
    home = tmp_path_factory.mktemp("gohome")
    env = {**os.environ, "HOME": str(home), "GOCACHE": str(home / "cache"),
           "GOPATH": str(home / "gopath"), "GOFLAGS": "-mod=mod", "GOPROXY": "off",
           "GOTOOLCHAIN": "local", "PPROF_TMPDIR": str(home / "pprof")}  # fmt: skip

    def run(*args: str) -> str:
        result = subprocess.run([go, "tool", "pprof", *args], capture_output=True, text=True,
                                env=env, timeout=60)  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout

    return run


def top_shares(output: str) -> dict[str, tuple[float, float]]:
    """{function: (flat%, cum%)} from `go tool pprof -top`."""
    shares = {}
    for line in output.splitlines():
        match = _TOP_LINE.match(line)
        if match:
            shares[match.group(3)] = (float(match.group(1)), float(match.group(2)))
    return shares


def traces(output: str) -> list[list[str]]:
    """Each trace's frames, leaf first, from `go tool pprof -traces`."""
    out: list[list[str]] = []
    for block in output.split("-----------+")[1:]:
        frames = []
        for line in block.splitlines()[1:]:
            parts = line.split()
            if parts and not parts[0].endswith(":"):  # not a label line ("comm:  app")
                frames.append(parts[-1])
        if frames:
            out.append(frames)
    return out


def test_constructed_profile_reads_with_shares_stacks_and_labels(
    go_pprof: GoPprof, tmp_path: Path
) -> None:
    profile = Profile(EventType.CPU, "samples", samples=[
        Sample((MAIN, RUN, HOT), 600, pid=42, tid=43, comm="app", thread="worker"),
        Sample((MAIN, RUN, COLD), 300, pid=42, tid=42, comm="app"),
        Sample((MAIN, READ), 100, pid=42, tid=42, comm="app"),
    ], start_ns=1_795_600_000 * 10**9, end_ns=1_795_600_010 * 10**9, frequency_hz=100)  # fmt: skip
    path = tmp_path / "cpu.pb.gz"
    path.write_bytes(to_pprof(profile))
    run = go_pprof
    top = run("-top", "-nodecount=100", str(path))
    shares = top_shares(top)
    assert shares["hot"] == (60.0, 60.0) and shares["cold"] == (30.0, 30.0)
    assert shares["vfs_read"] == (10.0, 10.0) and shares["main"][1] == 100.0
    assert "Duration: 10s" in top and "Type: cpu" in top
    assert "Total samples = 10s" in top  # 1000 samples at 100 Hz
    out = run("-traces", str(path))
    assert ["hot", "run", "main"] in traces(out)  # leaf first, as pprof prints
    assert "thread:  worker" in out and "comm:  app" in out and "pid:  42" in out
    counted = run("-top", "-sample_index=samples", str(path))
    assert re.search(r"^\s*600\s+60\.00%.*\bhot$", counted, re.M), counted


def test_python_frames_show_file_and_line_in_traces(go_pprof: GoPprof, tmp_path: Path) -> None:
    def py(name: str, line: int) -> Frame:
        return Frame(name, "/srv/app/work.py", FrameKind.PYTHON, 0, line)

    entry = Frame("Py_RunMain", "libpython3.11.so.1.0", offset=0x4000)
    profile = Profile(EventType.CPU, "samples", samples=[
        Sample((entry, py("<module>", 40), py("main", 33), py("hot_a", 12)), 600, pid=9,
               comm="python3"),
        Sample((entry, py("<module>", 40), py("main", 33), py("hot_a", 14)), 300, pid=9,
               comm="python3"),
        Sample((entry, py("<module>", 40), py("main", 34), py("hot_b", 20)), 100, pid=9,
               comm="python3"),
    ], start_ns=1_795_600_000 * 10**9, end_ns=1_795_600_010 * 10**9, frequency_hz=100)  # fmt: skip
    path = tmp_path / "python.pb.gz"
    path.write_bytes(to_pprof(profile))
    out = go_pprof("-traces", "-lines", str(path))
    assert "hot_a /srv/app/work.py:12" in out and "hot_a /srv/app/work.py:14" in out
    assert "main /srv/app/work.py:33" in out
    # pprof drops a name that is all <...> (it trims C++ template arguments): CPython's
    # "<module>" shows as its file:line alone, and as <unknown> without -lines.
    assert re.search(r"^\s+/srv/app/work.py:40$", out, re.M), out
    plain = go_pprof("-traces", str(path))  # by function: the line is not shown
    assert ["hot_a", "main", "<unknown>", "Py_RunMain"] in traces(plain)
    assert top_shares(go_pprof("-top", str(path)))["hot_a"] == (90.0, 90.0)
    listing = go_pprof("-top", "-lines", str(path))
    assert "hot_a /srv/app/work.py:12" in listing and "hot_a /srv/app/work.py:14" in listing


def test_lock_profile_reads_as_contentions_and_delay(go_pprof: GoPprof, tmp_path: Path) -> None:
    locks = [LockStat(7, "db", 0x10, (MAIN, HOT), contentions=3, wait_ns=3_000_000),
             LockStat(7, "db", 0x20, (MAIN, COLD), contentions=1, wait_ns=1_000_000)]  # fmt: skip
    path = tmp_path / "lock.pb.gz"
    path.write_bytes(to_pprof(Profile(EventType.LOCK, "nanoseconds", locks=locks)))
    run = go_pprof
    delay = top_shares(run("-top", str(path)))
    assert delay["hot"] == (75.0, 75.0)
    counts = run("-top", "-sample_index=contentions", str(path))
    assert top_shares(counts)["hot"] == (75.0, 75.0) and "Type: contentions" in counts


def test_aggregator_export_matches_its_top(go_pprof: GoPprof, tmp_path: Path) -> None:
    agg = AggregatorProcess(tmp_path / "agg").start()
    try:
        now = time.time_ns()
        channel = grpc.insecure_channel(agg.grpc_target)
        stub = aggregator_pb2_grpc.AggregatorStub(channel)  # type: ignore[no-untyped-call]
        for seq, (hot, cold) in enumerate(((700, 250), (800, 150)), start=1):
            p = Profile(EventType.CPU, "samples", samples=[
                Sample((MAIN, RUN, HOT), hot, pid=5, comm="svc"),
                Sample((MAIN, RUN, COLD), cold, pid=5, comm="svc"),
                Sample((MAIN, READ), 50, pid=5, comm="svc"),
            ], start_ns=now - (4 - seq) * 10**10, end_ns=now - (3 - seq) * 10**10,
                frequency_hz=99)  # fmt: skip
            md = [("authorization", "Bearer test-token")]
            assert stub.Push(encode([p], Identity("a1", "h1"), seq), metadata=md).accepted
        channel.close()
        params = {"from": "-1h", "type": "cpu"}
        top = httpx.get(f"{agg.http}/api/v1/top", params=params, headers=agg.headers()).json()
        ours = {f["name"]: f for f in top["functions"]}
        response = httpx.get(f"{agg.http}/api/v1/export", params={**params, "format": "pprof"},
                             headers=agg.headers())  # fmt: skip
        assert response.status_code == 200
        assert "aperture-cpu.pb.gz" in response.headers["content-disposition"]
        path = tmp_path / "export.pb.gz"
        path.write_bytes(response.content)
        theirs = top_shares(go_pprof("-top", str(path)))
        for name in ("hot", "cold", "vfs_read"):
            assert theirs[name][0] == pytest.approx(ours[name]["self_pct"], abs=0.006)
            assert theirs[name][1] == pytest.approx(ours[name]["total_pct"], abs=0.006)
        assert max(theirs, key=lambda n: theirs[n][0]) == top["functions"][0]["name"] == "hot"
        bad = httpx.get(f"{agg.http}/api/v1/export", params={"format": "pprof",
                        "type": "syscall"}, headers=agg.headers())  # fmt: skip
        assert bad.status_code == 400 and "syscall" in bad.json()["detail"]
    finally:
        agg.stop()


def as_pprof(pct: float) -> float:
    """A share as `go tool pprof -top` prints it: 99.95 % to 100.05 % read "100%" (one
    interrupt's kernel leaf in 2,000 samples leaves spin 99.95 % of the self time)."""
    return 100.0 if 99.95 <= pct <= 100.05 else pct


@pytest.mark.usefixtures("bpf")
def test_real_agent_pprof_and_aggregator_export_agree(
    go_pprof: GoPprof, workloads: Path, tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    """cpu_ratio burns hot_a:hot_b 3:1; pprof must see that in the agent's file and in the
    aggregator's export, and the export must say what /api/v1/top says."""
    agg = AggregatorProcess(tmp_path / "agg").start()
    try:
        work = subprocess.Popen([str(workloads / "cpu_ratio"), "60"])
        spawn.append(work)
        local = tmp_path / "agent.pb.gz"
        result = subprocess.run(
            [sys.executable, "-m", "aperture.agent.cli", "--pid", str(work.pid), "-F", "499",
             "--duration", "4s", "--push-interval", "2s", "-q", "-o", str(local),
             "--aggregator", agg.endpoint, "--token", "test-token", "--agent-id", "pprof-e2e"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        run = go_pprof
        agent_top = top_shares(run("-top", "-nodecount=200", str(local)))
        a, b = agent_top["hot_a"][1], agent_top["hot_b"][1]
        assert 0.70 <= a / (a + b) <= 0.80, f"hot_a {a}% vs hot_b {b}% in the agent's pprof"
        assert agent_top["spin"][0] > 90.0  # the leaf of both
        chains = traces(run("-traces", str(local)))
        assert any(t[:4] == ["spin", "hot_a", "run_cycle", "main"] for t in chains)
        [ours_local] = from_pprof(local.read_bytes())
        assert {s.pid for s in ours_local.profile.samples} == {work.pid}

        # every batch the agent pushed is stored before the two questions, so both see all
        agg.wait_stored()
        params = {"from": "-1h", "agent": "pprof-e2e", "pid": str(work.pid)}
        top = httpx.get(f"{agg.http}/api/v1/top", params={**params, "limit": 1000},
                        headers=agg.headers()).json()  # fmt: skip
        ours = {f["name"]: f for f in top["functions"]}
        exported = tmp_path / "export.pb.gz"
        exported.write_bytes(httpx.get(f"{agg.http}/api/v1/export",
                                       params={**params, "format": "pprof"},
                                       headers=agg.headers()).content)  # fmt: skip
        theirs = top_shares(run("-top", "-nodecount=200", str(exported)))
        for name in ("hot_a", "hot_b", "spin"):
            assert theirs[name][1] == pytest.approx(as_pprof(ours[name]["total_pct"]), abs=0.006)
        assert theirs["spin"][0] == pytest.approx(as_pprof(ours["spin"]["self_pct"]), abs=0.006)
        api_share = ours["hot_a"]["total_pct"]
        print(f"\nhot_a share: agent file {a:.2f}% (pprof), aggregator export "
              f"{theirs['hot_a'][1]:.2f}% (pprof) vs /api/v1/top {api_share:.2f}%")  # fmt: skip
    finally:
        agg.stop()
