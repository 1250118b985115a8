"""The agent's parsers of files other users write: parsed, or refused with a named error.

Perf maps, ELF files (section and program headers, symbol tables, build-id notes),
``.gnu_debuglink``, MiniDebugInfo (``.gnu_debugdata``), ``/proc/PID/maps`` and
``status``: built valid by :func:`elf_images` and friends, then damaged (bytes
overwritten, inserted, deleted; header fields set to huge or odd values), or plain
random bytes. The public readers never raise; the ELF reader underneath raises only
:class:`RefusedFile` (over a bound) or pyelftools' ``ELFError`` (malformed); nothing
allocates more than a small multiple of its bounds.
"""

from __future__ import annotations

import contextlib
import io
import lzma
import struct
import tempfile
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from fuzz_batches import byte_edits, mutate_bytes
from hypothesis import given
from hypothesis import strategies as st

from aperture.agent.python.interpreter import _read_elf_python
from aperture.agent.symbols import ElfSymbols, PerfMap, ProcessMaps
from aperture.agent.symbols.debuginfo import parse_build_id, parse_debuglink
from aperture.agent.symbols.elf import _Elf, _minidebuginfo_tables, file_build_id
from aperture.agent.symbols.process import parse_maps
from aperture.agent.untrusted import (
    MAX_DEBUGDATA_BYTES,
    MAX_PERF_MAP_LINE,
    RefusedFile,
    inflate_xz,
    inflate_zlib,
)
from aperture.agent.unwind.segments import (
    elf_sections,
    parse_load_segments,
    read_load_segments,
    section_size,
)
from aperture.agent.unwind.tables import build_table, build_table_from_bytes

U64 = 2**64 - 1
# Values a damaged header field takes: small, boundary, huge.
ODD = st.sampled_from([0, 1, 2, 3, 0xFF, 0xFF00, 0xFFFF, 2**31, 2**32 - 1, 2**63, U64])

# --- ELF images -------------------------------------------------------------------

_SHT_PROGBITS, _SHT_SYMTAB, _SHT_STRTAB, _SHT_NOTE, _SHT_DYNSYM = 1, 2, 3, 7, 11
_STT_FUNC = 2


def _symbols_table(
    symbols: list[tuple[str, int, int, int]], wide: bool, order: str
) -> tuple[bytes, bytes]:
    """(symbol table, string table) of (name, value, size, info) entries."""
    strings = bytearray(b"\0")
    rows = [bytes(24 if wide else 16)]
    for name, value, size, info in symbols:
        offset = len(strings)
        strings += name.encode() + b"\0"
        if wide:
            rows.append(struct.pack(order + "IBBHQQ", offset, info, 0, 1, value, size))
        else:
            rows.append(struct.pack(order + "IIIBBH", offset, value & 0xFFFFFFFF, size, info, 0, 1))
    return b"".join(rows), bytes(strings)


def _note(kind: int, name: bytes, desc: bytes, order: str) -> bytes:
    def pad(b: bytes) -> bytes:
        return b + bytes(-len(b) % 4)

    return struct.pack(order + "III", len(name), len(desc), kind) + pad(name) + pad(desc)


