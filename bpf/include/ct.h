/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Connection tracking for translated flows: the forward entry keeps a flow on its backend (and its
 * SNAT port), the reply entry says how to translate the answers back. TCP flows live in sy_ct,
 * every other protocol in sy_ct_any. A flow's state (answered, half closed, closed) is kept in both
 * entries with kernel conntrack's per-state timeouts; the packets that change it update both.
 */
#ifndef SWITCHYARD_CT_H
#define SWITCHYARD_CT_H

#include "maps.h"
#include "parse.h"

#define SY_TCP_FIN 0x01
#define SY_TCP_SYN 0x02
#define SY_TCP_RST 0x04
#define SY_TCP_ACK 0x10

static __always_inline void sy_drop_count(__u32 reason)
{
	__u64 *n = bpf_map_lookup_elem(&sy_drops, &reason);

	if (n)
		*n += 1;
}

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

/* The entry for k in its protocol's map. */
static __always_inline struct sy_ct_value *sy_ct_get(const struct sy_ct_key *k)
{
	if (k->proto == IPPROTO_TCP)
		return bpf_map_lookup_elem(&sy_ct, k);
	return bpf_map_lookup_elem(&sy_ct_any, k);
}

static __always_inline long sy_ct_put(const struct sy_ct_key *k, const struct sy_ct_value *v, __u64 flags)
{
	if (k->proto == IPPROTO_TCP)
		return bpf_map_update_elem(&sy_ct, k, v, flags);
	return bpf_map_update_elem(&sy_ct_any, k, v, flags);
}

static __always_inline void sy_ct_del(const struct sy_ct_key *k)
{
	if (k->proto == IPPROTO_TCP)
		bpf_map_delete_elem(&sy_ct, k);
	else
		bpf_map_delete_elem(&sy_ct_any, k);
}

/*
 * New flows are written where they wait to be confirmed: a TCP flow in sy_ct_syn until the client
 * completes the handshake (sy_ct_promote), anything else in sy_ct_any at once.
 */
static __always_inline long sy_ct_put_new(const struct sy_ct_key *k, const struct sy_ct_value *v, __u64 flags)
{
	if (k->proto == IPPROTO_TCP)
		return bpf_map_update_elem(&sy_ct_syn, k, v, flags);
	return bpf_map_update_elem(&sy_ct_any, k, v, flags);
}

static __always_inline struct sy_ct_value *sy_ct_get_new(const struct sy_ct_key *k)
{
	if (k->proto == IPPROTO_TCP)
		return bpf_map_lookup_elem(&sy_ct_syn, k);
	return bpf_map_lookup_elem(&sy_ct_any, k);
}

static __always_inline void sy_ct_del_new(const struct sy_ct_key *k)
{
	if (k->proto == IPPROTO_TCP)
		bpf_map_delete_elem(&sy_ct_syn, k);
	else
		bpf_map_delete_elem(&sy_ct_any, k);
}

/* The entry for k in either table (a TCP flow may still be completing its handshake). */
static __always_inline struct sy_ct_value *sy_ct_get_any(const struct sy_ct_key *k)
{
	struct sy_ct_value *v = sy_ct_get(k);

	if (!v && k->proto == IPPROTO_TCP)
		v = bpf_map_lookup_elem(&sy_ct_syn, k);
	return v;
}

/* How long an entry lives without a packet, by protocol and state (control/bpf/conntrack.ts keeps the same rule). */
static __always_inline __u64 sy_ct_timeout(const struct sy_config *cfg, __u16 flags, __u8 proto)
{
	if (!cfg)
		return 0;
	if (proto == IPPROTO_TCP) {
		if (flags & SY_CT_CLOSED)
			return cfg->ct_timeout_tcp_closed_ns;
		if (flags & SY_CT_CLOSING)
			return cfg->ct_timeout_tcp_fin_ns;
		if (flags & SY_CT_ESTABLISHED)
			return cfg->ct_timeout_tcp_ns;
		return cfg->ct_timeout_tcp_syn_ns;
	}
	return (flags & SY_CT_ESTABLISHED) ? cfg->ct_timeout_udp_stream_ns : cfg->ct_timeout_udp_ns;
}

/*
 * Time since `then`, never negative: timestamps come from the coarse monotonic clock, and one
 * written by another clock reader (user space, an older agent's fine clock) may be a tick ahead.
 */
static __always_inline __u64 sy_age(__u64 now, __u64 then)
{
	return now > then ? now - then : 0;
}

static __always_inline int sy_ct_expired(const struct sy_ct_value *v, __u8 proto, const struct sy_config *cfg, __u64 now)
{
	return sy_age(now, v->last_seen) > sy_ct_timeout(cfg, v->flags, proto);
}

