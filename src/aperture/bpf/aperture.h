/* Structs shared between the BPF programs and the agent.
 *
 * Every struct here has a ctypes mirror next to the Python code that reads it
 * (the modules in aperture/agent/collectors/). Keep field order, sizes and padding in step:
 * the collectors check sizeof() against the BTF-reported map key/value sizes at
 * load time, so a mismatch fails loudly instead of reading garbage.
 */
#ifndef APERTURE_H
#define APERTURE_H

#define APERTURE_COMM_LEN 16
/* Frames kept per stack: the kernel's PERF_MAX_STACK_DEPTH default. */
#define APERTURE_MAX_STACK_DEPTH 127

/* CPU profiler: one aggregated entry per (thread, user stack, kernel stack). */
struct cpu_key {
	__u32 tgid;                    /* process id as user space sees it */
	__u32 pid;                     /* thread id */
	__s32 user_stack_id;           /* frame-pointer walk: id in the stack map, or -errno */
	__s32 kernel_stack_id;         /* id in the stack map, or -errno */
	__u64 user_stack_hash;         /* table walk: key in the ustacks map; 0 = none */
	char comm[APERTURE_COMM_LEN];  /* thread name at sample time */
};

/* How user stacks are unwound (--unwind). */
enum unwind_mode {
	UNWIND_MODE_FP = 0,            /* the kernel's frame-pointer walk only */
	UNWIND_MODE_DWARF = 1,         /* tables only: stop where a frame has none */
	UNWIND_MODE_AUTO = 2,          /* tables, frame pointers where there are none */
};

/* Read-only settings the agent writes into .rodata before load. */
struct cpu_config {
	__u32 target_tgid;             /* 0: every process; else only this tgid */
	__u32 include_idle;            /* non-zero: record idle (pid 0) samples */
	__u32 unwind_mode;             /* enum unwind_mode */
	__u32 offcpu_sample;           /* off-CPU: stacks of 1 in N blocks (0, 1: every one) */
	__u64 offcpu_min_ns;           /* off-CPU: shorter blocks are counted, not recorded */
	__u32 lock_sample;             /* locks: stacks of 1 in N waits and wakes (0, 1: all) */
	__u32 agent_tgid;              /* the agent: its blocks and lock waits are not recorded */
	__u64 lock_min_ns;             /* locks: waits and holds this long always get stacks */
};

/* ---- Table unwinding (see unwind.bpf.h and aperture/agent/unwind/) ----------
 *
 * Each binary's .eh_frame becomes a sorted array of rows (one inner ARRAY map
 * per binary, exactly as long as its table, found by file id in
 * `unwind_tables`, loaded when built: until then the walker sees no table for
 * that binary); each process has a sorted
 * list of its executable mappings (`proc_mappings`) giving the file id and the
 * load bias of each. Rows describe the caller's frame at a pc as x86_64 needs
 * it; arm64 would use ra_offset (return address saved at CFA + ra_offset, or
 * still in LR when 0) and the same CFA rules with sp/fp for rsp/rbp.
 */
#define APERTURE_MAX_USER_FRAMES 128
/* The table layout of aperture/agent/unwind/layout.py. */
#define UNWIND_HEADER_ROWS 2
#define UNWIND_BUCKET_SHIFT 9
#define APERTURE_MAX_MAPPINGS 256

enum cfa_type {
	CFA_NONE = 0,                  /* no FDE covers the pc */
	CFA_RSP = 1,                   /* CFA = rsp + cfa_offset */
	CFA_RBP = 2,                   /* CFA = rbp + cfa_offset */
	CFA_PLT = 3,                   /* CFA = rsp + 8 + ((rip & 15) >= cfa_offset ? 8 : 0) */
	CFA_STOP = 4,                  /* return address undefined: the stack's bottom */
	CFA_SIGNAL = 5,                /* signal trampoline: registers saved in the sigframe */
	CFA_UNSUPPORTED = 6,           /* a rule the walker cannot follow: stop */
};

enum rbp_type {
	RBP_UNCHANGED = 0,
	RBP_OFFSET = 1,                /* caller's rbp saved at CFA + rbp_offset */
	RBP_UNDEFINED = 2,             /* caller's rbp unknown */
};

