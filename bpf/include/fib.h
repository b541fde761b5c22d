/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Sending a translated packet straight to its next hop (a FIB lookup and a redirect), past the
 * host's forwarding path, and doing what that path would have done on the way: a hop off the TTL,
 * and for a packet too big for the route, an ICMP frag-needed (IPv4 with DF) / packet too big
 * (IPv6) with the next hop's MTU back to its sender, as ip_forward / ip6_forward send it.
 *
 * The lookup is made before the packet is rewritten (from the tuple it will have), so the error
 * quotes the packet as its sender sent it: a client sees its own packet to the frontend, a backend
 * its own answer to the SNAT address. The route's MTU is held against the packet's L3 length, or,
 * for a GSO packet, that of the segments it will be cut into (skb_gso_validate_network_len's
 * rule): a GSO packet whose segments fit is left to be segmented later.
 *
 * Kernels before 5.12 ignore tot_len in the tc lookup and only hold a non-GSO packet against the
 * egress device's MTU, without saying what it is: the error then names the protocol's minimum
 * MTU (576, 1280), which the sender can always use.
 */
#ifndef SWITCHYARD_FIB_H
#define SWITCHYARD_FIB_H

#include <linux/icmpv6.h>
#include <linux/pkt_cls.h>

#include "csum.h"
#include "ct.h"
#include "maps.h"
#include "parse.h"
#include "reject.h"

#define SY_AF_INET 2
#define SY_AF_INET6 10

#define SY_IP_DF 0x4000
#define SY_ICMP_FRAG_NEEDED 4

/* The start of the packet an error quotes: its headers and the first bytes of its payload. */
#define SY_TOO_BIG_QUOTE 128

/* What the sender can always use when the lookup does not say the MTU (kernels before 5.12). */
#define SY_MIN_MTU4 576
#define SY_MIN_MTU6 1280

/* One redirect's working set, per CPU in sy_scratch: the lookup lives across the rewrite. */
struct sy_fib_work {
	struct bpf_fib_lookup p;
	__u32 len; /* the length the route's MTU was held against (tot_len) */
	__u32 pad;
	union {
		struct {
			struct iphdr ip;
			struct sy_icmphdr icmp;
		} h4;
		struct {
			struct ipv6hdr ip;
			struct icmp6hdr icmp;
		} h6;
	};
	__u8 quote[SY_TOO_BIG_QUOTE];
};

_Static_assert(sizeof(struct sy_fib_work) <= sizeof(struct sy_scratch), "sy_scratch holds a redirect's working set");

static __always_inline struct sy_fib_work *sy_fib_work(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&sy_scratch, &zero);
}

/* The two ports of a lookup in one argument (a subprogram takes five). */
static __always_inline __u32 sy_fib_ports(__be16 sport, __be16 dport)
{
	return (__u32)sport | ((__u32)dport << 16);
}

/*
 * The L3 length the route's MTU is held against: the packet's, or for a GSO packet (TCP, or UDP
 * with UDP_SEGMENT) that of each segment, headers included. 0 when the headers cannot be read.
 */
static __always_inline __u32 sy_fib_len(struct __sk_buff *skb, const struct sy_tuple *t)
{
	__u32 gso = skb->gso_size;
	__u32 len = skb->len - ETH_HLEN;
	__u32 l4 = sizeof(struct udphdr);

	if (gso) {
		if (t->proto == IPPROTO_TCP) {
			__u8 doff;

			if (bpf_skb_load_bytes(skb, t->l4_off + 12, &doff, 1) < 0)
				return 0;
			l4 = (doff >> 4) * 4;
		}
		len = t->l4_off - ETH_HLEN + l4 + gso;
	}
	return len > 0xffff ? 0xffff : len;
}

/*
 * Looks up the next hop of the packet t describes as it will leave (src:sport -> dst:dport, in
 * sy_fib_ports), leaving the result in sy_scratch for sy_fib_send or sy_fib_too_big. Returns the
 * lookup's verdict (BPF_FIB_LKUP_RET_*), or -1.
 */
static __attribute__((noinline)) int sy_fib_lookup(struct __sk_buff *skb, const struct sy_tuple *t, const __be32 *src,
						   const __be32 *dst, __u32 ports)
{
	struct sy_fib_work *w = sy_fib_work();
	struct bpf_fib_lookup *p;
	__u32 len;

	if (!w)
		return -1;
	len = sy_fib_len(skb, t);
	if (!len)
		return -1;
	p = &w->p;
	__builtin_memset(p, 0, sizeof(*p));
	w->len = len;
	p->ifindex = skb->ifindex;
	p->l4_protocol = t->proto;
	p->sport = (__be16)ports;
	p->dport = (__be16)(ports >> 16);
	p->tot_len = len;
	if (t->family == 4) {
		p->family = SY_AF_INET;
		p->ipv4_src = src[0];
		p->ipv4_dst = dst[0];
	} else {
		p->family = SY_AF_INET6;
		__builtin_memcpy(p->ipv6_src, src, 16);
		__builtin_memcpy(p->ipv6_dst, dst, 16);
	}
	return bpf_fib_lookup(skb, p, sizeof(*p), 0);
}

