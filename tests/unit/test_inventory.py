"""Ansible-compatible inventories and host patterns.

Expected values marked "ansible-core 2.19" were produced by running
``ansible-inventory --list`` / ``ansible PATTERN --list-hosts`` on the same files.
"""

import textwrap
from pathlib import Path

import pytest

from ccrollout.errors import EXIT_INVALID_INPUT, InvalidInput
from ccrollout.inventory import expand_host_range, load_inventory, split_host_pattern


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def names(hosts):
    return [h.name for h in hosts]


# -- INI -------------------------------------------------------------------------------------

INI = """
    bastion x=1                 # ungrouped: before any section
    [web]
    w1 a="hello world" b=2 c='[1, 2]' d=True e=yes
    w2:2222
    web[03:04].example.com

    [db]
    db-[a:c]

    [prod:children]
    web
    db

    [prod:vars]
    tier=prod
    x = 5  # an inline comment is ignored by literal_eval
    quoted="42"
    ; a comment

    [all:vars]
    x=0
"""


@pytest.fixture
def ini(tmp_path):
    return load_inventory([str(write(tmp_path / "hosts.ini", INI))])


def test_ini_hosts_groups_and_order(ini):
    assert list(ini.hosts) == ["bastion", "w1", "w2", "web03.example.com", "web04.example.com",
                               "db-a", "db-b", "db-c"]
    assert ini.group_names() == ["all", "db", "prod", "ungrouped", "web"]
    assert ini.groups["prod"].children == ("web", "db")
    assert ini.hosts["w1"].groups == ("all", "web", "prod")
    assert ini.hosts["w1"].group_names == ["prod", "web"]
    assert ini.hosts["bastion"].groups == ("all", "ungrouped")


def test_ini_values_are_parsed_as_ansible_does(ini):
    w1 = ini.hosts["w1"].vars
    # shlex removes the quotes of inline host vars, then literal_eval reads what is left
    assert w1["a"] == "hello world"
    assert w1["b"] == 2 and w1["c"] == [1, 2] and w1["d"] is True and w1["e"] == "yes"
    # in [group:vars] the quotes stay, so "42" is a string
    assert w1["quoted"] == "42"
    assert ini.hosts["w2"].vars["ansible_port"] == 2222


def test_ini_variable_precedence(ini):
    assert ini.hosts["bastion"].vars["x"] == 1  # host var over [all:vars]
    assert ini.hosts["w1"].vars["x"] == 5       # [prod:vars] over [all:vars]
    assert ini.hosts["db-a"].vars["tier"] == "prod"


def test_ini_to_ansible_list(ini):  # ansible-core 2.19
    listed = ini.to_ansible_list()
    assert listed["all"] == {"children": ["ungrouped", "prod"]}
    assert listed["ungrouped"] == {"hosts": ["bastion"]}
    assert listed["prod"] == {"children": ["web", "db"]}
    assert listed["web"] == {"hosts": ["w1", "w2", "web03.example.com", "web04.example.com"]}
    assert list(listed) == ["all", "ungrouped", "prod", "web", "db", "_meta"]
    assert listed["_meta"]["hostvars"]["w2"] == {"x": 5, "tier": "prod", "quoted": "42", "ansible_port": 2222}


def test_inventory_order_of_groups_levels_and_children_precedence(tmp_path):  # ansible-core 2.19
    inventory = load_inventory([str(write(tmp_path / "h.ini", """
        [all:vars]
        v=all
        a=all
        [parent:children]
        child
        zeta
        [parent:vars]
        v=parent
        p=parent
        [child]
        h1
        h2 v=host
        [child:vars]
        v=child
        [zeta]
        h1
        [zeta:vars]
        v=zeta
        z=1
        [alpha]
        h1
        [alpha:vars]
        v=alpha
    """))])
    # same depth: by name, so zeta (depth 2) beats child (depth 2) and alpha (depth 1)
    assert inventory.hosts["h1"].vars == {"v": "zeta", "a": "all", "p": "parent", "z": 1}
    assert inventory.hosts["h2"].vars == {"v": "host", "a": "all", "p": "parent"}
    assert inventory.groups["child"].depth == 2


