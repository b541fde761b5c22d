/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * ICMP and ICMPv6 errors about translated flows (destination/port unreachable, fragmentation
 * needed / packet too big, time exceeded, parameter problem), translated as netfilter's
 * nf_nat_icmp_reply_translation does: the quoted (inner) header is the packet as it left one side
 * of the NAT, so its reverse is the tuple of a tracked entry, and the error is rewritten as the
 * other side must see it:
 *   - an error about a packet that went to a backend (the backend's port is closed): the reverse
 *     of the quote is the flow's reply entry; the quote becomes client -> frontend, the error goes
 *     to the client from the frontend (when the backend itself sent it);
 *   - an error about an answer sent back to the client (a router on the client's path needs a
 *     smaller MTU): the reverse of the quote is the forward entry; the quote becomes backend ->
 *     SNAT address (or client), the error goes to the backend.
 * Outer addresses, quoted addresses and ports, the quoted IP header's checksum, the quoted TCP/UDP
 * checksum where the quote holds it, and the ICMP checksum are all updated. Only non-TCP/UDP
 * packets come here, so the established path pays nothing for it.
 *
 * Limits: the outer and the quoted IPv4 header carry no options and the IPv6 ones no extension
 * headers (such errors pass untouched, as before).
 */
#ifndef SWITCHYARD_ICMP_H
#define SWITCHYARD_ICMP_H

#include <linux/icmpv6.h>
#include <linux/pkt_cls.h>

#include "csum.h"
#include "ct.h"
#include "lb.h"
#include "parse.h"
#include "reject.h"

/* The caller sends the packet to its next hop (sy_fib_redirect) with t describing its outer header. */
#define SY_ICMP_REDIRECT (-2)

#define SY_ICMP_TIME_EXCEEDED 11
#define SY_ICMP_PARAMETERPROB 12

/* The first bytes of an IPv4 error: outer IP, ICMP, quoted IP, the quote's first 8 L4 bytes. */
struct sy_icmp4_err {
	struct iphdr ip;
	struct sy_icmphdr icmp;
	struct iphdr in;
	__be16 sport;
	__be16 dport;
	__be16 w2; /* UDP: length; TCP: sequence number */
	__be16 w3; /* UDP: checksum */
};

struct sy_icmp6_err {
	struct ipv6hdr ip;
	struct icmp6hdr icmp;
	struct ipv6hdr in;
	__be16 sport;
	__be16 dport;
	__be16 w2;
	__be16 w3;
};

/* Where the quote's L4 checksum is, relative to its L4 header. */
#define SY_TCP_CSUM_AT 16
#define SY_UDP_CSUM_AT 6

static __always_inline __u32 sy_csum_diff2(__be16 from, __be16 to)
{
	return (__u32)(__u16)~from + (__u16)to;
}

struct sy_icmp_nat {
	__be32 src[4]; /* the quote's new source */
	__be32 dst[4]; /* the quote's new destination */
	__be16 sport;
	__be16 dport;
	int redirect; /* the error's new source is a node address: send it to its next hop */
};

/*
 * The rewrite for a quote whose reverse is the tracked tuple k (entry v): the quote becomes the
 * reverse of what the entry makes of k. 0, or -1 when the entry names nothing any more.
 */
static __always_inline int sy_icmp_plan(const struct sy_ct_key *k, const struct sy_ct_value *v, struct sy_icmp_nat *n)
{
	__u32 id;

	if (v->flags & SY_CT_REPLY) {
		struct sy_revnat *rn;

		id = v->rev_nat_id;
		rn = bpf_map_lookup_elem(&sy_revnat, &id);
		if (!rn || !rn->family)
			return -1;
		/* k: backend -> client (or SNAT address); it becomes frontend -> client. */
		__builtin_memcpy(n->dst, rn->addr, 16);
		n->dport = rn->port;
		if (v->flags & SY_CT_SNAT) {
			__builtin_memcpy(n->src, v->nat_addr, 16);
			n->sport = v->nat_port;
		} else {
			__builtin_memcpy(n->src, k->daddr, 16);
			n->sport = k->dport;
		}
		n->redirect = rn->flags & SY_RN_NODE_ADDRESS;
	} else {
		struct sy_backend *be = sy_backend(v->backend_id);

		if (!be || be->service_id != v->service_id)
			return -1;
		/* k: client -> frontend; it becomes client (or SNAT address) -> backend. */
		__builtin_memcpy(n->src, be->addr, 16);
		n->sport = be->port;
		if (v->flags & SY_CT_SNAT) {
			__builtin_memcpy(n->dst, v->nat_addr, 16);
			n->dport = v->nat_port;
		} else {
			__builtin_memcpy(n->dst, k->saddr, 16);
			n->dport = k->sport;
		}
		n->redirect = (v->flags & SY_CT_SNAT) != 0;
	}
	return 0;
}

/* An error's working set, in sy_scratch (too big for the stack beside sy_handle's frame). */
struct sy_icmp_work {
	union {
		struct sy_icmp4_err e4;
		struct sy_icmp6_err e6;
	};
	struct sy_icmp_nat n;
	struct sy_ct_key k;
	__be32 in_src[4];
	__be32 in_dst[4];
	__be32 old_saddr[4];
	__be32 old_daddr[4];
};

_Static_assert(sizeof(struct sy_icmp_work) <= sizeof(struct sy_scratch), "sy_scratch holds an ICMP error's working set");

/* The tracked entry the quote answers to: its reverse, looked up as it would arrive. */
static __always_inline struct sy_ct_value *sy_icmp_entry(struct sy_ct_key *k, const __be32 *in_src, const __be32 *in_dst,
							 __be16 in_sport, __be16 in_dport, __u8 proto, __u8 family,
							 const struct sy_config *cfg, __u64 now)
{
	struct sy_ct_value *v;

	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return NULL;
	__builtin_memcpy(k->saddr, in_dst, 16);
	__builtin_memcpy(k->daddr, in_src, 16);
	k->sport = in_dport;
	k->dport = in_sport;
	k->proto = proto;
	k->family = family;
	v = sy_ct_lookup_any(k, cfg, now);
	/* Errors about a flow netfilter translates (SY_CT_HOST) are netfilter's to translate. */
	return (v && (v->flags & SY_CT_HOST)) ? NULL : v;
}

/*
 * The quote's TCP checksum lies beyond the 8 bytes every error carries; most errors quote more
 * (Linux quotes up to 576 bytes for IPv4, a minimum MTU's worth for IPv6). Updated where present.
 */
static __always_inline int sy_icmp_quoted_tcp_csum(struct __sk_buff *skb, __u32 off, __u32 diff, __u32 *icmp_diff)
{
	__sum16 check, next;

	if (skb->len < off + 2)
		return 0;
	if (bpf_skb_load_bytes(skb, off, &check, 2) < 0)
		return -1;
	next = sy_csum_apply(check, diff);
	*icmp_diff += sy_csum_diff2(check, next);
	return bpf_skb_store_bytes(skb, off, &next, 2, BPF_F_RECOMPUTE_CSUM) < 0 ? -1 : 0;
}

/*
 * Whether an error about flow entry v is translated by this program, as the flow's own answers
 * are (sy_handle): egress programs translate errors that travel as answers do; ingress programs
 * those about the client's direction, and answers' errors only where the flow was translated to a
 * node address (past the stack both ways), so netfilter sees every other error as the backend's
 * packets, the tuple its conntrack relates the error to.
 */
static __always_inline int sy_icmp_here(const struct sy_ct_value *v, int lookup_services)
{
	if (!(v->flags & SY_CT_REPLY))
		return lookup_services;
	return !lookup_services || (v->flags & SY_CT_NODE_SNAT);
}

static __always_inline int sy_icmp4_error(struct __sk_buff *skb, struct sy_icmp_work *w, struct sy_tuple *t,
					  const struct sy_config *cfg, __u64 now, int lookup_services)
{
	struct sy_icmp4_err *e = &w->e4;
	struct sy_icmp_nat *n = &w->n;
	struct sy_ct_value *v;
	__u32 addr_diff, l4_diff, icmp_diff;
	__be32 old_saddr, old_daddr;
	__sum16 old_check;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, e, sizeof(*e)) < 0)
		return TC_ACT_UNSPEC;
	if (e->ip.ihl != 5 || e->ip.protocol != IPPROTO_ICMP || (e->ip.frag_off & bpf_htons(0x1fff)) || e->in.ihl != 5)
		return TC_ACT_UNSPEC;
	if (e->icmp.type != SY_ICMP_DEST_UNREACH && e->icmp.type != SY_ICMP_TIME_EXCEEDED &&
	    e->icmp.type != SY_ICMP_PARAMETERPROB)
		return TC_ACT_UNSPEC;
	__builtin_memset(w->in_src, 0, 16);
	__builtin_memset(w->in_dst, 0, 16);
	w->in_src[0] = e->in.saddr;
	w->in_dst[0] = e->in.daddr;
	v = sy_icmp_entry(&w->k, w->in_src, w->in_dst, e->sport, e->dport, e->in.protocol, 4, cfg, now);
	if (!v || !sy_icmp_here(v, lookup_services))
		return TC_ACT_UNSPEC;
	if (sy_icmp_plan(&w->k, v, n) < 0)
		return TC_ACT_UNSPEC;

	/* The quote: addresses (its IP checksum and the pseudo-header of its L4 checksum), ports. */
	addr_diff = sy_csum_fold32((__u64)sy_csum_diff4(e->in.saddr, n->src[0]) + sy_csum_diff4(e->in.daddr, n->dst[0]));
	l4_diff = sy_csum_fold32((__u64)addr_diff + sy_csum_diff2(e->sport, n->sport) + sy_csum_diff2(e->dport, n->dport));
	old_check = e->in.check;
	e->in.check = sy_csum_apply(old_check, addr_diff);
	icmp_diff = sy_csum_fold32((__u64)l4_diff + sy_csum_diff2(old_check, e->in.check));
	if (e->in.protocol == IPPROTO_UDP && e->w3) {
		__sum16 c = sy_csum_apply(e->w3, l4_diff);

		if (!c)
			c = 0xffff;
		icmp_diff = sy_csum_fold32((__u64)icmp_diff + sy_csum_diff2(e->w3, c));
		e->w3 = c;
	}
	if (e->in.protocol == IPPROTO_TCP &&
	    sy_icmp_quoted_tcp_csum(skb, ETH_HLEN + sizeof(*e) - 8 + SY_TCP_CSUM_AT, l4_diff, &icmp_diff) < 0)
		goto drop;
	e->in.saddr = n->src[0];
	e->in.daddr = n->dst[0];
	e->sport = n->sport;
	e->dport = n->dport;
	e->icmp.checksum = sy_csum_apply(e->icmp.checksum, icmp_diff);

	/* The error goes to the quote's new source; from its new destination when that sent it. */
	old_saddr = e->ip.saddr;
	old_daddr = e->ip.daddr;
	e->ip.daddr = n->src[0];
	if (old_saddr == w->in_dst[0])
		e->ip.saddr = n->dst[0];
	else
		n->redirect = 0;
	e->ip.check = sy_csum_apply(e->ip.check, sy_csum_fold32((__u64)sy_csum_diff4(old_saddr, e->ip.saddr) +
								   sy_csum_diff4(old_daddr, e->ip.daddr)));
	if (bpf_skb_store_bytes(skb, ETH_HLEN, e, sizeof(*e), BPF_F_RECOMPUTE_CSUM) < 0)
		goto drop;
	t->family = 4;
	t->proto = IPPROTO_ICMP;
	t->saddr[0] = e->ip.saddr;
	t->daddr[0] = e->ip.daddr;
	return n->redirect ? SY_ICMP_REDIRECT : TC_ACT_OK;
