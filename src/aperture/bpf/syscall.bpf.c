// SPDX-License-Identifier: GPL-2.0
/* Syscall latency: tp_btf sys_enter/sys_exit, start time in task-local storage.
 *
 * Per (tgid, syscall nr): count, errors, total/min/max ns and a log2 latency
 * histogram; errno counts in a separate map. Task storage dies with its task,
 * so threads that exit mid-syscall (exit, exit_group) leave nothing behind.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "kernel_types.h"
#include "aperture.h"
#include "common.bpf.h"

char LICENSE[] SEC("license") = "GPL";

const volatile struct syscall_config config = {};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct syscall_start);
} starts SEC(".maps");

/* NO_PREALLOC: memory only for the (process, syscall) pairs seen in a window,
 * so process churn (thousands of pids per window) fits under a high ceiling. */
#define SYSCALL_MAPS(n)                                                        \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_HASH);                               \
		__uint(map_flags, BPF_F_NO_PREALLOC);                          \
		__uint(max_entries, 262144);                                   \
		__type(key, struct syscall_key);                               \
		__type(value, struct syscall_stats);                           \
	} stats##n SEC(".maps");                                               \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_HASH);                               \
		__uint(map_flags, BPF_F_NO_PREALLOC);                          \
		__uint(max_entries, 65536);                                    \
		__type(key, struct syscall_errno_key);                         \
		__type(value, __u64);                                          \
	} errnos##n SEC(".maps")

SYSCALL_MAPS(0);
SYSCALL_MAPS(1);
CONTROL_MAP(control);
STATS_ARRAY(counters, SYS_STAT_MAX);

SEC("tp_btf/sys_enter")
int BPF_PROG(on_sys_enter, struct pt_regs *regs, long id)
{
	struct syscall_start *start;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;

	if ((config.target_tgid && tgid != config.target_tgid) || tgid == config.agent_tgid)
		return 0;
	start = bpf_task_storage_get(&starts, bpf_get_current_task_btf(), 0,
				     BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!start) {
		bump(&counters, SYS_STAT_STORAGE_FULL);
		return 0;
	}
	start->nr = id;
	start->start_ns = bpf_ktime_get_ns();
	return 0;
}

static __always_inline void record(void *stats_map, void *errno_map, __u32 tgid, __s64 nr,
				   __u64 delta, long ret)
{
	struct syscall_key key = { .tgid = tgid, .nr = (__u32)nr };
	struct syscall_stats *stats, fresh = { .min_ns = ~0ULL };

	stats = bpf_map_lookup_elem(stats_map, &key);
	if (!stats) {
		process_comm(&fresh.comm);
		/* EEXIST means another CPU created it: look it up again. */
		bpf_map_update_elem(stats_map, &key, &fresh, BPF_NOEXIST);
		stats = bpf_map_lookup_elem(stats_map, &key);
		if (!stats) {
			bump(&counters, SYS_STAT_STATS_FULL);
			return;
		}
	}
	__sync_fetch_and_add(&stats->count, 1);
	__sync_fetch_and_add(&stats->total_ns, delta);
	__sync_fetch_and_add(&stats->hist[log2_bucket(delta)], 1);
	atomic_max(&stats->max_ns, delta);
	atomic_min(&stats->min_ns, delta);
	if (ret < 0) {
		struct syscall_errno_key ekey = { .tgid = tgid, .nr = (__u32)nr, .err = -ret };
		__u64 one = 1, *n;

		__sync_fetch_and_add(&stats->errors, 1);
		n = bpf_map_lookup_elem(errno_map, &ekey);
		if (n)
			__sync_fetch_and_add(n, 1);
		else if (bpf_map_update_elem(errno_map, &ekey, &one, BPF_NOEXIST)) {
			n = bpf_map_lookup_elem(errno_map, &ekey);
			if (n)
				__sync_fetch_and_add(n, 1);
			else
				bump(&counters, SYS_STAT_ERRNO_FULL);
		}
	}
}

SEC("tp_btf/sys_exit")
int BPF_PROG(on_sys_exit, struct pt_regs *regs, long ret)
{
	struct syscall_start *start;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 now, delta;
	__s64 nr;

	if ((config.target_tgid && tgid != config.target_tgid) || tgid == config.agent_tgid)
		return 0;
	start = bpf_task_storage_get(&starts, bpf_get_current_task_btf(), 0, 0);
	if (!start || !start->start_ns) {
		bump(&counters, SYS_STAT_NO_START);
		return 0;
	}
	now = bpf_ktime_get_ns();
	delta = now - start->start_ns;
	nr = start->nr;
	start->start_ns = 0; /* an exit without a fresh enter is never counted twice */
	if (nr < 0)
		return 0;
	bump(&counters, SYS_STAT_EVENTS);
	if (active_buffer(&control))
		record(&stats1, &errnos1, tgid, nr, delta, ret);
	else
		record(&stats0, &errnos0, tgid, nr, delta, ret);
	return 0;
}