/* One row: how to find the caller for pcs from `pc` up to the next row. 12 B. */
struct unwind_row {
	__u32 pc;                      /* ELF virtual address */
	__u8 cfa_type;                 /* enum cfa_type */
	__u8 rbp_type;                 /* enum rbp_type */
	__s16 cfa_offset;
	__s16 rbp_offset;
	__s16 ra_offset;               /* arm64 only; 0 on x86_64 (RA at CFA - 8) */
};

/* One executable mapping of a process: pc - bias is the ELF virtual address. */
struct exec_mapping {
	__u64 start;
	__u64 end;
	__u64 bias;
	__u32 file_id;                 /* key in unwind_tables; 0: no table (JIT, ...) */
	__u32 file_page;               /* MAPPING_FILE | the file offset in pages, MAPPING_VDSO,
					* or 0 (anonymous); the agent's entries say it too */
};

/* exec_mapping.file_page: what the kernel's registration saw, so the agent can
 * take a process's mappings from it instead of reading /proc/PID/maps. A file
 * mapping whose file id is 0 is a file the agent has not seen yet. */
#define MAPPING_FILE (1U << 31)
#define MAPPING_VDSO (1U << 30)
#define MAPPING_PAGE_MASK (MAPPING_VDSO - 1)

/* Who wrote a process's proc_mappings entry. */
enum mappings_source {
	MAPPINGS_FROM_AGENT = 0,       /* the agent, from /proc/PID/maps */
	MAPPINGS_FROM_KERNEL = 1,      /* unwind.bpf.h, from the kernel's list, until the agent's */
};

struct proc_mappings {
	__u32 count;                   /* entries used in m[], sorted by start */
	__u32 source;                  /* enum mappings_source */
	__u64 refresh_requested_ns;    /* last time the agent was asked to re-read maps */
	/* the kernel's registrations: where the process sees files (0: not known) */
	__u32 mnt_ns;                  /* its mount namespace's inode number */
	__u32 root_dev;                /* its root's device (dev_t: major << 20 | minor) */
	__u64 root_ino;                /* and inode */
	struct exec_mapping m[APERTURE_MAX_MAPPINGS];
};

/* A file as the kernel names a mapping's: the key of `file_codes`, by which
 * a process the agent has not registered yet finds its files' tables. */
struct file_key {
	__u32 dev;                     /* the kernel's dev_t: major << 20 | minor */
	__u32 reserved;
	__u64 ino;
};

#define APERTURE_FILE_SEGMENTS 4

/* A PT_LOAD segment: a mapping of file offset `pgoff` at `start` lying in
 * [offset, end) has load bias start - pgoff - delta. */
struct file_segment {
	__u64 offset;                  /* the segment's file offset, rounded down to its page */
	__u64 end;                     /* file offset + size */
	__u64 delta;                   /* vaddr - file offset */
};

struct file_code {
	__u32 file_id;                 /* key in unwind_tables */
	__u32 count;                   /* entries used in seg[] */
	struct file_segment seg[APERTURE_FILE_SEGMENTS];
};

/* Why a table walk ended. */
enum unwind_end {
	UNWIND_END_BOTTOM = 0,         /* reached the stack's bottom: complete */
	UNWIND_END_DEPTH,              /* APERTURE_MAX_USER_FRAMES frames: truncated */
	UNWIND_END_NO_MAPPING,         /* pc in no known mapping of the process */
	UNWIND_END_NO_TABLE,           /* pc in code without a table (dwarf mode), or whose
	                                * file's table is not loaded yet (either mode) */
	UNWIND_END_NO_INFO,            /* pc in a gap of its binary's table */
	UNWIND_END_UNSUPPORTED,        /* a rule the walker cannot follow */
	UNWIND_END_READ_FAULT,         /* user memory could not be read */
	UNWIND_END_BAD_FRAME,          /* a frame that goes nowhere (sp not rising, RA outside code) */
	UNWIND_END_MAX,
};

