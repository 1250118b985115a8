"""A snapshot of a process's executable mappings from ``/proc/PID/maps``.

A process can only be inspected while it lives, so the snapshot also records what
is needed to find its files and its JIT map later: the pid's start time (to tell a
reused pid apart), its pid inside its own pid namespace (perf maps are named
after that one), its uids (who may own its perf map) and whether it sees our
``/tmp`` (shares our mount namespace and root).
"""

from __future__ import annotations

import bisect
import functools
import os
import stat
from collections.abc import Sequence
from typing import NamedTuple

from aperture.agent.untrusted import MAX_MAPS_BYTES

PROC_ROOT = "/proc"
_DELETED = " (deleted)"
_MAX_PROC_FILE = 64 * 1024  # /proc/PID/stat and status (a few hundred bytes)


class Mapping(NamedTuple):
    """One executable mapping: ``[start, end)`` mapped from file offset ``pgoff``."""

    start: int
    end: int
    perms: str
    pgoff: int
    dev: int
    inode: int
    path: str

    @property
    def file_path(self) -> str:
        """The mapped path without the kernel's `` (deleted)`` suffix."""
        return self.path.removesuffix(_DELETED)

    @property
    def deleted(self) -> bool:
        return self.path.endswith(_DELETED)

    @property
    def is_file(self) -> bool:
        """Backed by a file (including deleted and memfd files), not ``[vdso]`` or anonymous."""
        return self.inode != 0 and self.path.startswith("/")

    @property
    def is_anonymous(self) -> bool:
        return not self.path or self.path.startswith("[anon")


def parse_maps(text: str) -> list[Mapping]:
    """Executable mappings of a ``/proc/PID/maps`` text, sorted by start."""
    out = []
    for line in text.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) < 5 or len(parts[1]) < 3 or parts[1][2] != "x":
            continue
        try:
            lo, _, hi = parts[0].partition("-")
            major, _, minor = parts[3].partition(":")
            mapping = Mapping(
                start=int(lo, 16),
                end=int(hi, 16),
                perms=parts[1],
                pgoff=int(parts[2], 16),
                dev=os.makedev(int(major, 16), int(minor, 16)),
                inode=int(parts[4]),
                path=parts[5].strip() if len(parts) > 5 else "",
            )
        except (ValueError, OverflowError):  # a device number past 32 bits
            continue
        out.append(mapping)
    out.sort(key=lambda m: m.start)
    return out


class ProcessMaps:
    """Executable mappings of one process, looked up by address."""

    __slots__ = (
        "_starts",
        "mappings",
        "ns_pid",
        "pid",
        "proc_root",
        "sees_our_tmp",
        "start_time",
        "uids",
    )

    def __init__(
        self,
        pid: int,
        mappings: Sequence[Mapping],
        *,
        proc_root: str = PROC_ROOT,
        start_time: int | None = None,
        ns_pid: int | None = None,
        uids: frozenset[int] = frozenset(),
        sees_our_tmp: bool = False,
    ) -> None:
        """``uids``: real, effective, saved and filesystem uids (may own its files)."""
        self.pid = pid
        self.mappings = sorted(mappings, key=lambda m: m.start)
        self._starts = [m.start for m in self.mappings]
        self.proc_root = proc_root
        self.start_time = start_time
        self.ns_pid = ns_pid if ns_pid is not None else pid
        self.uids = uids
        self.sees_our_tmp = sees_our_tmp

    @classmethod
    def read(cls, pid: int, proc_root: str = PROC_ROOT) -> ProcessMaps | None:
        """Snapshot a live process; None if it is gone or unreadable.

        At most :data:`~aperture.agent.untrusted.MAX_MAPS_BYTES` of its maps are read
        (a partial last line is dropped): mappings past them are not known.
        """
        base = os.path.join(proc_root, str(pid))
        try:
            with open(os.path.join(base, "maps"), "rb") as f:
                data = f.read(MAX_MAPS_BYTES)
        except OSError:
            return None
        if len(data) == MAX_MAPS_BYTES:
            data = data[: data.rfind(b"\n") + 1]
        ns_pid, uids = _read_status(base)
        return cls(
            pid,
            parse_maps(data.decode("utf-8", "surrogateescape")),
            proc_root=proc_root,
            start_time=read_start_time(pid, proc_root),
            ns_pid=ns_pid,
            uids=uids,
            sees_our_tmp=sees_our_tmp(base),
        )

    def find(self, addr: int) -> Mapping | None:
        """The mapping containing ``addr``, or None."""
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0 and addr < self.mappings[i].end:
            return self.mappings[i]
        return None

    @property
    def root(self) -> str:
        """The process's root directory as seen from here (``/proc/PID/root``)."""
        return os.path.join(self.proc_root, str(self.pid), "root")

    def in_root(self, path: str) -> str:
        """``path`` of the process's mount namespace, reachable from ours."""
        return self.root + "/" + path.lstrip("/")

    def file_for(self, mapping: Mapping) -> str | None:
        """A readable path to the exact file behind ``mapping``, or None.

        Tries ``/proc/PID/root/<path>`` (checked against the mapping's inode, since
        the path may now name a newer file), then ``/proc/PID/map_files/<range>``
        (the mapped file itself, even if deleted), then the same path in our own
        root if it is the same inode (the process may have exited by now).
        """
        if not mapping.is_file:
            return None
        candidates: list[tuple[str, bool]] = []
        if not mapping.deleted:
            candidates.append((self.in_root(mapping.file_path), True))
        map_file = f"{mapping.start:x}-{mapping.end:x}"
        candidates.append(
            (os.path.join(self.proc_root, str(self.pid), "map_files", map_file), False)
        )
        if not mapping.deleted:
            candidates.append((mapping.file_path, True))
        fallback = None
        for path, check_inode in candidates:
            try:
                st = os.stat(path)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue  # a FIFO or device put in the mapped file's place
            if not check_inode or st.st_ino == mapping.inode:
                return path
            if fallback is None and path.startswith(self.proc_root):
                # Same name, other inode: an overlay filesystem can report either
                # inode, so keep it in case nothing better turns up.
                fallback = path
        return fallback

    def perf_map_paths(self) -> list[str]:
        """Where the process's JIT perf map may be, most specific first.

        Its own ``/tmp``, through ``/proc/PID/root``; our ``/tmp`` as well only for a
        process that shares our mount namespace and root (the same file, still there
        once the process has exited). Another namespace's process never gets a
        ``/tmp/perf-PID.map`` of ours: any user of ours could have made it.
        """
        inner = f"/tmp/perf-{self.ns_pid}.map"
        return [self.in_root(inner), inner] if self.sees_our_tmp else [self.in_root(inner)]


