"""The marked YAML loader refuses documents whose aliases would expand without bound."""

import time

import pytest

from ccrollout.diagnostics import MAX_ALIAS_NODES, YAMLSyntaxError, load_marked_yaml


def laughs(levels: int, width: int = 10) -> str:
    lines = ["a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def merges(levels: int) -> str:
    lines = ["m0: &m0 {a: 1, b: 2}"]
    lines += [f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}], k{i}: 1}}" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("text, line", [(laughs(10), 5), (merges(40), 15)], ids=["laughs", "merge keys"])
def test_alias_bombs_are_refused_fast_at_the_node_that_explodes(text, line):
    started = time.monotonic()
    with pytest.raises(YAMLSyntaxError, match=f"would add more than {MAX_ALIAS_NODES} nodes") as caught:
        load_marked_yaml(text)
    assert caught.value.line == line
    assert time.monotonic() - started < 1


def test_shared_anchors_within_the_budget_still_load():
    document = load_marked_yaml(laughs(4))  # 10**4 nodes from 40 written
    assert len(document.data["a3"]) == 10
    shared = "base: &base {user: ops, port: 22}\n" + "".join(f"h{i}: {{<<: *base, n: {i}}}\n" for i in range(2000))
    assert load_marked_yaml(shared).data["h1999"] == {"user": "ops", "port": 22, "n": 1999}


def test_a_recursive_alias_is_refused():
    with pytest.raises(YAMLSyntaxError, match="recursive alias"):
        load_marked_yaml("a: &x [1, *x]\n")


def test_a_flood_of_problems_is_one_bounded_message(tmp_path):
    from ccrollout.errors import InvalidInput
    from ccrollout.inventory import load_inventory
    (tmp_path / "hosts").write_text("[all:vars]\n" + ("h" + "[0:0]" * 1500 + "\n") * 1000)
    with pytest.raises(InvalidInput) as caught:
        load_inventory([str(tmp_path / "hosts")])
    lines = str(caught.value).splitlines()
    assert len(lines) == 101 and lines[-1] == "... and 900 more problems"
    assert all(len(line) < 800 for line in lines) and "(7503 characters)" in lines[0]
