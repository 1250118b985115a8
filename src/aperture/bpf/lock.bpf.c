// SPDX-License-Identifier: GPL-2.0
/* Lock contention: time threads spend waiting in futex wait operations.
 *
 * sys_enter_futex records (start, lock address, user stack) for the waiting
 * operations; sys_exit_futex adds the wait to (tgid, lock address, stack).
 * This measures WAIT time only: hold time is not derived.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "kernel_types.h"
#include "aperture.h"
#include "common.bpf.h"
#include "procs.bpf.h"

char LICENSE[] SEC("license") = "GPL";

#define FUTEX_WAIT 0
#define FUTEX_LOCK_PI 6
#define FUTEX_WAIT_BITSET 9
#define FUTEX_WAIT_REQUEUE_PI 11
#define FUTEX_LOCK_PI2 13
#define FUTEX_PRIVATE_FLAG 128
#define FUTEX_CLOCK_REALTIME 256
#define EAGAIN 11
#define ETIMEDOUT 110

const volatile struct lock_config config = {};

/* Layouts from /sys/kernel/tracing/events/syscalls/sys_{enter,exit}_futex*\/format:
 * the syscall arguments start at offset 16, each in an 8-byte slot. */
struct futex_enter_args {
	__u64 common;
	__s32 syscall_nr;
	__u32 pad;
	__u64 uaddr;
	__u64 op;
	__u64 val;
	__u64 utime;
	__u64 uaddr2;
	__u64 val3;
};

struct futex_waitv_enter_args {
	__u64 common;
	__s32 syscall_nr;
	__u32 pad;
	__u64 waiters;
	__u64 nr_futexes;
	__u64 flags;
	__u64 timeout;
	__u64 clockid;
};

struct futex_waitv_entry { /* struct futex_waitv of the uapi */
	__u64 val;
	__u64 uaddr;
	__u32 flags;
	__u32 reserved;
};

struct sys_exit_args {
	__u64 common;
	__s32 syscall_nr;
	__u32 pad;
	__s64 ret;
};

/* tid -> wait in progress; LRU so threads that exit mid-wait age out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct lock_start);
} starts SEC(".maps");

/* NO_PREALLOC: memory only for entries in use, so the ceiling can be high. */
#define LOCK_MAPS(n)                                                           \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_HASH);                               \
		__uint(map_flags, BPF_F_NO_PREALLOC);                          \
		__uint(max_entries, 65536);                                    \
		__type(key, struct lock_key);                                  \
		__type(value, struct lock_stats);                              \
	} stats##n SEC(".maps");                                               \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_STACK_TRACE);                        \
		__uint(max_entries, 16384);                                    \
		__uint(key_size, sizeof(__u32));                               \
		__uint(value_size, APERTURE_MAX_STACK_DEPTH * sizeof(__u64));  \
	} stacks##n SEC(".maps")

LOCK_MAPS(0);
LOCK_MAPS(1);
CONTROL_MAP(control);
STATS_ARRAY(counters, LOCK_STAT_MAX);

static __always_inline int is_wait_op(__u32 op)
{
	__u32 cmd = op & ~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);

	return cmd == FUTEX_WAIT || cmd == FUTEX_WAIT_BITSET || cmd == FUTEX_LOCK_PI ||
	       cmd == FUTEX_LOCK_PI2 || cmd == FUTEX_WAIT_REQUEUE_PI;
}

static __always_inline int begin_wait(__u64 uaddr, __u32 op)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32, tid = (__u32)pid_tgid;
	struct lock_start start = { .uaddr = uaddr, .op = op };

	if (config.target_tgid && tgid != config.target_tgid)
		return 0;
	if (note_process(tgid))
		bump(&counters, LOCK_STAT_PROC_EVENT_DROPPED);
	start.start_ns = bpf_ktime_get_ns();
	if (bpf_map_update_elem(&starts, &tid, &start, BPF_ANY))
		bump(&counters, LOCK_STAT_STARTS_FULL);
	return 0;
}

SEC("tp/syscalls/sys_enter_futex")
int on_futex_enter(struct futex_enter_args *args)
{
	if (!is_wait_op((__u32)args->op))
		return 0;
	return begin_wait(args->uaddr, (__u32)args->op);
}

SEC("tp/syscalls/sys_enter_futex_waitv")
int on_futex_waitv_enter(struct futex_waitv_enter_args *args)
{
	struct futex_waitv_entry first = {};

	/* A vectored wait is attributed to its first futex. */
	if (bpf_probe_read_user(&first, sizeof(first), (void *)args->waiters))
		return 0;
	return begin_wait(first.uaddr, FUTEX_WAIT);
}

static __always_inline void record(void *stats_map, struct lock_key *key, __u64 delta, long ret)
{
	struct lock_stats *stats, fresh = {};

	stats = bpf_map_lookup_elem(stats_map, key);
	if (!stats) {
		process_comm(&fresh.comm);
		bpf_map_update_elem(stats_map, key, &fresh, BPF_NOEXIST);
		stats = bpf_map_lookup_elem(stats_map, key);
		if (!stats) {
			bump(&counters, LOCK_STAT_STATS_FULL);
			return;
		}
	}
	if (ret == 0) {
		__sync_fetch_and_add(&stats->contentions, 1);
		__sync_fetch_and_add(&stats->wait_ns, delta);
		__sync_fetch_and_add(&stats->hist[log2_bucket(delta)], 1);
		atomic_max(&stats->max_ns, delta);
	} else if (ret == -EAGAIN) {
		__sync_fetch_and_add(&stats->eagain, 1);
	} else if (ret == -ETIMEDOUT) {
		__sync_fetch_and_add(&stats->timeouts, 1);
		__sync_fetch_and_add(&stats->timeout_ns, delta);
	} else {
		__sync_fetch_and_add(&stats->interrupted, 1);
	}
}

static __always_inline int end_wait(void *ctx, long ret)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32, tid = (__u32)pid_tgid;
	struct lock_start *start;
	struct lock_key key = {};
	__u64 delta;

	if (config.target_tgid && tgid != config.target_tgid)
		return 0;
	start = bpf_map_lookup_elem(&starts, &tid);
	if (!start) {
		bump(&counters, LOCK_STAT_NO_START);
		return 0;
	}
	delta = bpf_ktime_get_ns() - start->start_ns;
	key.tgid = tgid;
	key.uaddr = start->uaddr;
	bpf_map_delete_elem(&starts, &tid);
	bump(&counters, LOCK_STAT_WAITS);
	/* The user stack is the same as at enter (the thread has not returned to
	 * user space); taking it now puts stack and counter in one buffer even
	 * when a buffer flip happened during a long wait. */
	if (active_buffer(&control)) {
		key.user_stack_id = bpf_get_stackid(ctx, &stacks1, BPF_F_USER_STACK);
		record(&stats1, &key, delta, ret);
	} else {
		key.user_stack_id = bpf_get_stackid(ctx, &stacks0, BPF_F_USER_STACK);
		record(&stats0, &key, delta, ret);
	}
	if (key.user_stack_id == -17)
		bump(&counters, LOCK_STAT_STACK_COLLISION);
	return 0;
}

SEC("tp/syscalls/sys_exit_futex")
int on_futex_exit(struct sys_exit_args *args)
{
	return end_wait(args, args->ret);
}

SEC("tp/syscalls/sys_exit_futex_waitv")
int on_futex_waitv_exit(struct sys_exit_args *args)
{
	return end_wait(args, args->ret);
}
