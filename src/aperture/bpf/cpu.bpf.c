// SPDX-License-Identifier: GPL-2.0
/* CPU profiler: a perf_event CPU-clock program aggregating stacks in the kernel.
 *
 * Each sample bumps a counter keyed by (tgid, pid, user stack, kernel stack,
 * comm); nothing goes through user space per sample. Maps are double-buffered:
 * the agent flips `control[0]` to the other buffer, then drains the idle one
 * at leisure, so no sample races with the drain and no stack id is freed while
 * a live counter still points at it.
 */
#include <linux/bpf.h>
#include <linux/bpf_perf_event.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "kernel_types.h"
#include "aperture.h"
#include "common.bpf.h"
#include "procs.bpf.h"
#include "python.bpf.h"
#include "unwind.bpf.h"

char LICENSE[] SEC("license") = "GPL";

/* Written by the agent before load; the verifier prunes by its values. */
const volatile struct cpu_config config = {};

#define STACK_MAP(name)                                                        \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_STACK_TRACE);                        \
		__uint(max_entries, 16384);                                    \
		__uint(key_size, sizeof(__u32));                               \
		__uint(value_size, APERTURE_MAX_STACK_DEPTH * sizeof(__u64));  \
	} name SEC(".maps")

#define COUNTS_MAP(name)                                                       \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_HASH);                               \
		__uint(max_entries, 40960);                                    \
		__type(key, struct cpu_key);                                   \
		__type(value, __u64);                                          \
	} name SEC(".maps")

/* Table-unwound user stacks, interned by hash; NO_PREALLOC: memory only for
 * the stacks a window holds. */
#define USTACKS_MAP(name)                                                      \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_HASH);                               \
		__uint(map_flags, BPF_F_NO_PREALLOC);                          \
		__uint(max_entries, 16384);                                    \
		__type(key, __u64);                                            \
		__type(value, struct user_stack);                              \
	} name SEC(".maps")

STACK_MAP(stacks0);
STACK_MAP(stacks1);
COUNTS_MAP(counts0);
COUNTS_MAP(counts1);
USTACKS_MAP(ustacks0);
USTACKS_MAP(ustacks1);

/* control[0]: which buffer (0 or 1) the programs write to. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} control SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CPU_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

static __always_inline void count_stat(__u32 index)
{
	__u64 *value = bpf_map_lookup_elem(&stats, &index);

	if (value)
		*value += 1; /* per-CPU slot: no atomic needed */
}

/* EFAULT is the normal answer for a user stack of a kernel thread or a kernel
 * stack taken in user mode; EEXIST is a hash collision in the stack map. */
static __always_inline void count_stack_error(long id, __u32 collision, __u32 other)
{
	if (id == -17)
		count_stat(collision);
	else if (id < 0 && id != -14)
		count_stat(other);
}

/* A new stack with Python frames: the agent resolves them while the process lives. */
static __always_inline int announce_python_stack(__u32 tgid, struct user_stack *stack)
{
	struct py_stack_event *event = bpf_ringbuf_reserve(&proc_events, sizeof(*event), 0);

	if (!event)
		return 1;
	event->tgid = tgid;
	event->kind = PROC_EVENT_PYTHON_STACK;
	event->py_len = stack->py_len;
	event->reserved = 0;
	__builtin_memcpy(event->py, stack->py, sizeof(event->py));
	bpf_ringbuf_submit(event, 0);
	return 0;
}

/* Fill key's user stack by table walk. Returns 0 when the frame-pointer walk
 * should be used instead (auto mode, process not registered yet). */
static __always_inline int user_stack_by_table(struct bpf_perf_event_data *ctx,
					       struct cpu_key *key, void *ustacks)
{
	struct proc_mappings *maps = bpf_map_lookup_elem(&proc_mappings, &key->tgid);
	struct user_stack *stack, *seen;
	__u64 hash = 0;
	__u32 refresh = 0, wanted = 0;

	if (!maps) {
		count_stat(CPU_STAT_UNWIND_UNREGISTERED);
		if (config.unwind_mode == UNWIND_MODE_AUTO)
			return 0;
	}
	stack = unwind_user_stack(key->tgid, key->pid, config.unwind_mode, maps, &hash, &refresh,
				  &wanted);
	if (!stack) {
		key->user_stack_id = -14; /* EFAULT: no user stack, as the kernel says */
		return 1;
	}
	count_stat(CPU_STAT_UNWIND_END + (stack->end & 7));
	if (stack->py_status == PY_STATUS_OK)
		count_stat(CPU_STAT_PY_SAMPLES);
	else if (stack->py_status == PY_STATUS_NO_THREAD)
		count_stat(CPU_STAT_PY_NO_THREAD);
	else if (stack->py_status != PY_STATUS_NONE)
		count_stat(CPU_STAT_PY_INCOMPLETE);
	if (stack->fp_frames)
		count_stat(CPU_STAT_UNWIND_FP_FRAMES);
	if (wanted && want_table(wanted))
		count_stat(CPU_STAT_PROC_EVENT_DROPPED);
	if (refresh && maps) {
		__u64 now = bpf_ktime_get_ns();

		if (now - maps->refresh_requested_ns > REFRESH_INTERVAL_NS) {
			maps->refresh_requested_ns = now;
			if (announce_process(key->tgid, PROC_EVENT_MAPS_CHANGED))
				count_stat(CPU_STAT_PROC_EVENT_DROPPED);
		}
	}
	key->user_stack_id = -1;
	seen = bpf_map_lookup_elem(ustacks, &hash);
	if (seen) {
		if (!same_stack(seen, stack)) {
			count_stat(CPU_STAT_USTACK_COLLISION);
			key->user_stack_id = -17; /* EEXIST, as a stack-map collision */
			return 1;
		}
	} else if (bpf_map_update_elem(ustacks, &hash, stack, BPF_NOEXIST)) {
		if (!bpf_map_lookup_elem(ustacks, &hash)) {
			count_stat(CPU_STAT_USTACKS_FULL);
			key->user_stack_id = -28; /* ENOSPC */
			return 1;
		}
	} else if (stack->py_len && announce_python_stack(key->tgid, stack)) {
		count_stat(CPU_STAT_PROC_EVENT_DROPPED);
	}
	key->user_stack_hash = hash;
	return 1;
}

