"""Kernel symbols from ``/proc/kallsyms``.

Only text symbols (``t``/``T``/``w``/``W``) are kept. Module symbols (a trailing
``[mod]`` column, which also covers BPF programs as ``[bpf]``) keep their module;
everything else is ``[kernel]``. Kernel symbols have no size: a symbol covers the
addresses up to the next symbol, and the last one covers at most one page.
"""

from __future__ import annotations

import array
import bisect
import itertools
import operator
import sys
from collections.abc import Sequence
from typing import BinaryIO

from aperture.agent import native
from aperture.model import Frame, FrameKind

KALLSYMS_PATH = "/proc/kallsyms"
KERNEL_MODULE = "[kernel]"
_TEXT_TYPES = frozenset("tTwW")
_LAST_SYMBOL_SPAN = 4096


class KernelSymbols:
    """Address → kernel function, by bisection over sorted start addresses.

    Held compactly (a host has 120k-200k text symbols): the addresses as one array
    of 64-bit words, the entries as one string with an array of offsets into it,
    about 5 MB instead of 15 MB of Python ints and strings.
    """

    __slots__ = ("_addrs", "_ends", "_order", "_text")

    def __init__(self, addrs: Sequence[int], entries: Sequence[str]) -> None:
        # ``entries`` are kallsyms' ``name`` or ``name\t[mod]`` strings, split lazily:
        # only the few thousand symbols that appear in stacks are ever looked at.
        self._addrs = addrs if isinstance(addrs, array.array) else array.array("Q", addrs)
        self._text = "".join(entries)
        self._ends = array.array("Q", itertools.accumulate(map(len, entries)))
        self._order: array.array[int] | None = None  # sorted index -> entry, if not the same

    @classmethod
    def load(cls, path: str = KALLSYMS_PATH) -> KernelSymbols:
        """Read a kallsyms file; an unreadable or address-less one gives no symbols.

        Read and kept a block of lines at a time: the whole text as 120k line strings
        was a 34 MB peak on top of the 11 MB held, the agent's peak RSS at its first
        drain. A file with a line that is not hex is parsed again whole, by :meth:`parse`.
        """
        try:
            with open(path, "rb") as f:
                found = cls._load_native(f)
                if found is not None:
                    return found
                f.seek(0)
                found = cls._load_blocks(f)
                if found is not None:
                    return found
                f.seek(0)
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return cls([], [])
        return cls.parse(text)

    @classmethod
    def _load_native(cls, f: BinaryIO) -> KernelSymbols | None:
        """:meth:`load` in C (a tenth of the time): the file read whole (5 MB here, in
        one buffer), its rows made by the agent's library; None without it, or for a
        file it leaves to :meth:`_load_blocks`."""
        found = native.kallsyms(f)
        if found is None:
            return None
        addrs, text, ends = found
        return cls._made(addrs, text, ends)

    @classmethod
    def _made(cls, addrs: array.array[int], text: str, ends: array.array[int]) -> KernelSymbols:
        """The symbols of file-ordered columns (addresses sorted here, if they are not)."""
        if not addrs or not any(addrs):
            return cls([], [])  # kptr_restrict hides addresses (all zero)
        symbols = cls.__new__(cls)
        symbols._text, symbols._ends, symbols._order = text, ends, None
        first = next((i + 1 for i, (a, b) in enumerate(itertools.pairwise(addrs)) if a > b), None)
        if first is not None:
            # BPF programs' symbols come last, out of order: the addresses are sorted
            # (the tail from the first step down, merged into the sorted head; a stable
            # sort) and the entries stay in file order, reached through the permutation
            order, addrs = _merged_order(addrs, first)
            symbols._order = order
        symbols._addrs = addrs
        return symbols

    @classmethod
    def _load_blocks(cls, f: BinaryIO) -> KernelSymbols | None:
        """:meth:`load`, a block at a time; None when the file needs :meth:`parse`."""
        addrs: array.array[int] = array.array("Q")
        ends: array.array[int] = array.array("Q")
        parts: list[str] = []
        width = -1
        rest = b""
        at = 0
        while True:
            block = f.read(_BLOCK)
            data = rest + block
            cut = data.rfind(b"\n") + 1 if block else len(data)
            if not data:
                break
            lines = data[:cut].decode("utf-8", "replace").splitlines()
            rest = data[cut:]
            if width < 0 and lines:
                width = lines[0].find(" ")
                if width <= 0:
                    return cls([], [])
            found = _text_rows(lines, width)
            if found is None:
                return None
            words, entries = found
            addrs.extend(words)
            parts.append("".join(entries))
            ends.extend(itertools.accumulate(map(len, entries), initial=at))
            ends.pop(len(ends) - len(entries) - 1)  # the block's start, already there
            at = ends[-1] if ends else 0
            if not block:
                break
        return cls._made(addrs, "".join(parts), ends)

    @classmethod
    def parse(cls, text: str) -> KernelSymbols:
        """Parse kallsyms text (``ADDR TYPE NAME[\\t[MOD]]`` lines)."""
        lines = text.splitlines()
        if not lines:
            return cls([], [])
        width = lines[0].find(" ")
        if width <= 0:
            return cls([], [])
        found = _text_rows(lines, width)
        if found is None:
            return cls._parse_slow(lines, width)
        addrs, entries = found
        if not addrs or not any(addrs):
            # kptr_restrict hides addresses (all zero): no usable symbols.
            return cls([], [])
        if any(itertools.starmap(operator.gt, itertools.pairwise(addrs))):
            order = sorted(range(len(addrs)), key=addrs.__getitem__)
            addrs = array.array(addrs.typecode, [addrs[i] for i in order])
            entries = [entries[i] for i in order]
        return cls(addrs, entries)

    @classmethod
    def _parse_slow(cls, lines: list[str], width: int) -> KernelSymbols:
        name_at = width + 3
        pairs: list[tuple[int, str]] = []
        for line in _text_lines(lines, width):
            try:
                pairs.append((int(line[:width], 16), line[name_at:]))
            except ValueError:
                continue
        pairs.sort(key=lambda p: p[0])
        if not any(a for a, _ in pairs):
            return cls([], [])
        return cls([a for a, _ in pairs], [e for _, e in pairs])

    def __len__(self) -> int:
        return len(self._addrs)

    def lookup(self, addr: int) -> tuple[str, str, int] | None:
        """``(name, module, start)`` of the symbol covering ``addr``, or None."""
        addrs = self._addrs
        i = bisect.bisect_right(addrs, addr) - 1
        if i < 0:
            return None
        start = addrs[i]
        if i == len(addrs) - 1 and addr - start >= _LAST_SYMBOL_SPAN:
            return None
        j = i if self._order is None else self._order[i]
        entry = self._text[self._ends[j - 1] if j else 0 : self._ends[j]]
        name, _, mod = entry.partition("\t")
        return name, mod.strip() or KERNEL_MODULE, start

    def resolve(self, addr: int) -> Frame:
        """A KERNEL frame for ``addr``; unresolved ones are named ``[kernel]+0xADDR``."""
        found = self.lookup(addr)
        if found is None:
            return Frame(f"{KERNEL_MODULE}+0x{addr:x}", KERNEL_MODULE, FrameKind.KERNEL, addr)
        return Frame(found[0], found[1], FrameKind.KERNEL, addr)


