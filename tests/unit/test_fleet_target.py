"""How a host is reached: inventory variables first, then ~/.ssh/config (through fabric), as Ansible.

No connection is opened: fabric.Connection reads the SSH config when it is built.
"""

import getpass
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import fabric
import pytest

from ccrollout import fleet
from ccrollout.errors import EXIT_INVALID_INPUT, InvalidInput
from ccrollout.fleet import Session, Target, check_targets
from ccrollout.inventory import Host, load_inventory

REPO = Path(__file__).resolve().parents[2]

SSH_CONFIG = """
    Host web1
        HostName 192.0.2.10
        User deploy
        Port 2022

    Host alias-*
        User aliased
        Port 2200

    Host *
        ConnectTimeout 5
"""


@pytest.fixture
def ssh_home(tmp_path, monkeypatch):
    """A HOME whose ~/.ssh/config is SSH_CONFIG, as fabric's default Config reads it."""
    ssh = tmp_path / ".ssh"
    ssh.mkdir()
    (ssh / "config").write_text(textwrap.dedent(SSH_CONFIG))
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def session(name, host_vars):
    built = Session(Target.from_vars(name, host_vars))
    try:
        return built.connection
    finally:
        built.close()  # never opened; closing is a no-op


def test_from_vars_leaves_user_and_port_unset():
    target = Target.from_vars("web1", {})
    assert target.user is None and target.port is None
    assert target.address == "web1"


def test_from_vars_takes_inventory_user_and_port():
    target = Target.from_vars("web1", {"ansible_user": "admin", "ansible_port": "2222", "ansible_host": "h"})
    assert (target.user, target.port, target.address) == ("admin", 2222, "h")


def test_ssh_config_user_port_and_hostname_apply_when_inventory_is_silent(ssh_home):
    connection = session("web1", {})
    assert (connection.user, connection.port, connection.host) == ("deploy", 2022, "192.0.2.10")


def test_ssh_config_is_looked_up_by_ansible_host(ssh_home):
    connection = session("web9", {"ansible_host": "alias-web9"})
    assert (connection.user, connection.port, connection.host) == ("aliased", 2200, "alias-web9")


def test_inventory_user_and_port_override_ssh_config(ssh_home):
    connection = session("web1", {"ansible_user": "root", "ansible_port": 22})
    assert (connection.user, connection.port, connection.host) == ("root", 22, "192.0.2.10")


def test_without_ssh_config_entry_defaults_are_local_user_and_22(ssh_home):
    connection = session("elsewhere", {})
    assert (connection.user, connection.port) == (getpass.getuser(), 22)


def test_runtime_ssh_config_path_the_way_session_builds_the_connection(tmp_path):
    # The same keyword arguments Session passes, with an explicit ssh config file.
    path = tmp_path / "ssh_config"
    path.write_text(textwrap.dedent(SSH_CONFIG))
    target = Target.from_vars("web1", {})
    given = {k: v for k, v in (("user", target.user), ("port", target.port)) if v is not None}
    connection = fabric.Connection(target.address, **given, connect_timeout=fleet.CONNECT_TIMEOUT,
                                   config=fabric.Config(runtime_ssh_path=str(path)))
    assert (connection.user, connection.port, connection.host) == ("deploy", 2022, "192.0.2.10")


# -- what the inventory may say, checked before any host is reached -----------------------------

def write(path, text):
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return str(path)


def problems(host_vars: dict, name: str = "web1") -> str:
    with pytest.raises(InvalidInput) as raised:
        Target.from_vars(name, host_vars)
    assert raised.value.exit_code == EXIT_INVALID_INPUT
    return str(raised.value)


def test_a_jinja_template_is_an_error_naming_where_it_was_set(tmp_path):
    inventory = load_inventory([write(tmp_path / "hosts.yml", """
        all:
          hosts:
            web1:
              ansible_host: "{{ inventory_hostname }}.internal"
            web2:
              motd: "{{ unused_by_ccrollout }}"
    """)])
    with pytest.raises(InvalidInput) as raised:
        check_targets(inventory.hosts.values())
    assert str(raised.value) == (f"{tmp_path}/hosts.yml:4:21: host web1: ansible_host holds a Jinja template "
                                 "('{{ inventory_hostname }}.internal'), which ccrollout does not render: "
                                 "write the value itself")


def test_jinja_in_ini_and_group_vars_files_is_located_too(tmp_path):
    (tmp_path / "group_vars").mkdir()
    write(tmp_path / "group_vars" / "web.yml", "ansible_user: deploy\nansible_port: '{{ port }}'\n")
    inventory = load_inventory([write(tmp_path / "hosts", """
        [web]
        web1 ccrollout_state_dir="{% if x %}/a{% endif %}"
    """)])
    with pytest.raises(InvalidInput) as raised:
        check_targets(inventory.hosts.values())
    assert sorted(str(raised.value).splitlines()) == [
        f"{tmp_path}/group_vars/web.yml:2:15: host web1: ansible_port holds a Jinja template ('{{{{ port }}}}'), "
        "which ccrollout does not render: write the value itself",
        f"{tmp_path}/hosts:2: host web1: ccrollout_state_dir holds a Jinja template ('{{% if x %}}/a{{% endif %}}'), "
        "which ccrollout does not render: write the value itself"]


@pytest.mark.parametrize("port", [0, 65536, -1, "22a", "", 22.5, True, "{{ port }}x"])
def test_a_port_must_be_a_port(port):
    message = problems({"ansible_port": port})
    assert "host web1: ansible_port" in message


