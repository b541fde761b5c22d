/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Rewriting one endpoint (address and port) of a packet with incremental checksum updates. */
#ifndef SWITCHYARD_NAT_H
#define SWITCHYARD_NAT_H

#include "parse.h"

#define IP4_CSUM_OFF (ETH_HLEN + offsetof(struct iphdr, check))
#define IP4_SRC_OFF (ETH_HLEN + offsetof(struct iphdr, saddr))
#define IP4_DST_OFF (ETH_HLEN + offsetof(struct iphdr, daddr))
#define IP6_SRC_OFF (ETH_HLEN + offsetof(struct ipv6hdr, saddr))
#define IP6_DST_OFF (ETH_HLEN + offsetof(struct ipv6hdr, daddr))

/*
 * Rewrites the source (is_dst = 0) or destination (is_dst = 1) of the packet described by t to
 * addr:port and updates t. UDP over IPv4 may carry no checksum; BPF_F_MARK_MANGLED_0 keeps it so.
 */
static __always_inline int sy_rewrite(struct __sk_buff *skb, struct sy_tuple *t, int is_dst,
				      const __be32 *addr, __be16 port)
{
	__be32 *old_addr = is_dst ? t->daddr : t->saddr;
	__be16 old_port = is_dst ? t->dport : t->sport;
	__u64 mangled = t->proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
	__u32 port_off = t->l4_off + (is_dst ? 2 : 0);

	if (t->family == 4) {
		__u32 addr_off = is_dst ? IP4_DST_OFF : IP4_SRC_OFF;

		if (old_addr[0] != addr[0]) {
			if (bpf_l4_csum_replace(skb, t->csum_off, old_addr[0], addr[0], BPF_F_PSEUDO_HDR | mangled | 4) < 0)
				return -1;
			if (bpf_l3_csum_replace(skb, IP4_CSUM_OFF, old_addr[0], addr[0], 4) < 0)
				return -1;
			if (bpf_skb_store_bytes(skb, addr_off, &addr[0], 4, 0) < 0)
				return -1;
			old_addr[0] = addr[0];
		}
	} else {
		__u32 addr_off = is_dst ? IP6_DST_OFF : IP6_SRC_OFF;
		__be32 from[4], to[4];
		__s64 diff;

		__builtin_memcpy(from, old_addr, 16);
		__builtin_memcpy(to, addr, 16);
		diff = bpf_csum_diff(from, 16, to, 16, 0);
		if (bpf_l4_csum_replace(skb, t->csum_off, 0, diff, BPF_F_PSEUDO_HDR) < 0)
			return -1;
		if (bpf_skb_store_bytes(skb, addr_off, to, 16, 0) < 0)
			return -1;
		__builtin_memcpy(old_addr, to, 16);
	}
	if (old_port != port) {
		if (bpf_l4_csum_replace(skb, t->csum_off, old_port, port, mangled | 2) < 0)
			return -1;
		if (bpf_skb_store_bytes(skb, port_off, &port, 2, 0) < 0)
			return -1;
		if (is_dst)
			t->dport = port;
		else
			t->sport = port;
	}
	return 0;
}

#endif /* SWITCHYARD_NAT_H */
