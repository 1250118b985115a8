"""One symbolizer shared by collectors that run on different threads."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from aperture.agent.symbols.process import ProcessMaps
from aperture.agent.symbols.symbolizer import Symbolizer, SymbolizerStats
from aperture.model import Frame


class ThreadSafeSymbolizer:
    """Serializes calls to a :class:`Symbolizer` (whose caches are not thread-safe)."""

    def __init__(self, inner: Symbolizer | None = None) -> None:
        self._inner = inner or Symbolizer()
        self._lock = threading.Lock()

    def remember(self, pid: int) -> bool:
        with self._lock:
            return self._inner.remember(pid)

    def keep(self, pid: int, maps: ProcessMaps | None) -> bool:
        with self._lock:
            return self._inner.keep(pid, maps)

    def serial(self, pid: int) -> int | None:
        with self._lock:
            return self._inner.serial(pid)

    def user_frames(self, pid: int, addrs: Sequence[int]) -> list[Frame]:
        with self._lock:
            return self._inner.user_frames(pid, addrs)

    def kernel_frames(self, addrs: Sequence[int]) -> list[Frame]:
        with self._lock:
            return self._inner.kernel_frames(addrs)

    def sweep_exited(self) -> int:
        with self._lock:
            return self._inner.sweep_exited()

    def stats(self) -> SymbolizerStats:
        with self._lock:
            return self._inner.stats()
