/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The datapath's clock: CLOCK_MONOTONIC_COARSE in ns, the clock user space reads for CT and
 * affinity timestamps. Reading it is a helper call (~15 ns here, most of an established packet's
 * budget); bpf_jiffies64() is inlined by the verifier into one load. The coarse clock only moves
 * when the tick updates jiffies, so it is read once per jiffy and cached in sy_clock. The two may
 * disagree for the instant the tick takes to update both: a timestamp is then one tick old, which
 * timeouts in seconds do not notice (sy_age() already tolerates a tick of skew).
 *
 * bpf_ktime_get_coarse_ns came with Linux 5.11. The compat build (SY_NO_COARSE_CLOCK) reads
 * CLOCK_MONOTONIC instead, still once per jiffy: it runs ahead of the coarse clock by less than a
 * tick, the same skew the cache already has.
 */
#ifndef SWITCHYARD_CLOCK_H
#define SWITCHYARD_CLOCK_H

#include "maps.h"

static __always_inline __u64 sy_now(void)
{
	__u32 zero = 0;
	struct sy_clock *c = bpf_map_lookup_elem(&sy_clock, &zero);
	__u64 j = bpf_jiffies64();
	__u64 ns;

	if (c && c->jiffies == j)
		return c->ns;
#ifdef SY_NO_COARSE_CLOCK
	ns = bpf_ktime_get_ns();
#else
	ns = bpf_ktime_get_coarse_ns();
#endif
	if (c) {
		/* ns before jiffies: a reader that sees this jiffy sees its time. Another CPU may
		 * write the same jiffy at once, with a time from the same tick. */
		*(volatile __u64 *)&c->ns = ns;
		*(volatile __u64 *)&c->jiffies = j;
	}
	return ns;
}

#endif /* SWITCHYARD_CLOCK_H */
