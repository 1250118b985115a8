/* The few kernel structs the programs read, declared by hand.
 *
 * preserve_access_index makes clang emit CO-RE relocations: libbpf fixes every
 * field offset against the running kernel's BTF at load, so only the fields we
 * use need to be named here (a generated vmlinux.h would be 3 MB).
 */
#ifndef APERTURE_KERNEL_TYPES_H
#define APERTURE_KERNEL_TYPES_H

struct mm_struct;

struct thread_struct {
	unsigned long fsbase;          /* x86_64: the thread's TLS base, pthread_self() */
} __attribute__((preserve_access_index));

struct task_struct {
	struct thread_struct thread;
	struct mm_struct *mm;
	int pid;
	int tgid;
	struct task_struct *group_leader;
	char comm[16];
} __attribute__((preserve_access_index));

/* Inner maps of a map-of-maps are read as this: a table's row count is its
 * inner map's size. */
struct bpf_map {
	__u32 max_entries;
} __attribute__((preserve_access_index));

#endif
