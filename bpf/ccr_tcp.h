/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The small part of the kernel's TCP types that ccrollout's congestion
 * controls touch. Every struct carries preserve_access_index, so clang emits
 * CO-RE relocations and libbpf fixes the offsets against the running kernel's
 * BTF at load time: one object serves many kernels, and no kernel headers or
 * vmlinux.h are needed on the machine that builds it.
 */
#ifndef CCR_TCP_H
#define CCR_TCP_H

/* The fixed-width types, defined here so that no (arch-specific) libc headers are needed. */
typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed char __s8;
typedef short __s16;
typedef int __s32;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
#define true 1
#define false 0
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#define CCR_CO_RE __attribute__((preserve_access_index))

#define TCP_CA_NAME_MAX 16

/* tcp_congestion_ops.flags */
#define TCP_CONG_NON_RESTRICTED 0x1 /* any namespace may make it its default */
#define TCP_CONG_NEEDS_ECN 0x2      /* the socket negotiates ECN */

/* enum tcp_ca_state */
#define TCP_CA_Open 0
#define TCP_CA_Disorder 1
#define TCP_CA_CWR 2
#define TCP_CA_Recovery 3
#define TCP_CA_Loss 4

/* enum tcp_ca_event */
#define CA_EVENT_TX_START 0
#define CA_EVENT_CWND_RESTART 1
#define CA_EVENT_COMPLETE_CWR 2
#define CA_EVENT_LOSS 3
#define CA_EVENT_ECN_NO_CE 4
#define CA_EVENT_ECN_IS_CE 5

/* tcp_sock.ecn_flags */
#define TCP_ECN_OK 1 /* RFC 3168 ECN negotiated (TCP_ECN_MODE_RFC3168 since 6.18) */
#define TCP_ECN_QUEUE_CWR 2
#define TCP_ECN_DEMAND_CWR 4 /* the receiver sets ECE on the ACKs it sends */
#define TCP_ECN_SEEN 8
#define TCP_ECN_MODE_ACCECN 0x10 /* Accurate ECN negotiated (AccECN kernels; unused before) */

/* enum inet_csk_ack_state_t: inet_connection_sock.icsk_ack.pending */
#define ICSK_ACK_TIMER 0x2 /* a delayed ACK is armed */
#define ICSK_ACK_NOW 0x10  /* send the next ACK at once */

/* sock_common.skc_state: the TCP states a control's init may run in before a connection */
#define TCP_CLOSE 7
#define TCP_LISTEN 10

/* bpf_setsockopt() level and option that switch a socket's control */
#define SOL_TCP 6
#define TCP_CONGESTION 13

/* inet_connection_sock.icsk_ca_priv is 13 u64 words: per-socket state of a control */
#define ICSK_CA_PRIV_SIZE (13 * sizeof(__u64))

struct sock_common {
	unsigned char skc_state;
} CCR_CO_RE;

struct sock {
	struct sock_common __sk_common;
} CCR_CO_RE;

struct inet_sock {
	struct sock sk;
} CCR_CO_RE;

struct inet_connection_sock {
	struct inet_sock icsk_inet;
	__u8 icsk_ca_state : 5;
	struct {
		__u8 pending; /* ICSK_ACK_* */
	} CCR_CO_RE icsk_ack;
	__u64 icsk_ca_priv[13];
} CCR_CO_RE;

struct tcp_sock {
	struct inet_connection_sock inet_conn;
	__u32 rcv_nxt;
	__u32 snd_nxt;
	__u32 snd_una;
	__u32 snd_cwnd;
	__u32 snd_cwnd_cnt;
	__u32 snd_cwnd_clamp;
	__u32 snd_ssthresh;
	__u32 prior_cwnd;
	__u32 max_packets_out;
	__u32 delivered;
	__u32 delivered_ce;
	__u8 ecn_flags;
	__u8 is_cwnd_limited : 1;
} CCR_CO_RE;

struct ack_sample;
struct rate_sample;

