/* Helpers shared by the programs: counters, the histogram bucket, atomic max/min. */
#ifndef APERTURE_COMMON_BPF_H
#define APERTURE_COMMON_BPF_H

#define STATS_ARRAY(name, size)                                                \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);                       \
		__uint(max_entries, size);                                     \
		__type(key, __u32);                                            \
		__type(value, __u64);                                          \
	} name SEC(".maps")

/* control[0] is the buffer (0 or 1) programs write to; the agent flips it and
 * drains the other one, so no update ever races with a drain. */
#define CONTROL_MAP(name)                                                      \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_ARRAY);                              \
		__uint(max_entries, 1);                                        \
		__type(key, __u32);                                            \
		__type(value, __u32);                                          \
	} name SEC(".maps")

static __always_inline int active_buffer(void *control_map)
{
	__u32 zero = 0;
	__u32 *active = bpf_map_lookup_elem(control_map, &zero);

	return active && *active;
}

static __always_inline void bump(void *stats_map, __u32 index)
{
	__u64 *value = bpf_map_lookup_elem(stats_map, &index);

	if (value)
		*value += 1; /* per-CPU slot: no atomic needed */
}

/* floor(log2(v)) clamped to the histogram, branch-light for the verifier. */
static __always_inline __u32 log2_bucket(__u64 v)
{
	__u32 r = 0, shift;

	shift = (v > 0xFFFFFFFFULL) << 5; v >>= shift; r |= shift;
	shift = (v > 0xFFFF) << 4; v >>= shift; r |= shift;
	shift = (v > 0xFF) << 3; v >>= shift; r |= shift;
	shift = (v > 0xF) << 2; v >>= shift; r |= shift;
	shift = (v > 0x3) << 1; v >>= shift; r |= shift;
	r |= (v >> 1);
	return r < APERTURE_HIST_BUCKETS ? r : APERTURE_HIST_BUCKETS - 1;
}

/* A finer bucket: 4 per power of two (each at most 25% wide), so quantiles of
 * lock waits and holds are within 12.5%. Bucket 4k+s is
 * [2^k + s*2^(k-2), 2^k + (s+1)*2^(k-2)) for k >= 2; values below 4 go to the
 * first bucket of their power of two (0 or 4). */
static __always_inline __u32 fine_bucket(__u64 v)
{
	__u32 k = log2_bucket(v), r;

	if (k < 2)
		return k << 2;
	if (k >= APERTURE_HIST_BUCKETS - 1)
		return APERTURE_FINE_BUCKETS - 1;
	r = (k << 2) + (__u32)((v >> (k - 2)) & 3);
	return r < APERTURE_FINE_BUCKETS ? r : APERTURE_FINE_BUCKETS - 1;
}

/* The process (group leader) name of the current task. The array type matters:
 * BPF_CORE_READ_STR_INTO reads sizeof(*dst) bytes. */
static __always_inline void process_comm(char (*comm)[APERTURE_COMM_LEN])
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();

	BPF_CORE_READ_STR_INTO(comm, task, group_leader, comm);
}

static __always_inline void atomic_max(__u64 *slot, __u64 value)
{
	__u64 old = *slot;

	/* Bounded retries: a lost race only costs the max of one event. */
	for (int i = 0; i < 4 && value > old; i++) {
		__u64 seen = __sync_val_compare_and_swap(slot, old, value);
		if (seen == old)
			break;
		old = seen;
	}
}

static __always_inline void atomic_min(__u64 *slot, __u64 value)
{
	__u64 old = *slot;

	for (int i = 0; i < 4 && value < old; i++) {
		__u64 seen = __sync_val_compare_and_swap(slot, old, value);
		if (seen == old)
			break;
		old = seen;
	}
}

#endif
