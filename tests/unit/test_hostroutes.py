"""Routes as the host reads them: iproute2's JSON (`ip -j route`), IPv4 and IPv6 alike. The
JSON here is what iproute2 6.1 printed for such routes on this kernel."""

import json
import subprocess

import pytest

from ccrollout.host import routes

IPV4 = [{"dst": "10.199.0.0/24", "dev": "eth0", "protocol": "kernel", "scope": "link", "prefsrc": "10.199.0.11",
         "flags": [], "metrics": [{"congestion": "ccr_reno"}]},
        {"type": "local", "dst": "10.199.0.11", "dev": "eth0", "table": "local", "flags": []},
        {"dst": "default", "gateway": "10.199.0.1", "dev": "eth0", "flags": [], "metrics": [{"congestion": "bbr"}]}]
IPV6 = [{"dst": "fdcc:7200:1ab::fe", "dev": "eth0", "metric": 1024, "flags": [],
         "metrics": [{"congestion": "ccr_reno"}], "pref": "medium"},
        {"dst": "fdcc:7200:1ab::/64", "dev": "eth0", "protocol": "kernel", "metric": 256, "flags": [],
         "pref": "medium"}]


@pytest.fixture
def fake_ip(monkeypatch):
    """`ip` answering from IPV4 and IPV6, and recording what it was asked."""
    asked = []

    def run(command, **kwargs):
        asked.append(command)
        family = command[2] if command[1] == "-j" else command[1]
        table = IPV6 if family == "-6" else IPV4
        if command[-2:] == ["exact", "fdcc:7200:1ab::fe/128"]:
            table = IPV6[:1]
        elif command[-3:-1] == ["show", "exact"]:
            table = []
        if command[-2] == "get":
            table = [{"dst": command[-1], "dev": "eth0", "prefsrc": "fdcc:7200:1ab::b", "flags": []}]
        return subprocess.CompletedProcess(command, 0, json.dumps(table) if command[1] == "-j" else "", "")
    monkeypatch.setattr(routes.subprocess, "run", run)
    return asked


def test_routes_with_their_own_control_in_both_families(fake_ip):
    assert routes.with_congctl() == [
        {"prefix": "10.199.0.0/24", "congctl": "ccr_reno", "dev": "eth0", "table": "main"},
        {"prefix": "0.0.0.0/0", "congctl": "bbr", "dev": "eth0", "table": "main"},
        {"prefix": "fdcc:7200:1ab::fe/128", "congctl": "ccr_reno", "dev": "eth0", "table": "main"}]
    assert [command[:3] for command in fake_ip] == [["ip", "-j", "-4"], ["ip", "-j", "-6"]]


def test_an_ipv6_prefix_is_read_and_routed_with_ip_dash_6(fake_ip):
    assert routes.congctl_of("fdcc:7200:1ab::fe/128") == "ccr_reno"
    assert routes.congctl_of("fdcc:7200:1ab::99/128") is None
    with pytest.raises(routes.RouteError, match="does not show congctl ccr_dctcp"):
        routes.activate("fdcc:7200:1ab::99/128", "ccr_dctcp", None)
    assert ["ip", "-6", "route", "replace", "fdcc:7200:1ab::99/128", "dev", "eth0", "congctl", "ccr_dctcp"] in fake_ip
    assert all(command[:2] in (["ip", "-6"], ["ip", "-j"]) and "-4" not in command for command in fake_ip)