def read_start_time(pid: int, proc_root: str = PROC_ROOT) -> int | None:
    """The process start time in clock ticks (``/proc/PID/stat`` field 22), or None."""
    try:
        with open(os.path.join(proc_root, str(pid), "stat"), "rb") as f:
            text = f.read(_MAX_PROC_FILE)
        # comm (field 2) may contain spaces and parentheses: split after the last ')'.
        return int(text[text.rindex(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _read_status(base: str) -> tuple[int | None, frozenset[int]]:
    """The innermost ``NSpid`` and the ``Uid`` set from ``/proc/PID/status``."""
    ns_pid: int | None = None
    uids: frozenset[int] = frozenset()
    try:
        with open(os.path.join(base, "status"), "rb") as f:
            text = f.read(_MAX_PROC_FILE)
    except OSError:
        return None, uids
    for line in text.splitlines():
        try:
            if line.startswith(b"NSpid:"):
                ns_pid = int(line.split()[-1])
            elif line.startswith(b"Uid:"):
                uids = frozenset(int(word) for word in line.split()[1:])
        except (ValueError, IndexError):
            continue
    return ns_pid, uids


def sees_our_tmp(base: str) -> bool:
    """Whether the process at ``base`` (``/proc/PID``) shares our mount namespace and
    root (so our ``/tmp``)."""
    try:
        for theirs, ours in zip(("ns/mnt", "root"), _our_mount_identity(), strict=True):
            st = os.stat(os.path.join(base, theirs))
            if (st.st_dev, st.st_ino) != ours:
                return False
    except OSError:
        return False
    return True


@functools.cache
def _our_mount_identity() -> tuple[tuple[int, int], tuple[int, int]]:
    """(dev, inode) of our mount namespace and of our root: fixed for our lifetime
    (asked once per new process on a busy host, two stats saved each time)."""
    ns, root = os.stat("/proc/self/ns/mnt"), os.stat("/")
    return (ns.st_dev, ns.st_ino), (root.st_dev, root.st_ino)


def own_vdso_image() -> bytes | None:
    """This process's vDSO, read from memory: the kernel's, the same in every process."""
    try:
        with open("/proc/self/maps", "rb") as f:
            lines = f.read().decode("ascii", "replace").splitlines()
        for line in lines:
            if line.endswith("[vdso]"):
                lo, _, hi = line.split()[0].partition("-")
                start, end = int(lo, 16), int(hi, 16)
                with open("/proc/self/mem", "rb", buffering=0) as mem:
                    mem.seek(start)
                    return mem.read(end - start)
    except (OSError, ValueError):
        return None
    return None
