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
from aperture.errors import AgentError
from aperture.model import Profile

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

    def __init__(
        self, settings: StorageSettings, metrics: Metrics, journal: Journal | None = None
    ) -> None:
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
            raise AgentError(f"cannot open the store: {str(exc).rstrip('.')}.") from None
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
        self.backend = FreshBackend(StoreBackend(self.store), self.writer)

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


class FreshBackend:
    """Store queries that first let queued batches reach the store (read your writes).

    The wait is bounded (``max_wait_s``): under a heavy, continuous ingest a query
    answers after at most that long with whatever the store holds then.
    """

    def __init__(self, inner: Any, writer: Any, max_wait_s: float = 1.0) -> None:
        self._inner = inner
        self._writer = writer
        self._max_wait_s = max_wait_s

    def _settle(self) -> None:
        if self._writer.stats().pending_batches:
            self._writer.flush(self._max_wait_s)

    def flamegraph(self, f: Any, max_nodes: int) -> dict[str, Any]:
        self._settle()
        return dict(self._inner.flamegraph(f, max_nodes))

    def top(self, f: Any, limit: int, sort: str) -> dict[str, Any]:
        self._settle()
        return dict(self._inner.top(f, limit, sort))

    def diff(self, base: Any, comp: Any, max_nodes: int, limit: int) -> dict[str, Any]:
        self._settle()
        return dict(self._inner.diff(base, comp, max_nodes, limit))

    def timeline(self, f: Any, step_s: int, group_by: str | None) -> dict[str, Any]:
        self._settle()
        return dict(self._inner.timeline(f, step_s, group_by))

    def syscalls(self, f: Any, per_process: bool) -> dict[str, Any]:
        self._settle()
        return dict(self._inner.syscalls(f, per_process))

    def locks(self, f: Any, limit: int) -> dict[str, Any]:
        self._settle()
        return dict(self._inner.locks(f, limit))

    def unwind(self, f: Any) -> dict[str, Any]:
        self._settle()
        return dict(self._inner.unwind(f))

    def export_profile(self, f: Any) -> Profile:
        self._settle()
        profile: Profile = self._inner.export_profile(f)
        return profile
