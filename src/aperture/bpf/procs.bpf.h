/* Announcing new processes to the agent, so it reads /proc/PID/maps while the
 * process still exists (a short-lived one may be gone by the next drain).
 * Included once by each program that records user stacks.
 */
#ifndef APERTURE_PROCS_BPF_H
#define APERTURE_PROCS_BPF_H

/* tgid -> process name; LRU so exited processes age out by themselves. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct proc_info);
} procs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1024 * 1024); /* new-process events and Python stacks */
} proc_events SEC(".maps");

/* Tell the agent about tgid; returns 1 when the event was lost. */
static __always_inline int announce_process(__u32 tgid, __u32 kind)
{
	struct proc_event *event = bpf_ringbuf_reserve(&proc_events, sizeof(*event), 0);

	if (!event)
		return 1;
	event->tgid = tgid;
	event->kind = kind;
	process_comm(&event->comm);
	bpf_ringbuf_submit(event, 0);
	return 0;
}

/* Remember tgid and announce it once; returns 1 when the announcement was lost. */
static __always_inline int note_process(__u32 tgid)
{
	struct proc_info info = {};

	if (bpf_map_lookup_elem(&procs, &tgid))
		return 0;
	process_comm(&info.comm);
	if (bpf_map_update_elem(&procs, &tgid, &info, BPF_NOEXIST))
		return 0; /* another CPU noted it first */
	return announce_process(tgid, PROC_EVENT_NEW);
}

/* An exec replaces the process image: forget its identity so the next event
 * announces it again and the agent re-reads its maps. */
SEC("tp/sched/sched_process_exec")
int on_exec(void *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;

	bpf_map_delete_elem(&procs, &tgid);
	return 0;
}

#endif
