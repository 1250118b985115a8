"""x86_64 unwind tables from an ELF file's ``.eh_frame`` (and ``.debug_frame``).

A table is a sorted array of 12-byte rows, each saying how to find the caller's frame
for the pcs from its ``pc`` up to the next row's: where the CFA is (rsp or rbp plus an
offset, the PLT expression, or a kind the BPF walker stops at) and where the caller's
rbp was saved. The return address is always at CFA-8 on x86_64; any other rule for it
makes the row UNSUPPORTED, so the walker yields a short stack, never a wrong one.

The CFI interpreter is our own: pyelftools' decoder is 5-10x slower and raises on some
glibc FDEs. Only three columns are tracked (CFA, rbp, return address); opcodes for the
other registers are decoded to skip their operands and otherwise ignored.

The module is longer than most because the ELF reading, the CFI interpreter and the
table type share private row keys and are only useful together.
"""

from __future__ import annotations

import heapq
import io
import itertools
import json
import operator
import os
import struct
import sys
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, NamedTuple

from aperture.agent.native import EhRows, eh_rows
from aperture.agent.symbols.debuginfo import (
    DEFAULT_DEBUG_DIRS,
    find_debug_file,
    parse_build_id,
    parse_debuglink,
)
from aperture.agent.untrusted import (
    MAX_ELF_HEADERS,
    MAX_ELF_READ_BYTES,
    MAX_NOTE_BYTES,
    MAX_SECTION_BYTES,
    RefusedFile,
    inflate_zlib,
    open_untrusted,
)

__all__ = [
    "CFA_NONE",
    "CFA_PLT",
    "CFA_RBP",
    "CFA_RSP",
    "CFA_SIGNAL",
    "CFA_STOP",
    "CFA_UNSUPPORTED",
    "DEFAULT_DEBUG_DIRS",
    "RBP_OFFSET",
    "RBP_UNCHANGED",
    "RBP_UNDEFINED",
    "ROW_FORMAT",
    "ROW_SIZE",
    "Row",
    "UnwindTable",
    "build_table",
    "build_table_from_bytes",
    "unwind_step",
]

# Mirrors the C struct the BPF walker reads: {u32 pc; u8 cfa_type; u8 rbp_type;
# s16 cfa_offset; s16 rbp_offset; s16 ra_offset}, little-endian, no padding.
ROW_FORMAT = "<IBBhhh"
ROW_SIZE = 12
_ROW = struct.Struct(ROW_FORMAT)

CFA_NONE, CFA_RSP, CFA_RBP, CFA_PLT, CFA_STOP, CFA_SIGNAL, CFA_UNSUPPORTED = range(7)
RBP_UNCHANGED, RBP_OFFSET, RBP_UNDEFINED = range(3)

# x86_64 rt_sigframe as seen by the signal trampoline (__restore_rt): the handler's
# `ret` popped pretcode, so rsp points at the ucontext; uc_mcontext is at +40 in it
# (uc_flags 8, uc_link 8, uc_stack 24), and sigcontext holds r8..r15, rdi, rsi, rbp,
# rbx, rdx, rax, rcx, rsp, rip in that order (8 bytes each).
SIGFRAME_MCONTEXT = 40
SIGCONTEXT_RBP = 80
SIGCONTEXT_RSP = 120
SIGCONTEXT_RIP = 128

_PCS_SLICE = 3 * 65536  # u32 words of rows per step when collecting the pcs

_TABLE_MAGIC = b"APUW"
_TABLE_VERSION = 1
_HEADER = struct.Struct("<4sHI")  # magic, version, metadata length (JSON follows)

_X86_64 = 62
_SHT_NOBITS = 8
_SHT_NOTE = 7
_SHF_EXECINSTR = 0x4
_SHF_COMPRESSED = 0x800
_U32_MAX = 0xFFFFFFFF
_MASK64 = (1 << 64) - 1

# DWARF x86_64 register numbers.
_RBP = 6
_RSP = 7
_REG_NAMES = (
    "rax rdx rcx rbx rsi rdi rbp rsp r8 r9 r10 r11 r12 r13 r14 r15 rip".split()  # noqa: SIM905
)

# Register rule kinds tracked by the interpreter (rbp and the return address).
_R_SAME = 0  # not mentioned, same_value, or restored to "not mentioned"
_R_OFFSET = 1  # saved at CFA + offset
_R_OTHER = 2  # register, expression, val_offset, val_expression
_R_UNDEF = 3  # DW_CFA_undefined
# CFA "register" values for expression-defined CFAs (the offset holds the PLT threshold).
_CFA_EXPR_PLT = -1
_CFA_EXPR_OTHER = -2
_CFA_EXPR_PLT_BAD = -3  # the PLT shape, but rsp's offset in it is not 8

# Why a row is UNSUPPORTED: the fifth element of a row key (0 for supported rows).
_CAUSE_RA = 1
_CAUSE_EXPR = 2
_CAUSE_PLT_OFFSET = 3
_CAUSE_CFA_RANGE = 4
_CAUSE_RBP_RANGE = 5
_CAUSE_REG = 100  # + the CFA's DWARF register number
_CAUSE_NAMES = {
    _CAUSE_RA: "return address not at CFA-8",
    _CAUSE_EXPR: "CFA from a DWARF expression",
    _CAUSE_PLT_OFFSET: "PLT expression with rsp offset other than 8",
    _CAUSE_CFA_RANGE: "CFA offset outside s16",
    _CAUSE_RBP_RANGE: "rbp offset outside s16",
}

# Row key: (cfa_type, rbp_type, cfa_offset, rbp_offset, cause).
_Key = tuple[int, int, int, int, int]
_NONE_KEY: _Key = (CFA_NONE, RBP_UNCHANGED, 0, 0, 0)
_STOP_KEY: _Key = (CFA_STOP, RBP_UNCHANGED, 0, 0, 0)
_SIGNAL_KEY: _Key = (CFA_SIGNAL, RBP_UNCHANGED, 0, 0, 0)

