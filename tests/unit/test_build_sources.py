"""BPF sources as people write them: UAPI and libbpf headers, a vmlinux.h, the older
SEC(".struct_ops"), several controls in one object; and includes that reach outside what a
plan may use, refused before the compiler reads them. Compiles for real (clang), no root."""

import os
import re
import shutil
import stat
from pathlib import Path

import pytest

from ccrollout import bpfobject, build, includes
from ccrollout.errors import BuildFailed
from ccrollout.host import agent, libbpf

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "bpf" / "fixtures"
SECRET = "CCR_SECRET_9f1c"  # the content of a file outside the tree: it must never show up


@pytest.fixture(autouse=True)
def build_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CCROLLOUT_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def tree(tmp_path):
    """A plan's tree (bpf/ with the shared header) and, beside it, a file no plan may read."""
    root = tmp_path / "tree"
    shutil.copytree(REPO / "bpf", root / "bpf")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.h").write_text(f"{SECRET} {SECRET};\n")
    return root


@pytest.fixture
def compiler_calls(tmp_path, monkeypatch):
    """Every argument list clang is run with, through a wrapper that logs them."""
    log = tmp_path / "clang-calls"
    wrapper = tmp_path / "clang-wrapper"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {log}\nexec {shutil.which("clang")} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(build, "CLANG", str(wrapper))
    return lambda: log.read_text().splitlines() if log.exists() else []


def test_a_source_that_includes_linux_bpf_h_builds():
    built = build.build("ccr_uapi", FIXTURES / "ccr_uapi.bpf.c")
    assert built.name == "ccr_uapi" and built.flags & 0x1 and built.map_name == "ccr_uapi"
    assert set(built.callbacks) == {"ssthresh", "cong_avoid", "undo_cwnd"}


def test_the_system_include_directories_hold_asm_types():
    directories = includes.system_include_dirs(build.CLANG)
    assert any(os.path.exists(os.path.join(d, "asm", "types.h")) for d in directories), directories
    assert any(os.path.exists(os.path.join(d, "bpf", "bpf_helpers.h")) for d in directories), directories


@pytest.mark.parametrize("directive", [
    '#include "/etc/hostname"',
    '#include "../../outside/secret.h"',
    '#include <../../../../../../../../etc/hostname>',
    '#include_next "/etc/hostname"',
    '# /* spaced */ include \\\n "/etc/hostname"',
    '/* first */ # /* a comment\n over lines */ include /* x */ "/etc/hostname"',
    '%:include "../../outside/secret.h"',
    '#include <bpf/*.h>\n#include "/etc/hostname"\n// */',  # no comment inside a header name
])
def test_an_include_outside_the_tree_is_refused_before_any_compiler_reads_it(tree, compiler_calls, directive):
    source = tree / "bpf" / "sneaky.bpf.c"
    source.write_text(f'#include "ccr_tcp.h"\n{directive}\nchar _license[] SEC("license") = "GPL";\n')
    with pytest.raises(BuildFailed) as refused:
        build.build("sneaky", source, root=tree)
    message = str(refused.value)
    assert "outside the directories a control may include from" in message and "nothing was compiled" in message
    assert f"{source}:" in message and SECRET not in message
    assert not [call for call in compiler_calls() if str(source) in call], "clang must not see the source"


def test_a_header_of_the_tree_is_checked_too_and_a_symlink_does_not_help(tree, compiler_calls):
    (tree / "bpf" / "innocent.h").symlink_to(tree.parent / "outside" / "secret.h")
    (tree / "bpf" / "helper.h").write_text('#include "innocent.h"\n')
    source = tree / "bpf" / "sneaky.bpf.c"
    source.write_text('#include "helper.h"\n')
    with pytest.raises(BuildFailed, match=r"helper\.h:1: #include \"innocent\.h\" reaches .*secret\.h, outside"):
        build.build("sneaky", source, root=tree)
    assert not [call for call in compiler_calls() if str(source) in call]