def build_elf(
    *,
    symbols: list[tuple[str, int, int, int]],
    table: int = _SHT_SYMTAB,
    build_id: bytes | None = None,
    debuglink: bytes | None = None,
    debugdata: bytes | None = None,
    wide: bool = True,
    little: bool = True,
) -> bytes:
    """An ELF image: headers, a symbol table, notes, links, one PT_LOAD and a PT_NOTE."""
    order = "<" if little else ">"
    sections: list[tuple[str, int, bytes, int, int]] = []  # name, type, data, link, entsize
    symtab, strtab = _symbols_table(symbols, wide, order)
    sections.append((".strtab", _SHT_STRTAB, strtab, 0, 0))
    name = ".symtab" if table == _SHT_SYMTAB else ".dynsym"
    sections.append((name, table, symtab, 1, 24 if wide else 16))
    if build_id is not None:
        note = _note(3, b"GNU\0", build_id, order)
        sections.append((".note.gnu.build-id", _SHT_NOTE, note, 0, 0))
    if debuglink is not None:
        sections.append((".gnu_debuglink", _SHT_PROGBITS, debuglink, 0, 0))
    if debugdata is not None:
        sections.append((".gnu_debugdata", _SHT_PROGBITS, debugdata, 0, 0))
    shstrtab = b"\0" + b"".join(n.encode() + b"\0" for n, *_ in sections) + b".shstrtab\0"
    sections.append((".shstrtab", _SHT_STRTAB, shstrtab, 0, 0))

    ehsize, phsize, shsize = (64, 56, 64) if wide else (52, 32, 40)
    phnum = 2
    at = ehsize + phnum * phsize
    blobs, placed = [], []
    for _, _, data, _, _ in sections:
        placed.append(at)
        blobs.append(data)
        at += len(data)
    shoff = at + (-at % 8)
    name_at, headers = 1, [bytes(shsize)]
    for (sec_name, sh_type, data, link, entsize), offset in zip(sections, placed, strict=True):
        shdr = (name_at, sh_type, 0, offset, offset, len(data), link, 0, 1, entsize)  # flags 0
        headers.append(struct.pack(order + ("IIQQQQIIQQ" if wide else "IIIIIIIIII"), *shdr))
        name_at += len(sec_name) + 1
    note_index = next((placed[i] for i, s in enumerate(sections) if s[1] == _SHT_NOTE), 0)
    note_size = next((len(s[2]) for s in sections if s[1] == _SHT_NOTE), 0)
    if wide:
        phdrs = struct.pack(order + "IIQQQQQQ", 1, 5, 0, 0, 0, at, at, 0x1000) + struct.pack(
            order + "IIQQQQQQ", 4, 4, note_index, note_index, note_index, note_size, note_size, 4
        )
    else:
        phdrs = struct.pack(order + "IIIIIIII", 1, 0, 0, 0, at, at, 5, 0x1000) + struct.pack(
            order + "IIIIIIII", 4, note_index, note_index, note_index, note_size, note_size, 4, 4
        )
    ident = b"\x7fELF" + bytes([2 if wide else 1, 1 if little else 2, 1]) + bytes(9)
    shnum, shstrndx = len(headers), len(headers) - 1
    fields = (ident, 3, 62, 1, 0, ehsize, shoff, 0, ehsize, phsize, phnum, shsize, shnum, shstrndx)
    header = struct.pack(order + ("16sHHIQQQIHHHHHH" if wide else "16sHHIIIIIHHHHHH"), *fields)
    body = header + phdrs + b"".join(blobs)
    return body + bytes(shoff - len(body)) + b"".join(headers)


NAMES = st.text(st.sampled_from("abcz_$.@"), min_size=1, max_size=12)
symbol_lists = st.lists(
    st.tuples(
        NAMES,
        st.integers(0x1000, 0xFFFF_FFFF),
        st.integers(0, 0x400),
        st.sampled_from([0x12, 0x22, 0x02, 0x11, 0x1A]),  # FUNC global/weak/local, OBJECT, IFUNC
    ),
    max_size=12,
)


@st.composite
def elf_images(draw: st.DrawFn) -> bytes:
    """A valid ELF image, sometimes with MiniDebugInfo holding its own symbol table."""
    wide, little = draw(st.booleans()), draw(st.booleans())
    symbols = draw(symbol_lists)
    build_id = draw(st.none() | st.binary(min_size=1, max_size=20))
    debuglink = draw(st.none() | st.binary(max_size=24))
    debugdata = None
    if draw(st.booleans()):
        inner = build_elf(symbols=draw(symbol_lists), wide=wide, little=little)
        debugdata = lzma.compress(inner)
    table = draw(st.sampled_from([_SHT_SYMTAB, _SHT_DYNSYM]))
    return build_elf(
        symbols=symbols,
        table=table,
        build_id=build_id,
        debuglink=debuglink,
        debugdata=debugdata,
        wide=wide,
        little=little,
    )


