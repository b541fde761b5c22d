// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Benchmark entry points around the datapath (built into build/bpf/bench/, never loaded by the
 * agent). BPF_PROG_TEST_RUN runs a program `repeat` times on one skb without resetting it, so
 * from the second run on a translated packet would measure something else (a packet already
 * addressed to its backend). Each entry point here first writes the original IPv4 + TCP headers
 * back from bench_packets, then runs the datapath. bench/datapath.ts subtracts the cost of a
 * program that only restores, measured in the same run.
 */
#include "../../bpf/datapath.c"

#define BENCH_HDR 40 /* IPv4 (no options) + TCP (no options) */

/* Not a datapath layout (no sy_ prefix): written by bench/datapath.ts only. */
struct bench_packet {
	__be16 hdr[BENCH_HDR / 2]; /* the IP and TCP headers as built, checksums valid */
	__u32 services;            /* new flows go to service (random % services) */
	__u32 vip_base;            /* service i has the ClusterIP vip_base + i (host order) */
};

enum bench_slot {
	BENCH_ESTABLISHED = 0, /* pod -> ClusterIP, the flow already open */
	BENCH_NEW = 1,         /* the template of new flows: source and service drawn at random */
	BENCH_REPLY = 2,       /* backend -> pod, the answer of BENCH_ESTABLISHED */
	BENCH_EXTERNAL = 3,    /* external client -> an eTP Local external IP, the flow already open */
	BENCH_SLOTS = 4,
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, BENCH_SLOTS);
	__type(key, __u32);
	__type(value, struct bench_packet);
} bench_packets SEC(".maps");

/* 16-bit word indices into the headers. */
#define W_IP_CSUM 5
#define W_SADDR_LO 7
#define W_DADDR_HI 8
#define W_DADDR_LO 9
#define W_SPORT 10
#define W_TCP_CSUM 18

/* RFC 1624, eq. 3: the checksum after one 16-bit word changes. */
static __always_inline __be16 bench_csum_update(__be16 csum, __be16 from, __be16 to)
{
	__u32 sum = (__u16)~csum + (__u16)~from + (__u16)to;

	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__be16)~sum;
}

static __always_inline void bench_set(__be16 *hdr, int word, __be16 to, int in_ip_csum)
{
	__be16 from = hdr[word];

	if (in_ip_csum)
		hdr[W_IP_CSUM] = bench_csum_update(hdr[W_IP_CSUM], from, to);
	hdr[W_TCP_CSUM] = bench_csum_update(hdr[W_TCP_CSUM], from, to);
	hdr[word] = to;
}

static __always_inline int bench_restore(struct __sk_buff *skb, __u32 slot)
{
	struct bench_packet *p = bpf_map_lookup_elem(&bench_packets, &slot);
	__be16 hdr[BENCH_HDR / 2];

	if (!p)
		return -1;
	__builtin_memcpy(hdr, p->hdr, BENCH_HDR);
	if (slot == BENCH_NEW && p->services) {
		__u32 r = bpf_get_prandom_u32();
		__be32 vip = bpf_htonl(p->vip_base + bpf_get_prandom_u32() % p->services);

		/* The source (low half of the address, and the port) makes the flow new. */
		bench_set(hdr, W_SADDR_LO, (__be16)r, 1);
		bench_set(hdr, W_SPORT, (__be16)(r >> 16), 0);
		bench_set(hdr, W_DADDR_HI, (__be16)vip, 1);
		bench_set(hdr, W_DADDR_LO, (__be16)(vip >> 16), 1);
	}
	return bpf_skb_store_bytes(skb, ETH_HLEN, hdr, BENCH_HDR, 0);
}

/* The same for XDP, whose frames are written directly. */
static __always_inline int bench_xdp_restore(struct xdp_md *ctx, __u32 slot)
{
	struct bench_packet *p = bpf_map_lookup_elem(&bench_packets, &slot);
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;

	if (!p || data + ETH_HLEN + BENCH_HDR > end)
		return -1;
	__builtin_memcpy(data + ETH_HLEN, p->hdr, BENCH_HDR);
	return 0;
}

#define BENCH_PROG(name, slot, run)                        \
	SEC("tc")                                          \
	int name(struct __sk_buff *skb)                    \
	{                                                  \
		if (bench_restore(skb, slot) < 0)          \
			return TC_ACT_SHOT;                \
		return run;                                \
	}

BENCH_PROG(sy_bench_restore, BENCH_ESTABLISHED, TC_ACT_OK)
BENCH_PROG(sy_bench_restore_new, BENCH_NEW, TC_ACT_OK)
BENCH_PROG(sy_bench_established, BENCH_ESTABLISHED, sy_handle(skb, SY_SCOPE_INTERNAL, 1, 0))
BENCH_PROG(sy_bench_new, BENCH_NEW, sy_handle(skb, SY_SCOPE_INTERNAL, 1, 0))
BENCH_PROG(sy_bench_reply, BENCH_REPLY, sy_handle(skb, SY_SCOPE_INTERNAL, 0, 0))
BENCH_PROG(sy_bench_restore_external, BENCH_EXTERNAL, TC_ACT_OK)
BENCH_PROG(sy_bench_external, BENCH_EXTERNAL, sy_handle(skb, SY_SCOPE_EXTERNAL, 1, 0))

SEC("xdp")
int sy_bench_xdp_restore(struct xdp_md *ctx)
{
	return bench_xdp_restore(ctx, BENCH_EXTERNAL) < 0 ? XDP_ABORTED : XDP_PASS;
}

SEC("xdp")
int sy_bench_xdp(struct xdp_md *ctx)
{
	if (bench_xdp_restore(ctx, BENCH_EXTERNAL) < 0)
		return XDP_ABORTED;
	return sy_xdp_handle(ctx);
}

/* What one helper call costs here (bpf_get_prandom_u32 does almost nothing else): the datapath's
 * figures are mostly counts of such calls. */
SEC("tc")
int sy_bench_helper_calls(struct __sk_buff *skb)
{
	__u32 x = 0;

	for (int i = 0; i < 8; i++)
		x ^= bpf_get_prandom_u32();
	return x == 0x5eed ? TC_ACT_SHOT : TC_ACT_OK;
}
