"""Pushing profiles to the aggregator: one batch per window, in order, never silently lost.

:class:`Pusher` encodes each window into a ``ProfileBatch`` with the next
sequence number, writes it to the optional :class:`~aperture.agent.spool.Spool`
and queues it; a background thread sends the queue oldest first over gRPC
(gzip, bearer token). Transient failures are retried with exponential backoff
and full jitter; a batch the aggregator refuses as malformed or oversize is
dropped, since resending it cannot help. The queue is bounded in bytes: when
full, the oldest batches leave memory (and stay on disk when spooled).

Clock, sleep and randomness are injectable so tests replay retries exactly.
"""

from __future__ import annotations

import random as _random
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc

from aperture.agent.push_options import Endpoint
from aperture.agent.spool import Spool
from aperture.agent.system import name_thread
from aperture.errors import UserError
from aperture.model import Profile
from aperture.proto.v1 import aggregator_pb2 as apb
from aperture.wire import Identity, encode

PUSH_METHOD = "/aperture.v1.Aggregator/Push"
QUERY_METHOD = "/aperture.v1.Aggregator/Query"

# Why a batch was dropped; the summary lists the counts under these names.
QUEUE_FULL = "queue full"
REJECTED = "rejected as malformed"
TOO_LARGE = "too large for the aggregator"
SPOOL_FULL = "spool full"
UNREADABLE = "unreadable spool file"

# Retrying these cannot help: the aggregator will refuse the same bytes again.
_OVERSIZE_HINTS = ("larger than max", "over the limit", "too large")
# An aggregator may send a wait hint with an error status, as trailing metadata.
RETRY_AFTER_KEY = "retry-after-ms"


def _log_stderr(text: str) -> None:
    print(f"aperture-agent: warning: {text}", file=sys.stderr, flush=True)


def batches(n: int) -> str:
    """``1 batch``, ``3 batches``."""
    return f"{n} batch" if n == 1 else f"{n} batches"


def describe_error(exc: grpc.RpcError) -> str:
    """``UNAVAILABLE: Connection refused``: the status and the innermost cause."""
    code = exc.code()
    detail = exc.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE and ": " in detail:
        # gRPC nests causes ("failed to connect to all addresses; last error: ...:
        # Connection refused"); the last one is what a user can act on.
        detail = detail.rsplit(": ", 1)[1]
    return f"{code.name}: {detail}" if detail else str(code.name)