@pytest.mark.parametrize("pattern, expected", [
    ("web[01:03]", ["web01", "web02", "web03"]),
    ("web[1:3]", ["web1", "web2", "web3"]),
    ("web[8:10].x", ["web8.x", "web9.x", "web10.x"]),
    ("db-[a:c]", ["db-a", "db-b", "db-c"]),
    ("n[0:10:5]", ["n0", "n5", "n10"]),
    ("r[1:2]-[a:b]", ["r1-a", "r1-b", "r2-a", "r2-b"]),
    ("[:2]x", ["0x", "1x", "2x"]),
    ("plain", ["plain"]),
])
def test_host_ranges(pattern, expected):
    assert expand_host_range(pattern) == expected


@pytest.mark.parametrize("pattern", ["h[01:3]", "h[3:1]", "h[1:]", "h[a:3]", "h[1:2", "h[1:2:0]", "h[1]",
                                     "h[0:9999999]"])
def test_bad_host_ranges(pattern):
    with pytest.raises(ValueError, match="range|names more"):
        expand_host_range(pattern)


def test_ini_errors_have_file_and_line_and_are_all_reported(tmp_path):
    path = write(tmp_path / "bad.ini", """
        [web]
        w1
        w2 novalue
        [web:weird]
        x
        [prod:children]
        wbe
        [ghost:vars]
        a=1
        [db]
        db[3:1]
        h:
    """)
    with pytest.raises(InvalidInput) as caught:
        load_inventory([str(path)])
    assert caught.value.exit_code == EXIT_INVALID_INPUT
    lines = str(caught.value).splitlines()
    assert lines[0] == f"{path}:3: expected key=value after host 'w2', got 'novalue'"
    assert lines[1].startswith(f"{path}:4: section [web:weird] has unknown type 'weird'")
    assert lines[2].startswith(f"{path}:7: section [prod:children] names group 'wbe'")
    assert lines[2].endswith("did you mean 'web'?")
    assert lines[3].startswith(f"{path}:8: section [ghost:vars] is for a group that is not defined")
    assert lines[4].startswith(f"{path}:11: a host range must have begin <= end")
    assert lines[5].startswith(f"{path}:12: invalid host 'h:'")
    assert len(lines) == 6


def test_group_loops_are_rejected(tmp_path):
    path = write(tmp_path / "loop.ini", """
        [a:children]
        b
        [b:children]
        a
    """)
    with pytest.raises(InvalidInput, match=r"loop\.ini:4: making 'a' a child of 'b' creates a loop"):
        load_inventory([str(path)])


def test_yaml_looking_file_with_ini_extension_is_explained(tmp_path):
    path = write(tmp_path / "hosts.ini", "---\nall:\n")
    with pytest.raises(InvalidInput, match="YAML"):
        load_inventory([str(path)])


# -- YAML, group_vars, host_vars, several sources -----------------------------------------------


@pytest.fixture
def layered(tmp_path):
    """The ansible-core 2.19 comparison inventory: YAML + INI, group_vars/host_vars."""
    write(tmp_path / "a.yml", """
        all:
          vars:
            v: all_inv
            only_all: 1
          hosts:
            top1:
          children:
            region:
              vars: {v: region_inv, r: 1}
              children:
                zone_b:
                  vars: {v: zone_b_inv}
                  hosts:
                    b[1:2]:
                      hv: b
                zone_a:
                  vars: {v: zone_a_inv, ansible_group_priority: 5}
                  hosts:
                    a1: {ansible_host: 10.0.0.1}
                    b1:
                  children:
                    leaf:
                      hosts:
                        l1:
            other:
              hosts:
                a1:
                o1:
    """)
    write(tmp_path / "b.ini", """
        [extra]
        x1
        a1 hv=from_b

        [zone_b:vars]
        v=zone_b_from_b
    """)
    write(tmp_path / "group_vars/leaf/10.yml", "v: gv_leaf_dir\n")
    write(tmp_path / "group_vars/leaf/20", "v2: gv_leaf_dir2\n")
    write(tmp_path / "group_vars/leaf/notes.txt", "ignored: true\n")
    write(tmp_path / "group_vars/region.yml", "v: gv_region\nregion_file: 1\n")
    write(tmp_path / "group_vars/all", "v: gv_all\n")
    write(tmp_path / "host_vars/b1.yaml", "hv: hostfile\n")
    return load_inventory([str(tmp_path / "a.yml"), str(tmp_path / "b.ini")])


