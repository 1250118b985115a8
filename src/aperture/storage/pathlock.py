"""Exclusive ownership of an embedded (chDB) store directory by one process.

chDB itself refuses a second process on a directory with an opaque engine
error, and a second directory in the same process; an ``flock`` on a file in
the directory (holding the owner's pid) turns both into one clear sentence.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path
from typing import ClassVar

from aperture.errors import UserError

LOCK_FILE = "aperture.lock"


class StoreError(UserError):
    """The store cannot be opened or used; the message says why and what to do."""


class StoreInUse(StoreError):
    """Another process (or another chDB path in this one) holds the embedded store."""


class PathLock:
    """Exclusive ownership of a chDB directory by this process (flock), ref-counted."""

    held: ClassVar[dict[str, PathLock]] = {}
    guard: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: str, fd: int) -> None:
        self.path, self.fd, self.users = path, fd, 0

    @classmethod
    def acquire(cls, path: str) -> PathLock:
        with cls.guard:
            lock = cls.held.get(path)
            if lock is None:
                if cls.held:
                    other = next(iter(cls.held))
                    raise StoreInUse(
                        f"this process already has the store at {other} open, and chDB hosts "
                        f"one path per process: close it before opening {path}"
                    )
                try:
                    Path(path).mkdir(parents=True, exist_ok=True)
                    fd = os.open(os.path.join(path, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
                except OSError as exc:
                    raise StoreError(
                        f"cannot use {path} for the embedded store ({exc.strerror}): make it "
                        "a directory this user can write, or give another path "
                        "(--storage chdb:///other/path)"
                    ) from None
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    owner = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
                    os.close(fd)
                    raise StoreInUse(
                        f"the store at {path} is used by another process (pid {owner}): stop "
                        "it, or give this one another path (--storage chdb:///other/path)"
                    ) from None
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                lock = cls.held[path] = cls(path, fd)
            lock.users += 1
            return lock

    def release(self) -> None:
        with self.guard:
            self.users -= 1
            if self.users == 0:
                del self.held[self.path]
                os.close(self.fd)  # closing drops the flock
