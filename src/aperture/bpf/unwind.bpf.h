/* User stacks unwound with .eh_frame tables, in the kernel, at each sample.
 *
 * The agent builds one table per binary (aperture/agent/unwind/tables.py),
 * loads it as an inner ARRAY of struct unwind_row into `unwind_tables`, and
 * registers each process's executable mappings in `proc_mappings`. Here a
 * bpf_loop walks up to APERTURE_MAX_USER_FRAMES frames: find the mapping of
 * the pc, binary-search its table for the row, compute the CFA, read the
 * return address at CFA - 8 and the caller's rbp if the row saved it.
 *
 * A process the agent has not registered yet is registered here, from process
 * context where the kernel's list of its mappings can be read (not from the
 * sample's interrupt, where the mmap lock cannot be waited for): at exec, at
 * each mmap/mprotect until the agent's registration replaces this one, and at
 * fork (the parent's mappings). Its files' tables are found by device and
 * inode in `file_codes`, so a process that lives a few milliseconds unwinds
 * from its first sample when the binaries it runs have tables already.
 *
 * A wrong stack is worse than a short one: every rule the walker cannot
 * follow ends the walk, and the reason is kept with the stack. In auto mode a
 * frame in code no table describes (JIT code) is stepped by its frame pointer,
 * and only when the return address found that way lies in a known executable
 * mapping; a frame in a file whose table is not loaded yet (evicted, or not
 * built yet) ends the walk: such code (libc) mostly has no frame pointers, and
 * a step by them would skip its callers.
 */
#ifndef APERTURE_UNWIND_BPF_H
#define APERTURE_UNWIND_BPF_H

/* The template of the per-binary tables; BPF_F_INNER_MAP lets each inner map
 * have its own size. Sizes, not __type: clang leaves a struct reached only
 * through an inner map's pointer as a forward declaration in the BTF. */
struct unwind_table_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	/* mmapable: the agent writes a table straight into the map's memory */
	__uint(map_flags, BPF_F_INNER_MAP | BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(struct unwind_row));
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__array(values, struct unwind_table_inner);
} unwind_tables SEC(".maps");

/* tgid -> its executable mappings: written by the walker at exec, fork and mmap
 * until the agent writes its own; replaced at exec and fork, kept past the exit of
 * an announced process until the agent prunes it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct proc_mappings);
} proc_mappings SEC(".maps");

/* file id -> samples that needed its table before it was loaded. The first
 * miss asks the agent to build it: tables are built for the binaries samples
 * land in, not for every library a process maps. The agent deletes the entry
 * when the table is loaded or evicted, so the next miss asks again. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} table_misses SEC(".maps");

/* file (device, inode) -> its file id and load segments; written by the agent
 * for each file it has seen mapped. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct file_key);
	__type(value, struct file_code);
} file_codes SEC(".maps");

/* Where a process's mappings are read or copied into before they are written. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct proc_mappings);
} mappings_scratch SEC(".maps");

/* The stack being built (too large for the BPF stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct user_stack);
} unwind_scratch SEC(".maps");

/* Offsets into the kernel's x86_64 rt_sigframe, from the sp at which the
 * signal trampoline (__restore_rt) runs: the ucontext is there, its
 * uc_mcontext (struct sigcontext) 40 bytes in. */
#define SIGCONTEXT_OFFSET 40
#define SIGCONTEXT_RBP (SIGCONTEXT_OFFSET + 80)
#define SIGCONTEXT_RSP (SIGCONTEXT_OFFSET + 120)
#define SIGCONTEXT_RIP (SIGCONTEXT_OFFSET + 128)

/* Ask the agent to re-read a process's maps at most this often. */
#define REFRESH_INTERVAL_NS 1000000000ULL

/* Largest table: 2^24 rows (200 MB), far above any binary seen. */
#define ROW_SEARCH_STEPS 24

/* The walk's scalars live in a map value: the verifier tracks no values there,
 * so the bpf_loop body is checked a few times rather than once per combination
 * of known flags and counts. */
