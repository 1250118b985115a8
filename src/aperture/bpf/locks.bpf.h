/* Lock contention, holds and wakes from futex calls, in the CPU profiler's
 * object (it shares the table walker, the process registry and the Python
 * maps, so waiter, holder and waker stacks are whole stacks with Python frames).
 *
 * A wait (FUTEX_WAIT, _BITSET, LOCK_PI, futex_waitv) is measured from
 * sys_enter_futex to sys_exit_futex and keyed by its lock word, the waiter's
 * stack and the stack of the wake that ended it. A wake (FUTEX_WAKE, _BITSET,
 * _OP, REQUEUE, UNLOCK_PI) on a word with waiters is a release: its stack is
 * the holder's at release, and, when the holder's acquisition was seen, the
 * time it held the lock.
 *
 * Who holds a lock word (struct lock_state), with no probe on the lock calls:
 * - a thread that comes back from a wait (ret 0) takes the lock next when the
 *   word was waited on as 2 (the "locked, waiters" protocol of glibc's
 *   mutexes, Rust's and Go's: its release is then always a wake) or while
 *   others still wait (the lock stays contended: its release wakes them); it
 *   is the candidate, from the time it came back;
 * - a candidate that waits again did not get it;
 * - a wake that woke someone leaves the word free from its start: a thread
 *   that then releases without having waited took it in between (it barged
 *   in before the woken thread ran; the woken one waits again);
 * - a wake that woke nobody leaves the next acquisition unseen.
 * A release by the candidate, or by a barging thread after a wake, is timed;
 * any other is counted as untimed. Only lock words with waiters pay for this.
 *
 * Stacks: every wait and release is counted; the stacks are taken for 1 in
 * lock_sample of them, for waits and holds of lock_min_ns or more, and for the
 * first of each lock word every second, so each lock has stacks to classify it.
 */
#ifndef APERTURE_LOCKS_BPF_H
#define APERTURE_LOCKS_BPF_H

#define FUTEX_WAIT 0
#define FUTEX_WAKE 1
#define FUTEX_REQUEUE 3
#define FUTEX_CMP_REQUEUE 4
#define FUTEX_WAKE_OP 5
#define FUTEX_LOCK_PI 6
#define FUTEX_UNLOCK_PI 7
#define FUTEX_WAIT_BITSET 9
#define FUTEX_WAKE_BITSET 10
#define FUTEX_WAIT_REQUEUE_PI 11
#define FUTEX_CMP_REQUEUE_PI 12
#define FUTEX_LOCK_PI2 13
#define FUTEX_CMD_MASK 127
#define EAGAIN 11
#define ETIMEDOUT 110
#define LOCK_STACK_EVERY_NS 1000000000ULL
#define LOCK_TASK_BUF1 0x40000

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

struct futex_exit_args {
	__u64 common;
	__s32 syscall_nr;
	__u32 pad;
	__s64 ret;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct lock_task);
} lock_tasks SEC(".maps");

/* Preallocated (LRU): 16384 x ~150 bytes. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct lock_state_key);
	__type(value, struct lock_state);
} lock_states SEC(".maps");

/* NO_PREALLOC: memory (1.4 KB an entry) only for the entries a window holds. */
#define LOCK_WAITS(name)                                                       \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_HASH);                               \
		__uint(map_flags, BPF_F_NO_PREALLOC);                          \
		__uint(max_entries, 16384);                                    \
		__type(key, struct lock_wait_key);                             \
		__type(value, struct lock_stats);                              \
	} name SEC(".maps")

#define LOCK_HOLDS(name)                                                       \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_HASH);                               \
		__uint(map_flags, BPF_F_NO_PREALLOC);                          \
		__uint(max_entries, 8192);                                     \
		__type(key, struct lock_hold_key);                             \
		__type(value, struct lock_hold_stats);                         \
	} name SEC(".maps")

LOCK_WAITS(lock_waits0);
LOCK_WAITS(lock_waits1);
LOCK_HOLDS(lock_holds0);
LOCK_HOLDS(lock_holds1);
USTACKS_MAP(lustacks0);
USTACKS_MAP(lustacks1);

/* lock_control[0]: which buffer lock events write to (flipped by the agent). */
CONTROL_MAP(lock_control);

