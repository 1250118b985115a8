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
from collections import Counter
from ctypes import c_uint32, c_uint64

from aperture.agent.collectors.cpu import MAX_STACK_DEPTH, CpuKey, UserStack
from aperture.agent.collectors.riders import EngineRider
from aperture.model import EventType, Frame, FrameKind, Profile, Sample


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


class OffCpuCollector(EngineRider):
    """Drains the off-CPU records of a CPU collector's object; one :meth:`drain` per window
    (``--mode offcpu`` without ``cpu`` owns the engine)."""

    event_type = EventType.OFFCPU
    option = "offcpu"
    control_map = "offcpu_control"
    counters_map = "offcpu_stats"
    stat_names = STAT_NAMES
    loss_names = LOSS_NAMES
    layouts = (
        ("offcpu_counts0", OffCpuKey, c_uint64),
        ("kstacks0", c_uint64, KernelStack),
        ("oustacks0", c_uint64, UserStack),
    )

    def drain(self) -> Profile:
        obj, idle, profile = self._next_window()
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
        delta = self._window_counters(profile)
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