struct walk_vars {
	__u64 pc;
	__u64 sp;
	__u64 bp;
	__u64 hash;
	__u32 end;                     /* enum unwind_end, once done */
	__u32 pc_is_return;            /* pc is a return address: look up pc - 1 */
	__u32 bp_valid;
	__u32 fp_frames;
	__u32 refresh;                 /* a pc was in no mapping: maps changed */
	__u32 wanted;                  /* a file id whose table was missing */
	/* find_row's binary search: rows [lo, hi) of the table, from row base */
	__u32 row_lo;
	__u32 row_hi;
	__u32 row_base;
	__u32 row_target;              /* the address searched, table-relative */
	__u32 row_failed;              /* a row could not be read */
	__u32 reserved;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct walk_vars);
} walk_scratch SEC(".maps");

struct unwind_walk {
	struct user_stack *out;
	struct proc_mappings *maps;    /* NULL: the process is not registered */
	struct walk_vars *v;
	__u32 mode;
	__u32 tgid;
};

/* Binary searches are branch-free: the verifier then follows one path per
 * step instead of two, where 24 steps would be 2^24 paths. `ge` is 1 when
 * key <= x; both are below 2^63 (user addresses, u32 table pcs). */
#define STEP_GE(key, x) (1 - (((__u64)(x) - (__u64)(key)) >> 63))
/* Hide that ge is 0 or 1 from clang, which would turn `ge * a` back into a branch. */
#define OPAQUE(v) asm volatile("" : "+r"(v))

static __always_inline struct exec_mapping *find_mapping(struct proc_mappings *pm, __u64 pc)
{
	__u64 lo = 0, hi, mid, ge;
	struct exec_mapping *m;

	if (!pm)
		return NULL;
	hi = pm->count;
	if (hi > APERTURE_MAX_MAPPINGS)
		hi = APERTURE_MAX_MAPPINGS;
	/* lo ends at the first mapping starting above pc; the one before may hold it */
	for (int i = 0; i < 9; i++) {
		if (lo >= hi)
			break;
		mid = (lo + hi) / 2;
		ge = STEP_GE(pm->m[mid & (APERTURE_MAX_MAPPINGS - 1)].start, pc);
		OPAQUE(ge);
		lo += ge * (mid + 1 - lo);
		hi = ge * hi + (1 - ge) * mid;
	}
	if (lo == 0)
		return NULL;
	m = &pm->m[(lo - 1) & (APERTURE_MAX_MAPPINGS - 1)];
	return pc < m->end ? m : NULL;
}

/* One executable mapping as the agent would register it: its file's id and
 * load bias when the agent has seen the file, file id 0 (frame pointers only)
 * otherwise; and what it is (file_page), so the agent can take the process's
 * mappings from this registration. */
static __always_inline void kernel_mapping(struct exec_mapping *m, struct vm_area_struct *vma)
{
	struct file *file = vma->vm_file;
	struct file_key key = {};
	struct file_code *code;
	__u64 off = vma->vm_pgoff << PAGE_SHIFT;

	m->start = vma->vm_start;
	m->end = vma->vm_end;
	m->bias = 0;
	m->file_id = 0;
	m->file_page = 0;
	if (!file) {
		if (vma->vm_start == (__u64)BPF_CORE_READ(vma, vm_mm, context.vdso))
			m->file_page = MAPPING_VDSO;
		return;
	}
	if (vma->vm_pgoff > MAPPING_PAGE_MASK) {
		m->file_page = MAPPING_FILE; /* past 4 TB: file id 0, the agent reads /proc */
		return;
	}
	m->file_page = MAPPING_FILE | vma->vm_pgoff;
	key.dev = BPF_CORE_READ(file, f_inode, i_sb, s_dev);
	key.ino = BPF_CORE_READ(file, f_inode, i_ino);
	code = bpf_map_lookup_elem(&file_codes, &key);
	if (!code)
		return;
	for (int i = 0; i < APERTURE_FILE_SEGMENTS; i++) {
		if (i < code->count && code->seg[i].offset <= off && off < code->seg[i].end) {
			m->bias = m->start - off - code->seg[i].delta;
			m->file_id = code->file_id;
			return;
		}
	}
}

/* Where the process sees files: so that the agent needs no /proc lookups to take
 * its paths as its own. */
static __always_inline void note_root(struct proc_mappings *pm, struct task_struct *task)
{
	pm->mnt_ns = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
	pm->root_dev = BPF_CORE_READ(task, fs, root.mnt, mnt_sb, s_dev);
	pm->root_ino = BPF_CORE_READ(task, fs, root.dentry, d_inode, i_ino);
}

