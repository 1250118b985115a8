"""Find CPython in a process: which file holds the interpreter, its version and layout.

The interpreter is the mapped file whose ELF defines ``_PyRuntime``: the executable
of a static build (Debian's ``/usr/bin/python3.11``) or ``libpython3.X.so*``. Only
those two kinds of mapping are looked at (an interpreter in a library named
otherwise is not found). Per file, the symbols needed are read once and cached by
``(dev, inode)``.

The version comes from ``Py_Version`` (exported since 3.11) read from the process;
3.10 has no such symbol, so its minor comes from the library name or, for a static
executable, from a NUL-terminated ``3.10.N`` tail in ``.rodata`` (where ``PY_VERSION``
lands, often merged into a longer string such as the install prefix), and so does
the patch level when exactly one candidate is there; otherwise the patch is -1.
Layouts do not change within a minor series, so only the minor picks the offsets.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
from collections import OrderedDict
from dataclasses import dataclass
from typing import IO, NamedTuple

from aperture.agent.python.offsets import (
    PyOffsets,
    UnsupportedPython,
    debug_offsets_version,
    offsets_for,
    parse_debug_offsets,
)
from aperture.agent.symbols.process import PROC_ROOT, Mapping, ProcessMaps
from aperture.agent.untrusted import MAX_SECTION_BYTES, open_untrusted
from aperture.agent.unwind.segments import (
    ElfSection,
    LoadSegment,
    elf_sections,
    load_bias,
    read_load_segments,
)

__all__ = [
    "Interpreter",
    "ProcessMemory",
    "UnsupportedPython",
    "find_interpreter",
    "read_memory",
]

_WANTED = (b"_PyRuntime", b"Py_Version", b"_PyEval_EvalFrameDefault")
_LIBPYTHON = re.compile(r"libpython3\.(\d+)")
_RODATA_VERSION = re.compile(rb"(?<![0-9.])3\.(\d{1,2})\.(\d{1,2})(?:(?:a|b|rc)\d+)?\+?\x00")
_SHT_SYMTAB = 2
_SHT_DYNSYM = 11
_CACHE_SIZE = 256


@dataclass(frozen=True, slots=True)
class Interpreter:
    """One process's CPython: version, the file it runs from and where its state is."""

    version: tuple[int, int, int]
    """(major, minor, patch); patch is -1 when a 3.10 build does not say"""
    path: str
    """the file defining ``_PyRuntime``, as mapped in the process"""
    runtime_addr: int
    """``&_PyRuntime`` in the process"""
    eval_start: int
    """``_PyEval_EvalFrameDefault``'s ``[start, end)`` in the process"""
    eval_end: int
    offsets: PyOffsets


class _Symbol(NamedTuple):
    value: int
    size: int


class _ElfPython(NamedTuple):
    """What one file says about the interpreter in it (None: no ``_PyRuntime``)."""

    symbols: dict[bytes, _Symbol]
    segments: list[LoadSegment]
    rodata_versions: frozenset[tuple[int, int]]


_elf_cache: OrderedDict[tuple[int, int], _ElfPython | None] = OrderedDict()
# the files (device, inode) of processes found to run no interpreter
_no_interpreter: OrderedDict[frozenset[tuple[int, int]], None] = OrderedDict()


class ProcessMemory:
    """Reads of one process's memory through ``/proc/PID/mem``; a gone process reads None."""

    __slots__ = ("_fd", "path")

    def __init__(self, pid: int, proc_root: str = PROC_ROOT) -> None:
        self.path = os.path.join(proc_root, str(pid), "mem")
        self._fd: int | None = None

    def read(self, addr: int, size: int) -> bytes | None:
        """``size`` bytes at ``addr``, or None if any of them cannot be read."""
        if addr <= 0 or size < 0 or addr + size > 1 << 64:
            return None
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            data = os.pread(self._fd, size, addr)
        except (OSError, OverflowError, ValueError):
            return None
        return data if len(data) == size else None

    def u64(self, addr: int) -> int | None:
        data = self.read(addr, 8)
        return None if data is None else int.from_bytes(data, "little")

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ProcessMemory:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def read_memory(pid: int, addr: int, size: int, proc_root: str = PROC_ROOT) -> bytes | None:
    """``size`` bytes of process ``pid`` at ``addr`` (None if unreadable or gone)."""
    with ProcessMemory(pid, proc_root) as mem:
        return mem.read(addr, size)


