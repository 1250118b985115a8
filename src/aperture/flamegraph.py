"""Flamegraph trees as flat arrays (depth-first pre-order), pruning, and diff trees.

The layout is the one docs/api.md specifies: a string table and parallel
columns ``name, module, kind, line, depth, self, total``; node 0 is ``all``,
depth 1 the process names, then frames root-first. Children are ordered
heaviest first.

Nodes group frames by function (:func:`aperture.model.function_key`): two
samples of one Python function at different lines are one node. A node's
``line`` is its hottest line: the line that carried the most value through
the node (summed over every side of a diff; the smallest line on a tie), 0
when no frame of the node has a line (native frames, ``other``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from aperture.model import FrameKind, Profile

# node kinds on the wire
ROOT, USER, KERNEL, JIT, UNKNOWN, OTHER, PYTHON = range(7)
_KIND = {FrameKind.USER: USER, FrameKind.KERNEL: KERNEL, FrameKind.JIT: JIT,
         FrameKind.UNKNOWN: UNKNOWN, FrameKind.PYTHON: PYTHON}  # fmt: skip

Key = tuple[str, str, int]  # name, module, kind


@dataclass
class Node:
    key: Key
    self_values: list[int]
    total_values: list[int]
    children: dict[Key, Node] = field(default_factory=dict)
    # value through this node per source line (frames with a line only)
    lines: Counter[int] = field(default_factory=Counter)


def _new(key: Key, sides: int) -> Node:
    return Node(key, [0] * sides, [0] * sides)


def build(profiles_by_side: list[Iterable[Profile]]) -> Node:
    """One tree over any number of sides (1 for a flamegraph, 2 for a diff)."""
    sides = len(profiles_by_side)
    root = _new(("all", "", ROOT), sides)
    for side, profiles in enumerate(profiles_by_side):
        for profile in profiles:
            for sample in profile.samples:
                v = sample.value
                root.total_values[side] += v
                node = root
                path = [((sample.comm or f"pid {sample.pid}", "", ROOT), 0)]
                path += [((f.name, f.module, _KIND[f.kind]), f.line) for f in sample.stack]
                for key, line in path:
                    child = node.children.get(key)
                    if child is None:
                        child = node.children[key] = _new(key, sides)
                    child.total_values[side] += v
                    if line:
                        child.lines[line] += v
                    node = child
                node.self_values[side] += v
    return root


def hottest_line(lines: Counter[int]) -> int:
    """The line with the most value (the smallest on a tie), 0 for none."""
    return min(lines.items(), key=lambda kv: (-kv[1], kv[0]))[0] if lines else 0


def _count(node: Node) -> int:
    return 1 + sum(_count(c) for c in node.children.values())


def prune(root: Node, max_nodes: int) -> None:
    """Fold the lightest nodes of each parent into one ``other`` node, keeping weights."""
    if max_nodes <= 0 or _count(root) <= max_nodes:
        return
    weights: list[int] = []

    def collect(node: Node) -> None:
        for child in node.children.values():
            weights.append(max(child.total_values))
            collect(child)

    collect(root)
    weights.sort(reverse=True)
    threshold = weights[min(len(weights), max_nodes) - 1]

    def fold(node: Node) -> None:
        keep = {k: c for k, c in node.children.items() if max(c.total_values) >= threshold}
        dropped = [c for k, c in node.children.items() if k not in keep]
        if dropped:
            other = _new(("other", "", OTHER), len(node.total_values))
            for c in dropped:
                for side in range(len(other.total_values)):
                    other.total_values[side] += c.total_values[side]
                    other.self_values[side] += c.total_values[side]
            keep[other.key] = other
        node.children = keep
        for child in keep.values():
            if child.key[2] != OTHER:
                fold(child)

    fold(root)


@dataclass
class Flat:
    names: list[str]
    name: list[int]
    module: list[int]
    kind: list[int]
    depth: list[int]
    self_values: list[list[int]]
    total_values: list[list[int]]
    line: list[int] = field(default_factory=list)  # each node's hottest line, 0 for none


def flatten(root: Node) -> Flat:
    """Depth-first pre-order columns; children heaviest first (then by name)."""
    sides = len(root.total_values)
    table: dict[str, int] = {}
    flat = Flat([], [], [], [], [], [[] for _ in range(sides)], [[] for _ in range(sides)])

    def intern(text: str) -> int:
        index = table.get(text)
        if index is None:
            index = table[text] = len(flat.names)
            flat.names.append(text)
        return index

    stack: list[tuple[Node, int]] = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        name, module, kind = node.key
        flat.name.append(intern(name))
        flat.module.append(intern(module))
        flat.kind.append(kind)
        flat.line.append(hottest_line(node.lines))
        flat.depth.append(depth)
        for side in range(sides):
            flat.self_values[side].append(node.self_values[side])
            flat.total_values[side].append(node.total_values[side])
        children = sorted(node.children.values(), key=lambda c: (-sum(c.total_values), c.key))
        stack.extend((c, depth + 1) for c in reversed(children))
    return flat