/* Register the current process from the kernel's list of its executable
 * mappings, unless the agent has registered it (its entry is then kept
 * current by the agent). Process context only: the list's lock is taken. */
static __always_inline void register_from_kernel(__u32 tgid)
{
	struct proc_mappings *pm, *old = bpf_map_lookup_elem(&proc_mappings, &tgid);
	struct task_struct *task = bpf_get_current_task_btf();
	struct bpf_iter_task_vma it;
	struct vm_area_struct *vma;
	__u32 zero = 0;

	if (old && old->source != MAPPINGS_FROM_KERNEL)
		return;
	pm = bpf_map_lookup_elem(&mappings_scratch, &zero);
	if (!pm || !bpf_iter_task_vma_new) /* a kernel before 6.7 */
		return;
	pm->count = 0;
	pm->source = MAPPINGS_FROM_KERNEL;
	pm->refresh_requested_ns = 0;
	note_root(pm, task);
	bpf_iter_task_vma_new(&it, task, 0);
	/* the count lives in the map value: the verifier need not tell loops apart by it */
	while ((vma = bpf_iter_task_vma_next(&it))) {
		if (!(vma->vm_flags & VM_EXEC) || vma->vm_start >= (1ULL << 47))
			continue;
		if (pm->count >= APERTURE_MAX_MAPPINGS)
			break;
		kernel_mapping(&pm->m[pm->count & (APERTURE_MAX_MAPPINGS - 1)], vma);
		pm->count++;
	}
	bpf_iter_task_vma_destroy(&it);
	if (pm->count)
		bpf_map_update_elem(&proc_mappings, &tgid, pm, BPF_ANY);
}

/* A new process (not a thread) starts with its parent's mappings. */
static __always_inline void inherit_mappings(__u32 parent, __u32 child, struct task_struct *task)
{
	struct proc_mappings *pm, *from = bpf_map_lookup_elem(&proc_mappings, &parent);

	if (!from || bpf_map_update_elem(&proc_mappings, &child, from, BPF_NOEXIST))
		return;
	pm = bpf_map_lookup_elem(&proc_mappings, &child);
	if (pm) {
		pm->source = MAPPINGS_FROM_KERNEL;
		pm->refresh_requested_ns = 0;
		note_root(pm, task);
	}
}

/* The row covering vaddr, or NULL when the table has none before it. The
 * table is laid out as aperture/agent/unwind/layout.py writes it: element 0
 * holds the bucket count, element 1 the first bucket, then one element per
 * bucket (the row covering its first address), then the rows. Two index
 * lookups narrow the search to the rows of one bucket. */
struct row_search {
	void *table;
	struct walk_vars *v;
};

/* One step of find_row's binary search, a bpf_loop body of its own: its
 * bounds live in the map value (walk_vars), so the verifier checks this body
 * a few times, instead of unrolling 24 steps inside every path of the walk
 * that reaches a table (112,030 instructions and 0.35-0.69 s of verification
 * on one 6.18 build, where the walk took 17,030 on another). */
static long row_search_step(__u64 index, void *data)
{
	struct row_search *s = data;
	struct walk_vars *v = s->v;
	struct unwind_row *row;
	__u32 key, lo, hi, mid, ge;

	if (!v)
		return 1;
	lo = v->row_lo;
	hi = v->row_hi;
	if (lo >= hi)
		return 1;
	mid = lo + (hi - lo) / 2;
	key = v->row_base + mid;
	row = bpf_map_lookup_elem(s->table, &key);
	if (!row) {
		v->row_failed = 1;
		return 1;
	}
	ge = STEP_GE(row->pc, v->row_target);
	OPAQUE(ge);
	v->row_lo = lo + ge * (mid + 1 - lo);
	v->row_hi = ge * hi + (1 - ge) * mid;
	return 0;
}

static __always_inline struct unwind_row *find_row(void *table, __u32 elems, __u64 vaddr,
						   struct walk_vars *v)
{
	__u32 key = 0, nb, first, rows, base, lo, hi;
	struct row_search search;
	struct unwind_row *row;

