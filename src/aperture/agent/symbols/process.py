"""A snapshot of a process's executable mappings from ``/proc/PID/maps``.

A process can only be inspected while it lives, so the snapshot also records what
is needed to find its files and its JIT map later: the pid's start time (to tell a
reused pid apart) and its pid inside its own pid namespace (perf maps are named
after that one).
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Sequence
from typing import NamedTuple

PROC_ROOT = "/proc"
_DELETED = " (deleted)"


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
        except ValueError:
            continue
        out.append(mapping)
    out.sort(key=lambda m: m.start)
    return out


class ProcessMaps:
    """Executable mappings of one process, looked up by address."""

    __slots__ = ("_starts", "mappings", "ns_pid", "pid", "proc_root", "start_time")

    def __init__(
        self,
        pid: int,
        mappings: Sequence[Mapping],
        *,
        proc_root: str = PROC_ROOT,
        start_time: int | None = None,
        ns_pid: int | None = None,
    ) -> None:
        self.pid = pid
        self.mappings = sorted(mappings, key=lambda m: m.start)
        self._starts = [m.start for m in self.mappings]
        self.proc_root = proc_root
        self.start_time = start_time
        self.ns_pid = ns_pid if ns_pid is not None else pid

    @classmethod
    def read(cls, pid: int, proc_root: str = PROC_ROOT) -> ProcessMaps | None:
        """Snapshot a live process; None if it is gone or unreadable."""
        base = os.path.join(proc_root, str(pid))
        try:
            with open(os.path.join(base, "maps"), "rb") as f:
                text = f.read().decode("utf-8", "surrogateescape")
        except OSError:
            return None
        return cls(
            pid,
            parse_maps(text),
            proc_root=proc_root,
            start_time=read_start_time(pid, proc_root),
            ns_pid=_read_ns_pid(base),
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
            if not check_inode or st.st_ino == mapping.inode:
                return path
            if fallback is None and path.startswith(self.proc_root):
                # Same name, other inode: an overlay filesystem can report either
                # inode, so keep it in case nothing better turns up.
                fallback = path
        return fallback

    def perf_map_paths(self) -> list[str]:
        """Where the process's JIT perf map may be, most specific first."""
        inner = f"/tmp/perf-{self.ns_pid}.map"
        return [self.in_root(inner), f"/tmp/perf-{self.pid}.map"]


def read_start_time(pid: int, proc_root: str = PROC_ROOT) -> int | None:
    """The process start time in clock ticks (``/proc/PID/stat`` field 22), or None."""
    try:
        with open(os.path.join(proc_root, str(pid), "stat"), "rb") as f:
            stat = f.read()
        # comm (field 2) may contain spaces and parentheses: split after the last ')'.
        return int(stat[stat.rindex(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _read_ns_pid(base: str) -> int | None:
    try:
        with open(os.path.join(base, "status"), "rb") as f:
            for line in f:
                if line.startswith(b"NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError, IndexError):
        return None
    return None


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
