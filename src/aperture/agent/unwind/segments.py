"""Where a mapped file's bytes sit in its ELF address space: the load bias of a mapping."""

from __future__ import annotations

import struct
from typing import IO, NamedTuple

from aperture.agent.untrusted import MAX_SECTION_BYTES, open_untrusted

_PT_LOAD = 1
_PAGE = 0x1000
_MAX_OFFSET = 1 << 63  # lseek's: a header may claim more


class LoadSegment(NamedTuple):
    """A ``PT_LOAD`` header: file bytes ``[offset, offset + filesz)`` at ``vaddr``."""

    offset: int
    vaddr: int
    filesz: int


def parse_load_segments(header: bytes) -> list[LoadSegment]:
    """The ``PT_LOAD`` segments of a 64-bit little-endian ELF, from its first bytes.

    ``header`` must hold the program headers (the first 4 KiB do for every
    binary seen); anything else gives an empty list.
    """
    if len(header) < 64 or header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
        return []
    (phoff,) = struct.unpack_from("<Q", header, 32)
    phentsize, phnum = struct.unpack_from("<HH", header, 54)
    if phentsize < 56 or phoff + phentsize * phnum > len(header):
        return []
    out = []
    for i in range(phnum):
        p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from(
            "<IIQQQQ", header, phoff + i * phentsize
        )
        if p_type == _PT_LOAD:
            out.append(LoadSegment(p_offset, p_vaddr, p_filesz))
    return out


def read_load_segments(path: str) -> list[LoadSegment]:
    """``PT_LOAD`` segments of the file at ``path`` (empty when unreadable or not ELF)."""
    try:
        with open_untrusted(path) as f:
            header = f.read(_PAGE)
            segments = parse_load_segments(header)
            if not segments and header[:4] == b"\x7fELF" and len(header) == _PAGE:
                # Program headers past the first page: read as far as they go.
                (phoff,) = struct.unpack_from("<Q", header, 32)
                phentsize, phnum = struct.unpack_from("<HH", header, 54)
                if phoff + phentsize * phnum > MAX_SECTION_BYTES:
                    return []
                f.seek(0)
                segments = parse_load_segments(f.read(phoff + phentsize * phnum))
            return segments
    except (OSError, struct.error):
        return []


def load_bias(segments: list[LoadSegment], start: int, pgoff: int) -> int | None:
    """``runtime address - ELF vaddr`` for a mapping of file offset ``pgoff`` at ``start``."""
    for seg in segments:
        if seg.offset - seg.offset % _PAGE <= pgoff < seg.offset + max(seg.filesz, 1):
            return start - pgoff + seg.offset - seg.vaddr
    return None


# A section header as (sh_type, sh_addr, sh_offset, sh_size, sh_link, sh_entsize, index).
ElfSection = tuple[int, int, int, int, int, int, int]


def elf_sections(header: bytes, f: IO[bytes]) -> dict[bytes, ElfSection] | None:
    """Section headers of a 64-bit little-endian ELF by name."""
    if len(header) < 64 or header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
        return None
    (shoff,) = struct.unpack_from("<Q", header, 40)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", header, 58)
    if shentsize < 64 or not shnum or shstrndx >= shnum or shentsize * shnum > MAX_SECTION_BYTES:
        return None
    if shoff >= _MAX_OFFSET:
        return None
    f.seek(shoff)
    table = f.read(shentsize * shnum)
    if len(table) < shentsize * shnum:
        return None
    rows = []
    for i in range(shnum):
        (
            sh_name,
            sh_type,
            _flags,
            sh_addr,
            sh_offset,
            sh_size,
            sh_link,
            _info,
            _align,
            sh_entsize,
        ) = struct.unpack_from("<IIQQQQIIQQ", table, i * shentsize)
        rows.append((sh_name, (sh_type, sh_addr, sh_offset, sh_size, sh_link, sh_entsize, i)))
    names_sec = rows[shstrndx][1]
    if names_sec[2] >= _MAX_OFFSET:
        return None
    f.seek(names_sec[2])
    names = f.read(min(names_sec[3], 1 << 20))
    out: dict[bytes, ElfSection] = {}
    for sh_name, sec in rows:
        end = names.find(b"\0", sh_name)
        out[names[sh_name:end]] = sec
    return out


def section_size(path: str, name: bytes) -> int | None:
    """Size of the section called ``name`` in a 64-bit little-endian ELF (None if absent)."""
    try:
        with open_untrusted(path) as f:
            sections = elf_sections(f.read(64), f)
    except (OSError, struct.error):
        return None
    found = sections.get(name) if sections else None
    return found[3] if found else None