drop:
	sy_drop_count(SY_DROP_UNSUPPORTED);
	return TC_ACT_SHOT;
}

static __always_inline int sy_icmp6_error(struct __sk_buff *skb, struct sy_icmp_work *w, struct sy_tuple *t,
					  const struct sy_config *cfg, __u64 now, int lookup_services)
{
	struct sy_icmp6_err *e = &w->e6;
	struct sy_icmp_nat *n = &w->n;
	struct sy_ct_value *v;
	__u32 l4_diff, icmp_diff;
	__u8 type;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, e, sizeof(*e)) < 0)
		return TC_ACT_UNSPEC;
	type = e->icmp.icmp6_type;
	if (e->ip.nexthdr != IPPROTO_ICMPV6 || type < ICMPV6_DEST_UNREACH || type > ICMPV6_PARAMPROB)
		return TC_ACT_UNSPEC;
	__builtin_memcpy(w->in_src, &e->in.saddr, 16);
	__builtin_memcpy(w->in_dst, &e->in.daddr, 16);
	v = sy_icmp_entry(&w->k, w->in_src, w->in_dst, e->sport, e->dport, e->in.nexthdr, 6, cfg, now);
	if (!v || !sy_icmp_here(v, lookup_services))
		return TC_ACT_UNSPEC;
	if (sy_icmp_plan(&w->k, v, n) < 0)
		return TC_ACT_UNSPEC;

	l4_diff = sy_csum_fold32((__u64)sy_csum_diff16(w->in_src, n->src) + sy_csum_diff16(w->in_dst, n->dst) +
				 sy_csum_diff2(e->sport, n->sport) + sy_csum_diff2(e->dport, n->dport));
	icmp_diff = l4_diff;
	if (e->in.nexthdr == IPPROTO_UDP) {
		__sum16 c = sy_csum_apply(e->w3, l4_diff);

		if (!c)
			c = 0xffff;
		icmp_diff = sy_csum_fold32((__u64)icmp_diff + sy_csum_diff2(e->w3, c));
		e->w3 = c;
	}
	if (e->in.nexthdr == IPPROTO_TCP &&
	    sy_icmp_quoted_tcp_csum(skb, ETH_HLEN + sizeof(*e) - 8 + SY_TCP_CSUM_AT, l4_diff, &icmp_diff) < 0)
		goto drop;
	__builtin_memcpy(&e->in.saddr, n->src, 16);
	__builtin_memcpy(&e->in.daddr, n->dst, 16);
	e->sport = n->sport;
	e->dport = n->dport;

	__builtin_memcpy(w->old_saddr, &e->ip.saddr, 16);
	__builtin_memcpy(w->old_daddr, &e->ip.daddr, 16);
	__builtin_memcpy(&e->ip.daddr, n->src, 16);
	if (w->old_saddr[0] == w->in_dst[0] && w->old_saddr[1] == w->in_dst[1] && w->old_saddr[2] == w->in_dst[2] &&
	    w->old_saddr[3] == w->in_dst[3])
		__builtin_memcpy(&e->ip.saddr, n->dst, 16);
	else
		n->redirect = 0;
	/* ICMPv6's checksum covers the outer addresses too (its pseudo-header). */
	icmp_diff = sy_csum_fold32((__u64)icmp_diff + sy_csum_diff16(w->old_saddr, e->ip.saddr.in6_u.u6_addr32) +
				   sy_csum_diff16(w->old_daddr, e->ip.daddr.in6_u.u6_addr32));
	e->icmp.icmp6_cksum = sy_csum_apply(e->icmp.icmp6_cksum, icmp_diff);
	if (bpf_skb_store_bytes(skb, ETH_HLEN, e, sizeof(*e), BPF_F_RECOMPUTE_CSUM) < 0)
		goto drop;
	t->family = 6;
	t->proto = IPPROTO_ICMPV6;
	__builtin_memcpy(t->saddr, &e->ip.saddr, 16);
	__builtin_memcpy(t->daddr, &e->ip.daddr, 16);
	return n->redirect ? SY_ICMP_REDIRECT : TC_ACT_OK;
drop:
	sy_drop_count(SY_DROP_UNSUPPORTED);
	return TC_ACT_SHOT;
}

/*
 * A packet sy_parse did not take (not TCP/UDP): an ICMP error about a tracked flow is translated;
 * anything else is not the datapath's. SY_ICMP_REDIRECT: send it on with sy_fib_redirect(t).
 */
static __always_inline int sy_icmp_error(struct __sk_buff *skb, struct sy_tuple *t, const struct sy_config *cfg,
						   __u64 now, int lookup_services)
{
	__u32 zero = 0;
	struct sy_icmp_work *w = bpf_map_lookup_elem(&sy_scratch, &zero);

	if (!w)
		return TC_ACT_UNSPEC;
	__builtin_memset(&w->n, 0, sizeof(w->n));
	__builtin_memset(&w->k, 0, sizeof(w->k));
	if (skb->protocol == bpf_htons(ETH_P_IP))
		return sy_icmp4_error(skb, w, t, cfg, now, lookup_services);
	if (skb->protocol == bpf_htons(ETH_P_IPV6))
		return sy_icmp6_error(skb, w, t, cfg, now, lookup_services);
	return TC_ACT_UNSPEC;
}

#endif /* SWITCHYARD_ICMP_H */
