// SPDX-License-Identifier: GPL-2.0
/*
 * ccr_dctcp: Data Center TCP (RFC 8257) as a BPF struct_ops congestion control.
 *
 * Sender: once per round trip, alpha <- (1 - g) * alpha + g * F, where F is the
 * share of the segments delivered in that round trip that came back CE-marked
 * (tp->delivered_ce / tp->delivered). An ECE-triggered window reduction cuts
 * cwnd by alpha / 2 instead of Reno's half, so light marking costs little and
 * heavy marking costs as much as a loss. Loss itself is handled as in Reno.
 *
 * Receiver: echo every CE state change precisely (ECE on exactly the ACKs that
 * cover CE-marked data), not RFC 3168's "ECE until CWR".
 *
 * Both ends must run it over ECN: .flags carries TCP_CONG_NEEDS_ECN so the
 * kernel negotiates ECN and sends ECT(0) whatever net.ipv4.tcp_ecn says.
 */
#include "ccr_tcp.h"

char _license[] SEC("license") = "GPL";

#define DCTCP_ALPHA_SHIFT 10U                        /* alpha is a fraction scaled by 2^10 */
#define DCTCP_MAX_ALPHA (1U << DCTCP_ALPHA_SHIFT)    /* alpha = 1: every segment marked */
#define DCTCP_GAIN_SHIFT 4U                          /* g = 1/16, RFC 8257's suggestion */
#define DCTCP_MIN_CWND 2U                            /* never shrink below two segments */

/*
 * RFC 8257 leaves the first alpha open; 1 is the conservative choice: until a
 * round trip without marks has been seen, the first ECE halves the window as
 * Reno would.
 */
#define DCTCP_ALPHA_ON_INIT DCTCP_MAX_ALPHA

/* Where a connection without ECN goes: built into every kernel, never restricted. */
#define DCTCP_FALLBACK "reno"

/* The receiver's view of the last data segment: was it CE-marked? */
#define DCTCP_CE_STATE_NO_CE 0U
#define DCTCP_CE_STATE_CE 1U

/* Per-socket state in inet_csk_ca(sk): seven u32 of the 13 u64 it offers. */
struct dctcp {
	__u32 old_delivered;    /* tp->delivered when this observation window began */
	__u32 old_delivered_ce; /* tp->delivered_ce when it began */
	__u32 next_seq;         /* the window ends when snd_una passes this */
	__u32 alpha;            /* EWMA of the marked share, scaled by 2^10 */
	__u32 loss_cwnd;        /* cwnd before the last reduction, for undo */
	__u32 prior_rcv_nxt;    /* receiver: rcv_nxt when the CE state last changed */
	__u32 ce_state;         /* receiver: DCTCP_CE_STATE_* of the last data segment */
};

_Static_assert(sizeof(struct dctcp) <= ICSK_CA_PRIV_SIZE, "struct dctcp must fit in icsk_ca_priv");

static __always_inline struct dctcp *dctcp_ca(const struct sock *sk)
{
	return (struct dctcp *)inet_csk_ca(sk);
}

static __always_inline bool dctcp_ecn_negotiated(const struct tcp_sock *tp)
{
	return tp->ecn_flags & (TCP_ECN_OK | TCP_ECN_MODE_ACCECN);
}

/* Start a new observation window: one round trip, to what is in flight now. */
static __always_inline void dctcp_reset_window(const struct tcp_sock *tp, struct dctcp *ca)
{
	ca->next_seq = tp->snd_nxt;
	ca->old_delivered = tp->delivered;
	ca->old_delivered_ce = tp->delivered_ce;
}

SEC("struct_ops")
void BPF_PROG(ccr_dctcp_init, struct sock *sk)
{
	const struct tcp_sock *tp = tcp_sk(sk);
	struct dctcp *ca = dctcp_ca(sk);
	__u8 state = sk->__sk_common.skc_state;

	/*
	 * The peer did not negotiate ECN: no mark will ever arrive, and our
	 * packets must stop carrying ECT. Hand the socket to the kernel's Reno,
	 * as the kernel's DCTCP does; switching controls also clears ECT. A
	 * listening or closed socket has not negotiated yet.
	 */
	if (!dctcp_ecn_negotiated(tp) && state != TCP_LISTEN && state != TCP_CLOSE) {
		char fallback[] = DCTCP_FALLBACK;

		if (bpf_setsockopt(sk, SOL_TCP, TCP_CONGESTION, fallback, sizeof(fallback)) == 0)
			return;
		/* could not switch: stay, with alpha at 1 every reduction is Reno's halving */
	}
	ca->alpha = DCTCP_ALPHA_ON_INIT;
	ca->loss_cwnd = 0;
	ca->prior_rcv_nxt = tp->rcv_nxt;
	ca->ce_state = DCTCP_CE_STATE_NO_CE;
	dctcp_reset_window(tp, ca);
}

/* An ECE (or local congestion) reduction: cwnd * (1 - alpha / 2). */
SEC("struct_ops")
__u32 BPF_PROG(ccr_dctcp_ssthresh, struct sock *sk)
{
	const struct tcp_sock *tp = tcp_sk(sk);
	struct dctcp *ca = dctcp_ca(sk);
	__u32 cwnd = tp->snd_cwnd;

	ca->loss_cwnd = cwnd;
	/* alpha / 2 is alpha >> (10 + 1) in the 2^10 scale */
	return ccr_max(cwnd - ((cwnd * ca->alpha) >> (DCTCP_ALPHA_SHIFT + 1U)), DCTCP_MIN_CWND);
}