# The PLT CFA expression gcc/binutils emit for lazy-binding stubs:
# DW_OP_breg7 <8>; DW_OP_breg16 <0>; DW_OP_lit15; DW_OP_and; DW_OP_lit<k>; DW_OP_ge;
# DW_OP_lit3; DW_OP_shl; DW_OP_plus  => rsp + 8 + ((rip & 15) >= k) << 3.
_PLT_HEAD = 0x77
_PLT_MIDDLE = b"\x80\x00\x3f\x1a"
_PLT_TAIL = b"\x2a\x33\x24\x22"


class Row(NamedTuple):
    """One table row, unpacked."""

    pc: int
    cfa_type: int
    rbp_type: int
    cfa_offset: int
    rbp_offset: int
    ra_offset: int  # arm64 only (RA's place relative to CFA, 0 = in LR); always 0 on x86_64


@dataclass(frozen=True)
class UnwindTable:
    """The unwind rows of one ELF file, with how they were obtained."""

    rows: bytes
    build_id: str | None
    reason: str
    fdes: int
    fde_errors: int
    unsupported_rows: int
    sources: tuple[str, ...]
    # UNSUPPORTED rows by cause (e.g. "CFA from register rdi"), for reports and tests.
    unsupported_causes: tuple[tuple[str, int], ...] = ()
    _pcs: array[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.rows) % ROW_SIZE:
            raise ValueError(f"rows are not a multiple of {ROW_SIZE} bytes")
        # pc is the first of three u32 words; taken a slice at a time, not via a whole copy
        words = memoryview(self.rows).cast("B").cast("I")
        pcs = array("I")
        for at in range(0, len(words), _PCS_SLICE):
            pcs.frombytes(words[at : at + _PCS_SLICE : 3].tobytes())
        words.release()
        if sys.byteorder != "little":
            pcs.byteswap()
        object.__setattr__(self, "_pcs", pcs)

    def __len__(self) -> int:
        return len(self.rows) // ROW_SIZE

    def row(self, i: int) -> Row:
        """The ``i``-th row."""
        if not 0 <= i < len(self):
            raise IndexError(i)
        return Row(*_ROW.unpack_from(self.rows, i * ROW_SIZE))

    def lookup(self, pc: int) -> Row | None:
        """The row covering ``pc``, or None before the first row."""
        i = bisect_right(self._pcs, pc) - 1
        return None if i < 0 else self.row(i)

    def to_bytes(self) -> bytes:
        """A versioned header, the metadata as JSON, then the rows (for a disk cache)."""
        meta = {
            "build_id": self.build_id,
            "reason": self.reason,
            "fdes": self.fdes,
            "fde_errors": self.fde_errors,
            "unsupported_rows": self.unsupported_rows,
            "sources": list(self.sources),
            "unsupported_causes": [list(c) for c in self.unsupported_causes],
        }
        blob = json.dumps(meta, separators=(",", ":")).encode()
        return _HEADER.pack(_TABLE_MAGIC, _TABLE_VERSION, len(blob)) + blob + self.rows

    @classmethod
    def from_bytes(cls, data: bytes) -> UnwindTable:
        """Inverse of :meth:`to_bytes`; ValueError on a bad or old header."""
        if len(data) < _HEADER.size:
            raise ValueError("unwind table cache entry is truncated")
        magic, version, size = _HEADER.unpack_from(data)
        if magic != _TABLE_MAGIC or version != _TABLE_VERSION:
            raise ValueError("not an unwind table of this version")
        end = _HEADER.size + size
        if end > len(data) or (len(data) - end) % ROW_SIZE:
            raise ValueError("unwind table cache entry is truncated")
        try:
            meta = json.loads(data[_HEADER.size : end])
            return cls(
                rows=bytes(data[end:]),
                build_id=meta["build_id"],
                reason=str(meta["reason"]),
                fdes=int(meta["fdes"]),
                fde_errors=int(meta["fde_errors"]),
                unsupported_rows=int(meta["unsupported_rows"]),
                sources=tuple(str(s) for s in meta["sources"]),
                unsupported_causes=tuple((str(n), int(c)) for n, c in meta["unsupported_causes"]),
            )
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"bad unwind table metadata: {e}") from None


def unwind_step(
    row: Row, regs: dict[str, int], read_u64: Callable[[int], int | None]
) -> dict[str, int] | None:
    """The caller's ``rip``/``rsp``/``rbp`` from this frame's, or None where the walk ends.

    ``row`` is the row for this frame's pc (for a caller frame, look up its return
    address minus one). ``rbp`` is absent from the result when the caller's rbp is
    unknown (RBP_UNDEFINED); an RBP-based CFA then ends the walk.
    """
    kind = row.cfa_type
    rsp = regs["rsp"]
    rbp = regs.get("rbp")
    if kind == CFA_SIGNAL:
        mcontext = rsp + SIGFRAME_MCONTEXT
        values = [read_u64(mcontext + o) for o in (SIGCONTEXT_RIP, SIGCONTEXT_RSP, SIGCONTEXT_RBP)]
        if None in values:
            return None
        rip_v, rsp_v, rbp_v = (v for v in values if v is not None)
        return {"rip": rip_v, "rsp": rsp_v, "rbp": rbp_v}
    if kind == CFA_RSP:
        cfa = rsp + row.cfa_offset
    elif kind == CFA_RBP:
        if rbp is None:
            return None
        cfa = rbp + row.cfa_offset
    elif kind == CFA_PLT:
        cfa = rsp + 8 + (8 if (regs["rip"] & 15) >= row.cfa_offset else 0)
    else:
        return None
    ra = read_u64(cfa - 8)
    if ra is None:
        return None
    out = {"rip": ra, "rsp": cfa}
    if row.rbp_type == RBP_OFFSET:
        saved = read_u64(cfa + row.rbp_offset)
        if saved is None:
            return None
        out["rbp"] = saved
    elif row.rbp_type == RBP_UNCHANGED and rbp is not None:
        out["rbp"] = rbp
    return out


