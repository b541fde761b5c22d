/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Rewriting one endpoint (address and port) of a packet with incremental checksum updates. */
#ifndef SWITCHYARD_NAT_H
#define SWITCHYARD_NAT_H

#include "csum.h"
#include "parse.h"

/* Keeps t in step with the packet after a rewrite. */
static __always_inline void sy_tuple_set(struct sy_tuple *t, int is_dst, const __be32 *addr, __be16 port)
{
	if (is_dst) {
		__builtin_memcpy(t->daddr, addr, 16);
		t->dport = port;
	} else {
		__builtin_memcpy(t->saddr, addr, 16);
		t->sport = port;
	}
}

/*
 * The TCP/UDP checksum through helpers, for when skb->ip_summed is unknown (portable build) or
 * CHECKSUM_COMPLETE (skb->csum must follow, and programs cannot write it): bpf_l4_csum_replace
 * knows what to do; one call for the address (pseudo-header), one for the port. UDP over IPv4 may
 * carry no checksum; BPF_F_MARK_MANGLED_0 keeps it so.
 */
static __always_inline int sy_l4_csum_helpers(struct __sk_buff *skb, const struct sy_tuple *t, int addr_changed,
					      __u32 addr_diff, __be16 old_port, __be16 port)
{
	__u64 mangled = t->proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;

	if (addr_changed && bpf_l4_csum_replace(skb, t->csum_off, 0, addr_diff, BPF_F_PSEUDO_HDR | mangled) < 0)
		return -1;
	if (old_port != port && bpf_l4_csum_replace(skb, t->csum_off, old_port, port, mangled | 2) < 0)
		return -1;
	return 0;
}

/*
 * The same update inline, as inet_proto_csum_replace4/2 do it, when ip_summed says what the field
 * holds: a complete checksum (NONE, UNNECESSARY: address and port changes both go in) or, with
 * CHECKSUM_PARTIAL, the pseudo-header seed the device or the stack completes later (only the
 * address goes in, as a plain sum). 1 when the field is not in the linear part (helpers then).
 */
static __always_inline int sy_l4_csum_inline(void *data, void *end, const struct sy_tuple *t, __u32 addr_diff,
					     __be16 old_port, __be16 port)
{
	__u32 off = t->csum_off;
	__sum16 *check;

	if (off > ETH_HLEN + 60 + 16)
		return 1;
	check = data + off;
	if ((void *)(check + 1) > end)
		return 1;
	if (t->proto == IPPROTO_UDP && *check == 0)
		return 0; /* UDP over IPv4 without a checksum stays without */
	if (t->ip_summed == SY_CHECKSUM_PARTIAL)
		*check = sy_csum_add_seed(*check, addr_diff);
	else
		*check = sy_csum_apply(*check, sy_csum_fold32((__u64)addr_diff + (__u16)~old_port + (__u16)port));
	if (t->proto == IPPROTO_UDP && *check == 0)
		*check = 0xffff; /* 0 would mean "no checksum" (CSUM_MANGLED_0) */
	return 0;
}

/*
 * A later fragment (l4_off SY_L4_NONE: no L4 header), and an SCTP packet, get their addresses alone: IPv4's header checksum
 * follows, and the L4 checksum was updated once, in the first fragment (it covers the datagram's
 * pseudo-header and ports). IPv6 has no header checksum; a CHECKSUM_COMPLETE skb->csum follows the
 * change (bpf_csum_update, which leaves any other skb alone). Off the hot path: a function of its
 * own.
 */
static __attribute__((noinline)) int sy_rewrite_fragment(struct __sk_buff *skb, struct sy_tuple *t, int is_dst,
							 const __be32 *addr, __be16 port)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;

	if (t->family == 4) {
		struct iphdr *ip = data + ETH_HLEN;
		__be32 *field;

		if ((void *)(ip + 1) > end)
			return -1;
		field = is_dst ? &ip->daddr : &ip->saddr;
		if (*field != addr[0]) {
			ip->check = sy_csum_apply(ip->check, sy_csum_diff4(*field, addr[0]));
			*field = addr[0];
		}
	} else {
		struct ipv6hdr *ip6 = data + ETH_HLEN;
		__be32 *field;
		__u32 diff;

		if ((void *)(ip6 + 1) > end)
			return -1;
		field = is_dst ? ip6->daddr.in6_u.u6_addr32 : ip6->saddr.in6_u.u6_addr32;
		diff = sy_csum_diff16(field, addr);
		__builtin_memcpy(field, addr, 16);
		if (t->ip_summed == SY_CHECKSUM_COMPLETE || t->ip_summed == SY_CHECKSUM_UNKNOWN)
			bpf_csum_update(skb, diff);
	}
	sy_tuple_set(t, is_dst, addr, port);
	return 0;
}

/*
 * Rewrites the source (is_dst = 0) or destination (is_dst = 1) of the packet described by t to
 * addr:port and updates t. Addresses, ports and checksums are written in place (direct packet
 * access); the L4 checksum goes through helpers only when ip_summed is unknown or COMPLETE.
 */
static __always_inline int sy_rewrite(struct __sk_buff *skb, struct sy_tuple *t, int is_dst, const __be32 *addr,
				      __be16 port)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	__u32 l4_off = t->l4_off;
	__be16 old_port = is_dst ? t->dport : t->sport;
	__be16 *ports;
	__u32 diff = 0;
	int changed = 1;

	if (l4_off > ETH_HLEN + 60) /* SY_L4_NONE: a later fragment */
		return l4_off == SY_L4_NONE ? sy_rewrite_fragment(skb, t, is_dst, addr, port) : -1;
	/* SCTP: its CRC32c covers no pseudo-header, so a new address leaves it valid; a new port would
	 * not (the control plane programs only SCTP frontends whose port is the backend's, and SNAT
	 * keeps the client's port). The address alone, as for a later fragment; the checksum is never
	 * touched. */
	if (t->proto == IPPROTO_SCTP)
		return old_port == port ? sy_rewrite_fragment(skb, t, is_dst, addr, port) : -1;
	ports = data + l4_off;
	if ((void *)(ports + 2) > end)
		return -1; /* sy_parse made the headers linear */
	if (t->family == 4) {
		struct iphdr *ip = data + ETH_HLEN;
		__be32 *field;

		if ((void *)(ip + 1) > end)
			return -1;
		field = is_dst ? &ip->daddr : &ip->saddr;
		changed = *field != addr[0];
		if (changed) {
			diff = sy_csum_diff4(*field, addr[0]);
			ip->check = sy_csum_apply(ip->check, diff);
			*field = addr[0];
		}
	} else {
		struct ipv6hdr *ip6 = data + ETH_HLEN;
		__be32 *field;

		if ((void *)(ip6 + 1) > end)
			return -1;
		field = is_dst ? ip6->daddr.in6_u.u6_addr32 : ip6->saddr.in6_u.u6_addr32;
		diff = sy_csum_diff16(field, addr);
		__builtin_memcpy(field, addr, 16);
	}
	ports[is_dst ? 1 : 0] = port;
	if (t->ip_summed == SY_CHECKSUM_COMPLETE || t->ip_summed == SY_CHECKSUM_UNKNOWN ||
	    sy_l4_csum_inline(data, end, t, changed ? diff : 0, old_port, port) != 0) {
		/* The helpers invalidate packet pointers: nothing reads through them after this. */
		if (sy_l4_csum_helpers(skb, t, changed, diff, old_port, port) < 0)
			return -1;
	}
	sy_tuple_set(t, is_dst, addr, port);
	return 0;
}

#endif /* SWITCHYARD_NAT_H */