/* An unwound user stack, leaf first. Addresses with bit 63 set are not return
 * addresses (the interrupted pc after a signal frame): look them up as is.
 * Bit 62 marks the signal trampoline the kernel's signal frame returns to. */
#define APERTURE_NOT_CALL_BIT (1ULL << 63)
#define APERTURE_SIGNAL_FRAME_BIT (1ULL << 62)
/* Python frames of the thread, innermost first, each APERTURE_PY_LAST_BIT (the
 * last frame one call of the eval loop runs) | instr << 47 | code object
 * address; the agent puts each run in place of its _PyEval_EvalFrameDefault
 * native frame. */
#define APERTURE_MAX_PY_FRAMES 128
#define APERTURE_PY_LAST_BIT (1ULL << 63)
#define APERTURE_PY_INSTR_SHIFT 47
#define APERTURE_PY_INSTR_MAX 0xFFFFULL
#define APERTURE_PY_ADDR_MASK ((1ULL << 47) - 1)

enum py_status {
	PY_STATUS_NONE = 0,            /* not a Python process (or not registered as one) */
	PY_STATUS_OK,                  /* every Python frame of the thread recorded */
	PY_STATUS_NO_THREAD,           /* no thread state for this thread (a native thread) */
	PY_STATUS_READ_ERROR,          /* a frame could not be read: frames so far kept */
	PY_STATUS_TRUNCATED,           /* more than APERTURE_MAX_PY_FRAMES frames */
};

struct user_stack {
	__u16 len;
	__u8 end;                      /* enum unwind_end */
	__u8 fp_frames;                /* frames found by frame pointer (auto mode) */
	__u8 py_len;
	__u8 py_status;                /* enum py_status */
	__u16 reserved;
	__u64 ips[APERTURE_MAX_USER_FRAMES];
	__u64 py[APERTURE_MAX_PY_FRAMES];
};

/* Sent when a window's stack map first gets a stack with Python frames, so the
 * agent reads those code objects while the process lives (it may exit before
 * the window is drained). */
struct py_stack_event {
	__u32 tgid;
	__u32 kind;                    /* PROC_EVENT_PYTHON_STACK */
	__u32 py_len;
	__u32 reserved;
	__u64 py[APERTURE_MAX_PY_FRAMES];
};

/* A process's CPython 3.10-3.13, described by the agent from
 * aperture/agent/python/offsets.py. The walker finds the sampled thread's
 * PyThreadState (whose thread_id is the thread's FS base) in the interpreter's
 * thread list and follows its frames. */
#define APERTURE_PY_MAX_THREADS 64     /* thread states searched per sample */
struct py_proc {
	__u64 runtime;                 /* &_PyRuntime */
	__u32 minor;                   /* 10..13 */
	__s16 runtime_interpreters_head;
	__s16 interp_threads_head;
	__s16 tstate_next;
	__s16 tstate_thread_id;
	__s16 tstate_frame;
	__s16 cframe_current_frame;    /* -1: tstate_frame points at the frame itself */
	__s16 frame_code;
	__s16 frame_previous;
	__s16 frame_instr;
	__s16 frame_instr_size;        /* 4: an int in code units (3.10); 8: a pointer */
	__s16 frame_is_entry;          /* 3.11 */
	__s16 frame_owner;             /* 3.12+: 3 (FRAME_OWNED_BY_CSTACK) marks a shim */
	__u16 reserved;
};

/* Process identity recorded the first time a tgid is sampled. */
struct proc_info {
	char comm[APERTURE_COMM_LEN];  /* group leader's name = process name */
};

/* Sent through the ring buffer once per newly seen process, so the agent reads
 * /proc/PID/maps while the process still exists. */
enum proc_event_kind {
	PROC_EVENT_NEW = 0,            /* first sample of a process (or after exec) */
	PROC_EVENT_MAPS_CHANGED = 1,   /* a pc in no registered mapping: re-read maps */
	PROC_EVENT_TABLE_WANTED = 2,   /* a sample needed a binary's table: tgid holds its file id */
	PROC_EVENT_PYTHON_STACK = 3,   /* a new stack with Python frames: struct py_stack_event */
};