/*
 * A packet sent on past the host's forwarding path loses a hop as ip_forward would take it; 0, or
 * -1 when its TTL (hop limit) ran out.
 */
static __always_inline int sy_hop(struct __sk_buff *skb, __u8 family)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;

	if (family == 4) {
		struct iphdr *ip = data + ETH_HLEN;

		if ((void *)(ip + 1) > end || ip->ttl <= 1)
			return -1;
		/* TTL is the high byte of its 16-bit word: the checksum gains 0x0100. */
		ip->check = sy_csum_apply(ip->check, sy_csum_fold32((__u64)(__u16)~bpf_htons(0x0100)));
		ip->ttl--;
	} else {
		struct ipv6hdr *ip6 = data + ETH_HLEN;

		if ((void *)(ip6 + 1) > end || ip6->hop_limit <= 1)
			return -1;
		ip6->hop_limit--;
	}
	return 0;
}

/*
 * Sends the packet, rewritten by now, to the next hop sy_fib_lookup found (rc: its verdict, not
 * FRAG_NEEDED). A destination on this node itself (a hostNetwork backend) is delivered by the stack.
 *
 * peer: the program runs at tc ingress of a veth (or netkit) device whose other end is a pod's, in
 * the pod's netns (sy_from_veth). A packet whose next hop is back out of that same device (a pod
 * reaching itself through a service: hairpin) is then handed to the pod's end directly with
 * bpf_redirect_peer (5.10+): it is received there within this same softirq, instead of being
 * queued on the host end's egress, crossing the pair (its ring and a NAPI poll) a second time. A
 * GSO packet stays whole either way. What it skips besides: the host end's egress qdisc and tc
 * egress chain (sy_to_pod, which leaves such packets alone, and any filter behind it); netfilter of
 * the node sees neither path, as for every flow translated to a node address. Only for the device
 * the packet came in by: the programs cannot tell whether another device has a peer (a bridge has
 * none, and bpf_redirect_peer to it drops the packet).
 */
static __always_inline int sy_fib_send(struct __sk_buff *skb, __u8 family, int rc, int peer)
{
	struct sy_fib_work *w;

	if (rc == BPF_FIB_LKUP_RET_NOT_FWDED)
		return TC_ACT_OK;
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH) {
		sy_drop_count(SY_DROP_NO_ROUTE);
		return TC_ACT_SHOT;
	}
	w = sy_fib_work();
	if (!w) {
		sy_drop_count(SY_DROP_UNSUPPORTED);
		return TC_ACT_SHOT;
	}
	if (sy_hop(skb, family) < 0) {
		sy_drop_count(SY_DROP_TTL_EXCEEDED);
		return TC_ACT_SHOT;
	}
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		return bpf_redirect_neigh(w->p.ifindex, NULL, 0, 0);
	if (bpf_skb_store_bytes(skb, 0, w->p.dmac, 6, 0) < 0 || bpf_skb_store_bytes(skb, 6, w->p.smac, 6, 0) < 0) {
		sy_drop_count(SY_DROP_UNSUPPORTED);
		return TC_ACT_SHOT;
	}
	if (peer && w->p.ifindex == skb->ifindex)
		return bpf_redirect_peer(w->p.ifindex, 0);
	return bpf_redirect(w->p.ifindex, 0);
}

/*
 * The packet t describes, not yet translated, is too big for its route (sy_fib_lookup said
 * FRAG_NEEDED): it is dropped and counted, and unless it may be fragmented (IPv4 without DF: the
 * datapath cannot fragment) or its TTL runs out here, its sender gets frag-needed / packet too big
 * from the node's address, out of the device the packet came in by. The error quotes the packet's
 * first SY_TOO_BIG_QUOTE bytes (a packet shorter than that is only dropped: an IPv4 route MTU under
 * 128 bytes). Cold: out of line, its buffers in sy_scratch.
 *
 * A packet from a pod's veth may be CHECKSUM_PARTIAL; the error built from it keeps that state and
 * goes back into the same virtual device, whose receiver does not verify such a packet's checksum.
 */
