"""Function symbols of one ELF file, and runtime address → ELF virtual address.

pyelftools finds sections, segments and notes; the symbol tables themselves are
unpacked in bulk with :func:`struct.iter_unpack` (pyelftools' per-symbol objects
cost ~20 µs each). Only sized ``STT_FUNC``/``STT_GNU_IFUNC`` symbols are kept and
names stay bytes in the string table until a lookup needs them.

A file's ``.symtab`` (a superset of its ``.dynsym``) is used when present; a
stripped binary gets the ``.symtab`` of its debug file (found by build-id or
``.gnu_debuglink``), else its ``.dynsym`` plus any MiniDebugInfo
(``.gnu_debugdata``). Segments always come from the real binary: a debug file's
``PT_LOAD`` file offsets are meaningless.

Files are opened with :func:`~aperture.agent.untrusted.open_untrusted` (a debug
file must belong to root or to the binary's owner) and read within bounds: at
most :data:`~aperture.agent.untrusted.MAX_ELF_HEADERS` section and program
headers, :data:`~aperture.agent.untrusted.MAX_SECTION_BYTES` a section and
:data:`~aperture.agent.untrusted.MAX_ELF_READ_BYTES` a file, MiniDebugInfo
inflated to at most :data:`~aperture.agent.untrusted.MAX_DEBUGDATA_BYTES`.
pyelftools is used for fixed-size headers only: its string and note readers read
until they find what they look for, however far that is.
"""

from __future__ import annotations

import bisect
import errno
import functools
import io
import os
import struct
from array import array
from collections.abc import Collection, Sequence
from typing import IO, Any, NamedTuple

from elftools.common.exceptions import ELFParseError
from elftools.elf.elffile import ELFFile

from aperture.agent import native
from aperture.agent.native import Functions
from aperture.agent.symbols.debuginfo import (
    DEFAULT_DEBUG_DIRS,
    find_debug_file,
    parse_build_id,
    parse_debuglink,
)
from aperture.agent.untrusted import (
    MAX_DEBUGDATA_BYTES,
    MAX_ELF_HEADERS,
    MAX_ELF_READ_BYTES,
    MAX_NOTE_BYTES,
    MAX_SECTION_BYTES,
    RefusedFile,
    inflate_xz,
    open_untrusted,
)
from aperture.model import Frame

_STT_FUNC = 2
_STT_GNU_IFUNC = 10
_STB_LOCAL = 0
_STB_WEAK = 2
# A mapping starts at the page boundary below a segment's p_offset; 64 KiB covers
# every page size Linux uses on x86_64 and arm64.
_MAX_PAGE = 0x10000


class Segment(NamedTuple):
    """A ``PT_LOAD`` program header: where file bytes land in the ELF's address space."""

    offset: int
    vaddr: int
    filesz: int


class _Table(NamedTuple):
    symbols: bytes
    strings: bytes
    entsize: int


_PAGE = 0x1000
_PT_NOTE = 4


