// SPDX-License-Identifier: GPL-2.0
/* The floor of syscall tracing: tp_btf sys_enter/sys_exit programs that do
 * nothing. Whatever a tracer adds beyond this is the cost of its own work
 * (start time, map updates); this is the cost of being attached at all.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("tp_btf/sys_enter")
int empty_sys_enter(__u64 *ctx)
{
	return 0;
}

SEC("tp_btf/sys_exit")
int empty_sys_exit(__u64 *ctx)
{
	return 0;
}
