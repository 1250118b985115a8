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

    __slots__ = ("_addrs", "_ends", "_text")

    def __init__(self, addrs: Sequence[int], entries: Sequence[str]) -> None:
        # ``entries`` are kallsyms' ``name`` or ``name\t[mod]`` strings, split lazily:
        # only the few thousand symbols that appear in stacks are ever looked at.
        self._addrs = addrs if isinstance(addrs, array.array) else array.array("Q", addrs)
        self._text = "".join(entries)
        self._ends = array.array("Q", itertools.accumulate(map(len, entries)))

    @classmethod
    def load(cls, path: str = KALLSYMS_PATH) -> KernelSymbols:
        """Read a kallsyms file; an unreadable or address-less one gives no symbols."""
        try:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return cls([], [])
        return cls.parse(text)

    @classmethod
    def parse(cls, text: str) -> KernelSymbols:
        """Parse kallsyms text (``ADDR TYPE NAME[\\t[MOD]]`` lines)."""
        lines = text.splitlines()
        if not lines:
            return cls([], [])
        width = lines[0].find(" ")
        if width <= 0:
            return cls([], [])
        kind_at, name_at = width + 1, width + 3
        # Slicing fixed columns is several times faster than split() or a regex on
        # 120k lines; a malformed line (too short, wrong width) is dropped.
        rows = [
            line
            for line in lines
            if len(line) > name_at and line[kind_at] in _TEXT_TYPES and line[width] == " "
        ]
        try:
            raw = bytes.fromhex("".join([line[:width] for line in rows]))
        except ValueError:
            return cls._parse_slow(rows, width, name_at)
        addrs = _hex_words(raw, width // 2)
        if not addrs or not any(addrs):
            # kptr_restrict hides addresses (all zero): no usable symbols.
            return cls([], [])
        entries = [line[name_at:] for line in rows]
        if any(itertools.starmap(operator.gt, itertools.pairwise(addrs))):
            order = sorted(range(len(addrs)), key=addrs.__getitem__)
            addrs = array.array(addrs.typecode, [addrs[i] for i in order])
            entries = [entries[i] for i in order]
        return cls(addrs, entries)

    @classmethod
    def _parse_slow(cls, rows: list[str], width: int, name_at: int) -> KernelSymbols:
        pairs: list[tuple[int, str]] = []
        for line in rows:
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
        entry = self._text[self._ends[i - 1] if i else 0 : self._ends[i]]
        name, _, mod = entry.partition("\t")
        return name, mod.strip() or KERNEL_MODULE, start

    def resolve(self, addr: int) -> Frame:
        """A KERNEL frame for ``addr``; unresolved ones are named ``[kernel]+0xADDR``."""
        found = self.lookup(addr)
        if found is None:
            return Frame(f"{KERNEL_MODULE}+0x{addr:x}", KERNEL_MODULE, FrameKind.KERNEL, addr)
        return Frame(found[0], found[1], FrameKind.KERNEL, addr)


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
