"""Opening, reading and inflating files that other users control, within bounds.

The agent runs as root and reads files anyone may have made: perf maps in a
world-writable ``/tmp``, binaries and debug files inside containers. A name can be
swapped for a FIFO (an open that never returns), a device (an open with side
effects: a watchdog reboots the host when closed), a symbolic link to a file of
the host's (an absolute link resolves in *our* root, not the container's), or a
sparse 100 GB file that costs its maker nothing. So :func:`open_untrusted` opens
the name with ``O_PATH`` (which opens nothing), refuses a link, anything but a
regular file and, where given, a file not owned by root or one of ``owners``, and
only then opens that same inode for reading through ``/proc/self/fd``. The
readers bound every read and every inflation with the limits below; what passes
a limit is refused with :class:`RefusedFile` (an ``OSError``: callers skip the
file) and counted by the caller.
"""

from __future__ import annotations

import errno
import lzma
import os
import re
import stat
import zlib
from collections.abc import Collection
from typing import BinaryIO

MiB = 1 << 20
# One ELF section read into memory (a symbol or string table, .eh_frame,
# .debug_frame), or inflated from a compressed one. The largest seen: a browser's
# debug .strtab, ~100 MiB.
MAX_SECTION_BYTES = 128 * MiB
# All section reads of one ELF file together (a .symtab and its .strtab, notes).
MAX_ELF_READ_BYTES = 256 * MiB
# Section and program headers parsed per ELF file (real files have tens).
MAX_ELF_HEADERS = 1 << 16
# Note sections larger than this are not searched for a build-id (it is 36 bytes).
MAX_NOTE_BYTES = 1 * MiB
# MiniDebugInfo (.gnu_debugdata): inflated size, and the xz decoder's memory.
MAX_DEBUGDATA_BYTES = 64 * MiB
XZ_MEMLIMIT = 128 * MiB
# A perf map: bytes read (the rest is skipped and counted), and one line's length.
MAX_PERF_MAP_BYTES = 64 * MiB
MAX_PERF_MAP_LINE = 8 * 1024
# /proc/PID/maps (the kernel's text: 65,530 mappings of ~150 bytes is 10 MiB).
MAX_MAPS_BYTES = 32 * MiB
# A separate debug file whose CRC-32 is checked (it is read whole for that).
MAX_DEBUG_FILE_BYTES = 4096 * MiB

# The one kind of link followed: the kernel's own link to a mapped file, on our
# procfs (nobody else can create entries there).
_KERNEL_LINK = re.compile(r"/proc/[0-9]+/map_files/[0-9a-f]+-[0-9a-f]+")


class RefusedFile(OSError):
    """A file, or a part of one, the agent will not read; the message says why."""


def open_untrusted(
    path: str, *, owners: Collection[int] | None = None, max_size: int | None = None
) -> BinaryIO:
    """``path`` opened for reading, if it is a regular file and no link.

    ``owners``: the uids (besides root) the file may belong to, e.g. the process's
    own for its perf map; None accepts any owner. ``max_size`` refuses a larger
    file. Raises :class:`RefusedFile`, or the ``OSError`` of a failed open.
    """
    flags = os.O_PATH | os.O_CLOEXEC
    if not _KERNEL_LINK.fullmatch(path):
        flags |= os.O_NOFOLLOW
    handle = os.open(path, flags)
    try:
        st = os.fstat(handle)
        _check(path, st, owners, max_size)
        # The inode already checked, opened for reading; nothing can swap it now.
        fd = os.open(f"/proc/self/fd/{handle}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    finally:
        os.close(handle)
    try:
        reopened = os.fstat(fd)
        if (reopened.st_dev, reopened.st_ino) != (st.st_dev, st.st_ino):
            raise RefusedFile(errno.EXDEV, "changed while being opened", path)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _check(
    path: str, st: os.stat_result, owners: Collection[int] | None, max_size: int | None
) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise RefusedFile(errno.ELOOP, "is a symbolic link", path)
    if not stat.S_ISREG(st.st_mode):
        raise RefusedFile(errno.EINVAL, "is not a regular file", path)
    if owners is not None and st.st_uid != 0 and st.st_uid not in owners:
        allowed = ", ".join(str(uid) for uid in sorted({0, *owners}))
        raise RefusedFile(errno.EPERM, f"is owned by uid {st.st_uid} (not {allowed})", path)
    if max_size is not None and st.st_size > max_size:
        raise RefusedFile(errno.EFBIG, f"is {st.st_size} bytes (at most {max_size})", path)


def read_bounded(f: BinaryIO, limit: int) -> tuple[bytes, int]:
    """At most ``limit`` bytes from ``f``'s position, and how many more there were."""
    data = f.read(limit)
    if len(data) < limit:
        return data, 0
    size = os.fstat(f.fileno()).st_size
    beyond = max(size - f.tell(), 0)
    if beyond == 0 and f.read(1):
        beyond = 1  # a file that grew, or one whose size the kernel does not report
    return data, beyond


def inflate_xz(data: bytes, limit: int, what: str) -> bytes:
    """One xz stream inflated, refused past ``limit`` bytes (or the decoder's memory)."""
    decoder = lzma.LZMADecompressor(format=lzma.FORMAT_XZ, memlimit=XZ_MEMLIMIT)
    try:
        out = decoder.decompress(data, max_length=limit + 1)
    except lzma.LZMAError as e:
        raise RefusedFile(errno.EINVAL, f"{what} does not inflate: {e}") from None
    return _whole(out, decoder.eof, limit, what)


def inflate_zlib(data: bytes, limit: int, what: str) -> bytes:
    """A zlib stream inflated, refused past ``limit`` bytes."""
    decoder = zlib.decompressobj()
    try:
        out = decoder.decompress(data, limit + 1)
    except zlib.error as e:
        raise RefusedFile(errno.EINVAL, f"{what} does not inflate: {e}") from None
    return _whole(out, decoder.eof, limit, what)


def _whole(out: bytes, eof: bool, limit: int, what: str) -> bytes:
    if len(out) > limit:
        raise RefusedFile(errno.EFBIG, f"{what} inflates to more than {limit} bytes")
    if not eof:
        raise RefusedFile(errno.EINVAL, f"{what} is truncated")
    return out
