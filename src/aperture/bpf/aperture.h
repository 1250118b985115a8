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
	__s32 user_stack_id;           /* id in the stack map, or -errno */
	__s32 kernel_stack_id;         /* id in the stack map, or -errno */
	char comm[APERTURE_COMM_LEN];  /* thread name at sample time */
};

/* Read-only settings the agent writes into .rodata before load. */
struct cpu_config {
	__u32 target_tgid;             /* 0: every process; else only this tgid */
	__u32 include_idle;            /* non-zero: record idle (pid 0) samples */
};

/* Process identity recorded the first time a tgid is sampled. */
struct proc_info {
	char comm[APERTURE_COMM_LEN];  /* group leader's name = process name */
};

/* Sent through the ring buffer once per newly seen process, so the agent reads
 * /proc/PID/maps while the process still exists. */
struct proc_event {
	__u32 tgid;
	__u32 reserved;
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
	CPU_STAT_MAX,
};

/* log2 latency buckets: bucket i counts durations in [2^i, 2^(i+1)) ns;
 * bucket 0 also takes 0 ns and the last one everything from 2^39 ns (~9 min). */
#define APERTURE_HIST_BUCKETS 40

/* Syscall tracer settings, written into .rodata before load. */
struct syscall_config {
	__u32 target_tgid;             /* 0: every process */
	__u32 reserved;
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

/* Lock contention: futex waits per (process, lock address, user stack). */
struct lock_config {
	__u32 target_tgid;
	__u32 reserved;
};

struct lock_start {
	__u64 start_ns;
	__u64 uaddr;
	__u32 op;
	__u32 reserved;
};

struct lock_key {
	__u32 tgid;
	__s32 user_stack_id;
	__u64 uaddr;
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
	__u64 hist[APERTURE_HIST_BUCKETS];
};

enum lock_stat {
	LOCK_STAT_WAITS = 0,           /* futex wait operations that returned */
	LOCK_STAT_NO_START,            /* exits without a recorded enter */
	LOCK_STAT_STARTS_FULL,         /* enter state lost: the starts map was full */
	LOCK_STAT_STATS_FULL,          /* lost: the stats map was full */
	LOCK_STAT_STACK_COLLISION,     /* user stack lost to a stack-map collision */
	LOCK_STAT_PROC_EVENT_DROPPED,  /* new-process event lost: ring buffer full */
	LOCK_STAT_MAX,
};

#endif