class ElfSymbols:
    """Function symbols of one file; a file that is not ELF simply has none."""

    __slots__ = (
        "__weakref__",
        "_names",
        "_resolved",
        "_sizes",
        "_starts",
        "_strings",
        "build_id",
        "debug_file",
        "frames",
        "is_elf",
        "path",
        "refused",
        "segments",
    )

    def __init__(
        self,
        path: str,
        *,
        segments: Sequence[Segment] = (),
        rows: Sequence[tuple[int, int, int]] = (),
        strings: bytes = b"",
        build_id: str | None = None,
        debug_file: str | None = None,
        is_elf: bool = False,
        refused: str | None = None,
        functions: Functions | None = None,
    ) -> None:
        """``rows`` are ``(start, size, name offset in strings)``, sorted by start, or
        ``functions`` the same as columns with their strings (elfsyms.c's answer).

        ``refused`` says why the file, its debug file or its MiniDebugInfo was not
        read (not a regular file, a link, another owner, over a bound).
        """
        self.path = path
        self.refused = refused
        self.segments = tuple(segments)
        self.build_id = build_id
        self.debug_file = debug_file
        self.is_elf = is_elf
        # Packed arrays, 20 bytes a symbol instead of ~100 as lists of ints: an agent
        # holds up to a thousand files' tables (node alone has 78k functions).
        if functions is not None:
            self._starts, self._sizes = functions.starts, functions.sizes
            self._names = functions.names
            strings = functions.strings
        else:
            self._starts = array("Q", [r[0] for r in rows])
            self._sizes = array("Q", [r[1] for r in rows])
            self._names = array("Q", [r[2] for r in rows])  # offsets into ``strings``
        self._resolved: dict[int, str] = {}  # decoded names of symbols looked up
        self._strings = strings
        # The symbolizer's frames of this file by (vaddr << 1 | adjusted), shared by
        # every process that maps it (a new process's stacks need no lookups).
        self.frames: dict[int, tuple[Frame, str]] = {}

    @classmethod
    def load(
        cls,
        path: str,
        *,
        logical_path: str | None = None,
        debug_dirs: Sequence[str] = DEFAULT_DEBUG_DIRS,
        compiled: bool = True,
    ) -> ElfSymbols:
        """Read ``path``; never raises (an unreadable or non-ELF file has no symbols).

        ``logical_path`` is the file's path as the process sees it (e.g. the path in
        ``/proc/PID/maps`` when ``path`` is under ``/proc/PID/root``); debug dirs are
        searched for it. ``compiled``: symbols through elfsyms.c where it was built
        (the same answer, many times faster); False: Python only.
        """
        try:
            with open_untrusted(path) as f:
                owners = {os.fstat(f.fileno()).st_uid}  # who may own its debug file
                return cls._from_stream(f, path, logical_path or path, debug_dirs, owners, compiled)
        except RefusedFile as e:
            return cls(path, refused=str(e))
        except Exception:  # a malformed ELF can raise anything: no symbols then
            return cls(path)

    @classmethod
    def from_bytes(cls, data: bytes, path: str, *, compiled: bool = True) -> ElfSymbols:
        """Symbols of an in-memory image (the vDSO); never raises."""
        try:
            return cls._from_stream(io.BytesIO(data), path, path, (), set(), compiled)
        except RefusedFile as e:
            return cls(path, refused=str(e))
        except Exception:
            return cls(path)

    @classmethod
    def _from_stream(
        cls,
        stream: IO[bytes],
        path: str,
        logical_path: str,
        debug_dirs: Sequence[str],
        owners: Collection[int],
        compiled: bool = True,
    ) -> ElfSymbols:
        if stream.read(4) != b"\x7fELF":
            return cls(path)
        stream.seek(0)
        elf = _Elf(ELFFile(stream))
        build_id = elf.build_id()
        debug_file = None
        refused = None
        tables = elf.symbol_tables("SHT_SYMTAB")  # a superset of .dynsym when present
        if not tables:
            link = elf.section_data(".gnu_debuglink")
            reasons: list[str] = []
            debug_file = find_debug_file(
                build_id=build_id,
                debuglink=parse_debuglink(link) if link else None,
                binary_path=path,
                logical_path=logical_path,
                debug_dirs=debug_dirs,
                owners=owners,
                refused=reasons,
            )
            tables, refused = _debug_file_tables(debug_file, owners) if debug_file else ([], None)
            refused = refused or (reasons[0] if reasons else None)
            if not tables:
                debug_file = None
                # MiniDebugInfo holds only what .dynsym lacks: both are needed.
                mini, mini_refused = _minidebuginfo_tables(elf)
                tables = elf.symbol_tables("SHT_DYNSYM") + mini
                refused = refused or mini_refused
        little, wide = elf.file.little_endian, elf.file.elfclass == 64
        functions = (
            native.elf_functions([(t.symbols, t.strings, t.entsize) for t in tables], little, wide)
            if compiled
            else None
        )
        rows, strings = _merge(tables, little=little, wide=wide) if functions is None else ([], b"")
        return cls(
            path,
            segments=elf.load_segments(),
            rows=rows,
            strings=strings,
            functions=functions,
            build_id=build_id,
            debug_file=debug_file,
            is_elf=True,
            refused=refused,
        )

    def __len__(self) -> int:
        return len(self._starts)

    def vaddr(self, addr: int, map_start: int, map_pgoff: int) -> int | None:
        """ELF virtual address of a runtime ``addr`` inside a mapping of this file."""
        return self.offset_to_vaddr(addr - map_start + map_pgoff)

    def offset_to_vaddr(self, offset: int) -> int | None:
        """ELF virtual address of a file offset, through the ``PT_LOAD`` holding it."""
        if not self.segments:
            return offset if self.is_elf else None
        for seg in self.segments:
            if seg.offset <= offset < seg.offset + seg.filesz:
                return offset - seg.offset + seg.vaddr
        for seg in self.segments:
            # The mapped page below an unaligned p_offset (e.g. a data segment).
            if seg.offset - _MAX_PAGE <= offset < seg.offset:
                return offset - seg.offset + seg.vaddr
        return None

    def lookup(self, vaddr: int) -> tuple[str, int] | None:
        """``(mangled name, start)`` of the function covering ``vaddr``, or None."""
        starts = self._starts
        i = bisect.bisect_right(starts, vaddr) - 1
        # A symbol nested in a bigger one (assembly labels typed FUNC) can hide its
        # container: look one further back before giving up.
        for j in (i, i - 1):
            if j >= 0 and vaddr < starts[j] + self._sizes[j]:
                return self._name(j), starts[j]
        return None

    def _name(self, i: int) -> str:
        text = self._resolved.get(i)
        if text is not None:
            return text
        offset = self._names[i]
        end = self._strings.find(b"\0", offset)
        raw = self._strings[offset : end if end >= 0 else None]
        # Drop a symbol version (``memcpy@@GLIBC_2.14``); mangled names have no '@'.
        at = raw.find(b"@", 1)
        text = (raw[:at] if at > 0 else raw).decode("utf-8", "replace")
        self._resolved[i] = text
        return text


