/* The few kernel structs the programs read, declared by hand.
 *
 * preserve_access_index makes clang emit CO-RE relocations: libbpf fixes every
 * field offset against the running kernel's BTF at load, so only the fields we
 * use need to be named here (a generated vmlinux.h would be 3 MB).
 */
#ifndef APERTURE_KERNEL_TYPES_H
#define APERTURE_KERNEL_TYPES_H

/* x86_64 and arm64 both keep the vDSO's address in the mm's context. */
typedef struct __attribute__((preserve_access_index)) {
	void *vdso;
} mm_context_t;

struct mm_struct {
	mm_context_t context;
} __attribute__((preserve_access_index));

struct thread_struct {
	unsigned long fsbase;          /* x86_64: the thread's TLS base, pthread_self() */
} __attribute__((preserve_access_index));

/* Which mount namespace and root a process sees files in (the agent takes a
 * process's paths as its own only when both are the agent's). */
struct ns_common {
	unsigned int inum;             /* the inode number /proc/PID/ns/mnt shows */
} __attribute__((preserve_access_index));

struct mnt_namespace {
	struct ns_common ns;
} __attribute__((preserve_access_index));

struct nsproxy {
	struct mnt_namespace *mnt_ns;
} __attribute__((preserve_access_index));

struct super_block;
struct inode;

struct vfsmount {
	struct super_block *mnt_sb;
} __attribute__((preserve_access_index));

struct dentry {
	struct inode *d_inode;
} __attribute__((preserve_access_index));

struct path {
	struct vfsmount *mnt;
	struct dentry *dentry;
} __attribute__((preserve_access_index));

struct fs_struct {
	struct path root;
} __attribute__((preserve_access_index));

struct task_struct {
	struct thread_struct thread;
	struct mm_struct *mm;
	struct nsproxy *nsproxy;
	struct fs_struct *fs;
	int pid;
	int tgid;
	struct task_struct *group_leader;
	char comm[16];
} __attribute__((preserve_access_index));

/* What a mapping's file is, as /proc/PID/maps shows it (device and inode). */
struct super_block {
	unsigned int s_dev;            /* dev_t: major << 20 | minor */
} __attribute__((preserve_access_index));

struct inode {
	unsigned long i_ino;
	struct super_block *i_sb;
} __attribute__((preserve_access_index));

struct file {
	struct inode *f_inode;
} __attribute__((preserve_access_index));

struct vm_area_struct {
	unsigned long vm_start;
	unsigned long vm_end;
	unsigned long vm_flags;
	unsigned long vm_pgoff;
	struct file *vm_file;
	struct mm_struct *vm_mm;
} __attribute__((preserve_access_index));

#define VM_EXEC 0x4UL
#define PAGE_SHIFT 12

/* The open-coded iterator over a task's mappings (kernel 6.7+). */
struct bpf_iter_task_vma {
	__u64 __opaque[1];
} __attribute__((aligned(8)));

extern int bpf_iter_task_vma_new(struct bpf_iter_task_vma *it, struct task_struct *task,
				 __u64 addr) __attribute__((weak)) __ksym;
extern struct vm_area_struct *bpf_iter_task_vma_next(struct bpf_iter_task_vma *it)
	__attribute__((weak)) __ksym;
extern void bpf_iter_task_vma_destroy(struct bpf_iter_task_vma *it) __attribute__((weak)) __ksym;

/* Inner maps of a map-of-maps are read as this: a table's row count is its
 * inner map's size. */
struct bpf_map {
	__u32 max_entries;
} __attribute__((preserve_access_index));

#endif
