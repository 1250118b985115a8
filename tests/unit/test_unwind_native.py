"""The compiled .eh_frame interpreter (ehframe.c) builds the tables tables.py builds.

tables.py's interpreter is the reference (itself checked against readelf in
test_unwind_tables.py); the compiled one must give the same table, byte for byte
with the same counts, for the host's binaries. Damaged sections are compared in
tests/fuzz/test_fuzz_eh_frame.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from aperture.agent.unwind import native
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
