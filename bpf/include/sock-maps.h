/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The maps of socket-level load balancing (include/sock.h), shared with the socket iterators of
 * bpf/sock-destroy.c. Sizes are defaults; the control plane sizes them from the conntrack
 * configuration before load (control/backends/ebpf/sockets.ts).
 *
 * Rev-NAT is one table per protocol, so that TCP connects (one entry per connection, kept until
 * LRU evicts it) cannot evict the entries of UDP sockets, whose every recvmsg needs one. TCP needs
 * its entries too: getpeername() on a connected socket reports the service address (as with
 * kube-proxy's DNAT), and the socket iterators destroy only sockets that have one (sockets the
 * hooks translated).
 */
#ifndef SWITCHYARD_SOCK_MAPS_H
#define SWITCHYARD_SOCK_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "layout.h"

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct sy_sock_key);
	__type(value, struct sy_sock_revnat_value);
} sy_sock_revnat_tcp SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct sy_sock_key);
	__type(value, struct sy_sock_revnat_value);
} sy_sock_revnat_udp SEC(".maps");

/* The backend an unconnected UDP socket sends a frontend's datagrams to (key: the frontend). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct sy_sock_key);
	__type(value, __u32); /* backend id */
} sy_sock_backend SEC(".maps");

#endif /* SWITCHYARD_SOCK_MAPS_H */