struct proc_event {
	__u32 tgid;
	__u32 kind;                    /* enum proc_event_kind */
	char comm[APERTURE_COMM_LEN];
};

/* Indices into the per-CPU `stats` array: every way data can be lost or
 * skipped is counted, never silently dropped. */
enum cpu_stat {
	CPU_STAT_SAMPLES = 0,          /* samples taken (after the pid filter) */
	CPU_STAT_IDLE,                 /* samples of the idle task, not recorded */
	CPU_STAT_FILTERED,             /* samples of other processes (--pid) */
	CPU_STAT_USER_COLLISION,       /* user stack lost to a stack-map collision */
	CPU_STAT_KERNEL_COLLISION,     /* kernel stack lost to a stack-map collision */
	CPU_STAT_USER_STACK_ERROR,     /* other user stack errors (not EFAULT) */
	CPU_STAT_KERNEL_STACK_ERROR,   /* other kernel stack errors (not EFAULT) */
	CPU_STAT_COUNTS_FULL,          /* sample dropped: the counts map was full */
	CPU_STAT_PROC_EVENT_DROPPED,   /* new-process event lost: ring buffer full */
	CPU_STAT_USTACK_COLLISION,     /* table-unwound stack lost to a hash collision */
	CPU_STAT_USTACKS_FULL,         /* table-unwound stack lost: the ustacks map was full */
	CPU_STAT_UNWIND_UNREGISTERED,  /* process not registered yet: frame-pointer walk */
	CPU_STAT_UNWIND_FP_FRAMES,     /* table walks that used frame pointers for a frame */
	CPU_STAT_PY_SAMPLES,           /* samples of Python processes with Python frames */
	CPU_STAT_PY_NO_THREAD,         /* samples of Python processes' native threads */
	CPU_STAT_PY_INCOMPLETE,        /* Python frame walks cut by a read error or the depth */
	/* then UNWIND_END_MAX counters: table walks by how they ended */
	CPU_STAT_UNWIND_END,
	CPU_STAT_MAX = CPU_STAT_UNWIND_END + UNWIND_END_MAX,
};

/* log2 latency buckets: bucket i counts durations in [2^i, 2^(i+1)) ns;
 * bucket 0 also takes 0 ns and the last one everything from 2^39 ns (~9 min). */
#define APERTURE_HIST_BUCKETS 40
/* Lock histograms: 4 buckets per power of two (fine_bucket in common.bpf.h). */
#define APERTURE_FINE_BUCKETS 160

/* Syscall tracer settings, written into .rodata before load. */
struct syscall_config {
	__u32 target_tgid;             /* 0: every process */
	__u32 agent_tgid;              /* the agent: its syscalls are not recorded (0: they are) */
};

/* Per-thread state between sys_enter and sys_exit (task-local storage). */
struct syscall_start {
	__u64 start_ns;                /* 0: no syscall in flight that we saw enter */
	__s64 nr;
};

struct syscall_key {
	__u32 tgid;
	__u32 nr;
};

struct syscall_stats {
	char comm[APERTURE_COMM_LEN];  /* process name when the entry was created */
	__u64 count;
	__u64 errors;                  /* returns < 0 */
	__u64 total_ns;
	__u64 min_ns;
	__u64 max_ns;
	__u64 hist[APERTURE_HIST_BUCKETS];
};

struct syscall_errno_key {
	__u32 tgid;
	__u32 nr;
	__u32 err;                     /* positive errno */
	__u32 reserved;
};

enum syscall_stat {
	SYS_STAT_EVENTS = 0,           /* syscalls measured (enter and exit seen) */
	SYS_STAT_NO_START,             /* exits whose enter predates attach: skipped */
	SYS_STAT_STORAGE_FULL,         /* task storage could not be created */
	SYS_STAT_STATS_FULL,           /* lost: the stats map was full */
	SYS_STAT_ERRNO_FULL,           /* errno counts lost: the errno map was full */
	SYS_STAT_MAX,
};