/* A zeroed value to create entries from (too big for the BPF stack); never written. */
union lock_fresh {
	struct lock_stats wait;
	struct lock_hold_stats hold;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, union lock_fresh);
} lock_zero SEC(".maps");

STATS_ARRAY(lock_counters, LOCK_STAT_MAX);

static __always_inline __u32 lock_active(void)
{
	return active_buffer(&lock_control);
}

static __always_inline void *lock_ustacks(__u32 buf)
{
	return buf ? (void *)&lustacks1 : (void *)&lustacks0;
}

/* Take a stack for this event? Updates *last when it does. */
static __always_inline int lock_want_stack(__u64 *last, __u64 now, __u64 length)
{
	if (length >= config.lock_min_ns || now - *last >= LOCK_STACK_EVERY_NS ||
	    config.lock_sample <= 1 || bpf_get_prandom_u32() % config.lock_sample == 0) {
		*last = now;
		return 1;
	}
	return 0;
}

/* The current thread's user stack, interned in ustacks: 0 and its hash, or -errno. */
static __always_inline __s32 lock_stack(void *ctx, __u32 tgid, __u32 tid, void *ustacks,
					__u64 *out)
{
	struct proc_mappings *maps = NULL;
	struct user_stack *stack, *seen;
	__u32 zero = 0, refresh = 0, wanted = 0;
	long n;

	*out = 0;
	if (note_process(tgid))
		count_stat(CPU_STAT_PROC_EVENT_DROPPED);
	if (config.unwind_mode != UNWIND_MODE_FP)
		maps = bpf_map_lookup_elem(&proc_mappings, &tgid);
	if (config.unwind_mode == UNWIND_MODE_FP ||
	    (!maps && config.unwind_mode == UNWIND_MODE_AUTO)) {
		stack = bpf_map_lookup_elem(&unwind_scratch, &zero);
		if (!stack)
			return -14;
		n = bpf_get_stack(ctx, stack->ips, sizeof(stack->ips), BPF_F_USER_STACK);
		if (n <= 0)
			return n ? (__s32)n : -14;
		stack->len = n / sizeof(__u64);
		stack->end = UNWIND_END_DEPTH; /* not known to reach the bottom */
		stack->fp_frames = 0;
		stack->py_len = 0;
		stack->py_status = PY_STATUS_NONE;
		stack->reserved = 0;
		*out = hash_ips(stack->ips, stack->len);
	} else {
		stack = unwind_user_stack(tgid, tid, config.unwind_mode, maps, out, &refresh,
					  &wanted);
		if (wanted && want_table(wanted))
			count_stat(CPU_STAT_PROC_EVENT_DROPPED);
	}
	if (!stack) {
		*out = 0;
		return -14;
	}
	seen = bpf_map_lookup_elem(ustacks, out);
	if (seen) {
		if (!same_stack(seen, stack)) {
			bump(&lock_counters, LOCK_STAT_STACK_COLLISION);
			*out = 0;
			return -17;
		}
	} else if (bpf_map_update_elem(ustacks, out, stack, BPF_NOEXIST)) {
		if (!bpf_map_lookup_elem(ustacks, out)) {
			bump(&lock_counters, LOCK_STAT_STACKS_FULL);
			*out = 0;
			return -28;
		}
	} else if (stack->py_len && announce_python_stack(tgid, stack)) {
		count_stat(CPU_STAT_PROC_EVENT_DROPPED);
	}
	return 0;
}

static __always_inline int lock_is_wait(__u32 cmd)
{
	return cmd == FUTEX_WAIT || cmd == FUTEX_WAIT_BITSET || cmd == FUTEX_LOCK_PI ||
	       cmd == FUTEX_LOCK_PI2 || cmd == FUTEX_WAIT_REQUEUE_PI;
}

static __always_inline int lock_is_wake(__u32 cmd)
{
	return cmd == FUTEX_WAKE || cmd == FUTEX_WAKE_BITSET || cmd == FUTEX_WAKE_OP ||
	       cmd == FUTEX_REQUEUE || cmd == FUTEX_CMP_REQUEUE || cmd == FUTEX_UNLOCK_PI ||
	       cmd == FUTEX_CMP_REQUEUE_PI;
}