class _Elf:
    """Section and segment headers through pyelftools, without its section objects.

    Listing sections with pyelftools builds a full object per section, parsing
    entire GNU hash tables on the way (0.35 s for node's 100 MB binary): headers
    and raw bytes are all that is needed here. Every read is bounded; one past a
    bound raises :class:`RefusedFile`.
    """

    def __init__(self, elf: Any) -> None:
        self.file = elf
        self._budget = MAX_ELF_READ_BYTES
        count = 0
        if elf["e_shoff"]:
            shdr = elf.structs.Elf_Shdr.sizeof()
            self._check_table(elf["e_shoff"], elf["e_shentsize"], shdr, 1, "section")
            count = elf.num_sections()  # section 0 may hold it
            self._check_table(elf["e_shoff"], elf["e_shentsize"], shdr, count, "section")
        self.headers = [elf._get_section_header(i) for i in range(count)]
        shstrndx = elf.get_shstrndx()
        names = self.data(self.headers[shstrndx]) if 0 < shstrndx < count else b""
        self.names = {_c_string(names, h["sh_name"]): i for i, h in enumerate(self.headers)}

    def _check_table(self, offset: int, entsize: int, size: int, count: int, what: str) -> None:
        """Refuse a header table too long, or one past the end of the file."""
        if count > MAX_ELF_HEADERS:
            raise RefusedFile(errno.EFBIG, f"{count} {what} headers (at most {MAX_ELF_HEADERS})")
        if count and offset + entsize * (count - 1) + size > self.file.stream_len:
            raise ELFParseError(f"{what} headers past the end of the file")

    def read(self, offset: int, size: int, what: str) -> bytes:
        # What the file holds, not what a header claims: a claim costs nothing.
        size = max(0, min(size, self.file.stream_len - offset))
        if size > MAX_SECTION_BYTES:
            raise RefusedFile(errno.EFBIG, f"{what} is {size} bytes (at most {MAX_SECTION_BYTES})")
        if size > self._budget:
            raise RefusedFile(errno.EFBIG, f"reads more than {MAX_ELF_READ_BYTES} bytes")
        self._budget -= size
        if not size:
            return b""  # nor seek: an offset past 2**63 does not fit lseek
        stream = self.file.stream
        stream.seek(offset)
        data: bytes = stream.read(size)
        return data

    def data(self, header: Any) -> bytes:
        if header["sh_type"] == "SHT_NOBITS":
            return b""
        return self.read(header["sh_offset"], header["sh_size"], "a section")

    def section_data(self, name: str) -> bytes | None:
        index = self.names.get(name)
        return None if index is None else self.data(self.headers[index])

    def program_headers(self) -> list[Any]:
        count = self.file["e_phnum"]
        if count == 0xFFFF:  # PN_XNUM: the count is section 0's sh_info
            count = self.headers[0]["sh_info"] if self.headers else 0
        phdr = self.file.structs.Elf_Phdr.sizeof()
        self._check_table(self.file["e_phoff"], self.file["e_phentsize"], phdr, count, "program")
        return [self.file._get_segment_header(i) for i in range(count)]

    def load_segments(self) -> list[Segment]:
        return [
            Segment(h["p_offset"], h["p_vaddr"], h["p_filesz"])
            for h in self.program_headers()
            if h["p_type"] == "PT_LOAD"
        ]

    def symbol_tables(self, sh_type: str) -> list[_Table]:
        tables = []
        for header in self.headers:
            if header["sh_type"] != sh_type or header["sh_entsize"] <= 0:
                continue
            if not 0 < header["sh_link"] < len(self.headers):
                continue
            strings = self.data(self.headers[header["sh_link"]])
            symbols = self.data(header)
            if symbols and strings:
                tables.append(_Table(symbols, strings, header["sh_entsize"]))
        return tables

    def build_id(self) -> str | None:
        """Hex GNU build-id from the note sections (or ``PT_NOTE`` segments)."""
        holders = [
            (h["sh_offset"], h["sh_size"]) for h in self.headers if h["sh_type"] == "SHT_NOTE"
        ]
        if not holders:
            holders = [
                (h["p_offset"], h["p_filesz"])
                for h in self.program_headers()
                if h["p_type"] == "PT_NOTE"
            ]
        for offset, size in holders:
            if size <= MAX_NOTE_BYTES:
                found = parse_build_id(self.read(offset, size, "a note"), self.file.little_endian)
                if found:
                    return found
        return None


