"""The unwind tables and process mappings in the kernel, for unwind.bpf.h.

:class:`KernelTables` loads one table per binary into ``unwind_tables`` (an
inner ARRAY map each, sized exactly), built once per build-id (file identity
where there is none) and, with a cache directory, kept on disk across
restarts. The tables' kernel memory is bounded: when a new table would pass
the limit, the least recently used ones are evicted and counted. A binary keeps
its file id for the agent's lifetime, so a process registered while its table
was evicted unwinds again once the table is reloaded.

:class:`ProcessRegistry` writes each process's executable mappings (start,
end, load bias, file id) into ``proc_mappings`` when the process is first seen,
and forgets processes that have exited.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import heapq
import mmap
import os
import struct
import threading
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from ctypes import c_uint32, c_uint64
from dataclasses import dataclass, field
from pathlib import Path

from aperture.agent import native
from aperture.agent.collectors.processes import PROC_EVENT_TABLE_WANTED
from aperture.agent.libbpf import (
    BPF_F_INNER_MAP,
    BPF_F_MMAPABLE,
    BPF_MAP_TYPE_ARRAY,
    BpfError,
    BpfMap,
    create_map,
    update_batch,
)
from aperture.agent.python.registry import PythonRegistry
from aperture.agent.symbols.debuginfo import DEFAULT_DEBUG_DIRS
from aperture.agent.symbols.elf import file_build_id
from aperture.agent.symbols.process import (
    PROC_ROOT,
    Mapping,
    ProcessMaps,
    own_vdso_image,
    read_start_time,
    sees_our_tmp,
)
from aperture.agent.system import name_thread
from aperture.agent.unwind import DEFAULT_TABLE_MEMORY
from aperture.agent.unwind.layout import kernel_prefix
from aperture.agent.unwind.segments import (
    LoadSegment,
    load_bias,
    parse_load_segments,
    read_load_segments,
    section_size,
)
from aperture.agent.unwind.tables import (
    ROW_SIZE,
    UnwindTable,
    build_table,
    build_table_from_bytes,
)

MAX_MAPPINGS = 256  # APERTURE_MAX_MAPPINGS
# A process sampled while starting is put off this many times at most (then read
# from /proc), and this many such processes are remembered.
MAX_DEFERRALS = 3
MAX_DEFERRED = 4096
USER_SPACE_END = 1 << 47  # x86_64 user addresses are below this
# An ARRAY element is rounded up to 8 bytes: a 12-byte row takes 16 in the kernel.
KERNEL_ROW_BYTES = (ROW_SIZE + 7) // 8 * 8
# Per inner map: the bpf_array header and page rounding, roughly.
MAP_OVERHEAD_BYTES = 4096
VDSO = "[vdso]"
# One table may take at most 1/MAX_TABLE_SHARE of --unwind-table-memory.
MAX_TABLE_SHARE = 4
# Kernel bytes per .eh_frame byte, roughly (5 bytes of CFI per 16-byte row seen
# in libc, python3.11, libLLVM and chdb): judges a table's size before parsing.
KERNEL_BYTES_PER_EH_FRAME_BYTE = 3
# Paths kept per binary to read it by (the newest registrations').
MAX_PATHS = 4
# Tables are built on three threads by file size: up to SMALL_FILE (a program's own
# executable, most libraries: milliseconds each), up to LARGE_FILE, and beyond.
SMALL_FILE = 4 << 20
LARGE_FILE = 64 << 20
_LANES = 3
PAGE_SIZE = 4096


# ctypes mirrors of src/aperture/bpf/aperture.h
class UnwindRow(ctypes.Structure):
    _fields_ = (
        ("pc", c_uint32),
        ("cfa_type", ctypes.c_uint8),
        ("rbp_type", ctypes.c_uint8),
        ("cfa_offset", ctypes.c_int16),
        ("rbp_offset", ctypes.c_int16),
        ("ra_offset", ctypes.c_int16),
    )


class ExecMapping(ctypes.Structure):
    _fields_ = (
        ("start", c_uint64),
        ("end", c_uint64),
        ("bias", c_uint64),
        ("file_id", c_uint32),
        ("file_page", c_uint32),  # the kernel's registrations: MAPPING_FILE | page, MAPPING_VDSO
    )


# exec_mapping.file_page
MAPPING_FILE = 1 << 31
MAPPING_VDSO = 1 << 30
MAPPING_PAGE_MASK = MAPPING_VDSO - 1
MAPPINGS_FROM_KERNEL = 1  # enum mappings_source


class ProcMappings(ctypes.Structure):
    _fields_ = (
        ("count", c_uint32),
        ("source", c_uint32),  # enum mappings_source: 0, the agent's
        ("refresh_requested_ns", c_uint64),
        # the kernel's registrations: its mount namespace and root (0: not known)
        ("mnt_ns", c_uint32),
        ("root_dev", c_uint32),  # major << 20 | minor
        ("root_ino", c_uint64),
        ("m", ExecMapping * MAX_MAPPINGS),
    )


# ProcMappings.m as raw bytes: start, end, bias, file_id, file_page
_ENTRY = struct.Struct("<QQQII")
_ENTRIES_AT: int = ProcMappings.m.offset
assert _ENTRY.size == ctypes.sizeof(ExecMapping)

FILE_SEGMENTS = 4  # APERTURE_FILE_SEGMENTS


class FileKey(ctypes.Structure):
    _fields_ = (("dev", c_uint32), ("reserved", c_uint32), ("ino", c_uint64))


class FileSegment(ctypes.Structure):
    _fields_ = (("offset", c_uint64), ("end", c_uint64), ("delta", c_uint64))


class FileCode(ctypes.Structure):
    _fields_ = (
        ("file_id", c_uint32),
        ("count", c_uint32),
        ("seg", FileSegment * FILE_SEGMENTS),
    )


assert ctypes.sizeof(UnwindRow) == ROW_SIZE


def file_code(file_id: int, segments: Sequence[LoadSegment]) -> FileCode:
    """A ``file_codes`` value: :func:`load_bias`'s segments, for the walker's own use."""
    value = FileCode(file_id=file_id)
    for seg in segments[:FILE_SEGMENTS]:
        entry = value.seg[value.count]
        entry.offset = seg.offset - seg.offset % PAGE_SIZE
        entry.end = seg.offset + max(seg.filesz, 1)
        entry.delta = (seg.vaddr - seg.offset) & 0xFFFFFFFFFFFFFFFF
        value.count += 1
    return value


def file_key(dev: int, inode: int) -> FileKey:
    """A ``file_codes`` key: the device as the kernel writes it (major << 20 | minor)."""
    return FileKey(dev=(os.major(dev) << 20) | os.minor(dev), ino=inode)


# The answer for a binary refused before it was parsed.
_TOO_LARGE = UnwindTable(b"", None, "too large for --unwind-table-memory", 0, 0, 0, ())


@dataclass(frozen=True, slots=True)
class TableStats:
    """The tables' state, for the summary, the batch's loss counters and /metrics."""

    loaded: int = 0  # binaries with a table in the kernel now
    kernel_bytes: int = 0  # their map memory
    limit_bytes: int = 0
    rows: int = 0
    built: int = 0  # tables built from ELF files since start
    from_cache: int = 0  # tables read from the cache directory
    evicted: int = 0  # tables dropped to stay under the limit
    too_large: int = 0  # tables larger than the whole limit: not loaded
    no_table: int = 0  # binaries without usable unwind information
    failed: int = 0  # tables the kernel refused (map creation failed)
    queued: int = 0  # binaries waiting for their table to be built
    unreadable: int = 0  # builds given up for now: no process that maps the file is left
    build_seconds: float = 0.0


@dataclass(eq=False)
class _Binary:
    file_id: int
    name: str
    segments: list[LoadSegment]
    build_id: str | None = None
    rows: int = 0
    elements: int = 0  # in the kernel: header, bucket index and rows (layout.py)
    loaded: bool = False
    queued: bool = False
    built: bool = False  # a table was built (or found to be empty) at least once
    refused: bool = False  # too large for the limit, or refused by the kernel: not retried
    last_used: float = 0.0
    inode: int = 0
    # Where to read the file for a (re)build, newest first: /proc/PID/root/...
    # paths die with their process, so every registration adds its own.
    paths: list[str] = field(default_factory=list)
    vdso_image: bytes | None = None
    # (dev, inode, path as /proc/PID/maps shows it) of every file seen as this binary
    seen_as: set[tuple[int, int, str]] = field(default_factory=set)

    def add_path(self, path: str) -> None:
        if path in self.paths:
            self.paths.remove(path)
        self.paths.insert(0, path)
        del self.paths[MAX_PATHS:]

    def readable_path(self) -> str | None:
        """A path that still names this very file (same inode), or None."""
        for path in self.paths:
            try:
                if os.stat(path).st_ino == self.inode:
                    return path
            except OSError:
                continue
        return None


class KernelTables:
    """Per-binary unwind tables in ``unwind_tables``, bounded by ``memory_limit`` bytes.

    A binary gets its file id at once; its table is built by a thread of its own
    and appears in the kernel when ready (the walker sees no table until then, and
    auto mode uses frame pointers for that code meanwhile), so registering a
    process never waits for a parse. Thread-safe.
    """

    def __init__(
        self,
        outer: BpfMap,
        *,
        misses: BpfMap | None = None,
        files: BpfMap | None = None,
        memory_limit: int = DEFAULT_TABLE_MEMORY,
        table_share: int = MAX_TABLE_SHARE,
        cache_dir: Path | None = None,
        debug_dirs: Sequence[str] = DEFAULT_DEBUG_DIRS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """One table takes at most ``memory_limit / table_share`` bytes."""
        self._outer = outer
        self._table_share = table_share
        self._misses = misses  # table_misses: cleared when a table comes or goes
        # file_codes: every file seen, so the walker registers new processes by itself
        self._files = files
        self._limit = memory_limit
        self._cache_dir = cache_dir / "unwind" if cache_dir is not None else None
        self._debug_dirs = tuple(debug_dirs)
        self._clock = clock
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._by_identity: dict[object, _Binary] = {}
        self._by_build_id: dict[str, _Binary] = {}
        self._by_id: dict[int, _Binary] = {}
        self._loaded: OrderedDict[int, _Binary] = OrderedDict()  # LRU order, oldest first
        # Smallest file first, on a thread per size class: one 500 MB library (23 s to
        # parse) must not hold up the tables of everything mapped after it, nor a
        # 30 MB compiler (0.5 s) the table of a small program that lives 400 ms.
        self._queues: tuple[list[tuple[int, int, _Binary]], ...] = tuple([] for _ in range(_LANES))
        self._building = [False] * _LANES
        self._next_id = 1
        self._bytes = 0
        self._counts = dict.fromkeys(
            ("built", "from_cache", "evicted", "too_large", "failed", "no_table", "unreadable"),
            0,
        )
        self._build_seconds = 0.0
        self._vdso: _Binary | None = None
        self._stop = False
        self._threads = [
            threading.Thread(target=self._run, args=(i,), name=f"unwind-tables-{i}", daemon=True)
            for i in range(_LANES)
        ]
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        with self._lock:
            self._stop = True
            self._wake.notify_all()
        for thread in self._threads:
            thread.join(timeout=5)

    # -- binaries --------------------------------------------------------------

    def for_file(
        self, mapping: Mapping, maps: ProcessMaps, *, build: bool = False
    ) -> _Binary | None:
        """The binary behind a file mapping of the process ``maps`` describes.

        Its table is built when a sample asks for it (:meth:`want`), or now with
        ``build``: most libraries a process maps are never sampled.
        """
        identity = (mapping.dev, mapping.inode, mapping.file_path)
        with self._lock:
            binary = self._by_identity.get(identity)
            if binary is not None:
                # Where to read it for a later build: this process's view of the file,
                # unless the host's own path (kept when the binary was first seen) is
                # that very file for this process too (same mount namespace and root).
                host_copy = maps.sees_our_tmp and mapping.file_path in binary.paths
                if not binary.loaded and not host_copy:
                    path = maps.file_for(mapping)
                    if path is not None:
                        binary.add_path(path)
                if build and self._needs_build(binary):
                    self._enqueue(binary)
                return binary
        path = maps.file_for(mapping)
        if path is None:
            return None
        # Outside the lock: a build-id read and the program headers cost a file open.
        build_id = file_build_id(path)
        segments = read_load_segments(path)
        with self._lock:
            binary = self._by_build_id.get(build_id) if build_id else None
            if binary is None:
                binary = _Binary(self._new_id(), mapping.file_path, segments, build_id)
                binary.inode = mapping.inode
                self._by_id[binary.file_id] = binary
                if build_id:
                    self._by_build_id[build_id] = binary
            binary.add_path(path)
            if not mapping.deleted:
                binary.add_path(mapping.file_path)  # the host's own copy, if the same file
            if build and self._needs_build(binary):
                self._enqueue(binary)
            self._by_identity[identity] = binary
            binary.seen_as.add((mapping.dev, mapping.inode, mapping.path))
            if self._files is not None:
                # an LRU map, never full: a failure only costs the walker's own registrations
                with contextlib.suppress(BpfError):
                    key = file_key(mapping.dev, mapping.inode)
                    self._files.update(key, file_code(binary.file_id, segments))
            return binary

    def seen_as_all(self, file_ids: Iterable[int]) -> dict[int, tuple[int, int, str]] | None:
        """The one file each binary was seen as, (dev, inode, mapped path); None if any
        id is unknown (or 0) or several files share its build-id (a file id alone does
        not tell which one a process maps)."""
        found: dict[int, tuple[int, int, str]] = {}
        with self._lock:
            for file_id in file_ids:
                binary = self._by_id.get(file_id)
                if binary is None or len(binary.seen_as) != 1:
                    return None
                found[file_id] = next(iter(binary.seen_as))
        return found

    def want(self, file_id: int) -> None:
        """A sample needed this binary's table: build and load it (once)."""
        with self._lock:
            binary = self._by_id.get(file_id)
            if binary is not None and self._needs_build(binary):
                self._enqueue(binary)

    def for_vdso(self) -> _Binary | None:
        """The vDSO (the kernel's, the same in every process): built from our own."""
        with self._lock:
            if self._vdso is None:
                image = own_vdso_image()
                if image is None:
                    return None
                self._vdso = _Binary(self._new_id(), VDSO, parse_load_segments(image))
                self._vdso.vdso_image = image
                self._by_id[self._vdso.file_id] = self._vdso
            return self._vdso

    def touch(self, file_ids: Iterable[int]) -> None:
        """Mark tables as used now (processes sampled this window use them)."""
        now = self._clock()
        with self._lock:
            for file_id in file_ids:
                binary = self._loaded.get(file_id)
                if binary is not None:
                    binary.last_used = now
                    self._loaded.move_to_end(file_id)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until every queued table is built and loaded (for tests and benchmarks)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while any(self._queues) or any(self._building):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake.wait(min(left, 0.05))
        return True

    def stats(self) -> TableStats:
        with self._lock:
            return TableStats(
                loaded=len(self._loaded),
                kernel_bytes=self._bytes,
                limit_bytes=self._limit,
                rows=sum(b.rows for b in self._loaded.values()),
                build_seconds=round(self._build_seconds, 3),
                queued=sum(len(q) for q in self._queues),
                **self._counts,
            )

    def _new_id(self) -> int:
        file_id = self._next_id
        self._next_id += 1
        return file_id

    @staticmethod
    def _needs_build(binary: _Binary) -> bool:
        """Evicted (or never loaded) and worth loading again."""
        return not (binary.loaded or binary.queued or binary.refused) and not (
            binary.built and binary.rows == 0
        )

    def _enqueue(self, binary: _Binary) -> None:
        binary.queued = True
        size = _file_size(binary)
        lane = 0 if size <= SMALL_FILE else 1 if size <= LARGE_FILE else 2
        heapq.heappush(self._queues[lane], (size, binary.file_id, binary))
        self._wake.notify_all()

    # -- the builder thread --------------------------------------------------------

    def _run(self, lane: int) -> None:
        name_thread(f"unwind-tables-{lane}")
        queue = self._queues[lane]
        while True:
            with self._lock:
                while not queue and not self._stop:
                    self._wake.wait()
                if self._stop:
                    return
                binary = heapq.heappop(queue)[2]
                self._building[lane] = True
            try:
                table = self._table(binary)
                with self._lock:
                    if table is None:
                        # Every process that mapped it has gone: the next one to be
                        # sampled there registers a new path and asks again.
                        self._counts["unreadable"] += 1
                        self._forget_misses(binary)
                    else:
                        binary.built = True
                        binary.rows = len(table)
                        if table is _TOO_LARGE:
                            self._counts["too_large"] += 1
                            binary.refused = True
                        elif not binary.rows:
                            self._counts["no_table"] += 1
                            binary.paths.clear()
                            binary.vdso_image = None
                        else:
                            self._load(binary, table)
            except Exception:  # a bug on one binary must not stop every later table
                with self._lock:
                    self._counts["failed"] += 1
                    binary.refused = True
            finally:
                with self._lock:
                    binary.queued = False
                    self._building[lane] = False
                    self._wake.notify_all()

    def _table(self, binary: _Binary) -> UnwindTable | None:
        """The binary's table, from the cache or built; None if no path reaches it now."""
        table = self._cached(binary.build_id)
        if table is not None:
            return table
        started = time.perf_counter()
        if binary.vdso_image is not None:
            table = build_table_from_bytes(binary.vdso_image, VDSO)
        else:
            path = binary.readable_path()
            if path is None:
                return None
            eh_frame = section_size(path, b".eh_frame") or 0
            if eh_frame * KERNEL_BYTES_PER_EH_FRAME_BYTE > self._table_limit():
                # Refused before parsing: a 500 MB library took 23 s and 1.6 GB to
                # parse, to be refused afterwards anyway.
                return _TOO_LARGE
            table = build_table(path, debug_dirs=self._debug_dirs)
        with self._lock:
            self._build_seconds += time.perf_counter() - started
            self._counts["built"] += 1
        self._store(binary.build_id, table)
        return table

    def _load(self, binary: _Binary, table: UnwindTable) -> None:
        """Put a built table in the kernel (lock held), evicting old ones to fit."""
        prefix, rows = kernel_prefix(table.rows), table.rows
        binary.elements = (len(prefix) + len(rows)) // ROW_SIZE
        size = binary.elements * KERNEL_ROW_BYTES + MAP_OVERHEAD_BYTES
        if size > self._table_limit():
            self._counts["too_large"] += 1
            binary.refused = True
            return
        while self._bytes + size > self._limit and self._loaded:
            self._evict(next(iter(self._loaded.values())))
        try:
            fd = create_map(
                BPF_MAP_TYPE_ARRAY,
                "unwind_table",
                4,
                ROW_SIZE,
                binary.elements,
                BPF_F_INNER_MAP | BPF_F_MMAPABLE,
            )
        except BpfError:
            self._counts["failed"] += 1
            binary.refused = True
            return
        try:
            if not _write_mapped(fd, binary.elements, (prefix, rows)):
                _write_rows(fd, 0, prefix)
                _write_rows(fd, len(prefix) // ROW_SIZE, rows)
            self._outer.update(c_uint32(binary.file_id), c_uint32(fd))
        except BpfError:
            self._counts["failed"] += 1
            binary.refused = True
            return
        finally:
            os.close(fd)  # the outer map holds the inner map now
        binary.loaded = True
        binary.last_used = self._clock()
        self._loaded[binary.file_id] = binary
        self._bytes += size
        self._forget_misses(binary)

    def _forget_misses(self, binary: _Binary) -> None:
        if self._misses is not None:
            self._misses.delete(c_uint32(binary.file_id))

    def _table_limit(self) -> int:
        """The largest table loaded: a share of the limit, so one binary cannot evict all."""
        return self._limit // self._table_share

    def _evict(self, binary: _Binary) -> None:
        self._outer.delete(c_uint32(binary.file_id))
        self._loaded.pop(binary.file_id, None)
        self._bytes -= binary.elements * KERNEL_ROW_BYTES + MAP_OVERHEAD_BYTES
        binary.loaded = False
        self._counts["evicted"] += 1
        self._forget_misses(binary)  # so that the next sample there asks again

    # -- the on-disk cache -------------------------------------------------------

    def _cache_path(self, build_id: str | None) -> Path | None:
        if self._cache_dir is None or not build_id or not build_id.isalnum():
            return None
        return self._cache_dir / f"{build_id}.table"

    def _cached(self, build_id: str | None) -> UnwindTable | None:
        path = self._cache_path(build_id)
        if path is None:
            return None
        try:
            table = UnwindTable.from_bytes(path.read_bytes())
        except (OSError, ValueError):
            return None
        with self._lock:
            self._counts["from_cache"] += 1
        return table

    def _store(self, build_id: str | None, table: UnwindTable) -> None:
        path = self._cache_path(build_id)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(table.to_bytes())
            tmp.replace(path)
        except OSError:
            pass  # a cache that cannot be written only costs a rebuild


@dataclass
class _Registered:
    start_time: int | None
    file_ids: set[int] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class RegistryStats:
    processes: int = 0  # registered now
    registered: int = 0  # registrations since start (refreshes included)
    truncated: int = 0  # processes with more executable mappings than fit
    gone: int = 0  # processes that exited before they could be registered
    adopted: int = 0  # processes taken as the walker registered them, /proc not read
    deferred: int = 0  # sampled still starting: left to the walker until announced again


class ProcessRegistry:
    """Each process's executable mappings in ``proc_mappings``; thread-safe."""

    def __init__(
        self,
        proc_mappings: BpfMap,
        tables: KernelTables,
        *,
        procs: BpfMap | None = None,
        python: PythonRegistry | None = None,
        proc_root: str = PROC_ROOT,
    ) -> None:
        self._map = proc_mappings
        self._tables = tables
        self.python = python  # each registered process's interpreter, if it runs one
        self._procs = procs  # the announce-once map: a pruned pid is announced again
        self._proc_root = proc_root
        self._lock = threading.Lock()
        self._registered: dict[int, _Registered] = {}
        # Adopted from the walker's registration: their file ids, until they exit or
        # live past a drain (then registered from /proc, see prune).
        self._adopted: dict[int, set[int]] = {}
        # Processes sampled while still starting, put off until announced again: how
        # many times each (oldest first, bounded).
        self._deferred: dict[int, int] = {}
        self._counts = dict.fromkeys(("registered", "truncated", "gone", "adopted", "deferred"), 0)

    def on_event(self, kind: int, tgid: int, maps: ProcessMaps | None = None) -> None:
        """A ``proc_events`` record: register a process (with its maps, read once by the
        watcher for every consumer; None: it is gone), or build a wanted table."""
        if kind == PROC_EVENT_TABLE_WANTED:
            self._tables.want(tgid)
        else:
            self.register_maps(tgid, maps)

    def adopt(self, pid: int) -> ProcessMaps | None:
        """A new process's maps as the walker registered them itself, or None.

        Most processes a busy host starts live for milliseconds and run binaries
        seen before: their kernel registration (unwind.bpf.h, from exec, kept
        current at each mmap) already holds every file id, so reading
        ``/proc/PID/maps`` and writing the entry again would only repeat it. Taken
        only when nothing is missing: every executable mapping is the vDSO or a file
        the agent knows as one file, none is anonymous (JIT code needs perf maps),
        the mappings fit, the dynamic loader is done, and the process shares our
        mount namespace and root (so the file's path is ours). Its interpreter, if
        it runs Python, is registered as usual. None: read ``/proc`` instead.
        """
        value = ProcMappings()
        if not self._map.lookup(c_uint32(pid), value):
            return None
        if value.source != MAPPINGS_FROM_KERNEL or not 0 < value.count < MAX_MAPPINGS:
            return None
        # the entries unpacked in one call (ctypes field reads cost ~0.3 us each)
        at = _ENTRIES_AT
        entries = _ENTRY.iter_unpack(bytes(value)[at : at + _ENTRY.size * value.count])
        rows = [(start, end, fid, page) for start, end, _, fid, page in entries]
        file_ids = {fid for _, _, fid, page in rows if not page & MAPPING_VDSO}
        seen = self._tables.seen_as_all(file_ids)  # one lock for the whole process
        if seen is None:
            return None  # anonymous (JIT) code, a file not seen yet, or one ambiguous
        mappings: list[Mapping] = []
        for start, end, fid, page in rows:
            if page & MAPPING_VDSO:
                mappings.append(Mapping(start, end, "r-xp", 0, 0, 0, VDSO))
                continue
            if not page & MAPPING_FILE:
                return None
            dev, inode, path = seen[fid]
            pgoff = (page & MAPPING_PAGE_MASK) * PAGE_SIZE
            mappings.append(Mapping(start, end, "r-xp", pgoff, dev, inode, path))
        maps = ProcessMaps(pid, mappings, proc_root=self._proc_root)
        ours = _our_mount_identity()
        if value.mnt_ns and ours is not None:
            if (value.mnt_ns, value.root_dev, value.root_ino) != ours:
                return None  # another mount namespace or root: its paths are not ours
        elif not sees_our_tmp(os.path.join(self._proc_root, str(pid))):
            return None
        maps.sees_our_tmp = True
        if _starting(maps):
            # Sampled in the dynamic loader: its libraries are not mapped yet. The
            # walker keeps its own registration current as they come, so wait for
            # the next announcement rather than read /proc now and again then.
            return maps if self._defer(pid) else None
        with self._lock:
            if pid in self._registered:
                return None  # registered from /proc meanwhile
            self._adopted[pid] = file_ids
            self._deferred.pop(pid, None)
            self._counts["adopted"] += 1
        if self.python is not None:
            self.python.register(pid, maps)
        return maps

    def _defer(self, pid: int) -> bool:
        """Have a process still starting announced again at its next sample (its
        ``procs`` entry dropped); False once it was put off ``MAX_DEFERRALS`` times
        (a program that never maps libc: read ``/proc`` then)."""
        if self._procs is None:
            return False
        with self._lock:
            times = self._deferred.pop(pid, 0)
            if times >= MAX_DEFERRALS:
                return False
            self._deferred[pid] = times + 1
            while len(self._deferred) > MAX_DEFERRED:
                del self._deferred[next(iter(self._deferred))]
            self._counts["deferred"] += 1
        self._procs.delete(c_uint32(pid))
        return True

    def register(self, pid: int, *, build: bool = False) -> bool:
        """Read ``pid``'s maps now and write them for the walker; False if it is gone.

        ``build`` queues every table the process needs now, instead of when a
        sample asks (``--pid``: the one process is worth it).
        """
        return self.register_maps(pid, ProcessMaps.read(pid, self._proc_root), build=build)

    def register_maps(self, pid: int, maps: ProcessMaps | None, *, build: bool = False) -> bool:
        """:meth:`register` with the maps already read (None: the process is gone)."""
        if maps is None:
            with self._lock:
                self._counts["gone"] += 1
                if pid not in self._registered:
                    self._map.delete(c_uint32(pid))  # the walker's own entry, if it wrote one
            return False
        with self._lock:
            value = ProcMappings()
            file_ids: set[int] = set()
            count = 0
            for mapping in maps.mappings:
                if mapping.start >= USER_SPACE_END:
                    # [vsyscall] sits in the kernel's half: nothing to unwind there, and the
                    # walker's branch-free search compares addresses below 2^63 only.
                    continue
                if count == MAX_MAPPINGS:
                    self._counts["truncated"] += 1
                    break
                entry = value.m[count]
                entry.start, entry.end = mapping.start, mapping.end
                # What it is, as the walker writes its own: a child forked before its
                # exec starts with a copy of this entry, and is adopted from it.
                page = mapping.pgoff // PAGE_SIZE
                if mapping.path == VDSO:
                    entry.file_page = MAPPING_VDSO
                elif mapping.is_file and page <= MAPPING_PAGE_MASK:
                    entry.file_page = MAPPING_FILE | page
                binary = self._binary_for(maps, mapping, build)
                if binary is not None:
                    bias = load_bias(binary.segments, mapping.start, mapping.pgoff)
                    if bias is not None:
                        entry.bias = bias & 0xFFFFFFFFFFFFFFFF
                        entry.file_id = binary.file_id
                        file_ids.add(binary.file_id)
                count += 1
            value.count = count
            # bpf_ktime_get_ns() is CLOCK_MONOTONIC: the walker asks to re-read these
            # maps at most once a second from now (JIT code keeps mapping new pages),
            # but at once for a process the dynamic loader is still setting up (seen
            # at its first sample, before its libraries, libpython among them, are in).
            value.refresh_requested_ns = 0 if _starting(maps) else time.monotonic_ns()
            try:
                self._map.update(c_uint32(pid), value)
            except BpfError:
                return False
            self._registered[pid] = _Registered(maps.start_time, file_ids)
            self._adopted.pop(pid, None)
            self._deferred.pop(pid, None)
            self._counts["registered"] += 1
        if self.python is not None:
            self.python.register(pid, maps)
        return True

    def _binary_for(self, maps: ProcessMaps, mapping: Mapping, build: bool) -> _Binary | None:
        if mapping.path == VDSO:
            binary = self._tables.for_vdso()
            if binary is not None and build:
                self._tables.want(binary.file_id)
            return binary
        if not mapping.is_file:
            return None  # anonymous executable memory (JIT): frame pointers only
        return self._tables.for_file(mapping, maps, build=build)

    def touch(self, pids: Iterable[int]) -> None:
        """The processes sampled this window keep their tables warm."""
        with self._lock:
            ids: set[int] = set()
            for pid in pids:
                reg = self._registered.get(pid)
                if reg is not None:
                    ids |= reg.file_ids
                elif pid in self._adopted:
                    ids |= self._adopted[pid]
            self._tables.touch(ids)

    def prune(self) -> int:
        """Forget processes that exited (or whose pid was reused); returns how many.

        Entries the walker wrote itself for processes this registry never saw
        (unwind.bpf.h deletes them at exit) are swept too if their process is gone.
        An adopted process still alive at a drain is registered from ``/proc``: its
        kernel registration is re-read by the walker at every mmap, the agent's is not.
        """
        with self._lock:
            adopted, self._adopted = self._adopted, {}
        for pid in adopted:
            if read_start_time(pid, self._proc_root) is not None:
                self.register(pid)
        with self._lock:
            gone = [
                pid
                for pid, reg in self._registered.items()
                if read_start_time(pid, self._proc_root) != reg.start_time
            ]
            for key in list(self._map.keys(c_uint32)):
                pid = key.value
                if pid not in self._registered and read_start_time(pid, self._proc_root) is None:
                    self._map.delete(c_uint32(pid))
            for pid in gone:
                del self._registered[pid]
                self._map.delete(c_uint32(pid))
                if self._procs is not None:
                    self._procs.delete(c_uint32(pid))
        if self.python is not None:
            self.python.forget_dying()
            for pid in gone:
                self.python.forget(pid)
        return len(gone)

    def close(self) -> None:
        """Stop the table builder (the maps go with the BPF object)."""
        self._tables.close()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until the tables of every registered binary are loaded."""
        return self._tables.wait_idle(timeout)

    def stats(self) -> RegistryStats:
        with self._lock:
            return RegistryStats(processes=len(self._registered), **self._counts)

    def table_stats(self) -> TableStats:
        return self._tables.stats()


def _starting(maps: ProcessMaps) -> bool:
    """The dynamic loader is mapped but libc is not yet: a process still starting."""
    loader = False
    for m in maps.mappings:
        name = m.path[m.path.rfind("/") + 1 :]
        if name.startswith("libc.so"):
            return False
        loader = loader or name.startswith("ld-linux")
    return loader


_WRITE_ROWS = 1 << 16  # rows per batch write: 256 KiB of keys, 768 KiB of rows


def _write_mapped(fd: int, elements: int, parts: Sequence[bytes]) -> bool:
    """Write the rows of ``parts``, one after another, into an mmapable inner table
    map through its memory: a memory copy, where a batch update costs the kernel about
    100 ns a row (50 ms for a compiler's 500k rows, at the agent's start). False
    without the agent's library (write them in batches then)."""
    if not native.available():
        return False
    size = -(-elements * KERNEL_ROW_BYTES // mmap.PAGESIZE) * mmap.PAGESIZE
    try:
        memory = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    except OSError:
        return False  # not mappable here (a security module's refusal): batches then
    try:
        view = (ctypes.c_char * size).from_buffer(memory)
        at = ctypes.addressof(view)
        for part in parts:
            native.spread_rows(part, ROW_SIZE, KERNEL_ROW_BYTES, at)
            at += len(part) // ROW_SIZE * KERNEL_ROW_BYTES
        del view
    finally:
        memory.close()
    return True


def _write_rows(fd: int, first: int, data: bytes) -> None:
    """``data``'s rows into an inner table map from element ``first`` on, in batches:
    flat buffers both sides (a 6M-row table must not become 6M Python ints), the rows
    not copied, and only one batch's keys at a time."""
    total = len(data) // ROW_SIZE
    base = _address(data)
    for at in range(0, total, _WRITE_ROWS):
        n = min(_WRITE_ROWS, total - at)
        keys = native.keys(first + at, n)
        update_batch(fd, _address(keys), base + at * ROW_SIZE, n)


@functools.cache
def _our_mount_identity() -> tuple[int, int, int] | None:
    """Our mount namespace's inode number and our root's device and inode, as the
    walker records a process's; None if they cannot be read.

    The device is our root mount's superblock's, from ``mountinfo`` (the kernel's
    ``major << 20 | minor``): ``stat("/")`` gives a btrfs subvolume's own device
    instead, which the walker's ``mnt_sb->s_dev`` never equals.
    """
    try:
        ns = os.stat("/proc/self/ns/mnt").st_ino
        root = os.stat("/").st_ino
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            # "ID PARENT MAJOR:MINOR ROOT MOUNTPOINT ...": the last "/" mount is ours
            devices = [line.split()[2] for line in f if line.split()[4:5] == ["/"]]
        major, minor = (int(n) for n in devices[-1].split(":"))
    except (OSError, ValueError, IndexError):
        return None
    return (ns, (major << 20) | minor, root)


def _address(buffer: bytes | array[int]) -> int:
    """Where a buffer's bytes are, for a call that only reads them."""
    if isinstance(buffer, array):
        return buffer.buffer_info()[0]
    return ctypes.cast(ctypes.c_char_p(buffer), ctypes.c_void_p).value or 0


def _file_size(binary: _Binary) -> int:
    if binary.vdso_image is not None:
        return len(binary.vdso_image)
    try:
        return os.stat(binary.paths[0]).st_size if binary.paths else 0
    except OSError:
        return 0