def test_layered_to_ansible_list(layered):  # ansible-core 2.19
    assert layered.to_ansible_list() == {
        "_meta": {"hostvars": {
            "a1": {"ansible_host": "10.0.0.1", "hv": "from_b", "only_all": 1, "r": 1, "region_file": 1,
                   "v": "gv_region"},
            "b1": {"hv": "hostfile", "only_all": 1, "r": 1, "region_file": 1, "v": "gv_region"},
            "b2": {"hv": "b", "only_all": 1, "r": 1, "region_file": 1, "v": "gv_region"},
            "l1": {"only_all": 1, "r": 1, "region_file": 1, "v": "gv_leaf_dir", "v2": "gv_leaf_dir2"},
            "o1": {"only_all": 1, "v": "gv_all"},
            "top1": {"only_all": 1, "v": "gv_all"},
            "x1": {"only_all": 1, "v": "gv_all"},
        }},
        "all": {"children": ["ungrouped", "region", "other", "extra"]},
        "extra": {"hosts": ["x1", "a1"]},
        "leaf": {"hosts": ["l1"]},
        "other": {"hosts": ["a1", "o1"]},
        "region": {"children": ["zone_b", "zone_a"]},
        "ungrouped": {"hosts": ["top1"]},
        "zone_a": {"children": ["leaf"], "hosts": ["a1", "b1"]},
        "zone_b": {"hosts": ["b1", "b2"]},
    }


def test_layered_export(layered):  # ansible-core 2.19, --export
    exported = layered.to_ansible_list(export=True)
    assert exported["zone_b"]["vars"] == {"v": "zone_b_from_b"}
    assert exported["leaf"]["vars"] == {"v": "gv_leaf_dir", "v2": "gv_leaf_dir2"}
    assert exported["all"]["vars"] == {"v": "gv_all", "only_all": 1}
    assert exported["_meta"]["hostvars"]["b1"] == {"hv": "hostfile"}
    assert exported["_meta"]["hostvars"]["a1"] == {"ansible_host": "10.0.0.1", "hv": "from_b"}


@pytest.mark.parametrize("pattern, expected", [  # ansible-core 2.19 --list-hosts
    ("all", "top1 a1 o1 x1 b1 b2 l1"),
    ("region", "b1 b2 a1 l1"),
    ("region[0]", "b1"),
    ("region[-1]", "l1"),
    ("region[1:]", "b2 a1 l1"),
    ("region[0:1]", "b1 b2"),
    ("region[10]", ""),
    (r"~b\d", "b1 b2"),
    ("zone*", "b1 b2 a1 l1"),
    ("zone*:!leaf", "b1 b2 a1"),
    ("other:&zone_a", "a1"),
    ("!other", "top1 x1 b1 b2 l1"),
    ("*", "top1 a1 o1 x1 b1 b2 l1"),
    ("a1:b1:a1", "a1 b1"),
    ("ungrouped", "top1"),
    ("other,extra", "a1 o1 x1"),
    ("extra:other", "x1 a1 o1"),
    ("nothing", ""),
    ("region:!zone_b:&other", "a1"),
    ("l?", "l1"),
])
def test_patterns(layered, pattern, expected):
    assert " ".join(names(layered.select(pattern))) == expected


def test_invalid_regex_pattern(layered):
    with pytest.raises(InvalidInput, match="invalid host pattern"):
        layered.select("~(")


