"""The end of a command as Ansible's PLAY RECAP prints it: a line per host with its counts,
columns as wide as the names, then the totals; and the time each phase took per host."""

from ..status import HostStatus

COUNTS = ("ok", "changed", "unreachable", "failed", "rolled_back")

# Which count a host's final status adds to. A host that was changed and then rolled back
# counts as both, as it went through both.
_COUNTED = {
    HostStatus.OK: ("ok",), HostStatus.CHANGED: ("changed",), HostStatus.UNREACHABLE: ("unreachable",),
    HostStatus.FAILED: ("failed",), HostStatus.REFUSED: ("failed",),
    HostStatus.ROLLED_BACK: ("changed", "rolled_back"),
    HostStatus.WOULD_CHANGE: ("changed",), HostStatus.WOULD_REFUSE: ("failed",),
}


def host_counts(report) -> dict[str, int]:
    counted = _COUNTED.get(report.status, ())
    return {name: int(name in counted) for name in COUNTS}


def recap_lines(result) -> list[str]:
    """The recap of RESULT (a reports.Result)."""
    rows = {name: host_counts(report) for name, report in result.hosts.items()}
    totals = {name: sum(counts[name] for counts in rows.values()) for name in COUNTS}
    width = max([len(name) for name in rows] + [len("total")])
    table = [f"{name:<{width}} : " + "  ".join(f"{key}={counts[key]:<4}" for key in COUNTS).rstrip()
             for name, counts in [*rows.items(), ("total", totals)]]
    lines = [f"{result.status}: {result.message}", "", "RECAP " + "*" * (max(map(len, table)) - len("RECAP "))]
    lines.extend(table)
    lines.extend(_phase_lines(result, width))
    return lines


def _phase_lines(result, width: int) -> list[str]:
    phases = [phase for phase in ("gather", "change", "rollback")
              if any(phase in report.phases for report in result.hosts.values())]
    if not phases:
        return []
    lines = ["", f"{'seconds':<{width}}   " + " ".join(f"{phase:>9}" for phase in phases)]
    for name, report in result.hosts.items():
        times = " ".join(f"{report.phases[p]:>9.3f}" if p in report.phases else f"{'-':>9}" for p in phases)
        lines.append(f"{name:<{width}}   {times}")
    return lines
