"""How a host is reached: inventory variables first, then ~/.ssh/config (through fabric), as Ansible.

No connection is opened: fabric.Connection reads the SSH config when it is built.
"""

import getpass
import textwrap

import fabric
import pytest

from ccrollout import fleet
from ccrollout.fleet import Session, Target

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