def build_table(
    path: str, *, debug_dirs: Sequence[str] = DEFAULT_DEBUG_DIRS, compiled: bool = True
) -> UnwindTable:
    """The unwind table of the ELF file at ``path`` (never raises).

    ``compiled``: ``.eh_frame`` through ehframe.c where it was built (the same table
    as the Python interpreter's, many times faster); False: Python only.
    """
    try:
        with open_untrusted(path) as f:
            return _build(_FileSource(f), path, debug_dirs, compiled)
    except RefusedFile as e:
        return _empty(f"refused {path}: {e.strerror}")
    except OSError as e:
        return _empty(f"cannot read {path}: {e.strerror or e}")


def build_table_from_bytes(data: bytes, name: str, *, compiled: bool = True) -> UnwindTable:
    """The unwind table of an ELF image in memory (the vDSO); no debug file lookup."""
    return _build(_BytesSource(data), name, None, compiled)


# --- ELF sections -------------------------------------------------------------------


class _Section(NamedTuple):
    name: str
    type: int
    flags: int
    addr: int
    offset: int
    size: int


class _NotUsable(Exception):
    """The file cannot give a table; the message is the table's reason."""


class _Budget:
    """Reads of one file: each at most MAX_SECTION_BYTES, MAX_ELF_READ_BYTES in all,
    counting what the file holds, not what a header claims (a claim costs nothing)."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.left = MAX_ELF_READ_BYTES

    def take(self, offset: int, size: int) -> int:
        size = max(0, min(size, self.length - offset))
        if size > MAX_SECTION_BYTES:
            raise _NotUsable(f"a read of {size} bytes (at most {MAX_SECTION_BYTES})")
        if size > self.left:
            raise _NotUsable(f"reads more than {MAX_ELF_READ_BYTES} bytes")
        self.left -= size
        return size


class _BytesSource(_Budget):
    owner = 0

    def __init__(self, data: bytes) -> None:
        super().__init__(len(data))
        self.data = data

    def read(self, offset: int, size: int) -> bytes:
        size = self.take(offset, size)
        return self.data[offset : offset + size]


class _FileSource(_Budget):
    def __init__(self, f: BinaryIO) -> None:
        st = os.fstat(f.fileno())
        super().__init__(st.st_size)
        self.f = f
        self.owner = st.st_uid  # who may own its debug file

    def read(self, offset: int, size: int) -> bytes:
        size = self.take(offset, size)
        if not size:
            return b""  # nor seek: an offset past 2**63 does not fit lseek
        self.f.seek(offset)
        return self.f.read(size)


_Source = _BytesSource | _FileSource
_SHDR = struct.Struct("<IIQQQQIIQQ")


def _sections(src: _Source, name: str) -> list[_Section]:
    ehdr = src.read(0, 64)
    if len(ehdr) < 64 or ehdr[:4] != b"\x7fELF":
        raise _NotUsable(f"{name} is not an ELF file")
    if ehdr[4] != 2 or ehdr[5] != 1:
        raise _NotUsable(f"{name} is not a 64-bit little-endian ELF file")
    machine = struct.unpack_from("<H", ehdr, 18)[0]
    if machine != _X86_64:
        raise _NotUsable(f"{name} is not an x86_64 ELF file (e_machine {machine})")
    shoff = struct.unpack_from("<Q", ehdr, 40)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", ehdr, 58)
    if shoff == 0 or shentsize < _SHDR.size:
        raise _NotUsable(f"{name} has no section headers")
    if shnum == 0 or shstrndx == 0xFFFF:  # extended numbering: the values are in section 0
        first = src.read(shoff, _SHDR.size)
        if len(first) < _SHDR.size:
            raise _NotUsable(f"{name} is truncated (section headers)")
        _, _, _, _, _, size0, link0, *_ = _SHDR.unpack(first)
        shnum = shnum or size0
        shstrndx = link0 if shstrndx == 0xFFFF else shstrndx
    if shnum > MAX_ELF_HEADERS:
        raise _NotUsable(f"{name} has {shnum} section headers (at most {MAX_ELF_HEADERS})")
    raw = src.read(shoff, shnum * shentsize)
    if len(raw) < shnum * shentsize:
        raise _NotUsable(f"{name} is truncated (section headers)")
    headers = [_SHDR.unpack_from(raw, i * shentsize) for i in range(shnum)]
    if not 0 < shstrndx < shnum:
        raise _NotUsable(f"{name} has no section name table")
    strtab = src.read(headers[shstrndx][4], headers[shstrndx][5])
    out = []
    for name_off, sh_type, flags, addr, offset, size, *_ in headers:
        end = strtab.find(b"\0", name_off)
        section_name = strtab[name_off : end if end >= 0 else None].decode("latin-1")
        out.append(_Section(section_name, sh_type, flags, addr, offset, size))
    return out


def _section_data(src: _Source, section: _Section) -> bytes:
    if section.type == _SHT_NOBITS:
        return b""
    data = src.read(section.offset, section.size)
    if len(data) < section.size:
        raise _NotUsable(f"section {section.name} is truncated")
    if section.flags & _SHF_COMPRESSED:
        ch_type = struct.unpack_from("<I", data)[0] if len(data) >= 24 else 0
        if ch_type != 1:  # ELFCOMPRESS_ZLIB; zstd has no decoder in the standard library
            raise _NotUsable(f"section {section.name} has an unsupported compression")
        try:
            return inflate_zlib(data[24:], MAX_SECTION_BYTES, f"section {section.name}")
        except RefusedFile as e:
            raise _NotUsable(e.strerror) from None
    return data


def _build_id(src: _Source, sections: list[_Section]) -> str | None:
    for section in sections:
        if section.type == _SHT_NOTE and section.size <= MAX_NOTE_BYTES:
            found = parse_build_id(src.read(section.offset, section.size), little=True)
            if found:
                return found
    return None


# --- building -----------------------------------------------------------------------


class _Fde(NamedTuple):
    begin: int
    end: int
    rows: list[tuple[int, _Key]]  # (pc, key), pcs increasing, first at begin


def _empty(reason: str, build_id: str | None = None) -> UnwindTable:
    return UnwindTable(b"", build_id, reason, 0, 0, 0, ())


def _build(
    src: _Source, name: str, debug_dirs: Sequence[str] | None, compiled: bool = True
) -> UnwindTable:
    build_id = None
    try:
        sections = _sections(src, name)
        build_id = _build_id(src, sections)
        writer, errors, sources = _write_rows(src, name, sections, build_id, debug_dirs, compiled)
        if not sources:
            return _empty(f"{name} has no .eh_frame or .debug_frame", build_id)
        if writer.too_high:
            return _empty(f"{name} has code addresses above 4 GiB", build_id)
        fdes = writer.segments
        rows, unsupported, causes = writer.finish()
    except _NotUsable as e:
        return _empty(str(e), build_id)
    except OSError as e:
        return _empty(f"cannot read {name}: {e.strerror or e}", build_id)
    reason = "" if rows else f"{name} has no usable FDEs"
    return UnwindTable(rows, build_id, reason, fdes, errors, unsupported, tuple(sources), causes)


def _write_rows(
    src: _Source,
    name: str,
    sections: list[_Section],
    build_id: str | None,
    debug_dirs: Sequence[str] | None,
    compiled: bool = True,
) -> tuple[_Writer | _CompiledRows, int, list[str]]:
    """The rows of ``.eh_frame`` and ``.debug_frame``, the FDE errors, the sections used.

    Rows go straight from each FDE's instructions into the packed output, one FDE at a
    time in address order: a large library's rows as Python objects take 20x the bytes.
    The section data is freed on return, before the table is made.
    """
    by_name = {s.name: s for s in sections}
    gaps = _Gaps(_code_ranges(sections))
    writer: _Writer | _CompiledRows = _Writer()
    sources: list[str] = []
    errors = 0
    eh_frames = None
    eh_data = None
    eh = by_name.get(".eh_frame")
    if eh is not None and eh.type != _SHT_NOBITS and eh.size:
        eh_data = _section_data(src, eh)
        found = eh_rows(eh_data, eh.addr, True, gaps.code) if compiled else None
        sources.append(".eh_frame")
        if found is not None:
            writer = _CompiledRows(found)
            errors += found.errors
            if found.too_high:
                return writer, errors, sources  # no table, whatever .debug_frame holds
            gaps.adopt(found.gap_starts, found.gap_ends, found.wide)
        else:
            eh_frames = _scan_frames(eh_data, eh.addr, True)
            interpreted = _Writer()
            for segment in _segments(eh_frames):
                interpreted.add(segment)
                gaps.cover(segment.begin, segment.end)
            writer = interpreted
            errors += eh_frames.errors
            gaps.finish()
    else:
        gaps.finish()
    if not gaps.wide and writer.segments:
        return writer, errors, sources
    debug = _debug_frame(src, name, by_name, build_id, debug_dirs)
    if debug is None:
        return writer, errors, sources
    pieces = _fill(debug, gaps)
    errors += debug.errors
    sources.append(".debug_frame")
    if pieces:
        # Rare: .debug_frame fills what .eh_frame leaves uncovered. Assemble again,
        # running the .eh_frame FDEs a second time (their errors are counted already).
        writer = _Writer()
        if eh_frames is None and eh_data is not None and eh is not None:
            eh_frames = _scan_frames(eh_data, eh.addr, True)  # its errors are counted already
        eh_segments = _segments(eh_frames) if eh_frames is not None else iter(())
        for segment in heapq.merge(eh_segments, pieces, key=lambda f: f.begin):
            writer.add(segment)
    return writer, errors, sources


# An uncovered stretch of code shorter than this is alignment padding between
# functions, not code without CFI: it does not send us looking for a debug file.
_MIN_UNCOVERED = 64


def _code_ranges(sections: list[_Section]) -> list[tuple[int, int]]:
    ranges = sorted(
        (s.addr, s.addr + s.size)
        for s in sections
        if s.flags & _SHF_EXECINSTR and s.type != _SHT_NOBITS and s.size
    )
    merged: list[tuple[int, int]] = []
    for start, end in ((s, min(e, _MASK64)) for s, e in ranges):  # no code past 2^64
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


class _Gaps:
    """The maximal stretches of sorted disjoint code ranges that no segment covers.

    Segments are fed in address order (sorted, disjoint); the stretches are kept in two
    arrays, for ``.debug_frame`` to fill.
    """

    def __init__(self, code: list[tuple[int, int]]) -> None:
        self.code = code
        kind = "I" if not code or code[-1][1] <= _U32_MAX else "Q"
        self.starts: array[int] = array(kind)
        self.ends: array[int] = array(kind)
        self.wide = False  # some stretch of at least _MIN_UNCOVERED bytes
        self._k = 0  # the first code range that may still hold a gap
        self._cursor = 0  # the end of the last segment

    def cover(self, begin: int, end: int) -> None:
        if begin > self._cursor:
            self._gap(self._cursor, begin)
        self._cursor = end

    def adopt(self, starts: array[int], ends: array[int], wide: bool) -> None:
        """The stretches as found elsewhere (ehframe.c), every segment fed and finished."""
        self.starts, self.ends, self.wide = starts, ends, wide

    def finish(self) -> None:
        self._gap(self._cursor, 1 << 65)

    def _gap(self, lo: int, hi: int) -> None:
        code, k = self.code, self._k
        while k < len(code) and code[k][1] <= lo:
            k += 1
        self._k = k
        while k < len(code) and code[k][0] < hi:
            start, end = max(code[k][0], lo), min(code[k][1], hi)
            if start < end:
                self.starts.append(start)
                self.ends.append(end)
                self.wide = self.wide or end - start >= _MIN_UNCOVERED
            if code[k][1] > hi:
                break
            k += 1


def _debug_frame(
    src: _Source,
    name: str,
    by_name: dict[str, _Section],
    build_id: str | None,
    debug_dirs: Sequence[str] | None,
) -> _Frames | None:
    """FDEs of ``.debug_frame``: in the file itself, else in its separate debug file."""
    own = by_name.get(".debug_frame")
    if own is not None and own.type != _SHT_NOBITS and own.size:
        return _scan_frames(_section_data(src, own), 0, False)
    if debug_dirs is None:
        return None
    link = by_name.get(".gnu_debuglink")
    debuglink = parse_debuglink(_section_data(src, link)) if link is not None else None
    path = find_debug_file(
        build_id=build_id,
        debuglink=debuglink,
        binary_path=name,
        logical_path=name,
        debug_dirs=debug_dirs,
        owners={src.owner},
    )
    if path is None:
        return None
    try:
        with open_untrusted(path, owners={src.owner}) as f:
            debug_src = _FileSource(f)
            for section in _sections(debug_src, path):
                if section.name == ".debug_frame" and section.type != _SHT_NOBITS:
                    return _scan_frames(_section_data(debug_src, section), 0, False)
    except (OSError, _NotUsable):
        return None
    return None


def _segments(frames: _Frames) -> Iterator[_Fde]:
    """The FDEs of ``frames`` with their rows, sorted and cut not to overlap.

    Where FDEs overlap (rare), the earlier-starting one is cut where the next begins;
    of FDEs starting at the same pc, the first in the section wins. A pc inside an
    earlier FDE but after a nested one ends gets no rule (NONE). An FDE whose
    instructions fail to decode is left out and counted in ``frames.errors``.
    """
    pending: _Fde | None = None
    for i in frames.order if frames.order is not None else range(len(frames.ats)):
        fde = frames.fde(i)
        if fde is None:
            continue
        if pending is not None:
            if fde.begin == pending.begin:
                continue
            if fde.begin < pending.end:
                rows = [r for r in pending.rows if r[0] < fde.begin]
                pending = _Fde(pending.begin, fde.begin, rows)
            yield pending
        pending = fde
    if pending is not None:
        yield pending


def _fill(frames: _Frames, gaps: _Gaps) -> list[_Fde]:
    """``.debug_frame`` FDEs cut to the code ranges ``.eh_frame`` leaves uncovered."""
    out: list[_Fde] = []
    starts, ends = gaps.starts, gaps.ends
    for fde in _segments(frames):
        i = bisect_right(ends, fde.begin)
        while i < len(starts) and starts[i] < fde.end:
            lo, hi = max(starts[i], fde.begin), min(ends[i], fde.end)
            rows = fde.rows
            first = max(j for j, r in enumerate(rows) if r[0] <= lo)
            piece = [(lo, rows[first][1])] + [r for r in rows[first + 1 :] if r[0] < hi]
            out.append(_Fde(lo, hi, piece))
            i += 1
    return out


class _Writer:
    """Packed rows of disjoint FDEs fed in address order: merged, NONE rows over gaps."""

    def __init__(self) -> None:
        self.segments = 0
        self.too_high = False  # an FDE ends above 4 GiB: no table
        self._out = io.BytesIO()  # getvalue() hands over its buffer without a copy
        self._flat: list[int] = []  # rows not yet packed, 6 ints each
        self._last: _Key = (-1, 0, 0, 0, 0)
        self._end = -1  # where the previous FDE ended
        self._causes: dict[int, int] = {}

    def add(self, fde: _Fde) -> None:
        self.segments += 1
        self.too_high = self.too_high or fde.end > _U32_MAX
        if self.too_high:
            return
        flat, last, causes = self._flat, self._last, self._causes
        add = flat.extend
        if self._end >= 0 and fde.begin != self._end and last != _NONE_KEY:
            add((self._end, CFA_NONE, RBP_UNCHANGED, 0, 0, 0))
            last = _NONE_KEY
        for pc, key in fde.rows:
            # the cause is not part of the row: UNSUPPORTED rows merge whatever it is
            if key != last and not (key[0] == CFA_UNSUPPORTED == last[0]):
                add((pc, key[0], key[1], key[2], key[3], 0))
                last = key
                if key[4]:
                    causes[key[4]] = causes.get(key[4], 0) + 1
        self._last = last
        self._end = fde.end
        if len(flat) >= _PACK_STEP:
            self._pack()

    def finish(self) -> tuple[bytes, int, tuple[tuple[str, int], ...]]:
        """The packed rows, the number of UNSUPPORTED rows, and those by cause."""
        if self._end >= 0 and self._last != _NONE_KEY:
            self._flat.extend((self._end, CFA_NONE, RBP_UNCHANGED, 0, 0, 0))
        self._pack()
        flat = self._flat
        for at in range(0, len(flat), 6):
            self._out.write(_ROW.pack(*flat[at : at + 6]))
        rows = self._out.getvalue()
        self._out = io.BytesIO()
        return rows, *_named_causes(self._causes.items())

    def _pack(self) -> None:
        flat = self._flat
        full = len(flat) // _PACK_STEP * _PACK_STEP
        for at in range(0, full, _PACK_STEP):
            self._out.write(_PACK_MANY.pack(*flat[at : at + _PACK_STEP]))
        del flat[:full]


class _CompiledRows:
    """ehframe.c's rows of a section, in the place of a filled :class:`_Writer`."""

    def __init__(self, found: EhRows) -> None:
        self.segments = found.segments
        self.too_high = found.too_high
        self._found = found

    def finish(self) -> tuple[bytes, int, tuple[tuple[str, int], ...]]:
        return self._found.rows, *_named_causes(self._found.causes)


