/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Full checksums for packets the datapath writes itself (resets, ICMP errors). */
#ifndef SWITCHYARD_CSUM_H
#define SWITCHYARD_CSUM_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* Folds a bpf_csum_diff() partial sum into the 16-bit one's complement to store as is. */
static __always_inline __u16 sy_csum_fold(__s64 partial)
{
	__u32 sum = (__u32)partial;

	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

#endif /* SWITCHYARD_CSUM_H */
