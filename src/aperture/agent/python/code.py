"""Code objects of another process → qualified name, file and line.

The BPF walker records, per Python frame, the code object's address and an
instruction offset; :class:`CodeResolver` reads the code object from the process's
memory once (cached per address) and finds the line in its line table. Anything
that does not look like what it should (a type that is not ``code``/``str``/
``bytes``, a length out of range, a failed read) gives None: the caller keeps the
native frame rather than show a made-up one.
"""

from __future__ import annotations

import itertools
import struct
import threading
from collections import OrderedDict
from typing import NamedTuple

from aperture.agent.python.interpreter import Interpreter, ProcessMemory
from aperture.agent.python.linetable import LineRanges, decode_locations, decode_pep626
from aperture.agent.python.offsets import (
    PY_TPFLAGS_BYTES_SUBCLASS,
    PY_TPFLAGS_UNICODE_SUBCLASS,
    UNICODE_ASCII_BIT,
    UNICODE_COMPACT_BIT,
    UNICODE_KIND_MASK,
    UNICODE_KIND_SHIFT,
)
from aperture.agent.symbols.process import PROC_ROOT

# Fixed in every CPython 3.x on 64-bit (checked against the DWARF of 3.10-3.13).
OB_TYPE = 8
VAR_SIZE = 16
TP_NAME = 24
TP_FLAGS = 168
UNICODE_LENGTH = 16

_MAX_NAME = 1 << 12  # characters of a name or qualified name
_MAX_FILENAME = 1 << 14
_MAX_LINETABLE = 1 << 24
_MAX_CODE_UNITS = 1 << 24
_DEFAULT_CACHE = 8192
_READ_AHEAD = 192  # bytes read past a str or bytes object's header (see _read_head)


class PyFrameInfo(NamedTuple):
    """One resolved Python frame; ``line`` is 0 where the line table has none."""

    qualname: str
    filename: str
    firstlineno: int
    line: int


class _Code(NamedTuple):
    qualname: str
    filename: str
    firstlineno: int
    code_units: int
    ranges: LineRanges


_SERIALS = itertools.count(1)


