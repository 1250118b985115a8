"""Finding the separate debug file of a stripped ELF binary.

The same search gdb does: ``<debug dir>/.build-id/xx/rest.debug`` first, then the
``.gnu_debuglink`` name next to the binary, in its ``.debug/`` subdirectory and
under ``<debug dir>/<binary's dir>/``. A debuglink hit must match its CRC-32.

Debug dirs and the binary's own directory may be another user's (a container's,
or ``/tmp``): a candidate must be a regular file owned by root or ``owners``
(the binary's owner), and no link, except a relative one inside its debug dir
(Fedora's ``.build-id`` entries link to ``../../usr/...``). A debuglink
candidate over :data:`~aperture.agent.untrusted.MAX_DEBUG_FILE_BYTES` is not
read for its CRC.
"""

from __future__ import annotations

import os
import stat
import struct
import zlib
from collections.abc import Collection, Sequence

from aperture.agent.untrusted import MAX_DEBUG_FILE_BYTES, RefusedFile, open_untrusted

DEFAULT_DEBUG_DIRS: tuple[str, ...] = ("/usr/lib/debug",)
_CRC_CHUNK = 1 << 20
_MAX_LINKS = 8
_NT_GNU_BUILD_ID = 3


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


def parse_build_id(notes: bytes, little: bool) -> str | None:
    """Hex ``NT_GNU_BUILD_ID`` of a run of ELF notes (4-byte aligned, as GNU writes them)."""
    header = struct.Struct("<III" if little else ">III")
    at = 0
    while at + header.size <= len(notes):
        namesz, descsz, kind = header.unpack_from(notes, at)
        name_at = at + header.size
        desc_at = name_at + ((namesz + 3) & ~3)
        if kind == _NT_GNU_BUILD_ID and notes[name_at : name_at + namesz] == b"GNU\0":
            return notes[desc_at : desc_at + descsz].hex() or None
        at = desc_at + ((descsz + 3) & ~3)
    return None


def file_crc32(path: str, *, owners: Collection[int] | None = None) -> int | None:
    """The CRC-32 gdb checks a debuglink target against (zlib's polynomial).

    None for a file that cannot be read; :class:`RefusedFile` for one refused (see
    the module docstring).
    """
    crc = 0
    try:
        with open_untrusted(path, owners=owners, max_size=MAX_DEBUG_FILE_BYTES) as f:
            while chunk := f.read(_CRC_CHUNK):
                crc = zlib.crc32(chunk, crc)
    except RefusedFile:
        raise
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
    owners: Collection[int] | None = None,
    refused: list[str] | None = None,
) -> str | None:
    """Path of the debug file for a binary, or None.

    ``binary_path`` is where the binary was opened (its directory is searched);
    ``logical_path`` is its path inside its own root, used under each debug dir.
    ``owners``: the uids besides root a debug file may belong to (None: any). A
    refused candidate is passed over; ``refused`` gets why.
    """
    reasons = refused if refused is not None else []
    if build_id and len(build_id) > 2:
        for debug_dir in debug_dirs:
            candidate = _inside(build_id_path(debug_dir, build_id), debug_dir, reasons)
            if candidate is not None and _acceptable(candidate, owners, reasons):
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
        try:
            if file_crc32(candidate, owners=owners) == crc:
                return candidate
        except RefusedFile as e:
            reasons.append(str(e))
    return None


def _inside(path: str, debug_dir: str, reasons: list[str]) -> str | None:
    """``path`` with the relative links of its last component followed while they stay
    in ``debug_dir``; None if one leaves it, is absolute, or they go on too long."""
    top = os.path.normpath(debug_dir) + os.sep
    for _ in range(_MAX_LINKS):
        try:
            st = os.lstat(path)
        except OSError:
            return None
        if not stat.S_ISLNK(st.st_mode):
            return path
        try:
            target = os.readlink(path)
        except OSError:
            return None
        if os.path.isabs(target):  # it would resolve in our root, not the process's
            reasons.append(f"{path} links to an absolute path")
            return None
        path = os.path.normpath(os.path.join(os.path.dirname(path), target))
        if not path.startswith(top):
            reasons.append(f"{path} is outside {debug_dir}")
            return None
    reasons.append(f"{path}: more than {_MAX_LINKS} links")
    return None


def _acceptable(path: str, owners: Collection[int] | None, reasons: list[str]) -> bool:
    try:
        with open_untrusted(path, owners=owners):
            return True
    except RefusedFile as e:
        reasons.append(str(e))
    except OSError:
        pass
    return False


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
