"""The agent's compiled hot paths give what their Python references give.

The .eh_frame interpreter (ehframe.c) against tables.py's (itself checked against
readelf in test_unwind_tables.py): the same table, byte for byte, with the same
counts. The function-symbol reader (elfsyms.c) against elf.py's ``_merge``: the same
starts, sizes and names. On the host's binaries here; damaged inputs are compared in
tests/fuzz/test_fuzz_native.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from aperture.agent import native
from aperture.agent.symbols.elf import ElfSymbols
from aperture.agent.unwind.tables import build_table

BUILT = native.LIBRARY.exists()
needs_library = pytest.mark.skipif(
    not BUILT, reason=f"{native.LIBRARY.name} is not built here (make native)"
)

# A C library, an interpreter without frame pointers, a shell, and the large C++
# programs of a busy host where they are installed (node 30 MB, gcc's cc1).
BINARIES = [
    "/lib/x86_64-linux-gnu/libc.so.6",
    "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
    "/usr/bin/python3.11",
    "/usr/bin/bash",
    "/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30",
    shutil.which("node") or "",
    "/usr/lib/gcc/x86_64-linux-gnu/12/cc1",
]


@needs_library
def test_the_library_loads_where_it_was_built() -> None:
    assert native.available()


@needs_library
@pytest.mark.parametrize("path", [p for p in BINARIES if p and Path(p).is_file()])
def test_compiled_and_python_tables_are_the_same(path: str) -> None:
    compiled = build_table(path, compiled=True)
    python = build_table(path, compiled=False)
    assert compiled.reason == python.reason == ""
    assert len(compiled.rows) > 1000
    assert compiled.rows == python.rows
    assert compiled == python  # FDEs, errors, UNSUPPORTED rows by cause, sources


def test_without_the_library_python_builds_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native, "_tried", True)
    monkeypatch.setattr(native, "_lib", None)
    assert native.eh_rows(b"", 0, True, []) is None
    table = build_table("/usr/bin/python3.11")
    assert table.reason == "" and table.rows


@needs_library
@pytest.mark.parametrize("path", [p for p in BINARIES if p and Path(p).is_file()])
def test_compiled_and_python_symbols_are_the_same(path: str) -> None:
    compiled = ElfSymbols.load(path, compiled=True)
    python = ElfSymbols.load(path, compiled=False)
    assert len(compiled) == len(python) > 100
    assert compiled.refused is python.refused is None
    assert list(compiled._starts) == list(python._starts)
    assert list(compiled._sizes) == list(python._sizes)
    assert list(compiled._names) == list(python._names)
    assert compiled._strings == python._strings
    for vaddr in compiled._starts[:: max(1, len(compiled) // 500)]:
        assert compiled.lookup(vaddr) == python.lookup(vaddr)
