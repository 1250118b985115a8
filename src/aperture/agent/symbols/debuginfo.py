"""Finding the separate debug file of a stripped ELF binary.

The same search gdb does: ``<debug dir>/.build-id/xx/rest.debug`` first, then the
``.gnu_debuglink`` name next to the binary, in its ``.debug/`` subdirectory and
under ``<debug dir>/<binary's dir>/``. A debuglink hit must match its CRC-32.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Sequence

DEFAULT_DEBUG_DIRS: tuple[str, ...] = ("/usr/lib/debug",)
_CRC_CHUNK = 1 << 20


def parse_debuglink(data: bytes) -> tuple[str, int] | None:
    """``(file name, crc32)`` from a ``.gnu_debuglink`` section's contents."""
    end = data.find(b"\0")
    if end <= 0:
        return None
    crc_at = (end + 4) & ~3  # the name's NUL is padded to a 4-byte boundary
    if len(data) < crc_at + 4:
        return None
    name = data[:end].decode("utf-8", "surrogateescape")
    if "/" in name:
        return None
    return name, int.from_bytes(data[crc_at : crc_at + 4], "little")


def file_crc32(path: str) -> int | None:
    """The CRC-32 gdb checks a debuglink target against (zlib's polynomial)."""
    crc = 0
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_CRC_CHUNK):
                crc = zlib.crc32(chunk, crc)
    except OSError:
        return None
    return crc


def build_id_path(debug_dir: str, build_id: str) -> str:
    """``<debug_dir>/.build-id/xx/rest.debug`` for a hex build-id."""
    return os.path.join(debug_dir, ".build-id", build_id[:2], build_id[2:] + ".debug")


def find_debug_file(
    *,
    build_id: str | None,
    debuglink: tuple[str, int] | None,
    binary_path: str,
    logical_path: str,
    debug_dirs: Sequence[str] = DEFAULT_DEBUG_DIRS,
) -> str | None:
    """Path of the debug file for a binary, or None.

    ``binary_path`` is where the binary was opened (its directory is searched);
    ``logical_path`` is its path inside its own root, used under each debug dir.
    """
    if build_id and len(build_id) > 2:
        for debug_dir in debug_dirs:
            candidate = build_id_path(debug_dir, build_id)
            if os.path.isfile(candidate):
                return candidate
    if debuglink is None:
        return None
    name, crc = debuglink
    here = os.path.dirname(binary_path)
    logical_dir = os.path.dirname(logical_path).lstrip("/")
    candidates = [os.path.join(here, name), os.path.join(here, ".debug", name)]
    candidates += [os.path.join(d, logical_dir, name) for d in debug_dirs]
    for candidate in candidates:
        if not os.path.isfile(candidate) or _same_file(candidate, binary_path):
            continue
        if file_crc32(candidate) == crc:
            return candidate
    return None


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
