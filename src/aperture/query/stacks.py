"""Stacks as the query answers read them, cached by id: a stack never changes for its id.

The store's queries aggregate samples by ``stack_hash`` in SQL and resolve only
the distinct hashes here (after the first query over a range, resolving costs a
dictionary lookup per stack); the buffer's source puts the stacks of its
decoded batches here under ids of its own.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from aperture.model import Frame, FrameKind
from aperture.query.tree import NODE_KIND, Key

_FRAME_KIND = {kind.value: kind for kind in FrameKind}
FETCH_CHUNK = 5000  # hashes per query (a server takes parameters in the URL)


@dataclass(frozen=True, slots=True, eq=False)
class Stack:
    frames: tuple[Frame, ...]
    keys: tuple[Key, ...]  # flamegraph node keys, root first
    lines: npt.NDArray[np.int64]  # each frame's source line (0 = none), root first
    functions: npt.NDArray[np.int64]  # distinct function ids (indexes into ``table``)
    leaf: int  # the leaf's function id, -1 for an empty stack
    table: list[tuple[str, str]]  # (name, module) of each function id


EMPTY = Stack((), (), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), -1, [])
Fetch = Callable[[list[int]], Iterable[Sequence[Any]]]


class StackCache:
    """hash → :class:`Stack`, bounded (oldest evicted), shared by query threads.

    Frames and keys are interned so a cached frame costs one pointer per stack.
    """

    def __init__(self, max_stacks: int = 300_000) -> None:
        self.max_stacks = max_stacks
        self._stacks: OrderedDict[int, Stack] = OrderedDict()
        # (name, module, kind, offset, line) -> the frame, its flamegraph key and its function id
        self._frames: dict[tuple[str, str, str, int, int], tuple[Frame, Key, int]] = {}
        # (name, module) of each function id: top() sums values per id with numpy
        self.functions: list[tuple[str, str]] = []
        self._function_ids: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self.missing = 0  # hashes asked for that the table does not hold (expired)

    def _reset(self) -> None:
        # New containers, not clear(): a query still holding the old ones stays valid.
        self._stacks = OrderedDict()
        self._frames = {}
        self.functions, self._function_ids = [], {}

    def _frame(
        self, name: str, module: str, kind: str, offset: int, line: int
    ) -> tuple[Frame, Key, int]:
        """A new frame's shared Frame, node key and function id (one per function, any line)."""
        frame = Frame(name, module, _FRAME_KIND[kind], offset, line)
        key = (name, module, NODE_KIND[frame.kind])
        fid = self._function_ids.get((name, module))
        if fid is None:
            fid = self._function_ids[(name, module)] = len(self.functions)
            self.functions.append((name, module))
        return frame, key, fid

    def __len__(self) -> int:
        return len(self._stacks)

    def resolve(self, hashes: Iterable[int], fetch: Fetch) -> dict[int, Stack]:
        """Every hash's stack (:data:`EMPTY` for one the table lacks)."""
        out: dict[int, Stack] = {}
        wanted: list[int] = []
        with self._lock:
            for h in hashes:
                hit = self._stacks.get(h)
                if hit is None:
                    wanted.append(h)
                else:
                    out[h] = hit
        for i in range(0, len(wanted), FETCH_CHUNK):
            chunk = wanted[i : i + FETCH_CHUNK]
            rows = list(fetch(chunk))
            with self._lock:
                for h, names, modules, kinds, offsets, lines in rows:
                    out[h] = self._add_row(h, names, modules, kinds, offsets, lines)
        for h in wanted:
            if h not in out:
                out[h] = EMPTY
                self.missing += 1
        return out

    def put(self, h: int, frames: Sequence[Frame]) -> Stack:
        """The stack of ``frames`` cached under ``h`` (for stacks that are not in a table)."""
        idents = [(f.name, f.module, f.kind.value, f.offset, f.line) for f in frames]
        with self._lock:
            return self._add(h, idents)

    def _add_row(
        self,
        h: int,
        names: Sequence[str],
        modules: Sequence[str],
        kinds: Sequence[str],
        offsets: Sequence[int],
        lines: Sequence[int],
    ) -> Stack:
        # rows stored before frames had lines hold none: every line 0
        lines = lines if len(lines) else [0] * len(names)
        return self._add(h, list(zip(names, modules, kinds, offsets, lines, strict=True)))

    def _add(self, h: int, idents: list[tuple[str, str, str, int, int]]) -> Stack:
        known = self._frames
        frames: list[Frame] = []
        keys: list[Key] = []
        fids: list[int] = []
        for ident in idents:
            hit = known.get(ident)
            if hit is None:
                hit = known[ident] = self._frame(*ident)
            frame, key, fid = hit
            frames.append(frame)
            keys.append(key)
            fids.append(fid)
        distinct = np.fromiter(set(fids), dtype=np.int64, count=len(set(fids)))
        leaf = fids[-1] if fids else -1
        line_array = np.fromiter((i[4] for i in idents), dtype=np.int64, count=len(idents))
        stack = Stack(tuple(frames), tuple(keys), line_array, distinct, leaf, self.functions)
        if len(self._stacks) >= self.max_stacks:
            self._stacks.popitem(last=False)
        self._stacks[h] = stack
        if len(self._frames) > 8 * self.max_stacks:
            self._reset()
        return stack
