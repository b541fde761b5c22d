// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Tells user space a network namespace's cookie on kernels without SO_NETNS_COOKIE (5.14): a
 * socket created by a process of the cgroup this program is attached to stores its namespace's
 * cookie, as bpf_get_netns_cookie (5.7) reads it for the socket hooks. control/bpf/netns-cookie.ts
 * runs it once, in a throwaway cgroup.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} sy_netns_cookie_seen SEC(".maps");

SEC("cgroup/sock_create")
int sy_netns_cookie_learn(struct bpf_sock *ctx)
{
	__u32 zero = 0;
	__u64 cookie = bpf_get_netns_cookie(ctx);

	bpf_map_update_elem(&sy_netns_cookie_seen, &zero, &cookie, BPF_ANY);
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
