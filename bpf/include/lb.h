/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Frontend lookup, source ranges, backend selection (ClientIP affinity, then random). */
#ifndef SWITCHYARD_LB_H
#define SWITCHYARD_LB_H

#include "ct.h"
#include "maps.h"
#include "parse.h"

static __always_inline struct sy_frontend_value *sy_frontend(const struct sy_tuple *t, __u8 scope)
{
	struct sy_frontend_key k = {};
	struct sy_frontend_value *fe;

	__builtin_memcpy(k.addr, t->daddr, 16);
	k.port = t->dport;
	k.proto = t->proto;
	k.family = t->family;
	k.scope = SY_SCOPE_EXTERNAL;
	fe = bpf_map_lookup_elem(&sy_frontends, &k);
	/* Most frontends have one set for every source: the internal twin is looked up only if it exists. */
	if (fe && scope == SY_SCOPE_INTERNAL && (fe->flags & SY_FE_HAS_INTERNAL)) {
		k.scope = SY_SCOPE_INTERNAL;
		fe = bpf_map_lookup_elem(&sy_frontends, &k);
	}
	return fe;
}

static __always_inline int sy_source_allowed(const struct sy_frontend_value *fe, const struct sy_tuple *t)
{
	struct sy_source_range_key k = {};

	if (!(fe->flags & SY_FE_SOURCE_RANGES))
		return 1;
	k.prefixlen = 32 + (t->family == 4 ? 32 : 128);
	k.rev_nat_id = fe->rev_nat_id;
	__builtin_memcpy(k.addr, t->saddr, 16);
	return bpf_map_lookup_elem(&sy_source_ranges, &k) != NULL;
}

/* A backend by id; NULL for an id that is free (removed endpoints free theirs). */
static __always_inline struct sy_backend *sy_backend(__u32 id)
{
	struct sy_backend *be = bpf_map_lookup_elem(&sy_backends, &id);

	return be && be->family ? be : NULL;
}

static __always_inline struct sy_backend *sy_backend_at(__u32 set_id, __u32 slot, __u32 *backend_id)
{
	struct sy_slot_key k = { .set_id = set_id, .slot = slot };
	__u32 *id = bpf_map_lookup_elem(&sy_slots, &k);

	if (!id)
		return NULL;
	*backend_id = *id;
	return sy_backend(*id);
}

static __always_inline __u32 sy_mix(__u32 h, __u32 v)
{
	h ^= v;
	h *= 0x01000193;
	return h ^ (h >> 15);
}

/*
 * A flow hash that is the same on every node (unlike the skb hash, which is seeded per boot), so
 * Maglev sends a flow to the same backend wherever it enters. flowHash() in
 * control/backends/ebpf/flow-hash.ts computes the same value.
 */
static __always_inline __u32 sy_flow_hash(const struct sy_tuple *t)
{
	__u32 h = 0x811c9dc5;

	h = sy_mix(h, t->saddr[0]);
	h = sy_mix(h, t->saddr[1]);
	h = sy_mix(h, t->saddr[2]);
	h = sy_mix(h, t->saddr[3]);
	h = sy_mix(h, t->daddr[0]);
	h = sy_mix(h, t->daddr[1]);
	h = sy_mix(h, t->daddr[2]);
	h = sy_mix(h, t->daddr[3]);
	h = sy_mix(h, ((__u32)t->sport << 16) | t->dport);
	return sy_mix(h, t->proto);
}

static __always_inline struct sy_backend *sy_maglev_pick(const struct sy_frontend_value *fe, const struct sy_tuple *t,
							 __u32 *backend_id)
{
	__u32 set_id = fe->set_id;
	__u32 index = sy_flow_hash(t) % SY_MAGLEV_M;
	void *table = bpf_map_lookup_elem(&sy_maglev, &set_id);
	__u32 *id;

	if (!table)
		return NULL;
	id = bpf_map_lookup_elem(table, &index);
	if (!id)
		return NULL;
	*backend_id = *id;
	return sy_backend(*id);
}

/* Chooses the backend of a new flow; NULL when the set is empty or inconsistent. */
static __always_inline struct sy_backend *sy_select(const struct sy_frontend_value *fe, const struct sy_tuple *t,
						    __u64 now, __u32 *backend_id)
{
	struct sy_affinity_key ak = {};
	struct sy_affinity_value av = {};
	struct sy_backend *be;
	__u32 slot;

	if (fe->count == 0)
		return NULL;
	if (fe->affinity_timeout) {
		struct sy_affinity_value *hit;

		ak.service_id = fe->service_id;
		__builtin_memcpy(ak.client, t->saddr, 16);
		hit = bpf_map_lookup_elem(&sy_affinity, &ak);
		if (hit && sy_age(now, hit->last_seen) < (__u64)fe->affinity_timeout * 1000000000ULL) {
			be = sy_backend(hit->backend_id);
			/* Only a backend of this service port: ids are reused once quarantined. */
			if (be && be->service_id == fe->service_id && !(be->flags & SY_BE_TERMINATING)) {
				*backend_id = hit->backend_id;
				hit->last_seen = now;
				return be;
			}
		}
	}
	be = NULL;
	if (fe->algorithm == SY_ALG_MAGLEV)
		be = sy_maglev_pick(fe, t, backend_id);
	if (!be) {
		slot = bpf_get_prandom_u32() % fe->count + 1;
		be = sy_backend_at(fe->set_id, slot, backend_id);
	}
	if (be && fe->affinity_timeout) {
		av.backend_id = *backend_id;
		av.last_seen = now;
		bpf_map_update_elem(&sy_affinity, &ak, &av, BPF_ANY);
	}
	return be;
}

static __always_inline void sy_count(__u32 service_id, __u32 bytes)
{
	struct sy_counter *c = bpf_map_lookup_elem(&sy_stats, &service_id);

	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
}

#endif /* SWITCHYARD_LB_H */
