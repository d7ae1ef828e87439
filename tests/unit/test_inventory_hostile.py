"""Inventories against hostile input (from a fuzzing session: each was a traceback or a hang):
what Ansible accepts is read as Ansible reads it, --list is strict JSON, and walks over
links, depths and chains of groups stay linear and free of recursion."""

from pathlib import Path

import pytest

from ccrollout.errors import InvalidInput
from ccrollout.inventory import load_inventory
from test_inventory import names, write


def listed(tmp_path, *sources: str) -> dict:
    """`ccrollout inventory --list`, parsed by a JSON reader that takes nothing but JSON."""
    import contextlib
    import io
    import json

    from ccrollout import cli

    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["inventory", "--list", *(item for source in sources for item in ("-i", source))])
    assert (code, err.getvalue()) == (0, "")
    return json.loads(out.getvalue(), parse_constant=refuse)


def test_ungrouped_may_have_children_as_in_ansible(tmp_path):
    inventory = load_inventory([str(write(tmp_path / "hosts", "[lab]\nh1\n[ungrouped:children]\nlab\n"))])
    assert inventory.groups["ungrouped"].children == ("lab",) and inventory.groups["ungrouped"].hosts == ()
    assert names(inventory.select("ungrouped")) == ["h1"]


def test_ini_values_with_unhashable_keys_become_strings(tmp_path):
    inventory = load_inventory([str(write(tmp_path / "hosts", 'h1 x="{(1,2): 3}" y="{frozenset(): 1}"\n'))])
    assert inventory.hosts["h1"].vars["x"] == {"(1, 2)": 3}


def test_list_is_strict_json_whatever_the_values(tmp_path):
    write(tmp_path / "hosts", 'h1 big=1e999 mixed="{1: 2, \\"a\\": 3}"\n')
    write(tmp_path / "group_vars" / "all.yml", """
        day: 2020-01-02
        stamp: 2001-12-14t21:59:43.10-05:00
        blob: !!binary aGVsbG8=
        names: !!set {b, a}
        keys: {1: a, b: c, 2020-01-01: x, null: y, 1.5: z}
        nothing: .nan
        """)
    hostvars = listed(tmp_path, str(tmp_path / "hosts"))["_meta"]["hostvars"]["h1"]
    assert hostvars == {"big": "Infinity", "mixed": {"1": 2, "a": 3}, "day": "2020-01-02",
                        "stamp": "2001-12-14T21:59:43.100000-05:00", "blob": "aGVsbG8=", "names": ["a", "b"],
                        "keys": {"1": "a", "b": "c", "2020-01-01": "x", "null": "y", "1.5": "z"}, "nothing": "NaN"}


def test_links_back_up_the_tree_are_walked_once(tmp_path):
    import time
    write(tmp_path / "inv" / "hosts", "h1\n")
    write(tmp_path / "inv" / "group_vars" / "all" / "v.yml", "x: 1\n")
    for directory in (tmp_path / "inv", tmp_path / "inv" / "group_vars" / "all"):
        for link in "abcdefghij":  # ten `-> .` links: 10**depth paths to a naive walk
            (directory / link).symlink_to(".")
    started = time.monotonic()
    inventory = load_inventory([str(tmp_path / "inv")])
    assert names(inventory.select("all")) == ["h1"] and inventory.hosts["h1"].vars == {"x": 1}
    assert time.monotonic() - started < 5


def test_a_directory_1100_levels_deep_is_read():
    import os
    import tempfile
    # Not under tmp_path: pytest removes old temporary trees with shutil.rmtree, which recurses.
    levels, cwd, tmp_path = 1100, Path.cwd(), Path(tempfile.mkdtemp(prefix="ccrollout-deep-"))
    (tmp_path / "inv").mkdir()
    try:
        os.chdir(tmp_path / "inv")
        for _ in range(levels):  # step by step, as the tree is made and removed: no recursion
            os.mkdir("d")
            os.chdir("d")
        Path("hosts").write_text("deep1\n")
        os.chdir(cwd)
        assert names(load_inventory([str(tmp_path / "inv")]).select("all")) == ["deep1"]
    finally:
        os.chdir(tmp_path / "inv")
        for _ in range(levels):
            os.chdir("d")
        os.unlink("hosts")
        for _ in range(levels):
            os.chdir("..")
            os.rmdir("d")
        os.chdir(cwd)
        os.rmdir(tmp_path / "inv")
        os.rmdir(tmp_path)


@pytest.mark.parametrize("downwards", [True, False], ids=["parents first", "children first"])
def test_a_chain_of_20000_children_is_read_in_linear_time(tmp_path, downwards):
    import time
    count = 20_000
    if downwards:
        text = "".join(f"[g{i}:children]\ng{i + 1}\n" for i in range(count)) + f"[g{count}]\nh1\n"
    else:
        text = "[g0]\nh1\n" + "".join(f"[g{i + 1}:children]\ng{i}\n" for i in range(count))
    started = time.monotonic()
    inventory = load_inventory([str(write(tmp_path / "hosts", text))])
    assert names(inventory.select("g0" if not downwards else f"g{count}")) == ["h1"]
    assert max(group.depth for group in inventory.groups.values()) == count + 1
    assert len(inventory.to_ansible_list()) == count + 3  # every group, ungrouped, _meta
    assert time.monotonic() - started < 10


def test_a_backtracking_host_pattern_runs_out_of_time(tmp_path, monkeypatch):
    import time

    from ccrollout.inventory import patterns
    monkeypatch.setattr(patterns, "MATCH_SECONDS", 0.2)
    inventory = load_inventory([str(write(tmp_path / "hosts", "a" * 60 + "b\nok\n"))])
    started = time.monotonic()
    with pytest.raises(InvalidInput, match=r"host pattern '~\(a\+\)\+\$' took more than 0.2s to match 2 names"):
        inventory.select("~(a+)+$")
    assert time.monotonic() - started < 2
    assert names(inventory.select("~o.")) == ["ok"]  # and the timer is gone
    time.sleep(0.3)


def test_a_name_of_1500_ranges_is_expanded_without_recursion(tmp_path):
    inventory = load_inventory([str(write(tmp_path / "hosts", "h" + "[0:0]" * 1500 + "\n"))])
    assert names(inventory.select("all")) == ["h" + "0" * 1500]
    with pytest.raises(InvalidInput, match=r"host pattern 'h\[0:1\].*names more than 100000 hosts"):
        load_inventory([str(write(tmp_path / "more", "h" + "[0:1]" * 20 + "\n"))])
    with pytest.raises(InvalidInput, match="a host range's numbers have at most 18 digits"):
        load_inventory([str(write(tmp_path / "long", "h[0:" + "9" * 5000 + "]\n"))])