def find_interpreter(pid: int, maps: ProcessMaps) -> Interpreter | None:
    """The CPython interpreter of ``pid``, or None if it runs none (or has exited).

    Raises :class:`UnsupportedPython` for an interpreter that is there but cannot be
    used (a version other than 3.10-3.13, an unreadable ``_PyRuntime``, a bad
    ``_Py_DebugOffsets``); callers count those and keep the process's native stacks.
    """
    files = frozenset((m.dev, m.inode) for m in maps.mappings if m.is_file)
    if files in _no_interpreter:
        with contextlib.suppress(KeyError):  # popped by another thread meanwhile
            _no_interpreter.move_to_end(files)
        return None  # the same files as a process already found to run none
    candidates, settled = _candidates(pid, maps)
    # settled: the executable was among the candidates, and each was read and found
    # to hold no interpreter (a file read that failed is not an answer)
    for mapping in candidates:
        if _elf_cache.get((mapping.dev, mapping.inode), True) is None:
            continue  # a file already read and found to hold no interpreter
        path = maps.file_for(mapping)
        if path is None:
            settled = False
            continue
        elf = _elf_python(path, mapping)
        if elf is None:
            continue
        settled = False
        bias = load_bias(elf.segments, mapping.start, mapping.pgoff)
        if bias is None:
            continue
        with ProcessMemory(pid, maps.proc_root) as mem:
            return _interpreter(mem, mapping, elf, bias)
    if settled and files:
        # A busy host starts the same programs over and over (compilers, shells):
        # the next one mapping exactly these files is answered without a stat.
        _no_interpreter[files] = None
        while len(_no_interpreter) > _CACHE_SIZE:
            _no_interpreter.popitem(last=False)
    return None


def _candidates(pid: int, maps: ProcessMaps) -> tuple[list[Mapping], bool]:
    """libpython mappings first, then the executable's (one mapping per file); and
    whether the executable was known (the process gone: only python-named files)."""
    try:
        # st_dev through /proc/PID/exe can differ from the maps' device on overlay
        # filesystems: the inode alone picks the executable's mapping.
        exe_inode = os.stat(os.path.join(maps.proc_root, str(pid), "exe")).st_ino
    except OSError:
        exe_inode = None
    libs, exes, seen = [], [], set()
    for m in maps.mappings:
        if not m.is_file or (m.dev, m.inode) in seen:
            continue
        name = os.path.basename(m.file_path)
        if name.startswith("libpython"):
            libs.append(m)
        elif m.inode == exe_inode or "python" in name:
            exes.append(m)
        else:
            continue
        seen.add((m.dev, m.inode))
    return libs + exes, exe_inode is not None


def _interpreter(mem: ProcessMemory, mapping: Mapping, elf: _ElfPython, bias: int) -> Interpreter:
    runtime = elf.symbols[b"_PyRuntime"].value + bias
    version = _version(mem, mapping, elf, bias)
    if not 10 <= version[1] <= 13 or version[0] != 3:
        raise UnsupportedPython(
            f"CPython {version[0]}.{version[1]} in {mapping.file_path} is not supported"
            " (3.10-3.13 are)"
        )
    if version[1] >= 13:
        data = mem.read(runtime, 584)
        if data is None:
            raise UnsupportedPython(f"cannot read _PyRuntime of {mapping.file_path}")
        hexversion = debug_offsets_version(data)
        if hexversion is not None and (hexversion >> 16) != (version[0] << 8 | version[1]):
            raise UnsupportedPython(
                f"_Py_DebugOffsets says version {hexversion:#x}, Py_Version says {version}"
            )
        offsets = parse_debug_offsets(data)
    else:
        offsets = offsets_for(version[1])
    ev = elf.symbols.get(b"_PyEval_EvalFrameDefault")
    if ev is None or ev.size == 0:
        raise UnsupportedPython(f"{mapping.file_path} has no sized _PyEval_EvalFrameDefault symbol")
    return Interpreter(
        version=version,
        path=mapping.file_path,
        runtime_addr=runtime,
        eval_start=ev.value + bias,
        eval_end=ev.value + ev.size + bias,
        offsets=offsets,
    )