# Offsets of ELF header fields (64-bit) a damaged file sets to odd values: e_phoff,
# e_shoff, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx.
_FIELDS = [(32, "Q"), (40, "Q"), (54, "H"), (56, "H"), (58, "H"), (60, "H"), (62, "H")]


@st.composite
def damaged_elf_images(draw: st.DrawFn) -> bytes:
    """A valid image with header fields, section headers or bytes damaged."""
    data = bytearray(draw(elf_images()))
    wide, little = data[4] == 2, data[5] == 1
    order = "<" if little else ">"
    for _ in range(draw(st.integers(0, 3))):
        what = draw(st.sampled_from(["field", "section"]))
        if what == "field" and wide:
            offset, kind = draw(st.sampled_from(_FIELDS))
            value = draw(ODD) & (U64 if kind == "Q" else 0xFFFF)
            struct.pack_into(order + kind, data, offset, value)
        elif wide:
            # A section header's sh_offset, sh_size, sh_link or sh_entsize.
            (shoff,) = struct.unpack_from(order + "Q", data, 40)
            (shnum,) = struct.unpack_from(order + "H", data, 60)
            index = draw(st.integers(0, max(shnum - 1, 0)))
            field, kind = draw(st.sampled_from([(24, "Q"), (32, "Q"), (40, "I"), (56, "Q")]))
            at = shoff + 64 * index + field
            if at + 8 <= len(data):
                value = draw(ODD) & (U64 if kind == "Q" else 0xFFFFFFFF)
                struct.pack_into(order + kind, data, at, value)
    return mutate_bytes(bytes(data), draw(byte_edits))


any_elf = elf_images() | damaged_elf_images() | st.binary(max_size=300).map(b"\x7fELF".__add__)


def _parse(data: bytes) -> None:
    """The ELF reader under ElfSymbols: a result, RefusedFile or ELFError, nothing else."""
    try:
        elf = _Elf(ELFFile(io.BytesIO(data)))
        elf.build_id()
        elf.load_segments()
        elf.symbol_tables("SHT_SYMTAB")
        elf.symbol_tables("SHT_DYNSYM")
        elf.section_data(".gnu_debuglink")
        tables, refused = _minidebuginfo_tables(elf)
    except RefusedFile as e:
        assert e.strerror
        return
    except ELFError:
        return
    assert refused is None or ".gnu_debugdata" in refused
    assert all(t.entsize > 0 for t in tables)


@given(any_elf)
def test_elf_headers_and_tables_parse_or_are_refused(data: bytes) -> None:
    _parse(data)


@given(any_elf, st.integers(0, U64))
def test_elf_symbols_never_raise(scratch: Path, data: bytes, addr: int) -> None:
    path = scratch / "prog"
    path.write_bytes(data)
    file_build_id(str(path))
    for elf in (ElfSymbols.from_bytes(data, "[fuzz]"), ElfSymbols.load(str(path), debug_dirs=[])):
        assert elf.refused is None or isinstance(elf.refused, str)
        found = elf.lookup(addr)
        assert found is None or (isinstance(found[0], str) and found[1] <= addr)
        elf.offset_to_vaddr(addr)


@given(symbol_lists, st.booleans(), st.booleans(), st.booleans())
def test_elf_function_symbols_round_trip(
    symbols: list[tuple[str, int, int, int]], wide: bool, little: bool, mini: bool
) -> None:
    if mini:  # the symbols only in MiniDebugInfo, beside an empty .dynsym
        inner = build_elf(symbols=symbols, wide=wide, little=little)
        data = build_elf(
            symbols=[], table=_SHT_DYNSYM, debugdata=lzma.compress(inner), wide=wide, little=little
        )
    else:
        data = build_elf(symbols=symbols, wide=wide, little=little)
    elf = ElfSymbols.from_bytes(data, "[fuzz]")
    assert elf.is_elf and elf.refused is None
    for name, value, size, info in symbols:
        value &= 0xFFFFFFFF
        if size and info & 0xF in (2, 10):
            found = elf.lookup(value)
            assert found is not None, (name, hex(value))


