"""Window: what one host's connections did over one stretch of time, the one shape figures
take from the sources to the judge (which re-exports it)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """What one host's connections did over one stretch of time (counter deltas), or, in a
    Sample, its counters at one moment. Fields beyond the segment counts are optional:
    a source that cannot read them leaves them at their defaults and they go unjudged.

    sent, retransmitted, bytes_acked: counters (summed over connections; deltas in a series).
    seconds: how long the stretch was (0 in a Sample's reading).
    connections: how many connections the figures cover (a gauge: the end of the stretch).
    srtt_ms, min_rtt_ms: the connections' smoothed and minimum RTT, averaged over them
    (gauges; None where unknown).
    srtt_ms_sum, min_rtt_ms_sum, rtt_readings: in a reading, RTT summed over every read of a
    connection that moved data (host/ledger.py), so that two readings give the mean RTT
    between them (canary.growth); 0 where the source keeps no such sums.
    """

    sent: int
    retransmitted: int
    bytes_acked: int = 0
    seconds: float = 0.0
    connections: int = 0
    srtt_ms: float | None = None
    min_rtt_ms: float | None = None
    srtt_ms_sum: float = 0.0
    min_rtt_ms_sum: float = 0.0
    rtt_readings: int = 0

    @property
    def retransmit_ratio(self) -> float:
        return self.retransmitted / self.sent if self.sent else 0.0

    def __add__(self, other: "Window") -> "Window":
        """Two hosts' (or two connections') figures over the same stretch, together."""
        connections = self.connections + other.connections
        return Window(self.sent + other.sent, self.retransmitted + other.retransmitted,
                      bytes_acked=self.bytes_acked + other.bytes_acked,
                      seconds=max(self.seconds, other.seconds), connections=connections,
                      srtt_ms=_weighted(self.srtt_ms, self.connections, other.srtt_ms, other.connections),
                      min_rtt_ms=_weighted(self.min_rtt_ms, self.connections, other.min_rtt_ms,
                                           other.connections),
                      srtt_ms_sum=self.srtt_ms_sum + other.srtt_ms_sum,
                      min_rtt_ms_sum=self.min_rtt_ms_sum + other.min_rtt_ms_sum,
                      rtt_readings=self.rtt_readings + other.rtt_readings)


def _weighted(a: float | None, a_weight: int, b: float | None, b_weight: int) -> float | None:
    """The mean of two per-connection averages, weighted by their connections."""
    if a is None or b is None:
        return b if a is None else a
    if a_weight + b_weight == 0:
        return (a + b) / 2
    return (a * a_weight + b * b_weight) / (a_weight + b_weight)


Series = list[Window]  # one window per sampling interval, oldest first


def total(series: Series) -> Window:
    return sum(series, Window(0, 0))
