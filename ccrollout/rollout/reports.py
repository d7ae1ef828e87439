"""What a command tells its caller: each host's report, and the result as a whole."""

from dataclasses import asdict, dataclass, field

from ..status import HostStatus


@dataclass
class HostReport:
    name: str
    status: HostStatus = HostStatus.UNTOUCHED
    stage: int | None = None
    error: str | None = None
    phases: dict[str, float] = field(default_factory=dict)  # phase -> seconds spent on this host

    def fail(self, status: HostStatus, error: str) -> None:
        self.status, self.error = status, error


@dataclass
class Result:
    rollout_id: str | None
    status: str
    exit_code: int
    message: str
    hosts: dict[str, HostReport]
    verdicts: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "rollout": self.rollout_id, "status": self.status, "exit_code": self.exit_code,
            "message": self.message, "verdicts": self.verdicts,
            "hosts": {name: asdict(report) for name, report in self.hosts.items()},
        }