static __attribute__((noinline)) int sy_fib_too_big(struct __sk_buff *skb, const struct sy_tuple *t)
{
	struct sy_fib_work *w = sy_fib_work();
	const struct sy_config *cfg;
	__u32 mtu, zero = 0;
	__u32 hdr_len;
	__s64 sum;

	sy_drop_count(SY_DROP_FRAG_NEEDED);
	cfg = bpf_map_lookup_elem(&sy_config, &zero);
	if (!w || !cfg || skb->len < ETH_HLEN + SY_TOO_BIG_QUOTE)
		return TC_ACT_SHOT;
	/* Kernels that hold tot_len against the route say its MTU (mtu_result, below tot_len). */
	mtu = w->p.mtu_result;
	if (mtu >= w->len)
		mtu = t->family == 4 ? SY_MIN_MTU4 : SY_MIN_MTU6;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, w->quote, SY_TOO_BIG_QUOTE) < 0)
		return TC_ACT_SHOT;
	if (t->family == 4) {
		struct iphdr *orig = (struct iphdr *)w->quote;

		if (!(orig->frag_off & bpf_htons(SY_IP_DF)) || orig->ttl <= 1)
			return TC_ACT_SHOT;
		__builtin_memset(&w->h4, 0, sizeof(w->h4));
		w->h4.ip.version = 4;
		w->h4.ip.ihl = 5;
		w->h4.ip.tot_len = bpf_htons(sizeof(w->h4) + SY_TOO_BIG_QUOTE);
		w->h4.ip.ttl = 64;
		w->h4.ip.protocol = IPPROTO_ICMP;
		w->h4.ip.saddr = cfg->node_ip4;
		w->h4.ip.daddr = t->saddr[0];
		w->h4.ip.check = sy_csum_fold(bpf_csum_diff(NULL, 0, (__be32 *)&w->h4.ip, sizeof(w->h4.ip), 0));
		w->h4.icmp.type = SY_ICMP_DEST_UNREACH;
		w->h4.icmp.code = SY_ICMP_FRAG_NEEDED;
		w->h4.icmp.unused = bpf_htonl(mtu & 0xffff); /* unused (16 bits), next-hop MTU (16 bits) */
		sum = bpf_csum_diff(NULL, 0, (__be32 *)&w->h4.icmp, sizeof(w->h4.icmp), 0);
		w->h4.icmp.checksum = sy_csum_fold(bpf_csum_diff(NULL, 0, (__be32 *)w->quote, SY_TOO_BIG_QUOTE, sum));
		hdr_len = sizeof(w->h4);
	} else {
		struct ipv6hdr *orig = (struct ipv6hdr *)w->quote;

		if (orig->hop_limit <= 1)
			return TC_ACT_SHOT;
		if (mtu < SY_MIN_MTU6)
			mtu = SY_MIN_MTU6;
		__builtin_memset(&w->h6, 0, sizeof(w->h6));
		w->h6.ip.version = 6;
		w->h6.ip.payload_len = bpf_htons(sizeof(w->h6.icmp) + SY_TOO_BIG_QUOTE);
		w->h6.ip.nexthdr = IPPROTO_ICMPV6;
		w->h6.ip.hop_limit = 64;
		__builtin_memcpy(&w->h6.ip.saddr, cfg->node_ip6, 16);
		__builtin_memcpy(&w->h6.ip.daddr, t->saddr, 16);
		w->h6.icmp.icmp6_type = ICMPV6_PKT_TOOBIG;
		w->h6.icmp.icmp6_mtu = bpf_htonl(mtu);
		/* The pseudo-header (RFC 8200 8.1): both addresses, the length, the next header. */
		sum = bpf_csum_diff(NULL, 0, (__be32 *)&w->h6.ip.saddr, 32, 0);
		sum = sy_csum_fold32((__u64)(__u32)sum + bpf_htonl(sizeof(w->h6.icmp) + SY_TOO_BIG_QUOTE) + bpf_htonl(IPPROTO_ICMPV6));
		sum = bpf_csum_diff(NULL, 0, (__be32 *)&w->h6.icmp, sizeof(w->h6.icmp), sum);
		w->h6.icmp.icmp6_cksum = sy_csum_fold(bpf_csum_diff(NULL, 0, (__be32 *)w->quote, SY_TOO_BIG_QUOTE, sum));
		hdr_len = sizeof(w->h6);
	}
	/* The packet becomes the error: cut after the quote, room for the headers in front of it. */
	if (bpf_skb_change_tail(skb, ETH_HLEN + SY_TOO_BIG_QUOTE, 0) < 0 ||
	    bpf_skb_adjust_room(skb, hdr_len, BPF_ADJ_ROOM_MAC, 0) < 0)
		return TC_ACT_SHOT;
	if (bpf_skb_store_bytes(skb, ETH_HLEN, &w->h4, hdr_len, 0) < 0 || sy_swap_macs(skb) < 0)
		return TC_ACT_SHOT;
	return bpf_redirect(skb->ifindex, 0);
}

#endif /* SWITCHYARD_FIB_H */
