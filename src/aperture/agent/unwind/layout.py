"""A table as the kernel holds it: two header rows, a bucket index, then the rows.

The walker's binary search over a binary's rows costs one map lookup per step
(16-20 for a large binary). The index narrows it first: bucket ``b`` covers the
ELF addresses ``[b << BUCKET_SHIFT, (b + 1) << BUCKET_SHIFT)`` and holds the row
covering the bucket's first address, so a lookup searches only between two
consecutive index entries (about ten rows in libc or python3.11). Every element is
a row-sized struct so that one inner ARRAY map holds all three parts:

- element 0: ``pc`` = the number of buckets ``nb`` (0: no index, search all rows);
- element 1: ``pc`` = the first bucket (the lowest row's address >> BUCKET_SHIFT);
- elements ``2 .. 2 + nb``: ``pc`` = an index into the rows;
- elements ``2 + nb ..``: the rows (``aperture.agent.unwind.tables`` ROW_FORMAT).

unwind.bpf.h's ``find_row`` reads this layout; keep the two in step.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right

from aperture.agent import native
from aperture.agent.unwind.tables import ROW_FORMAT, ROW_SIZE

BUCKET_SHIFT = 9
HEADER_ROWS = 2
_U32_PER_ROW = ROW_SIZE // 4


def _row(pc: int) -> bytes:
    return pc.to_bytes(4, "little") + bytes(8)


def kernel_layout(rows: bytes) -> bytes:
    """The header, bucket index and rows of one table, packed as rows."""
    prefix = kernel_prefix(rows)
    return prefix + rows if prefix else b""


def kernel_prefix(rows: bytes) -> bytes:
    """What goes before a table's rows in the kernel: the header and bucket index
    (the rows follow as they are, so a large table is not copied to be loaded)."""
    assert ROW_FORMAT == "<IBBhhh" and ROW_SIZE == 12  # the pc is the first u32 of 3
    if not rows:
        return b""
    lowest = int.from_bytes(rows[:4], "little")
    highest = int.from_bytes(rows[-ROW_SIZE : -ROW_SIZE + 4], "little")
    first = lowest >> BUCKET_SHIFT
    nb = (highest >> BUCKET_SHIFT) - first + 1
    if nb > 4 * (len(rows) // ROW_SIZE) + 1024:
        return _row(0) + _row(0)
    index = array("I", bytes(4 * _U32_PER_ROW * nb))
    if not native.bucket_index(rows, _U32_PER_ROW, first, nb, BUCKET_SHIFT, index):
        words = array("I")
        words.frombytes(rows)
        pcs = words[0::_U32_PER_ROW]
        for b in range(nb):
            start = (first + b) << BUCKET_SHIFT
            index[b * _U32_PER_ROW] = max(0, bisect_right(pcs, start) - 1)
    return _row(nb) + _row(first) + index.tobytes()
