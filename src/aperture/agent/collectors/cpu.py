"""The CPU profiler: perf_event sampling aggregated in the kernel by cpu.bpf.c."""

from __future__ import annotations

import ctypes
import os
import platform
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from ctypes import c_char, c_int32, c_uint8, c_uint16, c_uint32, c_uint64
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from aperture.agent import perf_event
from aperture.agent.collectors.base import BpfCollector, own_tgid, rodata
from aperture.agent.collectors.processes import ProcessWatcher
from aperture.agent.collectors.unwind import trim_user_stack
from aperture.agent.libbpf import BpfError, BpfObject
from aperture.agent.python.code import CodeResolver
from aperture.agent.python.interpreter import Interpreter
from aperture.agent.python.merge import PyEntry, decode_entries
from aperture.agent.python.merge import merge as merge_python
from aperture.agent.python.registry import PythonRegistry
from aperture.agent.symbols.symbolizer import Symbolizer
from aperture.agent.symbols.threadsafe import ThreadSafeSymbolizer
from aperture.agent.unwind import DEFAULT_TABLE_MEMORY
from aperture.agent.unwind.kernel_maps import (
    FileCode,
    FileKey,
    KernelTables,
    ProcessRegistry,
    RegistryStats,
    TableStats,
)
from aperture.errors import UserError
from aperture.model import EventType, Frame, FrameKind, Profile, Sample

COMM_LEN = 16
MAX_STACK_DEPTH = 127
MAX_USER_FRAMES = 128
MAX_PY_FRAMES = 128
# table-unwound stacks kept symbolized across windows (~400 bytes each)
MAX_KEPT_STACKS = 8192
Frames = tuple[Frame, ...]
EFAULT = 14
EEXIST = 17

# --pid: how long start() waits for the process's tables to be built and loaded.
PID_TABLES_TIMEOUT_S = 10.0

# --unwind: enum unwind_mode of aperture.h
UNWIND_MODES = {"fp": 0, "dwarf": 1, "auto": 2}


# ctypes mirrors of src/aperture/bpf/aperture.h
class CpuKey(ctypes.Structure):
    _fields_ = (
        ("tgid", c_uint32),
        ("pid", c_uint32),
        ("user_stack_id", c_int32),
        ("kernel_stack_id", c_int32),
        ("user_stack_hash", c_uint64),
        ("comm", c_char * COMM_LEN),
    )


class CpuConfig(ctypes.Structure):
    _fields_ = (
        ("target_tgid", c_uint32),
        ("include_idle", c_uint32),
        ("unwind_mode", c_uint32),
        ("offcpu_sample", c_uint32),
        ("offcpu_min_ns", c_uint64),
        ("lock_sample", c_uint32),
        ("agent_tgid", c_uint32),
        ("lock_min_ns", c_uint64),
    )


class UserStack(ctypes.Structure):
    _fields_ = (
        ("len", c_uint16),
        ("end", c_uint8),
        ("fp_frames", c_uint8),
        ("py_len", c_uint8),
        ("py_status", c_uint8),
        ("reserved", c_uint16),
        ("ips", c_uint64 * MAX_USER_FRAMES),
        ("py", c_uint64 * MAX_PY_FRAMES),
    )


StackTrace = c_uint64 * MAX_STACK_DEPTH

# enum unwind_end, in order: how table walks ended
UNWIND_ENDS = (
    "bottom",
    "depth",
    "no_mapping",
    "no_table",
    "no_info",
    "unsupported",
    "read_fault",
    "bad_frame",
)

# enum cpu_stat, in order
STAT_NAMES = (
    "samples",
    "idle",
    "filtered",
    "user_stack_collisions",
    "kernel_stack_collisions",
    "user_stack_errors",
    "kernel_stack_errors",
    "counts_map_full",
    "process_events_dropped",
    "unwound_stack_collisions",
    "unwound_stacks_full",
    "unwind_unregistered",
    "unwind_fp_frames",
    "python_samples",
    "python_native_threads",
    "python_incomplete",
    *(f"unwind_end_{end}" for end in UNWIND_ENDS),
)
# Counters that mean data was lost (the rest are informational).
LOSS_NAMES = STAT_NAMES[3:11]

# The futex tracepoints of locks.bpf.h (futex_waitv exists from Linux 5.16; the agent needs 6.1).
LOCK_PROGRAMS = ("lock_futex_enter", "lock_futex_exit", "lock_futex_waitv_enter",
                 "lock_futex_waitv_exit")  # fmt: skip

