"""The agent's push path against a real in-process gRPC aggregator, on injected time.

The Pusher's clock and sleep are fakes: a retry "waits" by advancing the fake
clock, so backoff, retry-after and flush deadlines are checked exactly and the
tests take milliseconds. Only gRPC itself runs for real.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from aperture.agent.identity import parse_labels
from aperture.agent.push import (
    QUEUE_FULL,
    REJECTED,
    SPOOL_FULL,
    TOO_LARGE,
    Backoff,
    Pusher,
    format_push_summary,
)
from aperture.agent.push_options import Endpoint, check_token, parse_endpoint
from aperture.agent.recorder import record
from aperture.agent.spool import SUFFIX, Spool, SpoolBusy
from aperture.errors import UsageError, UserError
from aperture.model import EventType, Frame, Profile, Sample
from aperture.proto.v1 import aggregator_pb2 as apb
from aperture.proto.v1 import aggregator_pb2_grpc as apb_grpc
from aperture.wire import Identity, decode

TOKEN = "s3cret-token"
IDENT = Identity("agent-1", "host-a", {"kernel": "6.1.0"}, "0.1.0")
FIRST = 1_000_000


def profile(value: int = 1) -> Profile:
    return Profile(
        EventType.CPU,
        "samples",
        samples=[Sample((Frame("main", "app"), Frame("hot", "app")), value, pid=7, comm="app")],
        start_ns=1_000,
        end_ns=2_000,
        frequency_hz=99,
    )


# -- a real aggregator, scripted ------------------------------------------------


@dataclass
class Reply:
    """What the fake aggregator does with one Push: fail with a status, or answer."""

    code: grpc.StatusCode | None = None
    details: str = ""
    retry_after_ms: int = 0
    accepted: bool = True
    trailing: tuple[tuple[str, str], ...] = ()


@dataclass
class FakeAggregator(apb_grpc.AggregatorServicer):  # type: ignore[misc]
    token: str | None = TOKEN
    script: list[Reply] = field(default_factory=list)  # consumed one per Push
    received: list[int] = field(default_factory=list)  # sequences stored, in order
    batches: list[Any] = field(default_factory=list)
    pushes: int = 0
    got_one: threading.Event = field(default_factory=threading.Event)

    def _auth(self, context: Any) -> None:
        header = dict(context.invocation_metadata()).get("authorization")
        if self.token is not None and header != f"Bearer {self.token}":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong token")

    def Push(self, request: Any, context: Any) -> apb.PushResponse:
        self._auth(context)
        self.pushes += 1
        reply = self.script.pop(0) if self.script else Reply()
        if reply.code is not None:
            context.set_trailing_metadata(reply.trailing)
            context.abort(reply.code, reply.details)
        if not reply.accepted:
            return apb.PushResponse(message="busy", retry_after_ms=reply.retry_after_ms)
        duplicate = request.sequence in self.received
        if not duplicate:
            self.received.append(request.sequence)
            self.batches.append(request)
        self.got_one.set()
        return apb.PushResponse(
            accepted=True, duplicate=duplicate, retry_after_ms=reply.retry_after_ms
        )

    def Query(self, request: Any, context: Any) -> apb.QueryResponse:
        self._auth(context)
        return apb.QueryResponse()


def serve(servicer: FakeAggregator, port: int = 0) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    apb_grpc.add_AggregatorServicer_to_server(servicer, server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    assert bound, f"cannot listen on port {port}"
    server.start()
    return server, bound


def free_port() -> int:
    """A port nothing listens on (an aggregator that is down)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
def aggregator() -> Iterator[tuple[FakeAggregator, int]]:
    servicer = FakeAggregator()
    server, port = serve(servicer)
    yield servicer, port
    server.stop(None).wait()


# -- injected time ------------------------------------------------------------------


@dataclass
class FakeTime:
    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)
    on_sleep: Callable[[float], None] | None = None

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds
        if self.on_sleep is not None:
            self.on_sleep(seconds)


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def logs() -> list[str]:
    return []