def test_split_host_pattern():
    assert split_host_pattern("a:b:&c:!d") == ["a", "b", "&c", "!d"]
    assert split_host_pattern("web[0:2]:db") == ["web[0:2]", "db"]
    assert split_host_pattern("a, b ,c") == ["a", "b", "c"]
    assert split_host_pattern("fe80::1") == ["fe80::1"]


def test_yaml_inventory_errors(tmp_path):
    path = write(tmp_path / "inv.yml", """
        all:
          hosts:
            h1:
          childern:
            web:
              hosts: [w1]
        db: [1, 2]
    """)
    with pytest.raises(InvalidInput) as caught:
        load_inventory([str(path)])
    message = str(caught.value)
    assert f"{path}:4:3: all.childern: unknown key 'childern'" in message
    assert "did you mean 'children'?" in message
    assert f"{path}:7:5: db: group 'db' must be a mapping" in message


def test_yaml_syntax_error_has_position(tmp_path):
    path = write(tmp_path / "inv.yaml", "all:\n  hosts: [a\n")
    with pytest.raises(InvalidInput, match=rf"{path}:3:1: YAML syntax error"):
        load_inventory([str(path)])


def test_yaml_host_vars_and_string_shorthands(tmp_path):
    path = write(tmp_path / "inv.yaml", """
        all:
          children:
            lab:
              hosts: lab1
            web:
              hosts:
                web[1:2]:2200:
                  role: front
    """)
    inventory = load_inventory([str(path)])
    assert names(inventory.select("lab")) == ["lab1"]
    assert inventory.hosts["web2"].vars == {"ansible_port": 2200, "role": "front"}


def test_directory_source_and_host_list(tmp_path):
    write(tmp_path / "inv/10-web.ini", "[web]\nw1\n")
    write(tmp_path / "inv/20-db.yml", "db:\n  hosts:\n    d1:\n")
    write(tmp_path / "inv/README.md", "not an inventory [\n")
    write(tmp_path / "inv/group_vars/web.yml", "from_dir: 1\n")
    write(tmp_path / "inv/host_vars/d1", "own: 2\n")
    inventory = load_inventory([str(tmp_path / "inv"), "extra1,extra2:2222,"])
    assert list(inventory.hosts) == ["w1", "d1", "extra1", "extra2"]
    assert inventory.hosts["w1"].vars == {"from_dir": 1}
    assert inventory.hosts["d1"].vars == {"own": 2}
    assert inventory.hosts["extra2"].vars == {"ansible_port": 2222}
    assert names(inventory.select("ungrouped")) == ["extra1", "extra2"]


def test_group_vars_override_inventory_group_vars_but_not_host_vars(tmp_path):
    write(tmp_path / "hosts", "[lab]\nl1\nl2 role=host\n[lab:vars]\nrole=inventory\nkeep=1\n")
    write(tmp_path / "group_vars/lab.yaml", "role: group_vars\n")
    write(tmp_path / "group_vars/all.yml", "role: all_file\nfrom_all: yes\n")
    inventory = load_inventory([str(tmp_path / "hosts")])
    assert inventory.hosts["l1"].vars == {"role": "group_vars", "keep": 1, "from_all": True}
    assert inventory.hosts["l2"].vars["role"] == "host"


def test_bad_vars_files_are_reported(tmp_path):
    write(tmp_path / "hosts", "[lab]\nl1\n")
    write(tmp_path / "group_vars/lab.yml", "- not\n- a mapping\n")
    write(tmp_path / "host_vars/l1.yml", "a: [\n")
    with pytest.raises(InvalidInput) as caught:
        load_inventory([str(tmp_path / "hosts")])
    message = str(caught.value)
    assert "group_vars/lab.yml:1:1: a variables file must be a mapping" in message
    assert "host_vars/l1.yml:2:1: YAML syntax error" in message


def test_missing_source(tmp_path):
    with pytest.raises(InvalidInput, match="inventory source not found"):
        load_inventory([str(tmp_path / "nope.ini")])


