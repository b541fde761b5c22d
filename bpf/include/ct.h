/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Connection tracking for translated flows: the forward entry keeps a flow on its backend (and its
 * SNAT port), the reply entry says how to translate the answers back. */
#ifndef SWITCHYARD_CT_H
#define SWITCHYARD_CT_H

#include "maps.h"
#include "parse.h"

/*
 * A closed flow's entries stay as long as the side that closed first keeps the tuple in TIME_WAIT
 * (TCP_TIMEWAIT_LEN, 60 s): while they do, a new flow that would reuse the tuple towards the same
 * backend is seen as a clash and gets a port of its own (sy_forward).
 */
#define SY_CT_CLOSING_TIMEOUT_NS (60ULL * 1000000000ULL)

static __always_inline void sy_ct_key_of(const struct sy_tuple *t, struct sy_ct_key *k)
{
	__builtin_memcpy(k->saddr, t->saddr, 16);
	__builtin_memcpy(k->daddr, t->daddr, 16);
	k->sport = t->sport;
	k->dport = t->dport;
	k->proto = t->proto;
	k->family = t->family;
	k->pad[0] = 0;
	k->pad[1] = 0;
}

static __always_inline __u64 sy_ct_timeout(const struct sy_config *cfg, const struct sy_ct_value *v, __u8 proto)
{
	if (v->flags & SY_CT_CLOSING)
		return SY_CT_CLOSING_TIMEOUT_NS;
	if (proto == IPPROTO_TCP)
		return cfg ? cfg->ct_timeout_tcp_ns : 0;
	return cfg ? cfg->ct_timeout_udp_ns : 0;
}

/*
 * Time since `then`, never negative: timestamps come from the coarse monotonic clock, and one
 * written by another clock reader (user space, an older agent's fine clock) may be a tick ahead.
 */
static __always_inline __u64 sy_age(__u64 now, __u64 then)
{
	return now > then ? now - then : 0;
}

/* A live entry for key k, or NULL (expired entries are treated as absent). */
static __always_inline struct sy_ct_value *sy_ct_lookup(struct sy_ct_key *k, const struct sy_config *cfg, __u64 now)
{
	struct sy_ct_value *v = bpf_map_lookup_elem(&sy_ct, k);

	if (!v)
		return NULL;
	if (sy_age(now, v->last_seen) > sy_ct_timeout(cfg, v, k->proto))
		return NULL;
	return v;
}

#define SY_TCP_FIN 0x01
#define SY_TCP_SYN 0x02
#define SY_TCP_RST 0x04
#define SY_TCP_ACK 0x10

/*
 * A SYN (or SYN-ACK) on an entry whose flow has closed opens a new connection that happens to
 * reuse the tuple, as kernel conntrack treats it: the old entry must not capture it.
 */
static __always_inline int sy_ct_reopened(const struct sy_ct_value *v, __u8 proto, __u8 tcp_flags)
{
	return proto == IPPROTO_TCP && (v->flags & SY_CT_CLOSING) && (tcp_flags & SY_TCP_SYN) && !(tcp_flags & SY_TCP_RST);
}

/*
 * Whether the reply tuple rk of a new flow to frontend rev_nat_id is taken by another live flow:
 * the same client port reaching the same backend through another frontend (or the answers of
 * both would go to one). Kernel conntrack resolves such a NAT clash with another source port.
 */
static __always_inline int sy_ct_clash(struct sy_ct_key *rk, __u32 rev_nat_id, const struct sy_config *cfg, __u64 now)
{
	struct sy_ct_value *v = sy_ct_lookup(rk, cfg, now);

	if (!v)
		return 0;
	return !(v->flags & SY_CT_REPLY) || v->rev_nat_id != rev_nat_id;
}

static __always_inline void sy_ct_touch(struct sy_ct_value *v, __u8 tcp_flags, __u64 now)
{
	/* The clock ticks per jiffy: most packets of a busy flow need not dirty the entry. */
	if (v->last_seen != now)
		v->last_seen = now;
	if (tcp_flags & (SY_TCP_FIN | SY_TCP_RST))
		v->flags |= SY_CT_CLOSING;
}

#endif /* SWITCHYARD_CT_H */
