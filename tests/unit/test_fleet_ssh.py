"""Host keys as OpenSSH trusts them, jump hosts and proxy commands, against small SSH servers
on 127.0.0.1 (sshserver.py). HOME is the test's own, so ~/.ssh is what each test writes."""

import sys
import textwrap

import paramiko
import pytest

from ccrollout import fleet
from ccrollout.errors import InvalidInput
from sshserver import LoopbackSSHServer, known_hosts_line, new_key

TIMEOUTS = fleet.Timeouts(connect=5, command=5)


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)  # only the test's key logs in
    return home


@pytest.fixture
def client_key(tmp_path):
    key = new_key()
    path = tmp_path / "id_ecdsa"
    key.write_private_key_file(str(path))
    return key, path


@pytest.fixture
def servers(client_key):
    started = []

    def start():
        started.append(LoopbackSSHServer(client_key[0]))
        return started[-1]
    yield start
    for server in reversed(started):
        server.close()


def name_of(server) -> str:
    return f"[127.0.0.1]:{server.port}"


def host_vars(server, client_key, **more) -> dict:
    return {"ansible_host": "127.0.0.1", "ansible_port": server.port, "ansible_user": "tester",
            "ansible_ssh_private_key_file": str(client_key[1]), **more}


def reach(variables: dict) -> None:
    """Open (and close) the SSH connection a session would use; HostError if refused."""
    session = fleet.Session(fleet.Target.from_vars("target", variables), TIMEOUTS)
    try:
        session.open()
    finally:
        session.close()


