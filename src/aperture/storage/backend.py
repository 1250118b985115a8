"""The aggregator's query ``Backend`` answered from the store (docs/api.md shapes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aperture.model import Profile
from aperture.query.filter import QueryFilter
from aperture.storage import queries
from aperture.storage.store import Store


class StoreBackend:
    """Drop-in for ``BufferBackend``: same methods, same answers, over all stored data.

    Calls block on ClickHouse: from the event loop, run them in a worker thread.
    """

    def __init__(self, store: Store, before_query: Callable[[], object] | None = None) -> None:
        """``before_query`` runs before every answer (the aggregator lets the batches
        queued for the store reach it first: read your writes)."""
        self.store = store
        self._before = before_query

    def _store(self) -> Store:
        if self._before is not None:
            self._before()
        return self.store

    def flamegraph(self, f: QueryFilter, max_nodes: int) -> dict[str, Any]:
        return queries.flamegraph_tree(self._store(), f, max_nodes)

    def top(self, f: QueryFilter, limit: int, sort: str) -> dict[str, Any]:
        return queries.top(self._store(), f, limit, sort)

    def diff(
        self, base: QueryFilter, comp: QueryFilter, max_nodes: int, limit: int
    ) -> dict[str, Any]:
        return queries.diff(self._store(), base, comp, max_nodes, limit)

    def timeline(self, f: QueryFilter, step_s: int, group_by: str | None) -> dict[str, Any]:
        return queries.timeline(self._store(), f, step_s, group_by)

    def syscalls(self, f: QueryFilter, per_process: bool) -> dict[str, Any]:
        return queries.syscalls(self._store(), f, per_process)

    def locks(self, f: QueryFilter, limit: int) -> dict[str, Any]:
        return queries.locks(self._store(), f, limit)

    def unwind(self, f: QueryFilter) -> dict[str, Any]:
        return queries.unwind(self._store(), f)

    def export_profile(self, f: QueryFilter) -> Profile:
        return queries.export_profile(self._store(), f)
