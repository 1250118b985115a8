"""CPython line tables → (start, end, line) ranges, to look a line up by instruction.

Two formats: 3.10's PEP 626 ``co_linetable`` (byte pairs; Objects/lnotab_notes.txt)
and the 3.11+ location table (Objects/locations.md). Ranges are in code units
(2-byte ``_Py_CODEUNIT``), the unit instruction indices count in; ``line`` is 0 where
the table says "no line". Pure functions over bytes: they run on tables read from
another process, so a truncated table ends the ranges, it never raises.
"""

from __future__ import annotations

import bisect
from typing import NamedTuple

NO_LINE = 0


class LineRanges(NamedTuple):
    """Sorted, non-overlapping ``[starts[i], ends[i])`` code-unit ranges with their lines."""

    starts: list[int]
    ends: list[int]
    lines: list[int]

    def line_at(self, index: int, firstlineno: int) -> int:
        """The line of the instruction at code-unit ``index`` (CPython's ``PyCode_Addr2Line``)."""
        if index < 0:
            return firstlineno
        i = bisect.bisect_right(self.starts, index) - 1
        if i >= 0 and index < self.ends[i] and self.lines[i] > 0:
            return self.lines[i]
        # No line, or one below 1 (a table read from another process as it changed, its
        # deltas then garbage): unknown, never a made-up line (nor a negative one the
        # wire cannot carry, which once stopped the agent)
        return NO_LINE


def decode_pep626(table: bytes, firstlineno: int) -> LineRanges:
    """3.10's ``co_linetable``: (byte delta, signed line delta) pairs; -128 means no line."""
    starts: list[int] = []
    ends: list[int] = []
    lines: list[int] = []
    line = firstlineno
    end = 0
    for i in range(0, len(table) - 1, 2):
        sdelta = table[i]
        ldelta = table[i + 1]
        if ldelta >= 128:
            ldelta -= 256
        start = end
        end += sdelta
        if ldelta == -128:
            current = NO_LINE
        else:
            line += ldelta
            current = line
        if end == start:
            continue
        # Byte offsets; instructions are 2 bytes, so halve to code units.
        starts.append(start // 2)
        ends.append(end // 2)
        lines.append(current)
    return LineRanges(starts, ends, lines)


def _varint(table: bytes, pos: int) -> tuple[int, int]:
    """An unsigned varint of 6-bit chunks, low first, 0x40 = more follow."""
    value = shift = 0
    while pos < len(table):
        b = table[pos]
        pos += 1
        value |= (b & 0x3F) << shift
        shift += 6
        if not b & 0x40:
            return value, pos
    return value, -1


def _svarint(table: bytes, pos: int) -> tuple[int, int]:
    value, pos = _varint(table, pos)
    return (-(value >> 1) if value & 1 else value >> 1), pos


def decode_locations(table: bytes, firstlineno: int) -> LineRanges:
    """The 3.11+ location table: entries of a header byte (bit 7 set; code in bits 3-6,
    length-1 in code units in bits 0-2) and code-specific bytes. Codes 0-9 and 10-12
    are short/one-line forms (line delta 0 / code-10), 13 has no columns and 14 is the
    long form (both: signed varint line delta first), 15 has no location."""
    starts: list[int] = []
    ends: list[int] = []
    lines: list[int] = []
    line = firstlineno
    pos = 0
    index = 0
    n = len(table)
    while pos < n:
        header = table[pos]
        if not header & 0x80:
            break  # not an entry start: a corrupt table
        code = (header >> 3) & 0xF
        length = (header & 7) + 1
        pos += 1
        current = NO_LINE
        if code == 15:
            pass
        elif code in (13, 14):
            delta, pos = _svarint(table, pos)
            if pos < 0:
                break
            line += delta
            current = line
        elif code >= 10:
            line += code - 10
            current = line
        else:
            current = line
        # Skip the entry's remaining bytes: up to the next header byte.
        while pos < n and not table[pos] & 0x80:
            pos += 1
        if starts and ends[-1] == index and lines[-1] == current:
            ends[-1] = index + length
        else:
            starts.append(index)
            ends.append(index + length)
            lines.append(current)
        index += length
    return LineRanges(starts, ends, lines)