#include "offcpu.bpf.h"
#include "locks.bpf.h"

/* An exec replaces the image: its registered mappings are stale, and the new
 * image's (the executable, the dynamic loader) are read at once. */
SEC("tp/sched/sched_process_exec")
int forget_mappings(void *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;

	bpf_map_delete_elem(&proc_mappings, &tgid);
	bpf_map_delete_elem(&py_procs, &tgid);
	register_from_kernel(tgid);
	return 0;
}

/* The dynamic loader mapping libraries (and dlopen, JITs): re-read while the
 * mappings are ours, before the agent's registration takes over. */
static __always_inline int mappings_changed(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct proc_mappings *pm = bpf_map_lookup_elem(&proc_mappings, &tgid);

	if (pm && pm->source == MAPPINGS_FROM_KERNEL)
		register_from_kernel(tgid);
	return 0;
}

SEC("tp/syscalls/sys_exit_mmap")
int mapped(void *ctx)
{
	return mappings_changed();
}

SEC("tp/syscalls/sys_exit_mprotect")
int protected(void *ctx)
{
	return mappings_changed();
}

/* A new process: a pid used again is announced again (its announcement is kept
 * past the exit, when samples in the exit path may still come). */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(forked, struct task_struct *parent, struct task_struct *child)
{
	__u32 tgid = child->tgid;

	if (child->pid == child->tgid) {
		bpf_map_delete_elem(&procs, &tgid);
		/* an exited process's entry, kept for the agent, is stale for the pid's new one */
		bpf_map_delete_elem(&proc_mappings, &tgid);
		inherit_mappings(parent->tgid, tgid, child);
	}
	return 0;
}

/* The walker's entry of an announced process outlives it until the agent prunes it
 * (once a window): one announced as it exits is still adopted from it, so its
 * samples' frames are named. A process never announced (never sampled) has no
 * use for its entry: it goes now, or a host starting thousands of processes a
 * second would fill the map within a window. */
SEC("tp/sched/sched_process_exit")
int exited(void *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;
	struct proc_mappings *pm;

	if ((__u32)pid_tgid != tgid)
		return 0; /* a thread */
	pm = bpf_map_lookup_elem(&proc_mappings, &tgid);
	if (pm && pm->source == MAPPINGS_FROM_KERNEL && !bpf_map_lookup_elem(&procs, &tgid))
		bpf_map_delete_elem(&proc_mappings, &tgid);
	return 0;
}

SEC("perf_event")
int sample_cpu(struct bpf_perf_event_data *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;
	__u32 zero = 0;
	__u32 *active;
	struct cpu_key key = {};
	__u64 one = 1, *count;
	void *counts, *stacks, *ustacks;

	if (tgid == 0 && !config.include_idle) {
		count_stat(CPU_STAT_IDLE);
		return 0;
	}
	if (config.target_tgid && tgid != config.target_tgid) {
		count_stat(CPU_STAT_FILTERED);
		return 0;
	}
	count_stat(CPU_STAT_SAMPLES);

	key.tgid = tgid;
	key.pid = (__u32)pid_tgid;
	bpf_get_current_comm(&key.comm, sizeof(key.comm));

	active = bpf_map_lookup_elem(&control, &zero);
	if (active && *active) {
		stacks = &stacks1;
		ustacks = &ustacks1;
		counts = &counts1;
	} else {
		stacks = &stacks0;
		ustacks = &ustacks0;
		counts = &counts0;
	}
	key.kernel_stack_id = bpf_get_stackid(ctx, stacks, 0);
	/* the idle task has no user stack: kept off the table path (it also keeps the
	 * verifier from checking that path twice, with tgid 0 and without) */
	if (config.unwind_mode == UNWIND_MODE_FP || !tgid || !user_stack_by_table(ctx, &key, ustacks)) {
		key.user_stack_id = bpf_get_stackid(ctx, stacks, BPF_F_USER_STACK);
		count_stack_error(key.user_stack_id, CPU_STAT_USER_COLLISION,
				  CPU_STAT_USER_STACK_ERROR);
	}
	count_stack_error(key.kernel_stack_id, CPU_STAT_KERNEL_COLLISION,
			  CPU_STAT_KERNEL_STACK_ERROR);

	count = bpf_map_lookup_elem(counts, &key);
	if (count) {
		__sync_fetch_and_add(count, 1);
	} else if (bpf_map_update_elem(counts, &key, &one, BPF_NOEXIST)) {
		/* EEXIST: another CPU inserted the key first; anything else is full */
		count = bpf_map_lookup_elem(counts, &key);
		if (count)
			__sync_fetch_and_add(count, 1);
		else
			count_stat(CPU_STAT_COUNTS_FULL);
	}

	if (tgid && note_process(tgid))
		count_stat(CPU_STAT_PROC_EVENT_DROPPED);
	return 0;
}