def test_suggestions_and_unmatched_terms(layered):
    assert layered.suggest("regoin")[0] == "region"
    assert layered.did_you_mean("zone_c") in ("; did you mean group 'zone_b'?", "; did you mean group 'zone_a'?")
    assert layered.did_you_mean("top2") == "; did you mean host 'top1'?"
    assert layered.did_you_mean("zzzzzzzz") == ""
    assert layered.unmatched_terms("region:!regoin:&zone*:a1") == ["!regoin"]


def test_example_inventory_in_the_repository():
    repo = Path(__file__).resolve().parents[2]
    inventory = load_inventory([str(repo / "inventory" / "example.ini")])
    assert names(inventory.select("lab")) == ["lab1", "lab2", "lab3"]
    assert names(inventory.select("prod:!db:!canary")) == [  # ansible-core 2.19
        "web02.example.com", "web03.example.com", "web04.example.com", "web05.example.com"]
    assert inventory.hosts["web05.example.com"].vars["ansible_port"] == 2222
    assert inventory.hosts["lab2"].vars["ccrollout_boot_unit"] == "false"  # [group:vars] are strings


# -- property tests: whatever the text, an Inventory or InvalidInput, never a traceback -----------

import tempfile  # noqa: E402

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

YAML_INVENTORY = """
all:
  vars: {x: 0}
  hosts:
    bastion: {ansible_host: 10.0.0.1}
  children:
    web:
      hosts:
        web[01:04]:
        w9: {a: "b c", n: 3, f: true}
      vars: {role: web}
    prod:
      children:
        web:
        db:
          hosts:
            db-[a:c]:
"""

_INVENTORY_CHARS = st.sampled_from(list("[]:=#;,*!&~-_. \n\t\"'{}()0123456789abcwebdbvars" "é\x00\\") +
                                   ["children", "vars", "hosts", "all", ":children", ":vars", "\n[",
                                    "ansible_port=", "[01:99]", "[a:z]", "  ", "- ", "{{", "}}", "!!python/",
                                    "&anchor ", "*anchor", "<<: ", "plugin: x", "---", "..."])
_TEXT = st.lists(_INVENTORY_CHARS, max_size=60).map("".join)
_PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                              suppress_health_check=[HealthCheck.too_slow])


@st.composite
def _mutated(draw, base: str) -> str:
    """BASE with a few random edits: delete, insert, duplicate or swap lines, change characters."""
    text = base
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["delete", "insert", "dup_line", "swap_lines", "replace"]))
        position = draw(st.integers(0, max(len(text), 1) - 1))
        if kind == "delete":
            text = text[:position] + text[position + draw(st.integers(1, 8)):]
        elif kind == "insert":
            text = text[:position] + draw(_TEXT) + text[position:]
        elif kind == "replace":
            text = text[:position] + draw(_INVENTORY_CHARS) + text[position + 1:]
        else:
            lines = text.split("\n")
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            if kind == "dup_line":
                lines.insert(j, lines[i])
            else:
                lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
    return text


def _load_cleanly(files: dict[str, str], sources: list[str]):
    """Write FILES in a fresh directory and load SOURCES: an Inventory, or InvalidInput with a message."""
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        for relative, text in files.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8", errors="surrogateescape")
        try:
            inventory = load_inventory([str(root / source) for source in sources])
        except InvalidInput as exc:
            assert str(exc).strip()
            return None
        # What a loaded inventory offers must work too.
        inventory.to_ansible_list()
        inventory.to_ansible_list(export=True)
        for pattern in ("all", "ungrouped", "web:&prod", "all:!web", "web[0:2]", "~w.*"):
            inventory.select(pattern)
        return inventory


@_PROPERTY_SETTINGS
@given(text=_TEXT, name=st.sampled_from(["hosts.ini", "hosts.yml", "hosts"]))
def test_random_inventory_text_loads_or_is_invalid(text, name):
    _load_cleanly({name: text}, [name])


