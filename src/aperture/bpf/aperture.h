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

#endif