def make_pusher(
    port: int,
    fake_time: FakeTime,
    logs: list[str],
    *,
    token: str | None = TOKEN,
    **kwargs: Any,
) -> Pusher:
    kwargs.setdefault("first_sequence", FIRST)
    return Pusher(
        Endpoint(f"http://127.0.0.1:{port}", f"127.0.0.1:{port}"),
        IDENT,
        token=token,
        backoff=Backoff(0.5, 30.0, random=lambda: 1.0),  # the ceiling: exact delays
        clock=fake_time.clock,
        sleep=fake_time.sleep,
        log=logs.append,
        rpc_timeout_s=10.0,
        **kwargs,
    )


def batch_size() -> int:
    """Bytes of one serialized test batch (every test batch has the same size)."""
    from aperture.wire import encode

    return len(encode([profile()], IDENT, FIRST).SerializeToString())


# -- delivery -------------------------------------------------------------------------


def test_batches_arrive_in_order_with_token_and_identity(
    aggregator: tuple[FakeAggregator, int], fake_time: FakeTime, logs: list[str]
) -> None:
    servicer, port = aggregator
    pusher = make_pusher(port, fake_time, logs)
    assert pusher.check() is True
    pusher.start()
    sequences = [pusher.submit([profile(v)]) for v in (1, 2, 3)]
    report = pusher.flush(60)
    assert sequences == [FIRST, FIRST + 1, FIRST + 2]
    assert servicer.received == sequences
    decoded = decode(servicer.batches[0])
    assert decoded.identity == IDENT
    assert decoded.profiles[EventType.CPU].total == 1
    assert (report.stats.sent, report.spooled, report.lost, report.lost_total) == (3, 0, 0, 0)
    assert report.stats.sent_bytes == 3 * batch_size()
    assert logs == []
    assert "every batch delivered" in format_push_summary(report, "http://x")


def test_default_sequence_starts_at_the_wall_clock_in_microseconds(tmp_path: Path) -> None:
    import time

    before = time.time_ns() // 1000
    pusher = Pusher(Endpoint("http://x", "x:1"), IDENT)
    assert before <= pusher.submit([profile()]) <= time.time_ns() // 1000
    pusher.close()


def test_unavailable_is_retried_with_backoff_then_delivered_once_in_order(
    aggregator: tuple[FakeAggregator, int], fake_time: FakeTime, logs: list[str]
) -> None:
    servicer, port = aggregator
    servicer.script = [Reply(grpc.StatusCode.UNAVAILABLE, "restarting")] * 3 + [
        Reply(),
        Reply(grpc.StatusCode.DEADLINE_EXCEEDED),
        Reply(grpc.StatusCode.INTERNAL, "oops"),
    ]
    pusher = make_pusher(port, fake_time, logs)
    for v in (1, 2, 3):
        pusher.submit([profile(v)])
    report = pusher.flush(3600)
    assert servicer.received == [FIRST, FIRST + 1, FIRST + 2]
    # Doubling from 0.5 s; a delivery resets it.
    assert fake_time.sleeps == [0.5, 1.0, 2.0, 0.5, 1.0]
    assert report.stats.retries == 5
    assert report.stats.sent == 3
    assert report.lost_total == 0
    # One line when delivery starts failing, one when it works again, per episode.
    assert len(logs) == 4
    assert "UNAVAILABLE: restarting" in logs[0]
    assert "accepts batches again" in logs[1]