def test_a_port_in_text_is_taken():
    assert Target.from_vars("web1", {"ansible_port": "2222"}).port == 2222
    assert Target.from_vars("web1", {"ansible_ssh_port": 2200}).port == 2200


def test_user_and_port_may_be_given_in_ansible_host_but_only_once():
    target = Target.from_vars("web1", {"ansible_host": "deploy@10.0.0.1:2222"})
    assert (target.user, target.address, target.port) == ("deploy", "10.0.0.1", 2222)
    target = Target.from_vars("web1", {"ansible_host": "[2001:db8::1]:2222"})
    assert (target.address, target.port) == ("2001:db8::1", 2222)
    assert Target.from_vars("web1", {"ansible_host": "2001:db8::1"}).address == "2001:db8::1"
    assert "ansible_host names port 22 and ansible_port is 2222 too: give the port once" in problems(
        {"ansible_host": "h:22", "ansible_port": 2222})
    assert "ansible_host names user 'a' and ansible_user is 'b' too: give the user once" in problems(
        {"ansible_host": "a@h", "ansible_user": "b"})
    assert "ansible_host and ansible_ssh_host" in problems({"ansible_host": "a", "ansible_ssh_host": "b"}).replace(
        "ansible_host='a' and ansible_ssh_host='b' disagree", "ansible_host and ansible_ssh_host")


def test_connections_other_than_ssh_and_local_are_refused_by_name():
    assert Target.from_vars("web1", {"ansible_connection": "paramiko"}).connection == "ssh"
    assert Target.from_vars("web1", {"ansible_connection": "local"}).connection == fleet.LOCAL
    assert problems({"ansible_connection": "docker"}) == (
        "host web1: ansible_connection=docker is not supported: ccrollout reaches a host over SSH "
        "(ssh, paramiko, smart) or runs on this machine (local)")


def test_connection_variables_not_honoured_are_warned_about_once_each():
    hosts = [Host(f"web{index}", {"ansible_ssh_pass": "x", "ansible_become_method": "su", "app_port": 1,
                                   "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -C"})
             for index in range(1, 4)] + [Host("db1", {"ansible_password": "y"})]
    warnings = []
    targets = check_targets(hosts, warn=warnings.append)
    assert sorted(targets) == ["db1", "web1", "web2", "web3"]
    assert warnings == [
        "ansible_ssh_pass is not honoured: ccrollout logs in with keys (files or an agent) only "
        "(host web1 and 2 more hosts)",
        "ansible_become_method=su is not honoured: ccrollout becomes another user with sudo -n "
        "(host web1 and 2 more hosts)",
        "'-o StrictHostKeyChecking=no' in ansible_ssh_common_args is not honoured: ccrollout reads only -J, -i "
        "and -o ProxyJump, ProxyCommand, IdentityFile, UserKnownHostsFile, GlobalKnownHostsFile "
        "(host web1 and 2 more hosts)",
        "ansible_password is not honoured: ccrollout logs in with keys (files or an agent) only (host db1)"]


def test_honoured_variables_become_the_target():
    target = Target.from_vars("web1", {
        "ansible_become": "yes", "ansible_become_user": "ops", "ansible_timeout": "7",
        "ansible_python_interpreter": "auto_silent", "ansible_private_key_file": "~/.ssh/k",
        "ansible_ssh_common_args": "-o ProxyJump=bastion.example:2222 -i ~/.ssh/extra",
        "ansible_ssh_extra_args": "-J ignored-since-the-first-wins"})
    assert (target.become, target.become_user, target.connect_timeout) == (True, "ops", 7.0)
    assert (target.python, target.key_file) == ("auto_silent", "~/.ssh/k")
    assert [str(hop) for hop in target.ssh.jump] == ["bastion.example:2222"]
    assert target.ssh.identity_files == ("~/.ssh/extra",)
    assert problems({"ansible_become": "maybe"}) == "host web1: ansible_become must be true or false, got 'maybe'"
    assert "ansible_timeout must be a number of seconds" in problems({"ansible_timeout": "soon"})
    assert "ProxyJump 'a@': 'a@' is not [user@]host[:port]" in problems({"ansible_ssh_common_args": "-J a@"})


def test_the_commands_check_the_inventory_before_reaching_any_host(tmp_path):
    inventory = write(tmp_path / "hosts.ini", """
        [web]
        web1 ansible_host=127.0.0.1 ansible_port=9 ansible_user=a ansible_ssh_pass=secret
        web2 ansible_host="{{ lookup('env', 'X') }}" ansible_port=9
    """)
    plan = tmp_path / "plan.yaml"
    plan.write_text("algorithms: [{name: x, source: x.bpf.c}]\n"
                    "rollouts: [{name: r, algorithm: x, hosts: web, stages: [1], bake: 3s}]\n")
    (tmp_path / "x.bpf.c").write_text("")
    expected = (f"{tmp_path}/hosts.ini:3: host web2: ansible_host holds a Jinja template "
                "(\"{{ lookup('env', 'X') }}\")")
    for command in (["check", "-i", inventory, str(plan)], ["inventory", "-i", inventory, "--list"],
                    ["apply", "-i", inventory, str(plan)], ["facts", "-i", inventory]):
        ran = subprocess.run([sys.executable, "-m", "ccrollout.cli", *command], capture_output=True, text=True,
                             cwd=REPO, env={**os.environ, "CCROLLOUT_HOME": str(tmp_path / "home")})
        assert ran.returncode == EXIT_INVALID_INPUT, (command, ran.stderr)
        assert expected in ran.stderr, (command, ran.stderr)
        assert "warning: ansible_ssh_pass is not honoured" in ran.stderr, (command, ran.stderr)
