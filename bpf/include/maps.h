/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The datapath's maps. Sizes here are defaults; the control plane resizes them before load. */
#ifndef SWITCHYARD_MAPS_H
#define SWITCHYARD_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "layout.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct sy_frontend_key);
	__type(value, struct sy_frontend_value);
} sy_frontends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 20);
	__type(key, struct sy_slot_key);
	__type(value, __u32);
} sy_slots SEC(".maps");

/* 256k backends (8 MiB): 10k services of 10 endpoints and their churn fit without mapSizes. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 262144);
	__type(key, __u32);
	__type(value, struct sy_backend);
} sy_backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct sy_revnat);
} sy_revnat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, struct sy_ct_key);
	__type(value, struct sy_ct_value);
} sy_ct SEC(".maps");

/* Every protocol but TCP (see SY_CT_* in layout.h); sized like sy_ct by the control plane. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, struct sy_ct_key);
	__type(value, struct sy_ct_value);
} sy_ct_any SEC(".maps");

/*
 * TCP flows whose handshake has not completed (no ACK from the client after the backend's
 * SYN-ACK): a SYN flood churns this table alone, never sy_ct's established flows.
 * Every new TCP flow writes two entries here, so its LRU lists are per CPU: an insert takes no
 * lock shared with the other CPUs (a SYN flood on one queue evicts that CPU's entries only).
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__uint(max_entries, 65536);
	__type(key, struct sy_ct_key);
	__type(value, struct sy_ct_value);
} sy_ct_syn SEC(".maps");

/* Packets dropped, per reason (enum sy_drop_reason) and CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SY_DROP_MAX);
	__type(key, __u32);
	__type(value, __u64);
} sy_drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct sy_affinity_key);
	__type(value, struct sy_affinity_value);
} sy_affinity SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sy_source_range_key);
	__type(value, __u8);
} sy_source_ranges SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct sy_counter);
} sy_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sy_config);
} sy_config SEC(".maps");

/* The socket-level maps (sy_sock_revnat_tcp, sy_sock_revnat_udp, sy_sock_backend): include/sock-maps.h. */

/* Per backend set using Maglev: a table of SY_MAGLEV_M backend ids, swapped whole. */
struct maglev_inner_map { /* a map definition, not a layout: no sy_ prefix */
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SY_MAGLEV_M);
	__type(key, __u32);
	__type(value, __u32);
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, 4096);
	__type(key, __u32); /* set_id */
	__array(values, struct maglev_inner_map);
} sy_maglev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sy_meta);
} sy_meta SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sy_clock);
} sy_clock SEC(".maps");

/* The first fragment's ports of datagrams in flight (include/frag.h); sized by the control plane. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct sy_frag_key);
	__type(value, struct sy_frag_value);
} sy_frags SEC(".maps");

/* Addresses only frontends use (layout.h); the control plane keeps it in step with sy_frontends. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct sy_service_addr);
	__type(value, __u8);
} sy_service_addrs SEC(".maps");

/* The service CIDRs (layout.h); a handful of entries, written by the control plane. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 256);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sy_service_cidr_key);
	__type(value, __u8);
} sy_service_cidrs SEC(".maps");

/*
 * Per-CPU scratch space for paths off the established fast path (ICMP errors, include/icmp.h):
 * their buffers would not fit the stack beside the caller's frame (512 bytes for the whole
 * call chain). Program-private, never read by the control plane: not a layout.
 */
struct sy_scratch {
	__u8 bytes[256];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sy_scratch);
} sy_scratch SEC(".maps");

#endif /* SWITCHYARD_MAPS_H */