def _version(
    mem: ProcessMemory, mapping: Mapping, elf: _ElfPython, bias: int
) -> tuple[int, int, int]:
    sym = elf.symbols.get(b"Py_Version")
    if sym is not None:
        data = mem.read(sym.value + bias, 4)
        if data is None:
            raise UnsupportedPython(f"cannot read Py_Version of {mapping.file_path}")
        hexversion = int.from_bytes(data, "little")
        return (hexversion >> 24, (hexversion >> 16) & 0xFF, (hexversion >> 8) & 0xFF)
    # Before 3.11: the library's name, else .rodata, says the minor.
    m = _LIBPYTHON.search(os.path.basename(mapping.file_path))
    minors = {minor for minor, _ in elf.rodata_versions}
    if m:
        minor = int(m.group(1))
    elif len(minors) == 1:
        (minor,) = minors
    else:
        raise UnsupportedPython(f"cannot tell the CPython version of {mapping.file_path}")
    patches = {patch for mi, patch in elf.rodata_versions if mi == minor}
    return (3, minor, patches.pop() if len(patches) == 1 else -1)


def _elf_python(path: str, mapping: Mapping) -> _ElfPython | None:
    key = (mapping.dev, mapping.inode)
    if key in _elf_cache:
        _elf_cache.move_to_end(key)
        return _elf_cache[key]
    info = _read_elf_python(path)
    _elf_cache[key] = info
    while len(_elf_cache) > _CACHE_SIZE:
        _elf_cache.popitem(last=False)
    return info


def _read_elf_python(path: str) -> _ElfPython | None:
    try:
        with open_untrusted(path) as f:
            sections = elf_sections(f.read(64), f)
            if sections is None:
                return None
            symbols: dict[bytes, _Symbol] = {}
            # .dynsym first: CPython exports what we need, so .symtab is rarely read.
            by_index = {sec[6]: sec for sec in sections.values()}
            for sh_type in (_SHT_DYNSYM, _SHT_SYMTAB):
                for sec in sections.values():
                    strtab = by_index.get(sec[4])
                    if sec[0] == sh_type and strtab is not None:
                        _find_symbols(f, sec, strtab, symbols)
                if b"_PyRuntime" in symbols and b"_PyEval_EvalFrameDefault" in symbols:
                    break
            if b"_PyRuntime" not in symbols:
                return None
            versions: frozenset[tuple[int, int]] = frozenset()
            if b"Py_Version" not in symbols and b".rodata" in sections:
                rodata = sections[b".rodata"]
                f.seek(rodata[2])
                data = f.read(min(rodata[3], MAX_SECTION_BYTES))
                versions = frozenset(
                    (int(m.group(1)), int(m.group(2))) for m in _RODATA_VERSION.finditer(data)
                )
    except (OSError, struct.error, ValueError, OverflowError):  # Overflow: an offset past 2**63
        return None
    return _ElfPython(symbols, read_load_segments(path), versions)


def _find_symbols(
    f: IO[bytes], symtab: ElfSection, strtab: ElfSection, out: dict[bytes, _Symbol]
) -> None:
    """Add the ``_WANTED`` symbols defined in ``symtab`` to ``out``."""
    if strtab[3] > MAX_SECTION_BYTES or symtab[3] > MAX_SECTION_BYTES:
        return
    f.seek(strtab[2])
    strings = f.read(strtab[3])
    # The string-table offsets a wanted name can start at; symbols are then matched
    # by st_name alone (names shared by tail-merging are found too).
    wanted: dict[int, bytes] = {}
    for name in _WANTED:
        if name in out:
            continue
        for m in re.finditer(re.escape(name) + b"\0", strings):
            wanted[m.start()] = name
    if not wanted:
        return
    if symtab[5] != 24:
        return
    f.seek(symtab[2])
    data = f.read(symtab[3] - symtab[3] % 24)
    for st_name, _info, _other, shndx, value, size in struct.iter_unpack("<IBBHQQ", data):
        found = wanted.get(st_name)
        if found is not None and shndx != 0 and found not in out:
            out[found] = _Symbol(value, size)
