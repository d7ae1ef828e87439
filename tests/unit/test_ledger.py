"""The per-control ledger: every connection counted from when it is first seen to its end."""

from dataclasses import dataclass

from ccrollout.host.ledger import UNKNOWN, Ledger


@dataclass
class Entry:  # the fields of sockdiag.TcpSocket the ledger reads
    cookie: int
    congestion: str | None
    segs_out: int | None
    total_retrans: int | None


def test_connections_open_before_the_ledger_count_only_from_then_on():
    ledger = Ledger()
    ledger.read([Entry(1, "reno", 1000, 10)])
    ledger.read([Entry(1, "reno", 1500, 14)])
    assert ledger.totals == {"reno": [500, 4]}


def test_a_connection_opened_since_the_last_read_counts_whole():
    ledger = Ledger()
    ledger.read([])
    ledger.read([Entry(2, "ccr_reno", 300, 3), Entry(3, "reno", 100, 0)])
    assert ledger.totals == {"ccr_reno": [300, 3], "reno": [100, 0]}


def test_a_connection_that_closes_between_reads_is_counted_to_its_end_under_its_control():
    ledger = Ledger()
    ledger.read([])
    ledger.read([Entry(4, "ccr_reno", 100, 1)])
    ledger.closed([Entry(4, None, 900, 30)])   # announced by the kernel: no control's name
    ledger.read([])
    assert ledger.totals == {"ccr_reno": [900, 30]}


def test_one_that_opened_and_closed_unseen_is_kept_apart():
    ledger = Ledger()
    ledger.read([])
    ledger.closed([Entry(5, None, 50, 2)])
    assert ledger.totals == {UNKNOWN: [50, 2]}


def test_time_wait_and_request_sockets_send_nothing_of_their_own():
    ledger = Ledger()
    ledger.read([])
    ledger.read([Entry(6, None, None, None), Entry(7, None, 0, 0)])
    assert ledger.totals == {}
