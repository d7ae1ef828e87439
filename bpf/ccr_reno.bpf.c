// SPDX-License-Identifier: GPL-2.0
/*
 * ccr_reno: classic Reno (RFC 5681) as a BPF struct_ops congestion control.
 * Slow start to ssthresh, one segment per window after it, halve on loss.
 */
#include "ccr_tcp.h"

char _license[] SEC("license") = "GPL";

#define RENO_MIN_CWND 2U /* never shrink below two segments */

SEC("struct_ops")
void BPF_PROG(ccr_reno_init, struct sock *sk)
{
}

SEC("struct_ops")
__u32 BPF_PROG(ccr_reno_ssthresh, struct sock *sk)
{
	const struct tcp_sock *tp = tcp_sk(sk);

	return ccr_max(tp->snd_cwnd >> 1U, RENO_MIN_CWND);
}

SEC("struct_ops")
void BPF_PROG(ccr_reno_cong_avoid, struct sock *sk, __u32 ack, __u32 acked)
{
	ccr_reno_grow(sk, acked);
}

SEC("struct_ops")
__u32 BPF_PROG(ccr_reno_undo_cwnd, struct sock *sk)
{
	return ccr_reno_undone_cwnd(sk);
}

SEC(".struct_ops.link")
struct tcp_congestion_ops ccr_reno = {
	.init = (void *)ccr_reno_init,
	.ssthresh = (void *)ccr_reno_ssthresh,
	.cong_avoid = (void *)ccr_reno_cong_avoid,
	.undo_cwnd = (void *)ccr_reno_undo_cwnd,
	.name = "ccr_reno",
	.flags = TCP_CONG_NON_RESTRICTED,
};
