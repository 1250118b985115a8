"""JIT symbols from a ``/tmp/perf-PID.map`` file.

Each line is ``START SIZE name`` with START and SIZE in hex (with or without
``0x``); the name runs to the end of the line and may contain spaces. Written by
Node ``--perf-basic-prof``, Java perf-map-agent and CPython 3.12+ ``-X perf``.
JITs append as they compile, so a lookup that misses re-reads the file when its
size or modification time changed. A later entry for the same start wins
(recompiled code).
"""

from __future__ import annotations

import bisect
import os

from aperture.model import Frame, FrameKind

JIT_MODULE = "[jit]"


class PerfMap:
    """Sorted ``START SIZE name`` entries of one perf map file."""

    __slots__ = ("_names", "_sizes", "_stamp", "_starts", "path")

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._starts: list[int] = []
        self._sizes: list[int] = []
        self._names: list[str] = []
        self.refresh()

    def __len__(self) -> int:
        return len(self._starts)

    def refresh(self) -> bool:
        """Re-read the file if its size or mtime changed; True when it was re-read."""
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        stamp = (st.st_size, st.st_mtime_ns)
        if stamp == self._stamp:
            return False
        try:
            with open(self.path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return False
        self._stamp = stamp
        self._load(text)
        return True

    def _load(self, text: str) -> None:
        entries: dict[int, tuple[int, str]] = {}
        for line in text.splitlines():
            parts = line.split(maxsplit=2)
            if len(parts) < 3:
                continue
            try:
                start, size = int(parts[0], 16), int(parts[1], 16)
            except ValueError:
                continue
            if size > 0:
                entries[start] = (size, parts[2].rstrip())
        starts = sorted(entries)
        self._starts = starts
        self._sizes = [entries[s][0] for s in starts]
        self._names = [entries[s][1] for s in starts]

    def lookup(self, addr: int) -> tuple[str, int] | None:
        """``(name, start)`` of the entry covering ``addr``; re-reads a grown file."""
        found = self._find(addr)
        if found is None and self.refresh():
            found = self._find(addr)
        return found

    def _find(self, addr: int) -> tuple[str, int] | None:
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0 and addr < self._starts[i] + self._sizes[i]:
            return self._names[i], self._starts[i]
        return None

    def resolve(self, addr: int) -> Frame | None:
        """A JIT frame (module ``[jit]``, offset = the raw address), or None."""
        found = self.lookup(addr)
        if found is None:
            return None
        return Frame(found[0], JIT_MODULE, FrameKind.JIT, addr)