/* ---- Locks (locks.bpf.h) ------------------------------------------------------
 *
 * Futex waits and wakes, in the CPU profiler's object (same unwinder, Python
 * frames). A wait is keyed by its lock word, the waiter's stack and the stack
 * of the wake that ended it; a wake that woke someone is a release, keyed by
 * the releasing (holding) thread's stack, with the time it held the lock when
 * its acquisition was seen. Per lock word, struct lock_state follows who may
 * hold it (see locks.bpf.h for the rules). */
enum lock_op {
	LOCK_OP_WAIT = 0,              /* FUTEX_WAIT */
	LOCK_OP_WAIT_BITSET = 1,       /* FUTEX_WAIT_BITSET */
	LOCK_OP_LOCK_PI = 2,           /* FUTEX_LOCK_PI, FUTEX_LOCK_PI2 */
	LOCK_OP_WAIT_REQUEUE_PI = 3,
	LOCK_OP_WAITV = 4,             /* futex_waitv: its first futex */
};
#define LOCK_FLAG_VAL2 0x100           /* waited while the word was 2: "locked, waiters" */

/* Stack states in lock keys beside a hash (0 = no stack). */
#define LOCK_STACK_OK 0
#define LOCK_STACK_NOT_SAMPLED 1       /* sampling took none for this event */
#define LOCK_STACK_NONE 2              /* wait: no wake seen during it */
/* else -errno: -14 no user stack, -17 hash collision, -28 stacks map full */

struct lock_wait_key {
	__u32 tgid;
	__u32 flags;                   /* enum lock_op | LOCK_FLAG_* */
	__u64 uaddr;                   /* the futex word waited on */
	__u64 waiter_hash;             /* waiter's user stack in lustacks{0,1}; 0: waiter_err */
	__u64 waker_hash;              /* the stack of the wake that ended the wait; 0: waker_err */
	__s32 waiter_err;
	__s32 waker_err;
};

struct lock_stats {
	char comm[APERTURE_COMM_LEN];  /* process name when the entry was created */
	__u64 contentions;             /* waits that slept and were woken (ret 0) */
	__u64 wait_ns;                 /* total time of those waits */
	__u64 max_ns;
	__u64 eagain;                  /* the value changed before sleeping: no wait */
	__u64 timeouts;                /* ETIMEDOUT returns, time kept apart */
	__u64 timeout_ns;
	__u64 interrupted;             /* other errors (EINTR, ...) */
	__u64 hist[APERTURE_FINE_BUCKETS]; /* wait times, fine_bucket() */
};

struct lock_hold_key {
	__u32 tgid;
	__s32 holder_err;
	__u64 uaddr;                   /* the futex word woken */
	__u64 holder_hash;             /* the releasing thread's stack; 0: holder_err */
};

struct lock_hold_stats {
	char comm[APERTURE_COMM_LEN];
	__u64 releases;                /* wakes that woke at least one waiter */
	__u64 woken;                   /* waiters they woke */
	__u64 timed;                   /* of the releases, those whose acquisition was seen */
	__u64 hold_ns;                 /* their total hold time */
	__u64 max_ns;
	__u64 hist[APERTURE_FINE_BUCKETS]; /* hold times, fine_bucket() */
};

struct lock_state_key {
	__u32 tgid;
	__u32 reserved;
	__u64 uaddr;
};

/* Per thread, from sys_enter_futex to sys_exit_futex (task-local storage). */
struct lock_task {
	__u64 ts;                      /* 0: no futex call under our watch */
	struct lock_state_key lock;    /* the futex word: tgid, uaddr */
	__u64 hold_ns;                 /* a wake: the hold it ends, when timed; a wait: its time */
	__u64 holder_hash;
	__s32 holder_err;
	__u32 flags;                   /* a wait: enum lock_op | LOCK_FLAG_*; a wake: LOCK_TASK_* */
	__s32 ret;                     /* a wait: what it returned */
	__u32 buf;                     /* the buffer its record goes to */
	union {                        /* the record's key, built here (off the BPF stack) */
		struct lock_wait_key wait;
		struct lock_hold_key hold;
	} key;
};
#define LOCK_TASK_WAKE 0x10000         /* lock_task.flags: the call is a wake */
#define LOCK_TASK_TIMED 0x20000        /* the wake's hold is timed */