	if (vaddr > 0xFFFFFFFFULL)
		return NULL;
	row = bpf_map_lookup_elem(table, &key);
	if (!row)
		return NULL;
	nb = row->pc;
	key = 1;
	row = bpf_map_lookup_elem(table, &key);
	if (!row || elems < UNWIND_HEADER_ROWS + nb)
		return NULL;
	first = row->pc;
	base = UNWIND_HEADER_ROWS + nb;
	rows = elems - base;
	lo = 0;
	hi = rows;
	if (nb) {
		__u32 b = ((__u32)vaddr >> UNWIND_BUCKET_SHIFT);

		if (b < first)
			return NULL; /* below the table's first row */
		b -= first;
		if (b >= nb)
			b = nb - 1; /* past the last bucket: its rows run to the end */
		key = UNWIND_HEADER_ROWS + b;
		row = bpf_map_lookup_elem(table, &key);
		if (!row)
			return NULL;
		lo = row->pc;
		if (b + 1 < nb) {
			key++;
			row = bpf_map_lookup_elem(table, &key);
			if (!row)
				return NULL;
			hi = row->pc + 1;
		}
		if (hi > rows)
			hi = rows;
	}
	/* the first row in [lo, hi) above vaddr; the one before it covers vaddr */
	v->row_lo = lo;
	v->row_hi = hi;
	v->row_base = base;
	v->row_target = vaddr;
	v->row_failed = 0;
	search.table = table;
	search.v = v;
	bpf_loop(ROW_SEARCH_STEPS, row_search_step, &search, 0);
	lo = v->row_lo;
	if (v->row_failed || lo == 0 || lo < v->row_hi)
		return NULL;
	key = base + lo - 1;
	return bpf_map_lookup_elem(table, &key);
}

static __always_inline int read_user_u64(__u64 *dst, __u64 addr)
{
	return bpf_probe_read_user(dst, sizeof(*dst), (void *)addr);
}

/* One step by frame pointer: [rbp] = caller's rbp, [rbp + 8] = return address. */
static __always_inline long step_frame_pointer(struct unwind_walk *w)
{
	struct walk_vars *v = w->v;
	__u64 ra = 0, next_bp = 0;

	if (!v->bp_valid || v->bp < v->sp) {
		v->end = UNWIND_END_BAD_FRAME;
		return 1;
	}
	if (read_user_u64(&next_bp, v->bp) || read_user_u64(&ra, v->bp + 8)) {
		v->end = UNWIND_END_READ_FAULT;
		return 1;
	}
	if (ra == 0) {
		v->end = UNWIND_END_BOTTOM;
		return 1;
	}
	/* Only trust a return address that lands in code we know. */
	if (!find_mapping(w->maps, ra - 1)) {
		v->end = UNWIND_END_BAD_FRAME;
		return 1;
	}
	v->sp = v->bp + 16;
	v->bp = next_bp;
	v->pc = ra;
	v->pc_is_return = 1;
	v->fp_frames++;
	return 0;
}

/* One step by the table: 0 = stepped to the caller, 1 = the walk ends
 * (v->end says why), 2 = no table covers the pc (v->end says why). */
