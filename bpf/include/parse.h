/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Reading a packet's 5-tuple (IPv4 or IPv6, TCP, UDP or SCTP) with bounded, verifier-friendly loads. */
#ifndef SWITCHYARD_PARSE_H
#define SWITCHYARD_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <stddef.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

struct sy_tuple {
	__be32 saddr[4];
	__be32 daddr[4];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 family;
	__u8 tcp_flags;
	__u8 ip_summed; /* SY_CHECKSUM_*: what the L4 checksum field holds */
	__u32 l4_off;   /* offset of the TCP/UDP header */
	__u32 csum_off; /* offset of its checksum */
};

/* skb->ip_summed (include/linux/skbuff.h), and what the portable build knows of it. */
#define SY_CHECKSUM_NONE 0
#define SY_CHECKSUM_UNNECESSARY 1
#define SY_CHECKSUM_COMPLETE 2
#define SY_CHECKSUM_PARTIAL 3
#define SY_CHECKSUM_UNKNOWN 0xff

#ifdef SY_KERN_CTX
#include <bpf/bpf_core_read.h>

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

/* The one field read through the kernel's own sk_buff; CO-RE finds it where this kernel has it. */
struct sk_buff___sy {
	__u8 ip_summed : 2;
} __attribute__((preserve_access_index));

static __always_inline __u8 sy_ip_summed(struct __sk_buff *skb)
{
	struct sk_buff___sy *kskb = bpf_cast_to_kern_ctx(skb);

	return BPF_CORE_READ_BITFIELD(kskb, ip_summed);
}
#else
/* __sk_buff does not show ip_summed, and bpf_cast_to_kern_ctx needs Linux 6.2. */
static __always_inline __u8 sy_ip_summed(struct __sk_buff *skb)
{
	return SY_CHECKSUM_UNKNOWN;
}
#endif

/* Headers the datapath reads and writes in place: Ethernet, IPv4 with options or IPv6, TCP up to its flags. */
#define SY_HEADROOM (ETH_HLEN + 60 + 14)

/* Extension headers followed before the TCP/UDP header (hop-by-hop, routing, destination options). */
#define SY_IPV6_EXT_MAX 3

/* What the parsers return besides 0 (parsed) and -1 (not TCP/UDP over IP: passed untouched). */
#define SY_PARSE_PULL 1     /* the headers are not all in the linear part: pull them in and ask again */
#define SY_PARSE_FRAGMENT 2 /* a fragment: include/frag.h reads it */
#define SY_PARSE_ORPHAN 3   /* a later fragment to a service address whose first fragment was not seen */

/* sy_tuple.l4_off of a later fragment: it carries no L4 header (include/frag.h). Beyond the
 * headroom, so the rewrite's own bounds check sends it to the fragment path at no cost. */
#define SY_L4_NONE 0xffff

/* SCTP's common header (RFC 9260 3.1): source port, destination port, verification tag, checksum. */
#define SY_SCTP_HLEN 12

#ifndef IPPROTO_FRAGMENT
#define IPPROTO_FRAGMENT 44
#endif

/*
 * Steps over IPv6 extension headers with a bounded walk, leaving *proto and *l4_off at the upper
 * layer. Only packets whose next header is not TCP/UDP come here, so plain packets pay one
 * comparison. 0, SY_PARSE_PULL when the headers are not all linear, SY_PARSE_FRAGMENT at a
 * fragment header, -1 for headers reaching past the room the rewrite works in (SY_HEADROOM).
 */
static __always_inline int sy_ipv6_skip_ext(void *data, void *end, __u8 *proto, __u32 *l4_off)
{
	for (int i = 0; i < SY_IPV6_EXT_MAX; i++) {
		__u32 off = *l4_off;
		__u8 *h;

		if (*proto == IPPROTO_FRAGMENT)
			return SY_PARSE_FRAGMENT;
		if (*proto != IPPROTO_HOPOPTS && *proto != IPPROTO_ROUTING && *proto != IPPROTO_DSTOPTS)
			return 0;
		if (off > ETH_HLEN + 60 - 8)
			return -1;
		h = data + off;
		if ((void *)(h + 2) > end)
			return SY_PARSE_PULL;
		*proto = h[0];
		*l4_off = off + ((__u32)h[1] + 1) * 8;
	}
	return *proto == IPPROTO_FRAGMENT ? SY_PARSE_FRAGMENT : 0;
}