def test_backoff_doubles_to_the_cap_with_full_jitter() -> None:
    top = Backoff(0.5, 30.0, random=lambda: 1.0)
    assert [top.next() for _ in range(9)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    top.reset()
    assert top.next() == 0.5
    quarter = Backoff(0.5, 30.0, random=lambda: 0.25)
    assert [quarter.next() for _ in range(3)] == [0.125, 0.25, 0.5]


def test_retry_after_ms_is_honoured_before_the_next_push(
    aggregator: tuple[FakeAggregator, int], fake_time: FakeTime, logs: list[str]
) -> None:
    servicer, port = aggregator
    servicer.script = [
        Reply(retry_after_ms=1500),  # accepted, but slow down
        Reply(accepted=False, retry_after_ms=4000),  # not stored: wait, then resend
        Reply(grpc.StatusCode.RESOURCE_EXHAUSTED, "busy", trailing=(("retry-after-ms", "7000"),)),
    ]
    pusher = make_pusher(port, fake_time, logs)
    for v in (1, 2, 3):
        pusher.submit([profile(v)])
    report = pusher.flush(3600)
    assert servicer.received == [FIRST, FIRST + 1, FIRST + 2]
    # 1.5 s asked for; then 4 s (more than the 0.5 s backoff); then 7 s (> 1 s backoff).
    assert fake_time.sleeps == [1.5, 4.0, 7.0]
    assert report.stats.retries == 2


def test_duplicate_counts_as_delivered(
    aggregator: tuple[FakeAggregator, int], fake_time: FakeTime, logs: list[str]
) -> None:
    servicer, port = aggregator
    servicer.received.append(FIRST)  # the aggregator already has it
    pusher = make_pusher(port, fake_time, logs)
    pusher.submit([profile()])
    report = pusher.flush(60)
    assert (report.stats.sent, report.stats.duplicates, report.lost_total) == (1, 1, 0)
    assert "1 already there" in format_push_summary(report, "http://x")


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(grpc.StatusCode.INVALID_ARGUMENT, "malformed ProfileBatch: no agent_id"), REJECTED),
        (
            Reply(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "the batch is 99999999 bytes, over the limit of 16777216",
            ),
            TOO_LARGE,
        ),
        (
            Reply(grpc.StatusCode.RESOURCE_EXHAUSTED, "Received message larger than max (5 vs. 4)"),
            TOO_LARGE,
        ),
    ],
)
def test_refused_batch_is_dropped_counted_and_logged_once(
    aggregator: tuple[FakeAggregator, int],
    fake_time: FakeTime,
    logs: list[str],
    reply: Reply,
    reason: str,
) -> None:
    servicer, port = aggregator
    servicer.script = [Reply(), reply]
    pusher = make_pusher(port, fake_time, logs)
    for v in (1, 2, 3):
        pusher.submit([profile(v)])
    report = pusher.flush(60)
    assert servicer.received == [FIRST, FIRST + 2]
    assert report.stats.dropped == {reason: 1}
    assert report.stats.retries == 0
    assert fake_time.sleeps == []
    assert len(logs) == 1 and f"dropped batch {FIRST + 1}" in logs[0]
    assert report.lost_total == 1
    assert f"1 {reason}" in format_push_summary(report, "http://x")


# -- start-up check ----------------------------------------------------------------


def test_wrong_token_fails_the_start_up_check(
    aggregator: tuple[FakeAggregator, int], fake_time: FakeTime, logs: list[str]
) -> None:
    _servicer, port = aggregator
    pusher = make_pusher(port, fake_time, logs, token="wrong")
    with pytest.raises(UserError, match="rejected the token: set APERTURE_AUTH_TOKEN"):
        pusher.check()
    pusher.close()
    no_token = make_pusher(port, fake_time, logs, token=None)
    with pytest.raises(UserError, match="requires a token"):
        no_token.check()
    no_token.close()


