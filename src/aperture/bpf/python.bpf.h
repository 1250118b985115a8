/* Python frames at each sample, in a walk of their own after the native one.
 *
 * The native walk (unwind.bpf.h) records _PyEval_EvalFrameDefault frames like
 * any other; this walk records the thread's Python frames, innermost first,
 * marking the last frame of each call of the eval loop (3.10: every frame,
 * 3.11: is_entry, 3.12+: the frame before a C-stack shim). The agent then puts
 * each run of Python frames in place of its eval-loop frame. Two separate
 * loops keep the verifier's work the sum of both, not their product.
 */
#ifndef APERTURE_PYTHON_BPF_H
#define APERTURE_PYTHON_BPF_H

/* tgid -> its interpreter, written by the agent at registration. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct py_proc);
} py_procs SEC(".maps");

/* tid -> its PyThreadState, found once by a search of the thread list and
 * checked at each use (its thread_id must still be the thread's FS base). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u64);
} py_threads SEC(".maps");

#define PY_FRAME_READ 128 /* bytes of a frame struct read at once (3.10 uses 104) */
#define PY_FRAME_OWNED_BY_CSTACK 3

struct tstate_search {
	struct py_proc *py;
	__u64 fsbase;
	__u64 tstate;
	__u64 found;
};

static long tstate_step(__u64 index, void *data)
{
	struct tstate_search *s = data;
	__u64 id = 0;

	if (!s->tstate)
		return 1;
	if (bpf_probe_read_user(&id, sizeof(id), (void *)(s->tstate + s->py->tstate_thread_id)))
		return 1;
	if (id == s->fsbase) {
		s->found = s->tstate;
		return 1;
	}
	if (bpf_probe_read_user(&s->tstate, sizeof(s->tstate),
				(void *)(s->tstate + s->py->tstate_next)))
		return 1;
	return 0;
}

/* The current thread's innermost Python frame, or 0: a thread that never ran
 * Python, or one whose state cannot be read, keeps its native stack. */
static __always_inline __u64 python_current_frame(struct py_proc *py, __u32 tid)
{
#if defined(__TARGET_ARCH_x86)
	struct task_struct *task = bpf_get_current_task_btf();
	struct tstate_search s = {.py = py};
	__u64 *cached, interp = 0, id = 0, frame = 0, cframe = 0;

	s.fsbase = BPF_CORE_READ(task, thread.fsbase);
	cached = bpf_map_lookup_elem(&py_threads, &tid);
	if (cached && *cached &&
	    !bpf_probe_read_user(&id, sizeof(id), (void *)(*cached + py->tstate_thread_id)) &&
	    id == s.fsbase) {
		s.found = *cached;
	} else {
		if (bpf_probe_read_user(&interp, sizeof(interp),
					(void *)(py->runtime + py->runtime_interpreters_head)) ||
		    !interp ||
		    bpf_probe_read_user(&s.tstate, sizeof(s.tstate),
					(void *)(interp + py->interp_threads_head)))
			return 0;
		bpf_loop(APERTURE_PY_MAX_THREADS, tstate_step, &s, 0);
		if (!s.found)
			return 0;
		bpf_map_update_elem(&py_threads, &tid, &s.found, BPF_ANY);
	}
	if (py->cframe_current_frame >= 0) {
		if (bpf_probe_read_user(&cframe, sizeof(cframe), (void *)(s.found + py->tstate_frame)) ||
		    !cframe ||
		    bpf_probe_read_user(&frame, sizeof(frame),
					(void *)(cframe + py->cframe_current_frame)))
			return 0;
	} else if (bpf_probe_read_user(&frame, sizeof(frame), (void *)(s.found + py->tstate_frame))) {
		return 0;
	}
	return frame;
#else
	return 0; /* the FS base is x86_64's thread pointer; arm64 would read tp_value */
#endif
}

struct python_walk {
	struct py_proc *py;
	struct user_stack *out;
	__u64 frame;
	__u64 hash;
	__u32 error;
};

static __always_inline __u64 frame_u64(__u8 *buf, __s16 off)
{
	return *(__u64 *)(buf + (off & (PY_FRAME_READ - 8)));
}

static long python_step(__u64 index, void *data)
{
	struct python_walk *w = data;
	struct py_proc *py = w->py;
	struct user_stack *out = w->out;
	__u8 buf[PY_FRAME_READ];
	__u64 code, instr, entry, last = 0;
	__u32 n;

	if (!w->frame || !out || !py)
		return 1;
	if (bpf_probe_read_user(buf, sizeof(buf), (void *)w->frame)) {
		w->error = 1;
		return 1;
	}
	n = out->py_len;
	if (py->minor >= 12 && buf[py->frame_owner & (PY_FRAME_READ - 1)] == PY_FRAME_OWNED_BY_CSTACK) {
		/* the shim an entry into the eval loop pushes: the frame before it was
		 * that call's last */
		if (n)
			out->py[(n - 1) & (APERTURE_MAX_PY_FRAMES - 1)] |= APERTURE_PY_LAST_BIT;
		w->frame = frame_u64(buf, py->frame_previous);
		return 0;
	}
	if (n >= APERTURE_MAX_PY_FRAMES)
		return 1; /* w->frame still set: truncated */
	code = frame_u64(buf, py->frame_code) & APERTURE_PY_ADDR_MASK;
	if (py->frame_instr_size == 4)
		instr = *(__u32 *)(buf + (py->frame_instr & (PY_FRAME_READ - 4)));
	else
		instr = frame_u64(buf, py->frame_instr) - code;
	if (instr > APERTURE_PY_INSTR_MAX)
		instr = APERTURE_PY_INSTR_MAX;
	if (py->minor == 10)
		last = 1; /* one PyFrameObject per call of the eval loop */
	else if (py->minor == 11)
		last = buf[py->frame_is_entry & (PY_FRAME_READ - 1)] != 0;
	entry = last << 63 | instr << APERTURE_PY_INSTR_SHIFT | code;
	out->py[n & (APERTURE_MAX_PY_FRAMES - 1)] = entry;
	out->py_len = n + 1;
	w->hash = (w->hash ^ entry) * 0x9E3779B97F4A7C15ULL;
	w->hash ^= w->hash >> 29;
	w->frame = frame_u64(buf, py->frame_previous);
	return 0;
}

/* Record the current thread's Python frames in out (py_len, py_status) and
 * return a hash of them to fold into the stack's. */
static __always_inline __u64 walk_python(struct user_stack *out, __u32 tgid, __u32 tid)
{
	struct python_walk w = {.out = out, .hash = 0x84222325CBF29CE4ULL};

	out->py_len = 0;
	out->py_status = PY_STATUS_NONE;
	w.py = bpf_map_lookup_elem(&py_procs, &tgid);
	if (!w.py)
		return 0;
	w.frame = python_current_frame(w.py, tid);
	if (!w.frame) {
		/* hashed apart from a stack of a process not (yet) known as Python: the
		 * same native frames with another status are another stack record */
		out->py_status = PY_STATUS_NO_THREAD;
		return (__u64)PY_STATUS_NO_THREAD << 56;
	}
	bpf_loop(APERTURE_MAX_PY_FRAMES * 2, python_step, &w, 0);
	if (w.error)
		out->py_status = PY_STATUS_READ_ERROR;
	else if (w.frame)
		out->py_status = PY_STATUS_TRUNCATED;
	else
		out->py_status = PY_STATUS_OK;
	return w.hash ^ ((__u64)out->py_status << 56 | out->py_len);
}

#endif
