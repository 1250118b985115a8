"""The agent's compiled hot paths, where they were built: the ``.eh_frame``
interpreter (``unwind/ehframe.c``) and the ELF function-symbol reader
(``symbols/elfsyms.c``).

``make native`` builds ``_native.so`` beside this file and the wheel ships it;
without it (a platform it was not built for, a source tree never built) each call
here answers None and tables.py or elf.py does the work in Python, with the same
result. The calls release the GIL, so the table threads build in parallel.
"""

from __future__ import annotations

import ctypes
import threading
from array import array
from collections.abc import Sequence
from ctypes import POINTER, c_char_p, c_int, c_int64, c_uint8, c_uint32, c_uint64
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

LIBRARY = Path(__file__).with_name("_native.so")


class _Result(ctypes.Structure):
    """ehframe.c's struct eh_result."""

    _fields_ = (
        ("rows", POINTER(c_uint8)),
        ("rows_len", c_uint64),
        ("segments", c_uint64),
        ("errors", c_uint64),
        ("too_high", c_uint32),
        ("ncauses", c_uint32),
        ("cause_codes", POINTER(c_int64)),
        ("cause_counts", POINTER(c_uint64)),
        ("gap_starts", POINTER(c_uint64)),
        ("gap_ends", POINTER(c_uint64)),
        ("ngaps", c_uint64),
        ("wide", c_uint32),
        ("reserved", c_uint32),
    )


class _Symbols(ctypes.Structure):
    """elfsyms.c's struct sym_result."""

    _fields_ = (
        ("starts", POINTER(c_uint64)),
        ("sizes", POINTER(c_uint64)),
        ("names", POINTER(c_uint64)),
        ("n", c_uint64),
        ("strings", POINTER(c_uint8)),
        ("strings_len", c_uint64),
    )


class _KernelSymbols(ctypes.Structure):
    """elfsyms.c's struct ksym_result."""

    _fields_ = (
        ("addrs", POINTER(c_uint64)),
        ("ends", POINTER(c_uint64)),
        ("n", c_uint64),
        ("text", POINTER(c_uint8)),
        ("text_len", c_uint64),
    )


@dataclass(frozen=True, slots=True)
class EhRows:
    """A section's rows as tables.py's ``_Writer`` would hold them after every FDE."""

    rows: bytes  # packed, the closing NONE row included
    segments: int  # FDEs given to the writer
    errors: int  # FDEs (and CIEs) that did not decode
    too_high: bool  # an FDE ends above 4 GiB
    causes: tuple[tuple[int, int], ...]  # UNSUPPORTED rows: (cause, count), first use first
    # the code no segment covers, as tables.py's _Gaps finds it (when not too_high)
    gap_starts: array[int]
    gap_ends: array[int]
    wide: bool  # some gap is not alignment padding


_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False


def _library() -> ctypes.CDLL | None:
    global _lib, _tried
    with _lock:
        if not _tried:
            _tried = True
            try:
                lib = ctypes.CDLL(str(LIBRARY))
                _declare(lib)
            except (OSError, AttributeError):  # not built, or built before a function
                return None
            _lib = lib
        return _lib


def _declare(lib: ctypes.CDLL) -> None:
    """Each function's types (AttributeError: the library lacks one)."""
    lib.aperture_eh_rows.restype = c_int
    lib.aperture_eh_rows.argtypes = [
        *(c_char_p, c_uint64, c_uint64, c_int),
        *(POINTER(c_uint64), POINTER(c_uint64), c_uint64, POINTER(_Result)),
    ]
    lib.aperture_eh_free.restype = None
    lib.aperture_eh_free.argtypes = [POINTER(_Result)]
    lib.aperture_elf_functions.restype = c_int
    lib.aperture_elf_functions.argtypes = [
        *(POINTER(c_char_p), POINTER(c_uint64), POINTER(c_char_p), POINTER(c_uint64)),
        *(POINTER(c_uint64), c_uint32, c_int, c_int, POINTER(_Symbols)),
    ]
    lib.aperture_syms_free.restype = None
    lib.aperture_syms_free.argtypes = [POINTER(_Symbols)]
    lib.aperture_bucket_index.restype = None
    lib.aperture_bucket_index.argtypes = [
        *(c_char_p, c_uint64, c_uint32, c_uint64, c_uint64, c_uint32),
        ctypes.c_void_p,
    ]
    lib.aperture_kallsyms.restype = c_int
    lib.aperture_kallsyms.argtypes = [c_char_p, c_uint64, c_uint64, POINTER(_KernelSymbols)]
    lib.aperture_ksyms_free.restype = None
    lib.aperture_ksyms_free.argtypes = [POINTER(_KernelSymbols)]
    lib.aperture_spread_rows.restype = None
    lib.aperture_spread_rows.argtypes = [*(c_char_p, c_uint64, c_uint32, c_uint32, ctypes.c_void_p)]
    lib.aperture_iota.restype = None
    lib.aperture_iota.argtypes = [ctypes.c_void_p, c_uint64, c_uint32]


def available() -> bool:
    """Whether the compiled interpreter loads here."""
    return _library() is not None


