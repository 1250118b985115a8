"""JIT symbols from a ``/tmp/perf-PID.map`` file.

Each line is ``START SIZE name`` with START and SIZE in hex (with or without
``0x``); the name runs to the end of the line and may contain spaces. Written by
Node ``--perf-basic-prof``, Java perf-map-agent and CPython 3.12+ ``-X perf``.
JITs append as they compile, so a lookup that misses re-reads the file when its
size or modification time changed. A later entry for the same start wins
(recompiled code).

Anyone can create ``/tmp/perf-PID.map`` for someone else's pid: the file must be a
regular file, no link, owned by root or by the process (``owners``). At most
:data:`~aperture.agent.untrusted.MAX_PERF_MAP_BYTES` are read and lines over
:data:`~aperture.agent.untrusted.MAX_PERF_MAP_LINE` skipped; ``bytes_skipped``
and ``refusals`` count what was left out.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Collection

from aperture.agent.untrusted import (
    MAX_PERF_MAP_BYTES,
    MAX_PERF_MAP_LINE,
    RefusedFile,
    open_untrusted,
    read_bounded,
)
from aperture.model import Frame, FrameKind

JIT_MODULE = "[jit]"


class PerfMap:
    """Sorted ``START SIZE name`` entries of one perf map file."""

    __slots__ = (
        "_names",
        "_owners",
        "_sizes",
        "_stamp",
        "_starts",
        "bytes_skipped",
        "path",
        "refusals",
        "refused",
    )

    def __init__(self, path: str, *, owners: Collection[int] | None = None) -> None:
        """``owners``: the uids besides root the file may belong to (None: any)."""
        self.path = path
        self._owners = owners
        self._stamp: tuple[int, int] | None = None
        self._starts: list[int] = []
        self._sizes: list[int] = []
        self._names: list[str] = []
        self.refused: str | None = None  # why the last read was refused
        self.refusals = 0  # reads refused (a FIFO, a link, another owner)
        self.bytes_skipped = 0  # past the read bound or in over-long lines, all reads
        self.refresh()

    def __len__(self) -> int:
        return len(self._starts)

    def refresh(self) -> bool:
        """Re-read the file if its size or mtime changed; True when it was re-read.

        A refused file keeps the entries read before (none at first) until it changes.
        """
        try:
            st = os.lstat(self.path)  # cheap, and no open: a miss calls this each time
        except OSError:
            return False
        stamp = (st.st_size, st.st_mtime_ns)
        if stamp == self._stamp:
            return False
        try:
            with open_untrusted(self.path, owners=self._owners) as f:
                data, beyond = read_bounded(f, MAX_PERF_MAP_BYTES)
        except RefusedFile as e:
            self._stamp = stamp  # not retried until it changes
            self.refused = str(e)
            self.refusals += 1
            return False
        except OSError:
            return False
        self._stamp = stamp
        self.refused = None
        self.bytes_skipped += beyond
        self._load(data, cut=beyond > 0)
        return True

    def _load(self, data: bytes, *, cut: bool) -> None:
        """Parse ``data``; ``cut``: it stops at the read bound, mid-line perhaps."""
        entries: dict[int, tuple[int, str]] = {}
        lines = data.split(b"\n")
        if cut:
            self.bytes_skipped += len(lines.pop())
        for line in lines:
            if len(line) > MAX_PERF_MAP_LINE:
                self.bytes_skipped += len(line) + 1
                continue
            parts = line.split(maxsplit=2)
            if len(parts) < 3:
                continue
            try:
                start, size = int(parts[0], 16), int(parts[1], 16)
            except ValueError:
                continue
            if start >= 0 and size > 0:
                entries[start] = (size, parts[2].rstrip().decode("utf-8", "replace"))
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
