"""The one flamegraph tree: pre-order flat arrays over 1 (flamegraph) or 2 (diff) sides.

Both sources of the analysis API (the buffer's decoded batches and the store's
SQL) hand it ``(comm, pid, stack id, value)`` rows and the stacks those ids
name; the layout is the one docs/api.md specifies: a string table and parallel
columns ``name, module, kind, line, depth, self, total``; node 0 is ``all``,
depth 1 the process names, then frames root-first. Children are ordered
heaviest first (then by key); past ``max_nodes`` the lightest nodes of each
parent fold into one ``other`` node, keeping weights.

It is fast on tens of thousands of stacks: every path from the root is
interned once in a :class:`PathIndex` (a trie of node ids kept across
queries), so a query only gathers each row's cached path and sums values per
node with numpy; Python then walks just the nodes that survive pruning.

Nodes group frames by function (name, module, kind): two samples of one Python
function at different lines are one node. A node's ``line`` is its hottest
line: the line that carried the most value through the node (summed over
every side of a diff; the smallest line on a tie), 0 when no frame of the node
has a line (native frames, ``other``).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from aperture.model import FrameKind

if TYPE_CHECKING:
    from aperture.query.stacks import Stack

# node kinds on the wire
ROOT, USER, KERNEL, JIT, UNKNOWN, OTHER, PYTHON = range(7)
NODE_KIND = {FrameKind.USER: USER, FrameKind.KERNEL: KERNEL, FrameKind.JIT: JIT,
             FrameKind.UNKNOWN: UNKNOWN, FrameKind.PYTHON: PYTHON}  # fmt: skip
Key = tuple[str, str, int]  # name, module, node kind

I64 = npt.NDArray[np.int64]
Row = tuple[str, int, int, int]  # comm, pid if comm is empty, stack hash, value
ROOT_KEY: Key = ("all", "", ROOT)
OTHER_KEY: Key = ("other", "", OTHER)


class PathIndex:
    """Node ids for every path from the root; one id per distinct path, ever."""

    def __init__(self) -> None:
        self.parent: list[int] = [-1]
        self.keys: list[Key] = [ROOT_KEY]
        self._child: dict[tuple[int, Key], int] = {}
        self._paths: dict[tuple[str, int, int], I64] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.keys)

    def path(self, comm: str, pid: int, h: int, stack: Stack) -> I64:
        """Ids of the process node and each frame node of one row (cached)."""
        ident = (comm, pid, h)
        ids = self._paths.get(ident)
        if ids is not None:
            return ids
        with self._lock:
            out = []
            node = 0
            for key in ((comm or f"pid {pid}", "", ROOT), *stack.keys):
                child = self._child.get((node, key))
                if child is None:
                    child = self._child[(node, key)] = len(self.keys)
                    self.keys.append(key)
                    self.parent.append(node)
                out.append(child)
                node = child
            ids = self._paths[ident] = np.array(out, dtype=np.int64)
        return ids


def sum_by(ids: I64, values: I64, n: int) -> I64:
    """Exact per-id sums of int64 values: ``np.add.at`` at ``np.bincount`` speed.

    bincount sums in float64, exact below 2^53, so the values go in as 26-bit
    halves (exact for up to ~100M values below 2^53 each).
    """
    lo = np.bincount(ids, weights=values & 0x3FFFFFF, minlength=n)
    hi = np.bincount(ids, weights=values >> 26, minlength=n)
    return (hi.astype(np.int64) << 26) + lo.astype(np.int64)


@dataclass
class Flat:
    """Pre-order nodes with per-side values, names interned in ``names``."""

    names: list[str]
    name: list[int]
    module: list[int]
    kind: list[int]
    depth: list[int]
    self_values: list[list[int]]
    total_values: list[list[int]]
    line: list[int] = field(default_factory=list)  # each node's hottest line, 0 for none
    order: list[int] = field(default_factory=list)  # each node's PathIndex id, -1 for other


def _hottest_lines(ids: I64, lines: I64, values: I64) -> dict[int, int]:
    """node id -> the line with the most value through it, from aligned per-frame arrays."""
    lined = lines > 0
    if not lined.any():
        return {}
    pairs, inverse = np.unique((ids[lined] << 32) | lines[lined], return_inverse=True)
    sums = sum_by(inverse.ravel(), values[lined], len(pairs))
    node, line = pairs >> 32, pairs & 0xFFFFFFFF
    order = np.lexsort((line, -sums, node))  # per node: heaviest first, then smallest line
    node, line = node[order], line[order]
    first = np.ones(len(node), dtype=bool)
    first[1:] = node[1:] != node[:-1]
    return dict(zip(node[first].tolist(), line[first].tolist(), strict=True))


def flat_tree(
    index: PathIndex, sides: Sequence[Sequence[Row]], stacks: Mapping[int, Stack], max_nodes: int
) -> Flat:
    """The pruned pre-order tree over 1 (flamegraph) or 2 (diff) sides."""
    paths = [[index.path(c, p, h, stacks[h]) for c, p, h, _ in rows] for rows in sides]
    n = len(index)
    parent = np.array(index.parent[:n], dtype=np.int64)
    touched = np.zeros(n, dtype=bool)
    touched[0] = True
    totals, selves = [], []
    line_parts: list[tuple[I64, I64, I64]] = []  # (node ids, lines, values) of every side
    for rows, side in zip(sides, paths, strict=True):
        total = np.zeros(n, dtype=np.int64)
        self_ = np.zeros(n, dtype=np.int64)
        if rows:
            values = np.array([v for *_, v in rows], dtype=np.int64)
            ids = np.concatenate(side)
            total = sum_by(ids, np.repeat(values, [len(p) for p in side]), n)
            self_ = sum_by(np.array([p[-1] for p in side], dtype=np.int64), values, n)
            total[0] = values.sum()
            touched[ids] = True
            # the process node has no line; each frame node the line of its frame
            lines = np.concatenate([np.concatenate(([0], stacks[h].lines)) for _, _, h, _ in rows])
            line_parts.append((ids, lines, np.repeat(values, [len(p) for p in side])))
        totals.append(total)
        selves.append(self_)
    kept = touched.copy()
    weight = np.max(totals, axis=0)
    count = int(touched.sum())
    if 0 < max_nodes < count:
        ranked = weight[1:][touched[1:]]
        k = min(len(ranked), max_nodes)  # the k-th heaviest node sets the bar
        threshold = np.partition(ranked, len(ranked) - k)[len(ranked) - k]
        kept &= weight >= threshold  # a child weighs no more than its parent: ancestors stay
        kept[0] = True
    flat = _flatten(index, parent, kept, touched & ~kept & kept[parent], totals, selves)
    if line_parts:
        hot = _hottest_lines(*(np.concatenate(part) for part in zip(*line_parts, strict=True)))
        flat.line = [hot.get(node, 0) for node in flat.order]
    else:
        flat.line = [0] * len(flat.kind)
    return flat


def _flatten(
    index: PathIndex,
    parent: I64,
    kept: npt.NDArray[np.bool_],
    dropped: npt.NDArray[np.bool_],
    totals: list[I64],
    selves: list[I64],
) -> Flat:
    n, sides = len(parent), len(totals)
    nodes = np.flatnonzero(kept)
    node_list = nodes.tolist()
    weight = dict(zip(node_list, np.sum(totals, axis=0)[nodes].tolist(), strict=True))
    keys = index.keys
    children: dict[int, list[int]] = {}
    for i, p in zip(node_list[1:], parent[nodes[1:]].tolist(), strict=True):
        children.setdefault(p, []).append(i)
    # One "other" per parent with dropped children (id n + j): their sum, on every side.
    owners = parent[dropped]
    heads = np.unique(owners)
    other_sums = []
    for t in totals:
        other_sums.append(sum_by(owners, t[dropped], n)[heads])
    other_weight = np.sum(other_sums, axis=0).tolist() if len(heads) else []
    for j, p in enumerate(heads.tolist()):
        weight[n + j] = other_weight[j]
        children.setdefault(p, []).append(n + j)

    def key(node: int) -> Key:
        return keys[node] if node < n else OTHER_KEY

    order: list[int] = []
    depth: list[int] = []
    todo = [(0, 0)]
    while todo:
        node, d = todo.pop()
        order.append(node)
        depth.append(d)
        kids = children.get(node)
        if kids:
            kids.sort(key=lambda c: (-weight[c], key(c)))
            todo.extend((c, d + 1) for c in reversed(kids))
    at = np.array(order, dtype=np.int64)
    real = at < n
    flat = Flat([], [], [], [], depth, [], [])
    flat.order = [node if node < n else -1 for node in order]
    for t, x, o in zip(totals, selves, other_sums, strict=True):
        total = np.empty(len(at), dtype=np.int64)
        self_ = np.empty(len(at), dtype=np.int64)
        total[real], self_[real] = t[at[real]], x[at[real]]
        total[~real] = self_[~real] = o[at[~real] - n]
        flat.total_values.append(total.tolist())
        flat.self_values.append(self_.tolist())
    table: dict[str, int] = {}
    names = flat.names
    for node in order:
        name, module, kind = key(node)
        for text, column in ((name, flat.name), (module, flat.module)):
            pos = table.get(text)
            if pos is None:
                pos = table[text] = len(names)
                names.append(text)
            column.append(pos)
        flat.kind.append(kind)
    assert sides == len(flat.total_values)
    return flat
