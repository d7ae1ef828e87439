"""The per-control ledger: every connection counted from when it is first seen to its end,
its bytes acked too; RTT summed over the reads of connections that moved data."""

from dataclasses import dataclass

from ccrollout.host.ledger import UNKNOWN, Ledger


@dataclass
class Entry:  # the fields of sockdiag.TcpSocket the ledger reads
    cookie: int
    congestion: str | None
    segs_out: int | None
    total_retrans: int | None
    bytes_acked: int | None = 0
    rtt_us: int | None = None
    min_rtt_us: int | None = None
    state: str = "ESTABLISHED"


def test_connections_open_before_the_ledger_count_only_from_then_on():
    ledger = Ledger()
    ledger.read([Entry(1, "reno", 1000, 10)])
    ledger.read([Entry(1, "reno", 1500, 14)])
    assert ledger.totals == {"reno": [500, 4, 0]}


def test_a_connection_opened_since_the_last_read_counts_whole():
    ledger = Ledger()
    ledger.read([])
    ledger.read([Entry(2, "ccr_reno", 300, 3), Entry(3, "reno", 100, 0)])
    assert ledger.totals == {"ccr_reno": [300, 3, 0], "reno": [100, 0, 0]}


def test_a_connection_that_closes_between_reads_is_counted_to_its_end_under_its_control():
    ledger = Ledger()
    ledger.read([])
    ledger.read([Entry(4, "ccr_reno", 100, 1)])
    ledger.closed([Entry(4, None, 900, 30)])   # announced by the kernel: no control's name
    ledger.read([])
    assert ledger.totals == {"ccr_reno": [900, 30, 0]}


def test_one_that_opened_and_closed_unseen_is_kept_apart():
    ledger = Ledger()
    ledger.read([])
    ledger.closed([Entry(5, None, 50, 2)])
    assert ledger.totals == {UNKNOWN: [50, 2, 0]}


def test_time_wait_and_request_sockets_send_nothing_of_their_own():
    ledger = Ledger()
    ledger.read([])
    ledger.read([Entry(6, None, None, None), Entry(7, None, 0, 0)])
    assert ledger.totals == {}


def test_bytes_acked_survive_a_connection_that_closes_between_reads():
    ledger = Ledger()
    ledger.read([])
    ledger.read([Entry(8, "ccr_starve", 10, 0, bytes_acked=14_480)])
    ledger.closed([Entry(8, None, 40, 0, bytes_acked=57_920)])  # its last 30 segments, acked after the read
    ledger.read([Entry(9, "ccr_starve", 5, 0, bytes_acked=7_240)])
    assert ledger.totals == {"ccr_starve": [45, 0, 65_160]}


def test_rtt_is_summed_over_reads_of_connections_that_moved_data():
    ledger = Ledger()
    ledger.read([Entry(1, "reno", 100, 0, bytes_acked=1000, rtt_us=900, min_rtt_us=100)])  # counted from here
    ledger.read([Entry(1, "reno", 200, 0, bytes_acked=2000, rtt_us=1100, min_rtt_us=100),
                 Entry(2, "reno", 1, 0, bytes_acked=0, rtt_us=50),  # only receives: not a reading
                 Entry(3, "cubic", 10, 0, bytes_acked=500, rtt_us=3000)])  # no min_rtt: srtt stands in
    ledger.read([Entry(1, "reno", 200, 0, bytes_acked=2000, rtt_us=1500, min_rtt_us=100)])  # idle: none
    assert ledger.rtt == {"reno": [1100, 100, 1], "cubic": [3000, 3000, 1]}


def test_connections_are_a_gauge_of_the_last_read_without_listeners():
    ledger = Ledger()
    ledger.read([Entry(1, "reno", 1, 0), Entry(2, "reno", 1, 0), Entry(3, "reno", 0, 0, state="LISTEN")])
    assert ledger.connections == {"reno": 2}
    ledger.read([Entry(2, "reno", 1, 0)])
    assert ledger.connections == {"reno": 1}
