"""The code that runs ON a host.

Standard library only (plus libbpf through ctypes): it is started by the
host's own python3 and speaks JSON on stdin/stdout, the way Ansible runs its
modules. Facts (read-only probes) live in facts.py, changes in actions.py,
the host's own record of those changes in state.py; nothing here decides
policy: the controller does. Python 3.8 and newer (tests/unit/test_host_pythons.py).
"""