def _named_causes(
    causes: Iterable[tuple[int, int]],
) -> tuple[int, tuple[tuple[str, int], ...]]:
    """How many UNSUPPORTED rows, and how many of each cause, most first (then first used)."""
    counted = list(causes)
    named = sorted(((_cause_name(c), n) for c, n in counted), key=lambda x: -x[1])
    return sum(n for _, n in counted), tuple(named)


_PACK_CHUNK = 512  # rows per struct.pack call
_PACK_STEP = 6 * _PACK_CHUNK
_PACK_MANY = struct.Struct("<" + ROW_FORMAT[1:] * _PACK_CHUNK)


def _cause_name(cause: int) -> str:
    if cause >= _CAUSE_REG:
        reg = cause - _CAUSE_REG
        return f"CFA from register {_REG_NAMES[reg] if reg < len(_REG_NAMES) else reg}"
    return _CAUSE_NAMES[cause]


# --- CFI ----------------------------------------------------------------------------


class _CfiError(Exception):
    pass


class _Cie(NamedTuple):
    code_align: int
    data_align: int
    ra_reg: int
    fde_enc: int  # pointer encoding of initial_location (absptr in .debug_frame)
    augmented: bool  # 'z': FDEs carry an augmentation data length
    signal: bool  # 'S'
    state: tuple[int, int, int, int, int, int]  # after the initial instructions


