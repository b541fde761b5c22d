/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * XDP on external devices: for NodePort, LoadBalancer and external-IP frontends it drops what
 * the datapath would drop (source ranges, Local policy without a local endpoint) before an skb
 * exists, and translates flows that need no SNAT (externalTrafficPolicy Local) in place. Everything
 * else — answers, SNAT, rejects, ClusterIP — passes to the tc program, which shares these maps.
 */
#ifndef SWITCHYARD_XDP_H
#define SWITCHYARD_XDP_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "clock.h"
#include "csum.h"
#include "ct.h"
#include "lb.h"
#include "maps.h"

#define SY_FE_EXTERNAL_KINDS (SY_FE_NODE_PORT | SY_FE_LOAD_BALANCER | SY_FE_EXTERNAL_IP)

/* Incremental checksum update over len bytes (a multiple of 4) changing from -> to. */
/* XDP frames carry complete checksums (no CHECKSUM_PARTIAL), so every update is arithmetic. */
static __always_inline void sy_csum_update(__sum16 *sum, __u32 diff)
{
	*sum = sy_csum_apply(*sum, diff);
}

struct sy_xdp_pkt {
	struct iphdr *ip4;
	struct ipv6hdr *ip6;
	__be16 *ports;  /* source, destination */
	__sum16 *l4sum; /* NULL: a UDP/IPv4 datagram without checksum */
};

/* Parses an IPv4 (no options) or IPv6 TCP/UDP packet with direct packet access; not fragments (an
 * IPv6 fragment header is not TCP/UDP either). */
static __always_inline int sy_xdp_parse(struct xdp_md *ctx, struct sy_tuple *t, struct sy_xdp_pkt *p)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	void *l4;
	__u8 proto;

	if ((void *)(eth + 1) > end)
		return -1;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		/* Fragments (MF, or an offset) are tc's: it keeps a datagram's fragments together. */
		if ((void *)(ip + 1) > end || ip->ihl != 5 || (ip->frag_off & bpf_htons(0x3fff)))
			return -1;
		t->family = 4;
		t->saddr[0] = ip->saddr;
		t->daddr[0] = ip->daddr;
		proto = ip->protocol;
		p->ip4 = ip;
		l4 = ip + 1;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > end)
			return -1;
		t->family = 6;
		__builtin_memcpy(t->saddr, &ip6->saddr, 16);
		__builtin_memcpy(t->daddr, &ip6->daddr, 16);
		proto = ip6->nexthdr;
		p->ip6 = ip6;
		l4 = ip6 + 1;
	} else {
		return -1;
	}
	if (proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > end)
			return -1;
		p->l4sum = &th->check;
		t->tcp_flags = ((__u8 *)th)[13];
	} else if (proto == IPPROTO_UDP) {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > end)
			return -1;
		p->l4sum = (uh->check == 0 && t->family == 4) ? NULL : &uh->check;
	} else {
		return -1;
	}
	p->ports = l4;
	t->proto = proto;
	t->sport = p->ports[0];
	t->dport = p->ports[1];
	return 0;
}

/* Rewrites the destination to addr:port, checksums included. */
static __always_inline void sy_xdp_dnat(struct sy_xdp_pkt *p, struct sy_tuple *t, __be32 *addr, __be16 port)
{
	__be32 old_port = p->ports[1], new_port = port;

	if (t->family == 4) {
		__u32 diff = sy_csum_diff4(t->daddr[0], addr[0]);

		sy_csum_update(&p->ip4->check, diff);
		if (p->l4sum)
			sy_csum_update(p->l4sum, diff);
		p->ip4->daddr = addr[0];
	} else {
		if (p->l4sum)
			sy_csum_update(p->l4sum, sy_csum_diff16(t->daddr, addr));
		__builtin_memcpy(&p->ip6->daddr, addr, 16);
	}
	if (p->l4sum) {
		sy_csum_update(p->l4sum, sy_csum_diff4(old_port, new_port));
		if (t->proto == IPPROTO_UDP && *p->l4sum == 0)
			*p->l4sum = 0xffff; /* 0 would mean "no checksum" */
	}
	p->ports[1] = port;
}

