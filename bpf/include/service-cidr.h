/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Unallocated ClusterIPs: a packet that matched no frontend, addressed into the cluster's service
 * CIDRs (sy_service_cidrs) at an address no frontend uses (sy_service_addrs), is for a ClusterIP no
 * Service holds, which kube-proxy's nftables mode drops. Asked only on the miss path of the
 * frontend lookup; with no service CIDRs the trie is empty and answers at once.
 */
#ifndef SWITCHYARD_SERVICE_CIDR_H
#define SWITCHYARD_SERVICE_CIDR_H

#include "maps.h"
#include "parse.h"

static __always_inline int sy_unallocated_service_ip(const struct sy_tuple *t)
{
	struct sy_service_cidr_key k = {};
	struct sy_service_addr a = {};

	k.prefixlen = 32 + (t->family == 4 ? 32 : 128);
	k.family = t->family;
	__builtin_memcpy(k.addr, t->daddr, 16);
	if (!bpf_map_lookup_elem(&sy_service_cidrs, &k))
		return 0;
	/* Only the address counts: a ClusterIP that exists, on a port it does not serve, passes. */
	__builtin_memcpy(a.addr, t->daddr, 16);
	a.family = t->family;
	return bpf_map_lookup_elem(&sy_service_addrs, &a) == NULL;
}

#endif /* SWITCHYARD_SERVICE_CIDR_H */
