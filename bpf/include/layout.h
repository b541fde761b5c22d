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

/*
 * The layout version of every datapath map below. Bump it with any change to a datapath layout:
 * an agent finding pins of another version refuses to start (sy_meta holds the pinned version)
 * rather than reading its maps wrongly.
 */
#define SY_LAYOUT_VERSION 2

/* Value of sy_meta[0]. */
struct sy_meta {
	__u32 layout_version;
	__u32 pad;
};

/*
 * The datapath. A frontend (address, port, protocol, scope) points at a backend set; a set
 * is `count` slots (set_id, 1..count) naming backend ids. The control plane writes a new set
 * under a fresh set_id and then flips the frontend value (one atomic hash update), so no packet
 * ever sees a half-written service. IPv4 addresses live in addr[0], the rest zero.
 */
enum sy_scope {
	SY_SCOPE_EXTERNAL = 0, /* traffic from outside the node */
	SY_SCOPE_INTERNAL = 1, /* traffic from this node's pods (present only when it differs) */
};

enum sy_algorithm {
	SY_ALG_RANDOM = 0,
	SY_ALG_MAGLEV = 1,
};

/* Maglev lookup tables (control/backends/ebpf/maglev.ts builds them): prime size. */
#define SY_MAGLEV_M 65521

/* sy_frontend_value.flags */
#define SY_FE_CLUSTER_IP    (1U << 0)
#define SY_FE_NODE_PORT     (1U << 1)
#define SY_FE_LOAD_BALANCER (1U << 2)
#define SY_FE_EXTERNAL_IP   (1U << 3)
#define SY_FE_REJECT        (1U << 4) /* count 0: no endpoint anywhere, answer RST / ICMP unreachable */
#define SY_FE_MASQUERADE    (1U << 5) /* translate the source to the node address */
#define SY_FE_SOURCE_RANGES (1U << 6) /* the source must match sy_source_ranges for rev_nat_id */
#define SY_FE_LOCAL         (1U << 7) /* the set holds node-local endpoints only (traffic policy Local) */
#define SY_FE_HAS_INTERNAL  (1U << 8) /* (external scope) an internal-scope twin exists for pod traffic */

struct sy_frontend_key {
	__be32 addr[4];
	__be16 port;
	__u8 proto;
	__u8 family; /* 4 or 6 */
	__u8 scope;  /* enum sy_scope */
	__u8 pad[3];
};

struct sy_frontend_value {
	__u32 set_id;           /* slots (set_id, 1..count) in sy_slots */
	__u32 rev_nat_id;       /* sy_revnat: the frontend replies must come from */
	__u32 service_id;       /* per service port and family: counters, affinity */
	__u32 affinity_timeout; /* seconds; 0: no ClientIP affinity */
	__u16 count;            /* backends in the set; 0: drop, or reject with SY_FE_REJECT */
	__u8 algorithm;         /* enum sy_algorithm */
	__u8 pad;
	__u32 flags;            /* SY_FE_* */
};

struct sy_slot_key {
	__u32 set_id;
	__u32 slot; /* 1..count */
};

/* sy_backend.flags */
#define SY_BE_TERMINATING (1U << 0)

/* Backends are per service port (like kube-proxy's KUBE-SEP chains): an endpoint leaving one
 * service ends its flows there even while it still serves another. sy_backends is an array
 * indexed by backend id (its lookup costs no call); family 0 marks a free id. */
struct sy_backend {
	__be32 addr[4];
	__be16 port;
	__u8 proto;
	__u8 family;
	__u32 flags;      /* SY_BE_* */
	__u32 service_id; /* the service port it belongs to */
};

/* sy_revnat is an array indexed by rev-NAT id; family 0 marks a free id. sy_revnat.flags: */
#define SY_RN_NODE_ADDRESS (1U << 0) /* the frontend is a node address (NodePort): see sy_fib_redirect */

struct sy_revnat {
	__be32 addr[4];
	__be16 port;
	__u8 family;
	__u8 flags; /* SY_RN_* */
};

/*
 * Connection tracking: one entry per direction of a translated flow, keyed by the packet's tuple
 * as it arrives (the forward entry: client -> frontend as the client sent it; the reply entry:
 * backend -> client, or -> the SNAT address, as the backend answers). Like conntrack, a tuple
 * names one direction of one flow, so one lookup answers both "is this an answer?" and "is this
 * an established flow?" (SNAT ports are chosen so that a reply tuple is never taken).
 */