@pytest.mark.parametrize("text, refusal", [
    ('#define WHERE "/etc/hostname"\n#include WHERE\n', "names no file in quotes or angle brackets"),
    ('asm(".incbin \\"/etc/hostname\\"");\n', "uses the assembler's .incbin"),
])
def test_what_cannot_be_checked_before_compiling_is_refused(tree, text, refusal):
    source = tree / "bpf" / "sneaky.bpf.c"
    source.write_text(text)
    with pytest.raises(BuildFailed, match=refusal):
        build.build("sneaky", source, root=tree)


def test_a_compile_error_shows_the_sources_own_diagnostics(tree):
    source = tree / "bpf" / "typo.bpf.c"
    source.write_text('#include "ccr_tcp.h"\nint broken(void) { return undeclared_thing; }\n')
    with pytest.raises(BuildFailed) as failed:
        build.build("typo", source, root=tree)
    assert f"{source}:2:" in str(failed.value) and "undeclared_thing" in str(failed.value)


def test_clang_output_about_other_files_is_never_shown(tree):
    roots = includes.Roots.of(build.CLANG, tree, ())
    mine = tree / "bpf" / "x.bpf.c"
    output = "\n".join([
        f"{mine}:3:1: error: unknown type name 'mine'",
        "mine here;",
        "^",
        f"/etc/shadow:1:1: error: unknown type name '{SECRET}'",
        f"{SECRET}:$6$salt$hash:19000::::::",
        "^",
        f"In file included from {mine}:1:",
        "2 errors generated.",
    ])
    shown = includes.shown_diagnostics(output, roots)
    assert SECRET not in shown and "/etc/shadow" not in shown
    assert f"{mine}:3:1: error" in shown and "mine here;" in shown and "2 errors generated." in shown


def test_the_older_struct_ops_section_is_accepted():
    built = build.build("ccr_legacy", FIXTURES / "ccr_legacy.bpf.c")
    (ops,) = bpfobject.inspect(str(built.path))
    assert ops.section == ".struct_ops" and ops.name == "ccr_legacy" and built.map_name == "ccr_legacy"


def test_the_loaders_link_flag_is_the_kernels():
    """BPF_F_LINK is 1 << 13 in linux/bpf.h (0x400 would be BPF_F_MMAPABLE, which a struct_ops
    map refuses with EINVAL)."""
    header = Path("/usr/include/linux/bpf.h").read_text()
    assert re.search(r"BPF_F_LINK\s*=\s*\(1U << 13\)", header) and libbpf.BPF_F_LINK == 1 << 13


def test_one_object_with_two_controls_builds_for_either_name():
    beta50 = build.build("ccr_pair_beta50", FIXTURES / "ccr_pair.bpf.c")
    beta75 = build.build("ccr_pair_beta75", FIXTURES / "ccr_pair.bpf.c")
    assert beta50.digest == beta75.digest and beta75.cached  # one object, travelling unchanged
    assert (beta50.map_name, beta75.map_name) == ("pair_beta50", "pair_beta75")
    found = {ops.name: ops for ops in bpfobject.inspect(str(beta50.path))}
    assert found["ccr_pair_beta75"].callbacks["ssthresh"] == "pair_beta75_ssthresh"
    with pytest.raises(BuildFailed, match="none of its 2 tcp_congestion_ops registers as 'ccr_pair'.*"
                                          "'ccr_pair_beta50' \\(pair_beta50\\), 'ccr_pair_beta75'"):
        build.build("ccr_pair", FIXTURES / "ccr_pair.bpf.c")


def test_a_source_built_against_a_hosts_vmlinux_h(tmp_path):
    """The host's `vmlinux` answer (bpftool on its BTF) is a header the fixture builds against."""
    (result,) = agent.handle({"id": 1, "state_dir": str(tmp_path / "state"),
                              "actions": [{"op": "vmlinux"}]})["results"]
    assert result["ok"], result
    assert result["text"].startswith("#ifndef __VMLINUX_H__") and "struct tcp_congestion_ops {" in result["text"]
    root = tmp_path / "tree"
    (root / "include").mkdir(parents=True)
    (root / "include" / "vmlinux.h").write_text(result["text"])
    shutil.copytree(FIXTURES, root / "bpf")
    built = build.build("ccr_vmlinux", root / "bpf" / "ccr_vmlinux.bpf.c", (f"-I{root / 'include'}",), root)
    assert built.name == "ccr_vmlinux" and built.flags & 0x1
