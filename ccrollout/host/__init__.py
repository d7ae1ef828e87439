"""The code that runs ON a host.

Standard library only (plus libbpf through ctypes): it is started by the
host's own python3 and speaks JSON on stdin/stdout, the way Ansible runs its
modules. Facts (read-only probes) live in facts.py, changes in actions.py;
neither decides policy: the controller does.
"""
