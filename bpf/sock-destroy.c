// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Socket iterators that destroy the node's sockets connected to a backend that is gone, as
 * Cilium's socket-LB termination does: a host process whose connect() the hooks translated
 * (include/sock.h) would otherwise keep talking to an address that left the service, the TCP
 * connection hanging until its retransmissions time out, the connected UDP socket sending into
 * nothing forever. The agent runs both iterators after a sync that removed backends
 * (control/backends/ebpf/sockets.ts); each writes one struct sy_sock_key per socket it destroyed.
 *
 * Which sockets: only those the hooks translated, found by their cookie and peer in
 * sy_sock_revnat_tcp / sy_sock_revnat_udp; a process that connected to a pod address itself has
 * no entry and is never touched. Such a socket is destroyed when the backend its entry names is
 * no longer in sy_backends with the same address, port, protocol and service port: the endpoint
 * left the service (or the service went). Terminating backends keep their sockets, as they keep
 * their flows. The check reads the datapath's own maps, so there is no list of removed backends
 * to keep in step with them.
 *
 * bpf_sock_destroy is a kfunc of Linux 6.5; this object loads only where the kernel has it (the
 * datapath is a separate object and loads everywhere). The kernel aborts a TCP socket with a RST
 * to its peer (the caller sees ECONNABORTED) and a UDP socket with ECONNABORTED, disconnected.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "include/maps.h"
#include "include/sock-maps.h"

#define SY_AF_INET 2
#define SY_AF_INET6 10
#define SY_TCP_LISTEN 10
#define SY_TCP_ESTABLISHED 1
#define SY_TCP_SYN_SENT 2
#define SY_TCP_CLOSE_WAIT 8

/* The kernel's types, as far as read here; CO-RE relocates every field (no vmlinux.h needed). */
struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
} __attribute__((preserve_access_index));

struct sock_common {
	__be32 skc_daddr;
	__be16 skc_dport;
	unsigned short skc_family;
	volatile unsigned char skc_state;
	struct in6_addr skc_v6_daddr;
} __attribute__((preserve_access_index));

struct udp_sock;

struct bpf_iter__tcp {
	struct bpf_iter_meta *meta;
	struct sock_common *sk_common;
} __attribute__((preserve_access_index));

struct bpf_iter__udp {
	struct bpf_iter_meta *meta;
	struct udp_sock *udp_sk;
} __attribute__((preserve_access_index));

extern int bpf_sock_destroy(struct sock_common *sk) __ksym;

/* The socket's peer in the form the hooks key it by (an IPv4 peer of an IPv6 socket as IPv4). */
static __always_inline int sy_peer(struct sock_common *skc, struct sy_sock_key *k)
{
	unsigned short family = skc->skc_family;

	if (family == SY_AF_INET) {
		k->family = 4;
		k->addr[0] = skc->skc_daddr;
	} else if (family == SY_AF_INET6) {
		__be32 a0 = skc->skc_v6_daddr.in6_u.u6_addr32[0];
		__be32 a1 = skc->skc_v6_daddr.in6_u.u6_addr32[1];
		__be32 a2 = skc->skc_v6_daddr.in6_u.u6_addr32[2];
		__be32 a3 = skc->skc_v6_daddr.in6_u.u6_addr32[3];

		if (a0 == 0 && a1 == 0 && a2 == bpf_htonl(0xffff)) {
			k->family = 4;
			k->addr[0] = a3;
		} else {
			k->family = 6;
			k->addr[0] = a0;
			k->addr[1] = a1;
			k->addr[2] = a2;
			k->addr[3] = a3;
		}
	} else {
		return -1;
	}
	k->port = skc->skc_dport;
	return k->port == 0 ? -1 : 0; /* no peer: an unconnected UDP socket */
}

/* Whether the backend an entry names is still there, serving the same service port. */
static __always_inline int sy_backend_stays(const struct sy_sock_revnat_value *v, const struct sy_sock_key *k, __u8 proto)
{
	__u32 id = v->backend_id;
	struct sy_backend *be = bpf_map_lookup_elem(&sy_backends, &id);

	return be && be->family == k->family && be->proto == proto && be->port == k->port && be->service_id == v->service_id &&
	       be->addr[0] == k->addr[0] && be->addr[1] == k->addr[1] && be->addr[2] == k->addr[2] && be->addr[3] == k->addr[3];
}

SEC("iter/tcp")
int sy_sock_destroy_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct sy_sock_revnat_value *v;
	struct sy_sock_key k = {};
	unsigned char state;

	if (!skc)
		return 0;
	/* Full sockets with a peer only: not listeners, request or TIME_WAIT sockets. */
	state = skc->skc_state;
	if (state != SY_TCP_ESTABLISHED && state != SY_TCP_SYN_SENT && state != SY_TCP_CLOSE_WAIT)
		return 0;
	if (sy_peer(skc, &k) < 0)
		return 0;
	k.cookie = bpf_get_socket_cookie(skc);
	v = bpf_map_lookup_elem(&sy_sock_revnat_tcp, &k);
	if (!v || v->backend_id == 0 || sy_backend_stays(v, &k, IPPROTO_TCP))
		return 0;
	if (bpf_sock_destroy(skc) == 0)
		bpf_seq_write(ctx->meta->seq, &k, sizeof(k));
	bpf_map_delete_elem(&sy_sock_revnat_tcp, &k);
	return 0;
}

SEC("iter/udp")
int sy_sock_destroy_udp(struct bpf_iter__udp *ctx)
{
	struct sock_common *skc = (struct sock_common *)ctx->udp_sk;
	struct sy_sock_revnat_value *v;
	struct sy_sock_key k = {};

	if (!skc)
		return 0;
	if (sy_peer(skc, &k) < 0)
		return 0;
	k.cookie = bpf_get_socket_cookie(skc);
	v = bpf_map_lookup_elem(&sy_sock_revnat_udp, &k);
	if (!v || v->backend_id == 0 || sy_backend_stays(v, &k, IPPROTO_UDP))
		return 0;
	if (bpf_sock_destroy(skc) == 0)
		bpf_seq_write(ctx->meta->seq, &k, sizeof(k));
	bpf_map_delete_elem(&sy_sock_revnat_udp, &k);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