/*
 * Fills t from an Ethernet frame with direct packet access; 0 on success, SY_PARSE_PULL when the
 * headers are not all in the linear part of the skb (the caller pulls them in and asks again),
 * SY_PARSE_FRAGMENT for a fragment (IPv4 with MF or an offset, IPv6 with a fragment header), -1
 * for anything not TCP/UDP/SCTP over IP (passed untouched).
 */
static __always_inline int sy_parse_linear(struct __sk_buff *skb, struct sy_tuple *t)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	__be16 *ports;
	__u8 *l4;
	__u8 proto;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data + ETH_HLEN;
		__u32 ihl;

		if ((void *)(ip + 1) > end)
			return SY_PARSE_PULL;
		ihl = ip->ihl;
		if (ihl < 5)
			return -1;
		if (ip->frag_off & bpf_htons(0x3fff)) /* MF, or an offset */
			return SY_PARSE_FRAGMENT;
		t->family = 4;
		t->saddr[0] = ip->saddr;
		t->daddr[0] = ip->daddr;
		proto = ip->protocol;
		t->l4_off = ETH_HLEN + ihl * 4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + ETH_HLEN;

		if ((void *)(ip6 + 1) > end)
			return SY_PARSE_PULL;
		t->family = 6;
		__builtin_memcpy(t->saddr, &ip6->saddr, 16);
		__builtin_memcpy(t->daddr, &ip6->daddr, 16);
		proto = ip6->nexthdr;
		t->l4_off = ETH_HLEN + sizeof(struct ipv6hdr);
		if (proto != IPPROTO_TCP && proto != IPPROTO_UDP && proto != IPPROTO_SCTP) {
			int rc = sy_ipv6_skip_ext(data, end, &proto, &t->l4_off);

			if (rc)
				return rc;
		}
	} else {
		return -1;
	}
	if (t->l4_off > ETH_HLEN + 60)
		return -1;
	l4 = data + t->l4_off;
	if (proto == IPPROTO_TCP) {
		if ((void *)(l4 + 14) > end)
			return SY_PARSE_PULL;
		t->csum_off = t->l4_off + offsetof(struct tcphdr, check);
		t->tcp_flags = l4[13];
	} else if (proto == IPPROTO_UDP) {
		if ((void *)(l4 + 8) > end)
			return SY_PARSE_PULL;
		t->csum_off = t->l4_off + offsetof(struct udphdr, check);
	} else if (proto == IPPROTO_SCTP) {
		/* The common header: ports where UDP has them, a verification tag, a CRC32c over the
		 * SCTP packet alone (no pseudo-header: include/nat.h translates addresses only). */
		if ((void *)(l4 + SY_SCTP_HLEN) > end)
			return SY_PARSE_PULL;
		t->csum_off = t->l4_off + 8;
	} else {
		return -1;
	}
	ports = (__be16 *)l4;
	t->ip_summed = sy_ip_summed(skb);
	t->proto = proto;
	t->sport = ports[0];
	t->dport = ports[1];
	return 0;
}

/* The headers were not all in the linear part: pull them in once (like Cilium's revalidate). Off
 * the hot path, so a function of its own rather than a second inlined parser. 0, -1 or
 * SY_PARSE_FRAGMENT. */
static __attribute__((noinline)) int sy_parse_pulled(struct __sk_buff *skb, struct sy_tuple *t)
{
	__u32 len = skb->len < SY_HEADROOM ? skb->len : SY_HEADROOM;
	int rc;

	if (bpf_skb_pull_data(skb, len) < 0)
		return -1;
	rc = sy_parse_linear(skb, t);
	return rc == SY_PARSE_PULL ? -1 : rc;
}

/* sy_parse(), which also reads fragments, is in include/frag.h. */

#endif /* SWITCHYARD_PARSE_H */