_BLOCK = 1 << 18


def _merged_order(addrs: array.array[int], first: int) -> tuple[array.array[int], array.array[int]]:
    """The permutation sorting ``addrs`` (sorted up to ``first``; the tail, a few dozen
    BPF programs, is not) and the sorted addresses. Stable: a tail entry comes after
    head entries of its address. Built a run of the head at a time."""
    head = addrs[:first]
    tail = sorted(range(first, len(addrs)), key=addrs.__getitem__)
    order: array.array[int] = array.array("L")
    ordered: array.array[int] = array.array("Q")
    done = 0
    for t in tail:
        at = bisect.bisect_right(head, addrs[t], lo=done)
        order.extend(range(done, at))
        ordered.extend(head[done:at])
        order.append(t)
        ordered.append(addrs[t])
        done = at
    order.extend(range(done, first))
    ordered.extend(head[done:])
    return order, ordered


def _text_rows(lines: list[str], width: int) -> tuple[array.array[int], list[str]] | None:
    """The text symbols' addresses and ``name[\t[mod]]`` entries of kallsyms lines; None
    if an address is not hex."""
    rows = _text_lines(lines, width)
    try:
        raw = bytes.fromhex("".join([line[:width] for line in rows]))
    except ValueError:
        return None
    return _hex_words(raw, width // 2), [line[width + 3 :] for line in rows]


def _text_lines(lines: list[str], width: int) -> list[str]:
    """The lines of text symbols. Slicing fixed columns is several times faster than
    split() or a regex on 120k lines; a malformed line (too short, wrong width) is
    dropped."""
    kind_at, name_at = width + 1, width + 3
    return [
        line
        for line in lines
        if len(line) > name_at and line[kind_at] in _TEXT_TYPES and line[width] == " "
    ]


def _hex_words(raw: bytes, size: int) -> array.array[int]:
    """Big-endian words of ``size`` bytes (from hex text), in bulk, as 64-bit words."""
    code = {8: "Q", 4: "I"}.get(size)
    if code is None or array.array(code).itemsize != size:
        return array.array(
            "Q", (int.from_bytes(raw[i : i + size], "big") for i in range(0, len(raw), size))
        )
    words = array.array(code)
    words.frombytes(raw)
    if sys.byteorder == "little":
        words.byteswap()
    return words if code == "Q" else array.array("Q", words)
