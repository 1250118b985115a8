"""Turning raw stack addresses into :class:`aperture.model.Frame` objects.

:class:`Symbolizer` is the one object the agent uses. It keeps, per process, a
snapshot of the executable mappings (taken by :meth:`Symbolizer.remember` while
the process lives) and, shared by all processes, the symbols of each ELF file,
keyed by ``(dev, inode, path)`` and deduplicated by build-id (the same library in
two containers is loaded once). Not thread-safe: use it from one thread.
"""

from __future__ import annotations

import itertools
import os
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aperture.agent.symbols.debuginfo import DEFAULT_DEBUG_DIRS
from aperture.agent.symbols.demangle import demangle
from aperture.agent.symbols.elf import ElfSymbols, display_name, file_build_id
from aperture.agent.symbols.kernel import KALLSYMS_PATH, KERNEL_MODULE, KernelSymbols
from aperture.agent.symbols.perfmap import JIT_MODULE, PerfMap
from aperture.agent.symbols.process import PROC_ROOT, Mapping, ProcessMaps, own_vdso_image
from aperture.model import Frame, FrameKind

UNKNOWN = "[unknown]"
# Set by the table unwinder on an address that is not a return address (the
# interrupted pc above a signal frame): looked up as is, not at addr - 1.
NOT_CALL_BIT = 1 << 63
# Set on the signal trampoline a signal handler returns to (glibc's __restore_rt,
# which has no symbol size): shown as this frame, the name gdb gives it.
SIGNAL_FRAME_BIT = 1 << 62
SIGNAL_FRAME = "<signal handler called>"
VDSO = "[vdso]"
_FileKey = tuple[int, int, str]
_FRAME_CACHE_SIZE = 4096
# How long a file found at its path stays known to be there (see _reachable_later),
# and for how many files (about 200 bytes each).
REACHABLE_FOR_S = 10.0
MAX_REACHABLE = 4096
_COUNTERS = (
    "user_resolved",
    "user_unresolved",
    "user_unknown",
    "kernel_resolved",
    "kernel_unresolved",
    "files_loaded",
    "files_refused",
    "perf_map_bytes_skipped",
)


@dataclass(frozen=True, slots=True)
class SymbolizerStats:
    """Counters since the symbolizer was created."""

    user_resolved: int = 0
    user_unresolved: int = 0  # in a mapping but no symbol: ``module+0xoffset``
    user_unknown: int = 0  # in no mapping: ``[unknown]``
    kernel_resolved: int = 0
    kernel_unresolved: int = 0
    files_loaded: int = 0
    # Binaries, debug files, MiniDebugInfo and perf map reads refused: a FIFO, a
    # link, another owner, over a size bound (aperture.agent.untrusted).
    files_refused: int = 0
    perf_map_bytes_skipped: int = 0  # past the read bound or in over-long lines
    files_cached: int = 0
    processes: int = 0

    @property
    def frames(self) -> int:
        return (
            self.user_resolved
            + self.user_unresolved
            + self.user_unknown
            + self.kernel_resolved
            + self.kernel_unresolved
        )

    @property
    def unresolved_fraction(self) -> float:
        """Share of frames without a function name (0.0 when nothing was symbolized)."""
        bad = self.user_unresolved + self.user_unknown + self.kernel_unresolved
        return bad / self.frames if self.frames else 0.0


_SERIALS = itertools.count(1)


@dataclass
class _Process:
    maps: ProcessMaps
    refreshed_at: float
    # Unique for the agent's life: what was worked out from this snapshot can be
    # cached elsewhere under it (a new snapshot of the same pid has another serial).
    serial: int = field(default_factory=lambda: next(_SERIALS))
    elfs: dict[Mapping, ElfSymbols] = field(default_factory=dict)
    # (addr << 1 | adjusted) -> (frame, stats counter), for answers that cannot change.
    frames: dict[int, tuple[Frame, str]] = field(default_factory=dict)
    perf_map: PerfMap | None = None
    perf_map_looked_at: float | None = None