def test_unreachable_at_start_warns_and_batches_wait(fake_time: FakeTime, logs: list[str]) -> None:
    port = free_port()
    pusher = make_pusher(port, fake_time, logs)
    assert pusher.check(timeout_s=5) is False
    assert len(logs) == 1 and "cannot reach the aggregator" in logs[0]
    pusher.submit([profile()])
    pusher.submit([profile()])
    report = pusher.flush(10)  # fake seconds: 0.5 + 1 + 2 + 4, then the deadline
    assert report.stats.sent == 0
    assert (report.spooled, report.lost) == (0, 2)
    assert "UNAVAILABLE" in report.reason
    summary = format_push_summary(report, "http://x")
    assert "2 batches lost" in summary


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_tls_with_a_private_ca(tmp_path: Path, fake_time: FakeTime, logs: list[str]) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    servicer = FakeAggregator()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    apb_grpc.add_AggregatorServicer_to_server(servicer, server)
    creds = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    try:
        url = f"https://localhost:{port}"
        pusher = Pusher(parse_endpoint(url, cert), IDENT, token=TOKEN, first_sequence=FIRST,
                        clock=fake_time.clock, sleep=fake_time.sleep, log=logs.append)  # fmt: skip
        assert pusher.check() is True
        pusher.submit([profile()])
        assert pusher.flush(60).stats.sent == 1
        untrusted = Pusher(parse_endpoint(url), IDENT, token=TOKEN, log=logs.append)
        assert untrusted.check() is False
        untrusted.close()
    finally:
        server.stop(None).wait()
    assert servicer.received == [FIRST]
    assert len(logs) == 1 and "check --tls-ca" in logs[0], logs


# -- the server goes away and comes back -----------------------------------------------


def test_aggregator_restart_on_the_same_port(fake_time: FakeTime, logs: list[str]) -> None:
    first = FakeAggregator()
    server, port = serve(first)
    failing, resume = threading.Event(), threading.Event()

    def on_sleep(_seconds: float) -> None:
        # The first retry waits for the test to bring the new server up.
        failing.set()
        assert resume.wait(30), "the test never restarted the aggregator"

    fake_time.on_sleep = on_sleep
    pusher = make_pusher(port, fake_time, logs)
    pusher.start()
    pusher.submit([profile()])
    assert first.got_one.wait(30)
    # Stop only once the acknowledgement is back: stopping between the server's
    # receipt and the reply makes the pusher (rightly) send the batch again.
    deadline = time.monotonic() + 30
    while pusher.stats().sent < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.stop(None).wait()
    pusher.submit([profile()])
    pusher.submit([profile()])
    assert failing.wait(30), "the pusher never retried"
    second = FakeAggregator()
    server2, _ = serve(second, port)
    try:
        resume.set()
        report = pusher.flush(3600)
    finally:
        server2.stop(None).wait()
    assert first.received == [FIRST]
    assert second.received == [FIRST + 1, FIRST + 2]
    assert report.stats.retries == 1 and report.stats.sent == 3
    assert "UNAVAILABLE" in logs[0]


def test_flush_gives_up_at_its_deadline_and_cancel_ends_it(
    fake_time: FakeTime, logs: list[str]
) -> None:
    pusher = make_pusher(free_port(), fake_time, logs)
    pusher.submit([profile()])
    report = pusher.flush(1.2)
    assert sum(fake_time.sleeps) == pytest.approx(1.2)
    assert report.lost == 1
    cancelled = make_pusher(free_port(), fake_time, logs)
    cancelled.submit([profile()])
    cancel = threading.Event()
    cancel.set()
    assert cancelled.flush(3600, cancel=cancel).lost == 1


# -- the queue -----------------------------------------------------------------------