class CodeResolver:
    """Resolves ``(code object address, instruction offset)`` pairs of one process."""

    def __init__(
        self,
        pid: int,
        interpreter: Interpreter,
        *,
        proc_root: str = PROC_ROOT,
        max_codes: int = _DEFAULT_CACHE,
    ) -> None:
        self.pid = pid
        self.interpreter = interpreter
        # Unique for the agent's life: an answer cached elsewhere under it was this
        # resolver's (a later registration of the same pid has another serial).
        self.serial = next(_SERIALS)
        self._mem = ProcessMemory(pid, proc_root)
        self._codes: OrderedDict[int, _Code | None] = OrderedDict()
        self._max_codes = max_codes
        self._types: dict[int, tuple[bytes | None, int]] = {}  # address -> (tp_name, tp_flags)
        o = interpreter.offsets
        self._minor = interpreter.version[1]
        self._code_header = 8 + max(
            o.code_name,
            o.code_qualname,
            o.code_filename,
            o.code_firstlineno,
            o.code_linetable,
            o.code_code,
            o.code_argcount,
        )

    def close(self) -> None:
        self._mem.close()

    def resolve(self, code_addr: int, instr: int) -> PyFrameInfo | None:
        """The frame of code object ``code_addr`` at ``instr``, as the BPF walker records it.

        ``instr``: 3.11+ the byte offset of the instruction pointer from ``code_addr``;
        3.10 ``f_lasti`` (code units).
        """
        code = self._code(code_addr)
        if code is None:
            return None
        if self._minor == 10:
            index = instr
        else:
            index = (instr - self.interpreter.offsets.code_adaptive) // 2
        if index >= code.code_units or index < -1:
            return None
        line = code.ranges.line_at(index, code.firstlineno)
        return PyFrameInfo(code.qualname, code.filename, code.firstlineno, line)

    def _code(self, addr: int) -> _Code | None:
        if addr in self._codes:
            self._codes.move_to_end(addr)
            return self._codes[addr]
        code = self._read_code(addr)
        # Failed reads are cached too: a garbage pointer stays garbage; a code
        # object's address is not reused while the frame that names it runs.
        self._codes[addr] = code
        while len(self._codes) > self._max_codes:
            self._codes.popitem(last=False)
        return code

    def _read_code(self, addr: int) -> _Code | None:
        o = self.interpreter.offsets
        header = self._mem.read(addr, self._code_header)
        if header is None or self._type_name(_u64(header, OB_TYPE)) != b"code":
            return None
        name = self._read_str(_u64(header, o.code_name), _MAX_NAME)
        if o.code_qualname >= 0:
            qualname = self._read_str(_u64(header, o.code_qualname), _MAX_NAME)
        else:
            qualname = name
        filename = self._read_str(_u64(header, o.code_filename), _MAX_FILENAME)
        table = self._read_bytes(_u64(header, o.code_linetable), _MAX_LINETABLE)
        if name is None or qualname is None or filename is None or table is None:
            return None
        (firstlineno,) = struct.unpack_from("<i", header, o.code_firstlineno)
        if self._minor == 10:
            co_code = self._bytes_size(_u64(header, o.code_code))
            if co_code is None:
                return None
            units = co_code // 2
        else:
            # A code object is a PyVarObject whose ob_size counts its code units.
            units = _u64(header, VAR_SIZE)
        if firstlineno < 0 or not 0 < units < _MAX_CODE_UNITS:
            return None
        ranges = _LINE_TABLES.ranges(self._minor == 10, table, firstlineno)
        return _Code(qualname, filename, firstlineno, units, ranges)

    def _type(self, type_addr: int) -> tuple[bytes | None, int]:
        """``(tp_name, tp_flags)`` of a type object; ``(None, 0)`` if unreadable."""
        known = self._types.get(type_addr)
        if known is not None:
            return known
        name: bytes | None = None
        flags = 0
        data = self._mem.read(type_addr, TP_FLAGS + 8)
        if data is not None:
            flags = _u64(data, TP_FLAGS)
            raw = self._mem.read(_u64(data, TP_NAME), 32)
            if raw is not None:
                name = raw.split(b"\0", 1)[0]
        if len(self._types) > 256:
            self._types.clear()
        self._types[type_addr] = (name, flags)
        return name, flags

    def _type_name(self, type_addr: int) -> bytes | None:
        return self._type(type_addr)[0]

    def _has_flag(self, type_addr: int, flag: int) -> bool:
        return bool(self._type(type_addr)[1] & flag)

    def _read_str(self, addr: int, max_len: int) -> str | None:
        """A compact ``str`` object's text (ASCII, UCS1, UCS2 or UCS4), or None."""
        o = self.interpreter.offsets
        header = self._read_head(addr, o.unicode_compact_data)
        if header is None or not self._has_flag(_u64(header, OB_TYPE), PY_TPFLAGS_UNICODE_SUBCLASS):
            return None
        length = _u64(header, UNICODE_LENGTH)
        (state,) = struct.unpack_from("<I", header, o.unicode_state)
        kind = (state >> UNICODE_KIND_SHIFT) & UNICODE_KIND_MASK
        if not state & UNICODE_COMPACT_BIT or kind not in (1, 2, 4) or length > max_len:
            return None
        ascii_ = bool(state & UNICODE_ASCII_BIT)
        if ascii_ and kind != 1:
            return None
        start = o.unicode_ascii_data if ascii_ else o.unicode_compact_data
        data = self._body(header, addr, start, length * kind)
        if data is None:
            return None
        try:
            if ascii_:
                return data.decode("ascii")
            return data.decode({1: "latin-1", 2: "utf-16-le", 4: "utf-32-le"}[kind])
        except UnicodeDecodeError:
            return None

    def _bytes_size(self, addr: int, header: bytes | None = None) -> int | None:
        o = self.interpreter.offsets
        if header is None:
            header = self._mem.read(addr, o.bytes_data)
        if header is None or not self._has_flag(_u64(header, OB_TYPE), PY_TPFLAGS_BYTES_SUBCLASS):
            return None
        size = _u64(header, o.bytes_size)
        return size if size < _MAX_LINETABLE else None

    def _read_bytes(self, addr: int, max_len: int) -> bytes | None:
        o = self.interpreter.offsets
        header = self._read_head(addr, o.bytes_data)
        size = self._bytes_size(addr, header)
        if header is None or size is None or size > max_len:
            return None
        return self._body(header, addr, o.bytes_data, size)

    def _read_head(self, addr: int, size: int) -> bytes | None:
        """An object's ``size``-byte header and, in the same read, what follows it
        (most names and many line tables fit: one read per object instead of two); the
        header alone where the longer read crosses into unreadable memory."""
        return self._mem.read(addr, size + _READ_AHEAD) or self._mem.read(addr, size)

    def _body(self, head: bytes, addr: int, start: int, size: int) -> bytes | None:
        """``size`` bytes at ``addr + start``: from ``head`` where it holds them."""
        if start + size <= len(head):
            return head[start : start + size]
        return self._mem.read(addr + start, size)


class _LineTables:
    """Decoded line tables shared by every process's resolver, by their bytes.

    The processes a busy host starts run the same code (the standard library's
    start-up, the same script): the same table decoded once, its ranges held once.
    Bounded in bytes (the table and its ranges); thread-safe (the event thread
    resolves new stacks while the drain resolves the window's).
    """

    def __init__(self, budget_bytes: int) -> None:
        self._budget = budget_bytes
        self._bytes = 0
        self._lock = threading.Lock()
        self._tables: OrderedDict[tuple[bool, bytes, int], tuple[LineRanges, int]] = OrderedDict()

    def ranges(self, pep626: bool, table: bytes, firstlineno: int) -> LineRanges:
        key = (pep626, table, firstlineno)
        with self._lock:
            found = self._tables.get(key)
            if found is not None:
                self._tables.move_to_end(key)
                return found[0]
        ranges = (decode_pep626 if pep626 else decode_locations)(table, firstlineno)
        cost = len(table) + _RANGE_BYTES * len(ranges.starts) + _TABLE_BYTES
        with self._lock:
            if key not in self._tables:
                self._tables[key] = (ranges, cost)
                self._bytes += cost
            while self._bytes > self._budget and self._tables:
                self._bytes -= self._tables.popitem(last=False)[1][1]
        return ranges


_RANGE_BYTES = 3 * 8  # a start, an end and a line: a list slot each (small ints are shared)
_TABLE_BYTES = 3 * 56 + 160  # three empty lists, the tuples and the entry
_LINE_TABLES = _LineTables(4 << 20)


def _u64(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 8], "little")