static __always_inline __u32 lock_op(__u32 cmd)
{
	if (cmd == FUTEX_WAIT)
		return LOCK_OP_WAIT;
	if (cmd == FUTEX_WAIT_BITSET)
		return LOCK_OP_WAIT_BITSET;
	if (cmd == FUTEX_WAIT_REQUEUE_PI)
		return LOCK_OP_WAIT_REQUEUE_PI;
	return LOCK_OP_LOCK_PI;
}

static __always_inline int lock_wait_begin(__u32 tgid, __u32 tid, __u64 uaddr, __u32 flags)
{
	struct lock_state *st, fresh = {};
	struct lock_task *t;

	t = bpf_task_storage_get(&lock_tasks, bpf_get_current_task_btf(), 0,
				 BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!t) {
		bump(&lock_counters, LOCK_STAT_NO_STORAGE);
		return 0;
	}
	t->ts = bpf_ktime_get_ns();
	t->lock.tgid = tgid;
	t->lock.reserved = 0;
	t->lock.uaddr = uaddr;
	t->flags = flags;
	st = bpf_map_lookup_elem(&lock_states, &t->lock);
	if (!st) {
		bpf_map_update_elem(&lock_states, &t->lock, &fresh, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&lock_states, &t->lock);
		if (!st)
			return 0;
	}
	__sync_fetch_and_add(&st->waiter_count, 1);
	if (st->cand_tid == tid)
		st->cand_tid = 0; /* it waits again: it did not get the lock */
	return 0;
}

