"""Segments sent and retransmitted, and bytes acked, per congestion control, connection by
connection; with the RTT of the connections that moved data.

Host-wide counters mix the connections of the old control with those of the
new one. The ledger reads the socket table (inet_diag) now and then and adds
each connection's growth of tcp_info's segs_out, total_retrans and bytes_acked
to the control it runs. A connection that closes between two reads is not lost: the
kernel announces each destroyed socket with its final tcp_info, and the
remainder since its last read goes to the control it was last seen with
(one that opened and closed unseen goes to "unknown"). Connections that
existed before the ledger started count only from then on.

RTT is kept as sums over readings (one reading: one connection that acked new data
since the last read), so the controller's interval deltas give the mean RTT over every
read of the interval, not a snapshot of whichever connections were open at its end.
Connections that only receive (acks, requests) would pull the mean towards the bare
path and are left out of it.

Pure bookkeeping: the caller reads the kernel (sockdiag) and feeds it here.
"""

from __future__ import annotations

UNKNOWN = "unknown"
# A socket gone from the table whose destruction was never announced (the kernel drops
# announcements when the listener falls behind) is forgotten after this many reads.
_FORGET_AFTER_READS = 20


SENT, RETRANSMITTED, BYTES_ACKED = range(3)  # the places of a control's counters in totals
SRTT_SUM_US, MIN_RTT_SUM_US, RTT_READINGS = range(3)  # and of its RTT sums in rtt


class Ledger:
    def __init__(self, count_retransmits: bool = True):
        # False when a tracer counts the retransmissions (see traced()); tcp_info still counts
        # the segments sent.
        self.count_retransmits = count_retransmits
        self.totals: dict[str, list[int]] = {}   # control -> [segments sent, retransmitted, bytes acked]
        self.rtt: dict[str, list[int]] = {}      # control -> [srtt sum, min_rtt sum (us), readings]
        self.connections: dict[str, int] = {}    # control -> its connections at the last read (a gauge)
        self._last: dict[int, tuple[str, int, int, int]] = {}  # cookie -> (control, sent, retransmitted, acked)
        self._seen_at: dict[int, int] = {}                # socket cookie -> the read that last saw it
        self._reads = 0

    def _add(self, control: str, sent: int, retransmitted: int, acked: int = 0) -> None:
        total = self.totals.setdefault(control, [0, 0, 0])
        total[SENT] += max(0, sent)
        total[RETRANSMITTED] += max(0, retransmitted) if self.count_retransmits else 0
        total[BYTES_ACKED] += max(0, acked)

    def traced(self, retransmits_by_control: dict[str, int]) -> None:
        """Retransmissions a tracer attributed to each control since its last read."""
        for control, count in retransmits_by_control.items():
            self.totals.setdefault(control, [0, 0, 0])[RETRANSMITTED] += count

    def _reading(self, entry, control: str, acked_now: int) -> None:
        """One connection's RTT, when it moved data since the last read."""
        if acked_now <= 0 or not entry.rtt_us:
            return
        sums = self.rtt.setdefault(control, [0, 0, 0])
        sums[SRTT_SUM_US] += entry.rtt_us
        sums[MIN_RTT_SUM_US] += entry.min_rtt_us or entry.rtt_us  # a kernel without min_rtt: srtt bounds it
        sums[RTT_READINGS] += 1

    def read(self, sockets) -> None:
        """One read of the socket table: count each connection's growth since the last one."""
        first = self._reads == 0
        self._reads += 1
        self.connections = {}
        for entry in sockets:
            if entry.congestion is None or entry.segs_out is None or entry.state == "LISTEN":
                continue  # TIME-WAIT and request sockets send nothing of their own; listeners carry none
            control, sent, retransmitted = entry.congestion, entry.segs_out, entry.total_retrans or 0
            acked = entry.bytes_acked or 0
            self.connections[control] = self.connections.get(control, 0) + 1
            previous = self._last.get(entry.cookie)
            if previous is not None:
                self._add(control, sent - previous[1], retransmitted - previous[2], acked - previous[3])
                self._reading(entry, control, acked - previous[3])
            elif not first:  # opened since the last read: all of it is new
                self._add(control, sent, retransmitted, acked)
                self._reading(entry, control, acked)
            self._last[entry.cookie] = (control, sent, retransmitted, acked)
            self._seen_at[entry.cookie] = self._reads
        for cookie, seen_at in list(self._seen_at.items()):
            if seen_at < self._reads - _FORGET_AFTER_READS:
                del self._seen_at[cookie], self._last[cookie]

    def closed(self, entries) -> None:
        """Sockets the kernel destroyed: count what they sent and had acked after their last read."""
        for entry in entries:
            if entry.segs_out is None:
                continue
            previous = self._last.pop(entry.cookie, None)
            self._seen_at.pop(entry.cookie, None)
            acked = entry.bytes_acked or 0
            if previous is None:
                if self._reads:  # opened and closed between two reads
                    self._add(UNKNOWN, entry.segs_out, entry.total_retrans or 0, acked)
                continue
            control, sent, retransmitted, acked_before = previous
            self._add(control, entry.segs_out - sent, (entry.total_retrans or 0) - retransmitted,
                      acked - acked_before)
