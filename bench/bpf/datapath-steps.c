// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * A new flow's path through the datapath cut after each of its steps (BENCH_STEPS=1 npm run
 * bench:datapath): each program below runs sy_forward's steps for a new IPv4 TCP flow up to one
 * of them, so the difference between two programs, in the same run, is what that step costs.
 * They repeat the steps as sy_handle and sy_forward take them for a SYN to a service that needs no
 * SNAT (the bench's flows), not every branch: the measured datapath is sy_bench_new.
 */
#include "datapath-bench.c"

enum bench_step {
	STEP_PARSE,   /* headers parsed, CT key built, config and clock read */
	STEP_CT_MISS, /* + the forward lookups: sy_ct, then sy_ct_syn (a SYN) */
	STEP_SELECT,  /* + frontend lookup, statistics, backend selection */
	STEP_CLASH,   /* + the reply tuple looked up among established flows */
	STEP_INSERT,  /* + the reply and forward entries written (sy_ct_syn) */
};

static __always_inline int bench_steps(struct __sk_buff *skb, enum bench_step stop)
{
	const struct sy_config *cfg = sy_cfg();
	struct sy_tuple t = {};
	struct sy_ct_key k = {}, rk = {};
	struct sy_ct_value cv = {};
	struct sy_frontend_value *fe;
	struct sy_backend *be;
	__u32 backend_id = 0;
	__u64 now = sy_now();

	if (bench_restore(skb, BENCH_NEW) < 0 || sy_parse(skb, &t))
		return TC_ACT_SHOT;
	sy_ct_key_of(&t, &k);
	if (stop == STEP_PARSE)
		return TC_ACT_OK;
	if (sy_ct_lookup(&k, cfg, now) || bpf_map_lookup_elem(&sy_ct_syn, &k))
		return TC_ACT_SHOT; /* not a new flow */
	if (stop == STEP_CT_MISS)
		return TC_ACT_OK;
	fe = sy_frontend(&t, SY_SCOPE_INTERNAL);
	if (!fe)
		return TC_ACT_SHOT;
	sy_count(fe->service_id, skb->len);
	be = sy_select(fe, &t, now, &backend_id);
	if (!be)
		return TC_ACT_SHOT;
	if (stop == STEP_SELECT)
		return TC_ACT_OK;
	__builtin_memcpy(rk.saddr, be->addr, 16);
	__builtin_memcpy(rk.daddr, t.saddr, 16);
	rk.sport = be->port;
	rk.dport = t.sport;
	rk.proto = t.proto;
	rk.family = t.family;
	if (sy_ct_clashes(bpf_map_lookup_elem(&sy_ct, &rk), rk.proto, fe->rev_nat_id, cfg, now))
		return TC_ACT_SHOT;
	if (stop == STEP_CLASH)
		return TC_ACT_OK;
	cv.backend_id = backend_id;
	cv.rev_nat_id = fe->rev_nat_id;
	cv.service_id = fe->service_id;
	cv.created = now;
	cv.last_seen = now;
	cv.flags = SY_CT_REPLY;
	if (sy_ct_put_new(&rk, &cv, BPF_NOEXIST) < 0)
		return TC_ACT_SHOT;
	cv.flags = 0;
	if (sy_ct_put_new(&k, &cv, BPF_ANY) < 0)
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

#define BENCH_STEP(name, stop)                     \
	SEC("tc")                                  \
	int name(struct __sk_buff *skb)            \
	{                                          \
		return bench_steps(skb, stop);     \
	}

BENCH_STEP(sy_step_parse, STEP_PARSE)
BENCH_STEP(sy_step_ct_miss, STEP_CT_MISS)
BENCH_STEP(sy_step_select, STEP_SELECT)
BENCH_STEP(sy_step_clash, STEP_CLASH)
BENCH_STEP(sy_step_insert, STEP_INSERT)
