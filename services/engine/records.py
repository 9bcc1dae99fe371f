"""A service is data: its programs, ports, health probe and what it needs first.

Each folder under `services/` fills in these records for its service; the engine (`stack.py`,
`supervisor.py`) reads them and knows no service by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from services.engine.housekeeping import Prunable  # a service declares them


@dataclass(frozen=True)
class Health:
    """One answer of a health probe: healthy or not, and a short reason a person can act on.

    `waiting`: not healthy, but running as it should while it waits for something outside the
    stack (data a user has yet to create): `up` succeeds and `status` says what it waits for,
    rather than failing or restarting it. `refused`: what it was given cannot work and waiting
    will not change that, so `up` fails now with `detail` instead of at its timeout. `facts`
    are what the probe learned that `status` shows (e.g. which version runs).
    """

    healthy: bool
    detail: str = ""
    waiting: bool = False
    refused: bool = False
    facts: dict[str, str] = field(default_factory=dict)


HealthProbe = Callable[[httpx.Client], Health]


@dataclass(frozen=True)
class Program:
    """One long-running process the supervisor keeps alive."""

    name: str
    command: list[str]
    environment: dict[str, str] = field(default_factory=dict)
    directory: Path | None = None
    stop_seconds: int = 15
    # The signal that asks it to stop (sent to its process group), then SIGKILL after
    # stop_seconds: e.g. INT for a server whose TERM waits for its clients to leave.
    stop_signal: str = "TERM"

    # Programs `command` runs in turn (a launcher's target), so `doctor` checks them too.
    runs: tuple[str, ...] = ()

    @property
    def executables(self) -> tuple[str, ...]:
        """Every executable this program needs on disk: its command's first word, and `runs`."""
        return (self.command[0], *self.runs)


@dataclass(frozen=True)
class Service:
    """A user-facing service: one or more programs that are healthy together or not at all."""

    name: str
    title: str
    programs: list[Program]
    url: str
    probe: HealthProbe
    ports: dict[str, int] = field(default_factory=dict)  # setting variable -> port
    requires: tuple[str, ...] = ()
    # Why it must not start now (None: it may), asked by `up` before it checks the ports: e.g.
    # a state dir whose metadata is in the other database.
    refuse: Callable[[], str | None] | None = None
    prepare: Callable[[], None] | None = None  # one-shot work before the programs start
    after_ready: Callable[[], None] | None = None  # one-shot work once healthy
    details: dict[str, str] = field(default_factory=dict)  # shown by `status`, e.g. backend
    # What `open` shows a browser, with the login in it where the service accepts that
    # (None: no UI), and how to log in where it does not.
    ui: str | None = None
    login: str = ""
    # What to do when one of its programs' executables is missing (`doctor` shows it).
    install_hint: str = ""
    # What the service's own tools need when run outside the stack (a shell, an editor, a
    # kernel), beyond the plan's client environment: e.g. a CLI's configuration.
    client_environment: dict[str, str] = field(default_factory=dict)
    # What the stack deletes once old enough, so the state dir does not grow without bound.
    prunable: tuple[Prunable, ...] = ()

    @property
    def program_names(self) -> list[str]:
        return [program.name for program in self.programs]


@dataclass(frozen=True)
class SwitchedOff:
    """A service the settings turned off: naming it says why, rather than "unknown service"."""

    name: str
    reason: str


Declared = Service | SwitchedOff


def http_ok(url: str, **request: object) -> HealthProbe:
    """A probe that is healthy when GET url answers 2xx."""

    def probe(client: httpx.Client) -> Health:
        try:
            response = client.get(url, **request)  # type: ignore[arg-type]
        except httpx.HTTPError as error:
            return Health(False, f"{url}: {type(error).__name__}")
        if response.is_success:
            return Health(True)
        return Health(False, f"{url}: HTTP {response.status_code}")

    return probe
