/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Every map key and value layout Switchyard shares between BPF programs and the control
 * plane. This header is the single source of truth: control/bpf/layout.ts mirrors it and
 * test/bpf/layout.test.ts checks the mirror against the BTF that clang emits for it.
 *
 * Rules for changing a layout: fields are naturally aligned with explicit padding, so the
 * structures are the same for every compiler; addresses and ports are in network order
 * (__be*), everything else in host order.
 */
#ifndef SWITCHYARD_LAYOUT_H
#define SWITCHYARD_LAYOUT_H

#include <linux/types.h>

/*
 * The walking skeleton: a few IPv4 VIP:port frontends, each balanced over up to
 * SY_SKEL_MAX_BACKENDS backends by flow hash, with a stateless reverse translation.
 * It proves the chain (load, pin, attach, map writes, real packets); the full datapath
 * has its own maps.
 */
#define SY_SKEL_MAX_BACKENDS 8

/* Key of skel_frontends, and of skel_revnat where it names a backend. */
struct sy_skel_frontend {
	__be32 addr;
	__be16 port;
	__u8 proto; /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad;
};

struct sy_skel_backend {
	__be32 addr;
	__be16 port;
	__u16 pad;
};

/* Value of skel_frontends. */
struct sy_skel_service {
	__u32 count; /* backends in use, 1..SY_SKEL_MAX_BACKENDS */
	struct sy_skel_backend backends[SY_SKEL_MAX_BACKENDS];
};

/* Value of the per-CPU skel_stats array, indexed by enum sy_skel_stat. */
struct sy_skel_counter {
	__u64 packets;
	__u64 bytes;
};

enum sy_skel_stat {
	SY_SKEL_STAT_FORWARD = 0, /* tc: destination rewritten VIP -> backend */
	SY_SKEL_STAT_REVERSE = 1, /* tc: source rewritten backend -> VIP */
	SY_SKEL_STAT_XDP = 2,     /* xdp: packets seen */
	SY_SKEL_STAT_MAX = 3,
};

#endif /* SWITCHYARD_LAYOUT_H */
