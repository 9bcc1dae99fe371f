"""Typed states: what supervisord says of a program, what that makes of a service, and the status
`status --json` prints and the test harness reads back (one parser, here).

supervisord's state names are read in one place (`ProgramState.named`); everything else asks
the enum a question (`active`, `settled`, `gave_up`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any


class ProgramState(Enum):
    """A program's state, as supervisord names it (its `statename`)."""

    STOPPED = "STOPPED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    BACKOFF = "BACKOFF"
    STOPPING = "STOPPING"
    EXITED = "EXITED"
    FATAL = "FATAL"
    UNKNOWN = "UNKNOWN"

    @classmethod
    def named(cls, name: str) -> ProgramState:
        try:
            return cls(name)
        except ValueError:
            return cls.UNKNOWN

    @property
    def active(self) -> bool:
        """Running, or being started or retried: there is something to stop."""
        return self in (ProgramState.RUNNING, ProgramState.STARTING, ProgramState.BACKOFF)

    @property
    def settled(self) -> bool:
        """Not on its way anywhere: a stop has nothing left to wait for."""
        return self not in (ProgramState.STOPPING, ProgramState.RUNNING, ProgramState.STARTING)

    @property
    def gave_up(self) -> bool:
        """Failed for good or stopped: it will not become ready without a new start."""
        return self in (ProgramState.FATAL, ProgramState.STOPPED)


@dataclass(frozen=True)
class ProgramStatus:
    """One supervised program: its state and pid (None when it has no process)."""

    name: str
    state: ProgramState
    pid: int | None = None
    # supervisord's words for the state (why it stopped, its uptime): for messages, not JSON.
    description: str = field(default="", compare=False)
    # Why it is not running, in one line (see causes.py); empty while it runs.
    cause: str = field(default="", compare=False)
    # The engine's re-arming (rearm.py) while supervisord has given up on it: which attempt,
    # and when the next one is due (seconds since the epoch; None while the attempt runs).
    attempt: int = field(default=0, compare=False)
    next_try: float | None = field(default=None, compare=False)

    @property
    def retrying(self) -> bool:
        return self.attempt > 0

    def retry_line(self, now: float) -> str:
        """e.g. "retrying: attempt 2 in 14 s"; empty when it is not being retried."""
        if not self.retrying:
            return ""
        if self.next_try is None:
            return f"retrying: attempt {self.attempt} is starting"
        return f"retrying: attempt {self.attempt} in {max(0.0, self.next_try - now):.0f} s"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state.value,
            "pid": self.pid,
            "cause": self.cause,
            "retrying": {"attempt": self.attempt, "next_try": self.next_try}
            if self.retrying
            else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProgramStatus:
        retrying = data.get("retrying") or {}
        return cls(
            data["name"],
            ProgramState.named(data["state"]),
            data["pid"],
            cause=data.get("cause", ""),
            attempt=retrying.get("attempt", 0),
            next_try=retrying.get("next_try"),
        )


class ServiceState(StrEnum):
    """A service as its programs make it: all running, one failed, all stopped, or on the way."""

    RUNNING = "running"
    STARTING = "starting"
    FAILED = "failed"
    STOPPED = "stopped"

    @classmethod
    def of(cls, programs: Iterable[ProgramState]) -> ServiceState:
        states = list(programs)
        if all(state is ProgramState.RUNNING for state in states):
            return cls.RUNNING
        if ProgramState.FATAL in states:
            return cls.FAILED
        if all(state in (ProgramState.STOPPED, ProgramState.EXITED) for state in states):
            return cls.STOPPED
        return cls.STARTING


@dataclass(frozen=True)
class ServiceStatus:
    """One service in `status`: how it runs, whether its own health answer says healthy, where
    it is. `details` are the service's own extra facts (e.g. which backend runs it)."""

    name: str
    title: str
    state: ServiceState
    healthy: bool
    detail: str
    url: str
    pid: int | None
    ports: dict[str, int]
    log: str
    programs: list[ProgramStatus]
    details: dict[str, str] = field(default_factory=dict)
    # Running as it should, but waiting for something outside the stack (see Health.waiting).
    waiting: bool = False

    @property
    def fine(self) -> bool:
        """Healthy, or waiting as it should: nothing for the user to fix in the stack."""
        return self.healthy or self.waiting

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "state": self.state.value,
            "healthy": self.healthy,
            "waiting": self.waiting,
            "detail": self.detail,
            "url": self.url,
            "pid": self.pid,
            "ports": self.ports,
            "log": self.log,
            "programs": [program.to_json() for program in self.programs],
            **self.details,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ServiceStatus:
        own = {name for name in cls.__dataclass_fields__ if name != "details"}
        return cls(
            name=data["name"],
            title=data["title"],
            state=ServiceState(data["state"]),
            healthy=data["healthy"],
            detail=data["detail"],
            url=data["url"],
            pid=data["pid"],
            ports=data["ports"],
            log=data["log"],
            programs=[ProgramStatus.from_json(program) for program in data["programs"]],
            details={key: value for key, value in data.items() if key not in own},
            waiting=data.get("waiting", False),
        )

    def program(self, name: str) -> ProgramStatus:
        return next(program for program in self.programs if program.name == name)

    @property
    def retrying(self) -> bool:
        """One of its programs is being re-armed after supervisord gave up on it."""
        return any(program.retrying for program in self.programs)


@dataclass(frozen=True)
class StackStatus:
    """Every declared service, in start order, and where the stack keeps its state."""

    services: list[ServiceStatus]
    state_dir: str

    def service(self, name: str) -> ServiceStatus:
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(f"no service {name!r} in the status: {[s.name for s in self.services]}")

    @property
    def started(self) -> list[ServiceStatus]:
        return [service for service in self.services if service.state is not ServiceState.STOPPED]