/* A live entry for key k, or NULL (expired entries are treated as absent). */
static __always_inline struct sy_ct_value *sy_ct_lookup(struct sy_ct_key *k, const struct sy_config *cfg, __u64 now)
{
	struct sy_ct_value *v = sy_ct_get(k);

	if (!v || sy_ct_expired(v, k->proto, cfg, now))
		return NULL;
	return v;
}

/* A live entry for k in either table (a TCP flow may still be completing its handshake), or NULL. */
static __always_inline struct sy_ct_value *sy_ct_lookup_any(struct sy_ct_key *k, const struct sy_config *cfg, __u64 now)
{
	struct sy_ct_value *v = sy_ct_get_any(k);

	if (!v || sy_ct_expired(v, k->proto, cfg, now))
		return NULL;
	return v;
}

/*
 * A SYN (or SYN-ACK) on an entry whose flow is closing or closed opens a new connection that
 * happens to reuse the tuple, as kernel conntrack treats it: the old entry must not capture it.
 */
static __always_inline int sy_ct_reopened(const struct sy_ct_value *v, __u8 proto, __u8 tcp_flags)
{
	return proto == IPPROTO_TCP && (v->flags & SY_CT_CLOSING) && (tcp_flags & SY_TCP_SYN) && !(tcp_flags & SY_TCP_RST);
}

/*
 * Whether a tracked tuple may be given to another flow: nothing tracks it, or its flow expired. A
 * closed TCP flow's tuple is not: the side that closed first holds it in TIME_WAIT, where a SYN of
 * another connection is refused at random (its sequence and timestamps are not the old ones), so,
 * as conntrack's NAT does, it stays taken until the closed timeout (TIME_WAIT) ends.
 */
static __always_inline int sy_ct_reusable(const struct sy_ct_value *v, __u8 proto, const struct sy_config *cfg, __u64 now)
{
	return !v || sy_ct_expired(v, proto, cfg, now);
}

/*
 * Whether a tracked entry v on the reply tuple of a new flow to frontend rev_nat_id belongs to
 * another live flow: the same client port reaching the same backend through another frontend (or
 * the answers of both would go to one). Kernel conntrack resolves such a NAT clash with another
 * source port.
 */
static __always_inline int sy_ct_clashes(const struct sy_ct_value *v, __u8 proto, __u32 rev_nat_id,
					 const struct sy_config *cfg, __u64 now)
{
	if (sy_ct_reusable(v, proto, cfg, now))
		return 0;
	return !(v->flags & SY_CT_REPLY) || v->rev_nat_id != rev_nat_id;
}

/*
 * Writes the reply entry rv of a new flow to frontend rev_nat_id under its tuple rk (where new
 * flows wait, sy_ct_put_new) unless another live flow holds that tuple in either table (a clash,
 * sy_ct_clashes). The write itself asks the new-flow table (BPF_NOEXIST): a tuple nobody holds,
 * the usual case, costs no lookup there; only a taken one is looked at. 0 when written, 1 on a
 * clash (nothing written), -1 when the table refused it.
 */
static __always_inline int sy_ct_put_reply(const struct sy_ct_key *rk, const struct sy_ct_value *rv, __u32 rev_nat_id,
					   const struct sy_config *cfg, __u64 now)
{
	struct sy_ct_value *v;

	if (rk->proto == IPPROTO_TCP) {
		/* Established flows first: the tuple may be in use by one of them. */
		v = bpf_map_lookup_elem(&sy_ct, rk);
		if (sy_ct_clashes(v, rk->proto, rev_nat_id, cfg, now))
			return 1;
	}
	if (sy_ct_put_new(rk, rv, BPF_NOEXIST) == 0)
		return 0;
	v = sy_ct_get_new(rk);
	if (sy_ct_clashes(v, rk->proto, rev_nat_id, cfg, now))
		return 1;
	return sy_ct_put_new(rk, rv, BPF_ANY) < 0 ? -1 : 0;
}

/*
 * The key of the other direction's entry. A forward entry names its backend (the answers' source)
 * and its SNAT source if any (their destination); a reply entry names the client (its destination,
 * or nat_addr when the client's source was translated) and its frontend (rev-NAT). 0 when an id no
 * longer names anything (the partner is then left to expire on its own).
 */