static __always_inline long step_table(struct unwind_walk *w)
{
	struct walk_vars *v = w->v;
	struct exec_mapping *m;
	struct unwind_row *row;
	void *table;
	__u64 target, cfa, ra = 0;
	__u32 file_id;
	__s16 cfa_offset;

	/* A return address points after its call, possibly into the next function. */
	target = v->pc_is_return ? v->pc - 1 : v->pc;
	m = find_mapping(w->maps, target);
	if (!m) {
		v->refresh = 1;
		v->end = UNWIND_END_NO_MAPPING;
		return 2;
	}
	file_id = m->file_id;
	table = file_id ? bpf_map_lookup_elem(&unwind_tables, &file_id) : NULL;
	if (!table) {
		v->end = UNWIND_END_NO_TABLE;
		if (!file_id)
			return 2; /* code no table will describe (JIT, ...): frame pointers may */
		/* The file's table is to come. Code with tables is mostly built without
		 * frame pointers (libc): a frame-pointer step there skips callers, and a
		 * wrong stack is worse than a short one. */
		if (!v->wanted)
			v->wanted = file_id;
		return 1;
	}
	/* A map pointer may be read as its struct bpf_map, not offset for a probe read. */
	row = find_row(table, ((struct bpf_map *)table)->max_entries, target - m->bias, v);
	if (!row || row->cfa_type == CFA_NONE) {
		v->end = UNWIND_END_NO_INFO;
		return 2;
	}

	cfa_offset = row->cfa_offset;
	switch (row->cfa_type) {
	case CFA_RSP:
		cfa = v->sp + cfa_offset;
		break;
	case CFA_RBP:
		if (!v->bp_valid) {
			v->end = UNWIND_END_UNSUPPORTED;
			return 1;
		}
		cfa = v->bp + cfa_offset;
		break;
	case CFA_PLT:
		cfa = v->sp + 8 + (((v->pc & 15) >= (__u64)cfa_offset) ? 8 : 0);
		break;
	case CFA_STOP:
		v->end = UNWIND_END_BOTTOM;
		return 1;
	case CFA_SIGNAL: {
		__u64 sp = 0, bp = 0, pc = 0;

		if (read_user_u64(&pc, v->sp + SIGCONTEXT_RIP) ||
		    read_user_u64(&sp, v->sp + SIGCONTEXT_RSP) ||
		    read_user_u64(&bp, v->sp + SIGCONTEXT_RBP)) {
			v->end = UNWIND_END_READ_FAULT;
			return 1;
		}
		/* The interrupted instruction itself, not a return address; its
		 * stack may be another one (sigaltstack), so no rising-sp check. */
		if (w->out && w->out->len)
			w->out->ips[(w->out->len - 1) & (APERTURE_MAX_USER_FRAMES - 1)] |=
				APERTURE_SIGNAL_FRAME_BIT;
		v->pc = pc;
		v->sp = sp;
		v->bp = bp;
		v->bp_valid = 1;
		v->pc_is_return = 0;
		return 0;
	}
	default:
		v->end = UNWIND_END_UNSUPPORTED;
		return 1;
	}

	if (cfa <= v->sp) {
		v->end = UNWIND_END_BAD_FRAME;
		return 1;
	}
	if (row->rbp_type == RBP_OFFSET && row->rbp_offset == -16) {
		/* the usual push %rbp frame: saved rbp and return address side by side */
		__u64 pair[2];

		if (bpf_probe_read_user(pair, sizeof(pair), (void *)(cfa - 16))) {
			v->end = UNWIND_END_READ_FAULT;
			return 1;
		}
		v->bp = pair[0];
		ra = pair[1];
		v->bp_valid = 1;
	} else {
		if (read_user_u64(&ra, cfa - 8)) {
			v->end = UNWIND_END_READ_FAULT;
			return 1;
		}
		if (row->rbp_type == RBP_OFFSET) {
			if (read_user_u64(&v->bp, cfa + row->rbp_offset)) {
				v->end = UNWIND_END_READ_FAULT;
				return 1;
			}
			v->bp_valid = 1;
		} else if (row->rbp_type != RBP_UNCHANGED) {
			v->bp_valid = 0;
		}
	}
	if (ra == 0) {
		v->end = UNWIND_END_BOTTOM;
		return 1;
	}
	v->sp = cfa;
	v->pc = ra;
	v->pc_is_return = 1;
	return 0;
}

/* The bpf_loop body: record the current frame, then step to its caller. The
 * frame count lives in the map value (out->len), not in w: the verifier then
 * does not tell iterations apart by it, and checks this body a few times
 * instead of once per frame. */
static long unwind_step(__u64 index, void *data)
{
	struct unwind_walk *w = data;
	struct user_stack *out = w->out;
	struct walk_vars *v = w->v;
	__u64 ip;
	__u32 n;
	long r;

	if (!out || !v)
		return 1;
	n = out->len;
	if (n >= APERTURE_MAX_USER_FRAMES) {
		v->end = UNWIND_END_DEPTH;
		return 1;
	}
	ip = v->pc;
	if (n && !v->pc_is_return)
		ip |= APERTURE_NOT_CALL_BIT;
	out->ips[n & (APERTURE_MAX_USER_FRAMES - 1)] = ip;
	out->len = n + 1;
	v->hash = (v->hash ^ ip) * 0x9E3779B97F4A7C15ULL;
	v->hash ^= v->hash >> 29;

	r = step_table(w);
	if (r != 2)
		return r;
	/* No table here: auto mode tries the frame pointer, dwarf mode ends. */
	if (w->mode == UNWIND_MODE_AUTO && w->maps)
		return step_frame_pointer(w);
	return 1;
}

/* The user-mode registers of the current task, saved at the top of its kernel
 * stack when it last entered the kernel: by the timer interrupt that took this
 * sample when it ran user code, by a syscall or fault otherwise. */