def _uleb(d: bytes, p: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = d[p]
        p += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, p
        shift += 7


def _sleb(d: bytes, p: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = d[p]
        p += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            if b & 0x40:
                value -= 1 << shift
            return value, p


_FIXED = {0x02: "<H", 0x03: "<I", 0x04: "<Q", 0x0A: "<h", 0x0B: "<i", 0x0C: "<q"}
_FIXED_SIZE = {0x02: 2, 0x03: 4, 0x04: 8, 0x0A: 2, 0x0B: 4, 0x0C: 8}


def _pointer(d: bytes, p: int, enc: int, field_addr: int) -> tuple[int, int]:
    """Decode a DW_EH_PE-encoded pointer at ``p``; ``field_addr`` is its vaddr (pcrel)."""
    fmt = enc & 0x0F
    if fmt == 0x00:
        value = struct.unpack_from("<Q", d, p)[0]
        end = p + 8
    elif fmt == 0x01:
        value, end = _uleb(d, p)
    elif fmt == 0x09:
        value, end = _sleb(d, p)
    elif fmt in _FIXED:
        value = struct.unpack_from(_FIXED[fmt], d, p)[0]
        end = p + _FIXED_SIZE[fmt]
    else:
        raise _CfiError(f"pointer format {fmt:#x}")
    app = enc & 0x70
    if app == 0x10:
        value += field_addr
    elif app:  # textrel/datarel/funcrel/aligned: not used for x86_64 FDE addresses
        raise _CfiError(f"pointer application {app:#x}")
    if enc & 0x80:
        raise _CfiError("indirect pointer")
    return value & _MASK64, end


class _Frames:
    """A ``.eh_frame`` or ``.debug_frame`` section and its FDE headers in address order.

    Only where each FDE is (a few bytes each) is kept; its instructions run when
    :meth:`fde` is asked for it.
    """

    def __init__(self, data: bytes, sec_addr: int) -> None:
        self.data = data
        self.sec_addr = sec_addr
        self.cies: dict[int, _Cie | None] = {}
        offset = "I" if len(data) <= _U32_MAX else "Q"
        self.ats: array[int] = array(offset)  # the FDE's initial_location field
        self.ends: array[int] = array(offset)  # the end of the FDE
        self.cie_ats: array[int] = array(offset)
        # FDE indexes in address order (then section order); None: already in that order
        self.order: array[int] | None = None
        self.errors = 0

    def fde(self, i: int) -> _Fde | None:
        """The ``i``-th FDE with its rows; None (an error counted) if they do not decode."""
        d, at, end = self.data, self.ats[i], self.ends[i]
        cie = self.cies[self.cie_ats[i]]
        assert cie is not None  # FDEs of a bad CIE are not kept
        begin, pc_end, p = _fde_header(d, at, end, self.sec_addr, cie)
        if cie.signal:
            return _Fde(begin, pc_end, [(begin, _SIGNAL_KEY)])
        rows: list[tuple[int, _Key]] = []
        caf, daf, ra = cie.code_align, cie.data_align, cie.ra_reg
        try:
            _run(
                d, p, end, caf, daf, ra, begin, pc_end, cie.fde_enc, self.sec_addr, rows, cie.state
            )
        except (_CfiError, IndexError, struct.error):
            self.errors += 1
            return None
        if not rows:  # every row was past the end (advance beyond pc_range)
            return None
        return _Fde(begin, pc_end, rows)


def _scan_frames(d: bytes, sec_addr: int, is_eh: bool) -> _Frames:
    """The FDE headers of a ``.eh_frame`` (``is_eh``) or ``.debug_frame`` section."""
    frames = _Frames(d, sec_addr)
    cies = frames.cies
    ats, ends, cie_ats = frames.ats, frames.ends, frames.cie_ats
    begins: array[int] = array("Q")
    n = len(d)
    pos = 0
    unpack_from = struct.unpack_from
    while pos + 4 <= n:
        length = unpack_from("<I", d, pos)[0]
        if length == 0:
            if is_eh:
                break  # the terminator
            pos += 4
            continue
        if length == 0xFFFFFFFF:
            if pos + 12 > n:
                break
            length = unpack_from("<Q", d, pos + 4)[0]
            start = pos + 12
            id_size = 8
        else:
            start = pos + 4
            id_size = 4
        end = start + length
        if end > n or length < id_size:
            frames.errors += 1
            break
        pos = end
        cie_id = unpack_from("<I" if id_size == 4 else "<Q", d, start)[0]
        if is_eh:
            if cie_id == 0:
                continue
            cie_at = start - cie_id
            if cie_at < 0:  # a CIE before the section
                frames.errors += 1
                continue
        else:
            if cie_id == (1 << (8 * id_size)) - 1:
                continue
            cie_at = cie_id
        if cie_at not in cies:
            cies[cie_at] = _parse_cie(d, cie_at, is_eh)
        cie = cies[cie_at]
        if cie is None:
            frames.errors += 1
            continue
        try:
            begin, pc_end, _ = _fde_header(d, start + id_size, end, sec_addr, cie)
        except (_CfiError, IndexError, struct.error):
            frames.errors += 1
            continue
        if pc_end == begin:
            continue
        begins.append(begin)
        ats.append(start + id_size)
        ends.append(end)
        cie_ats.append(cie_at)
    if not all(map(operator.le, begins, itertools.islice(begins, 1, None))):
        # one int per FDE while sorting: (begin, index) packed so the sort is stable
        keys = sorted([b << 32 | i for i, b in enumerate(begins)])
        frames.order = array("I", map((_U32_MAX).__and__, keys))
    return frames


def _parse_cie(d: bytes, at: int, is_eh: bool) -> _Cie | None:
    try:
        length = struct.unpack_from("<I", d, at)[0]
        if length == 0xFFFFFFFF:
            length = struct.unpack_from("<Q", d, at + 4)[0]
            p, id_size = at + 12, 8
        else:
            p, id_size = at + 4, 4
        end = p + length
        if end > len(d):
            return None
        cie_id = int.from_bytes(d[p : p + id_size], "little")
        if cie_id != (0 if is_eh else (1 << (8 * id_size)) - 1):
            return None
        p += id_size
        version = d[p]
        aug_end = d.index(b"\0", p + 1)
        aug = d[p + 1 : aug_end].decode("latin-1")
        p = aug_end + 1
        if "eh" in aug:
            p += 8
        if version >= 4:
            p += 2  # address_size, segment_size (8 and 0 on x86_64)
        code_align, p = _uleb(d, p)
        data_align, p = _sleb(d, p)
        if version == 1:
            ra_reg = d[p]
            p += 1
        else:
            ra_reg, p = _uleb(d, p)
        if aug and not aug.startswith("z") and aug.replace("eh", ""):
            return None  # an augmentation without a length to skip it by
        fde_enc = 0x00  # absptr unless 'R' says otherwise
        signal = False
        if aug.startswith("z"):
            aug_len, p = _uleb(d, p)
            instructions = p + aug_len
            for ch in aug[1:]:
                if ch == "R":
                    fde_enc = d[p]
                    p += 1
                elif ch == "P":
                    _, p = _pointer(d, p + 1, d[p] & 0x7F, 0)
                elif ch == "L":
                    p += 1
                elif ch == "S":
                    signal = True
                elif ch != "B":
                    break
            p = instructions
        state = _run(d, p, end, code_align, data_align, ra_reg, 0, 0, None, 0, [], _INITIAL)
        return _Cie(code_align, data_align, ra_reg, fde_enc, aug.startswith("z"), signal, state)
    except (_CfiError, IndexError, ValueError, struct.error):
        return None


_INITIAL = (_RSP, 8, _R_SAME, 0, _R_SAME, 0)


def _fde_header(d: bytes, p: int, end: int, sec_addr: int, cie: _Cie) -> tuple[int, int, int]:
    """(begin, end pc, where the instructions start) of the FDE header at ``p``."""
    enc = cie.fde_enc
    if enc == 0x1B:  # pcrel sdata4, almost every .eh_frame FDE
        begin, size = struct.unpack_from("<iI", d, p)
        begin = (begin + sec_addr + p) & _MASK64
        p += 8
    else:
        begin, p = _pointer(d, p, enc, sec_addr + p)
        size, p = _pointer(d, p, enc & 0x0F, 0)
    if cie.augmented:
        aug_len, p = _uleb(d, p)
        p += aug_len
    if p > end:
        raise _CfiError("FDE header overruns its length")
    return begin, begin + size, p


def _row_key(
    cfa_reg: int, cfa_off: int, rbp_kind: int, rbp_off: int, ra_kind: int, ra_off: int
) -> _Key:
    if ra_kind == _R_UNDEF:
        return _STOP_KEY
    if cfa_reg == _RSP:
        cfa_type = CFA_RSP
    elif cfa_reg == _RBP:
        cfa_type = CFA_RBP
    elif cfa_reg == _CFA_EXPR_PLT:
        cfa_type = CFA_PLT
    elif cfa_reg == _CFA_EXPR_OTHER:
        return (CFA_UNSUPPORTED, 0, 0, 0, _CAUSE_EXPR)
    elif cfa_reg == _CFA_EXPR_PLT_BAD:
        return (CFA_UNSUPPORTED, 0, 0, 0, _CAUSE_PLT_OFFSET)
    else:
        return (CFA_UNSUPPORTED, 0, 0, 0, _CAUSE_REG + cfa_reg)
    if ra_kind != _R_OFFSET or ra_off != -8:
        return (CFA_UNSUPPORTED, 0, 0, 0, _CAUSE_RA)
    if not -0x8000 <= cfa_off < 0x8000:
        return (CFA_UNSUPPORTED, 0, 0, 0, _CAUSE_CFA_RANGE)
    if rbp_kind == _R_SAME:
        return (cfa_type, RBP_UNCHANGED, cfa_off, 0, 0)
    if rbp_kind == _R_OFFSET:
        if not -0x8000 <= rbp_off < 0x8000:
            return (CFA_UNSUPPORTED, 0, 0, 0, _CAUSE_RBP_RANGE)
        return (cfa_type, RBP_OFFSET, cfa_off, rbp_off, 0)
    return (cfa_type, RBP_UNDEFINED, cfa_off, 0, 0)


def _cfa_expression(block: bytes) -> tuple[int, int]:
    """(CFA register code, offset) for a DW_CFA_def_cfa_expression block."""
    if (
        len(block) == 11
        and block[0] == _PLT_HEAD
        and block[2:6] == _PLT_MIDDLE
        and 0x30 <= block[6] <= 0x4F
        and block[7:] == _PLT_TAIL
    ):
        if block[1] != 8:
            return _CFA_EXPR_PLT_BAD, 0
        return _CFA_EXPR_PLT, block[6] - 0x30
    return _CFA_EXPR_OTHER, 0


def _run(
    d: bytes,
    p: int,
    end: int,
    caf: int,
    daf: int,
    ra_reg: int,
    loc: int,
    pc_end: int,
    enc: int | None,
    sec_addr: int,
    rows: list[tuple[int, _Key]],
    init: tuple[int, int, int, int, int, int],
) -> tuple[int, int, int, int, int, int]:
    """Interpret CFA instructions ``d[p:end]`` from state ``init``; append rows.

    Rows are appended at each advance where the rule changed, for pcs in
    ``[loc, pc_end)``; returns the final state (a CIE's initial state).
    """
    cfa_reg, cfa_off, rbp_kind, rbp_off, ra_kind, ra_off = init
    stack: list[tuple[int, int, int, int, int, int]] = []
    last: _Key | None = None
    changed = True
    while p < end:
        op = d[p]
        p += 1
        high = op & 0xC0
        delta = 0
        if high == 0x40:
            delta = (op & 0x3F) * caf
        elif high == 0x80:
            reg = op & 0x3F
            b = d[p]
            p += 1
            if b < 0x80:
                off = b * daf
            else:
                off, p = _uleb(d, p - 1)
                off *= daf
            if reg == _RBP:
                rbp_kind, rbp_off, changed = _R_OFFSET, off, True
            elif reg == ra_reg:
                ra_kind, ra_off, changed = _R_OFFSET, off, True
        elif high == 0xC0:
            reg = op & 0x3F
            if reg == _RBP:
                rbp_kind, rbp_off, changed = init[2], init[3], True
            elif reg == ra_reg:
                ra_kind, ra_off, changed = init[4], init[5], True
        elif op == 0x0E:  # def_cfa_offset
            b = d[p]
            p += 1
            if b < 0x80:
                cfa_off = b
            else:
                cfa_off, p = _uleb(d, p - 1)
            changed = True
        elif op == 0x00:  # nop
            pass
        elif op == 0x02:  # advance_loc1
            delta = d[p] * caf
            p += 1
        elif op == 0x03:  # advance_loc2
            delta = (d[p] | d[p + 1] << 8) * caf
            p += 2
        elif op == 0x04:  # advance_loc4
            delta = int.from_bytes(d[p : p + 4], "little") * caf
            p += 4
        elif op == 0x0A:  # remember_state
            stack.append((cfa_reg, cfa_off, rbp_kind, rbp_off, ra_kind, ra_off))
        elif op == 0x0B:  # restore_state
            if not stack:
                raise _CfiError("restore_state with an empty stack")
            cfa_reg, cfa_off, rbp_kind, rbp_off, ra_kind, ra_off = stack.pop()
            changed = True
        elif op == 0x0C or op == 0x12:  # def_cfa, def_cfa_sf
            cfa_reg, p = _uleb(d, p)
            if op == 0x0C:
                cfa_off, p = _uleb(d, p)
            else:
                cfa_off, p = _sleb(d, p)
                cfa_off *= daf
            changed = True
        elif op == 0x0D:  # def_cfa_register
            cfa_reg, p = _uleb(d, p)
            changed = True
        elif op == 0x13:  # def_cfa_offset_sf
            cfa_off, p = _sleb(d, p)
            cfa_off *= daf
            changed = True
        elif op == 0x0F:  # def_cfa_expression
            size, p = _uleb(d, p)
            cfa_reg, cfa_off = _cfa_expression(d[p : p + size])
            p += size
            changed = True
        elif op in (0x05, 0x11, 0x14, 0x15, 0x2F):
            # offset_extended, offset_extended_sf, val_offset, val_offset_sf,
            # GNU_negative_offset_extended
            reg, p = _uleb(d, p)
            if op == 0x11 or op == 0x15:
                off, p = _sleb(d, p)
            else:
                off, p = _uleb(d, p)
            off = -off * daf if op == 0x2F else off * daf
            kind = _R_OFFSET if op in (0x05, 0x11, 0x2F) else _R_OTHER
            if reg == _RBP:
                rbp_kind, rbp_off, changed = kind, off, True
            elif reg == ra_reg:
                ra_kind, ra_off, changed = kind, off, True
        elif op in (0x06, 0x07, 0x08):  # restore_extended, undefined, same_value
            reg, p = _uleb(d, p)
            if reg == _RBP:
                if op == 0x06:
                    rbp_kind, rbp_off = init[2], init[3]
                else:
                    rbp_kind, rbp_off = (_R_UNDEF if op == 0x07 else _R_SAME), 0
                changed = True
            elif reg == ra_reg:
                if op == 0x06:
                    ra_kind, ra_off = init[4], init[5]
                else:
                    ra_kind, ra_off = (_R_UNDEF if op == 0x07 else _R_SAME), 0
                changed = True
        elif op == 0x09:  # register
            reg, p = _uleb(d, p)
            _, p = _uleb(d, p)
            if reg == _RBP:
                rbp_kind, rbp_off, changed = _R_OTHER, 0, True
            elif reg == ra_reg:
                ra_kind, ra_off, changed = _R_OTHER, 0, True
        elif op == 0x10 or op == 0x16:  # expression, val_expression
            reg, p = _uleb(d, p)
            size, p = _uleb(d, p)
            p += size
            if reg == _RBP:
                rbp_kind, rbp_off, changed = _R_OTHER, 0, True
            elif reg == ra_reg:
                ra_kind, ra_off, changed = _R_OTHER, 0, True
        elif op == 0x2E:  # GNU_args_size
            _, p = _uleb(d, p)
        elif op == 0x2D:  # GNU_window_save (SPARC; aarch64 negate_ra_state): no operands
            pass
        elif op == 0x01:  # set_loc
            if enc is None:
                raise _CfiError("set_loc in a CIE")
            target, p = _pointer(d, p, enc, sec_addr + p)
            if target < loc:
                raise _CfiError("set_loc moves backwards")
            delta = target - loc
        else:
            raise _CfiError(f"unknown CFA opcode {op:#x}")
        if delta:
            if changed and loc < pc_end:
                key = _row_key(cfa_reg, cfa_off, rbp_kind, rbp_off, ra_kind, ra_off)
                if key != last:
                    rows.append((loc, key))
                    last = key
            changed = False
            loc += delta
    if p > end:
        raise _CfiError("instructions overrun the entry")
    if changed and loc < pc_end:
        key = _row_key(cfa_reg, cfa_off, rbp_kind, rbp_off, ra_kind, ra_off)
        if key != last:
            rows.append((loc, key))
    return cfa_reg, cfa_off, rbp_kind, rbp_off, ra_kind, ra_off