static __always_inline int sy_ct_partner(const struct sy_ct_key *k, const struct sy_ct_value *v, struct sy_ct_key *pk)
{
	__u32 id;

	pk->proto = k->proto;
	pk->family = k->family;
	pk->pad[0] = 0;
	pk->pad[1] = 0;
	if (v->flags & SY_CT_REPLY) {
		struct sy_revnat *rn;

		id = v->rev_nat_id;
		rn = bpf_map_lookup_elem(&sy_revnat, &id);
		if (!rn || !rn->family)
			return 0;
		if (v->flags & SY_CT_SNAT) {
			__builtin_memcpy(pk->saddr, v->nat_addr, 16);
			pk->sport = v->nat_port;
		} else {
			__builtin_memcpy(pk->saddr, k->daddr, 16);
			pk->sport = k->dport;
		}
		__builtin_memcpy(pk->daddr, rn->addr, 16);
		pk->dport = rn->port;
	} else {
		struct sy_backend *be;

		id = v->backend_id;
		be = bpf_map_lookup_elem(&sy_backends, &id);
		if (!be || !be->family)
			return 0;
		__builtin_memcpy(pk->saddr, be->addr, 16);
		pk->sport = be->port;
		if (v->flags & SY_CT_SNAT) {
			__builtin_memcpy(pk->daddr, v->nat_addr, 16);
			pk->dport = v->nat_port;
		} else {
			__builtin_memcpy(pk->daddr, k->saddr, 16);
			pk->dport = k->sport;
		}
	}
	return 1;
}

/*
 * Records a packet on its entry v (key k). The packets that change the flow's state (its first
 * answer, a FIN, a RST) change the other direction's entry as well, so the two live and die
 * together; every other packet only refreshes its own entry's clock.
 */
static __always_inline void sy_ct_touch(const struct sy_ct_key *k, struct sy_ct_value *v, __u8 tcp_flags, __u64 now)
{
	__u16 add = 0, partner_add = 0;
	struct sy_ct_key pk = {};
	struct sy_ct_value *p;

	/* The clock ticks per jiffy: most packets of a busy flow need not dirty the entry. */
	if (v->last_seen != now)
		v->last_seen = now;
	if ((v->flags & SY_CT_REPLY) && !(v->flags & SY_CT_ESTABLISHED))
		add |= SY_CT_ESTABLISHED;
	if (k->proto == IPPROTO_TCP) {
		if (tcp_flags & SY_TCP_RST)
			add |= SY_CT_CLOSING | SY_CT_CLOSED;
		else if ((tcp_flags & SY_TCP_FIN) && !(v->flags & SY_CT_FIN))
			add |= SY_CT_FIN | SY_CT_CLOSING;
	}
	if (!add)
		return;
	v->flags |= add;
	partner_add = add & (SY_CT_ESTABLISHED | SY_CT_CLOSING | SY_CT_CLOSED);
	if (!sy_ct_partner(k, v, &pk))
		return;
	p = sy_ct_get_any(&pk);
	if (!p)
		return;
	/* Both directions sent their FIN: the flow is closed. */
	if ((add & SY_CT_FIN) && (p->flags & SY_CT_FIN)) {
		partner_add |= SY_CT_CLOSED;
		v->flags |= SY_CT_CLOSED;
	}
	p->flags |= partner_add;
	p->last_seen = now;
}

/*
 * The client completed the handshake of a flow still in sy_ct_syn (fv: its forward entry, under
 * fk): both entries move to sy_ct, where established flows live. Returns the forward entry there.
 */
static __always_inline struct sy_ct_value *sy_ct_promote(const struct sy_ct_key *fk, struct sy_ct_value *fv)
{
	struct sy_ct_key pk = {};
	struct sy_ct_value copy;
	struct sy_ct_value *rv;

	if (sy_ct_partner(fk, fv, &pk)) {
		rv = bpf_map_lookup_elem(&sy_ct_syn, &pk);
		if (rv) {
			copy = *rv;
			if (bpf_map_update_elem(&sy_ct, &pk, &copy, BPF_ANY) == 0)
				bpf_map_delete_elem(&sy_ct_syn, &pk);
		}
	}
	copy = *fv;
	if (bpf_map_update_elem(&sy_ct, fk, &copy, BPF_ANY) < 0)
		return fv;
	bpf_map_delete_elem(&sy_ct_syn, fk);
	return bpf_map_lookup_elem(&sy_ct, fk);
}

/*
 * A packet of the client's (not a SYN) for a flow still completing its handshake: the flow becomes
 * established; NULL when fk names no such flow. A function of its own: it runs once per flow.
 */
static __attribute__((noinline)) struct sy_ct_value *sy_ct_complete(const struct sy_ct_key *fk, const struct sy_config *cfg,
								     __u64 now)
{
	struct sy_ct_value *fv = bpf_map_lookup_elem(&sy_ct_syn, fk);

	if (!fv || (fv->flags & SY_CT_REPLY) || sy_ct_expired(fv, fk->proto, cfg, now))
		return NULL;
	return sy_ct_promote(fk, fv);
}

#endif /* SWITCHYARD_CT_H */
