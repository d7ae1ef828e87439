"""The preflight: what keeps a host from taking a BPF control, read from its facts."""

import pytest

from ccrollout.host.facts import problems
from ccrollout.host.libbpf import Libbpf, LibbpfError

CAPABLE = {"btf": True, "struct_ops": True, "struct_ops_link": True}


def test_a_capable_host_has_no_problem():
    assert problems(CAPABLE, "1.4", root=True) == []


@pytest.mark.parametrize("features, libbpf, root, expected", [
    ({**CAPABLE, "btf": False}, "1.4", True, "no BTF"),
    ({**CAPABLE, "struct_ops": False}, "1.4", True, "struct_ops, Linux 5.6+"),
    ({**CAPABLE, "struct_ops_link": False}, "1.4", True, "no struct_ops links (Linux 6.4+)"),
    (CAPABLE, None, True, "libbpf is not installed"),
    (CAPABLE, "1.1", True, "libbpf 1.1 is too old"),
    (CAPABLE, "1.4", False, "does not run as root"),
])
def test_each_missing_piece_is_named(features, libbpf, root, expected):
    (found,) = problems(features, libbpf, root)
    assert expected in found


def test_a_kernel_without_btf_is_not_also_blamed_for_what_btf_would_tell():
    found = problems({"btf": False, "struct_ops": False, "struct_ops_link": False}, "1.4", True)
    assert len(found) == 1


def test_a_library_without_libbpfs_calls_is_reported_not_crashed_on():
    """A libbpf before 1.0 lacks calls the binding declares (libc stands in for one here)."""
    with pytest.raises(LibbpfError, match="libc.so.6 has no libbpf_major_version: libbpf 1.2 or newer"):
        Libbpf("libc.so.6")