def eh_rows(
    data: bytes, sec_addr: int, is_eh: bool, code: Sequence[tuple[int, int]]
) -> EhRows | None:
    """The rows of a ``.eh_frame`` (``is_eh``) or ``.debug_frame`` section, and the gaps
    its FDEs leave in ``code`` (sorted disjoint ranges, ends below 2^64); None without
    the library (or when it ran out of memory): interpret it in Python then."""
    lib = _library()
    if lib is None:
        return None
    n = len(code)
    starts = (c_uint64 * max(n, 1))(*(s for s, _ in code))
    ends = (c_uint64 * max(n, 1))(*(e for _, e in code))
    result = _Result()
    if lib.aperture_eh_rows(
        data, len(data), sec_addr, int(is_eh), starts, ends, n, ctypes.byref(result)
    ):
        return None
    try:
        ncauses, ngaps = result.ncauses, result.ngaps
        return EhRows(
            rows=ctypes.string_at(result.rows, result.rows_len) if result.rows_len else b"",
            segments=result.segments,
            errors=result.errors,
            too_high=bool(result.too_high),
            causes=tuple(
                zip(result.cause_codes[:ncauses], result.cause_counts[:ncauses], strict=True)
            ),
            gap_starts=array("Q", result.gap_starts[:ngaps]),
            gap_ends=array("Q", result.gap_ends[:ngaps]),
            wide=bool(result.wide),
        )
    finally:
        lib.aperture_eh_free(ctypes.byref(result))


@dataclass(frozen=True, slots=True)
class Functions:
    """An ELF file's function symbols as elf.py's ``_merge`` gives them, as columns."""

    starts: array[int]  # sorted, one function per start
    sizes: array[int]
    names: array[int]  # offsets into strings
    strings: bytes  # the names alone, each ended by a NUL


def elf_functions(
    tables: Sequence[tuple[bytes, bytes, int]], little: bool, wide: bool
) -> Functions | None:
    """The sized FUNC and IFUNC symbols of ``(symbols, strings, entsize)`` tables, one per
    start address (perf's choice among aliases); None without the library."""
    lib = _library()
    if lib is None:
        return None
    n = len(tables)
    symbols = (c_char_p * max(n, 1))(*(t[0] for t in tables))
    symbols_len = (c_uint64 * max(n, 1))(*(len(t[0]) for t in tables))
    strings = (c_char_p * max(n, 1))(*(t[1] for t in tables))
    strings_len = (c_uint64 * max(n, 1))(*(len(t[1]) for t in tables))
    entsize = (c_uint64 * max(n, 1))(*(t[2] for t in tables))
    result = _Symbols()
    if lib.aperture_elf_functions(
        symbols, symbols_len, strings, strings_len, entsize, n, int(little), int(wide),
        ctypes.byref(result),
    ):  # fmt: skip
        return None
    try:
        count = result.n
        return Functions(
            starts=_column(result.starts, count),
            sizes=_column(result.sizes, count),
            names=_column(result.names, count),
            strings=ctypes.string_at(result.strings, result.strings_len),
        )
    finally:
        lib.aperture_syms_free(ctypes.byref(result))


def _column(pointer: Any, count: int) -> array[int]:
    """``count`` 64-bit words at ``pointer`` as an array, in one copy."""
    column = array("Q")
    if count:
        column.frombytes(ctypes.string_at(pointer, count * 8))
    return column


def bucket_index(
    rows: bytes, stride: int, first: int, nb: int, shift: int, out: array[int]
) -> bool:
    """layout.py's bucket index written into ``out`` (u32 words, one entry every
    ``stride``) from ``rows`` (little-endian u32 words, a pc every ``stride``); False
    without the library (build it in Python then)."""
    lib = _library()
    if lib is None:
        return False
    assert out.itemsize == 4 and len(out) >= nb * stride
    lib.aperture_bucket_index(
        rows, len(rows) // (4 * stride), stride, first, nb, shift, out.buffer_info()[0]
    )
    return True


def keys(start: int, n: int) -> array[int]:
    """The u32 keys ``start .. start + n - 1``, as an array (a batch write's keys)."""
    out = array("I", bytes(4 * n))
    lib = _library()
    if lib is None:
        return array("I", range(start, start + n))
    if n:
        lib.aperture_iota(out.buffer_info()[0], n, start)
    return out


def kallsyms(f: BinaryIO) -> tuple[array[int], str, array[int]] | None:
    """kernel.py's text rows of a whole kallsyms file: (addresses, the entries back to
    back, each entry's end); None without the library, or for a file it leaves to
    Python (an address not hex, an entry not ASCII). The file's text (5 MB here) is
    let go before the entries become a string, straight from the library's buffer."""
    lib = _library()
    if lib is None:
        return None
    data = f.read()
    width = data.find(b" ")
    if width <= 0:
        return None
    result = _KernelSymbols()
    failed = lib.aperture_kallsyms(data, len(data), width, ctypes.byref(result))
    del data
    if failed:
        return None
    try:
        text = _decode_ascii(result.text, result.text_len) if result.text_len else ""
        return _column(result.addrs, result.n), text, _column(result.ends, result.n)
    finally:
        lib.aperture_ksyms_free(ctypes.byref(result))


def _decode_ascii(pointer: Any, size: int) -> str:
    """``size`` ASCII bytes at ``pointer`` as a str, without a bytes copy between."""
    decode = ctypes.pythonapi.PyUnicode_DecodeASCII
    decode.restype = ctypes.py_object
    decode.argtypes = [ctypes.c_void_p, ctypes.c_ssize_t, c_char_p]
    return str(decode(ctypes.cast(pointer, ctypes.c_void_p), size, None))


def spread_rows(rows: bytes, row_size: int, slot_size: int, dst: int) -> bool:
    """``rows`` (packed, ``row_size`` bytes each) written to the memory at ``dst`` one per
    ``slot_size`` bytes; False without the library."""
    lib = _library()
    if lib is None:
        return False
    lib.aperture_spread_rows(rows, len(rows) // row_size, row_size, slot_size, dst)
    return True