class Symbolizer:
    """Symbolizes user stacks per process and kernel stacks.

    Address arrays are **leaf-first**, as the kernel returns them: ``addrs[0]`` is
    the interrupted instruction, every later entry a return address, which points
    just after its call and may already belong to the next function. So every
    entry but the first is looked up at ``addr - 1``, unless it carries
    :data:`NOT_CALL_BIT`. Frames come back in the same
    leaf-first order (the caller reverses them into root-first stacks); a frame's
    ``offset`` is that of the unadjusted address.
    """

    def __init__(
        self,
        *,
        proc_root: str = PROC_ROOT,
        kallsyms_path: str = KALLSYMS_PATH,
        debug_dirs: Sequence[str] = DEFAULT_DEBUG_DIRS,
        max_processes: int = 4096,
        max_files: int = 1024,
        preload: bool = True,
        maps_refresh_interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``preload`` loads a process's files in :meth:`remember`, so that its
        frames still resolve once it has exited and its files are out of reach;
        otherwise files are loaded on first use. A stack address in no known
        mapping re-reads the process's maps (``dlopen``) at most once per
        ``maps_refresh_interval`` seconds of ``clock``.
        """
        self._proc_root = proc_root
        self._kallsyms_path = kallsyms_path
        self._debug_dirs = tuple(debug_dirs)
        self._max_processes = max_processes
        self._max_files = max_files
        self._preload = preload
        self._refresh_interval = maps_refresh_interval
        self._clock = clock
        self._procs: OrderedDict[int, _Process] = OrderedDict()
        self._files: OrderedDict[_FileKey, ElfSymbols] = OrderedDict()
        self._reachable: OrderedDict[_FileKey, float] = OrderedDict()  # key -> checked at
        self._by_build_id: weakref.WeakValueDictionary[str, ElfSymbols] = (
            weakref.WeakValueDictionary()
        )
        self._kernel: KernelSymbols | None = None
        self._vdso: ElfSymbols | None = None
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self._gone: dict[int, _Process] = {}  # snapshots found gone at the last sweep

    # -- processes ---------------------------------------------------------------

    def remember(self, pid: int) -> bool:
        """Snapshot ``pid``'s mappings now (call when a pid is first seen).

        A live process replaces its previous snapshot; a gone one keeps it. Returns
        whether a snapshot is held. Only ``max_processes`` are kept (LRU).
        """
        return self.keep(pid, ProcessMaps.read(pid, self._proc_root))

    def keep(self, pid: int, maps: ProcessMaps | None) -> bool:
        """:meth:`remember` with the maps already read (None: the process is gone)."""
        old = self._procs.get(pid)
        if maps is None or (old is not None and not maps.mappings):
            # Gone, or exiting (its memory already released, the maps empty): what
            # was snapshotted while it ran still names its last samples' frames.
            if old is not None:
                self._procs.move_to_end(pid)
            return old is not None
        proc = _Process(maps, self._clock())
        if old is not None and old.maps.start_time == maps.start_time:
            # Same process, fresh maps: keep what is already loaded for it.
            current = set(maps.mappings)
            proc.elfs = {m: e for m, e in old.elfs.items() if m in current}
            proc.perf_map, proc.perf_map_looked_at = old.perf_map, old.perf_map_looked_at
        self._procs[pid] = proc
        self._procs.move_to_end(pid)
        while len(self._procs) > self._max_processes:
            self._procs.popitem(last=False)
        if self._preload:
            files = self._files
            exe: str | bool | None = False  # read once, if a file is not loaded yet
            for mapping in maps.mappings:
                if mapping.path == VDSO:
                    self._elf_for(proc, mapping)
                elif not mapping.is_file:
                    continue
                elif (mapping.dev, mapping.inode, mapping.file_path) in files:
                    # already loaded (a library every process maps): no stat needed
                    self._elf_for(proc, mapping)
                else:
                    if exe is False:
                        exe = _exe_path(self._proc_root, pid)
                    if mapping.file_path == exe or not self._reachable_later(mapping):
                        self._elf_for(proc, mapping)
        return True

    def _reachable_later(self, mapping: Mapping) -> bool:
        """:func:`_reachable_later`, its yes remembered for a few seconds per file: a
        busy host's new processes map the same libraries, each in several mappings,
        and each of those was a stat (a file replaced meanwhile is caught at lookup,
        which checks the inode again and leaves the frame unnamed, never misnamed)."""
        key = (mapping.dev, mapping.inode, mapping.file_path)
        now = self._clock()
        checked = self._reachable.get(key)
        if checked is not None and now - checked < REACHABLE_FOR_S:
            return True
        if not _reachable_later(mapping):
            return False
        self._reachable[key] = now
        self._reachable.move_to_end(key)
        while len(self._reachable) > MAX_REACHABLE:
            self._reachable.popitem(last=False)
        return True

    def serial(self, pid: int) -> int | None:
        """The serial of ``pid``'s current snapshot, None without one (nothing is read)."""
        proc = self._procs.get(pid)
        return None if proc is None else proc.serial

    def forget(self, pid: int) -> None:
        """Drop ``pid``'s snapshot (its files stay cached while others use them)."""
        self._procs.pop(pid, None)

    def sweep_exited(self) -> int:
        """Forget the snapshots of processes already gone at the previous sweep.

        Call once per drain cycle, after every collector has drained: a process
        gone at one sweep may still have samples in the windows that were open
        then, and those are symbolized by the next cycle's drains, before the
        next sweep forgets it. A pid reused since keeps its new snapshot.
        Returns how many snapshots were dropped.
        """
        dropped = 0
        for pid, proc in self._gone.items():
            if self._procs.get(pid) is proc:
                del self._procs[pid]
                dropped += 1
        root = self._proc_root
        self._gone = {
            pid: proc for pid, proc in self._procs.items() if not os.path.exists(f"{root}/{pid}")
        }
        return dropped

    def user_frames(self, pid: int, addrs: Sequence[int]) -> list[Frame]:
        """Frames of a leaf-first user stack of process ``pid``, leaf first."""
        proc = self._procs.get(pid)
        if proc is None and self.remember(pid):
            proc = self._procs.get(pid)
        elif proc is not None:
            self._procs.move_to_end(pid)
        if proc is None:
            self._counts["user_unknown"] += len(addrs)
            return [Frame(UNKNOWN, UNKNOWN, FrameKind.UNKNOWN, addr) for addr in addrs]
        frames = []
        cache, counts = proc.frames, self._counts
        for i, addr in enumerate(addrs):
            adjust = 1 if i and addr else 0
            if addr & NOT_CALL_BIT:
                addr &= ~NOT_CALL_BIT
                adjust = 0
            signal_frame = addr & SIGNAL_FRAME_BIT
            addr &= ~SIGNAL_FRAME_BIT
            key = addr << 1 | adjust
            cached = cache.get(key)
            if signal_frame:
                frame, counter, _ = self._user_frame(proc, addr, addr - adjust)
                frame = Frame(SIGNAL_FRAME, frame.module, frame.kind, frame.offset)
                counter = "user_resolved"
            elif cached is None:
                frame, counter, cacheable = self._user_frame(proc, addr, addr - adjust)
                if cacheable:
                    if len(cache) >= _FRAME_CACHE_SIZE:
                        cache.clear()
                    cache[key] = (frame, counter)
            else:
                frame, counter = cached
            counts[counter] += 1
            frames.append(frame)
        return frames

    def _user_frame(self, proc: _Process, addr: int, at: int) -> tuple[Frame, str, bool]:
        """``(frame, counter, cacheable)``: ELF answers never change, JIT ones may."""
        mapping = self._mapping_for(proc, at)
        if mapping is None:
            return Frame(UNKNOWN, UNKNOWN, FrameKind.UNKNOWN, addr), "user_unknown", False
        delta = addr - at
        if mapping.is_file or mapping.path == VDSO:
            elf = self._elf_for(proc, mapping)
            vaddr = elf.vaddr(at, mapping.start, mapping.pgoff)
            shared = elf.frames.get(vaddr << 1 | delta) if vaddr is not None else None
            if shared is not None and shared[0].module == display_name(mapping.path):
                return shared[0], shared[1], True
            module = display_name(mapping.path)
            hit = elf.lookup(vaddr) if vaddr is not None else None
            if hit is not None and vaddr is not None:
                frame = Frame(demangle(hit[0]), module, FrameKind.USER, vaddr + delta)
                self._share(elf, vaddr << 1 | delta, frame, "user_resolved")
                return frame, "user_resolved", True
            if not len(elf):
                # Not ELF (or no symbols at all): a memfd JIT may list it in its perf map.
                jit = self._jit_frame(proc, addr, at)
                if jit is not None:
                    return jit, "user_resolved", False
            offset = (vaddr if vaddr is not None else at - mapping.start + mapping.pgoff) + delta
            frame = Frame(f"{module}+0x{offset:x}", module, FrameKind.USER, offset)
            if len(elf) and vaddr is not None:
                self._share(elf, vaddr << 1 | delta, frame, "user_unresolved")
            return frame, "user_unresolved", bool(len(elf))
        jit = self._jit_frame(proc, addr, at)
        if jit is not None:
            return jit, "user_resolved", False
        if mapping.is_anonymous:
            frame = Frame(f"{JIT_MODULE}+0x{addr:x}", JIT_MODULE, FrameKind.JIT, addr)
        else:
            offset = addr - mapping.start
            frame = Frame(f"{mapping.path}+0x{offset:x}", mapping.path, FrameKind.USER, offset)
        return frame, "user_unresolved", False

    @staticmethod
    def _share(elf: ElfSymbols, key: int, frame: Frame, counter: str) -> None:
        """Keep a file's frame for every process that maps the file (bounded per file)."""
        if len(elf.frames) >= _FRAME_CACHE_SIZE:
            elf.frames.clear()
        elf.frames[key] = (frame, counter)

    def _mapping_for(self, proc: _Process, at: int) -> Mapping | None:
        mapping = proc.maps.find(at)
        if mapping is not None:
            return mapping
        now = self._clock()
        if now - proc.refreshed_at < self._refresh_interval:
            return None
        # Possibly dlopen'ed after the snapshot: re-read the maps of the same process.
        proc.refreshed_at = now
        fresh = ProcessMaps.read(proc.maps.pid, self._proc_root)
        if fresh is None or fresh.start_time != proc.maps.start_time:
            return None
        proc.maps = fresh
        proc.frames.clear()
        return fresh.find(at)

    def _jit_frame(self, proc: _Process, addr: int, at: int) -> Frame | None:
        if proc.perf_map is None:
            # A JIT may create its map after we first look: look again now and then.
            now = self._clock()
            last = proc.perf_map_looked_at
            if last is not None and now - last < self._refresh_interval:
                return None
            proc.perf_map_looked_at = now
            path = next((p for p in proc.maps.perf_map_paths() if os.path.lexists(p)), None)
            if path is None:
                return None
            proc.perf_map = PerfMap(path, owners=proc.maps.uids)
            self._count_perf_map(proc.perf_map, 0, 0)
        perf_map = proc.perf_map
        refusals, skipped = perf_map.refusals, perf_map.bytes_skipped
        hit = perf_map.lookup(at)
        self._count_perf_map(perf_map, refusals, skipped)
        if hit is None:
            return None
        return Frame(demangle(hit[0]), JIT_MODULE, FrameKind.JIT, addr)

    def _count_perf_map(self, perf_map: PerfMap, refusals: int, skipped: int) -> None:
        """Count what ``perf_map`` refused and skipped since it had these counts."""
        self._counts["files_refused"] += perf_map.refusals - refusals
        self._counts["perf_map_bytes_skipped"] += perf_map.bytes_skipped - skipped

    # -- files -------------------------------------------------------------------

    def _elf_for(self, proc: _Process, mapping: Mapping) -> ElfSymbols:
        elf = proc.elfs.get(mapping)
        if elf is not None:
            return elf
        elf = self._vdso_for(mapping) if mapping.path == VDSO else self._file_elf(proc, mapping)
        proc.elfs[mapping] = elf
        return elf

    def _file_elf(self, proc: _Process, mapping: Mapping) -> ElfSymbols:
        key = (mapping.dev, mapping.inode, mapping.file_path)
        elf = self._files.get(key)
        if elf is not None:
            self._files.move_to_end(key)
            return elf
        path = proc.maps.file_for(mapping)
        if path is None:
            # Unreachable now; not cached globally, another process may reach it.
            return ElfSymbols(mapping.file_path)
        build_id = file_build_id(path)
        elf = self._by_build_id.get(build_id) if build_id else None
        if elf is None:
            elf = ElfSymbols.load(
                path, logical_path=mapping.file_path, debug_dirs=self._debug_dirs_for(proc)
            )
            self._counts["files_loaded"] += 1
            if elf.refused:
                self._counts["files_refused"] += 1
            if elf.build_id:
                self._by_build_id[elf.build_id] = elf
        self._files[key] = elf
        while len(self._files) > self._max_files:
            self._files.popitem(last=False)
        return elf

    def _debug_dirs_for(self, proc: _Process) -> list[str]:
        """The process's own debug dirs first, then ours, without duplicates."""
        dirs: list[str] = []
        seen: set[tuple[int, int]] = set()
        for path in [proc.maps.in_root(d) for d in self._debug_dirs] + list(self._debug_dirs):
            try:
                st = os.stat(path)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                dirs.append(path)
        return dirs

    def _vdso_for(self, mapping: Mapping) -> ElfSymbols:
        """The vDSO is the kernel's: ours has the same symbols (same size, same ABI)."""
        if self._vdso is None:
            self._vdso = _read_own_vdso()
        if self._vdso.path != f"{VDSO}:{mapping.end - mapping.start}":
            return ElfSymbols(VDSO)
        return self._vdso

    # -- kernel ------------------------------------------------------------------

    def kernel_frames(self, addrs: Sequence[int]) -> list[Frame]:
        """Frames of a leaf-first kernel stack, leaf first (offset = raw address)."""
        if self._kernel is None:
            self._kernel = KernelSymbols.load(self._kallsyms_path)
        frames = []
        for i, addr in enumerate(addrs):
            at = addr - 1 if i and addr else addr
            found = self._kernel.lookup(at)
            if found is None:
                self._counts["kernel_unresolved"] += 1
                name = f"{KERNEL_MODULE}+0x{addr:x}"
                frames.append(Frame(name, KERNEL_MODULE, FrameKind.KERNEL, addr))
            else:
                self._counts["kernel_resolved"] += 1
                frames.append(Frame(found[0], found[1], FrameKind.KERNEL, addr))
        return frames

    def reload_kernel(self) -> None:
        """Re-read kallsyms (modules and BPF programs come and go)."""
        self._kernel = KernelSymbols.load(self._kallsyms_path)

    def stats(self) -> SymbolizerStats:
        """Frame and cache counters, e.g. for an "unresolved frames %" metric."""
        return SymbolizerStats(
            **self._counts, files_cached=len(self._files), processes=len(self._procs)
        )


def _exe_path(proc_root: str, pid: int) -> str | None:
    try:
        return os.readlink(os.path.join(proc_root, str(pid), "exe")).removesuffix(" (deleted)")
    except OSError:
        return None


def _reachable_later(mapping: Mapping) -> bool:
    """Whether the file stays readable at its path after the process exits.

    Such files (libraries on the host's disk, mostly) are loaded lazily, when a
    stack needs them; the main executable (the file most often rebuilt or
    replaced) and deleted or container-private files are read while the process
    lives. Measured: on a host starting many processes, preloading every mapped
    file took 75% of the agent's CPU.
    """
    if mapping.deleted:
        return False
    try:
        st = os.stat(mapping.file_path)
    except OSError:
        return False
    return st.st_ino == mapping.inode and st.st_dev == mapping.dev


def _read_own_vdso() -> ElfSymbols:
    """Our own vDSO image, tagged with its size to match others'."""
    image = own_vdso_image()
    if image is None:
        return ElfSymbols(VDSO)
    return ElfSymbols.from_bytes(image, f"{VDSO}:{len(image)}")