@given(any_elf)
def test_unwind_section_readers_parse_or_refuse(scratch: Path, data: bytes) -> None:
    table = build_table_from_bytes(data, "[fuzz]")
    assert isinstance(table.reason, str)
    parse_load_segments(data)
    with contextlib.suppress(struct.error):  # the callers' "not an ELF file"
        elf_sections(data[:64], io.BytesIO(data))
    # The same bytes as a file, through the readers that open one.
    path = scratch / "lib.so"
    path.write_bytes(data)
    assert isinstance(build_table(str(path), debug_dirs=[]).reason, str)
    read_load_segments(str(path))
    section_size(str(path), b".eh_frame")
    _read_elf_python(str(path))


def test_elf_claims_cost_what_the_file_holds() -> None:
    # Every section claims 2**40 bytes at offset 0 of a 1 KB image: reads are of
    # what is there, and a file's reads are bounded in all.
    data = bytearray(build_elf(symbols=[("f", 0x1000, 16, 0x12)]))
    (shoff,) = struct.unpack_from("<Q", data, 40)
    (shnum,) = struct.unpack_from("<H", data, 60)
    for i in range(1, shnum):
        struct.pack_into("<QQ", data, shoff + 64 * i + 24, 0, 1 << 40)
    tracemalloc.start()
    try:
        _parse(bytes(data))
        ElfSymbols.from_bytes(bytes(data), "[fuzz]")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"{peak >> 20} MiB for a {len(data)}-byte file"


# --- notes, debuglink, MiniDebugInfo -------------------------------------------------


@given(st.binary(max_size=200), st.booleans())
def test_build_id_notes_parse(data: bytes, little: bool) -> None:
    found = parse_build_id(data, little)
    assert found is None or (found and all(c in "0123456789abcdef" for c in found))


@given(st.binary(max_size=16), st.booleans())
def test_build_id_note_round_trip(build_id: bytes, little: bool) -> None:
    order = "<" if little else ">"
    notes = _note(1, b"GNU\0", b"\x01\0\0\0", order) + _note(3, b"GNU\0", build_id, order)
    assert parse_build_id(notes, little) == (build_id.hex() or None)


def _debuglink(name: bytes, crc: bytes) -> bytes:
    return name + b"\0" * (1 + (-len(name) - 1) % 4) + crc


@given(
    st.binary(max_size=80) | st.builds(_debuglink, st.binary(max_size=20), st.binary(max_size=6))
)
def test_debuglink_parses_or_is_none(data: bytes) -> None:
    found = parse_debuglink(data)
    if found is not None:
        name, crc = found
        assert name and "/" not in name and "\0" not in name
        assert 0 <= crc < 2**32


@given(st.binary(max_size=200) | st.binary(max_size=200).map(lzma.compress), byte_edits)
def test_xz_inflates_within_its_bound_or_is_refused(
    data: bytes, edits: list[tuple[int, int, int]]
) -> None:
    damaged = mutate_bytes(data, edits)
    for packed in (data, damaged):
        try:
            out = inflate_xz(packed, 100, ".gnu_debugdata")
        except RefusedFile as e:
            assert ".gnu_debugdata" in (e.strerror or "")
            continue
        assert len(out) <= 100


@given(st.binary(max_size=200).map(zlib.compress) | st.binary(max_size=60), byte_edits)
def test_zlib_inflates_within_its_bound_or_is_refused(
    data: bytes, edits: list[tuple[int, int, int]]
) -> None:
    try:
        out = inflate_zlib(mutate_bytes(data, edits), 100, "a section")
    except RefusedFile as e:
        assert "a section" in (e.strerror or "")
        return
    assert len(out) <= 100


def test_xz_bomb_stops_at_the_bound() -> None:
    compressor = lzma.LZMACompressor(preset=0)
    chunk = bytes(1 << 20)
    bomb = b"".join(compressor.compress(chunk) for _ in range(128)) + compressor.flush()
    data = build_elf(symbols=[], table=_SHT_DYNSYM, debugdata=bomb)
    elf = ElfSymbols.from_bytes(data, "[fuzz]")
    assert elf.refused is not None
    assert f".gnu_debugdata inflates to more than {MAX_DEBUGDATA_BYTES} bytes" in elf.refused