struct sy_ct_key {
	__be32 saddr[4];
	__be32 daddr[4];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 family;
	__u8 pad[2];
};

/*
 * sy_ct_value.flags. A flow's state is kept in both of its entries, as kernel conntrack keeps it per
 * flow: the few packets that change it (the first answer, a FIN, a RST) update the other direction's
 * entry too (sy_ct_partner), so both directions live and die together.
 */
#define SY_CT_SNAT        (1U << 0) /* the source was translated to nat_addr:nat_port */
#define SY_CT_CLOSING     (1U << 1) /* a FIN was seen on the flow (half closed) */
#define SY_CT_REPLY       (1U << 2) /* the entry translates answers back (else: an established forward flow) */
#define SY_CT_ESTABLISHED (1U << 3) /* the flow was answered (TCP: past SYN_SENT; UDP: a stream) */
#define SY_CT_FIN         (1U << 4) /* this entry's direction sent its FIN */
#define SY_CT_CLOSED      (1U << 5) /* both FINs or a RST */
#define SY_CT_NODE_SNAT   (1U << 6) /* the source became a node address: both directions bypass the host's stack */
#define SY_CT_HOST        (1U << 7) /* kernel conntrack translates this flow (a proxy's before us): left to netfilter */

/*
 * Connection tracking lives in two maps, so that churn of one kind cannot evict flows of the other:
 * sy_ct holds TCP flows, sy_ct_any every other protocol (UDP: DNS turns its flows over quickly).
 */

struct sy_ct_value {
	__be32 nat_addr[4]; /* forward: the SNAT source; reply: the client to restore */
	__be16 nat_port;
	__u16 flags;        /* SY_CT_* */
	__u32 backend_id;
	__u32 rev_nat_id;
	__u32 service_id;
	__u64 created;      /* bpf_ktime_get_coarse_ns(): CLOCK_MONOTONIC_COARSE */
	__u64 last_seen;
};

struct sy_affinity_key {
	__u32 service_id;
	__be32 client[4];
};

struct sy_affinity_value {
	__u32 backend_id;
	__u32 pad;
	__u64 last_seen; /* bpf_ktime_get_coarse_ns() */
};

/* LPM key: prefixlen counts the 32 bits of rev_nat_id plus the address prefix. */
struct sy_source_range_key {
	__u32 prefixlen;
	__u32 rev_nat_id;
	__be32 addr[4];
};

/* Per service port, per CPU. */
struct sy_counter {
	__u64 packets;
	__u64 bytes;
};

/* One entry (index 0) of sy_config: node facts the programs need. */
struct sy_config {
	__be32 node_ip4;
	__be32 node_ip6[4];
	__u16 snat_port_min; /* NodePort SNAT source ports come from [min, max] */
	__u16 snat_port_max;
	__u32 flags;
	__u64 ct_timeout_tcp_ns; /* established (kube-proxy's conntrack.tcpEstablishedTimeout) */
	__u64 ct_timeout_udp_ns; /* one way only (conntrack.udpTimeout) */
	__u64 host_netns_cookie; /* socket programs act only in this netns (0: in every one) */
	/* The rest of kernel conntrack's per-state timeouts (nf_conntrack_tcp_timeout_*). */
	__u64 ct_timeout_tcp_syn_ns;    /* SYN sent, not answered */
	__u64 ct_timeout_tcp_fin_ns;    /* one side closed (conntrack.tcpCloseWaitTimeout) */
	__u64 ct_timeout_tcp_closed_ns; /* both sides closed, or reset (TIME_WAIT) */
	__u64 ct_timeout_udp_stream_ns; /* answered (conntrack.udpStreamTimeout) */
};

/*
 * Why the datapath dropped a packet: the index of the per-CPU sy_drops array, exported as
 * switchyard_datapath_drops_total{reason}. control/bpf/layout.ts names them (DROP_REASONS).
 */
