// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The service datapath at tc. Attach model:
 *   sy_from_pod       tc ingress of every pod-facing device (packets leaving local pods)
 *   sy_from_veth      the same, on a pod device that is the host end of a veth/netkit pair
 *   sy_to_pod         tc egress of every pod-facing device (answers reaching local pods)
 *   sy_from_external  tc ingress of the node's external devices
 *   sy_to_external    tc egress of the node's external devices (answers leaving the node)
 *   sy_sock_*         cgroup (v2) socket hooks for processes on the node itself
 *   sy_xdp_external   XDP on external devices: early drops, and DNAT that needs no SNAT
 * Each program first asks connection tracking whether the packet answers a translated flow
 * (and translates it back), then whether it opens or continues a flow to a frontend.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "include/clock.h"
#include "include/ct.h"
#include "include/fib.h"
#include "include/frag.h"
#include "include/icmp.h"
#include "include/lb.h"
#include "include/maps.h"
#include "include/nat.h"
#include "include/parse.h"
#include "include/reject.h"
#include "include/service-cidr.h"
#include "include/sock.h"
#include "include/xdp.h"

static __always_inline const struct sy_config *sy_cfg(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&sy_config, &zero);
}

/* Drops a packet and says why (sy_drops). */
static __always_inline int sy_drop(__u32 reason)
{
	sy_drop_count(reason);
	return TC_ACT_SHOT;
}

/*
 * Sends a translated packet straight to its next hop, past the host's stack: its source is now a
 * node address, which the kernel's input path would drop as a martian, and netfilter then sees
 * neither direction of the flow (the answers take the same way back), so its conntrack never
 * calls them INVALID. Here for a packet whose tuple t is already final (an ICMP error translated
 * by include/icmp.h); translated flows look their route up before the rewrite (sy_translate,
 * sy_reverse), so that a packet too big for it is answered as its sender sent it (include/fib.h).
 */
static __always_inline int sy_fib_redirect(struct __sk_buff *skb, const struct sy_tuple *t, int peer)
{
	int rc = sy_fib_lookup(skb, t, t->saddr, t->daddr, sy_fib_ports(t->sport, t->dport));

	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
		return sy_drop(SY_DROP_FRAG_NEEDED); /* an error about an error is never sent */
	return sy_fib_send(skb, t->family, rc, peer);
}

/*
 * Translates an answer of a tracked flow back (v: its live reply entry). Answers whose flow was
 * translated to a node address go past the stack as their flow's first direction did; all others
 * are translated at egress, after netfilter saw them as the backend sent them (sy_handle).
 */
static __always_inline int sy_reverse(struct __sk_buff *skb, struct sy_tuple *t, const struct sy_ct_key *k,
				      struct sy_ct_value *v, __u64 now, int peer)
{
	struct sy_revnat *rn;
	__be32 client[4];
	__be16 client_port;
	__u32 rev_nat_id;
	__u16 flags;
	int rc = 0;

	sy_ct_touch(k, v, t->tcp_flags, now);
	rev_nat_id = v->rev_nat_id;
	flags = v->flags;
	__builtin_memcpy(client, v->nat_addr, 16);
	client_port = v->nat_port;
	rn = bpf_map_lookup_elem(&sy_revnat, &rev_nat_id);
	if (!rn || !rn->family)
		return TC_ACT_OK;
	if (flags & SY_CT_NODE_SNAT) {
		/* Sent on past the stack: its route first, while it is still as the backend sent it. */
		rc = sy_fib_lookup(skb, t, rn->addr, client, sy_fib_ports(rn->port, client_port));
		if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
			return sy_fib_too_big(skb, t);
	}
	if (sy_rewrite(skb, t, 0, rn->addr, rn->port) < 0)
		return sy_drop(SY_DROP_UNSUPPORTED);
	if ((flags & SY_CT_SNAT) && sy_rewrite(skb, t, 1, client, client_port) < 0)
		return sy_drop(SY_DROP_UNSUPPORTED);
	return (flags & SY_CT_NODE_SNAT) ? sy_fib_send(skb, t->family, rc, peer) : TC_ACT_OK;
}

static __always_inline int sy_same_addr(const __be32 *a, const __be32 *b)
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3];
}

/* The backend is this node (a hostNetwork endpoint on it). */
static __always_inline int sy_is_node(const struct sy_config *cfg, const struct sy_backend *be)
{
	if (be->family == 4)
		return be->addr[0] == cfg->node_ip4;
	return sy_same_addr(be->addr, cfg->node_ip6);
}

