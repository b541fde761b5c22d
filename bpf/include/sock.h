/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Socket-level load balancing for processes on the node itself (kube-proxy serves them through
 * its OUTPUT chain): connect and sendmsg pick a backend and rewrite the destination before any
 * packet exists; recvmsg and getpeername show the application the service address again.
 *
 * An AF_INET6 socket of a dual-stack process (a JVM) reaches an IPv4 service as ::ffff:a.b.c.d:
 * connect6 sees that v4-mapped address and gets ::ffff:<backend> back; a datagram it sends
 * unconnected meets sendmsg4 instead (udpv6_sendmsg hands v4-mapped destinations to the IPv4
 * path), and recvmsg6 / getpeername6 see ::ffff:<backend>. Every map is keyed by the IPv4 form,
 * so all of these hooks agree.
 *
 * An unconnected UDP socket keeps one backend per frontend (sy_sock_backend), as a conntrack
 * flow would keep it: kept while the backend belongs to the frontend's service port (a
 * terminating one too, as flows keep theirs), chosen again once it left.
 */
#ifndef SWITCHYARD_SOCK_H
#define SWITCHYARD_SOCK_H

#include "clock.h"
#include "lb.h"
#include "maps.h"
#include "sock-maps.h"

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

/*
 * The address the call names, in t->daddr / t->dport (family 4 for a v4-mapped IPv6 address);
 * returns whether it was v4-mapped.
 */
static __always_inline int sy_sock_dst(struct bpf_sock_addr *ctx, __u8 family, struct sy_tuple *t)
{
	t->family = family;
	t->proto = ctx->protocol;
	t->dport = (__be16)ctx->user_port;
	if (family == 4) {
		t->daddr[0] = ctx->user_ip4;
		return 0;
	}
	t->daddr[0] = ctx->user_ip6[0];
	t->daddr[1] = ctx->user_ip6[1];
	t->daddr[2] = ctx->user_ip6[2];
	t->daddr[3] = ctx->user_ip6[3];
	if (t->daddr[0] == 0 && t->daddr[1] == 0 && t->daddr[2] == bpf_htonl(0xffff)) {
		t->family = 4;
		t->daddr[0] = t->daddr[3];
		t->daddr[2] = 0;
		t->daddr[3] = 0;
		return 1;
	}
	return 0;
}

/* Writes addr:port (family 4 or 6 as in addr) back as the hook's family shows it. */
static __always_inline void sy_sock_set_dst(struct bpf_sock_addr *ctx, __u8 family, int mapped, const __be32 *addr,
					    __be16 port)
{
	if (family == 4) {
		ctx->user_ip4 = addr[0];
	} else if (mapped) {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0xffff);
		ctx->user_ip6[3] = addr[0];
	} else {
		ctx->user_ip6[0] = addr[0];
		ctx->user_ip6[1] = addr[1];
		ctx->user_ip6[2] = addr[2];
		ctx->user_ip6[3] = addr[3];
	}
	ctx->user_port = port;
}

static __always_inline struct sy_sock_revnat_value *sy_sock_revnat_get(__u8 proto, const struct sy_sock_key *k)
{
	if (proto == IPPROTO_TCP)
		return bpf_map_lookup_elem(&sy_sock_revnat_tcp, k);
	return bpf_map_lookup_elem(&sy_sock_revnat_udp, k);
}

static __always_inline void sy_sock_revnat_put(__u8 proto, const struct sy_sock_key *k,
					       const struct sy_sock_revnat_value *v)
{
	if (proto == IPPROTO_TCP)
		bpf_map_update_elem(&sy_sock_revnat_tcp, k, v, BPF_ANY);
	else
		bpf_map_update_elem(&sy_sock_revnat_udp, k, v, BPF_ANY);
}

/* The backend this UDP socket already sends the frontend's datagrams to, if it still serves it. */
static __always_inline struct sy_backend *sy_sock_kept(const struct sy_frontend_value *fe, const struct sy_sock_key *fk,
						       __u32 *backend_id)
{
	struct sy_backend *be;
	__u32 *id = bpf_map_lookup_elem(&sy_sock_backend, fk);

	if (!id)
		return NULL;
	be = sy_backend(*id);
	if (!be || be->service_id != fe->service_id)
		return NULL;
	*backend_id = *id;
	return be;
}

/* connect / sendmsg: 1 lets the call proceed (rewritten or not), 0 refuses it. */
static __always_inline int sy_sock_forward(struct bpf_sock_addr *ctx, __u8 family)
{
	struct sy_tuple t = {};
	struct sy_frontend_value *fe;
	struct sy_backend *be = NULL;
	struct sy_sock_key fk = {}, sk = {};
	struct sy_sock_revnat_value rv = {};
	__u32 backend_id = 0;
	int mapped, kept = 0;

	if (!sy_sock_in_scope(ctx))
		return 1;
	mapped = sy_sock_dst(ctx, family, &t);
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
	fk.cookie = bpf_get_socket_cookie(ctx);
	if (t.proto == IPPROTO_UDP) {
		__builtin_memcpy(fk.addr, t.daddr, 16);
		fk.port = t.dport;
		fk.family = t.family;
		be = sy_sock_kept(fe, &fk, &backend_id);
		kept = be != NULL;
	}
	if (!be)
		be = sy_select(fe, &t, sy_now(), &backend_id);
	if (!be)
		return 1;
	if (t.proto == IPPROTO_UDP && !kept)
		bpf_map_update_elem(&sy_sock_backend, &fk, &backend_id, BPF_ANY);
	sy_sock_set_dst(ctx, family, mapped, be->addr, be->port);
	sk.cookie = fk.cookie;
	__builtin_memcpy(sk.addr, be->addr, 16);
	sk.port = be->port;
	sk.family = be->family;
	/* A kept backend's entry is rewritten only if LRU evicted it (each datagram would churn it). */
	if (kept && sy_sock_revnat_get(t.proto, &sk))
		return 1;
	rv.rev_nat_id = fe->rev_nat_id;
	rv.backend_id = backend_id;
	rv.service_id = fe->service_id;
	sy_sock_revnat_put(t.proto, &sk, &rv);
	return 1;
}

/* recvmsg / getpeername: a backend address becomes the frontend the socket was opened to. */
static __always_inline int sy_sock_reverse(struct bpf_sock_addr *ctx, __u8 family)
{
	struct sy_tuple t = {};
	struct sy_sock_key sk = {};
	struct sy_sock_revnat_value *v;
	struct sy_revnat *rn;
	int mapped;

	if (!sy_sock_in_scope(ctx))
		return 1;
	mapped = sy_sock_dst(ctx, family, &t);
	sk.cookie = bpf_get_socket_cookie(ctx);
	sk.family = t.family;
	sk.port = t.dport;
	__builtin_memcpy(sk.addr, t.daddr, 16);
	v = sy_sock_revnat_get(t.proto, &sk);
	if (!v)
		return 1;
	rn = bpf_map_lookup_elem(&sy_revnat, &v->rev_nat_id);
	if (!rn || rn->family != t.family)
		return 1;
	sy_sock_set_dst(ctx, family, mapped, rn->addr, rn->port);
	return 1;
}

#endif /* SWITCHYARD_SOCK_H */
