"""A collector whose every drained window passes through a filter (the agent's hook)."""

from __future__ import annotations

from aperture.agent.recorder import Collector
from aperture.filters.host import WasmFilter, apply_filter
from aperture.model import Profile


class FilteredCollector:
    """Filters each window right after the drain, so pushes and local output agree."""

    def __init__(self, inner: Collector, flt: WasmFilter) -> None:
        self.inner = inner
        self.filter = flt

    def start(self) -> None:
        self.inner.start()

    def drain(self) -> Profile:
        return apply_filter(self.filter, self.inner.drain())

    def sample_count(self) -> int:
        return self.inner.sample_count()

    def close(self) -> None:
        self.inner.close()