@_PROPERTY_SETTINGS
@given(text=_mutated(textwrap.dedent(INI)))
def test_mutated_ini_inventory_loads_or_is_invalid(text):
    _load_cleanly({"hosts.ini": text}, ["hosts.ini"])


@_PROPERTY_SETTINGS
@given(text=_mutated(YAML_INVENTORY), extensionless=st.booleans())
def test_mutated_yaml_inventory_loads_or_is_invalid(text, extensionless):
    name = "hosts" if extensionless else "hosts.yml"
    _load_cleanly({name: text}, [name])


@_PROPERTY_SETTINGS
@given(group_vars=_TEXT, host_vars=_mutated("ansible_user: deploy\nports: [1, 2]\nnested: {a: 1}\n"))
def test_random_vars_files_load_or_are_invalid(group_vars, host_vars):
    _load_cleanly({"inv/hosts.yml": YAML_INVENTORY, "inv/group_vars/web/a.yml": group_vars,
                   "inv/host_vars/w9.yml": host_vars}, ["inv"])


@_PROPERTY_SETTINGS
@given(pattern=_TEXT)
def test_random_patterns_select_or_are_invalid(pattern):
    with tempfile.TemporaryDirectory() as directory:
        inventory = load_inventory([str(write(Path(directory) / "hosts.yml", YAML_INVENTORY))])
        try:
            inventory.select(pattern)
            inventory.unmatched_terms(pattern)
        except InvalidInput:
            pass


# -- sources only Ansible can read -------------------------------------------------------------

SCRIPT = """#!/usr/bin/env python3
import json
print(json.dumps({"web": {"hosts": ["w1", "w2"], "vars": {"ansible_user": "deploy"}},
                  "_meta": {"hostvars": {"w1": {"ansible_host": "10.0.0.1"}}}}))
"""


def test_an_inventory_script_is_read_through_ansible_inventory(tmp_path):
    script = write(tmp_path / "inventory.py", SCRIPT)
    script.chmod(0o755)
    write(tmp_path / "group_vars" / "web.yml", "tier: front\n")
    inventory = load_inventory([str(script)])
    assert names(inventory.select("web")) == ["w1", "w2"]
    assert inventory.hosts["w1"].vars == {"ansible_user": "deploy", "tier": "front", "ansible_host": "10.0.0.1"}
    assert str(inventory.hosts["w1"].origins["ansible_host"]) == str(script)
    assert str(inventory.hosts["w1"].origins["tier"]) == f"{tmp_path}/group_vars/web.yml:1:7"


def test_a_plugin_configuration_is_read_through_ansible_inventory(tmp_path):
    config = write(tmp_path / "generated.yml", """
        plugin: ansible.builtin.generator
        hosts:
          name: "{{ app }}-{{ env }}"
          parents:
            - name: "{{ env }}"
        layers:
          app: [web, db]
          env: [prod]
    """)
    inventory = load_inventory([str(config)])
    assert names(inventory.select("prod")) == ["web-prod", "db-prod"]


def test_without_ansible_the_message_says_what_is_missing(tmp_path, monkeypatch):
    from ccrollout.inventory import ansible
    monkeypatch.setattr(ansible, "ansible_inventory", lambda: None)
    script = write(tmp_path / "inventory.py", SCRIPT)
    script.chmod(0o755)
    with pytest.raises(InvalidInput) as raised:
        load_inventory([str(script)])
    assert str(raised.value) == (f"{script}: an executable inventory script: only Ansible can read it, and "
                                 "ansible-inventory is not installed (pip install ansible-core); or write the "
                                 "inventory as INI or YAML")


def test_a_source_ansible_cannot_read_either_is_an_error(tmp_path):
    config = write(tmp_path / "broken.yml", "plugin: no.such.plugin\n")
    with pytest.raises(InvalidInput, match=r"broken.yml: an inventory plugin configuration \(plugin: "
                                           r"no.such.plugin\): ansible-inventory failed: \[ERROR\]"):
        load_inventory([str(config)])
