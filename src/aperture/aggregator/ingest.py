"""The ingest path, independent of transport: parse, check, dedupe, journal, buffer."""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aperture.aggregator.agents import AgentTable
from aperture.aggregator.buffer import AgentInfo, BatchBuffer, BufferedBatch, Deduper
from aperture.aggregator.journal import Journal
from aperture.aggregator.metrics import Metrics
from aperture.proto.v1 import profile_pb2 as pb
from aperture.retention import OutsideRetention, check_window
from aperture.wire import MalformedBatch, Summary, check, parse

if TYPE_CHECKING:
    from aperture.filters.host import WasmFilter

log = logging.getLogger("aperture.aggregator")


class Outcome(enum.Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    MALFORMED = "malformed"
    OUTSIDE_RETENTION = "outside_retention"  # aperture.retention: the store would not keep it
    TOO_LARGE = "too_large"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class PushResult:
    outcome: Outcome
    message: str = ""
    retry_after_ms: int = 0


class Ingest:
    """Accepts batches; the only writer of the buffer, journal and agent table."""

    def __init__(
        self,
        buffer: BatchBuffer,
        metrics: Metrics,
        *,
        journal: Journal | None = None,
        max_message_bytes: int = 16 << 20,
        backpressure_ratio: float = 0.9,
        pressure: Callable[[], float] | None = None,
        on_accept: Callable[[bytes, int | None], None] | None = None,
        admit: Callable[[int], bool] | None = None,
        ingest_filter: WasmFilter | None = None,
        retention_days: int | None = None,
        agents: AgentTable | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.buffer = buffer
        self.metrics = metrics
        self.journal = journal
        self.max_message_bytes = max_message_bytes
        self.backpressure_ratio = backpressure_ratio
        # How full the store's queue is (0..1; None: no store). Past backpressure_ratio
        # an accepted push asks the agent to wait a little before the next. The buffer's
        # fill says nothing: it drops its oldest by design and is full in steady state.
        self.pressure = pressure
        # Called with each accepted batch's bytes and journal segment (None without a
        # journal) after it is journaled: the store's writer, which releases the
        # segment once the batch is stored.
        self.on_accept = on_accept
        # Whether the store's queue has room for a batch of this many bytes: when it has
        # not, the push is refused (the agent keeps it and retries) rather than
        # acknowledged and then dropped from that bounded queue.
        self.admit = admit
        # --ingest-filter: a WASM filter run on each new batch before it is journaled.
        self.filter = ingest_filter
        # The store's retention (None: no store): batches it would drop at once, or
        # stamped far ahead of this clock, are refused (aperture.retention).
        self.retention_days = retention_days
        self.clock = clock
        self.deduper = Deduper()
        self.agent_table = agents if agents is not None else AgentTable(metrics)
        # One push at a time from the dedupe check to the buffer: two retries of
        # one batch racing each other must not both be stored.
        self._lock = threading.Lock()

    def replay(self) -> int:
        """Load the journal into the buffer (at start, before serving)."""
        if self.journal is None:
            return 0
        count = 0
        for segment, body in self.journal.replay():
            try:
                batch = parse(body)
                summary = check(batch)
            except MalformedBatch:
                continue  # written by us, so only a bug could land here
            if self.deduper.add(batch.agent.agent_id, batch.sequence):
                if self.on_accept is not None:
                    self.journal.hold(segment)  # the store may not have it: it skips those it has
                self._store(batch, summary, body, self.clock(), segment)
                count += 1
        self.journal.open()
        if count:
            log.info("replayed %d batches from the journal", count)
        return count

    @property
    def agents(self) -> dict[str, AgentInfo]:
        """The agents held, by id (a dict replaced, not changed in size, as they come and go)."""
        return self.agent_table.agents

    def push(self, data: bytes) -> PushResult:
        """Handle one serialized (possibly gzip) ProfileBatch."""
        started = time.perf_counter()
        try:
            result = self._push(data)
        finally:
            self.metrics.push_seconds.observe(time.perf_counter() - started)
        self.metrics.pushes.labels(result.outcome.value).inc()
        return result

    def _push(self, data: bytes) -> PushResult:
        if len(data) > self.max_message_bytes:
            return PushResult(
                Outcome.TOO_LARGE,
                f"the batch is {len(data)} bytes, over the limit of {self.max_message_bytes}: "
                "push more often (--push-interval) or raise --max-message-bytes",
            )
        try:
            batch = parse(data, max_bytes=self.max_message_bytes)
            summary = check(batch)
        except MalformedBatch as exc:
            return PushResult(Outcome.MALFORMED, f"malformed ProfileBatch: {exc}")
        try:
            check_window(
                batch.window_start_ns,
                batch.window_end_ns,
                retention_days=self.retention_days,
                now_ns=self.clock(),
            )
        except OutsideRetention as exc:
            return PushResult(Outcome.OUTSIDE_RETENTION, str(exc))
        if self.filter is not None:
            from aperture.filters.batch import filter_batch

            batch, summary = filter_batch(self.filter, batch)
            data = batch.SerializeToString()  # what is journaled and stored: the filtered batch
        # Keep the uncompressed bytes: exact buffer accounting and a cheap journal.
        raw = data if data[:2] != b"\x1f\x8b" else batch.SerializeToString()
        self.metrics.received_bytes.inc(len(raw))
        with self._lock:
            return self._accept(batch, summary, raw)

    def _accept(self, batch: pb.ProfileBatch, summary: Summary, raw: bytes) -> PushResult:
        agent_id = batch.agent.agent_id
        if self.deduper.contains(agent_id, batch.sequence):
            self.metrics.dedupe_hits.inc()
            info = self.agents.get(agent_id)
            if info is not None:
                info.duplicates += 1
            return PushResult(Outcome.DUPLICATE, "already stored")
        if self.admit is not None and not self.admit(len(raw)):
            return PushResult(
                Outcome.UNAVAILABLE,
                "the store is behind (its queue is full): retry later",
                5000,
            )
        segment = None
        if self.journal is not None:
            try:
                segment = self.journal.append(raw, hold=self.on_accept is not None)
            except OSError as exc:
                log.error("journal write failed: %s", exc)
                return PushResult(
                    Outcome.UNAVAILABLE, f"the aggregator cannot persist batches now ({exc})", 5000
                )
        self.deduper.add(agent_id, batch.sequence)
        self._store(batch, summary, raw, self.clock(), segment)
        self.metrics.count_batch(batch.losses, batch.window_labels)
        hint = 0
        if self.pressure is not None and self.pressure() >= self.backpressure_ratio:
            hint = 1000  # the store's queue is nearly full: ask agents to slow down a little
        return PushResult(Outcome.ACCEPTED, retry_after_ms=hint)

    def _store(
        self,
        batch: pb.ProfileBatch,
        summary: Summary,
        raw: bytes,
        now_ns: int,
        segment: int | None = None,
    ) -> None:
        self.buffer.add(BufferedBatch.of(batch, summary, raw, now_ns))
        if self.on_accept is not None:
            self.on_accept(raw, segment)  # queued for the store, never blocking
        info = self.agent_table.record(batch.agent, now_ns)
        info.pushes += 1
        info.bytes += len(raw)
        info.push_times.append(now_ns)
        info.last_sequence = max(info.last_sequence, batch.sequence)
        self.metrics.samples.labels("cpu").inc(summary.cpu_samples)
        self.metrics.samples.labels("lock").inc(summary.lock_contentions)
        self.metrics.samples.labels("syscall").inc(summary.syscalls)
        for name, records in summary.records:
            self.metrics.samples.labels(name).inc(records)
        self.refresh_gauges()

    def refresh_gauges(self) -> None:
        stats = self.buffer.stats
        self.metrics.buffer_bytes.set(stats.bytes)
        self.metrics.buffer_batches.set(stats.batches)
        self.metrics.buffer_utilization.set(self.buffer.utilization)


def journal_dir(data_dir: Path) -> Path:
    return data_dir / "journal"