# --- perf maps --------------------------------------------------------------------

HEX = st.integers(0, 2**48).map(lambda n: f"{n:x}")
perf_lines = st.one_of(
    st.builds(lambda a, b, n: f"{a} {b} {n}", HEX, HEX, st.text(max_size=20)),
    st.builds(lambda a, b, n: f"0x{a} 0x{b} {n}", HEX, HEX, NAMES),
    st.text(st.sampled_from("0123456789abcdefx -_\t\r\x00\u2028é"), max_size=30),
    st.just("7f00 10 " + "n" * (MAX_PERF_MAP_LINE + 1)),
)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="aperture-fuzz-agent-") as tmp:
        yield Path(tmp)


@given(st.lists(perf_lines, max_size=12) | st.binary(max_size=300).map(lambda b: [b]), byte_edits)
def test_perf_map_parses_any_bytes(
    scratch: Path, lines: list[str] | list[bytes], edits: list[tuple[int, int, int]]
) -> None:
    raw = b"".join(x if isinstance(x, bytes) else x.encode() + b"\n" for x in lines)
    path = scratch / "perf-1.map"
    path.write_bytes(mutate_bytes(raw, edits) if edits else raw)
    pm = PerfMap(str(path))
    assert pm.refused is None
    for start, size, name in zip(pm._starts, pm._sizes, pm._names, strict=True):
        assert start >= 0 and size > 0 and isinstance(name, str)
        assert pm.lookup(start) == (name, start)


@given(st.lists(st.tuples(st.integers(0, 2**40), st.integers(1, 2**16), NAMES), max_size=10))
def test_perf_map_later_entry_wins(scratch: Path, entries: list[tuple[int, int, str]]) -> None:
    path = scratch / "perf-2.map"
    path.write_text("".join(f"{a:x} {s:x} {n}\n" for a, s, n in entries))
    pm = PerfMap(str(path))
    last = {a: n for a, _, n in entries}
    assert len(pm) == len(last)
    for start, name in last.items():
        found = pm.lookup(start)
        assert found is not None and found[1] == start and found[0] == name


# --- /proc/PID/maps and status ---------------------------------------------------

PERMS = st.sampled_from(["r-xp", "rwxp", "r--p", "x", "--x-"])
maps_lines = st.one_of(
    st.builds(
        lambda lo, hi, perms, off, major, minor, inode, path: (
            f"{lo:x}-{hi:x} {perms} {off:x} {major:x}:{minor:x} {inode} {path}"
        ),
        st.integers(0, U64),
        st.integers(0, U64),
        PERMS,
        st.integers(0, U64),
        st.integers(0, 2**40) | ODD,
        st.integers(0, 2**40) | ODD,
        st.integers(0, U64),
        st.text(max_size=12),
    ),
    st.text(st.sampled_from("0123456789abcdef-:x /r()[]\t"), max_size=40),
    st.text(max_size=30),
)


@given(st.lists(maps_lines, max_size=10))
def test_proc_maps_parse_any_text(lines: list[str]) -> None:
    mappings = parse_maps("\n".join(lines))
    assert [m.start for m in mappings] == sorted(m.start for m in mappings)
    assert all(m.perms[2] == "x" for m in mappings)
    maps = ProcessMaps(1, mappings)
    for m in mappings:
        found = maps.find(m.start)
        assert found is None or found.start <= m.start


@given(st.lists(maps_lines, max_size=6), st.binary(max_size=120), st.binary(max_size=120))
def test_proc_files_read_from_any_bytes(
    scratch: Path, lines: list[str], status: bytes, stat: bytes
) -> None:
    proc = scratch / "proc" / "7"
    proc.mkdir(parents=True, exist_ok=True)
    (proc / "maps").write_text("\n".join(lines), errors="surrogateescape")
    (proc / "status").write_bytes(status)
    (proc / "stat").write_bytes(stat)
    maps = ProcessMaps.read(7, str(scratch / "proc"))
    assert maps is not None and not maps.sees_our_tmp
    assert maps.perf_map_paths() == [maps.in_root(f"/tmp/perf-{maps.ns_pid}.map")]
