/* Off-CPU time by stack, in the CPU profiler's object (it shares the walker,
 * the process registry and the Python maps; struct offcpu_start in aperture.h
 * says how a block is followed).
 *
 * sched_switch runs in the thread going out: its stacks are taken there, with
 * the same unwinder as CPU samples (tables, Python frames), and kept in its
 * task-local storage as contents. When the thread is switched back in, the time
 * it was out goes under those stacks into the buffer live then; blocks shorter
 * than offcpu_min_ns are counted in the stats, not recorded. With 1-in-N
 * sampling the other blocks are recorded without stacks, so every block's time
 * is in the profile.
 */
#ifndef APERTURE_OFFCPU_BPF_H
#define APERTURE_OFFCPU_BPF_H

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct offcpu_start);
} offcpu_starts SEC(".maps");

#define OFFCPU_COUNTS(name)                                                    \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_HASH);                               \
		__uint(map_flags, BPF_F_NO_PREALLOC);                          \
		__uint(max_entries, 40960);                                    \
		__type(key, struct offcpu_key);                                \
		__type(value, __u64);                                          \
	} name SEC(".maps")

#define KSTACKS(name)                                                          \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_HASH);                               \
		__uint(map_flags, BPF_F_NO_PREALLOC);                          \
		__uint(max_entries, 16384);                                    \
		__type(key, __u64);                                            \
		__type(value, struct kernel_stack);                            \
	} name SEC(".maps")

OFFCPU_COUNTS(offcpu_counts0);
OFFCPU_COUNTS(offcpu_counts1);
KSTACKS(kstacks0);
KSTACKS(kstacks1);
USTACKS_MAP(oustacks0);
USTACKS_MAP(oustacks1);

/* offcpu_control[0]: which buffer the switch-ins write to (flipped by the agent). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} offcpu_control SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, OFFCPU_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} offcpu_stats SEC(".maps");

static __always_inline void offcpu_count(__u32 index, __u64 n)
{
	__u64 *value = bpf_map_lookup_elem(&offcpu_stats, &index);

	if (value)
		*value += n; /* per-CPU slot */
}

struct ips_hash {
	__u64 *ips;
	__u32 len;
	__u64 h;
};

static long hash_ip(__u64 i, void *data)
{
	struct ips_hash *c = data;

	if (i >= c->len || i >= APERTURE_MAX_USER_FRAMES)
		return 1;
	c->h = (c->h ^ c->ips[i]) * 0x9E3779B97F4A7C15ULL;
	c->h ^= c->h >> 29;
	return 0;
}

/* A stack's hash; never 0 (0 means "no stack" in the keys). */
static __always_inline __u64 hash_ips(__u64 *ips, __u32 len)
{
	struct ips_hash c = {ips, len, 0xCBF29CE484222325ULL ^ len};

	bpf_loop(APERTURE_MAX_USER_FRAMES, hash_ip, &c, 0);
	return c.h | 1;
}

static __always_inline __u32 offcpu_state(_Bool preempt, unsigned int state)
{
	if (preempt || !state)
		return OFFCPU_RUNNABLE;
	if ((state & 0x402) == 0x402) /* TASK_IDLE = TASK_UNINTERRUPTIBLE | TASK_NOLOAD */
		return OFFCPU_IDLE;
	if (state & 0x1)
		return OFFCPU_SLEEPING;
	if (state & 0x2)
		return OFFCPU_UNINTERRUPTIBLE;
	return OFFCPU_OTHER;
}

/* The user stack of the current task by frame pointers, as a table walk would
 * keep it (no Python frames: those need the table walk). */
static __always_inline void offcpu_fp_user_stack(void *ctx, struct offcpu_start *s)
{
	long n = bpf_get_stack(ctx, s->user.ips, sizeof(s->user.ips), BPF_F_USER_STACK);

	if (n <= 0) {
		s->key.task.user_stack_id = n ? n : -14;
		return;
	}
	s->user.len = n / sizeof(__u64);
	s->user.end = UNWIND_END_DEPTH; /* not known to reach the bottom */
	s->user.fp_frames = 0;
	s->user.py_len = 0;
	s->user.py_status = PY_STATUS_NONE;
	s->user_hash = hash_ips(s->user.ips, s->user.len);
	s->key.task.user_stack_id = -1;
}

