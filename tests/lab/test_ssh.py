"""Reaching hosts the way operators set them up: a host behind a jump host (lab3 drops SSH
from this machine; lab1 may forward to it), host keys from ~/.ssh/known_hosts alone, and a
route scope with IPv6 prefixes (the lab's /64 and the controller's /128)."""

import ipaddress
import json
import os
import socket
import subprocess
import sys

import pytest

from ccrollout import lab
from labkit import (
    HOSTS, NOT_JUDGING, REPO, assert_gone, ccrollout, default_of, roll_back_every_rollout, running_lab, write_plan)

BEHIND = "lab3"
LISTEN_PORT = 5301  # a lab-only port for one IPv6 connection between two lab hosts


@pytest.fixture(scope="module")
def jump_lab():
    """The lab with lab3 behind lab1, and background traffic; torn down whatever happens."""
    with running_lab(len(HOSTS), behind_jump=[BEHIND]) as inventory:
        yield inventory


def answers_ssh(address: str) -> bool:
    try:
        with socket.create_connection((address, 22), timeout=2.0) as connection:
            return connection.recv(8).startswith(b"SSH-")
    except OSError:
        return False


def run_cli(home_dir, journal_home, *args) -> subprocess.CompletedProcess:
    """The CLI with HOME set to HOME_DIR: no ~/.ssh of this machine's can vouch for anything."""
    return subprocess.run([sys.executable, "-m", "ccrollout.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=600, env={**os.environ, "CCROLLOUT_HOME": str(journal_home), "HOME": str(home_dir)})


def netns_inode(host: str) -> str:
    return str(os.stat(f"/run/netns/{host}").st_ino)


def test_a_host_behind_the_jump_host_is_reached_through_it(jump_lab, journal_home, tmp_path):
    hosts = lab.status()["hosts"]
    jump, behind = hosts["lab1"]["address"], hosts[BEHIND]["address"]
    assert hosts[BEHIND]["behind_jump"] and answers_ssh(jump) and not answers_ssh(behind)

    # The lab's own inventory: -o ProxyCommand="ssh -F ssh_config -W %h:%p lab1", run without a shell.
    facts = run_cli(tmp_path, journal_home, "facts", "--json", "-i", jump_lab, BEHIND)
    assert facts.returncode == 0, facts.stderr
    assert json.loads(facts.stdout)[BEHIND]["netns"] == netns_inode(BEHIND)

    # -J, the jump host's key file from ~/.ssh/config, and both host keys from ~/.ssh/known_hosts
    # alone, hashed (no ccrollout_known_hosts).
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    key = lab.lab_dir() / "id_ed25519"
    (home / ".ssh" / "config").write_text(f"Host {jump}\n    User root\n    IdentityFile {key}\n")
    known = home / ".ssh" / "known_hosts"
    known.write_text((lab.lab_dir() / "known_hosts").read_text())
    subprocess.run(["ssh-keygen", "-H", "-f", str(known)], check=True, capture_output=True)
    assert "|1|" in known.read_text() and jump not in known.read_text()
    inventory = tmp_path / "behind.ini"
    inventory.write_text(f"{BEHIND} ansible_host={behind} ansible_user=root ansible_ssh_private_key_file={key} "
                         f"ccrollout_state_dir={lab.lab_dir() / 'hosts' / BEHIND} "
                         f"ansible_ssh_common_args='-J root@{jump}'\n")
    facts = run_cli(home, journal_home, "facts", "--json", "-i", str(inventory))
    assert facts.returncode == 0, facts.stderr
    assert json.loads(facts.stdout)[BEHIND]["netns"] == netns_inode(BEHIND)

    # A jump host whose key nobody vouches for is refused before anything is sent through it.
    lines = [line for line in (lab.lab_dir() / "known_hosts").read_text().splitlines() if line.startswith(BEHIND)]
    known.write_text("\n".join(lines) + "\n")
    refused = run_cli(home, journal_home, "facts", "-i", str(inventory))
    assert refused.returncode == 5
    assert f"{BEHIND}: jump host {jump}: host key of {jump} is not in known_hosts (refusing to connect)" \
        in refused.stdout + refused.stderr


def test_a_host_is_reached_by_its_ipv6_address(jump_lab, journal_home, tmp_path):
    address6 = lab.status()["hosts"]["lab2"]["address6"]
    inventory = tmp_path / "ipv6.ini"
    inventory.write_text(open(jump_lab).read().replace("lab2 ansible_host=10.199.0.12", f"lab2 ansible_host={address6}"))
    assert address6 in inventory.read_text()
    facts = run_cli(tmp_path, journal_home, "facts", "--json", "-i", str(inventory), "lab2")
    assert facts.returncode == 0, facts.stderr
    assert json.loads(facts.stdout)["lab2"]["netns"] == netns_inode("lab2")


def route_of(host: str, prefix: str) -> str:
    family = "-6" if ipaddress.ip_network(prefix).version == 6 else "-4"
    return subprocess.run(["ip", "netns", "exec", host, "ip", family, "route", "show", "exact", prefix],
                          capture_output=True, text=True, check=True).stdout.strip()


LISTEN = """
import socket, sys
server = socket.socket(socket.AF_INET6)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the last test connection may be in TIME_WAIT
server.bind((sys.argv[1], int(sys.argv[2])))
server.listen()
server.settimeout(20)
connection, _ = server.accept()
connection.close()
"""
CONNECT = """
import socket, sys, time
for attempt in range(100):
    try:
        connection = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
        break
    except ConnectionRefusedError:
        time.sleep(0.05)
print(connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).rstrip(b"\\0").decode())
"""


def ipv6_connection_control(client: str, server: str, address: str) -> str:
    """The congestion control of a new IPv6 connection from lab host CLIENT to SERVER's ADDRESS."""
    listener = subprocess.Popen(["ip", "netns", "exec", server, sys.executable, "-c", LISTEN, address,
                                 str(LISTEN_PORT)])
    try:
        connected = subprocess.run(["ip", "netns", "exec", client, sys.executable, "-c", CONNECT, address,
                                    str(LISTEN_PORT)], capture_output=True, text=True, timeout=30, check=True)
        return connected.stdout.strip()
    finally:
        try:
            listener.wait(timeout=10)
        except subprocess.TimeoutExpired:
            listener.kill()
            listener.wait()


def test_an_ipv6_route_scope_changes_those_routes_and_rollback_restores_them(jump_lab, journal_home, tmp_path):
    subnet6 = lab.lab_subnet6()
    lab_prefix = str(subnet6)
    controller = f"{subnet6.network_address + lab.ROOT_OFFSET}/128"  # no route of its own: one is added
    connected = str(lab.DEFAULT_SUBNET)  # so that the bake has traffic under the new control
    prefixes = (connected, lab_prefix, controller)
    before = {host: (default_of(host), *(route_of(host, prefix) for prefix in prefixes)) for host in HOSTS}
    assert all(lab_prefix in routes[2] and "congctl" not in routes[2] and routes[3] == ""
               for routes in before.values()), before
    lab2_address6 = str(subnet6.network_address + lab.HOST_OFFSET + 2)
    assert ipv6_connection_control("lab1", "lab2", lab2_address6) == lab.HOST_DEFAULT_CONGESTION
    plan = write_plan(tmp_path, "ccr_reno", "ccr_reno.bpf.c", stages=["100%"],
                      scope={"default": False, "routes": list(prefixes)}, health=NOT_JUDGING)
    try:
        applied = ccrollout(journal_home, "apply", "-i", jump_lab, str(plan))  # lab3 through lab1
        assert applied.returncode == 0, applied.stderr + applied.stdout
        for host in HOSTS:
            assert default_of(host) == before[host][0]
            assert "congctl ccr_reno" in route_of(host, lab_prefix)
            assert route_of(host, lab_prefix).replace(" congctl ccr_reno", "") == before[host][2]
            assert "congctl ccr_reno" in route_of(host, controller)
        facts = json.loads(ccrollout(journal_home, "facts", "--json", "-i", jump_lab, "lab1").stdout)
        assert {"prefix": lab_prefix, "congctl": "ccr_reno", "dev": lab.HOST_IFACE, "table": "main"} \
            in facts["lab1"]["routes"]
        # A new IPv6 connection follows its route's control, not the namespace's default.
        assert ipv6_connection_control("lab1", "lab2", lab2_address6) == "ccr_reno"
    finally:
        rolled = ccrollout(journal_home, "rollback", "-i", jump_lab)
        if rolled.returncode != 0:
            roll_back_every_rollout(journal_home, jump_lab)
    assert rolled.returncode == 0, rolled.stderr + rolled.stdout
    after = {host: (default_of(host), *(route_of(host, prefix) for prefix in prefixes)) for host in HOSTS}
    assert after == before
    assert_gone("ccr_reno")
