"""The aggregator's store: opened with clear errors, fed by a background writer.

Accepted batches are journaled first, then queued for the store; the writer
retries store failures with backoff, and its queue is bounded by refusing pushes
that would not fit (``has_room``), never by dropping what it holds. The journal
keeps each batch until the writer says the store has it. On start the journal is
replayed into the writer too: the store skips batches it already holds, so a
crash between journal and store loses nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from aperture.aggregator.journal import Journal
from aperture.aggregator.metrics import Metrics
from aperture.errors import UserError

log = logging.getLogger("aperture.aggregator")


@dataclass(frozen=True)
class StorageSettings:
    dsn: str
    database: str = "aperture"
    username: str | None = None
    password: str | None = None
    retention_days: int = 7
    max_pending_bytes: int = 256 << 20


# A large import (google/pprof's large.cpu: 24k samples, 20k stacks) takes over a second
# to write on a loaded 2-core host; a query waits this long for what was queued before it.
SETTLE_S = 10.0


class StorageLink:
    """A Store, its StorageWriter and the metrics that show them."""

    def __init__(
        self, settings: StorageSettings, metrics: Metrics, journal: Journal | None = None
    ) -> None:
        try:
            from aperture.storage import StorageWriter, Store, StoreError, StoreSource
        except ModuleNotFoundError as exc:
            raise UserError(
                f"{exc.name} is not installed: install the aggregator extras "
                "(pip install 'aperture[aggregator]') or run with --no-storage."
            ) from None
        try:
            self.store = Store.open(
                settings.dsn,
                database=settings.database,
                retention_days=settings.retention_days,
                username=settings.username,
                password=settings.password,
            )
        except StoreError as exc:
            raise UserError(f"cannot open the store: {str(exc).rstrip('.')}.") from None
        self.metrics = metrics

        def on_flush(status: str, seconds: float) -> None:
            metrics.storage_flushes.labels("ok" if status == "ok" else "error").inc()
            metrics.storage_flush_seconds.observe(seconds)

        def on_done(segments: list[object]) -> None:
            if journal is not None:
                journal.release([s for s in segments if isinstance(s, int)])

        self.writer = StorageWriter(
            self.store,
            max_pending_bytes=settings.max_pending_bytes,
            on_flush=on_flush,
            on_done=on_done,
        ).start()
        self.source = StoreSource(self.store, before_query=self._settle)

    def _settle(self, max_wait_s: float = SETTLE_S) -> None:
        """Before a query: let the batches queued until now reach the store (read your
        writes: an import answered "stored" is found), waiting at most ``max_wait_s``
        (a store that slow answers with whatever it holds then)."""
        if self.writer.stats().pending_batches:
            self.writer.flush(max_wait_s)

    def submit(self, raw: bytes, segment: int | None = None) -> None:
        """Queue an accepted batch; ``segment``: the journal's, released once stored."""
        self.writer.submit(raw, segment)

    def has_room(self, size: int) -> bool:
        """Whether the writer's bounded queue takes ``size`` more bytes without a drop."""
        return bool(self.writer.has_room(size))

    def fill(self) -> float:
        """How full the writer's queue is (its bytes over the bound)."""
        return float(self.writer.fill())

    def refresh_gauges(self) -> None:
        stats = self.writer.stats()
        self.metrics.storage_pending_rows.set(stats.pending_rows)
        self.metrics.storage_pending_bytes.set(stats.pending_bytes)

    def health(self) -> dict[str, Any]:
        stats = self.writer.stats()
        return {
            "dsn": self.store.dsn if not self.store.dsn.startswith("http") else "clickhouse",
            "reachable": self.store.ping(),
            "pending_batches": stats.pending_batches,
            "pending_rows": stats.pending_rows,
            "written_batches": stats.written_batches,
            "flush_ok": stats.flush_ok,
            "flush_failed": stats.flush_failed,
            "last_error": stats.last_error,
        }

    def close(self, timeout_s: float = 30.0) -> None:
        """Write what is queued (within ``timeout_s``), then close the store."""
        if not self.writer.drain(timeout_s):
            log.warning(
                "the store did not take every batch before shutdown; they stay in the "
                "journal and are written on the next start"
            )
        self.store.close()
