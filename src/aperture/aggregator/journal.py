"""An append-only journal of accepted batches: nothing acknowledged is lost to a crash.

Each record is ``length (u32 LE) | crc32 (u32 LE) | serialized ProfileBatch``,
written and fdatasync'ed before the push is acknowledged. On start the journal
is replayed; a torn record at the end of the last segment (a crash mid-write)
is cut off. Segments rotate at ``segment_bytes``; the oldest are deleted when
the journal exceeds ``max_bytes``, so it holds about what the buffer holds —
except a segment with records the store has not written yet (``held``), which
stays, with every newer one, until :meth:`release` says the store has them:
an acknowledged batch is durable until it is stored, whatever ``max_bytes``.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from aperture.errors import UserError

log = logging.getLogger("aperture.aggregator.journal")
_HEADER = struct.Struct("<II")
_PREFIX = "journal-"
_SUFFIX = ".log"


class Record(NamedTuple):
    segment: int  # the segment's number: what hold() and release() take
    body: bytes


class Journal:
    def __init__(self, directory: Path, *, max_bytes: int, segment_bytes: int = 64 << 20) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._fd = -1
        self._segment_size = 0
        self._segment_number = 0
        self._held: Counter[int] = Counter()  # segment -> records not yet in the store
        self.torn_records = 0
        directory.mkdir(parents=True, exist_ok=True)

    def _segments(self) -> list[Path]:
        # Only journal-NUMBER.log: another file the glob matches (journal-abc.log, a
        # copy left there) is never read, trimmed or deleted; open() warns about it.
        paths = self.directory.glob(f"{_PREFIX}*{_SUFFIX}")
        return sorted((p for p in paths if _is_segment(p)), key=self._number)

    @staticmethod
    def _number(path: Path) -> int:
        return int(path.name[len(_PREFIX) : -len(_SUFFIX)])

    def replay(self) -> Iterator[Record]:
        """Every intact record, oldest first; cuts a torn tail off the last segment."""
        segments = self._segments()
        for index, path in enumerate(segments):
            number = self._number(path)
            try:
                data = path.read_bytes()
            except OSError as exc:  # e.g. written by root, read by a service user
                raise UserError(
                    f"cannot read the journal segment {path} ({exc.strerror}): give this "
                    f"user read and write access to {self.directory}, or start as its owner."
                ) from None
            pos = 0
            while pos + _HEADER.size <= len(data):
                length, crc = _HEADER.unpack_from(data, pos)
                body = data[pos + _HEADER.size : pos + _HEADER.size + length]
                if len(body) < length or zlib.crc32(body) != crc:
                    break
                yield Record(number, body)
                pos += _HEADER.size + length
            if pos < len(data):
                self.torn_records += 1
                if index == len(segments) - 1:
                    with open(path, "r+b") as f:
                        f.truncate(pos)

    def open(self) -> None:
        """Start appending (to a new segment after the existing ones)."""
        for path in sorted(self.directory.glob(f"{_PREFIX}*{_SUFFIX}")):
            if not _is_segment(path):
                log.warning("ignoring %s: not a journal segment (journal-NUMBER.log)", path)
        segments = self._segments()
        number = self._number(segments[-1]) + 1 if segments else 1
        self._open_segment(number)

    def _open_segment(self, number: int) -> None:
        # The new segment opens before the old one closes: when the open fails, the
        # current segment stays in use (a closed descriptor's number kept here would
        # write into whatever file is opened next under it).
        path = self.directory / f"{_PREFIX}{number:08d}{_SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = fd
        self._segment_number = number
        self._segment_size = 0
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the new file's name survives a crash too
        finally:
            os.close(dir_fd)

    def append(self, body: bytes, *, hold: bool = False) -> int:
        """Write one record durably (fdatasync) before returning its segment's number.

        ``hold``: the record is on its way to the store; its segment stays until
        :meth:`release`.
        """
        record = _HEADER.pack(len(body), zlib.crc32(body)) + body
        with self._lock:
            if self._fd < 0:
                raise OSError("the journal is closed")
            if self._segment_size and self._segment_size + len(record) > self.segment_bytes:
                self._open_segment(self._segment_number + 1)
                self._trim()
            os.write(self._fd, record)
            os.fdatasync(self._fd)
            self._segment_size += len(record)
            if hold:
                self._held[self._segment_number] += 1
            return self._segment_number

    def hold(self, segment: int) -> None:
        """A replayed record of ``segment`` is on its way to the store again."""
        with self._lock:
            self._held[segment] += 1

    def release(self, segments: list[int]) -> None:
        """The store holds these records now (one segment number per record)."""
        with self._lock:
            emptied = False
            for segment in segments:
                if self._held[segment] <= 1:
                    self._held.pop(segment, None)
                    emptied = True
                else:
                    self._held[segment] -= 1
            if emptied and self._fd >= 0:
                self._trim()  # what an outage kept goes once the store has it

    def held(self) -> int:
        """Records not yet in the store."""
        with self._lock:
            return sum(self._held.values())

    def _trim(self) -> None:
        """Delete the oldest segments past ``max_bytes``, up to the first one held."""
        segments = self._segments()
        total = sum(p.stat().st_size for p in segments)
        for path in segments[:-1]:
            if total <= self.max_bytes or self._held[self._number(path)]:
                break
            total -= path.stat().st_size
            path.unlink()

    def size(self) -> int:
        return sum(p.stat().st_size for p in self._segments())

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = -1


def _is_segment(path: Path) -> bool:
    number = path.name[len(_PREFIX) : -len(_SUFFIX)]
    return number.isascii() and number.isdigit()
