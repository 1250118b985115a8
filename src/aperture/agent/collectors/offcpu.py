"""Off-CPU time by stack: where threads wait, from the CPU profiler's object (offcpu.bpf.h).

The program rides in the CPU profiler's object: it uses the same unwinder,
process registry and Python maps. Its records have their own buffers,
flipped here, so this collector drains on its own; with ``--mode offcpu``
alone it also starts the CPU object, with CPU sampling off.

Each record is a thread's time off CPU under the stacks it left with and the
task state it left in; the state is the leaf of the stack, a frame named
``[off-CPU: sleeping]`` and so on, so a flamegraph splits waits by kind.
"""

from __future__ import annotations

import ctypes
import time
from collections import Counter
from ctypes import c_uint32, c_uint64

from aperture.agent.collectors.bpfobj import DoubleBuffer, PerCpuCounters, check_layout
from aperture.agent.collectors.cpu import MAX_STACK_DEPTH, CpuCollector, CpuKey, UserStack
from aperture.errors import UserError
from aperture.model import EventType, Frame, FrameKind, Profile, Sample
from aperture.profile_types import value_unit


class OffCpuKey(ctypes.Structure):
    _fields_ = (
        ("task", CpuKey),
        ("kernel_stack_hash", c_uint64),
        ("state", c_uint32),
        ("flags", c_uint32),
    )


class KernelStack(ctypes.Structure):
    _fields_ = (
        ("len", c_uint32),
        ("reserved", c_uint32),
        ("ips", c_uint64 * MAX_STACK_DEPTH),
    )


NOT_SAMPLED = 1  # OffCpuKey.flags: the block's time without its stacks (1-in-N sampling)
EFAULT = 14

# enum offcpu_state, in order: the task state a thread left the CPU in
STATES = ("runnable", "sleeping", "uninterruptible", "idle", "other")
STATE_FRAMES = tuple(Frame(f"[off-CPU: {state}]", "[sched]", FrameKind.KERNEL) for state in STATES)
UNSAMPLED = Frame("[stack not sampled]", "[sched]", FrameKind.UNKNOWN)
# Our own probe at the top of each kernel stack (the tracepoint's BPF call): not the wait
PROBE_FRAMES = ("bpf_prog_", "bpf_trace_run", "__bpf_trace_", "__traceiter_")

# enum offcpu_stat, in order
STAT_NAMES = (
    "blocks",
    "short_blocks",
    "short_ns",
    "blocks_not_sampled",
    "counts_map_full",
    "counts_map_full_ns",
    "stacks_map_full",
    "stack_collisions",
    "no_task_storage",
)
LOSS_NAMES = STAT_NAMES[4:]


class OffCpuCollector:
    """Drains the off-CPU records of a CPU collector's object; one :meth:`drain` per window.

    ``owns_engine``: this collector starts and closes the CPU collector (``--mode
    offcpu`` without ``cpu``); otherwise the CPU collector is started first and
    closed by its own owner.
    """

    event_type = EventType.OFFCPU

    def __init__(self, engine: CpuCollector, *, owns_engine: bool) -> None:
        if engine.options.offcpu is None:
            raise ValueError("the CPU collector was made without off-CPU options")
        self.engine = engine
        self._owns = owns_engine
        self._buffers: DoubleBuffer | None = None
        self._counters: PerCpuCounters | None = None
        self._window_start_ns = 0

    def start(self) -> None:
        if self._owns:
            self.engine.start()
        obj = self.engine.bpf_object()
        check_layout(obj.map("offcpu_counts0"), OffCpuKey, c_uint64)
        check_layout(obj.map("kstacks0"), c_uint64, KernelStack)
        check_layout(obj.map("oustacks0"), c_uint64, UserStack)
        self._buffers = DoubleBuffer(obj.map("offcpu_control"))
        self._counters = PerCpuCounters(obj.map("offcpu_stats"), STAT_NAMES)
        self._window_start_ns = time.time_ns()

    def close(self) -> None:
        if self._owns:
            self.engine.close()
        self._buffers = None

    def sample_count(self) -> int:
        """Blocks recorded so far (cheap: for progress display)."""
        return self._counters.read()[0] if self._counters else 0

    def drain(self) -> Profile:
        if self._buffers is None or self._counters is None:
            raise UserError("the off-CPU collector is not running")
        obj = self.engine.bpf_object()
        end_ns = time.time_ns()
        idle = self._buffers.flip()
        profile = Profile(EventType.OFFCPU, value_unit(EventType.OFFCPU),
                          start_ns=self._window_start_ns, end_ns=end_ns)  # fmt: skip
        self._window_start_ns = end_ns
        entries = obj.map(f"offcpu_counts{idle}").drain(OffCpuKey, c_uint64)
        kernel = {
            int(h): tuple(a for a in st.ips[: min(st.len, MAX_STACK_DEPTH)] if a)
            for h, st in obj.map(f"kstacks{idle}").drain(c_uint64, KernelStack)
        }
        unwound = self.engine.read_unwound(f"oustacks{idle}")
        # Kernel stacks by hash become ids of a local table, as the CPU stack map's.
        ids: dict[int, int] = {}
        stacks: dict[int, tuple[int, ...]] = {}
        keys: list[tuple[CpuKey, int]] = []
        leaves: list[tuple[Frame, ...]] = []
        for key, value in entries:
            task = CpuKey.from_buffer_copy(key.task)
            state = STATE_FRAMES[min(key.state, len(STATES) - 1)]
            if key.flags & NOT_SAMPLED:
                task.user_stack_id = task.kernel_stack_id = -EFAULT  # none taken, none lost
                task.user_stack_hash = 0
                leaves.append((UNSAMPLED, state))
            else:
                leaves.append((state,))
                h = int(key.kernel_stack_hash)
                if h and h in kernel:
                    task.kernel_stack_id = ids.setdefault(h, len(ids))
                    stacks[task.kernel_stack_id] = kernel[h]
            keys.append((task, int(value)))
        samples = self.engine.symbolize(keys, stacks, unwound, leaves)
        merged: Counter[tuple[int, int, str, str, tuple[Frame, ...]]] = Counter()
        for s in samples:
            merged[(s.pid, s.tid, s.comm, s.thread, without_probe(s.stack))] += s.value
        profile.samples = [
            Sample(stack, value, pid=pid, tid=tid, comm=comm, thread=thread)
            for (pid, tid, comm, thread, stack), value in merged.items()
        ]
        self.engine.touch({k.tgid for k, _ in keys})
        delta = self._counters.deltas()
        profile.losses = {n: delta[n] for n in LOSS_NAMES}
        options = self.engine.options.offcpu
        assert options is not None  # checked at construction
        profile.labels = {
            "blocks": str(delta["blocks"]),
            "short_blocks": str(delta["short_blocks"]),
            "short_ns": str(delta["short_ns"]),
            "blocks_not_sampled": str(delta["blocks_not_sampled"]),
            "min_block_ns": str(options.min_block_ns),
            "sample_every": str(options.sample_every),
        }
        return profile


def without_probe(stack: tuple[Frame, ...]) -> tuple[Frame, ...]:
    """The stack without the probe's kernel frames between ``__schedule`` and the state leaf."""
    end = len(stack) - 1
    while (
        end > 0
        and stack[end - 1].kind is FrameKind.KERNEL
        and (stack[end - 1].name.startswith(PROBE_FRAMES))
    ):
        end -= 1
    return stack[:end] + stack[-1:]