/* Tries to find a free SNAT port this many times before the flow is dropped (and counted). */
#define SY_SNAT_TRIES 32

/*
 * Whether a socket of the node itself already uses the reply tuple rk (the node talking to the same
 * backend from that port): its answers must not be taken for this flow's.
 */
static __attribute__((noinline)) int sy_local_socket(struct __sk_buff *skb, const struct sy_ct_key *rk)
{
	struct bpf_sock_tuple st = {};
	struct bpf_sock *sk;
	__u32 len;

	if (rk->proto != IPPROTO_TCP && rk->proto != IPPROTO_UDP)
		return 0; /* no socket lookup helper for SCTP */
	if (rk->family == 4) {
		st.ipv4.saddr = rk->saddr[0];
		st.ipv4.daddr = rk->daddr[0];
		st.ipv4.sport = rk->sport;
		st.ipv4.dport = rk->dport;
		len = sizeof(st.ipv4);
	} else {
		__builtin_memcpy(st.ipv6.saddr, rk->saddr, 16);
		__builtin_memcpy(st.ipv6.daddr, rk->daddr, 16);
		st.ipv6.sport = rk->sport;
		st.ipv6.dport = rk->dport;
		len = sizeof(st.ipv6);
	}
	if (rk->proto == IPPROTO_TCP)
		sk = bpf_skc_lookup_tcp(skb, &st, len, BPF_F_CURRENT_NETNS, 0);
	else
		sk = bpf_sk_lookup_udp(skb, &st, len, BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return 0;
	bpf_sk_release(sk);
	return 1;
}

/*
 * Claims a source port for a translated flow and writes its reply entry rv under it: the client's
 * own port when its reply tuple is free (as netfilter's NAT keeps it), else random ports of
 * [snat_port_min, snat_port_max] (never for SCTP). A port is claimed atomically (BPF_NOEXIST), so two CPUs never
 * share one; a tuple whose flow expired or closed is taken over. 0, or -1 when none was found.
 */
static __always_inline int sy_snat_claim(struct __sk_buff *skb, struct sy_ct_key *rk, const struct sy_ct_value *rv,
					 const struct sy_config *cfg, __u64 now, __be16 client_port)
{
	__u16 min = cfg->snat_port_min, max = cfg->snat_port_max;
	__u32 span = max >= min ? max - min + 1 : 1;

	for (int i = 0; i < SY_SNAT_TRIES; i++) {
		struct sy_ct_value *old;

		/* SCTP keeps the client's port or nothing: a new port would void its CRC32c (include/nat.h). */
		if (rk->proto == IPPROTO_SCTP && (i > 0 || !client_port))
			return -1;
		rk->dport = (i == 0 && client_port) ? client_port : bpf_htons(min + bpf_get_prandom_u32() % span);
		if (sy_local_socket(skb, rk))
			continue;
		/* A TCP tuple is taken when either table has a live flow on it. */
		if (rk->proto == IPPROTO_TCP) {
			old = sy_ct_get(rk);
			if (old && !sy_ct_reusable(old, rk->proto, cfg, now))
				continue;
		}
		if (sy_ct_put_new(rk, rv, BPF_NOEXIST) == 0)
			return 0;
		old = sy_ct_get_new(rk);
		if (old && sy_ct_reusable(old, rk->proto, cfg, now) && sy_ct_put_new(rk, rv, BPF_EXIST) == 0)
			return 0;
	}
	return -1;
}

/*
 * Sends a client's packet to its backend, with the flow's SNAT source when it has one: a node
 * address (redirected, see sy_fib_redirect), or the client's own address with another port (a
 * resolved clash, routed as any packet of the client's).
 */
static __always_inline int sy_translate(struct __sk_buff *skb, struct sy_tuple *t, const struct sy_backend *be, int snat,
					const __be32 *nat_addr, __be16 nat_port, int peer)
{
	int moved, rc = 0;

	moved = snat && !sy_same_addr(t->saddr, nat_addr); /* to a node address, not a resolved clash */
	if (moved) {
		/* Sent on past the stack: its route first, while it is still as the client sent it. */
		rc = sy_fib_lookup(skb, t, nat_addr, be->addr, sy_fib_ports(nat_port, be->port));
		if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
			return sy_fib_too_big(skb, t);
	}
	if (sy_rewrite(skb, t, 1, be->addr, be->port) < 0)
		return sy_drop(SY_DROP_UNSUPPORTED);
	if (!snat)
		return TC_ACT_OK;
	if (sy_rewrite(skb, t, 0, nat_addr, nat_port) < 0)
		return sy_drop(SY_DROP_UNSUPPORTED);
	return moved ? sy_fib_send(skb, t->family, rc, peer) : TC_ACT_OK;
}

/*
 * A packet of an established flow (v: its live forward entry) keeps its backend, even a
 * terminating one; no frontend lookup, so a change of the service's source ranges, like
 * kube-proxy's rules, does not cut flows already open. 0 when the backend is gone (its endpoint
 * was removed): the flow then moves to a live one.
 */
static __always_inline int sy_established(struct __sk_buff *skb, struct sy_tuple *t, const struct sy_ct_key *k,
					  struct sy_ct_value *v, __u64 now, int peer, int *verdict)
{
	struct sy_backend *be = sy_backend(v->backend_id);
	__be32 nat_addr[4];
	__be16 nat_port;
	__u16 flags;

	/* The id must still name a backend of the flow's service port: ids are reused (after a
	 * quarantine), and a flow must never reach another service's pod. */
	if (!be || be->service_id != v->service_id)
		return 0;
	sy_ct_touch(k, v, t->tcp_flags, now);
	sy_count(v->service_id, skb->len);
	flags = v->flags;
	__builtin_memcpy(nat_addr, v->nat_addr, 16);
	nat_port = v->nat_port;
	*verdict = sy_translate(skb, t, be, flags & SY_CT_SNAT, nat_addr, nat_port, peer);
	return 1;
}

/* A packet that opens a flow (fk: its tuple's CT key), or one for no frontend at all. */
static __always_inline int sy_forward(struct __sk_buff *skb, struct sy_tuple *t, const struct sy_ct_key *fk,
				      const struct sy_config *cfg, __u64 now, __u8 scope, int peer)
{
	struct sy_frontend_value *fe;
	struct sy_ct_key rk = {};
	struct sy_ct_value cv = {};
	struct sy_backend *be = NULL;
	__u32 backend_id = 0;
	int snat = 0, node_snat = 0;

	fe = sy_frontend(t, scope);
	if (!fe) {
		if (sy_unallocated_service_ip(t))
			return sy_drop(SY_DROP_UNALLOCATED_CLUSTER_IP);
		return TC_ACT_UNSPEC; /* not ours: the next filter decides (see sy_handle) */
	}
	sy_count(fe->service_id, skb->len);
	if (!sy_source_allowed(fe, t))
		return sy_drop(SY_DROP_SOURCE_RANGE);
	/* A later fragment follows the flow its first fragment found or opened; it never opens one
	 * (nor is it answered with a reject): its first was dropped, or its flow is gone. */
	if (t->l4_off == SY_L4_NONE)
		return sy_drop(SY_DROP_FRAG_NO_FIRST);

	/* The client completes a handshake still tracked among embryonic flows: it becomes established
	 * (and keeps its backend). Looked for only here, for packets to a frontend, so no other
	 * traffic pays the lookup. */
	if (t->proto == IPPROTO_TCP && !(t->tcp_flags & SY_TCP_SYN)) {
		struct sy_ct_value *ev = sy_ct_complete(fk, cfg, now);

		be = ev ? sy_backend(ev->backend_id) : NULL;
		if (be && be->service_id == ev->service_id) {
			sy_ct_touch(fk, ev, t->tcp_flags, now);
			sy_count(ev->service_id, skb->len);
			snat = ev->flags & SY_CT_SNAT;
			__builtin_memcpy(rk.daddr, ev->nat_addr, 16);
			rk.dport = ev->nat_port;
			goto translate;
		}
	}
	if (fe->count == 0) {
		if (fe->flags & SY_FE_REJECT)
			return sy_reject(skb, t);
		return sy_drop((fe->flags & SY_FE_LOCAL) ? SY_DROP_LOCAL_NO_ENDPOINT : SY_DROP_NO_BACKEND);
	}
	/* A new flow (or a closed flow's tuple reused, or one whose backend is gone): choose. */
	be = sy_select(fe, t, now, &backend_id);
	if (!be)
		return sy_drop(SY_DROP_NO_BACKEND);
	if (!cfg)
		return sy_drop(SY_DROP_CT_FULL);
	/* Hairpin: a pod reaching itself must see the node as the source, or its answer stays inside.
	 * A backend that is the node itself (hostNetwork) is reached by local delivery, which
	 * kube-proxy's masquerade (POSTROUTING) never sees either: it keeps the client's address. */
	snat = ((fe->flags & SY_FE_MASQUERADE) || sy_same_addr(t->saddr, be->addr)) && !sy_is_node(cfg, be);
	node_snat = snat;

	/* The reply entry first (its port must be claimed), then the forward one; one value buffer
	 * serves both, which keeps the stack within what the verifier allows with a subprogram. */
	cv.backend_id = backend_id;
	cv.rev_nat_id = fe->rev_nat_id;
	cv.service_id = fe->service_id;
	cv.created = now;
	cv.last_seen = now;
	cv.flags = SY_CT_REPLY;
	__builtin_memcpy(rk.saddr, be->addr, 16);
	rk.sport = be->port;
	rk.proto = t->proto;
	rk.family = t->family;
	if (snat) {
		if (t->family == 4)
			rk.daddr[0] = cfg->node_ip4;
		else
			__builtin_memcpy(rk.daddr, cfg->node_ip6, 16);
		cv.flags |= SY_CT_SNAT | SY_CT_NODE_SNAT;
		__builtin_memcpy(cv.nat_addr, t->saddr, 16);
		cv.nat_port = t->sport;
		if (sy_snat_claim(skb, &rk, &cv, cfg, now, t->sport) < 0)
			return sy_drop(SY_DROP_SNAT_EXHAUSTED);
	} else {
		__builtin_memcpy(rk.daddr, t->saddr, 16);
		rk.dport = t->sport;
		/* The client's port already talks to this backend for another frontend: this flow
		 * keeps the client's address and gets a port of its own. */
		int clash = sy_ct_put_reply(&rk, &cv, fe->rev_nat_id, cfg, now);

		if (clash < 0)
			return sy_drop(SY_DROP_CT_FULL);
		if (clash) {
			snat = 1;
			cv.flags |= SY_CT_SNAT;
			__builtin_memcpy(cv.nat_addr, t->saddr, 16);
			cv.nat_port = t->sport;
			if (sy_snat_claim(skb, &rk, &cv, cfg, now, 0) < 0)
				return sy_drop(SY_DROP_SNAT_EXHAUSTED);
		}
	}
	/* The forward entry: the SNAT source this flow uses, if any. */
	cv.flags = (snat ? SY_CT_SNAT : 0) | (node_snat ? SY_CT_NODE_SNAT : 0);
	if (snat) {
		__builtin_memcpy(cv.nat_addr, rk.daddr, 16);
		cv.nat_port = rk.dport;
	} else {
		__builtin_memset(cv.nat_addr, 0, 16);
		cv.nat_port = 0;
	}
	if (sy_ct_put_new(fk, &cv, BPF_ANY) < 0) {
		sy_ct_del_new(&rk);
		return sy_drop(SY_DROP_CT_FULL);
	}

translate:
	return sy_translate(skb, t, be, snat, rk.daddr, rk.dport, peer);
}

/*
 * scope: which frontends a new flow sees; lookup_services: whether new flows start here (ingress
 * programs) or only answers are translated (egress programs). An ingress program leaves answers
 * that were not translated to a node address to the egress program of the device they leave by:
 * netfilter then sees them as the backend sent them, the tuple its conntrack saw the flow open
 * with (after our DNAT), and no stock `--ctstate INVALID -j DROP` rule drops them.
 */
static __always_inline int sy_handle(struct __sk_buff *skb, __u8 scope, int lookup_services, int peer)
{
	const struct sy_config *cfg = sy_cfg();
	struct sy_tuple t = {};
	struct sy_ct_key k = {};
	struct sy_ct_value *v;
	__u64 now = sy_now();
	int verdict, embryonic = 0;

	/*
	 * What is not ours goes on to the next filter of the chain (TC_ACT_UNSPEC; at the end of
	 * the chain the kernel then carries on as with TC_ACT_OK), so a CNI's or another agent's
	 * filter at a later priority still sees it. A packet we translated ends the chain with
	 * TC_ACT_OK or a redirect, as Cilium's do: a redirect ends it anyway, and a filter behind
	 * us must not see half of a flow's packets rewritten and the other half (redirected) not.
	 */
	verdict = sy_parse(skb, &t);
	if (verdict) {
		/* A later fragment for a service address, its first not seen: never sent on untranslated. */
		if (verdict == SY_PARSE_ORPHAN)
			return lookup_services ? sy_drop(SY_DROP_FRAG_NO_FIRST) : TC_ACT_UNSPEC;
		/* Not TCP/UDP: ICMP errors of tracked flows are translated (include/icmp.h). */
		verdict = sy_icmp_error(skb, &t, cfg, now, lookup_services);
		return verdict == SY_ICMP_REDIRECT ? sy_fib_redirect(skb, &t, peer) : verdict;
	}
	/* One lookup tells an answer from an established flow from anything else. */
	sy_ct_key_of(&t, &k);
	v = sy_ct_lookup(&k, cfg, now);
	/* Handshake packets (a SYN again, the SYN-ACK, a RST) of a flow not yet established. */
	if (!v && t.proto == IPPROTO_TCP && (t.tcp_flags & (SY_TCP_SYN | SY_TCP_RST))) {
		v = bpf_map_lookup_elem(&sy_ct_syn, &k);
		if (v && sy_ct_expired(v, t.proto, cfg, now))
			v = NULL;
		embryonic = v != NULL;
	}
	if (v && sy_ct_reopened(v, t.proto, t.tcp_flags)) {
		/* A new connection on a closed flow's tuple: the old entry must not capture it, nor
		 * shadow the new flow's entries (written among handshakes in progress). */
		if (embryonic)
			bpf_map_delete_elem(&sy_ct_syn, &k);
		else
			sy_ct_del(&k);
		v = NULL;
	}
	/* A flow kernel conntrack translated before this datapath took over (written at start from
	 * its table, control/backends/ebpf/takeover.ts): netfilter keeps translating it until it ends. */
	if (v && (v->flags & SY_CT_HOST)) {
		sy_ct_touch(&k, v, t.tcp_flags, now);
		return TC_ACT_UNSPEC;
	}
	if (v && (v->flags & SY_CT_REPLY)) {
		if (lookup_services && !(v->flags & SY_CT_NODE_SNAT))
			return TC_ACT_UNSPEC;
		return sy_reverse(skb, &t, &k, v, now, peer);
	}
	if (!lookup_services)
		return TC_ACT_UNSPEC;
	if (v && sy_established(skb, &t, &k, v, now, peer, &verdict))
		return verdict;
	return sy_forward(skb, &t, &k, cfg, now, scope, peer);
}

SEC("tc")
int sy_from_pod(struct __sk_buff *skb)
{
	return sy_handle(skb, SY_SCOPE_INTERNAL, 1, 0);
}

/* sy_from_pod for a pod device that is the host end of a veth (or netkit) pair: a hairpin goes
 * straight back to the pod's end (sy_fib_send). Attached instead of sy_from_pod by device kind. */
SEC("tc")
int sy_from_veth(struct __sk_buff *skb)
{
	return sy_handle(skb, SY_SCOPE_INTERNAL, 1, 1);
}

SEC("tc")
int sy_to_pod(struct __sk_buff *skb)
{
	return sy_handle(skb, SY_SCOPE_INTERNAL, 0, 0);
}

SEC("tc")
int sy_from_external(struct __sk_buff *skb)
{
	return sy_handle(skb, SY_SCOPE_EXTERNAL, 1, 0);
}

SEC("tc")
int sy_to_external(struct __sk_buff *skb)
{
	return sy_handle(skb, SY_SCOPE_EXTERNAL, 0, 0);
}

SEC("xdp")
int sy_xdp_external(struct xdp_md *ctx)
{
	return sy_xdp_handle(ctx);
}

/* One entry point per socket hook and family; the logic is in include/sock.h. */
#define SY_SOCK_PROG(hook, family, handler)                          \
	SEC("cgroup/" #hook #family)                                 \
	int sy_sock_##hook##family(struct bpf_sock_addr *ctx)        \
	{                                                            \
		return handler(ctx, family);                         \
	}

SY_SOCK_PROG(connect, 4, sy_sock_forward)
SY_SOCK_PROG(connect, 6, sy_sock_forward)
SY_SOCK_PROG(sendmsg, 4, sy_sock_forward)
SY_SOCK_PROG(sendmsg, 6, sy_sock_forward)
SY_SOCK_PROG(recvmsg, 4, sy_sock_reverse)
SY_SOCK_PROG(recvmsg, 6, sy_sock_reverse)
SY_SOCK_PROG(getpeername, 4, sy_sock_reverse)
SY_SOCK_PROG(getpeername, 6, sy_sock_reverse)

char LICENSE[] SEC("license") = "Dual BSD/GPL";
