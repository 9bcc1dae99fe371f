"""Start, wait for, inspect and stop the stack: written once, for any declared service.

`up` is one loop over every service it brings up: each round starts what has its requirements
ready, asks each starting service's own health probe, and moves each service one step through
waiting -> preparing -> starting -> ready. No thread per service and no shared flags: the loop
alone decides. A long one-shot `prepare` (a database migration) runs in a worker the loop
polls, so the other services keep starting meanwhile.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from pathlib import Path

import httpx

from services.engine.causes import death_cause, full_line
from services.engine.errors import StackError
from services.engine.housekeeping import prune
from services.engine.layout import StateLayout, owner_only_umask, tail
from services.engine.ports import PortTaken, find_taken_ports
from services.engine.processes import poll_until
from services.engine.rearm import Retry, read_record
from services.engine.records import Declared, Health, Service, SwitchedOff
from services.engine.status import (
    ProgramState,
    ProgramStatus,
    ServiceState,
    ServiceStatus,
    StackStatus,
)
from services.engine.supervisor import (
    ENGINE_LISTENERS,
    STACK_MARKER,
    Supervisor,
    render_config,
    stop_marked_processes,
)

POLL_SECONDS = 0.5
PROBE_TIMEOUT = 3.0


class ServiceFailed(StackError):
    def __init__(self, service: str, reason: str, log: Path, tail: list[str]) -> None:
        self.service, self.reason, self.log, self.tail = service, reason, log, tail
        super().__init__(f"{service} did not become healthy: {reason} (log: {log})")


class Step(StrEnum):
    """What `up` reports of one service; the last three are where it settles."""

    PREPARING = "preparing"  # its one-shot `prepare` runs
    STARTING = "starting"  # its programs run; its probe does not say healthy yet
    READY = "ready"  # its probe says healthy
    ALREADY_RUNNING = "already running"  # running before this `up`: left alone
    WAITING = "waiting"  # running as it should, for something outside the stack (Health.waiting)

    @property
    def settled(self) -> bool:
        """`up` is done with it: nothing more will be reported."""
        return self in (Step.READY, Step.ALREADY_RUNNING, Step.WAITING)


class Progress(str):
    """One event of `up`: a typed `step` with its `detail`, and (as the string itself) the
    words a person reads, e.g. "ready in 4.2 s" or "waiting: no model under the alias yet".
    Callers decide on `step`, never on the words."""

    step: Step
    detail: str

    def __new__(cls, step: Step, detail: str = "") -> Progress:
        if step is Step.READY:
            words = f"ready in {detail}" if detail else "ready"
        elif step is Step.WAITING:
            words = f"waiting: {detail}"
        elif step is Step.STARTING:
            words = detail or step.value
        else:
            words = step.value
        event = super().__new__(cls, words)
        event.step, event.detail = step, detail
        return event


Report = Callable[[str, Progress], None]  # (service name, what is happening to it)


class Phase(Enum):
    """Where one service is in `up`."""

    WAITING = "waiting"  # for the services it requires
    PREPARING = "preparing"  # its one-shot `prepare` runs in a worker
    STARTING = "starting"  # its programs run; its probe does not say healthy yet
    READY = "ready"


@dataclass
class Bringing:
    """One service on its way up, as the loop sees it."""

    service: Service
    running: bool  # all its programs were running before this `up`
    phase: Phase = Phase.WAITING
    started: float = 0.0
    preparing: Future[None] | None = None
    health: Health = field(default_factory=lambda: Health(False, "not asked yet"))


@dataclass
class Stack:
    """The stack of one state directory: the declared services and how to run them.

    `environment` is what every program gets (the engine adds the marker that finds orphans);
    `home` is the repository, which `clean` never deletes.
    """

    layout: StateLayout
    declared: Sequence[Declared]
    environment: dict[str, str]
    host: str
    ready_timeout: float
    home: Path
    supervisor: Supervisor = field(init=False)

    def __post_init__(self) -> None:
        self.supervisor = Supervisor(self.layout)

    # -- what the stack is --------------------------------------------------------------------

    @property
    def services(self) -> list[Service]:
        return [service for service in self.declared if isinstance(service, Service)]

    def select(self, names: Iterable[str], with_requirements: bool = True) -> list[Service]:
        """The named services (all when none are named), plus what they need, in start order."""
        declared = {service.name: service for service in self.services}
        switched_off = {s.name: s for s in self.declared if isinstance(s, SwitchedOff)}
        wanted = list(names) or list(declared)
        for name in wanted:
            if name in switched_off:
                raise StackError(switched_off[name].reason)
            if name not in declared:
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

    @property
    def program_environment(self) -> dict[str, str]:
        return {**self.environment, STACK_MARKER: str(self.layout.root)}

    # -- up -----------------------------------------------------------------------------------

    def up(self, names: Iterable[str] = (), report: Report | None = None) -> dict[str, str]:
        """Start the services and wait until each is healthy; returns how each one ended up.

        Services already running are left alone. Taken ports are refused before anything
        starts. If one service fails, the ones this call started are stopped again.
        Everything it and the programs create is owner-only; a state dir open to other users
        is refused.
        """
        services = self.select(names)
        states = self.supervisor.states()
        bringing = [Bringing(s, running=_all_running(s, states)) for s in services]
        to_start = [b.service for b in bringing if not b.running]
        # Refusals first: a refused `up` creates nothing, not even the state dir.
        for service in to_start:
            if service.refuse is not None and (reason := service.refuse()):
                raise StackError(reason)
        with owner_only_umask():
            self.layout.make_private()
            return self._up(bringing, to_start, report or (lambda _name, _event: None))

    def _up(
        self, bringing: list[Bringing], to_start: list[Service], report: Report
    ) -> dict[str, str]:
        self.supervisor.clean_stale()
        taken = find_taken_ports(self.host, [s.ports for s in to_start])
        if taken:
            raise PortTaken(taken)
        every_program = [p for s in self.services for p in s.programs]
        prunable = [rule for s in self.services for rule in s.prunable]
        prune(prunable)  # what aged while the stack was down; the listener does it hourly
        environment = self.program_environment
        config = render_config(self.layout, every_program, environment, prunable)
        self.supervisor.apply(config, environment)

        try:
            with (
                ThreadPoolExecutor(thread_name_prefix="prepare") as workers,
                httpx.Client(timeout=PROBE_TIMEOUT) as client,
            ):
                bringup = Bringup(self, bringing, workers, client, report)
                # Each service has its own deadline, from when it may start (checked in the
                # round); this one only backs them up: a chain, each waiting for the last.
                backstop = (self.ready_timeout + 2 * POLL_SECONDS) * max(1, len(bringing))
                if not poll_until(bringup.round, backstop, POLL_SECONDS):
                    raise StackError(f"up did not finish within {backstop:.0f} s")
        except StackError:
            self.supervisor.stop(p.name for s in to_start for p in s.programs)
            raise
        return bringup.outcome

    def failure(self, service: Service, reason: str, program: str | None = None) -> ServiceFailed:
        """The failure, with the log of the program that failed (else the service's first)."""
        log = self.layout.log_file(program or service.programs[0].name)
        return ServiceFailed(service.name, reason, log, tail(log, 20))

    # -- down, restart ------------------------------------------------------------------------

    def down(self, names: Iterable[str] = ()) -> list[str]:
        """Stop the named services (all when none are named); returns what was running."""
        names = list(names)
        states = self.supervisor.states()
        running = [
            name
            for name, status in states.items()
            if status.state.active and name not in ENGINE_LISTENERS
        ]
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
            choices = ", ".join(service.name for service in self.services)
            raise StackError(f"restart needs a service name: one or more of {choices}")
        self.down(names)
        return self.up(names, report)

    # -- status -------------------------------------------------------------------------------

    def status(self) -> StackStatus:
        """What runs, and whether each service's own health answer says healthy."""
        states = self.supervisor.states()
        retries = read_record(self.layout.retries) if states else {}
        # A full state dir is named beside any service that is not healthy: its programs may
        # be crashing and restarting, or their health answer stale, rather than FATAL.
        full = full_line(self.layout.root) if states else ""
        entries = []
        with httpx.Client(timeout=PROBE_TIMEOUT) as client:
            for service in self.services:
                programs = [
                    self._explained(states.get(p.name), p.name, retries) for p in service.programs
                ]
                state = ServiceState.of(program.state for program in programs)
                running = state is ServiceState.RUNNING
                health = (
                    service.probe(client)
                    if running
                    else Health(False, _why_not_running(programs, state))
                )
                detail = health.detail
                if full and not health.healthy and state is not ServiceState.STOPPED:
                    detail = detail if full in detail else f"{detail}; {full}"
                entries.append(
                    ServiceStatus(
                        name=service.name,
                        title=service.title,
                        state=state,
                        healthy=health.healthy,
                        detail=detail,
                        url=service.url,
                        pid=programs[0].pid,
                        ports=service.ports,
                        log=str(self.layout.log_file(service.programs[0].name)),
                        programs=programs,
                        details={**service.details, **health.facts},
                        waiting=health.waiting,
                    )
                )
        return StackStatus(entries, str(self.layout.root))

    def _explained(
        self, status: ProgramStatus | None, name: str, retries: dict[str, Retry]
    ) -> ProgramStatus:
        """The program's status with why it is not running and whether it is being re-armed
        (only for one that failed: a healthy status reads no log)."""
        if status is None:
            return ProgramStatus(name, ProgramState.STOPPED)
        retry = retries.get(name)
        if retry is not None and retry.running_since is not None:
            retry = None  # its last attempt runs: re-armed, no longer retrying
        if status.state in (ProgramState.RUNNING, ProgramState.STOPPED, ProgramState.STOPPING):
            return status
        cause = death_cause(self.layout.log_file(name), self.layout.root, status.description)
        return dataclasses.replace(
            status,
            cause=cause,
            attempt=retry.attempt if retry is not None else 0,
            next_try=retry.next_try if retry is not None else None,
        )

    def log_files(self, names: Iterable[str] = ()) -> list[Path]:
        return [
            self.layout.log_file(program.name)
            for service in self.select(names, with_requirements=False)
            for program in service.programs
        ]

    def clean(self) -> Path:
        """Stop everything and delete the state directory (data, databases, logs)."""
        root = self.layout.root
        home = self.home.resolve()
        if root in {Path("/"), Path.home().resolve(), home} or root in home.parents:
            raise StackError(f"refusing to delete {root}: H2OPS_STATE_DIR must be its own folder")
        self.down()
        sockets = self.layout.recorded_socket_dir()
        if sockets is not None:  # the private socket dir a long state path needed
            shutil.rmtree(sockets, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
        return root


@dataclass
class Bringup:
    """One `up`: the services on their way, and the loop's single step (`round`)."""

    stack: Stack
    items: list[Bringing]
    workers: ThreadPoolExecutor
    client: httpx.Client
    report: Report
    outcome: dict[str, str] = field(default_factory=dict)

    def round(self) -> bool:
        """Move every service as far as it can go now; True when all are ready."""
        states = self.stack.supervisor.states()
        for item in self.items:
            try:
                self.advance(item, states)
            except StackError:
                raise
            except Exception as error:  # a prepare step or a client call: report, do not hang
                raise self.stack.failure(item.service, f"{type(error).__name__}: {error}") from None
        return all(item.phase is Phase.READY for item in self.items)

    def advance(self, item: Bringing, states: dict[str, ProgramStatus]) -> None:
        service, report = item.service, self.report
        if item.phase is Phase.WAITING:
            ready = {other.service.name for other in self.items if other.phase is Phase.READY}
            if not all(required in ready for required in service.requires):
                return
            if item.running:
                item.phase = Phase.READY
                self.outcome[service.name] = Step.ALREADY_RUNNING.value
                report(service.name, Progress(Step.ALREADY_RUNNING))
                return
            item.started = time.monotonic()
            if service.prepare is not None:
                report(service.name, Progress(Step.PREPARING))
                item.preparing = self.workers.submit(service.prepare)
            item.phase = Phase.PREPARING
        if item.phase is Phase.PREPARING:
            if item.preparing is not None:
                if not item.preparing.done():
                    self.check_deadline(item, "still preparing")
                    return
                item.preparing.result()  # raises what prepare raised
            for program in service.programs:
                self.stack.supervisor.start(program.name)
            report(service.name, Progress(Step.STARTING))
            item.phase = Phase.STARTING
            return  # asked on the next round, once the programs had a moment
        if item.phase is Phase.STARTING:
            for program in service.programs:
                status = states.get(program.name)
                if status is not None and status.state.gave_up:
                    raise self.stack.failure(
                        service,
                        f"{program.name} is {status.state.value} ({status.description})",
                        program.name,
                    )
            item.health = service.probe(self.client)
            if item.health.refused:
                raise self.stack.failure(service, item.health.detail)
            if item.health.waiting:  # running as it should; what it waits for is the user's
                item.phase = Phase.READY
                waiting = Progress(Step.WAITING, item.health.detail)
                self.outcome[service.name] = str(waiting)
                report(service.name, waiting)
                return
            if item.health.healthy:
                if service.after_ready is not None:
                    service.after_ready()
                item.phase = Phase.READY
                self.outcome[service.name] = "started"
                report(
                    service.name, Progress(Step.READY, f"{time.monotonic() - item.started:.1f} s")
                )
                return
            self.check_deadline(item, item.health.detail)
            report(service.name, Progress(Step.STARTING, item.health.detail))

    def check_deadline(self, item: Bringing, detail: str) -> None:
        """Each service gets `ready_timeout` seconds from its start, its `prepare` included."""
        timeout = self.stack.ready_timeout
        if time.monotonic() >= item.started + timeout:
            raise self.stack.failure(
                item.service,
                f"not healthy after {timeout:.0f} s (H2OPS_READY_TIMEOUT): {detail}",
            )


def _why_not_running(programs: list[ProgramStatus], state: ServiceState) -> str:
    """One line: which program failed and why, and whether it is being retried."""
    failing = [p for p in programs if p.state is ProgramState.FATAL or p.retrying]
    failing += [p for p in programs if p.cause and p not in failing]
    if not failing:
        return state.value
    program = failing[0]
    words = [f"{program.name} {program.state.value.lower()}"]
    words += [part for part in (program.cause, program.retry_line(time.time())) if part]
    return "; ".join(words)


def _all_running(service: Service, states: dict[str, ProgramStatus]) -> bool:
    return all(
        (status := states.get(program.name)) is not None and status.state is ProgramState.RUNNING
        for program in service.programs
    )
