"""The kernel layout of a table (header, bucket index, rows) finds the same rows as the table."""

from __future__ import annotations

import random
import struct

import pytest

from aperture.agent.unwind.layout import BUCKET_SHIFT, HEADER_ROWS, kernel_layout
from aperture.agent.unwind.tables import ROW_FORMAT, ROW_SIZE, Row, build_table

ROW = struct.Struct(ROW_FORMAT)


def find_row(elements: list[Row], vaddr: int) -> Row | None:
    """unwind.bpf.h's find_row, step for step, on the elements the kernel holds."""
    nb, first = elements[0].pc, elements[1].pc
    base = HEADER_ROWS + nb
    rows = len(elements) - base
    lo, hi = 0, rows
    if nb:
        b = vaddr >> BUCKET_SHIFT
        if b < first:
            return None
        b = min(b - first, nb - 1)
        lo = elements[HEADER_ROWS + b].pc
        if b + 1 < nb:
            hi = elements[HEADER_ROWS + b + 1].pc + 1
        hi = min(hi, rows)
    for _ in range(24):
        if lo >= hi:
            break
        mid = lo + (hi - lo) // 2
        if elements[base + mid].pc <= vaddr:
            lo = mid + 1
        else:
            hi = mid
    if lo == 0 or lo < hi:
        return None
    return elements[base + lo - 1]


@pytest.mark.parametrize("path", ["/lib/x86_64-linux-gnu/libc.so.6", "/usr/bin/python3.11"])
def test_the_bucket_index_finds_every_row_the_table_does(path: str) -> None:
    table = build_table(path)
    assert len(table) > 1000
    data = kernel_layout(table.rows)
    elements = [Row(*ROW.unpack_from(data, i)) for i in range(0, len(data), ROW_SIZE)]
    nb = elements[0].pc
    assert nb > 0 and len(elements) == HEADER_ROWS + nb + len(table)
    lo, hi = table.row(0).pc, table.row(len(table) - 1).pc
    rng = random.Random(15)
    probes = [rng.randrange(lo - 4096, hi + 4096) for _ in range(20_000)]
    probes += [table.row(i).pc + d for i in range(0, len(table), 7) for d in (-1, 0, 1)]
    for vaddr in probes:
        assert find_row(elements, vaddr) == table.lookup(vaddr), hex(vaddr)
    # About ten rows per bucket: three or four search steps instead of sixteen.
    assert len(table) / nb < 32


def test_rows_over_a_huge_span_get_no_index() -> None:
    rows = ROW.pack(0x1000, 1, 0, 8, 0, 0) + ROW.pack(0xF000_0000, 1, 0, 8, 0, 0)
    data = kernel_layout(rows)
    elements = [Row(*ROW.unpack_from(data, i)) for i in range(0, len(data), ROW_SIZE)]
    assert elements[0].pc == 0 and len(elements) == HEADER_ROWS + 2
    assert find_row(elements, 0x2000) == Row(0x1000, 1, 0, 8, 0, 0)
    assert find_row(elements, 0xFFFF_FFFF) == Row(0xF000_0000, 1, 0, 8, 0, 0)
    assert find_row(elements, 0x10) is None
    assert kernel_layout(b"") == b""