def format_bytes(n: float) -> str:
    """``512 B``, ``1.5 KiB``, ``64.0 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class Backoff:
    """Exponential backoff with full jitter: uniform in [0, min(cap, initial * 2**n))."""

    def __init__(
        self, initial: float = 0.5, cap: float = 30.0, random: Callable[[], float] = _random.random
    ) -> None:
        self.initial = initial
        self.cap = cap
        self._random = random
        self.attempts = 0

    def next(self) -> float:
        ceiling = min(self.cap, self.initial * (1 << min(self.attempts, 32)))
        self.attempts += 1
        return self._random() * ceiling

    def reset(self) -> None:
        self.attempts = 0


@dataclass
class PushStats:
    """Counters since start; :meth:`Pusher.stats` returns a copy."""

    sent: int = 0
    sent_bytes: int = 0
    duplicates: int = 0
    retries: int = 0
    restored: int = 0  # batches found in the spool from an earlier run
    dropped: dict[str, int] = field(default_factory=dict)
    spool_failures: int = 0  # batches kept in memory only because the spool write failed
    queued: int = 0
    queued_bytes: int = 0  # in memory
    last_error: str = ""

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


@dataclass(frozen=True)
class PushReport:
    """The end of a run: counters, and what became of the batches not delivered."""

    stats: PushStats
    spooled: int  # on disk, sent at the next start
    lost: int  # neither delivered nor on disk
    reason: str  # why they were not delivered
    spool_dir: Path | None = None

    @property
    def lost_total(self) -> int:
        """Every batch that will never reach the aggregator: drops and undelivered."""
        return self.lost + self.stats.dropped_total


@dataclass
class _Entry:
    sequence: int
    size: int
    data: bytes | None  # None: only on disk
    spooled: bool


class Pusher:
    """Queue, spool and deliver batches to one aggregator from a background thread."""

    def __init__(
        self,
        endpoint: Endpoint,
        identity: Identity,
        *,
        token: str | None = None,
        queue_bytes: int = 64 << 20,
        spool: Spool | None = None,
        rpc_timeout_s: float = 20.0,
        first_sequence: int | None = None,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
        log: Callable[[str], None] = _log_stderr,
    ) -> None:
        self.endpoint = endpoint
        self.identity = identity
        self.queue_bytes = queue_bytes
        self.spool = spool
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._rpc_timeout = rpc_timeout_s
        self._backoff = backoff or Backoff()
        self._clock = clock
        self._wake = threading.Event()
        self._sleep = sleep or self._interruptible_sleep
        self._log = log
        self._cond = threading.Condition()
        self._submit_lock = threading.Lock()
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._memory = 0
        self._inflight: int | None = None
        self._stats = PushStats()
        self._warned: set[str] = set()
        self._not_before = 0.0
        self._closing = False
        self._closed = False
        self._cancelled = False
        self._deadline = float("inf")
        self._thread: threading.Thread | None = None
        self._channel: Any = None
        restored = spool.sequences() if spool is not None else []
        for sequence, size in restored:
            self._entries[sequence] = _Entry(sequence, size, None, spooled=True)
        self._stats.restored = len(restored)
        last = restored[-1][0] if restored else 0
        # Microseconds since the epoch: a restarted agent starts above anything it sent.
        start = first_sequence if first_sequence is not None else time.time_ns() // 1000
        self._next_sequence = max(start, last + 1)

    # -- connection ---------------------------------------------------------

    def _connect(self) -> Any:
        if self._channel is None:
            # A local subchannel pool: a new channel after a failure really redials,
            # instead of sharing a subchannel that sits out gRPC's own reconnect backoff.
            options = [("grpc.use_local_subchannel_pool", 1)]
            if self.endpoint.tls:
                creds = grpc.ssl_channel_credentials(root_certificates=self.endpoint.ca_pem)
                self._channel = grpc.secure_channel(self.endpoint.target, creds, options=options)
            else:
                self._channel = grpc.insecure_channel(self.endpoint.target, options=options)
        return self._channel

    def _disconnect(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def check(self, timeout_s: float = 5.0) -> bool:
        """One cheap authenticated call before recording starts.

        Raises :class:`UserError` if the aggregator refuses the token; returns
        False (after one warning line) if it cannot be reached, True otherwise.
        """
        query = self._connect().unary_unary(
            QUERY_METHOD,
            request_serializer=apb.QueryRequest.SerializeToString,
            response_deserializer=apb.QueryResponse.FromString,
        )
        try:
            query(apb.QueryRequest(limit=1), timeout=timeout_s, metadata=self._metadata)
        except grpc.RpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.UNAUTHENTICATED:
                what = "rejected the token" if self._metadata else "requires a token"
                raise UserError(
                    f"the aggregator at {self.endpoint.url} {what}: set "
                    "APERTURE_AUTH_TOKEN to one of the aggregator's ingest tokens."
                ) from None
            if code in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.PERMISSION_DENIED):
                # It answered and knows the token; an ingest token may push but not query.
                return True
            hint = ""
            if any(w in (exc.details() or "").lower() for w in ("ssl", "handshake", "certif")):
                hint = " (check --tls-ca)"
            self._log(
                f"cannot reach the aggregator at {self.endpoint.url} ({describe_error(exc)})"
                f"{hint}; recording anyway, batches wait in the queue"
            )
            self._warned.add("retry")  # said once; the next line is when it works again
            self._stats.last_error = describe_error(exc)
            self._disconnect()
            return False
        return True

    # -- producer side -------------------------------------------------------

    def submit(self, profiles: Sequence[Profile]) -> int:
        """Encode one window into a batch, spool it, queue it; returns its sequence."""
        with self._submit_lock:
            sequence = self._next_sequence
            self._next_sequence += 1
            data = encode(profiles, self.identity, sequence).SerializeToString()
            self.enqueue(sequence, data)
        return sequence

    def enqueue(self, sequence: int, data: bytes) -> None:
        """Queue one serialized batch (spooled first when there is a spool)."""
        written = self.spool.write(sequence, data) if self.spool is not None else None
        with self._cond:
            if self._closed:
                raise RuntimeError("the pusher is closed")
            if written is not None:
                for evicted in written.evicted:
                    self._spool_evicted(evicted)
                if not written.stored:
                    self._stats.spool_failures += 1
            entry = _Entry(sequence, len(data), data, spooled=bool(written and written.stored))
            self._entries[sequence] = entry
            self._memory += entry.size
            self._enforce_queue_cap()
            self._cond.notify_all()

    def _spool_evicted(self, sequence: int) -> None:
        entry = self._entries.get(sequence)
        if entry is None:
            return
        entry.spooled = False
        if entry.data is None:  # it lived on disk only: gone now
            del self._entries[sequence]
            self._drop(SPOOL_FULL)
            cap = format_bytes(self.spool.max_bytes) if self.spool is not None else "?"
            self._warn_once(
                SPOOL_FULL,
                f"the spool is full (--spool-bytes {cap}): dropping the oldest spooled batches",
            )

    def _enforce_queue_cap(self) -> None:
        while self._memory > self.queue_bytes:
            victim = next(
                (
                    e
                    for e in self._entries.values()
                    if e.data is not None and e.sequence != self._inflight
                ),
                None,
            )
            if victim is None:
                return
            self._memory -= victim.size
            if victim.spooled:
                victim.data = None  # still on disk: read back when its turn comes
                continue
            del self._entries[victim.sequence]
            self._drop(QUEUE_FULL)
            self._warn_once(
                QUEUE_FULL,
                f"the push queue is full (--queue-bytes {format_bytes(self.queue_bytes)}): "
                "dropping the oldest batches (a --spool-dir would keep them)",
            )

    def _drop(self, reason: str) -> None:
        self._stats.dropped[reason] = self._stats.dropped.get(reason, 0) + 1

    def _warn_once(self, key: str, text: str) -> None:
        """One line per episode; an episode ends with the next delivery."""
        if key not in self._warned:
            self._warned.add(key)
            self._log(text)

    # -- delivery -------------------------------------------------------------

    def start(self) -> None:
        """Start the delivery thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="aperture-push", daemon=True)
            self._thread.start()

    def _interruptible_sleep(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    def _run(self) -> None:
        name_thread("aperture-push")
        while True:
            with self._cond:
                while not self._entries and not self._closing:
                    self._cond.wait()
                if self._closing and (
                    not self._entries or self._cancelled or self._clock() >= self._deadline
                ):
                    return
                delay = self._not_before - self._clock()
                if self._closing:
                    delay = min(delay, self._deadline - self._clock())
            if delay > 0:
                self._sleep(delay)
                continue
            try:
                self._attempt()
            except Exception as exc:  # a bug must not stop delivery for the rest of the run
                self._retry(f"unexpected error: {exc!r}", 0)

    def _attempt(self) -> None:
        with self._cond:
            if not self._entries:
                return  # evicted since the loop looked
            entry = next(iter(self._entries.values()))
            self._inflight = entry.sequence
            data = entry.data
            timeout = self._rpc_timeout
            if self._closing:
                timeout = max(0.1, min(timeout, self._deadline - self._clock()))
        try:
            if data is None:
                data = self._load(entry)
                if data is None:
                    return
            self._send(entry, data, timeout)
        finally:
            with self._cond:
                self._inflight = None

    def _load(self, entry: _Entry) -> bytes | None:
        """A disk-only batch back into memory for sending; None if it is gone."""
        assert self.spool is not None
        try:
            data = self.spool.read(entry.sequence)
        except OSError as exc:
            error: str | None = exc.strerror or str(exc)
        else:
            error = None if len(data) == entry.size or entry.size == 0 else "truncated"
        with self._cond:
            if self._entries.get(entry.sequence) is not entry:
                return None  # evicted meanwhile, already counted
            if error is not None:
                del self._entries[entry.sequence]
                self._drop(UNREADABLE)
                self._log(f"dropped spooled batch {entry.sequence}: cannot read it ({error})")
            else:
                entry.data = data
                self._memory += entry.size
        if error is not None:
            self.spool.remove(entry.sequence)
            return None
        return data

    def _send(self, entry: _Entry, data: bytes, timeout: float) -> None:
        push = self._connect().unary_unary(
            PUSH_METHOD,
            request_serializer=None,  # the batch is already serialized
            response_deserializer=apb.PushResponse.FromString,
        )
        try:
            response = push(
                data,
                timeout=timeout,
                metadata=self._metadata,
                compression=grpc.Compression.Gzip,
            )
        except grpc.RpcError as exc:
            self._failed(entry, exc)
            return
        if response.accepted or response.duplicate:
            self._delivered(entry, response)
        else:
            why = response.message or "no reason given"
            self._retry(f"the aggregator did not accept the batch: {why}", response.retry_after_ms)

    def _delivered(self, entry: _Entry, response: apb.PushResponse) -> None:
        with self._cond:
            if self._entries.pop(entry.sequence, None) is not None and entry.data is not None:
                self._memory -= entry.size
            self._stats.sent += 1
            self._stats.sent_bytes += entry.size
            self._stats.duplicates += int(response.duplicate)
            recovered = bool(self._stats.last_error)
            self._stats.last_error = ""
            self._warned.clear()
            self._backoff.reset()
            self._not_before = self._clock() + response.retry_after_ms / 1000
        if entry.spooled and self.spool is not None:
            self.spool.remove(entry.sequence)
        if recovered:
            self._log(f"the aggregator at {self.endpoint.url} accepts batches again")

    def _failed(self, entry: _Entry, exc: grpc.RpcError) -> None:
        code = exc.code()
        detail = exc.details() or ""
        if code == grpc.StatusCode.INVALID_ARGUMENT or (
            code == grpc.StatusCode.RESOURCE_EXHAUSTED
            and any(h in detail.lower() for h in _OVERSIZE_HINTS)
        ):
            reason = REJECTED if code == grpc.StatusCode.INVALID_ARGUMENT else TOO_LARGE
            with self._cond:
                if self._entries.pop(entry.sequence, None) is not None and entry.data is not None:
                    self._memory -= entry.size
                self._drop(reason)
            if entry.spooled and self.spool is not None:
                self.spool.remove(entry.sequence)
            self._log(
                f"dropped batch {entry.sequence} ({format_bytes(entry.size)}): the aggregator "
                f"refused it ({code.name}: {detail}); resending cannot help"
            )
            return
        if code == grpc.StatusCode.UNAVAILABLE:
            self._disconnect()  # redial on the next attempt
        hint = 0
        for key, value in exc.trailing_metadata() or ():
            if key == RETRY_AFTER_KEY and str(value).isdigit():
                hint = int(value)
        self._retry(describe_error(exc), hint)

    def _retry(self, error: str, retry_after_ms: int) -> None:
        with self._cond:
            self._stats.retries += 1
            self._stats.last_error = error
            delay = max(retry_after_ms / 1000, self._backoff.next())
            self._not_before = self._clock() + delay
            queued = len(self._entries)
        self._warn_once(
            "retry",
            f"cannot deliver to the aggregator at {self.endpoint.url} ({error}); "
            f"{batches(queued)} waiting, retried with backoff",
        )

    # -- status and shutdown ---------------------------------------------------

    def stats(self) -> PushStats:
        with self._cond:
            stats = replace(self._stats, dropped=dict(self._stats.dropped))
            stats.queued = len(self._entries)
            stats.queued_bytes = self._memory
        return stats

    def status_line(self) -> str:
        """``pushed 12, queued 1, last error: UNAVAILABLE`` for the progress display."""
        s = self.stats()
        text = f"pushed {s.sent}, queued {s.queued}"
        if s.dropped_total:
            text += f", dropped {s.dropped_total}"
        if s.last_error:
            error = s.last_error if len(s.last_error) <= 40 else s.last_error[:39] + "…"
            text += f", last error: {error}"
        return text

    def pending(self) -> int:
        with self._cond:
            return len(self._entries)

    def flush(self, timeout_s: float, cancel: threading.Event | None = None) -> PushReport:
        """Deliver what is queued within ``timeout_s``, stop, and report the rest.

        ``cancel`` (e.g. a second Ctrl-C) ends the attempt early. Batches still
        queued stay in the spool for the next start, or are lost without one.
        """
        with self._cond:
            self._closing = True
            self._deadline = self._clock() + timeout_s
            self._not_before = min(self._not_before, self._clock())  # one last try right away
            self._cond.notify_all()
        self._wake.set()
        self.start()
        assert self._thread is not None
        give_up = time.monotonic() + timeout_s + self._rpc_timeout + 5
        while self._thread.is_alive() and time.monotonic() < give_up:
            if cancel is not None and cancel.is_set():
                with self._cond:
                    self._cancelled = True
                self._wake.set()
            self._thread.join(0.1)
        return self.close()

    def close(self) -> PushReport:
        """Stop without delivering more; report what was left."""
        with self._cond:
            self._closing = self._closed = self._cancelled = True
            self._cond.notify_all()
            spooled = sum(1 for e in self._entries.values() if e.spooled)
            lost = len(self._entries) - spooled
            reason = self._stats.last_error or (
                "the flush timeout ended first" if self._entries else ""
            )
        self._wake.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(self._rpc_timeout + 1)
        self._disconnect()
        if self.spool is not None:
            self.spool.close()
        return PushReport(
            self.stats(), spooled, lost, reason, self.spool.directory if self.spool else None
        )


def format_push_summary(report: PushReport, url: str) -> str:
    """The ``Push:`` section of the end-of-run summary."""
    s = report.stats
    lines = [
        f"Push: {batches(s.sent)} sent to {url} ({format_bytes(s.sent_bytes)} before gzip), "
        f"{s.retries} retries" + (f", {s.duplicates} already there" if s.duplicates else "")
    ]
    if s.restored:
        lines.append(f"  {batches(s.restored)} came from the spool of an earlier run")
    drops = ", ".join(f"{n} {why}" for why, n in s.dropped.items() if n)
    lines.append("  dropped: " + (drops or "none"))
    if s.spool_failures:
        lines.append(f"  {batches(s.spool_failures)} could not be written to the spool")
    if not report.spooled and not report.lost:
        lines.append("  at exit: every batch delivered")
    if report.spooled:
        lines.append(
            f"  at exit: {batches(report.spooled)} still spooled in {report.spool_dir} "
            f"(sent at the next start; {report.reason})"
        )
    if report.lost:
        lines.append(f"  at exit: {batches(report.lost)} lost, not delivered ({report.reason})")
    return "\n".join(lines)
