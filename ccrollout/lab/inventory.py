"""What the controller needs to reach the lab: the Ansible INI inventory and an ssh_config
(``ssh -F <lab dir>/ssh_config lab1``), both pointing at the lab's key and known_hosts."""

from __future__ import annotations

from ccrollout.host.osutil import write_atomically
from ccrollout.lab.base import LabPaths, lab_dir
from ccrollout.lab.netns import JUMP_HOST, host_address, host_index
from ccrollout.lab.sshd import SSH_PORT


def inventory_path() -> str:
    """Path of the lab's Ansible INI inventory (the file exists while the lab is up)."""
    return str(LabPaths(lab_dir()).inventory)


def write_client_files(paths: LabPaths, subnet, names, behind_jump=()) -> None:
    """A host behind the jump host is reached through it: ProxyJump in ssh_config, and in the
    inventory a ProxyCommand running ssh with that config (so it needs nothing in ~/.ssh)."""
    config, inventory = [], ["[lab]"]
    for name in names:
        address = host_address(subnet, host_index(name))
        config += [f"Host {name} {address}", f"    HostName {address}"]
        line = f"{name} ansible_host={address} ccrollout_state_dir={paths.state_dir(name)}"
        if name in behind_jump:
            config.append(f"    ProxyJump {JUMP_HOST}")
            proxy = f"ssh -F {paths.ssh_config} -W %h:%p {JUMP_HOST}"
            line += f" ansible_ssh_common_args='-o ProxyCommand=\"{proxy}\"'"
        inventory.append(line)
    config += ["Host *", "    User root", f"    Port {SSH_PORT}",
               f"    IdentityFile {paths.key}", "    IdentitiesOnly yes",
               f"    UserKnownHostsFile {paths.known_hosts}",
               "    StrictHostKeyChecking yes", "    BatchMode yes", "    ConnectTimeout 5"]
    inventory += ["", "[lab:vars]", "ansible_user=root", f"ansible_port={SSH_PORT}",
                  f"ansible_ssh_private_key_file={paths.key}",
                  "ansible_python_interpreter=/usr/bin/python3",
                  f"ccrollout_known_hosts={paths.known_hosts}",
                  # The lab's hosts are namespaces of this machine: a boot unit written from
                  # one would be the machine's own, so none is (restore by hand: see README).
                  "ccrollout_boot_unit=false"]
    write_atomically(paths.ssh_config, "\n".join(config) + "\n", mode=0o644)
    write_atomically(paths.inventory, "\n".join(inventory) + "\n", mode=0o644)
