"""The agent's compiled hot paths against their Python references, on damaged input.

Symbol tables: random entries (every type, binding, section index and size; name
offsets in, at the edge of and past their string table; string tables with and
without a final NUL), 32- and 64-bit, both byte orders, odd entry sizes: elfsyms.c
gives what elf.py's ``_merge`` gives.

ehframe.c reads files other users control, as root: real ``.eh_frame`` sections
(of /usr/bin/true and bash) damaged byte by byte, with odd values in the places
where lengths, CIE pointers, LEB128 numbers and opcodes sit, and plain random
bytes, read as ``.eh_frame`` and as ``.debug_frame``. Whatever the bytes, the
compiled interpreter returns (no crash, no read past the section: the library is
built with -Wall -Werror and every read checked) and gives what tables.py's
Python gives: the same rows, FDE and error counts, UNSUPPORTED causes and gaps.
"""

from __future__ import annotations

import struct
from functools import cache

import pytest
from fuzz_batches import byte_edits, mutate_bytes
from hypothesis import given
from hypothesis import strategies as st

from aperture.agent import native
from aperture.agent.symbols.elf import _merge, _Table
from aperture.agent.unwind.tables import (
    _FileSource,
    _Gaps,
    _scan_frames,
    _section_data,
    _sections,
    _segments,
    _Writer,
)

pytestmark = pytest.mark.skipif(
    not native.LIBRARY.exists(), reason=f"{native.LIBRARY.name} is not built here (make native)"
)


@cache
def _eh_frame(path: str) -> tuple[bytes, int]:
    with open(path, "rb") as f:
        src = _FileSource(f)
        [section] = [s for s in _sections(src, path) if s.name == ".eh_frame"]
        return _section_data(src, section), section.addr


def _python(data: bytes, addr: int, is_eh: bool, code: list[tuple[int, int]]) -> native.EhRows:
    """tables.py's interpreter on one section, in the compiled one's terms."""
    frames = _scan_frames(data, addr, is_eh)
    writer, gaps = _Writer(), _Gaps(code)
    for segment in _segments(frames):
        writer.add(segment)
        gaps.cover(segment.begin, segment.end)
    gaps.finish()
    causes = tuple(writer._causes.items())
    rows, _, _ = writer.finish()
    return native.EhRows(
        rows, writer.segments, frames.errors, writer.too_high, causes,
        gaps.starts, gaps.ends, gaps.wide,
    )  # fmt: skip


def _same(data: bytes, addr: int, is_eh: bool, code: list[tuple[int, int]]) -> None:
    compiled = native.eh_rows(data, addr, is_eh, code)
    assert compiled is not None
    python = _python(data, addr, is_eh, code)
    assert (compiled.segments, compiled.errors, compiled.too_high) == (
        python.segments, python.errors, python.too_high,
    )  # fmt: skip
    if python.too_high:
        return  # no table at all: rows and gaps are not used
    assert compiled.rows == python.rows
    assert compiled.causes == python.causes
    assert list(compiled.gap_starts) == list(python.gap_starts)
    assert list(compiled.gap_ends) == list(python.gap_ends)
    assert compiled.wide == python.wide


# Values written over a damaged place: LEB128 continuation bytes, lengths, opcodes.
ODD_BYTES = st.sampled_from([0x00, 0x01, 0x02, 0x0A, 0x0B, 0x0E, 0x0F, 0x12, 0x2F, 0x7F, 0x80,
                             0xC6, 0xFF])  # fmt: skip
odd_edits = st.lists(st.tuples(st.integers(0, 2**16), st.just(0), ODD_BYTES), max_size=6)
binaries = st.sampled_from(["/usr/bin/true", "/usr/bin/bash"])


@given(binaries, byte_edits, odd_edits, st.booleans())
def test_damaged_sections_give_what_python_gives(
    path: str, edits: list[tuple[int, int, int]], odd: list[tuple[int, int, int]], is_eh: bool
) -> None:
    data, addr = _eh_frame(path)
    damaged = mutate_bytes(mutate_bytes(data, edits), odd)
    _same(damaged, addr, is_eh, [(max(0, addr - 0x10000), addr + 0x100000)])


@given(st.binary(max_size=600), st.booleans(), st.integers(0, 2**64 - 1))
def test_random_bytes_give_what_python_gives(data: bytes, is_eh: bool, addr: int) -> None:
    _same(data, addr, is_eh, [(0, 0x1000), (0x2000, 2**64 - 1)])


@given(st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=6), st.booleans())
def test_huge_lengths_and_pointers_give_what_python_gives(words: list[int], is_eh: bool) -> None:
    # 64-bit entry lengths, CIE pointers far outside the section, addresses near 2^64
    data, addr = _eh_frame("/usr/bin/true")
    damaged = bytearray(data)
    for i, word in enumerate(words):
        at = (word * 7 + i * 64) % max(1, len(damaged) - 12)
        struct.pack_into("<IQ", damaged, at, 0xFFFFFFFF if i % 2 else word & 0xFFFFFFFF, word)
    _same(bytes(damaged), addr, is_eh, [(0, 2**64 - 1)])


def test_the_sections_as_they_are_give_what_python_gives() -> None:
    for path in ("/usr/bin/true", "/usr/bin/bash"):
        data, addr = _eh_frame(path)
        _same(data, addr, True, [(max(0, addr - 0x10000), addr + 0x100000)])


symbol_entries = st.lists(
    st.tuples(
        st.integers(0, 300),  # name offset: in, at the edge of, or past the strings
        st.integers(0, 255),  # info: type and binding
        st.sampled_from([0, 1, 7, 0xFFF1, 0xFFFF]),  # section index
        st.sampled_from([0, 0x1000, 0x1010, 0x2000, 2**32 - 1, 2**63]),  # value
        st.sampled_from([0, 1, 16, 2**32 - 1]),  # size
    ),
    max_size=40,
)
string_tables = st.lists(st.sampled_from([b"", b"_", b"__f", b"main", b"f@@V", b"\0"]), max_size=30)


@given(
    st.lists(st.tuples(symbol_entries, string_tables, st.sampled_from([0, 16, 24, 25])),
             max_size=3),
    st.booleans(), st.booleans(), st.booleans(),
)  # fmt: skip
def test_symbol_tables_give_what_python_gives(
    tables: list[tuple[list[tuple[int, int, int, int, int]], list[bytes], int]],
    little: bool, wide: bool, final_nul: bool,
) -> None:  # fmt: skip
    order = "<" if little else ">"
    built: list[_Table] = []
    for entries, names, entsize in tables:
        strings = b"\0".join(names) + (b"\0" if final_nul else b"")
        if wide:
            packed = [struct.pack(order + "IBBHQQ", n, i, 0, x, v, z) for n, i, x, v, z in entries]
        else:
            packed = [struct.pack(order + "IIIBBH", n, v & 0xFFFFFFFF, z & 0xFFFFFFFF, i, 0, x)
                      for n, i, x, v, z in entries]  # fmt: skip
        built.append(_Table(b"".join(packed) + b"\x01" * (entsize % 8), strings, entsize))
    compiled = native.elf_functions(
        [(t.symbols, t.strings, t.entsize) for t in built], little, wide
    )
    assert compiled is not None
    rows, strings = _merge(built, little=little, wide=wide)
    assert list(compiled.starts) == [r[0] for r in rows]
    assert list(compiled.sizes) == [r[1] for r in rows]
    assert list(compiled.names) == [r[2] for r in rows]
    assert compiled.strings == strings
