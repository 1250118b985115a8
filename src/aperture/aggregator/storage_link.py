"""The aggregator's store: opened with clear errors, fed by a background writer.

Accepted batches are journaled first, then queued for the store; the writer
retries store failures with backoff and its queue is bounded (overflow dropped
oldest-first and counted). On start the journal is replayed into the writer
too: the store skips batches it already holds, so a crash between journal and
store loses nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from aperture.aggregator.metrics import Metrics
from aperture.errors import AgentError

log = logging.getLogger("aperture.aggregator")


@dataclass(frozen=True)
class StorageSettings:
    dsn: str
    database: str = "aperture"
    username: str | None = None
    password: str | None = None
    retention_days: int = 7
    max_pending_bytes: int = 256 << 20


class StorageLink:
    """A Store, its StorageWriter and the metrics that show them."""

    def __init__(self, settings: StorageSettings, metrics: Metrics) -> None:
        try:
            from aperture.storage import StorageWriter, Store, StoreBackend, StoreError
        except ModuleNotFoundError as exc:
            raise AgentError(
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
            raise AgentError(f"cannot open the store: {exc}") from None
        self.metrics = metrics

        def on_flush(status: str, seconds: float) -> None:
            metrics.storage_flushes.labels("ok" if status == "ok" else "error").inc()
            metrics.storage_flush_seconds.observe(seconds)

        self.writer = StorageWriter(
            self.store, max_pending_bytes=settings.max_pending_bytes, on_flush=on_flush
        ).start()
        self.backend = StoreBackend(self.store)

    def submit(self, raw: bytes) -> None:
        self.writer.submit(raw)

    def refresh_gauges(self) -> None:
        stats = self.writer.stats()
        self.metrics.storage_pending_rows.set(stats.pending_rows)
        self.metrics.storage_pending_bytes.set(stats.pending_bytes)
        self.metrics.storage_dropped.set(stats.dropped_batches)

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
            "dropped_batches": stats.dropped_batches,
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