LOST_USER = Frame("[user stack lost]", "[unknown]", FrameKind.UNKNOWN)
LOST_KERNEL = Frame("[kernel stack lost]", "[unknown]", FrameKind.UNKNOWN)


@dataclass(frozen=True)
class OffCpuOptions:
    min_block_ns: int = 10_000  # shorter blocks are counted, not recorded
    sample_every: int = 1  # stacks of 1 in N blocks (the others' time kept without stacks)


@dataclass(frozen=True)
class LockOptions:
    min_stack_ns: int = 100_000  # waits and holds this long always get their stacks
    sample_every: int = 64  # stacks of 1 in N shorter waits and releases (all are counted)


@dataclass(frozen=True)
class CpuOptions:
    frequency_hz: int = 99
    pid: int = 0
    include_idle: bool = False
    stack_map_entries: int = 16384
    # "auto": tables where a binary has them, frame pointers elsewhere.
    unwind: str = "auto"
    # Python functions of CPython 3.10-3.13 processes in place of the eval loop.
    python_frames: bool = True
    unwind_table_memory: int = DEFAULT_TABLE_MEMORY
    cache_dir: Path | None = None
    sample_cpu: bool = True  # off: only off-CPU time (--mode offcpu)
    offcpu: OffCpuOptions | None = None  # off-CPU time by stack, read by OffCpuCollector
    lock: LockOptions | None = None  # futex waits, holds and wakes, read by LockCollector
    # the agent's own blocks and lock waits not recorded (base.own_tgid); its samples are
    leave_out_agent: bool = False


class Unwound(NamedTuple):
    """A table-unwound stack as the kernel holds it: native addresses and Python frames."""

    ips: tuple[int, ...]
    py: tuple[int, ...]
    py_status: int
    complete: bool = True  # the native walk reached the entry point


@dataclass(frozen=True, slots=True)
class UnwindReport:
    """How one window's user stacks were unwound (counts of samples)."""

    mode: str
    table_walks: int = 0  # samples whose user stack the table walker made
    complete: int = 0  # of those, reaching the stack's bottom
    truncated: int = 0  # stopped early (any other end)
    fp_frames: int = 0  # of the table walks, those that used frame pointers for a frame
    fp_only: int = 0  # processes not registered yet: the kernel's frame-pointer walk
    ends: dict[str, int] = field(default_factory=dict)
    tables: TableStats = field(default_factory=TableStats)
    processes: RegistryStats = field(default_factory=RegistryStats)


def effective_unwind_mode(requested: str, machine: str | None = None) -> str:
    """The --unwind mode this machine can run: tables exist for x86_64 only."""
    if requested not in UNWIND_MODES:
        raise UserError(f"unknown --unwind {requested!r}: use auto, dwarf or fp.")
    if (machine or platform.machine()) in ("x86_64", "AMD64") or requested == "fp":
        return requested
    if requested == "dwarf":
        raise UserError(
            f"--unwind dwarf is implemented for x86_64 only, not {machine or platform.machine()}: "
            "use --unwind fp (or auto, which uses frame pointers here)."
        )
    return "fp"


