"""Batches on disk until the aggregator acknowledges them, so a restart loses nothing.

One file per batch, named by its zero-padded sequence number so that the name
order is the send order. A file appears whole or not at all (write to a
temporary name, fsync, rename), and is deleted once the aggregator has the
batch. A lock file keeps two agents from sharing one directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aperture.errors import UserError

SUFFIX = ".batch"
_TEMP_SUFFIX = ".tmp"
_LOCK_NAME = ".lock"


class SpoolBusy(UserError):
    """Another agent holds the spool directory."""


@dataclass
class SpoolWrite:
    """What one write did: whether the batch is on disk, and older files removed for room."""

    stored: bool
    evicted: list[int] = field(default_factory=list)


def _name(sequence: int) -> str:
    return f"{sequence:020d}{SUFFIX}"


class Spool:
    """A directory of batch files bounded by ``max_bytes``; thread-safe."""

    def __init__(
        self, directory: Path, max_bytes: int, warn: Callable[[str], None] | None = None
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._warn = warn or (lambda _text: None)
        self._lock = threading.Lock()
        self._files: dict[int, int] = {}  # sequence -> size, in ascending order once loaded
        self._bytes = 0
        self.write_failures = 0
        self._failing = False
        self._lock_fd = self._take_lock()
        self._scan()

    def _take_lock(self) -> int | None:
        try:
            fd = os.open(self.directory / _LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            return None  # an unwritable directory: every write will fall back to memory
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SpoolBusy(
                f"another aperture-agent is using the spool directory {self.directory}: "
                "give each agent its own --spool-dir."
            ) from None
        return fd

    def _scan(self) -> None:
        found: dict[int, int] = {}
        for entry in os.scandir(self.directory):
            if entry.name.endswith(_TEMP_SUFFIX):
                # A write cut short by a crash: never renamed, so never counted.
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                continue
            stem = entry.name[: -len(SUFFIX)]
            if not entry.name.endswith(SUFFIX) or not stem.isdigit():
                continue
            with contextlib.suppress(OSError):
                found[int(stem)] = entry.stat().st_size
        self._files = dict(sorted(found.items()))
        self._bytes = sum(self._files.values())

    @property
    def size(self) -> int:
        """Bytes of batch files on disk."""
        return self._bytes

    def sequences(self) -> list[tuple[int, int]]:
        """``(sequence, size)`` of every spooled batch, oldest first."""
        with self._lock:
            return list(self._files.items())

    def write(self, sequence: int, data: bytes) -> SpoolWrite:
        """Store one batch, removing the oldest files if it would not fit under the cap."""
        result = SpoolWrite(stored=False)
        if len(data) > self.max_bytes:
            self._failed(f"a {len(data)}-byte batch is larger than the whole spool")
            return result
        with self._lock:
            while self._files and self._bytes + len(data) > self.max_bytes:
                oldest = next(iter(self._files))
                self._unlink(oldest)
                result.evicted.append(oldest)
            path = self.directory / _name(sequence)
            temp = path.with_name("." + path.name + _TEMP_SUFFIX)
            try:
                with open(temp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(temp, path)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
                self._failed(exc.strerror or str(exc))
                return result
            self._sync_directory()
            self._files[sequence] = len(data)
            self._bytes += len(data)
            self._failing = False
        result.stored = True
        return result

    def _failed(self, reason: str) -> None:
        self.write_failures += 1
        if not self._failing:  # one line per run of failures, not one per batch
            self._failing = True
            self._warn(
                f"cannot write to the spool {self.directory} ({reason}): batches are kept "
                "in memory only until the spool works again"
            )

    def _sync_directory(self) -> None:
        # The rename is durable only once the directory entry is on disk.
        try:
            fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def read(self, sequence: int) -> bytes:
        """One spooled batch; OSError if it is gone or unreadable."""
        return (self.directory / _name(sequence)).read_bytes()

    def remove(self, sequence: int) -> None:
        """Forget a batch (acknowledged or given up); a missing file is fine."""
        with self._lock:
            self._unlink(sequence)

    def _unlink(self, sequence: int) -> None:
        size = self._files.pop(sequence, None)
        if size is not None:
            self._bytes -= size
        with contextlib.suppress(OSError):
            os.unlink(self.directory / _name(sequence))

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None