/* The thread going out (the current task): its stacks and the time. */
static __always_inline void offcpu_switch_out(void *ctx, _Bool preempt, struct task_struct *prev,
					      unsigned int prev_state, __u64 now)
{
	__u32 tgid = prev->tgid, pid = prev->pid;
	struct offcpu_start *s;
	struct proc_mappings *maps;
	struct user_stack *stack;
	__u64 hash = 0;
	__u32 refresh = 0, wanted = 0;
	long n;

	if (!pid || (prev_state & 0x80)) /* the idle task; TASK_DEAD: never back */
		return;
	if ((config.target_tgid && tgid != config.target_tgid) || tgid == config.agent_tgid)
		return;
	s = bpf_task_storage_get(&offcpu_starts, prev, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!s) {
		offcpu_count(OFFCPU_STAT_NO_STORAGE, 1);
		return;
	}
	__builtin_memset(&s->key, 0, sizeof(s->key));
	s->user_hash = 0;
	s->kernel.len = 0;
	s->key.task.tgid = tgid;
	s->key.task.pid = pid;
	bpf_get_current_comm(&s->key.task.comm, sizeof(s->key.task.comm));
	s->key.state = offcpu_state(preempt, prev_state);
	if (config.offcpu_sample > 1 && bpf_get_prandom_u32() % config.offcpu_sample) {
		s->key.flags = OFFCPU_NOT_SAMPLED;
		s->ts = now;
		return;
	}
	n = bpf_get_stack(ctx, s->kernel.ips, sizeof(s->kernel.ips), 0);
	if (n > 0) {
		s->kernel.len = n / sizeof(__u64);
		s->key.task.kernel_stack_id = -1;
	} else {
		s->key.task.kernel_stack_id = n ? n : -14;
	}
	if (!prev->mm) {
		s->key.task.user_stack_id = -14; /* a kernel thread: no user stack */
	} else if (config.unwind_mode == UNWIND_MODE_FP) {
		offcpu_fp_user_stack(ctx, s);
	} else {
		maps = bpf_map_lookup_elem(&proc_mappings, &tgid);
		if (!maps && config.unwind_mode == UNWIND_MODE_AUTO) {
			offcpu_fp_user_stack(ctx, s);
		} else {
			stack = unwind_user_stack(tgid, pid, config.unwind_mode, maps, &hash, &refresh,
						  &wanted);
			if (stack && !bpf_probe_read_kernel(&s->user, sizeof(s->user), stack)) {
				s->user_hash = hash;
				s->key.task.user_stack_id = -1;
			} else {
				s->key.task.user_stack_id = -14;
			}
			if (wanted && want_table(wanted))
				count_stat(CPU_STAT_PROC_EVENT_DROPPED);
		}
	}
	if (note_process(tgid))
		count_stat(CPU_STAT_PROC_EVENT_DROPPED);
	s->ts = now;
}

/* The thread coming in: the time it was out, under the stacks it left with. */
static __always_inline void offcpu_switch_in(struct task_struct *next, __u64 now)
{
	struct offcpu_start *s = bpf_task_storage_get(&offcpu_starts, next, 0, 0);
	__u32 zero = 0, *active;
	void *counts, *kstacks, *ustacks;
	struct user_stack *seen;
	__u64 delta, h, *total;

	if (!s || !s->ts)
		return;
	delta = now - s->ts;
	s->ts = 0;
	offcpu_count(OFFCPU_STAT_BLOCKS, 1);
	if (delta < config.offcpu_min_ns) {
		offcpu_count(OFFCPU_STAT_SHORT, 1);
		offcpu_count(OFFCPU_STAT_SHORT_NS, delta);
		return;
	}
	active = bpf_map_lookup_elem(&offcpu_control, &zero);
	if (active && *active) {
		counts = &offcpu_counts1;
		kstacks = &kstacks1;
		ustacks = &oustacks1;
	} else {
		counts = &offcpu_counts0;
		kstacks = &kstacks0;
		ustacks = &oustacks0;
	}
	if (s->key.flags & OFFCPU_NOT_SAMPLED) {
		offcpu_count(OFFCPU_STAT_NOT_SAMPLED, 1);
	} else {
		if (s->kernel.len) {
			h = hash_ips(s->kernel.ips, s->kernel.len);
			if (bpf_map_update_elem(kstacks, &h, &s->kernel, BPF_NOEXIST) &&
			    !bpf_map_lookup_elem(kstacks, &h)) {
				offcpu_count(OFFCPU_STAT_STACKS_FULL, 1);
				s->key.task.kernel_stack_id = -28; /* ENOSPC */
			} else {
				s->key.kernel_stack_hash = h;
			}
		}
		if (s->user_hash) {
			h = s->user_hash;
			seen = bpf_map_lookup_elem(ustacks, &h);
			if (seen) {
				if (!same_stack(seen, &s->user)) {
					offcpu_count(OFFCPU_STAT_STACK_COLLISION, 1);
					s->key.task.user_stack_id = -17;
					h = 0;
				}
			} else if (bpf_map_update_elem(ustacks, &h, &s->user, BPF_NOEXIST)) {
				if (!bpf_map_lookup_elem(ustacks, &h)) {
					offcpu_count(OFFCPU_STAT_STACKS_FULL, 1);
					s->key.task.user_stack_id = -28;
					h = 0;
				}
			} else if (s->user.py_len && announce_python_stack(s->key.task.tgid, &s->user)) {
				count_stat(CPU_STAT_PROC_EVENT_DROPPED);
			}
			s->key.task.user_stack_hash = h;
		}
	}
	total = bpf_map_lookup_elem(counts, &s->key);
	if (total) {
		__sync_fetch_and_add(total, delta);
	} else if (bpf_map_update_elem(counts, &s->key, &delta, BPF_NOEXIST)) {
		total = bpf_map_lookup_elem(counts, &s->key);
		if (total) {
			__sync_fetch_and_add(total, delta);
		} else {
			offcpu_count(OFFCPU_STAT_COUNTS_FULL, 1);
			offcpu_count(OFFCPU_STAT_COUNTS_FULL_NS, delta);
		}
	}
}

SEC("tp_btf/sched_switch")
int BPF_PROG(offcpu_switch, _Bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	__u64 now = bpf_ktime_get_ns();

	offcpu_switch_in(next, now);
	offcpu_switch_out(ctx, preempt, prev, prev_state, now);
	return 0;
}

#endif
