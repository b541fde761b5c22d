/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Answering for a service without endpoints, as kube-proxy's REJECT does: a TCP reset for TCP,
 * an ICMP (v6) port unreachable otherwise. The packet is rewritten in place into the answer and
 * sent back out of the interface it came in on.
 */
#ifndef SWITCHYARD_REJECT_H
#define SWITCHYARD_REJECT_H

#include <linux/icmpv6.h>
#include <linux/pkt_cls.h>

#include "csum.h"
#include "parse.h"

/* linux/icmp.h drags in libc headers; the ICMP header is small enough to spell out. */
struct sy_icmphdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be32 unused;
};

#define SY_ICMP_DEST_UNREACH 3
#define SY_ICMP_PORT_UNREACH 3

static __always_inline int sy_swap_macs(struct __sk_buff *skb)
{
	__u8 macs[12], swapped[12];

	if (bpf_skb_load_bytes(skb, 0, macs, 12) < 0)
		return -1;
	__builtin_memcpy(swapped, macs + 6, 6);
	__builtin_memcpy(swapped + 6, macs, 6);
	return bpf_skb_store_bytes(skb, 0, swapped, 12, 0);
}

struct sy_pseudo4 {
	__be32 saddr;
	__be32 daddr;
	__u8 zero;
	__u8 proto;
	__be16 len;
};

struct sy_pseudo6 {
	__be32 saddr[4];
	__be32 daddr[4];
	__be32 len;
	__u8 zero[3];
	__u8 nexthdr;
};

/* Cold (services without endpoints): out of line, so its buffers do not count against the hot path's stack. */
static __attribute__((noinline)) int sy_reject_tcp(struct __sk_buff *skb, struct sy_tuple *t)
{
	struct tcphdr th, rst = {};
	__u32 payload, ip_len;
	__s64 sum;

	if (bpf_skb_load_bytes(skb, t->l4_off, &th, sizeof(th)) < 0)
		return TC_ACT_SHOT;
	if (th.rst)
		return TC_ACT_SHOT;
	if (t->family == 4) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) < 0 || ip.ihl != 5)
			return TC_ACT_SHOT;
		payload = bpf_ntohs(ip.tot_len) - 20 - th.doff * 4;
	} else {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip6, sizeof(ip6)) < 0)
			return TC_ACT_SHOT;
		payload = bpf_ntohs(ip6.payload_len) - th.doff * 4;
	}
	rst.source = th.dest;
	rst.dest = th.source;
	rst.doff = 5;
	rst.rst = 1;
	if (th.ack) {
		rst.seq = th.ack_seq;
	} else {
		rst.ack = 1;
		rst.ack_seq = bpf_htonl(bpf_ntohl(th.seq) + payload + th.syn + th.fin);
	}
	if (bpf_skb_change_tail(skb, t->l4_off + sizeof(rst), 0) < 0)
		return TC_ACT_SHOT;
	if (t->family == 4) {
		struct iphdr ip = {};
		struct sy_pseudo4 ph = {};

		ip.version = 4;
		ip.ihl = 5;
		ip.tot_len = bpf_htons(20 + sizeof(rst));
		ip.ttl = 64;
		ip.protocol = IPPROTO_TCP;
		ip.saddr = t->daddr[0];
		ip.daddr = t->saddr[0];
		ip.check = sy_csum_fold(bpf_csum_diff(NULL, 0, (__be32 *)&ip, sizeof(ip), 0));
		ph.saddr = ip.saddr;
		ph.daddr = ip.daddr;
		ph.proto = IPPROTO_TCP;
		ph.len = bpf_htons(sizeof(rst));
		sum = bpf_csum_diff(NULL, 0, (__be32 *)&ph, sizeof(ph), 0);
		rst.check = sy_csum_fold(bpf_csum_diff(NULL, 0, (__be32 *)&rst, sizeof(rst), sum));
		ip_len = sizeof(ip);
		if (bpf_skb_store_bytes(skb, ETH_HLEN, &ip, sizeof(ip), 0) < 0)
			return TC_ACT_SHOT;
	} else {
		struct ipv6hdr ip6 = {};
		struct sy_pseudo6 ph = {};

		ip6.version = 6;
		ip6.payload_len = bpf_htons(sizeof(rst));
		ip6.nexthdr = IPPROTO_TCP;
		ip6.hop_limit = 64;
		__builtin_memcpy(&ip6.saddr, t->daddr, 16);
		__builtin_memcpy(&ip6.daddr, t->saddr, 16);
		__builtin_memcpy(ph.saddr, t->daddr, 16);
		__builtin_memcpy(ph.daddr, t->saddr, 16);
		ph.len = bpf_htonl(sizeof(rst));
		ph.nexthdr = IPPROTO_TCP;
		sum = bpf_csum_diff(NULL, 0, (__be32 *)&ph, sizeof(ph), 0);
		rst.check = sy_csum_fold(bpf_csum_diff(NULL, 0, (__be32 *)&rst, sizeof(rst), sum));
		ip_len = sizeof(ip6);
		if (bpf_skb_store_bytes(skb, ETH_HLEN, &ip6, sizeof(ip6), 0) < 0)
			return TC_ACT_SHOT;
	}
	if (bpf_skb_store_bytes(skb, ETH_HLEN + ip_len, &rst, sizeof(rst), 0) < 0)
		return TC_ACT_SHOT;
	if (sy_swap_macs(skb) < 0)
		return TC_ACT_SHOT;
	return bpf_redirect(skb->ifindex, 0);
}

