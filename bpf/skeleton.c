// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Walking skeleton: tc programs that translate one or a few IPv4 VIP:port frontends to
 * backends (forward on the pod-facing device's ingress, reverse on its egress), and an
 * XDP program that counts what it sees. Stateless on purpose: the flow hash keeps a flow
 * on one backend, and the reverse map is keyed by backend.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <stddef.h>

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "include/layout.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct sy_skel_frontend);
	__type(value, struct sy_skel_service);
} skel_frontends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 512);
	__type(key, struct sy_skel_frontend);
	__type(value, struct sy_skel_frontend);
} skel_revnat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SY_SKEL_STAT_MAX);
	__type(key, __u32);
	__type(value, struct sy_skel_counter);
} skel_stats SEC(".maps");

#define IP_CSUM_OFF (ETH_HLEN + offsetof(struct iphdr, check))
#define IP_SRC_OFF (ETH_HLEN + offsetof(struct iphdr, saddr))
#define IP_DST_OFF (ETH_HLEN + offsetof(struct iphdr, daddr))

static __always_inline void count(__u32 stat, __u64 bytes)
{
	struct sy_skel_counter *c = bpf_map_lookup_elem(&skel_stats, &stat);

	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
}

struct l4_view {
	__u32 l4_off;
	__u32 csum_off;
	__u8 proto;
	__be16 sport;
	__be16 dport;
	__be32 saddr;
	__be32 daddr;
};

/* Parses an IPv4 TCP/UDP packet (first fragment or unfragmented); 0 on success. */
static __always_inline int parse_v4(struct __sk_buff *skb, struct l4_view *v)
{
	struct iphdr ip;
	__be16 ports[2];

	if (skb->protocol != bpf_htons(ETH_P_IP))
		return -1;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) < 0)
		return -1;
	if (ip.ihl < 5 || (ip.frag_off & bpf_htons(0x1fff)))
		return -1;
	if (ip.protocol == IPPROTO_TCP)
		v->csum_off = offsetof(struct tcphdr, check);
	else if (ip.protocol == IPPROTO_UDP)
		v->csum_off = offsetof(struct udphdr, check);
	else
		return -1;
	v->l4_off = ETH_HLEN + ip.ihl * 4;
	if (bpf_skb_load_bytes(skb, v->l4_off, ports, sizeof(ports)) < 0)
		return -1;
	v->proto = ip.protocol;
	v->saddr = ip.saddr;
	v->daddr = ip.daddr;
	v->sport = ports[0];
	v->dport = ports[1];
	return 0;
}

/* Rewrites one address and its port, keeping the IP and L4 checksums right. */
static __always_inline int rewrite(struct __sk_buff *skb, const struct l4_view *v, int is_dst,
				   __be32 new_addr, __be16 new_port)
{
	__be32 old_addr = is_dst ? v->daddr : v->saddr;
	__be16 old_port = is_dst ? v->dport : v->sport;
	__u32 addr_off = is_dst ? IP_DST_OFF : IP_SRC_OFF;
	__u32 port_off = v->l4_off + (is_dst ? 2 : 0);
	__u32 csum_at = v->l4_off + v->csum_off;
	__u64 mangled = v->proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;

	if (bpf_l4_csum_replace(skb, csum_at, old_addr, new_addr, BPF_F_PSEUDO_HDR | mangled | 4) < 0)
		return -1;
	if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_addr, new_addr, 4) < 0)
		return -1;
	if (bpf_skb_store_bytes(skb, addr_off, &new_addr, 4, 0) < 0)
		return -1;
	if (bpf_l4_csum_replace(skb, csum_at, old_port, new_port, mangled | 2) < 0)
		return -1;
	if (bpf_skb_store_bytes(skb, port_off, &new_port, 2, 0) < 0)
		return -1;
	return 0;
}

/* From a pod towards the node: VIP:port -> a backend chosen by flow hash. */
SEC("tc")
int sy_skel_tc_ingress(struct __sk_buff *skb)
{
	struct sy_skel_frontend fe = {};
	struct sy_skel_service *svc;
	struct l4_view v = {};
	__u32 slot;

	if (parse_v4(skb, &v) < 0)
		return TC_ACT_OK;
	fe.addr = v.daddr;
	fe.port = v.dport;
	fe.proto = v.proto;
	svc = bpf_map_lookup_elem(&skel_frontends, &fe);
	if (!svc || svc->count == 0)
		return TC_ACT_OK;
	slot = bpf_get_hash_recalc(skb) % svc->count;
	if (slot >= SY_SKEL_MAX_BACKENDS)
		return TC_ACT_OK;
	if (rewrite(skb, &v, 1, svc->backends[slot].addr, svc->backends[slot].port) < 0)
		return TC_ACT_SHOT;
	count(SY_SKEL_STAT_FORWARD, skb->len);
	return TC_ACT_OK;
}

/* From the node towards a pod: a backend's reply gets the VIP:port back as its source. */
SEC("tc")
int sy_skel_tc_egress(struct __sk_buff *skb)
{
	struct sy_skel_frontend be = {};
	struct sy_skel_frontend *fe;
	struct l4_view v = {};

	if (parse_v4(skb, &v) < 0)
		return TC_ACT_OK;
	be.addr = v.saddr;
	be.port = v.sport;
	be.proto = v.proto;
	fe = bpf_map_lookup_elem(&skel_revnat, &be);
	if (!fe)
		return TC_ACT_OK;
	if (rewrite(skb, &v, 0, fe->addr, fe->port) < 0)
		return TC_ACT_SHOT;
	count(SY_SKEL_STAT_REVERSE, skb->len);
	return TC_ACT_OK;
}

SEC("xdp")
int sy_skel_xdp(struct xdp_md *ctx)
{
	count(SY_SKEL_STAT_XDP, ctx->data_end - ctx->data);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
