"""Segments sent and retransmitted per congestion control, connection by connection.

Host-wide counters mix the connections of the old control with those of the
new one. The ledger reads the socket table (inet_diag) now and then and adds
each connection's growth of tcp_info's segs_out and total_retrans to the
control it runs. A connection that closes between two reads is not lost: the
kernel announces each destroyed socket with its final tcp_info, and the
remainder since its last read goes to the control it was last seen with
(one that opened and closed unseen goes to "unknown"). Connections that
existed before the ledger started count only from then on.

Pure bookkeeping: the caller reads the kernel (sockdiag) and feeds it here.
"""

from __future__ import annotations

UNKNOWN = "unknown"
# A socket gone from the table whose destruction was never announced (the kernel drops
# announcements when the listener falls behind) is forgotten after this many reads.
_FORGET_AFTER_READS = 20


class Ledger:
    def __init__(self, count_retransmits: bool = True):
        # False when a tracer counts the retransmissions (see traced()); tcp_info still counts
        # the segments sent.
        self.count_retransmits = count_retransmits
        self.totals: dict[str, list[int]] = {}   # control -> [segments sent, retransmitted]
        self._last: dict[int, tuple[str, int, int]] = {}  # socket cookie -> (control, sent, retransmitted)
        self._seen_at: dict[int, int] = {}                # socket cookie -> the read that last saw it
        self._reads = 0

    def _add(self, control: str, sent: int, retransmitted: int) -> None:
        total = self.totals.setdefault(control, [0, 0])
        total[0] += max(0, sent)
        total[1] += max(0, retransmitted) if self.count_retransmits else 0

    def traced(self, retransmits_by_control: dict[str, int]) -> None:
        """Retransmissions a tracer attributed to each control since its last read."""
        for control, count in retransmits_by_control.items():
            self.totals.setdefault(control, [0, 0])[1] += count

    def read(self, sockets) -> None:
        """One read of the socket table: count each connection's growth since the last one."""
        first = self._reads == 0
        self._reads += 1
        for entry in sockets:
            if entry.congestion is None or entry.segs_out is None:
                continue  # TIME-WAIT and request sockets send nothing of their own
            control, sent, retransmitted = entry.congestion, entry.segs_out, entry.total_retrans or 0
            previous = self._last.get(entry.cookie)
            if previous is not None:
                self._add(control, sent - previous[1], retransmitted - previous[2])
            elif not first:  # opened since the last read: all of it is new
                self._add(control, sent, retransmitted)
            self._last[entry.cookie] = (control, sent, retransmitted)
            self._seen_at[entry.cookie] = self._reads
        for cookie, seen_at in list(self._seen_at.items()):
            if seen_at < self._reads - _FORGET_AFTER_READS:
                del self._seen_at[cookie], self._last[cookie]

    def closed(self, entries) -> None:
        """Sockets the kernel destroyed: count what they sent after their last read."""
        for entry in entries:
            if entry.segs_out is None:
                continue
            previous = self._last.pop(entry.cookie, None)
            self._seen_at.pop(entry.cookie, None)
            if previous is None:
                if self._reads:  # opened and closed between two reads
                    self._add(UNKNOWN, entry.segs_out, entry.total_retrans or 0)
                continue
            control, sent, retransmitted = previous
            self._add(control, entry.segs_out - sent, (entry.total_retrans or 0) - retransmitted)