def write(path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


# -- host keys ------------------------------------------------------------------------------------

def test_a_host_known_only_in_the_users_known_hosts_is_reached(home, client_key, servers):
    server = servers()
    write(home / ".ssh/known_hosts", known_hosts_line(name_of(server), server.host_key))
    reach(host_vars(server, client_key))
    assert server.logins == ["tester"]


def test_hashed_known_hosts_entries_are_read(home, client_key, servers):
    server = servers()
    hashed = paramiko.HostKeys.hash_host(name_of(server))
    write(home / ".ssh/known_hosts", "# a comment\n" + known_hosts_line(hashed, server.host_key))
    reach(host_vars(server, client_key))
    assert server.logins == ["tester"]


def test_an_unknown_host_is_refused_before_logging_in(home, client_key, servers):
    server = servers()
    with pytest.raises(fleet.HostError, match=r"host key of \[127.0.0.1\]:\d+ is not in known_hosts"):
        reach(host_vars(server, client_key))
    assert server.logins == []


def test_a_changed_host_key_is_refused(home, client_key, servers):
    server = servers()
    write(home / ".ssh/known_hosts", known_hosts_line(name_of(server), new_key()))
    with pytest.raises(fleet.HostError, match="host key does not match known_hosts"):
        reach(host_vars(server, client_key))
    assert server.logins == []


def test_any_listed_key_lets_the_host_in_as_openssh_does(home, client_key, servers):
    server = servers()
    write(home / ".ssh/known_hosts", known_hosts_line(name_of(server), new_key()) +
          known_hosts_line(f"other,{name_of(server)}", server.host_key))
    reach(host_vars(server, client_key))


def test_ssh_configs_user_known_hosts_file_replaces_the_default(home, client_key, servers):
    server = servers()
    write(home / ".ssh/known_hosts", known_hosts_line(name_of(server), new_key()))  # not read any more
    write(home / "elsewhere/known", known_hosts_line(name_of(server), server.host_key))
    write(home / ".ssh/config", """
        Host 127.0.0.1
            UserKnownHostsFile ~/elsewhere/known
    """)
    reach(host_vars(server, client_key))


def test_known_hosts_files_from_the_inventorys_ssh_arguments(home, client_key, servers, tmp_path):
    server = servers()
    global_file = write(tmp_path / "global_known_hosts", known_hosts_line(name_of(server), server.host_key))
    reach(host_vars(server, client_key, ansible_ssh_common_args=f"-o GlobalKnownHostsFile={global_file}"))
    reach(host_vars(server, client_key, ansible_ssh_extra_args=f"-oUserKnownHostsFile={global_file}"))


def test_certificate_authorities_do_not_stop_reading_and_revoked_keys_are_refused(home, client_key, servers):
    server = servers()
    authority = new_key()
    entries = (f"@cert-authority *.example.com {authority.get_name()} {authority.get_base64()}\n"
               + known_hosts_line(name_of(server), server.host_key))
    write(home / ".ssh/known_hosts", entries)
    reach(host_vars(server, client_key))
    write(home / ".ssh/known_hosts", entries + "@revoked " + known_hosts_line("*", server.host_key))
    with pytest.raises(fleet.HostError, match="revoked"):
        reach(host_vars(server, client_key))


def test_the_inventorys_known_hosts_file_is_read_first_and_must_exist(home, client_key, servers, tmp_path):
    server = servers()
    inventory_file = write(tmp_path / "inventory_known_hosts", known_hosts_line(name_of(server), server.host_key))
    reach(host_vars(server, client_key, ccrollout_known_hosts=str(inventory_file)))
    with pytest.raises(fleet.HostError, match="cannot read known_hosts .*missing"):
        reach(host_vars(server, client_key, ccrollout_known_hosts=str(tmp_path / "missing")))


def test_the_known_key_type_is_asked_for_first(home, client_key, servers):
    server = servers()
    rsa = paramiko.RSAKey.generate(2048)
    server.host_keys.append(rsa)  # it offers ECDSA (which paramiko prefers) and RSA
    write(home / ".ssh/known_hosts", known_hosts_line(name_of(server), rsa))
    reach(host_vars(server, client_key))
    assert server.logins == ["tester"]


def test_the_files_read_are_openssh_s_unless_ssh_config_or_the_inventory_name_others(home):
    from ccrollout.fleet.hostkeys import known_hosts_files
    assert known_hosts_files({}) == [f"{home}/.ssh/known_hosts", f"{home}/.ssh/known_hosts2",
                                     "/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"]
    assert known_hosts_files({"userknownhostsfile": "%d/a '/b c'", "globalknownhostsfile": "/g"},
                             extra="~/inventory") == [f"{home}/inventory", f"{home}/a", "/b c", "/g"]
    assert known_hosts_files({"userknownhostsfile": "/ignored"}, user_files=("/u",), global_files=()) == ["/u"]


# -- jump hosts and proxy commands ------------------------------------------------------------

def test_a_jump_host_from_ssh_common_args_is_used_and_its_key_checked(home, client_key, servers):
    jump, target = servers(), servers()
    write(home / ".ssh/config", f"Host 127.0.0.1\n    IdentityFile {client_key[1]}\n")
    write(home / ".ssh/known_hosts", known_hosts_line(name_of(target), target.host_key))
    common_args = {"ansible_ssh_common_args": f"-o ProxyJump=jumper@127.0.0.1:{jump.port}"}
    with pytest.raises(fleet.HostError, match=rf"jump host 127.0.0.1: host key of \[127.0.0.1\]:{jump.port} is "
                                              "not in known_hosts"):
        reach(host_vars(target, client_key, **common_args))
    assert jump.logins == [] and target.logins == []
    write(home / ".ssh/known_hosts", known_hosts_line(name_of(target), target.host_key)
          + known_hosts_line(name_of(jump), jump.host_key))
    reach(host_vars(target, client_key, **common_args))
    assert jump.logins == ["jumper"] and jump.forwarded == [("127.0.0.1", target.port)]
    assert target.logins == ["tester"]


def test_dash_j_in_ssh_extra_args_and_a_chain_of_two(home, client_key, servers):
    first, second, target = servers(), servers(), servers()
    write(home / ".ssh/config", f"Host 127.0.0.1\n    IdentityFile {client_key[1]}\n")
    write(home / ".ssh/known_hosts", "".join(known_hosts_line(name_of(s), s.host_key) for s in (first, second, target)))
    reach(host_vars(target, client_key, ansible_ssh_extra_args=f"-J 127.0.0.1:{first.port},127.0.0.1:{second.port}"))
    assert first.forwarded == [("127.0.0.1", second.port)]
    assert second.forwarded == [("127.0.0.1", target.port)]


def test_a_jump_host_from_ssh_config(home, client_key, servers):
    jump, target = servers(), servers()
    write(home / ".ssh/config", f"""
        Host behind
            HostName 127.0.0.1
            Port {target.port}
            ProxyJump 127.0.0.1:{jump.port}
        Host *
            IdentityFile {client_key[1]}
    """)
    write(home / ".ssh/known_hosts", known_hosts_line(name_of(target), target.host_key)
          + known_hosts_line(name_of(jump), jump.host_key))
    reach({"ansible_host": "behind", "ansible_user": "tester"})
    assert jump.forwarded == [("127.0.0.1", target.port)] and target.logins == ["tester"]


RELAY = """
import os, socket, sys, threading
with open(sys.argv[1], "a") as log:
    log.write(repr(sys.argv[2:]) + "\\n")
upstream = socket.create_connection((sys.argv[2], int(sys.argv[3])))
def forward():
    while True:
        data = os.read(0, 65536)
        if not data:
            break
        upstream.sendall(data)
    upstream.shutdown(socket.SHUT_WR)
threading.Thread(target=forward, daemon=True).start()
while True:
    data = upstream.recv(65536)
    if not data:
        break
    os.write(1, data)
"""


def test_a_proxy_command_runs_without_a_shell_with_its_tokens_filled_in(home, client_key, servers, tmp_path):
    target = servers()
    relay = write(tmp_path / "relay.py", RELAY)
    log = tmp_path / "relay.log"
    write(home / ".ssh/known_hosts", known_hosts_line(name_of(target), target.host_key))
    proxy = f'-o ProxyCommand="exec {sys.executable} {relay} {log} %h %p %r \'$(touch {tmp_path}/shell)\' 100%%"'
    reach(host_vars(target, client_key, ansible_ssh_common_args=proxy))
    assert log.read_text() == repr(["127.0.0.1", str(target.port), "tester", f"$(touch {tmp_path}/shell)",
                                    "100%"]) + "\n"
    assert not (tmp_path / "shell").exists() and target.logins == ["tester"]


def test_a_proxy_command_that_needs_a_shell_is_refused_before_anything_runs():
    with pytest.raises(InvalidInput, match=r"host target: ansible_ssh_common_args: ProxyCommand .* needs a shell "
                                           r"\('\|'\)"):
        fleet.Target.from_vars("target", {"ansible_ssh_common_args": "-o 'ProxyCommand=nc %h %p | tee log'"})
    with pytest.raises(InvalidInput, match="unknown token %C"):
        fleet.Target.from_vars("target", {"ansible_ssh_common_args": "-o 'ProxyCommand=nc %C'"})


def test_a_target_the_jump_host_cannot_reach_is_reported_as_such(home, client_key, servers):
    jump, target = servers(), servers()
    closed_port = target.port
    target.close()
    write(home / ".ssh/config", f"Host 127.0.0.1\n    IdentityFile {client_key[1]}\n")
    write(home / ".ssh/known_hosts", known_hosts_line(name_of(jump), jump.host_key))
    with pytest.raises(fleet.HostError, match=rf"jump host 127.0.0.1 could not reach 127.0.0.1:{closed_port}"):
        reach(host_vars(target, client_key, ansible_ssh_common_args=f"-J 127.0.0.1:{jump.port}"))
