"""Shell completion (argcomplete): what to offer for plans and host patterns.

argcomplete completes files by default, which suits inventories; plans get YAML files and
directories only, and host patterns the groups and hosts of the inventory already on the
command line (or in ccrollout.cfg). Only files read without running anything are read:
an executable inventory would run a script at every Tab.
"""

import glob
import os
import re

PLAN_SUFFIXES = (".yaml", ".yml")
# What separates the parts of an Ansible pattern (a:b, a:&b, a:!b, a,b): only the last part is completed.
_PATTERN_PART = re.compile(r"^(.*[:,][&!]?|[&!])?([^:,&!]*)$")


def plan_files(prefix: str, **_) -> list[str]:
    """Directories (to go into) and YAML files under PREFIX."""
    offered = []
    for path in sorted(glob.glob(glob.escape(os.path.expanduser(prefix)) + "*")):
        if os.path.isdir(path):
            offered.append(path + "/")
        elif path.endswith(PLAN_SUFFIXES):
            offered.append(path)
    return offered


def host_patterns(prefix: str, parsed_args=None, **_) -> list[str]:
    """Group and host names of the inventory named so far that complete PREFIX's last part."""
    sources = getattr(parsed_args, "inventory", None) or getattr(parsed_args, "configured_inventory", None) or []
    if not sources or any(os.path.isfile(source) and os.access(source, os.X_OK) for source in sources):
        return []
    from ..inventory import load_inventory
    inventory = load_inventory(list(sources))
    match = _PATTERN_PART.match(prefix)
    head, last = (match.group(1) or "", match.group(2)) if match else ("", prefix)
    names = sorted(set(inventory.group_names()) | set(inventory.hosts))
    return [head + name for name in names if name.startswith(last)]


def autocomplete(parser) -> None:
    """Answer the shell's completion request, if this run is one (argcomplete then exits)."""
    if "_ARGCOMPLETE" not in os.environ:  # not asked: spare every command argcomplete's import
        return
    import argcomplete
    argcomplete.autocomplete(parser)