/* Once per round trip (when snd_una passes next_seq): fold F into alpha. */
SEC("struct_ops")
void BPF_PROG(ccr_dctcp_in_ack_event, struct sock *sk, __u32 flags)
{
	const struct tcp_sock *tp = tcp_sk(sk);
	struct dctcp *ca = dctcp_ca(sk);
	__u32 delivered, delivered_ce, alpha, decay;

	if (ccr_seq_before(tp->snd_una, ca->next_seq))
		return;
	/* without ECN (the fallback was refused) alpha stays at 1: Reno's halving */
	if (dctcp_ecn_negotiated(tp)) {
		delivered = tp->delivered - ca->old_delivered;
		delivered_ce = tp->delivered_ce - ca->old_delivered_ce;
		alpha = ca->alpha;
		/* alpha -= g * alpha; once g * alpha rounds to 0, drop alpha to 0 instead of sticking */
		decay = alpha >> DCTCP_GAIN_SHIFT;
		alpha -= decay ? decay : alpha;
		if (delivered_ce) {
			/* alpha += g * F: F in the 2^10 scale, times g = 2^-4 */
			delivered_ce <<= DCTCP_ALPHA_SHIFT - DCTCP_GAIN_SHIFT;
			delivered_ce /= ccr_max(delivered, 1U);
			alpha = ccr_min(alpha + delivered_ce, DCTCP_MAX_ALPHA);
		}
		ca->alpha = alpha;
	}
	dctcp_reset_window(tp, ca);
}

/* Loss: Reno's halving, whatever alpha says (RFC 8257, section 3.4). */
static __always_inline void dctcp_react_to_loss(struct sock *sk)
{
	struct tcp_sock *tp = tcp_sk(sk);
	struct dctcp *ca = dctcp_ca(sk);

	ca->loss_cwnd = tp->snd_cwnd;
	tp->snd_ssthresh = ccr_max(tp->snd_cwnd >> 1U, DCTCP_MIN_CWND);
}

SEC("struct_ops")
void BPF_PROG(ccr_dctcp_set_state, struct sock *sk, __u8 new_state)
{
	/*
	 * The kernel calls ssthresh() (the alpha cut) just before entering
	 * Recovery; a loss overrides it here. An RTO comes as CA_EVENT_LOSS, so
	 * each loss is answered once.
	 */
	if (new_state == TCP_CA_Recovery &&
	    new_state != BPF_CORE_READ_BITFIELD(inet_csk(sk), icsk_ca_state))
		dctcp_react_to_loss(sk);
}

/* Receiver: whether the ACKs we send carry ECE. */
static __always_inline void dctcp_echo_ce(struct sock *sk, __u32 ce_state)
{
	struct tcp_sock *tp = tcp_sk(sk);

	if (ce_state == DCTCP_CE_STATE_CE)
		tp->ecn_flags |= TCP_ECN_DEMAND_CWR;
	else
		tp->ecn_flags &= ~TCP_ECN_DEMAND_CWR;
}

/*
 * Receiver: the CE mark of incoming data changed. A delayed ACK still owed
 * for the data before the change must go out first with the old ECE value
 * (covering up to prior_rcv_nxt); then the next ACK goes out at once with
 * the new one. This keeps the sender's count of marked segments exact.
 */
static __always_inline void dctcp_ce_state_change(struct sock *sk, int event)
{
	struct tcp_sock *tp = tcp_sk(sk);
	struct dctcp *ca = dctcp_ca(sk);
	__u32 new_state = event == CA_EVENT_ECN_IS_CE ? DCTCP_CE_STATE_CE : DCTCP_CE_STATE_NO_CE;

	if (ca->ce_state != new_state) {
		if (inet_csk(sk)->icsk_ack.pending & ICSK_ACK_TIMER) {
			dctcp_echo_ce(sk, ca->ce_state);
			bpf_tcp_send_ack(tp, ca->prior_rcv_nxt);
		}
		inet_csk(sk)->icsk_ack.pending |= ICSK_ACK_NOW;
	}
	ca->prior_rcv_nxt = tp->rcv_nxt;
	ca->ce_state = new_state;
	dctcp_echo_ce(sk, new_state);
}

SEC("struct_ops")
void BPF_PROG(ccr_dctcp_cwnd_event, struct sock *sk, int event)
{
	switch (event) {
	case CA_EVENT_ECN_IS_CE:
	case CA_EVENT_ECN_NO_CE:
		dctcp_ce_state_change(sk, event);
		break;
	case CA_EVENT_LOSS: /* RTO */
		dctcp_react_to_loss(sk);
		break;
	default:
		break;
	}
}

SEC("struct_ops")
void BPF_PROG(ccr_dctcp_cong_avoid, struct sock *sk, __u32 ack, __u32 acked)
{
	ccr_reno_grow(sk, acked);
}

/* A reduction turned out spurious: go back to the window before it. */
SEC("struct_ops")
__u32 BPF_PROG(ccr_dctcp_undo_cwnd, struct sock *sk)
{
	const struct tcp_sock *tp = tcp_sk(sk);

	return ccr_max(tp->snd_cwnd, dctcp_ca(sk)->loss_cwnd);
}

SEC(".struct_ops.link")
struct tcp_congestion_ops ccr_dctcp = {
	.init = (void *)ccr_dctcp_init,
	.ssthresh = (void *)ccr_dctcp_ssthresh,
	.in_ack_event = (void *)ccr_dctcp_in_ack_event,
	.set_state = (void *)ccr_dctcp_set_state,
	.cwnd_event = (void *)ccr_dctcp_cwnd_event,
	.cong_avoid = (void *)ccr_dctcp_cong_avoid,
	.undo_cwnd = (void *)ccr_dctcp_undo_cwnd,
	.name = "ccr_dctcp",
	.flags = TCP_CONG_NON_RESTRICTED | TCP_CONG_NEEDS_ECN,
};