def test_full_queue_drops_the_oldest_and_counts(
    aggregator: tuple[FakeAggregator, int], fake_time: FakeTime, logs: list[str]
) -> None:
    servicer, port = aggregator
    size = batch_size()
    pusher = make_pusher(port, fake_time, logs, queue_bytes=2 * size + size // 2)
    for v in range(5):
        pusher.submit([profile(v + 1)])
    stats = pusher.stats()
    assert stats.dropped == {QUEUE_FULL: 3}
    assert (stats.queued, stats.queued_bytes) == (2, 2 * size)
    assert len(logs) == 1 and "queue is full" in logs[0]
    assert "queued 2, dropped 3" in pusher.status_line()
    report = pusher.flush(60)
    assert servicer.received == [FIRST + 3, FIRST + 4]
    assert report.lost_total == 3


# -- the spool -------------------------------------------------------------------------


def spool_files(directory: Path) -> list[int]:
    return sorted(int(p.name[: -len(SUFFIX)]) for p in directory.glob(f"*{SUFFIX}"))


def test_spool_survives_a_restart_and_is_sent_first(
    tmp_path: Path, fake_time: FakeTime, logs: list[str]
) -> None:
    port = free_port()
    pusher = make_pusher(port, fake_time, logs, spool=Spool(tmp_path, 1 << 20))
    for v in (1, 2, 3):
        pusher.submit([profile(v)])
    # On disk before any delivery attempt: a kill -9 now loses nothing.
    assert spool_files(tmp_path) == [FIRST, FIRST + 1, FIRST + 2]
    report = pusher.flush(5)
    assert (report.spooled, report.lost, report.lost_total) == (3, 0, 0)
    assert "3 batches still spooled" in format_push_summary(report, "http://x")

    servicer = FakeAggregator()
    server, _ = serve(servicer, port)
    try:
        # A clock that went backwards must not reuse the spooled numbers.
        again = make_pusher(port, fake_time, logs, spool=Spool(tmp_path, 1 << 20), first_sequence=5)
        assert again.pending() == 3
        new = again.submit([profile(4)])
        report = again.flush(60)
    finally:
        server.stop(None).wait()
    assert new == FIRST + 3
    assert servicer.received == [FIRST, FIRST + 1, FIRST + 2, FIRST + 3]
    assert [decode(b).profiles[EventType.CPU].total for b in servicer.batches] == [1, 2, 3, 4]
    assert report.stats.restored == 3
    assert spool_files(tmp_path) == []
    assert "3 batches came from the spool" in format_push_summary(report, "http://x")


def test_spool_survives_kill_9(tmp_path: Path, fake_time: FakeTime, logs: list[str]) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from aperture.agent.push import Pusher
        from aperture.agent.push_options import Endpoint
        from aperture.agent.spool import Spool
        from aperture.model import EventType, Profile
        from aperture.wire import Identity
        pusher = Pusher(Endpoint("http://x", "127.0.0.1:{free_port()}"),
                        Identity("killed", "h"), spool=Spool(Path(sys.argv[1]), 1 << 20),
                        log=lambda _t: None)
        for _ in range(2):
            pusher.submit([Profile(EventType.SYSCALL, "nanoseconds", start_ns=1, end_ns=2)])
        print("ready", flush=True)
        time.sleep(600)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    finally:
        proc.kill()
        proc.wait()
    servicer = FakeAggregator(token=None)
    server, port = serve(servicer)
    try:
        pusher = make_pusher(port, fake_time, logs, token=None, spool=Spool(tmp_path, 1 << 20))
        report = pusher.flush(60)
    finally:
        server.stop(None).wait()
    assert len(servicer.received) == 2 and servicer.received == sorted(servicer.received)
    assert {b.agent.agent_id for b in servicer.batches} == {"killed"}
    assert report.stats.sent == 2 and spool_files(tmp_path) == []


def test_one_agent_per_spool_directory(tmp_path: Path) -> None:
    first = Spool(tmp_path, 1 << 20)
    with pytest.raises(SpoolBusy, match="another aperture-agent"):
        Spool(tmp_path, 1 << 20)
    first.close()
    Spool(tmp_path, 1 << 20).close()


def test_leftover_temp_files_are_removed(tmp_path: Path) -> None:
    (tmp_path / f".{FIRST:020d}{SUFFIX}.tmp").write_bytes(b"half a batch")
    (tmp_path / "notes.txt").write_text("not ours")
    spool = Spool(tmp_path, 1 << 20)
    assert spool.sequences() == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "notes.txt"]
    spool.close()