def _c_string(table: bytes, offset: int) -> str:
    end = table.find(b"\0", offset)
    return table[offset : end if end >= 0 else offset].decode("utf-8", "replace")


def file_build_id(path: str) -> str | None:
    """Build-id of the ELF file at ``path``, or None (never raises).

    Read from the ``PT_NOTE`` segments in the first page's program headers when the
    file is a 64-bit little-endian ELF (every binary the agent maps): a few reads, where
    parsing the section headers took ~7 ms a file. Anything else takes the full path.
    """
    try:
        with open_untrusted(path) as f:
            head = f.read(_PAGE)
            if head[:4] != b"\x7fELF":
                return None
            found = _build_id_from_notes(f, head)
            if found:
                return found
            f.seek(0)
            return _Elf(ELFFile(f)).build_id()
    except Exception:
        return None


def _build_id_from_notes(f: IO[bytes], head: bytes) -> str | None:
    """The build-id of a 64-bit little-endian ELF's ``PT_NOTE`` segments (``head``: its
    first page), or None to say: look the long way."""
    if len(head) < 64 or head[4] != 2 or head[5] != 1:
        return None
    (phoff,) = struct.unpack_from("<Q", head, 32)
    phentsize, phnum = struct.unpack_from("<HH", head, 54)
    if phentsize < 56 or phoff + phentsize * phnum > len(head):
        return None
    for i in range(phnum):
        p_type, _flags, p_offset, _vaddr, _paddr, p_filesz = struct.unpack_from(
            "<IIQQQQ", head, phoff + i * phentsize
        )
        if p_type == _PT_NOTE and 0 < p_filesz <= MAX_NOTE_BYTES:
            f.seek(p_offset)
            found = parse_build_id(f.read(p_filesz), True)
            if found:
                return found
    return None


