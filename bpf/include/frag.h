/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Fragments. Only the first fragment of a datagram carries its TCP/UDP header; the others have
 * addresses, protocol and an identification (IPv4: 16 bits in the header; IPv6: 32 bits in the
 * fragment header). The first fragment's ports are kept in sy_frags under the datagram's identity
 * as it arrives (addresses, protocol, identification), and every later fragment gets them back:
 * it is then looked up in connection tracking like its first and translated alike, addresses only
 * (the first fragment's L4 checksum update already covered the datagram's pseudo-header).
 *
 * A later fragment arriving before its first (reordered, or the first was lost) has no ports:
 * when it is for a service address it is dropped and counted (SY_DROP_FRAG_NO_FIRST), since
 * passed on it would leave for that address untranslated; anything else is passed untouched.
 * Plain packets never come here: the parser sends only fragments (one comparison it made before).
 */
#ifndef SWITCHYARD_FRAG_H
#define SWITCHYARD_FRAG_H

#include "maps.h"
#include "parse.h"

/* The working set lives in sy_scratch, off the stack of the program that called the parser. */
struct sy_frag_work {
	struct sy_frag_key k;
	struct sy_service_addr a;
	struct sy_frag_value v;
};

_Static_assert(sizeof(struct sy_frag_work) <= sizeof(struct sy_scratch), "sy_scratch holds a fragment's working set");

/*
 * Reads a fragment into t: a first fragment as any packet (and its ports kept for the others), a
 * later one with its first fragment's ports, csum_off 0 and l4_off SY_L4_NONE (no L4 header:
 * include/nat.h rewrites its addresses alone). 0, -1 (not TCP/UDP, or a later fragment of no known datagram and no
 * service address), or SY_PARSE_ORPHAN (a later fragment to a service address, first not seen).
 */
static __attribute__((noinline)) int sy_parse_fragment(struct __sk_buff *skb, struct sy_tuple *t)
{
	__u32 zero = 0, len = skb->len < SY_HEADROOM ? skb->len : SY_HEADROOM;
	struct sy_frag_work *w = bpf_map_lookup_elem(&sy_scratch, &zero);
	struct sy_frag_value *fv;
	void *data, *end;
	__u32 off, id;
	int later = 0;
	__u8 proto, *l4;

	if (!w || bpf_skb_pull_data(skb, len) < 0)
		return -1;
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data + ETH_HLEN;

		if ((void *)(ip + 1) > end)
			return -1;
		t->family = 4;
		t->saddr[0] = ip->saddr;
		t->daddr[0] = ip->daddr;
		proto = ip->protocol;
		off = ETH_HLEN + ip->ihl * 4;
		later = (ip->frag_off & bpf_htons(0x1fff)) != 0;
		id = bpf_ntohs(ip->id);
	} else {
		struct ipv6hdr *ip6 = data + ETH_HLEN;

		if ((void *)(ip6 + 1) > end)
			return -1;
		t->family = 6;
		__builtin_memcpy(t->saddr, &ip6->saddr, 16);
		__builtin_memcpy(t->daddr, &ip6->daddr, 16);
		proto = ip6->nexthdr;
		off = ETH_HLEN + sizeof(struct ipv6hdr);
		id = 0;
		/* The headers before the fragment header, it, and (first fragment) those after it. */
		for (int i = 0; i < SY_IPV6_EXT_MAX + 1; i++) {
			__u8 *h;

			if (proto != IPPROTO_HOPOPTS && proto != IPPROTO_ROUTING && proto != IPPROTO_DSTOPTS &&
			    proto != IPPROTO_FRAGMENT)
				break;
			if (off > ETH_HLEN + 60 - 8)
				return -1;
			h = data + off;
			if ((void *)(h + 8) > end)
				return -1;
			if (proto == IPPROTO_FRAGMENT) {
				/* Offset in 8-byte units in the top 13 bits of bytes 2-3, then the id. */
				later = (((__u16)h[2] << 8 | h[3]) & 0xfff8) != 0;
				id = bpf_ntohl(*(__be32 *)(h + 4));
				proto = h[0];
				off += 8;
				if (later)
					break;
			} else {
				proto = h[0];
				off += ((__u32)h[1] + 1) * 8;
			}
		}
	}
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return -1;
	__builtin_memcpy(w->k.saddr, t->saddr, 16);
	__builtin_memcpy(w->k.daddr, t->daddr, 16);
	w->k.id = id;
	w->k.proto = proto;
	w->k.family = t->family;
	w->k.pad[0] = 0;
	w->k.pad[1] = 0;
	t->proto = proto;
	t->ip_summed = sy_ip_summed(skb);
	t->l4_off = off;
	if (later) {
		fv = bpf_map_lookup_elem(&sy_frags, &w->k);
		if (fv) {
			t->sport = fv->sport;
			t->dport = fv->dport;
			t->tcp_flags = fv->tcp_flags;
			t->l4_off = SY_L4_NONE;
			t->csum_off = 0;
			return 0;
		}
		__builtin_memcpy(w->a.addr, t->daddr, 16);
		w->a.family = t->family;
		w->a.pad[0] = 0;
		w->a.pad[1] = 0;
		w->a.pad[2] = 0;
		return bpf_map_lookup_elem(&sy_service_addrs, &w->a) ? SY_PARSE_ORPHAN : -1;
	}
	if (off > ETH_HLEN + 60)
		return -1;
	l4 = data + off;
	if (proto == IPPROTO_TCP) {
		if ((void *)(l4 + 14) > end)
			return -1;
		t->csum_off = off + offsetof(struct tcphdr, check);
		t->tcp_flags = l4[13];
	} else {
		if ((void *)(l4 + 8) > end)
			return -1;
		t->csum_off = off + offsetof(struct udphdr, check);
		t->tcp_flags = 0;
	}
	t->sport = ((__be16 *)l4)[0];
	t->dport = ((__be16 *)l4)[1];
	w->v.sport = t->sport;
	w->v.dport = t->dport;
	w->v.tcp_flags = t->tcp_flags;
	w->v.pad[0] = 0;
	w->v.pad[1] = 0;
	w->v.pad[2] = 0;
	/* Not kept (the map refused): the later fragments are then dropped or passed as orphans. */
	bpf_map_update_elem(&sy_frags, &w->k, &w->v, BPF_ANY);
	return 0;
}

/* What sy_parse_linear did not finish: headers to pull in, or a fragment. Off the hot path. */
static __attribute__((noinline)) int sy_parse_more(struct __sk_buff *skb, struct sy_tuple *t, int rc)
{
	if (rc == SY_PARSE_PULL)
		rc = sy_parse_pulled(skb, t);
	if (rc == SY_PARSE_FRAGMENT)
		rc = sy_parse_fragment(skb, t);
	return rc;
}

/*
 * Parses the packet so that everything after it reads and writes the headers in place: 0, -1
 * (not TCP/UDP over IP), or SY_PARSE_ORPHAN (see sy_parse_fragment). A plain packet whose
 * headers are linear pays what it paid before fragments were read: one comparison.
 */
static __always_inline int sy_parse(struct __sk_buff *skb, struct sy_tuple *t)
{
	int rc = sy_parse_linear(skb, t);

	return rc <= 0 ? rc : sy_parse_more(skb, t, rc);
}

#endif /* SWITCHYARD_FRAG_H */
