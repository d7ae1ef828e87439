"""The hosts a command works on: how each is reached, its report, its gathered facts, and
calls to many of them at once, at most `forks` at a time.

Sessions open on first use and close when the caller says a host is no longer in play,
so a rollout never holds the whole fleet's connections at once.
"""

from .. import events, fleet
from ..errors import InvalidInput
from ..host import protocol
from ..status import HostStatus
from . import canary, controls, judge
from .reports import HostReport

SENT, RETRANSMITTED = "OutSegs", "RetransSegs"
BOOT_UNIT_VAR = "ccrollout_boot_unit"


def boot_unit_choice(name: str, host_vars: dict) -> str:
    """The host's ccrollout_boot_unit as the protocol says it: auto (the default), yes or no;
    Ansible's spellings of true and false are accepted."""
    value = host_vars.get(BOOT_UNIT_VAR, "auto")
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    if text in ("true", "yes", "on", "1"):
        return "yes"
    if text in ("false", "no", "off", "0"):
        return "no"
    raise InvalidInput(f"{name}: {BOOT_UNIT_VAR} must be auto, true or false, not {value!r}")


def control_reading(figures: dict) -> judge.Window:
    """One control's figures in a `counters` answer (protocol.CONTROL_FIGURES) as a reading;
    an older agent's answer has only segments."""
    return judge.Window(figures["sent"], figures["retransmitted"], bytes_acked=figures.get("bytes_acked", 0),
                        connections=figures.get("connections", 0),
                        srtt_ms_sum=figures.get("srtt_us_sum", 0) / 1000,
                        min_rtt_ms_sum=figures.get("min_rtt_us_sum", 0) / 1000,
                        rtt_readings=figures.get("rtt_readings", 0))


def namespace_reading(counters: dict, by_control: dict[str, judge.Window] | None) -> judge.Window:
    """The namespace's segments from its own counters; bytes and RTT (which only the watcher
    counts) summed over its controls, where it runs."""
    segments = judge.Window(counters.get(SENT, 0), counters.get(RETRANSMITTED, 0))
    if not by_control:
        return segments
    watched = sum(by_control.values(), judge.Window(0, 0))
    return judge.Window(segments.sent, segments.retransmitted, bytes_acked=watched.bytes_acked,
                        connections=watched.connections, srtt_ms_sum=watched.srtt_ms_sum,
                        min_rtt_ms_sum=watched.min_rtt_ms_sum, rtt_readings=watched.rtt_readings)


class HostsInPlay:
    """A context manager: leaving it closes every session still open."""

    def __init__(self, inventory_hosts, forks: int = 5, bus: events.Bus | None = None,
                 timeouts: fleet.Timeouts = fleet.Timeouts(), connect=None, progress=None):
        inventory_hosts = list(inventory_hosts)
        self.targets = fleet.check_targets(inventory_hosts)  # the CLI has shown the warnings
        self.group_of = {host.name: controls.group_key(host.groups) for host in inventory_hosts}
        self.boot_unit = {host.name: boot_unit_choice(host.name, host.vars) for host in inventory_hosts}
        self.forks, self.timeouts = forks, timeouts
        # What the command does is told as events (events.py); the CLI renders them.
        self.bus = bus if bus is not None else events.Bus()
        if progress is not None:  # a caller written before events: the notes' text only
            self.bus.subscribe(lambda event: progress(event.text) if isinstance(event, events.Note) else None)
        # How a session is made: over SSH or locally (fleet.connect), or in-process for tests and simulations.
        self._connect = connect or (lambda target: fleet.connect(target, timeouts))
        self.sessions: dict[str, object] = {}
        self.reports = {name: HostReport(name) for name in self.targets}
        self.facts: dict[str, dict] = {}

    def emit(self, event: events.Event) -> None:
        self.bus.emit(event)

    def progress(self, text: str, host: str | None = None) -> None:
        """A note: something worth knowing that is no step of its own."""
        self.bus.emit(events.Note(text=text, host=host))

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self.close_sessions(list(self.sessions))

    def close_sessions(self, names) -> None:
        for name in names:
            session = self.sessions.pop(name, None)
            if session is not None:
                session.close()

    def session(self, name: str):
        if name not in self.sessions:
            self.sessions[name] = self._connect(self.targets[name])
        return self.sessions[name]

    def call_all(self, hosts, actions: list[dict]) -> dict[str, fleet.Outcome]:
        """One message of ACTIONS to every one of HOSTS (bookkeeping outside the timed phases)."""
        return fleet.fan_out({n: self.session(n) for n in hosts}, lambda s: s.call(actions), self.forks)

    def phase(self, phase: str, hosts, work) -> dict[str, fleet.Outcome]:
        """WORK(session) on every one of HOSTS, its time counted to PHASE in their reports."""
        outcomes = fleet.fan_out({name: self.session(name) for name in hosts}, work, self.forks)
        for name, outcome in outcomes.items():
            self.reports[name].phases[phase] = round(self.reports[name].phases.get(phase, 0) + outcome.seconds, 3)
        return outcomes

    def sampler(self, hosts: list[str]) -> tuple[dict[str, canary.Sample], dict[str, str]]:
        """One reading of HOSTS' counters, for the canary."""
        samples, errors = {}, {}
        for host, outcome in self.call_all(hosts, [protocol.action("counters")]).items():
            if error := outcome.failure():
                errors[host] = error
                continue
            answer = outcome.answer
            by_control = answer.by_control and {control: control_reading(figures)
                                                for control, figures in answer.by_control.items()}
            samples[host] = canary.Sample(host, answer.time, namespace_reading(answer.counters, by_control),
                                          by_control)
        return samples, errors

    def gather(self, hosts: list[str], claim: dict | None = None) -> dict[str, str]:
        """Read HOSTS' facts (those not read yet) into self.facts, taking CLAIM (a lock
        action) in the same message; the errors of the hosts that did not answer or refused."""
        wanted = [name for name in hosts if name not in self.facts or claim]
        actions = ([claim] if claim else []) + [protocol.action("facts")]
        outcomes = self.phase("gather", wanted, lambda s: s.call(actions))
        failures = {name: error for name, o in outcomes.items() if (error := o.failure())}
        self.facts.update({name: o.answer.facts for name, o in outcomes.items() if name not in failures})
        return failures

    def refusals(self, hosts: list[str]) -> dict[str, str]:
        """Hosts that cannot take a BPF control, with the reasons their facts give."""
        return {name: f"{name}: " + "; ".join(self.facts[name]["problems"])
                for name in hosts if self.facts.get(name, {}).get("problems")}

    def report_failures(self, failures: dict[str, str], status: HostStatus = HostStatus.UNREACHABLE) -> None:
        """Report each host of FAILURES (host -> why) as STATUS."""
        for name, error in failures.items():
            self.reports[name].fail(status, error)