def _decode(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode(errors="replace")


class CpuCollector(BpfCollector):
    """Loads, attaches and drains the CPU profiler; one :meth:`drain` per window."""

    object_name = "cpu"
    event_type = EventType.CPU
    not_running = "the CPU collector is not running"
    layouts = (
        ("counts0", CpuKey, c_uint64),
        ("counts1", CpuKey, c_uint64),
        ("ustacks0", c_uint64, UserStack),
        ("ustacks1", c_uint64, UserStack),
        ("file_codes", FileKey, FileCode),
    )
    counters_map = "stats"
    stat_names = STAT_NAMES
    loss_names = LOSS_NAMES

    def __init__(self, options: CpuOptions, symbolizer: Symbolizer | ThreadSafeSymbolizer) -> None:
        super().__init__()
        self.options = options
        self.unwind_mode = effective_unwind_mode(options.unwind)
        self._symbolizer = symbolizer
        self._registry: ProcessRegistry | None = None
        self._python_unmerged = 0  # stacks whose Python frames did not fit (this window)
        # (tgid, stack hash) -> (snapshot serials, hash(stack), frames, unmerged): table-
        # unwound stacks symbolized once while the process's maps snapshot and Python
        # registration stay the same (a steady process's stacks recur every window)
        self._kept: OrderedDict[tuple[int, int], tuple[tuple[int, int], int, Frames, bool]]
        self._kept = OrderedDict()
        self._unsupported_seen = 0
        self.last_unwind = UnwindReport(self.unwind_mode)

    # -- lifecycle ---------------------------------------------------------
    def _configure(self, obj: BpfObject) -> None:
        config = rodata(obj, CpuConfig)
        config.target_tgid = self.options.pid
        config.agent_tgid = own_tgid(self.options.pid, self.options.leave_out_agent)
        config.include_idle = int(self.options.include_idle)
        config.unwind_mode = UNWIND_MODES[self.unwind_mode]
        offcpu = self.options.offcpu
        if offcpu is not None:
            config.offcpu_sample = offcpu.sample_every
            config.offcpu_min_ns = offcpu.min_block_ns
        lock = self.options.lock
        if lock is not None:
            config.lock_sample = lock.sample_every
            config.lock_min_ns = lock.min_stack_ns
        # A program not used is not loaded: the verifier's time is the agent's start-up cost.
        obj.program("sample_cpu").set_autoload(self.options.sample_cpu)
        obj.program("offcpu_switch").set_autoload(offcpu is not None)
        for name in LOCK_PROGRAMS:
            obj.program(name).set_autoload(lock is not None)
        for name in ("stacks0", "stacks1", "ustacks0", "ustacks1", "oustacks0", "oustacks1",
                     "kstacks0", "kstacks1", "lustacks0", "lustacks1"):  # fmt: skip
            obj.map(name).set_max_entries(self.options.stack_map_entries)

    def _attach(self, obj: BpfObject) -> None:
        opts = self.options
        if self.unwind_mode != "fp":
            tables = KernelTables(
                obj.map("unwind_tables"),
                misses=obj.map("table_misses"),
                files=obj.map("file_codes"),
                memory_limit=opts.unwind_table_memory,
                cache_dir=opts.cache_dir,
            )
            self._registry = ProcessRegistry(
                obj.map("proc_mappings"),
                tables,
                procs=obj.map("procs"),
                python=PythonRegistry(obj.map("py_procs")) if opts.python_frames else None,
            )
        registry = self._registry
        self._watcher = ProcessWatcher(
            obj,
            self._symbolizer,
            registry.on_event if registry else None,
            registry.python.preresolve if registry and registry.python else None,
            adopt=registry.adopt if registry and not opts.pid else None,
        )
        if registry is not None and opts.pid:
            # One process asked for: its tables are in place before the first sample.
            registry.register(opts.pid, build=True)
            registry.wait_idle(PID_TABLES_TIMEOUT_S)
        prog = obj.program("sample_cpu")
        for cpu in perf_event.online_cpus() if opts.sample_cpu else ():
            fd = perf_event.open_cpu_clock(cpu, opts.frequency_hz)
            try:
                obj.keep(prog.attach_perf_event(fd))
            except BpfError:
                os.close(fd)
                raise
        if opts.offcpu is not None:
            obj.keep(obj.program("offcpu_switch").attach())
        if opts.lock is not None:
            for name in LOCK_PROGRAMS:
                obj.keep(obj.program(name).attach())
        obj.keep(obj.program("on_exec").attach())
        obj.keep(obj.program("forget_mappings").attach())
        if registry is not None and not opts.pid:
            # New processes registered by the walker's programs until the agent's turn.
            for name in ("mapped", "protected", "forked", "exited"):
                obj.keep(obj.program(name).attach())

    def _release(self) -> None:
        if self._registry is not None:
            self._registry.close()
            self._registry = None

    # -- reading -----------------------------------------------------------
    def _read(self, obj: BpfObject, idle: int, profile: Profile) -> None:
        entries = obj.map(f"counts{idle}").drain(CpuKey, c_uint64)
        stacks = self._read_stacks(idle, entries)
        unwound = self._read_unwound(idle)
        profile.frequency_hz = self.options.frequency_hz
        self._python_unmerged = 0
        profile.samples = self.symbolize(entries, stacks, unwound)
        # After symbolizing: an exited process's last samples need what it registered.
        self.touch({k.tgid for k, _ in entries})
        delta = self._window_counters(profile)
        report = self._unwind_report(delta)
        # Table losses as this window's share of the running counts, like the rest.
        before = self.last_unwind.tables
        self.last_unwind = report
        profile.losses["unwind_tables_evicted"] = report.tables.evicted - before.evicted
        profile.losses["unwind_tables_too_large"] = report.tables.too_large - before.too_large
        profile.labels = {
            "idle_samples": str(delta["idle"]),
            "filtered_samples": str(delta["filtered"]),
            "unwind": report.mode,
            "unwind_table_walks": str(report.table_walks),
            "unwind_complete": str(report.complete),
            "unwind_truncated": str(report.truncated),
            "unwind_fp_frames": str(report.fp_frames),
            "unwind_fp_only": str(report.fp_only),
            "unwind_table_bytes": str(report.tables.kernel_bytes),
            "unwind_tables_loaded": str(report.tables.loaded),
            "python_samples": str(delta["python_samples"]),
            "python_native_threads": str(delta["python_native_threads"]),
            "python_incomplete": str(delta["python_incomplete"]),
            "python_unmerged": str(self._python_unmerged),
            "python_unsupported": str(self._python_unsupported()),
            **{f"unwind_end_{end}": str(n) for end, n in report.ends.items()},
        }

    def _python_unsupported(self) -> int:
        """Interpreters found this window that cannot be read (another version, ...)."""
        python = self._registry.python if self._registry else None
        total = python.stats().unsupported if python else 0
        delta, self._unsupported_seen = total - self._unsupported_seen, total
        return delta

    def _unwind_report(self, delta: dict[str, int]) -> UnwindReport:
        ends = {end: delta[f"unwind_end_{end}"] for end in UNWIND_ENDS}
        walks = sum(ends.values())
        registry = self._registry
        return UnwindReport(
            mode=self.unwind_mode,
            table_walks=walks,
            complete=ends["bottom"],
            truncated=walks - ends["bottom"],
            fp_frames=delta["unwind_fp_frames"],
            fp_only=delta["unwind_unregistered"] if self.unwind_mode == "auto" else 0,
            ends=ends,
            tables=registry.table_stats() if registry else TableStats(),
            processes=registry.stats() if registry else RegistryStats(),
        )

    def _read_unwound(self, idle: int) -> dict[int, Unwound]:
        """The idle buffer's table-unwound stacks by hash, leaf first; emptied."""
        if self._registry is None:
            return {}
        return self.read_unwound(f"ustacks{idle}")

    def read_unwound(self, map_name: str) -> dict[int, Unwound]:
        """A map of user stacks by hash (struct user_stack), leaf first; emptied."""
        rows = self._require().map(map_name).drain(c_uint64, UserStack)
        return {
            int(h): Unwound(
                tuple(st.ips[: min(st.len, MAX_USER_FRAMES)]),
                tuple(st.py[: min(st.py_len, MAX_PY_FRAMES)]),
                int(st.py_status),
                st.end == UNWIND_ENDS.index("bottom"),
            )
            for h, st in rows
        }

    def user_stack(self, tgid: int, uhash: int, unwound: dict[int, Unwound]) -> Frames:
        """One drained table-walk stack of a process, symbolized, root first (lost: absent)."""
        found = unwound.get(uhash)
        if found is None:
            return (LOST_USER,)
        return self._kept_user_stack(tgid, uhash, found)

    def _kept_user_stack(self, tgid: int, uhash: int, stack: Unwound) -> Frames:
        """:meth:`_user_stack`, remembered across windows (at most ``MAX_KEPT_STACKS``).

        A hit needs the same process snapshot and Python registration (serials: a
        new snapshot after an exec or a map change, or a new registration, misses)
        and the same stack: its BPF hash and, against a 64-bit collision across
        windows, Python's hash of its contents too.
        """
        python = self._python(tgid)
        serial = self._symbolizer.serial(tgid)
        token = (serial or 0, python[1].serial if python is not None else 0)
        key = (tgid, uhash)
        hit = self._kept.get(key)
        if serial is not None and hit is not None and hit[0] == token and hit[1] == hash(stack):
            self._kept.move_to_end(key)
            self._python_unmerged += hit[3]
            return hit[2]
        before = self._python_unmerged
        frames = self._user_stack(tgid, stack, python)
        if serial is not None:  # the token read before symbolizing: a change meanwhile misses
            self._kept[key] = (token, hash(stack), frames, self._python_unmerged > before)
            self._kept.move_to_end(key)
            while len(self._kept) > MAX_KEPT_STACKS:
                self._kept.popitem(last=False)
        return frames

    def _python(self, tgid: int) -> tuple[Interpreter, CodeResolver] | None:
        return self._registry.python.get(tgid) if self._registry and self._registry.python else None

    def _user_stack(
        self, tgid: int, stack: Unwound, python: tuple[Interpreter, CodeResolver] | None
    ) -> Frames:
        """Native frames symbolized, with the Python frames in place of the eval loop's."""
        frames = self._symbolizer.user_frames(tgid, stack.ips)
        if stack.py and python is not None:
            interpreter, resolver = python

            def resolve(entry: PyEntry) -> Frame | None:
                info = resolver.resolve(entry.code, entry.instr)
                if info is None:
                    return None
                return Frame(info.qualname, info.filename, FrameKind.PYTHON, 0, info.line)

            merged = merge_python(
                frames,
                stack.ips,
                (interpreter.eval_start, interpreter.eval_end),
                decode_entries(stack.py),
                stack.py_status,
                resolve,
                native_complete=stack.complete,
            )
            if merged is None:
                self._python_unmerged += 1
            elif not stack.complete:
                return tuple(reversed(merged))  # already cut where the native walk broke
            else:
                frames = merged
        return trim_user_stack(frames)

    def _read_stacks(
        self, idle: int, entries: list[tuple[CpuKey, int]]
    ) -> dict[int, tuple[int, ...]]:
        stack_map = self._require().map(f"stacks{idle}")
        ids = {k.user_stack_id for k, _ in entries} | {k.kernel_stack_id for k, _ in entries}
        stacks: dict[int, tuple[int, ...]] = {}
        trace = StackTrace()
        for stack_id in ids:
            if stack_id < 0:
                continue
            key = c_uint32(stack_id)
            if stack_map.lookup(key, trace):
                stacks[stack_id] = tuple(a for a in trace if a)
                stack_map.delete(key)
        # Ids whose counter update failed (map full) are unreferenced: sweep them.
        for stale in list(stack_map.keys(c_uint32)):
            stack_map.delete(stale)
        return stacks

    def _name(self, tgid: int, thread: str) -> str:
        if tgid == 0:
            return "swapper"
        return self._watcher.name(tgid, thread) if self._watcher else thread

    def bpf_object(self) -> BpfObject:
        """The loaded object (the off-CPU collector reads its own maps of it)."""
        return self._require()

    def touch(self, tgids: set[int]) -> None:
        """Keep these processes' registrations a while longer; drop those of the long gone."""
        if self._registry is not None:
            self._registry.touch(tgids)
            self._registry.prune()

    def symbolize(
        self,
        entries: Sequence[tuple[CpuKey, int]],
        stacks: dict[int, tuple[int, ...]],
        unwound: dict[int, Unwound],
        leaves: Sequence[tuple[Frame, ...]] = (),
        kernel_trim: Callable[[tuple[Frame, ...]], tuple[Frame, ...]] | None = None,
    ) -> list[Sample]:
        """Samples of (key, value) entries, equal stacks merged; ``leaves[i]`` goes on entry
        i's, and ``kernel_trim`` is applied to each kernel stack once (root first)."""
        kernel_cache: dict[int, tuple[Frame, ...]] = {}
        user_cache: dict[tuple[int, int], tuple[Frame, ...]] = {}
        merged: Counter[tuple[int, int, str, str, tuple[Frame, ...]]] = Counter()
        for i, (key, count) in enumerate(entries):
            thread = _decode(key.comm)
            comm = self._name(key.tgid, thread)
            user: tuple[Frame, ...] = ()
            uid = key.user_stack_id
            uhash = key.user_stack_hash
            if uhash:
                cache_key = (key.tgid, -uhash)
                if cache_key not in user_cache:
                    found = unwound.get(uhash)
                    if found is None:
                        user_cache[cache_key] = (LOST_USER,)
                    else:
                        user_cache[cache_key] = self._kept_user_stack(key.tgid, uhash, found)
                user = user_cache[cache_key]
            elif uid >= 0 and uid in stacks:
                cache_key = (key.tgid, uid)
                if cache_key not in user_cache:
                    frames = self._symbolizer.user_frames(key.tgid, stacks[uid])
                    user_cache[cache_key] = trim_user_stack(frames)
                user = user_cache[cache_key]
            elif uid != -EFAULT:
                user = (LOST_USER,)
            kernel: tuple[Frame, ...] = ()
            kid = key.kernel_stack_id
            if kid >= 0 and kid in stacks:
                if kid not in kernel_cache:
                    frames = self._symbolizer.kernel_frames(stacks[kid])
                    root_first = tuple(reversed(frames))
                    kernel_cache[kid] = kernel_trim(root_first) if kernel_trim else root_first
                kernel = kernel_cache[kid]
            elif kid != -EFAULT:
                kernel = (LOST_KERNEL,)
            leaf = leaves[i] if leaves else ()
            merged[(key.tgid, key.pid, comm, thread, user + kernel + leaf)] += int(count)
        return [
            Sample(stack=stack, value=value, pid=tgid, tid=tid, comm=comm, thread=thread)
            for (tgid, tid, comm, thread, stack), value in merged.items()
        ]