/* Per lock word with waiters seen (LRU). */
struct lock_state {
	__u64 free_since;              /* last wake that woke a waiter; 0: unknown */
	__u64 cand_ts;                 /* when cand_tid came back from its wait */
	__u64 wake_ts;                 /* the last wake's start */
	__u64 waker_hash;              /* its stack (in lustacks{waker_buf}); 0: waker_err */
	__u64 wait_stack_ts;           /* last waiter stack taken for this lock */
	__u64 wake_stack_ts;           /* last waker stack taken */
	__u32 cand_tid;                /* woken while others waited: it holds the lock next */
	__s32 waiter_count;            /* threads in a wait on it now */
	__s32 waker_err;
	__u32 waker_buf;
};

enum lock_stat {
	LOCK_STAT_WAITS = 0,           /* futex waits that returned */
	LOCK_STAT_NO_STORAGE,          /* enter not recorded: no task storage */
	LOCK_STAT_STATS_FULL,          /* a wait lost: the waits map was full */
	LOCK_STAT_HOLDS_FULL,          /* a release lost: the holds map was full */
	LOCK_STAT_STACKS_FULL,         /* stacks lost: the stacks map was full */
	LOCK_STAT_STACK_COLLISION,     /* stacks lost to a hash collision */
	LOCK_STAT_MAX,
};

/* ---- Off-CPU time (offcpu.bpf.h) --------------------------------------------
 *
 * At sched_switch the thread going out has its stacks taken (it is the current
 * task: its user registers and memory are readable) and kept with the time in
 * its task-local storage; when it is switched back in, the time it was out is
 * added under those stacks in the buffer live at that moment. The stacks are
 * kept as contents, not stack-map ids, so a block that spans a buffer flip is
 * recorded whole under the right stacks. */
enum offcpu_state {
	OFFCPU_RUNNABLE = 0,           /* preempted: ready, waiting for a CPU */
	OFFCPU_SLEEPING = 1,           /* TASK_INTERRUPTIBLE (S) */
	OFFCPU_UNINTERRUPTIBLE = 2,    /* TASK_UNINTERRUPTIBLE (D): I/O, page faults */
	OFFCPU_IDLE = 3,               /* TASK_IDLE: a kernel thread waiting for work */
	OFFCPU_OTHER = 4,              /* stopped, traced, ... */
};

#define OFFCPU_NOT_SAMPLED 1        /* offcpu_key.flags: time only, stacks not taken */

struct offcpu_key {
	struct cpu_key task;           /* tgid, pid, comm; user_stack_hash, or ids as errors */
	__u64 kernel_stack_hash;       /* key in kstacks{0,1}; 0 = none (kernel_stack_id says) */
	__u32 state;                   /* enum offcpu_state */
	__u32 flags;
};

struct kernel_stack {
	__u32 len;
	__u32 reserved;
	__u64 ips[APERTURE_MAX_STACK_DEPTH];
};

/* Per thread, from switch-out to switch-in (task-local storage). */
struct offcpu_start {
	__u64 ts;                      /* 0: not switched out under our watch */
	__u64 user_hash;
	struct offcpu_key key;
	struct kernel_stack kernel;
	struct user_stack user;
};

enum offcpu_stat {
	OFFCPU_STAT_BLOCKS = 0,        /* switch-ins after a switch-out we saw */
	OFFCPU_STAT_SHORT,             /* of those, shorter than offcpu_min_ns: not recorded */
	OFFCPU_STAT_SHORT_NS,          /* their time */
	OFFCPU_STAT_NOT_SAMPLED,       /* recorded without stacks (1 in N sampling) */
	OFFCPU_STAT_COUNTS_FULL,       /* block lost: the counts map was full */
	OFFCPU_STAT_COUNTS_FULL_NS,    /* its time */
	OFFCPU_STAT_STACKS_FULL,       /* stacks lost: a stacks map was full */
	OFFCPU_STAT_STACK_COLLISION,   /* stacks lost to a hash collision */
	OFFCPU_STAT_NO_STORAGE,        /* switch-out not recorded: no task storage */
	OFFCPU_STAT_MAX,
};

#endif