enum sy_drop_reason {
	SY_DROP_NO_BACKEND = 0,        /* the frontend's set is empty or inconsistent */
	SY_DROP_SOURCE_RANGE = 1,      /* outside loadBalancerSourceRanges */
	SY_DROP_LOCAL_NO_ENDPOINT = 2, /* traffic policy Local without a local endpoint */
	SY_DROP_SNAT_EXHAUSTED = 3,    /* no free SNAT port towards the backend */
	SY_DROP_CT_FULL = 4,           /* connection tracking refused the new flow */
	SY_DROP_NO_ROUTE = 5,          /* no route to send a translated packet on */
	SY_DROP_UNSUPPORTED = 6,       /* a packet the datapath cannot translate (headers out of reach) */
	SY_DROP_FRAG_NEEDED = 7,       /* a translated packet is larger than its route's MTU */
	SY_DROP_TTL_EXCEEDED = 8,      /* a translated packet's TTL (hop limit) ran out on this hop */
	SY_DROP_FRAG_NO_FIRST = 9,     /* a later fragment whose first was not seen or opened no flow */
	SY_DROP_UNALLOCATED_CLUSTER_IP = 10, /* to an address in the service CIDRs that no Service holds */
	SY_DROP_MAX = 16,
};

/*
 * Fragments: only the first fragment of a datagram carries its ports. sy_frags (LRU) keeps them
 * under the datagram's identity as it arrives at a program, so every later fragment is looked up
 * in connection tracking and the frontends by the same tuple as its first, and translated alike.
 */
struct sy_frag_key {
	__be32 saddr[4];
	__be32 daddr[4];
	__u32 id;   /* IPv4: the 16-bit identification; IPv6: the fragment header's 32-bit one */
	__u8 proto;
	__u8 family;
	__u8 pad[2];
};

struct sy_frag_value {
	__be16 sport;
	__be16 dport;
	__u8 tcp_flags; /* the first fragment's, so a later one changes a flow's state alike */
	__u8 pad[3];
};

/*
 * Key of sy_service_addrs: addresses that belong to frontends alone (ClusterIPs, external IPs,
 * load-balancer IPs; not the node addresses NodePorts use). A later fragment to one whose first
 * fragment was not seen (out of order) is dropped: passed on, it would leave for the service
 * address untranslated.
 */
struct sy_service_addr {
	__be32 addr[4];
	__u8 family;
	__u8 pad[3];
};

/*
 * Key of sy_service_cidrs (LPM trie): the cluster's service CIDRs. A packet for no frontend whose
 * destination is in them and is no service address (sy_service_addrs) is to an unallocated
 * ClusterIP, and is dropped (SY_DROP_UNALLOCATED_CLUSTER_IP), as kube-proxy's nftables cluster-ips-check
 * does. prefixlen counts the 32 bits of family plus the address prefix.
 */
struct sy_service_cidr_key {
	__u32 prefixlen;
	__u32 family; /* 4 or 6 */
	__be32 addr[4];
};

/*
 * Value of sy_clock[0]: the coarse monotonic clock as last read, and the jiffy it was read in.
 * Both advance with the tick, so while jiffies (an inlined load) stays the same so does the clock
 * (a helper call): a cache, not state; the datapath fills it itself.
 */
struct sy_clock {
	__u64 jiffies; /* bpf_jiffies64() when ns was read */
	__u64 ns;      /* bpf_ktime_get_coarse_ns() then */
};

/*
 * Socket-level load balancing (include/sock.h) keys its per-socket state by the socket's cookie
 * and an address: sy_sock_revnat_tcp and sy_sock_revnat_udp by the backend the socket was sent
 * to (recvmsg and getpeername report the frontend the application asked for instead),
 * sy_sock_backend by the frontend an unconnected UDP socket sends to (its backend stays the same
 * from one datagram to the next). An IPv4 peer of an IPv6 socket (::ffff:a.b.c.d) is keyed as
 * IPv4 (family 4, addr[0]), as the sendmsg4 hook sees it. The socket iterators of
 * bpf/sock-destroy.c write one sy_sock_key per socket they destroyed (its backend).
 */
struct sy_sock_key {
	__u64 cookie; /* bpf_get_socket_cookie() */
	__be32 addr[4];
	__be16 port;
	__u8 family;
	__u8 pad[5];
};

/* Value of sy_sock_revnat_tcp and sy_sock_revnat_udp. */
struct sy_sock_revnat_value {
	__u32 rev_nat_id; /* sy_revnat: the frontend the application asked for */
	__u32 backend_id; /* the backend chosen; the socket is destroyed once sy_backends no longer has it */
	__u32 service_id; /* the service port it was chosen for */
	__u32 pad;
};

#endif /* SWITCHYARD_LAYOUT_H */