/* The ICMP error quotes the original IP header and the first 8 bytes after it. */
#define SY_QUOTE4 (20 + 8)
#define SY_QUOTE6 (40 + 8)

/*
 * Copies the first quote_len bytes after the MAC header into quote, cuts the packet there and
 * opens hdr_len bytes of room in front of them for the new IP and ICMP headers.
 */
static __always_inline int sy_quote_and_open(struct __sk_buff *skb, __u8 *quote, __u32 quote_len, __u32 hdr_len)
{
	if (bpf_skb_load_bytes(skb, ETH_HLEN, quote, quote_len) < 0)
		return -1;
	if (bpf_skb_change_tail(skb, ETH_HLEN + quote_len, 0) < 0)
		return -1;
	return bpf_skb_adjust_room(skb, hdr_len, BPF_ADJ_ROOM_MAC, 0) < 0 ? -1 : 0;
}

/* Out of line, as sy_reject_tcp. */
static __attribute__((noinline)) int sy_reject_icmp(struct __sk_buff *skb, struct sy_tuple *t)
{
	__u8 quote[SY_QUOTE6];
	__s64 sum;

	if (t->family == 4) {
		struct { struct iphdr ip; struct sy_icmphdr icmp; } hdr = {};
		struct iphdr orig;

		if (bpf_skb_load_bytes(skb, ETH_HLEN, &orig, sizeof(orig)) < 0 || orig.ihl != 5)
			return TC_ACT_SHOT;
		if (sy_quote_and_open(skb, quote, SY_QUOTE4, sizeof(hdr)) < 0)
			return TC_ACT_SHOT;
		hdr.ip.version = 4;
		hdr.ip.ihl = 5;
		hdr.ip.tot_len = bpf_htons(sizeof(hdr) + SY_QUOTE4);
		hdr.ip.ttl = 64;
		hdr.ip.protocol = IPPROTO_ICMP;
		hdr.ip.saddr = t->daddr[0];
		hdr.ip.daddr = t->saddr[0];
		hdr.ip.check = sy_csum_fold(bpf_csum_diff(NULL, 0, (__be32 *)&hdr.ip, sizeof(hdr.ip), 0));
		hdr.icmp.type = SY_ICMP_DEST_UNREACH;
		hdr.icmp.code = SY_ICMP_PORT_UNREACH;
		sum = bpf_csum_diff(NULL, 0, (__be32 *)&hdr.icmp, sizeof(hdr.icmp), 0);
		hdr.icmp.checksum = sy_csum_fold(bpf_csum_diff(NULL, 0, (__be32 *)quote, SY_QUOTE4, sum));
		if (bpf_skb_store_bytes(skb, ETH_HLEN, &hdr, sizeof(hdr), 0) < 0)
			return TC_ACT_SHOT;
	} else {
		struct { struct ipv6hdr ip6; struct icmp6hdr icmp6; } hdr = {};

		if (sy_quote_and_open(skb, quote, SY_QUOTE6, sizeof(hdr)) < 0)
			return TC_ACT_SHOT;
		hdr.ip6.version = 6;
		hdr.ip6.payload_len = bpf_htons(sizeof(hdr.icmp6) + SY_QUOTE6);
		hdr.ip6.nexthdr = IPPROTO_ICMPV6;
		hdr.ip6.hop_limit = 64;
		__builtin_memcpy(&hdr.ip6.saddr, t->daddr, 16);
		__builtin_memcpy(&hdr.ip6.daddr, t->saddr, 16);
		hdr.icmp6.icmp6_type = ICMPV6_DEST_UNREACH;
		hdr.icmp6.icmp6_code = ICMPV6_PORT_UNREACH;
		/* The pseudo-header (RFC 8200 8.1) summed from the header's own addresses, without a
		 * copy: this frame adds to the hot path's stack, which the verifier bounds. */
		sum = bpf_csum_diff(NULL, 0, (__be32 *)&hdr.ip6.saddr, 32, 0);
		sum = sy_csum_fold32((__u64)(__u32)sum + bpf_htonl(sizeof(hdr.icmp6) + SY_QUOTE6) + bpf_htonl(IPPROTO_ICMPV6));
		sum = bpf_csum_diff(NULL, 0, (__be32 *)&hdr.icmp6, sizeof(hdr.icmp6), sum);
		hdr.icmp6.icmp6_cksum = sy_csum_fold(bpf_csum_diff(NULL, 0, (__be32 *)quote, SY_QUOTE6, sum));
		if (bpf_skb_store_bytes(skb, ETH_HLEN, &hdr, sizeof(hdr), 0) < 0)
			return TC_ACT_SHOT;
	}
	if (sy_swap_macs(skb) < 0)
		return TC_ACT_SHOT;
	return bpf_redirect(skb->ifindex, 0);
}

static __always_inline int sy_reject(struct __sk_buff *skb, struct sy_tuple *t)
{
	return t->proto == IPPROTO_TCP ? sy_reject_tcp(skb, t) : sy_reject_icmp(skb, t);
}

#endif /* SWITCHYARD_REJECT_H */