def test_spool_over_its_cap_drops_the_oldest(
    aggregator: tuple[FakeAggregator, int], tmp_path: Path, fake_time: FakeTime, logs: list[str]
) -> None:
    servicer, port = aggregator
    size = batch_size()
    # Memory for less than one batch: everything waits on disk only.
    spool = Spool(tmp_path, 2 * size + size // 2)
    pusher = make_pusher(port, fake_time, logs, queue_bytes=1, spool=spool)
    for v in range(4):
        pusher.submit([profile(v + 1)])
    assert spool_files(tmp_path) == [FIRST + 2, FIRST + 3]
    stats = pusher.stats()
    assert stats.dropped == {SPOOL_FULL: 2}
    assert stats.queued_bytes == 0
    assert len(logs) == 1 and "spool is full" in logs[0]
    report = pusher.flush(60)
    assert servicer.received == [FIRST + 2, FIRST + 3]
    assert report.lost_total == 2


def test_full_queue_with_a_spool_keeps_batches_on_disk(
    aggregator: tuple[FakeAggregator, int], tmp_path: Path, fake_time: FakeTime, logs: list[str]
) -> None:
    servicer, port = aggregator
    size = batch_size()
    pusher = make_pusher(port, fake_time, logs, queue_bytes=size, spool=Spool(tmp_path, 1 << 20))
    for v in range(4):
        pusher.submit([profile(v + 1)])
    stats = pusher.stats()
    assert stats.dropped == {}
    assert (stats.queued, stats.queued_bytes) == (4, size)
    report = pusher.flush(60)
    assert servicer.received == [FIRST, FIRST + 1, FIRST + 2, FIRST + 3]
    assert report.lost_total == 0 and logs == []


def test_disk_full_falls_back_to_memory_with_one_warning(
    aggregator: tuple[FakeAggregator, int],
    tmp_path: Path,
    fake_time: FakeTime,
    logs: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    servicer, port = aggregator

    def no_space(*_args: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("aperture.agent.spool.os.fsync", no_space)
    pusher = make_pusher(port, fake_time, logs, spool=Spool(tmp_path, 1 << 20, warn=logs.append))
    for v in range(3):
        pusher.submit([profile(v + 1)])
    assert spool_files(tmp_path) == []
    assert [p.name for p in tmp_path.iterdir()] == [".lock"]  # no temp file left behind
    assert len(logs) == 1 and "No space left on device" in logs[0]
    report = pusher.flush(60)
    assert servicer.received == [FIRST, FIRST + 1, FIRST + 2]
    assert report.stats.spool_failures == 3
    assert "3 batches could not be written to the spool" in format_push_summary(report, "x")


def can_override_permissions() -> bool:
    """Whether this process writes through permission bits (root with CAP_DAC_OVERRIDE)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) & (1 << 1))
    return os.geteuid() == 0


def test_read_only_spool_falls_back_to_memory(
    aggregator: tuple[FakeAggregator, int], tmp_path: Path, fake_time: FakeTime, logs: list[str]
) -> None:
    if can_override_permissions():
        # Root ignores a read-only mode: run this test again without that power.
        if shutil.which("setpriv") is None:
            pytest.skip("running as root and setpriv (util-linux) is missing")
        node = f"{__file__}::test_read_only_spool_falls_back_to_memory"
        child = subprocess.run(
            ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
             sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", node],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert child.returncode == 0 and "1 passed" in child.stdout, child.stdout + child.stderr
        return
    servicer, port = aggregator
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    spool = Spool(spool_dir, 1 << 20, warn=logs.append)
    spool_dir.chmod(0o500)
    try:
        pusher = make_pusher(port, fake_time, logs, spool=spool)
        pusher.submit([profile()])
        pusher.submit([profile()])
        report = pusher.flush(60)
        # At start-up the agent refuses such a directory outright.
        cli = run_agent("--aggregator", f"http://127.0.0.1:{port}", "--spool-dir", str(spool_dir))
    finally:
        spool_dir.chmod(0o700)
    assert servicer.received == [FIRST, FIRST + 1]
    assert len(logs) == 1 and "cannot write to the spool" in logs[0], logs
    assert "Permission denied" in logs[0]
    assert report.stats.spool_failures == 2
    assert_one_line_error(cli, 2, "cannot write to --spool-dir")


def test_undelivered_and_unspooled_batches_are_lost_not_spooled(
    tmp_path: Path, fake_time: FakeTime, logs: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pusher = make_pusher(free_port(), fake_time, logs, spool=Spool(tmp_path, 1 << 20))
    pusher.submit([profile()])
    monkeypatch.setattr("aperture.agent.spool.os.replace", lambda *_a: (_ for _ in ()).throw(
        OSError(errno.EROFS, "Read-only file system")))  # fmt: skip
    pusher.submit([profile()])
    report = pusher.flush(1)
    assert (report.spooled, report.lost) == (1, 1)


@pytest.mark.parametrize("use_spool", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_every_batch_is_accounted_for(
    aggregator: tuple[FakeAggregator, int],
    tmp_path: Path,
    fake_time: FakeTime,
    logs: list[str],
    seed: int,
    use_spool: bool,
) -> None:
    """Whatever the aggregator answers: delivered once, in order, or counted as dropped."""
    import random

    rng = random.Random(seed)
    servicer, port = aggregator
    choices = [
        Reply(),
        Reply(retry_after_ms=200),
        Reply(accepted=False),
        Reply(grpc.StatusCode.UNAVAILABLE),
        Reply(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down"),
        Reply(grpc.StatusCode.INVALID_ARGUMENT, "bad"),
        Reply(grpc.StatusCode.RESOURCE_EXHAUSTED, "over the limit"),
    ]
    servicer.script = [rng.choice(choices) for _ in range(60)]
    size = batch_size()
    spool = Spool(tmp_path, 6 * size) if use_spool else None
    pusher = make_pusher(port, fake_time, logs, queue_bytes=4 * size, spool=spool)
    pusher.start()
    submitted = [pusher.submit([profile(v + 1)]) for v in range(30)]
    report = pusher.flush(10**6)
    s = report.stats
    assert servicer.received == sorted(set(servicer.received))
    assert set(servicer.received) <= set(submitted)
    assert s.sent == len(servicer.received) + s.duplicates
    assert s.sent + s.dropped_total + report.spooled + report.lost == len(submitted)
    assert (report.spooled, report.lost) == (0, 0)
    assert spool_files(tmp_path) == []


# -- recorder integration ----------------------------------------------------------------


class FakeCollector:
    def __init__(self, event_type: EventType) -> None:
        self.event_type = event_type
        self.drains = 0

    def start(self) -> None:
        pass

    def drain(self) -> Profile:
        self.drains += 1
        p = profile(self.drains)
        p.event_type = self.event_type
        return p

    def sample_count(self) -> int:
        return 0

    def close(self) -> None:
        pass


def test_one_batch_per_window_per_mode(
    aggregator: tuple[FakeAggregator, int], fake_time: FakeTime, logs: list[str]
) -> None:
    servicer, port = aggregator
    pusher = make_pusher(port, fake_time, logs)
    ticks = iter(range(0, 1000, 10))  # every clock reading is one 10 s window later
    recording = record(
        {"cpu": FakeCollector(EventType.CPU), "lock": FakeCollector(EventType.LOCK)},
        duration_s=30,
        window_s=10,
        stop=threading.Event(),
        on_window=lambda _name, p: pusher.submit([p]) and None,
        status=pusher.status_line,
        keep_windows=False,
        clock=lambda: float(next(ticks)),
    )
    report = pusher.flush(60)
    assert report.stats.sent == 6  # 2 windows + the final drain, 2 modes each
    kinds = [next(iter(decode(b).profiles)) for b in servicer.batches]
    assert kinds == [EventType.CPU, EventType.LOCK] * 3
    assert servicer.received == sorted(servicer.received)
    assert recording.totals.modes["cpu"].profile().total == 1 + 2 + 3
    assert recording.windows == {}  # totals only, no window kept


def test_after_drain_runs_once_a_window_after_every_mode_drained() -> None:
    cpu, lock = FakeCollector(EventType.CPU), FakeCollector(EventType.LOCK)
    seen: list[tuple[int, int]] = []
    ticks = iter(range(0, 1000, 10))
    record(
        {"cpu": cpu, "lock": lock},
        duration_s=30,
        window_s=10,
        stop=threading.Event(),
        after_drain=lambda: seen.append((cpu.drains, lock.drains)),
        clock=lambda: float(next(ticks)),
    )
    assert seen == [(1, 1), (2, 2), (3, 3)]  # 2 windows + the final drain


# -- flags ---------------------------------------------------------------------------------


def test_endpoints() -> None:
    assert parse_endpoint("http://agg:50051") == Endpoint("http://agg:50051", "agg:50051")
    assert parse_endpoint("http://agg/").target == "agg:50051"
    assert parse_endpoint("https://[::1]:9000").target == "[::1]:9000"
    assert parse_endpoint("https://agg").tls
    for bad in ("agg:50051", "grpc://agg", "http://", "http://agg/v1", "http://u:p@agg"):
        with pytest.raises(UsageError):
            parse_endpoint(bad)


def test_labels_and_tokens() -> None:
    assert parse_labels(["env=prod", "k8s.io/zone=eu-1"]) == {
        "env": "prod",
        "k8s.io/zone": "eu-1",
    }
    for bad in (["env"], ["env="], ["9x=1"], ["a=1", "a=2"], ["a=\x00"]):
        with pytest.raises(UsageError):
            parse_labels(bad)
    assert check_token("  abc\n") == "abc"
    assert check_token("") is None
    with pytest.raises(UsageError):
        check_token("two words")


def run_agent(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "APERTURE_AUTH_TOKEN"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "aperture.agent.cli", "--duration", "1s", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=full_env,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("aperture-agent: error:") and text in lines[0], lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--aggregator", "grpc://agg:50051"], "not an http:// or https:// URL"),
        (["--aggregator", "agg:50051"], "not an http:// or https:// URL"),
        (["--aggregator", "http://agg:50051/push"], "takes no path"),
        (["--aggregator", "https://agg", "--tls-ca", "/nonexistent.pem"], "cannot read --tls-ca"),
        (["--aggregator", "https://agg", "--tls-ca", "/etc/hostname"], "no PEM certificate"),
        (["--aggregator", "http://agg", "--tls-ca", "/etc/hostname"], "needs an https://"),
        (["--aggregator", "http://agg", "--label", "env"], "is not KEY=VALUE"),
        (["--aggregator", "http://agg", "--label", "a=1", "--label", "a=2"], "given twice"),
        (["--aggregator", "http://agg", "--agent-id", "has space"], "--agent-id"),
        (["--aggregator", "http://agg", "--queue-bytes", "lots"], "is not a size"),
        (["--aggregator", "http://agg", "--push-interval", "0"], "not a positive duration"),
        (["--aggregator", "http://agg", "--spool-dir", "/proc/x"], "--spool-dir"),
        (["--spool-dir", "/tmp/spool"], "only applies with --aggregator"),
        (["--label", "env"], "is not KEY=VALUE"),  # checked for local output files too
    ],
)
def test_bad_push_flags_are_one_line_usage_errors(args: list[str], expected: str) -> None:
    assert_one_line_error(run_agent(*args), 2, expected)


def test_window_is_an_alias_of_push_interval() -> None:
    from aperture.agent.cli import build_parser

    assert build_parser().parse_args(["--window", "5s"]).interval == 5
    assert build_parser().parse_args(["--push-interval", "1m"]).interval == 60
    assert build_parser().parse_args([]).interval == 10
    assert "--window" not in build_parser().format_help()


def test_wrong_token_stops_the_agent_before_bpf(aggregator: tuple[FakeAggregator, int]) -> None:
    _servicer, port = aggregator
    url = f"http://127.0.0.1:{port}"
    result = run_agent("--aggregator", url, env={"APERTURE_AUTH_TOKEN": "wrong"})
    assert_one_line_error(
        result,
        1,
        f"the aggregator at {url} rejected the token: set APERTURE_AUTH_TOKEN to one of the "
        "aggregator's ingest tokens.",
    )
