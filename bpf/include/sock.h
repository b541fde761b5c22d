/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Socket-level load balancing for processes on the node itself (kube-proxy serves them through
 * its OUTPUT chain): connect and sendmsg pick a backend and rewrite the destination before any
 * packet exists; recvmsg and getpeername show the application the service address again.
 */
#ifndef SWITCHYARD_SOCK_H
#define SWITCHYARD_SOCK_H

#include "clock.h"
#include "lb.h"
#include "maps.h"

#define SY_ECONNREFUSED 111

/*
 * Refuses a connect or sendmsg to a frontend without endpoints that kube-proxy would REJECT.
 * With bpf_set_retval (Linux 5.18) the caller gets ECONNREFUSED, as from kube-proxy's REJECT
 * (an ICMP port unreachable answering a local SYN or datagram). The compat build (SY_NO_SET_RETVAL,
 * for 5.10 to 5.17) cannot choose the error: a cgroup hook returning 0 makes the syscall fail
 * with EPERM. Refusing still beats letting the call through: the packet would leave for the
 * service address, where nothing answers it (the host's own packets meet no tc hook of ours
 * on their way out), and the caller would wait for its timeout.
 */
static __always_inline int sy_sock_refuse(void)
{
#ifndef SY_NO_SET_RETVAL
	bpf_set_retval(-SY_ECONNREFUSED);
#endif
	return 0;
}

static __always_inline int sy_sock_in_scope(struct bpf_sock_addr *ctx)
{
	__u32 zero = 0;
	struct sy_config *cfg = bpf_map_lookup_elem(&sy_config, &zero);

	return cfg && (cfg->host_netns_cookie == 0 || cfg->host_netns_cookie == bpf_get_netns_cookie(ctx));
}

static __always_inline void sy_sock_dst(struct bpf_sock_addr *ctx, __u8 family, struct sy_tuple *t)
{
	t->family = family;
	t->proto = ctx->protocol;
	t->dport = (__be16)ctx->user_port;
	if (family == 4) {
		t->daddr[0] = ctx->user_ip4;
	} else {
		t->daddr[0] = ctx->user_ip6[0];
		t->daddr[1] = ctx->user_ip6[1];
		t->daddr[2] = ctx->user_ip6[2];
		t->daddr[3] = ctx->user_ip6[3];
	}
}

/* connect / sendmsg: 1 lets the call proceed (rewritten or not), 0 refuses it. */
static __always_inline int sy_sock_forward(struct bpf_sock_addr *ctx, __u8 family)
{
	struct sy_tuple t = {};
	struct sy_frontend_value *fe;
	struct sy_backend *be;
	struct sy_sock_key sk = {};
	__u32 backend_id = 0, rev_nat_id;

	if (!sy_sock_in_scope(ctx))
		return 1;
	sy_sock_dst(ctx, family, &t);
	if (t.proto != IPPROTO_TCP && t.proto != IPPROTO_UDP)
		return 1;
	fe = sy_frontend(&t, SY_SCOPE_INTERNAL);
	if (!fe)
		return 1;
	if (fe->count == 0) {
		if (fe->flags & SY_FE_REJECT)
			return sy_sock_refuse();
		return 1;
	}
	rev_nat_id = fe->rev_nat_id;
	be = sy_select(fe, &t, sy_now(), &backend_id);
	if (!be)
		return 1;
	if (family == 4) {
		ctx->user_ip4 = be->addr[0];
	} else {
		ctx->user_ip6[0] = be->addr[0];
		ctx->user_ip6[1] = be->addr[1];
		ctx->user_ip6[2] = be->addr[2];
		ctx->user_ip6[3] = be->addr[3];
	}
	ctx->user_port = be->port;
	sk.cookie = bpf_get_socket_cookie(ctx);
	__builtin_memcpy(sk.addr, be->addr, 16);
	sk.port = be->port;
	sk.family = family;
	bpf_map_update_elem(&sy_sock_revnat, &sk, &rev_nat_id, BPF_ANY);
	return 1;
}

/* recvmsg / getpeername: a backend address becomes the frontend the socket was opened to. */
static __always_inline int sy_sock_reverse(struct bpf_sock_addr *ctx, __u8 family)
{
	struct sy_sock_key sk = {};
	struct sy_revnat *rn;
	__u32 *rev_nat_id;

	if (!sy_sock_in_scope(ctx))
		return 1;
	sk.cookie = bpf_get_socket_cookie(ctx);
	sk.family = family;
	sk.port = (__be16)ctx->user_port;
	if (family == 4) {
		sk.addr[0] = ctx->user_ip4;
	} else {
		sk.addr[0] = ctx->user_ip6[0];
		sk.addr[1] = ctx->user_ip6[1];
		sk.addr[2] = ctx->user_ip6[2];
		sk.addr[3] = ctx->user_ip6[3];
	}
	rev_nat_id = bpf_map_lookup_elem(&sy_sock_revnat, &sk);
	if (!rev_nat_id)
		return 1;
	rn = bpf_map_lookup_elem(&sy_revnat, rev_nat_id);
	if (!rn || !rn->family)
		return 1;
	if (family == 4) {
		ctx->user_ip4 = rn->addr[0];
	} else {
		ctx->user_ip6[0] = rn->addr[0];
		ctx->user_ip6[1] = rn->addr[1];
		ctx->user_ip6[2] = rn->addr[2];
		ctx->user_ip6[3] = rn->addr[3];
	}
	ctx->user_port = rn->port;
	return 1;
}

#endif /* SWITCHYARD_SOCK_H */