static __always_inline int user_registers(__u64 *pc, __u64 *sp, __u64 *bp)
{
#if defined(__TARGET_ARCH_x86)
	struct task_struct *task = bpf_get_current_task_btf();
	struct pt_regs regs;

	if (!BPF_CORE_READ(task, mm))
		return -1; /* a kernel thread: no user stack */
	if (bpf_probe_read_kernel(&regs, sizeof(regs), (void *)bpf_task_pt_regs(task)))
		return -1;
	*pc = regs.rip;
	*sp = regs.rsp;
	*bp = regs.rbp;
	return 0;
#else
	/* arm64 needs its own rows (LR for leaves, FP/LR pairs) and register names:
	 * the agent runs --unwind fp there, so this path is never taken. */
	return -1;
#endif
}

/* Unwind the current task's user stack into the scratch stack and return it
 * (NULL for a kernel thread); *hash identifies its frames and end reason. */
static __always_inline struct user_stack *unwind_user_stack(__u32 tgid, __u32 tid, __u32 mode,
							    struct proc_mappings *maps,
							    __u64 *hash, __u32 *refresh,
							    __u32 *wanted)
{
	__u32 zero = 0;
	struct unwind_walk w = {};
	struct user_stack *out = bpf_map_lookup_elem(&unwind_scratch, &zero);
	struct walk_vars *v = bpf_map_lookup_elem(&walk_scratch, &zero);
	__u64 h;

	if (!out || !v)
		return NULL;
	__builtin_memset(v, 0, sizeof(*v));
	if (user_registers(&v->pc, &v->sp, &v->bp))
		return NULL;
	out->len = 0;
	w.out = out;
	w.maps = maps;
	w.v = v;
	w.mode = mode;
	w.tgid = tgid;
	v->bp_valid = 1;
	v->hash = 0xCBF29CE484222325ULL;
	v->end = UNWIND_END_DEPTH;
	bpf_loop(APERTURE_MAX_USER_FRAMES + 1, unwind_step, &w, 0);
	out->end = v->end;
	out->fp_frames = v->fp_frames > 255 ? 255 : v->fp_frames;
	out->reserved = 0;
	h = v->hash ^ walk_python(out, tgid, tid);
	h = (h ^ ((__u64)v->end << 56 | out->len)) * 0x9E3779B97F4A7C15ULL;
	h ^= h >> 31;
	*hash = h | 1; /* 0 means "no stack" in cpu_key */
	*refresh = v->refresh;
	*wanted = v->wanted;
	return out;
}

struct stack_pair {
	struct user_stack *a;
	struct user_stack *b;
	__u32 len;
	__u32 py_len;
	__u64 differs;
};

/* Count a sample that needed a missing table; the first one asks for it. */
static __always_inline int want_table(__u32 file_id)
{
	__u64 one = 1, *misses = bpf_map_lookup_elem(&table_misses, &file_id);

	if (misses) {
		__sync_fetch_and_add(misses, 1);
		return 0;
	}
	if (bpf_map_update_elem(&table_misses, &file_id, &one, BPF_NOEXIST))
		return 0; /* another CPU asked first */
	return announce_process(file_id, PROC_EVENT_TABLE_WANTED);
}

static long compare_ip(__u64 i, void *data)
{
	struct stack_pair *pair = data;
	__u32 k = i & (APERTURE_MAX_USER_FRAMES - 1);

	/* only the slots in use: the scratch stack keeps older samples' frames past them */
	if ((i < pair->len && pair->a->ips[k] != pair->b->ips[k]) ||
	    (i < pair->py_len && pair->a->py[k & (APERTURE_MAX_PY_FRAMES - 1)] !=
				     pair->b->py[k & (APERTURE_MAX_PY_FRAMES - 1)])) {
		pair->differs = 1;
		return 1;
	}
	return 0;
}

/* Whether two stacks hold the same frames (a 64-bit hash may still collide). */
static __always_inline int same_stack(struct user_stack *a, struct user_stack *b)
{
	struct stack_pair pair = {a, b, a->len, a->py_len, 0};

	if (a->len != b->len || a->end != b->end || a->py_len != b->py_len ||
	    a->py_status != b->py_status)
		return 0;
	bpf_loop(pair.len > pair.py_len ? pair.len : pair.py_len, compare_ip, &pair, 0);
	return !pair.differs;
}

#endif