def _debug_file_tables(path: str, owners: Collection[int]) -> tuple[list[_Table], str | None]:
    """The ``.symtab`` of a debug file, and why it was refused if it was."""
    try:
        with open_untrusted(path, owners=owners) as f:
            return _Elf(ELFFile(f)).symbol_tables("SHT_SYMTAB"), None
    except RefusedFile as e:
        return [], str(e)
    except Exception:
        return [], None


def _minidebuginfo_tables(elf: _Elf) -> tuple[list[_Table], str | None]:
    """The xz-compressed ``.symtab`` of ``.gnu_debugdata`` (Fedora's MiniDebugInfo),
    and why it was refused if it was."""
    try:
        packed = elf.section_data(".gnu_debugdata")
        if not packed:
            return [], None
        inner = inflate_xz(packed, MAX_DEBUGDATA_BYTES, ".gnu_debugdata")
        return _Elf(ELFFile(io.BytesIO(inner))).symbol_tables("SHT_SYMTAB"), None
    except RefusedFile as e:
        return [], str(e)
    except Exception:
        return [], None


def _merge(
    tables: Sequence[_Table], *, little: bool, wide: bool
) -> tuple[list[tuple[int, int, int]], bytes]:
    """Sized function symbols of all tables, one per start address, sorted."""
    order = "<" if little else ">"
    # (name, info, shndx, value, size) in each class's field order.
    fmt, fields = (
        (order + "IBxHQQ", (0, 1, 2, 3, 4)) if wide else (order + "IIIBxH", (0, 3, 4, 1, 2))
    )
    width = struct.calcsize(fmt)
    strings = b"".join(t.strings for t in tables)
    raw: list[tuple[int, int, int, int]] = []
    base = 0
    n_, i_, x_, v_, s_ = fields
    for table in tables:
        data = table.symbols
        if table.entsize != width:
            base += len(table.strings)
            continue
        data = data[: len(data) - len(data) % width]
        raw += [
            (e[v_], e[s_], e[n_] + base, e[i_] >> 4)
            for e in struct.iter_unpack(fmt, data)
            if e[s_] and e[x_] and (e[i_] & 0xF) in (_STT_FUNC, _STT_GNU_IFUNC)
        ]
        base += len(table.strings)
    raw.sort(key=lambda r: r[0])
    rows: list[tuple[int, int, int]] = []
    i, n = 0, len(raw)
    while i < n:
        j = i + 1
        while j < n and raw[j][0] == raw[i][0]:
            j += 1
        best = raw[i] if j == i + 1 else min(raw[i:j], key=lambda r: _rank(r, strings))
        rows.append((best[0], best[1], best[2]))
        i = j
    return _names_only(rows, strings)


def _names_only(
    rows: list[tuple[int, int, int]], strings: bytes
) -> tuple[list[tuple[int, int, int]], bytes]:
    """The rows over a string blob holding only their names: a string table also holds
    every data, section and file symbol's name, often half of it or more."""
    parts: list[bytes] = []
    out: list[tuple[int, int, int]] = []
    at = 0
    find = strings.find
    for start, size, offset in rows:
        end = find(b"\0", offset)
        name = strings[offset : end if end >= 0 else None]
        out.append((start, size, at))
        parts.append(name)
        at += len(name) + 1
    parts.append(b"")
    return out, b"\0".join(parts)


def _rank(row: tuple[int, int, int, int], strings: bytes) -> tuple[int, int, int, int]:
    """perf's preference among aliases: non-weak, global, fewer ``_``, longer name."""
    offset, binding = row[2], row[3]
    end = strings.find(b"\0", offset)
    name = strings[offset:end]
    underscores = len(name) - len(name.lstrip(b"_"))
    return (binding == _STB_WEAK, binding == _STB_LOCAL, underscores, -len(name))


@functools.lru_cache(maxsize=4096)
def display_name(path: str) -> str:
    """Module name of a mapped file: its base name without `` (deleted)``."""
    return os.path.basename(path.removesuffix(" (deleted)")) or path
