"""The aggregator's start on a data dir it cannot use, or ports someone else holds.

Each refusal is one sentence and a non-zero exit, and leaves the journal as it was.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc
import httpx
import pytest

from aggregator_proc import AggregatorProcess, free_port
from aperture.model import EventType, Frame, Profile, Sample
from aperture.proto.v1 import aggregator_pb2 as apb
from aperture.proto.v1 import aggregator_pb2_grpc
from aperture.wire import Identity, encode
from one_sentence import assert_one_sentence

PROG = "aperture-aggregator"


def can_override_permissions() -> bool:
    """Whether this process writes through permission bits (root with CAP_DAC_OVERRIDE)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) & (1 << 1))
    return os.geteuid() == 0


def without_permission_override() -> list[str]:
    """A command prefix under which permission bits hold, even for root."""
    if not can_override_permissions():
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root and setpriv (util-linux) is missing")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def run_aggregator(
    data_dir: Path, *args: str, prefix: Sequence[str] = (), timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APERTURE_")}
    return subprocess.run(
        [*prefix, sys.executable, "-m", "aperture.aggregator.cli", "--no-storage",
         "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{free_port()}",
         "--admin-listen", f"127.0.0.1:{free_port()}", *args],
        capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip


def push(agg: AggregatorProcess, sequence: int) -> None:
    now = time.time_ns()
    samples = [Sample((Frame("main", "app"),), 5, pid=1)]
    profile = Profile(
        EventType.CPU, "samples", start_ns=now - 10**9, end_ns=now, frequency_hz=99, samples=samples
    )
    with grpc.insecure_channel(agg.grpc_target) as channel:
        stub = aggregator_pb2_grpc.AggregatorStub(channel)  # type: ignore[no-untyped-call]
        batch = encode([profile], Identity("a1", "h1", {}), sequence)
        assert stub.Push(batch, metadata=[("authorization", "Bearer test-token")]).accepted


def sequences(agg: AggregatorProcess) -> list[int]:
    with grpc.insecure_channel(agg.grpc_target) as channel:
        stub = aggregator_pb2_grpc.AggregatorStub(channel)  # type: ignore[no-untyped-call]
        md = [("authorization", "Bearer test-token")]
        return sorted(
            b.sequence for b in stub.Query(apb.QueryRequest(limit=100), metadata=md).batches
        )


@pytest.fixture
def journaled(tmp_path: Path) -> Iterator[Path]:
    """A data dir whose journal holds batches 1 and 2 (segments of a stopped aggregator)."""
    data = tmp_path / "data"
    agg = AggregatorProcess(data, "--no-storage").start()
    push(agg, 1)
    push(agg, 2)
    assert agg.stop() == 0, agg.log.read_text()
    yield data


def segments(data: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((data / "journal").iterdir())}


# 10. A data dir that exists but is not writable, or a journal directory in it.


@pytest.mark.parametrize("unwritable", ["data", "data/journal"])
def test_unwritable_data_dir_is_one_sentence(tmp_path: Path, unwritable: str) -> None:
    prefix = without_permission_override()
    (tmp_path / "data" / "journal").mkdir(parents=True)
    (tmp_path / unwritable).chmod(0o555)
    try:
        result = run_aggregator(tmp_path / "data", prefix=prefix)
    finally:
        (tmp_path / unwritable).chmod(0o755)
    assert_one_sentence(
        result,
        PROG,
        f"cannot write to {tmp_path / unwritable} (Permission denied): give a --data-dir this "
        "user can write to.",
    )


def test_unreadable_journal_segment_stops_the_start_and_stays(journaled: Path) -> None:
    prefix = without_permission_override()
    before = segments(journaled)
    segment = journaled / "journal" / next(name for name in before if name.endswith(".log"))
    segment.chmod(0)
    try:
        result = run_aggregator(journaled, prefix=prefix)
    finally:
        segment.chmod(0o600)
    assert_one_sentence(
        result, PROG, f"cannot read the journal segment {segment} (Permission denied)"
    )
    assert segments(journaled) == before


# 10. A stray file named like a segment: ignored with a warning, never read or deleted.


def test_stray_journal_file_is_ignored_and_the_segments_replayed(journaled: Path) -> None:
    stray = journaled / "journal" / "journal-abc.log"
    stray.write_bytes(b"someone's notes")
    agg = AggregatorProcess(journaled, "--no-storage").start()
    try:
        assert sequences(agg) == [1, 2]  # the real segments were replayed
        push(agg, 3)
    finally:
        assert agg.stop() == 0, agg.log.read_text()
    log = agg.log.read_text()
    assert f"ignoring {stray}: not a journal segment (journal-NUMBER.log)" in log
    assert "Traceback" not in log
    assert stray.read_bytes() == b"someone's notes"
    again = AggregatorProcess(journaled, "--no-storage").start()
    try:
        assert sequences(again) == [1, 2, 3]
    finally:
        assert again.stop() == 0


# 7. alerts.json holds webhook URLs: 0600 like the journal, whatever the umask.


def test_alerts_json_is_private(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        agg = AggregatorProcess(tmp_path / "data", "--no-storage").start()
    finally:
        os.umask(old_umask)
    try:
        rule = {"name": "hot", "expression": {"metric": "buffer_utilization"}, "operator": ">",
                "threshold": 1, "webhook": "https://hooks.example.com/T0/secret"}  # fmt: skip
        r = httpx.post(f"{agg.http}/api/v1/alerts/rules", json=rule, headers=agg.headers())
        assert r.status_code == 201, r.text
    finally:
        assert agg.stop() == 0, agg.log.read_text()
    path = tmp_path / "data" / "alerts.json"
    assert "hooks.example.com" in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_alerts_json_of_an_older_version_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "data" / "alerts.json"
    path.parent.mkdir()
    path.write_text('{"rules": {}, "states": {}, "history": []}')
    path.chmod(0o644)
    agg = AggregatorProcess(tmp_path / "data", "--no-storage").start()
    assert agg.stop() == 0, agg.log.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# 12. Ports another process holds: refused, never shared; /readyz names the instance.


def test_grpc_port_of_another_reuseport_listener_is_refused(tmp_path: Path) -> None:
    # gRPC sets SO_REUSEPORT by default, so it used to share the port with such a
    # listener (another aggregator) and split the agents' pushes between the two.
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = run_aggregator(tmp_path / "data", "--listen", f"127.0.0.1:{port}", timeout=30)
    assert_one_sentence(
        result,
        PROG,
        f"cannot listen for gRPC on 127.0.0.1:{port} (Address already in use): choose another "
        "address with --listen.",
    )


def test_readyz_names_the_instance(tmp_path: Path) -> None:
    named = AggregatorProcess(tmp_path / "a", "--no-storage", "--instance-id", "run-42").start()
    unnamed = AggregatorProcess(tmp_path / "b", "--no-storage").start()
    try:
        ready = named.get("/readyz")
        assert ready.headers["x-aperture-instance"] == "run-42"
        assert ready.json() == {"status": "ready", "instance": "run-42"}
        other = unnamed.get("/readyz").headers["x-aperture-instance"]
        assert len(other) == 16 and other != "run-42"
    finally:
        assert named.stop() == 0
        assert unnamed.stop() == 0
