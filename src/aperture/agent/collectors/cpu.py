"""The CPU profiler: perf_event sampling aggregated in the kernel by cpu.bpf.c."""

from __future__ import annotations

import ctypes
import time
from collections import Counter
from ctypes import c_char, c_int32, c_uint32, c_uint64
from dataclasses import dataclass

from aperture.agent import perf_event
from aperture.agent.collectors.bpfobj import (
    DoubleBuffer,
    PerCpuCounters,
    check_layout,
    object_path,
)
from aperture.agent.collectors.processes import ProcessWatcher
from aperture.agent.collectors.unwind import trim_user_stack
from aperture.agent.libbpf import BpfError, BpfObject
from aperture.agent.symbols.symbolizer import Symbolizer
from aperture.agent.symbols.threadsafe import ThreadSafeSymbolizer
from aperture.errors import AgentError
from aperture.model import EventType, Frame, FrameKind, Profile, Sample

COMM_LEN = 16
MAX_STACK_DEPTH = 127
EFAULT = 14
EEXIST = 17


# ctypes mirrors of src/aperture/bpf/aperture.h
class CpuKey(ctypes.Structure):
    _fields_ = (
        ("tgid", c_uint32),
        ("pid", c_uint32),
        ("user_stack_id", c_int32),
        ("kernel_stack_id", c_int32),
        ("comm", c_char * COMM_LEN),
    )


class CpuConfig(ctypes.Structure):
    _fields_ = (("target_tgid", c_uint32), ("include_idle", c_uint32))


StackTrace = c_uint64 * MAX_STACK_DEPTH

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
)
# Counters that mean data was lost (the rest are informational).
LOSS_NAMES = STAT_NAMES[3:]

LOST_USER = Frame("[user stack lost]", "[unknown]", FrameKind.UNKNOWN)
LOST_KERNEL = Frame("[kernel stack lost]", "[unknown]", FrameKind.UNKNOWN)


@dataclass(frozen=True)
class CpuOptions:
    frequency_hz: int = 99
    pid: int = 0
    include_idle: bool = False
    stack_map_entries: int = 16384


def _decode(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode(errors="replace")


class CpuCollector:
    """Loads, attaches and drains the CPU profiler; one :meth:`drain` per window."""

    def __init__(self, options: CpuOptions, symbolizer: Symbolizer | ThreadSafeSymbolizer) -> None:
        self.options = options
        self._symbolizer = symbolizer
        self._obj: BpfObject | None = None
        self._watcher: ProcessWatcher | None = None
        self._stats_prev = [0] * len(STAT_NAMES)
        self._window_start_ns = 0

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        opts = self.options
        obj = BpfObject(object_path("cpu"))
        self._obj = obj
        try:
            config = CpuConfig.from_buffer(obj.map(".rodata").initial_value())
            config.target_tgid = opts.pid
            config.include_idle = int(opts.include_idle)
            for name in ("stacks0", "stacks1"):
                obj.map(name).set_max_entries(opts.stack_map_entries)
            obj.load()
            for name in ("counts0", "counts1"):
                check_layout(obj.map(name), CpuKey, c_uint64)
            self._stats = PerCpuCounters(obj.map("stats"), len(STAT_NAMES))
            self._buffers = DoubleBuffer(obj.map("control"))
            self._watcher = ProcessWatcher(obj, self._symbolizer)
            prog = obj.program("sample_cpu")
            for cpu in perf_event.online_cpus():
                fd = perf_event.open_cpu_clock(cpu, opts.frequency_hz)
                try:
                    obj.keep(prog.attach_perf_event(fd))
                except BpfError:
                    import os

                    os.close(fd)
                    raise
            obj.keep(obj.program("on_exec").attach())
        except BaseException:
            self.close()
            raise
        self._window_start_ns = time.time_ns()
        self._watcher.start()

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None
        if self._obj is not None:
            self._obj.close()
            self._obj = None

    # -- reading -----------------------------------------------------------
    def sample_count(self) -> int:
        """Samples recorded so far (cheap: for progress display)."""
        return self._stats.read()[0]

    def drain(self) -> Profile:
        """Swap buffers, read the idle one, and return its window as a profile."""
        obj = self._require()
        end_ns = time.time_ns()
        idle = self._buffers.flip()
        entries = obj.map(f"counts{idle}").drain(CpuKey, c_uint64)
        stacks = self._read_stacks(idle, entries)
        profile = Profile(
            event_type=EventType.CPU,
            unit="samples",
            start_ns=self._window_start_ns,
            end_ns=end_ns,
            frequency_hz=self.options.frequency_hz,
        )
        self._window_start_ns = end_ns
        profile.samples = self._symbolize(entries, stacks)
        stats = self._stats.read()
        delta = {n: stats[i] - self._stats_prev[i] for i, n in enumerate(STAT_NAMES)}
        self._stats_prev = stats
        profile.losses = {n: delta[n] for n in LOSS_NAMES}
        profile.labels = {
            "idle_samples": str(delta["idle"]),
            "filtered_samples": str(delta["filtered"]),
        }
        return profile

    def _require(self) -> BpfObject:
        if self._obj is None:
            raise AgentError("the CPU collector is not running")
        return self._obj

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

    def _symbolize(
        self, entries: list[tuple[CpuKey, int]], stacks: dict[int, tuple[int, ...]]
    ) -> list[Sample]:
        kernel_cache: dict[int, tuple[Frame, ...]] = {}
        user_cache: dict[tuple[int, int], tuple[Frame, ...]] = {}
        merged: Counter[tuple[int, int, str, str, tuple[Frame, ...]]] = Counter()
        for key, count in entries:
            thread = _decode(key.comm)
            comm = self._name(key.tgid, thread)
            user: tuple[Frame, ...] = ()
            uid = key.user_stack_id
            if uid >= 0 and uid in stacks:
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
                    kernel_cache[kid] = tuple(reversed(frames))
                kernel = kernel_cache[kid]
            elif kid != -EFAULT:
                kernel = (LOST_KERNEL,)
            merged[(key.tgid, key.pid, comm, thread, user + kernel)] += int(count)
        return [
            Sample(stack=stack, value=value, pid=tgid, tid=tid, comm=comm, thread=thread)
            for (tgid, tid, comm, thread, stack), value in merged.items()
        ]
