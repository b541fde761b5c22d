/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * One's complement checksum arithmetic done inline: on the hot path a helper call costs more than
 * the arithmetic (on kernels with return-thunk mitigations, ~25 ns per call here).
 */
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

/* A sum of 32-bit words folded to 32 bits with end-around carry (a __wsum, like bpf_csum_diff's). */
static __always_inline __u32 sy_csum_fold32(__u64 sum)
{
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffffffff) + (sum >> 32);
	return (__u32)sum;
}

/* The partial sum that turns the checksum of data holding `from` into that of data holding `to`. */
static __always_inline __u32 sy_csum_diff4(__be32 from, __be32 to)
{
	return sy_csum_fold32((__u64)(__u32)~from + (__u32)to);
}

static __always_inline __u32 sy_csum_diff16(const __be32 *from, const __be32 *to)
{
	__u64 sum = 0;

	for (int i = 0; i < 4; i++)
		sum += (__u64)(__u32)~from[i] + (__u32)to[i];
	return sy_csum_fold32(sum);
}

/* A complete (stored inverted) 16-bit checksum after the data changed by `diff` (RFC 1624). */
static __always_inline __sum16 sy_csum_apply(__sum16 check, __u32 diff)
{
	return (__sum16)sy_csum_fold(sy_csum_fold32((__u64)(__u16)~check + diff));
}

/* A checksum held as a plain folded sum (CHECKSUM_PARTIAL's pseudo-header seed) after adding `diff`. */
static __always_inline __sum16 sy_csum_add_seed(__sum16 seed, __u32 diff)
{
	return (__sum16)~sy_csum_fold(sy_csum_fold32((__u64)(__u16)seed + diff));
}

#endif /* SWITCHYARD_CSUM_H */
