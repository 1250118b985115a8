"""The ingest path, independent of transport: parse, check, dedupe, journal, buffer."""

from __future__ import annotations

import enum
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from aperture.aggregator.buffer import AgentInfo, BatchBuffer, BufferedBatch, Deduper
from aperture.aggregator.journal import Journal
from aperture.aggregator.metrics import Metrics
from aperture.model import EventType
from aperture.wire import Decoded, MalformedBatch, decode, parse

log = logging.getLogger("aperture.aggregator")


class Outcome(enum.Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    MALFORMED = "malformed"
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
    ) -> None:
        self.buffer = buffer
        self.metrics = metrics
        self.journal = journal
        self.max_message_bytes = max_message_bytes
        self.backpressure_ratio = backpressure_ratio
        self.deduper = Deduper()
        self.agents: dict[str, AgentInfo] = {}
        # One push at a time from the dedupe check to the buffer: two retries of
        # one batch racing each other must not both be stored.
        self._lock = threading.Lock()

    def replay(self) -> int:
        """Load the journal into the buffer (at start, before serving)."""
        if self.journal is None:
            return 0
        count = 0
        for body in self.journal.replay():
            try:
                decoded = decode(parse(body))
            except MalformedBatch:
                continue  # written by us, so only a bug could land here
            if self.deduper.add(decoded.identity.agent_id, decoded.sequence):
                self._store(decoded, body, time.time_ns(), journal=False)
                count += 1
        self.journal.open()
        if count:
            log.info("replayed %d batches from the journal", count)
        return count

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
            raw = batch.SerializeToString()
            decoded = decode(batch)
        except MalformedBatch as exc:
            return PushResult(Outcome.MALFORMED, f"malformed ProfileBatch: {exc}")
        self.metrics.received_bytes.inc(len(raw))
        with self._lock:
            return self._accept(decoded, raw)

    def _accept(self, decoded: Decoded, raw: bytes) -> PushResult:
        agent_id = decoded.identity.agent_id
        if self.deduper.contains(agent_id, decoded.sequence):
            self.metrics.dedupe_hits.inc()
            info = self.agents.get(agent_id)
            if info is not None:
                info.duplicates += 1
            return PushResult(Outcome.DUPLICATE, "already stored")
        if self.journal is not None:
            try:
                self.journal.append(raw)
            except OSError as exc:
                log.error("journal write failed: %s", exc)
                return PushResult(
                    Outcome.UNAVAILABLE, f"the aggregator cannot persist batches now ({exc})", 5000
                )
        self.deduper.add(agent_id, decoded.sequence)
        self._store(decoded, raw, time.time_ns(), journal=True)
        hint = 0
        if self.buffer.utilization >= self.backpressure_ratio:
            hint = 1000  # nearly full: ask agents to slow down a little
        return PushResult(Outcome.ACCEPTED, retry_after_ms=hint)

    def _store(self, decoded: Decoded, raw: bytes, now_ns: int, *, journal: bool) -> None:
        batch = BufferedBatch.of(decoded, raw, now_ns, stacks=0)
        self.buffer.add(batch)
        ident = decoded.identity
        info = self.agents.get(ident.agent_id)
        if info is None:
            info = self.agents[ident.agent_id] = AgentInfo(
                ident.agent_id, ident.host, first_seen_ns=now_ns
            )
            self.metrics.agents.set(len(self.agents))
        info.host, info.labels, info.version = ident.host, dict(ident.labels), ident.version
        info.pushes += 1
        info.bytes += len(raw)
        info.last_push_ns = now_ns
        info.push_times.append(now_ns)
        info.last_sequence = max(info.last_sequence, decoded.sequence)
        self.metrics.agent_last_seen.labels(ident.agent_id).set(now_ns / 1e9)
        for event_type, profile in decoded.profiles.items():
            if event_type is EventType.CPU:
                n = profile.total
            elif event_type is EventType.LOCK:
                n = sum(lock.contentions for lock in profile.locks)
            else:
                n = sum(call.count for call in profile.syscalls)
            self.metrics.samples.labels(str(event_type)).inc(n)
        self.refresh_gauges()

    def refresh_gauges(self) -> None:
        stats = self.buffer.stats
        self.metrics.buffer_bytes.set(stats.bytes)
        self.metrics.buffer_batches.set(stats.batches)
        self.metrics.buffer_utilization.set(self.buffer.utilization)

    def on_evict(self, _batch: BufferedBatch) -> None:
        self.metrics.buffer_evictions.inc()


def journal_dir(data_dir: Path) -> Path:
    return data_dir / "journal"