static __always_inline int sy_xdp_handle(struct xdp_md *ctx)
{
	struct sy_tuple t = {};
	struct sy_xdp_pkt p = {};
	struct sy_frontend_value *fe;
	struct sy_ct_key fk = {}, rk = {};
	struct sy_ct_value *cv, nv = {};
	struct sy_backend *be = NULL;
	struct sy_backend target;
	const struct sy_config *cfg;
	__u32 zero = 0, backend_id = 0;
	__u64 now;

	if (sy_xdp_parse(ctx, &t, &p) < 0)
		return XDP_PASS;
	/* The frontend first: most packets on an external device (answers, pod-to-pod traffic of
	 * other nodes) are for none, and leave after this one lookup. */
	fe = sy_frontend(&t, SY_SCOPE_EXTERNAL);
	if (!fe || !(fe->flags & SY_FE_EXTERNAL_KINDS))
		return XDP_PASS;
	cfg = bpf_map_lookup_elem(&sy_config, &zero);
	now = sy_now();
	/* An established flow keeps its backend before any check, as in tc: a change of source
	 * ranges does not cut flows already open. SNAT'd flows are tc's. */
	sy_ct_key_of(&t, &fk);
	cv = sy_ct_lookup(&fk, cfg, now);
	if (!cv && t.proto == IPPROTO_TCP) {
		/* A handshake still completing: a SYN again keeps its backend, the client's ACK
		 * makes the flow established. */
		if (t.tcp_flags & SY_TCP_SYN) {
			cv = bpf_map_lookup_elem(&sy_ct_syn, &fk);
			if (cv && sy_ct_expired(cv, t.proto, cfg, now))
				cv = NULL;
		} else {
			cv = sy_ct_complete(&fk, cfg, now);
		}
	}
	if (cv && sy_ct_reopened(cv, t.proto, t.tcp_flags)) {
		/* A new connection on a closed flow's tuple: the old entry must not shadow it. */
		sy_ct_del(&fk);
		cv = NULL;
	}
	if (cv && (cv->flags & (SY_CT_SNAT | SY_CT_REPLY | SY_CT_HOST)))
		return XDP_PASS;
	if (cv) {
		be = sy_backend(cv->backend_id);
		if (be && be->service_id == cv->service_id) {
			sy_ct_touch(&fk, cv, t.tcp_flags, now);
			sy_count(cv->service_id, ctx->data_end - ctx->data);
			sy_xdp_dnat(&p, &t, be->addr, be->port);
			return XDP_PASS;
		}
		/* Its backend is gone: the flow moves to a live one, chosen below. */
	}
	if (!sy_source_allowed(fe, &t)) {
		sy_count(fe->service_id, ctx->data_end - ctx->data);
		sy_drop_count(SY_DROP_SOURCE_RANGE);
		return XDP_DROP;
	}
	if (fe->count == 0) {
		if (fe->flags & SY_FE_REJECT)
			return XDP_PASS; /* tc writes the answer */
		sy_drop_count((fe->flags & SY_FE_LOCAL) ? SY_DROP_LOCAL_NO_ENDPOINT : SY_DROP_NO_BACKEND);
		return XDP_DROP;
	}
	if (fe->flags & SY_FE_MASQUERADE)
		return XDP_PASS; /* SNAT and its redirect live in tc */
	be = sy_select(fe, &t, now, &backend_id);
	if (!be)
		return XDP_PASS;
	target = *be;
	nv.backend_id = backend_id;
	nv.rev_nat_id = fe->rev_nat_id;
	nv.service_id = fe->service_id;
	nv.created = now;
	nv.last_seen = now;
	__builtin_memcpy(rk.saddr, target.addr, 16);
	__builtin_memcpy(rk.daddr, t.saddr, 16);
	rk.sport = target.port;
	rk.dport = t.sport;
	rk.proto = t.proto;
	rk.family = t.family;
	/* The reply entry, then the forward one, from one value buffer (the stack is bounded). A
	 * client port taken towards this backend (a clash) is left to tc, which gives it another. */
	nv.flags = SY_CT_REPLY;
	if (sy_ct_put_reply(&rk, &nv, fe->rev_nat_id, cfg, now) != 0)
		return XDP_PASS;
	nv.flags = 0;
	if (sy_ct_put_new(&fk, &nv, BPF_ANY) < 0)
		return XDP_PASS;
	sy_count(fe->service_id, ctx->data_end - ctx->data);
	sy_xdp_dnat(&p, &t, target.addr, target.port);
	return XDP_PASS;
}

#endif /* SWITCHYARD_XDP_H */