struct tcp_congestion_ops {
	__u32 (*ssthresh)(struct sock *sk);
	void (*cong_avoid)(struct sock *sk, __u32 ack, __u32 acked);
	void (*set_state)(struct sock *sk, __u8 new_state);
	void (*cwnd_event)(struct sock *sk, int ev);
	void (*in_ack_event)(struct sock *sk, __u32 flags);
	void (*pkts_acked)(struct sock *sk, const struct ack_sample *sample);
	__u32 (*min_tso_segs)(struct sock *sk);
	void (*cong_control)(struct sock *sk, __u32 ack, int flag, const struct rate_sample *rs);
	__u32 (*undo_cwnd)(struct sock *sk);
	__u32 (*sndbuf_expand)(struct sock *sk);
	void (*init)(struct sock *sk);
	void (*release)(struct sock *sk);
	char name[TCP_CA_NAME_MAX];
	__u32 flags;
} CCR_CO_RE;

static __always_inline struct inet_connection_sock *inet_csk(const struct sock *sk)
{
	return (struct inet_connection_sock *)sk;
}

static __always_inline void *inet_csk_ca(const struct sock *sk)
{
	return (void *)inet_csk(sk)->icsk_ca_priv;
}

static __always_inline struct tcp_sock *tcp_sk(const struct sock *sk)
{
	return (struct tcp_sock *)sk;
}

static __always_inline __u32 ccr_min(__u32 a, __u32 b)
{
	return a < b ? a : b;
}

static __always_inline __u32 ccr_max(__u32 a, __u32 b)
{
	return a > b ? a : b;
}

/* Sequence-number comparison that survives wrap-around, as the kernel's before(). */
static __always_inline bool ccr_seq_before(__u32 seq1, __u32 seq2)
{
	return (__s32)(seq1 - seq2) < 0;
}

static __always_inline bool tcp_in_slow_start(const struct tcp_sock *tp)
{
	return tp->snd_cwnd < tp->snd_ssthresh;
}

/*
 * The kernel's tcp_is_cwnd_limited(): grow the window only when the sender
 * actually used it, or it grows without bound on an application-limited flow.
 */
static __always_inline bool tcp_is_cwnd_limited(const struct sock *sk)
{
	const struct tcp_sock *tp = tcp_sk(sk);

	/* a bitfield: read it through CO-RE so its position may move between kernels */
	if (BPF_CORE_READ_BITFIELD(tp, is_cwnd_limited))
		return true;
	/* in slow start, let the window grow to twice what was in flight */
	if (tcp_in_slow_start(tp))
		return tp->snd_cwnd < 2 * tp->max_packets_out;
	return false;
}

/* Slow start: one segment per acked segment, up to ssthresh; returns what is left over. */
static __always_inline __u32 tcp_slow_start(struct tcp_sock *tp, __u32 acked)
{
	__u32 cwnd = ccr_min(tp->snd_cwnd + acked, tp->snd_ssthresh);

	acked -= cwnd - tp->snd_cwnd;
	tp->snd_cwnd = ccr_min(cwnd, tp->snd_cwnd_clamp);
	return acked;
}

/* Congestion avoidance: one segment per window of acked segments (additive increase). */
static __always_inline void tcp_cong_avoid_ai(struct tcp_sock *tp, __u32 w, __u32 acked)
{
	if (tp->snd_cwnd_cnt >= w) {
		tp->snd_cwnd_cnt = 0;
		tp->snd_cwnd++;
	}
	tp->snd_cwnd_cnt += acked;
	if (tp->snd_cwnd_cnt >= w) {
		__u32 delta = tp->snd_cwnd_cnt / w;

		tp->snd_cwnd_cnt -= delta * w;
		tp->snd_cwnd += delta;
	}
	tp->snd_cwnd = ccr_min(tp->snd_cwnd, tp->snd_cwnd_clamp);
}

/* Reno's window growth, shared by the controls that do not change it. */
static __always_inline void ccr_reno_grow(struct sock *sk, __u32 acked)
{
	struct tcp_sock *tp = tcp_sk(sk);

	if (!tcp_is_cwnd_limited(sk))
		return;
	if (tcp_in_slow_start(tp)) {
		acked = tcp_slow_start(tp, acked);
		if (!acked)
			return;
	}
	tcp_cong_avoid_ai(tp, tp->snd_cwnd, acked);
}

/* Reno's undo: a reduction turned out spurious, so go back to the window before it. */
static __always_inline __u32 ccr_reno_undone_cwnd(const struct sock *sk)
{
	const struct tcp_sock *tp = tcp_sk(sk);

	return ccr_max(tp->snd_cwnd, tp->prior_cwnd);
}

#endif /* CCR_TCP_H */