/* Add a finished wait (key, time, result in t) to its buffer's waits map. */
static __noinline void lock_record_wait(struct lock_task *t)
{
	void *waits = t->buf ? (void *)&lock_waits1 : (void *)&lock_waits0;
	struct lock_wait_key *key = &t->key.wait;
	struct lock_stats *stats;
	union lock_fresh *fresh;
	__u64 delta = t->hold_ns;
	__u32 zero = 0;
	long ret = t->ret;

	stats = bpf_map_lookup_elem(waits, key);
	if (!stats) {
		fresh = bpf_map_lookup_elem(&lock_zero, &zero);
		if (!fresh)
			return;
		if (!bpf_map_update_elem(waits, key, &fresh->wait, BPF_NOEXIST)) {
			stats = bpf_map_lookup_elem(waits, key);
			if (stats)
				process_comm(&stats->comm);
		}
		stats = bpf_map_lookup_elem(waits, key);
		if (!stats) {
			bump(&lock_counters, LOCK_STAT_STATS_FULL);
			return;
		}
	}
	if (ret == 0) {
		__sync_fetch_and_add(&stats->contentions, 1);
		__sync_fetch_and_add(&stats->wait_ns, delta);
		__sync_fetch_and_add(&stats->hist[fine_bucket(delta)], 1);
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

/* The wake that ended a wait, and who holds the lock next (lock_state's rules). */
static __noinline int lock_wait_follow(struct lock_task *t, struct lock_state *st, __u32 tid,
				       __u64 now)
{
	struct lock_wait_key *key = &t->key.wait;
	struct user_stack *stack;
	__u64 start = t->ts;

	if (st->waiter_count > 0)
		__sync_fetch_and_add(&st->waiter_count, -1);
	if (t->ret != 0)
		return 0;
	if (st->wake_ts >= start && st->wake_ts <= now) { /* the wake that ended it */
		key->waker_hash = st->waker_hash;
		key->waker_err = st->waker_err;
		if (key->waker_hash && st->waker_buf != t->buf) { /* a flip in between */
			stack = bpf_map_lookup_elem(lock_ustacks(st->waker_buf), &key->waker_hash);
			if (!stack ||
			    (bpf_map_update_elem(lock_ustacks(t->buf), &key->waker_hash, stack,
						 BPF_NOEXIST) &&
			     !bpf_map_lookup_elem(lock_ustacks(t->buf), &key->waker_hash))) {
				key->waker_hash = 0;
				key->waker_err = -28;
			}
		}
	}
	if ((t->flags & LOCK_FLAG_VAL2) || st->waiter_count > 0) {
		st->cand_tid = tid;
		st->cand_ts = now;
	} else {
		st->cand_tid = 0;
		st->free_since = 0; /* its release may be silent: the next hold is unseen */
	}
	return 0;
}

static __always_inline void lock_wait_end(void *ctx, __u32 tgid, __u32 tid, struct lock_task *t,
					  long ret, __u64 now)
{
	struct lock_wait_key *key = &t->key.wait;
	struct lock_state *st;
	int want;

	bump(&lock_counters, LOCK_STAT_WAITS);
	t->hold_ns = now - t->ts;
	t->ret = ret;
	t->buf = lock_active();
	__builtin_memset(key, 0, sizeof(*key));
	key->tgid = tgid;
	key->flags = t->flags;
	key->uaddr = t->lock.uaddr;
	key->waker_err = LOCK_STACK_NONE;
	st = bpf_map_lookup_elem(&lock_states, &t->lock);
	if (st) {
		lock_wait_follow(t, st, tid, now);
		want = ret != -EAGAIN && lock_want_stack(&st->wait_stack_ts, now, t->hold_ns);
	} else {
		want = ret != -EAGAIN;
	}
	t->ts = 0;
	if (want) {
		key->waiter_err = lock_stack(ctx, tgid, tid, lock_ustacks(t->buf), &key->waiter_hash);
	} else {
		key->waiter_err = LOCK_STACK_NOT_SAMPLED;
	}
	lock_record_wait(t);
}

static __always_inline int lock_wake_begin(void *ctx, __u32 tgid, __u32 tid, __u64 uaddr,
					   __u32 cmd)
{
	struct lock_state *st;
	struct lock_task *t;
	__u64 now, hold = 0;
	__u32 active, timed = 0;

	t = bpf_task_storage_get(&lock_tasks, bpf_get_current_task_btf(), 0,
				 BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!t) {
		bump(&lock_counters, LOCK_STAT_NO_STORAGE);
		return 0;
	}
	t->ts = 0;
	t->lock.tgid = tgid;
	t->lock.reserved = 0;
	t->lock.uaddr = uaddr;
	st = bpf_map_lookup_elem(&lock_states, &t->lock);
	if (!st)
		return 0; /* nobody ever waited on it under our watch */
	now = bpf_ktime_get_ns();
	active = lock_active();
	if (st->cand_tid == tid) {
		hold = now - st->cand_ts;
		timed = 1;
	} else if (!st->cand_tid && st->free_since) {
		hold = now - st->free_since;
		timed = 1;
	}
	t->ts = now;
	t->hold_ns = hold;
	t->flags = LOCK_TASK_WAKE | (timed ? LOCK_TASK_TIMED : 0) | (active ? LOCK_TASK_BUF1 : 0) |
		   cmd;
	/* A release after a long quiet spell on the word ends long waits: its stack is wanted
	 * as a long hold's is, whether or not the hold is timed. */
	if (lock_want_stack(&st->wake_stack_ts, now,
			    st->wake_ts && now - st->wake_ts > hold ? now - st->wake_ts : hold)) {
		t->holder_err = lock_stack(ctx, tgid, tid, lock_ustacks(active), &t->holder_hash);
	} else {
		t->holder_hash = 0;
		t->holder_err = LOCK_STACK_NOT_SAMPLED;
	}
	st->wake_ts = now;
	st->waker_hash = t->holder_hash;
	st->waker_err = t->holder_err;
	st->waker_buf = active;
	st->cand_tid = 0;
	st->free_since = now;
	return 0;
}

static __noinline void lock_wake_end(__u32 tgid, struct lock_task *t, long ret)
{
	struct lock_hold_key *key = &t->key.hold;
	struct lock_hold_stats *stats;
	union lock_fresh *fresh;
	__u32 zero = 0;
	struct lock_state *st;
	void *holds = (t->flags & LOCK_TASK_BUF1) ? (void *)&lock_holds1 : (void *)&lock_holds0;
	long woken = ret;

	if ((t->flags & FUTEX_CMD_MASK) == FUTEX_UNLOCK_PI)
		woken = ret == 0; /* the kernel is asked only when the word has waiters */
	if (woken <= 0) {
		st = bpf_map_lookup_elem(&lock_states, &t->lock);
		if (st && st->free_since == t->ts)
			st->free_since = 0; /* released with nobody woken: next hold unseen */
		t->ts = 0;
		return;
	}
	t->ts = 0;
	key->tgid = tgid;
	key->holder_err = t->holder_err;
	key->uaddr = t->lock.uaddr;
	key->holder_hash = t->holder_hash;
	stats = bpf_map_lookup_elem(holds, key);
	if (!stats) {
		fresh = bpf_map_lookup_elem(&lock_zero, &zero);
		if (!fresh)
			return;
		if (!bpf_map_update_elem(holds, key, &fresh->hold, BPF_NOEXIST)) {
			stats = bpf_map_lookup_elem(holds, key);
			if (stats)
				process_comm(&stats->comm);
		}
		stats = bpf_map_lookup_elem(holds, key);
		if (!stats) {
			bump(&lock_counters, LOCK_STAT_HOLDS_FULL);
			return;
		}
	}
	__sync_fetch_and_add(&stats->releases, 1);
	__sync_fetch_and_add(&stats->woken, woken);
	if (t->flags & LOCK_TASK_TIMED) {
		__sync_fetch_and_add(&stats->timed, 1);
		__sync_fetch_and_add(&stats->hold_ns, t->hold_ns);
		__sync_fetch_and_add(&stats->hist[fine_bucket(t->hold_ns)], 1);
		atomic_max(&stats->max_ns, t->hold_ns);
	}
}

static __always_inline int lock_target(__u32 tgid)
{
	return !config.target_tgid || tgid == config.target_tgid;
}

/* The agent's own waits and wakes are not recorded: its threads wait on each other
 * (for the GIL) while it reads the others' data, and recording that made more to
 * read. A call of its own, first thing: nothing is live across it (a check among the
 * programs' locals took stack they have no room for). */
static __noinline int lock_own(void)
{
	return (__u32)(bpf_get_current_pid_tgid() >> 32) == config.agent_tgid;
}

SEC("tp/syscalls/sys_enter_futex")
int lock_futex_enter(struct futex_enter_args *args)
{
	if (lock_own())
		return 0;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32, tid = (__u32)pid_tgid;
	__u32 cmd = (__u32)args->op & FUTEX_CMD_MASK;

	if (!lock_target(tgid))
		return 0;
	if (lock_is_wait(cmd))
		return lock_wait_begin(tgid, tid, args->uaddr,
				       lock_op(cmd) | ((__u32)args->val == 2 ? LOCK_FLAG_VAL2 : 0));
	if (lock_is_wake(cmd))
		return lock_wake_begin(args, tgid, tid, args->uaddr, cmd);
	return 0;
}

SEC("tp/syscalls/sys_enter_futex_waitv")
int lock_futex_waitv_enter(struct futex_waitv_enter_args *args)
{
	if (lock_own())
		return 0;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct futex_waitv_entry first = {};

	if (!lock_target(pid_tgid >> 32))
		return 0;
	/* A vectored wait is attributed to its first futex. */
	if (bpf_probe_read_user(&first, sizeof(first), (void *)args->waiters))
		return 0;
	return lock_wait_begin(pid_tgid >> 32, (__u32)pid_tgid, first.uaddr,
			       LOCK_OP_WAITV | (first.val == 2 ? LOCK_FLAG_VAL2 : 0));
}

static __always_inline int lock_exit(void *ctx, long ret)
{
	if (lock_own())
		return 0;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;
	struct lock_task *t;

	if (!lock_target(tgid))
		return 0;
	t = bpf_task_storage_get(&lock_tasks, bpf_get_current_task_btf(), 0, 0);
	if (!t || !t->ts)
		return 0;
	if (t->flags & LOCK_TASK_WAKE)
		lock_wake_end(tgid, t, ret);
	else
		lock_wait_end(ctx, tgid, (__u32)pid_tgid, t, ret, bpf_ktime_get_ns());
	return 0;
}

SEC("tp/syscalls/sys_exit_futex")
int lock_futex_exit(struct futex_exit_args *args)
{
	return lock_exit(args, args->ret);
}

SEC("tp/syscalls/sys_exit_futex_waitv")
int lock_futex_waitv_exit(struct futex_exit_args *args)
{
	return lock_exit(args, args->ret);
}

#endif
