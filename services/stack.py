"""Start, wait for, inspect and stop the stack: written once, for any declared service."""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from services.catalog import declare_services
from services.client_env import client_environment
from services.layout import StateLayout, owner_only_umask
from services.ports import PortTaken, find_taken_ports
from services.s3_store import resolve_backend
from services.service import Health, Service
from services.settings import REPO_ROOT, StackSettings, ensure_credentials
from services.supervisor import STACK_MARKER, Supervisor, render_config, stop_marked_processes

POLL_SECONDS = 0.5
PROBE_TIMEOUT = 3.0
RUNNING_STATES = {"RUNNING", "STARTING", "BACKOFF"}


class StackError(RuntimeError):
    """`up`, `down` or `restart` could not do what was asked; the message says what to do."""


class ServiceFailed(StackError):
    def __init__(self, service: str, reason: str, log: Path, tail: list[str]) -> None:
        self.service, self.reason, self.log, self.tail = service, reason, log, tail
        super().__init__(f"{service} did not become healthy: {reason} (log: {log})")


Report = Callable[[str, str], None]  # (service name, what is happening)


@dataclass
class Stack:
    """The stack of one repository and state directory."""

    settings: StackSettings
    root: Path = REPO_ROOT
    layout: StateLayout = field(init=False)
    supervisor: Supervisor = field(init=False)

    def __post_init__(self) -> None:
        self.layout = StateLayout.of(self.settings)
        self.supervisor = Supervisor(self.layout)

    # -- what the stack is --------------------------------------------------------------------

    def services(self) -> list[Service]:
        return declare_services(self.settings, self.root)

    def select(self, names: Iterable[str], with_requirements: bool = True) -> list[Service]:
        """The named services (all when none are named), plus what they need, in start order."""
        declared = {service.name: service for service in self.services()}
        wanted = list(names) or list(declared)
        for name in wanted:
            if name not in declared:
                if name == "s3":
                    raise StackError("s3 is off (H2OPS_S3_BACKEND=none): set it to auto to use it")
                raise StackError(f"unknown service {name!r}: choose from {', '.join(declared)}")
        chosen: set[str] = set()

        def add(name: str) -> None:
            if name in chosen:
                return
            chosen.add(name)
            if with_requirements:
                for required in declared[name].requires:
                    add(required)

        for name in wanted:
            add(name)
        return [service for service in declared.values() if service.name in chosen]

    def environment(self) -> dict[str, str]:
        """What every program gets: the client environment (telemetry off included) and the marker
        that finds orphans."""
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        return {
            **client_environment(self.settings),
            STACK_MARKER: str(self.layout.root),
            "PATH": path,
            "PYTHONUNBUFFERED": "1",
        }

    # -- up -----------------------------------------------------------------------------------

    def up(self, names: Iterable[str] = (), report: Report | None = None) -> dict[str, str]:
        """Start the services and wait until each is healthy; returns how each one ended up.

        Services already running are left alone. Taken ports are refused before anything
        starts. If one service fails, the ones this call started are stopped again.
        Everything it and the programs create is owner-only; a state dir open to other users
        is refused.
        """
        with owner_only_umask():
            self.layout.make_private()
            return self._up(names, report)

    def _up(self, names: Iterable[str], report: Report | None) -> dict[str, str]:
        report = report or (lambda _name, _event: None)
        self.settings = ensure_credentials(self.settings)
        self.supervisor.clean_stale()
        services = self.select(names)
        states = self.supervisor.states()
        to_start = [s for s in services if not _all_running(s, states)]
        taken = find_taken_ports(self.settings.host, [s.ports for s in to_start])
        if taken:
            raise PortTaken(taken)
        every_program = [p for s in self.services() for p in s.programs]
        environment = self.environment()
        self.supervisor.apply(render_config(self.layout, every_program, environment), environment)

        outcome: dict[str, str] = {}
        ready = {service.name: threading.Event() for service in services}
        failed = threading.Event()
        errors: list[StackError] = []

        def bring_up(service: Service) -> None:
            try:
                for required in service.requires:
                    while not ready[required].wait(POLL_SECONDS):
                        if failed.is_set():
                            return
                if service not in to_start:
                    outcome[service.name] = "already running"
                    report(service.name, "already running")
                else:
                    self._start_one(service, report, failed)
                    outcome[service.name] = "started"
                ready[service.name].set()
            except StackError as error:
                errors.append(error)
                failed.set()
            except Exception as error:  # a prepare step or a client call: report, do not hang
                errors.append(self._failure(service, f"{type(error).__name__}: {error}"))
                failed.set()

        threads = [threading.Thread(target=bring_up, args=(s,), daemon=True) for s in services]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            self.supervisor.stop(p.name for s in to_start for p in s.programs)
            raise errors[0]
        return outcome

    def _start_one(self, service: Service, report: Report, failed: threading.Event) -> None:
        started = time.monotonic()
        if service.prepare is not None:
            report(service.name, "preparing")
            service.prepare()
        for program in service.programs:
            self.supervisor.start(program.name)
        report(service.name, "starting")
        deadline = started + self.settings.ready_timeout
        health = Health(False, "not asked yet")
        with httpx.Client(timeout=PROBE_TIMEOUT) as client:
            while time.monotonic() < deadline and not failed.is_set():
                for program in service.programs:
                    state = self.supervisor.state(program.name)
                    if state.state in ("FATAL", "STOPPED"):
                        raise self._failure(
                            service,
                            f"{program.name} is {state.state} ({state.description})",
                            program.name,
                        )
                health = service.probe(client)
                if health.healthy:
                    break
                report(service.name, health.detail or "starting")
                time.sleep(POLL_SECONDS)
        if failed.is_set() and not health.healthy:
            raise StackError(f"{service.name}: stopped waiting because another service failed")
        if not health.healthy:
            raise self._failure(
                service,
                f"not healthy after {self.settings.ready_timeout:.0f} s "
                f"(H2OPS_READY_TIMEOUT): {health.detail}",
            )
        if service.after_ready is not None:
            service.after_ready()
        report(service.name, f"ready in {time.monotonic() - started:.1f} s")

    def _failure(self, service: Service, reason: str, program: str | None = None) -> ServiceFailed:
        """The failure, with the log of the program that failed (else the service's first)."""
        log = self.layout.log_file(program or service.programs[0].name)
        return ServiceFailed(service.name, reason, log, tail(log, 20))

    # -- down, restart ------------------------------------------------------------------------

    def down(self, names: Iterable[str] = ()) -> list[str]:
        """Stop the named services (all when none are named); returns what was running."""
        names = list(names)
        states = self.supervisor.states()
        running = [n for n, s in states.items() if s.state in RUNNING_STATES]
        if not names:
            self.supervisor.shutdown()
            stop_marked_processes(self.layout.root)  # anything that escaped its group
            return running
        programs = [
            program.name
            for service in self.select(names, with_requirements=False)
            for program in service.programs
        ]
        if states:
            self.supervisor.stop(programs)
        return [name for name in programs if name in running]

    def restart(self, names: Iterable[str], report: Report | None = None) -> dict[str, str]:
        names = list(names)
        if not names:
            raise StackError("restart needs a service name: nox -s restart -- mlflow")
        self.down(names)
        return self.up(names, report)

    # -- status -------------------------------------------------------------------------------

    def status(self) -> dict:
        """What runs, whether it is healthy, where it is, and the credentials to get in."""
        states = self.supervisor.states()
        entries = []
        backend, reason = resolve_backend(self.settings)
        with httpx.Client(timeout=PROBE_TIMEOUT) as client:
            for service in self.services():
                programs = [states.get(p.name) for p in service.programs]
                state = _service_state([p.state if p else "STOPPED" for p in programs])
                health = service.probe(client) if state == "running" else Health(False, state)
                entry = {
                    "name": service.name,
                    "title": service.title,
                    "state": state,
                    "healthy": health.healthy,
                    "detail": health.detail,
                    "url": service.url,
                    "pid": programs[0].pid if programs[0] else None,
                    "ports": service.ports,
                    "log": str(self.layout.log_file(service.programs[0].name)),
                    "programs": [
                        {
                            "name": p.name,
                            "state": s.state if s else "STOPPED",
                            "pid": s.pid if s else None,
                        }
                        for p, s in zip(service.programs, programs, strict=True)
                    ],
                    **service.details,
                }
                entries.append(entry)
        return {
            "services": entries,
            "s3_backend": backend,
            "s3_backend_reason": reason,
            "state_dir": str(self.layout.root),
            "credentials": self.settings.credentials,
            "environment": client_environment(self.settings),
        }

    def log_files(self, names: Iterable[str] = ()) -> list[Path]:
        return [
            self.layout.log_file(program.name)
            for service in self.select(names, with_requirements=False)
            for program in service.programs
        ]

    def clean(self) -> Path:
        """Stop everything and delete the state directory (data, databases, logs)."""
        root = self.layout.root
        forbidden = {Path("/"), Path.home().resolve(), self.root.resolve()}
        if root in forbidden or root in self.root.resolve().parents:
            raise StackError(f"refusing to delete {root}: H2OPS_STATE_DIR must be its own folder")
        self.down()
        sockets = self.layout.recorded_socket_dir()
        if sockets is not None:  # the private socket dir a long state path needed
            shutil.rmtree(sockets, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
        return root


def _all_running(service: Service, states: dict) -> bool:
    return all(
        (state := states.get(program.name)) is not None and state.state == "RUNNING"
        for program in service.programs
    )


def _service_state(program_states: list[str]) -> str:
    if all(s == "RUNNING" for s in program_states):
        return "running"
    if any(s == "FATAL" for s in program_states):
        return "failed"
    if all(s in ("STOPPED", "EXITED") for s in program_states):
        return "stopped"
    return "starting"


def tail(path: Path, lines: int) -> list[str]:
    """The last lines of a log file (reads only its end, logs can be large)."""
    if not path.exists():
        return []
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 64 * 1024))
        text = handle.read().decode(errors="replace")
    return text.splitlines()[-lines:]
