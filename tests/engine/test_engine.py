"""The engine on its own: it imports and names no service, and runs any service declared as a
record (here small stand-ins written in the test), with real supervisord and processes."""

from __future__ import annotations

import ast
import re
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.harness import free_ports
from services.catalog import declare_services
from services.engine.layout import StateLayout
from services.engine.processes import poll_until, stop_groups
from services.engine.records import Health, Program, Service, SwitchedOff, http_ok
from services.engine.stack import ServiceFailed, Stack, StackError
from services.engine.status import ServiceState, StackStatus
from services.engine.supervisor import marked_processes
from services.plan import StackPlan
from services.settings import REPO_ROOT, StackSettings

ENGINE = REPO_ROOT / "services" / "engine"
SERVICE_FOLDERS = sorted(
    path.name for path in (REPO_ROOT / "services").iterdir() if (path / "service.py").is_file()
)


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


def test_every_service_folder_is_in_the_catalog() -> None:
    plan = StackPlan.of(StackSettings(s3_backend="rclone"))
    assert sorted(service.name for service in declare_services(plan)) == SERVICE_FOLDERS


@pytest.mark.stack
def test_the_engine_imports_nothing_outside_itself() -> None:
    for path in sorted(ENGINE.glob("*.py")):
        ours = {m for m in imported_modules(path) if m == "services" or m.startswith("services.")}
        outside = {m for m in ours if not m.startswith("services.engine")}
        assert not outside, f"{path.name} imports {outside}"
    # Imported for real: nothing of the stack comes in with it, however indirectly.
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, services.engine.stack, services.engine.processes\n"
            "print(*sorted(m for m in sys.modules if m.startswith('services')))",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert loaded and all(m == "services" or m.startswith("services.engine") for m in loaded)


def test_the_runtime_package_ships_without_the_dev_tools() -> None:
    wheel = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    assert wheel["targets"]["wheel"]["packages"] == ["services"]
    for path in sorted((REPO_ROOT / "services").rglob("*.py")):
        dev = {m for m in imported_modules(path) if m.split(".")[0] == "devtools"}
        assert not dev, f"{path.relative_to(REPO_ROOT)} imports {dev}, which the wheel lacks"


def test_the_engine_names_no_service() -> None:
    names = re.compile(rf"\b({'|'.join(SERVICE_FOLDERS)})\b", re.IGNORECASE)
    for path in sorted(ENGINE.glob("*.py")):
        found = sorted({match.group(0) for match in names.finditer(path.read_text())})
        assert not found, f"{path.name} names {found}"


# -- the engine running stand-in services ----------------------------------------------------


def web_service(name: str, port: int, requires: tuple[str, ...] = ()) -> Service:
    """A service as a declaration would write it: a web server and its health URL."""
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    return Service(
        name=name,
        title=name.title(),
        programs=[Program(name, command)],
        url=url,
        probe=http_ok(url),
        ports={f"TOY_{name.upper()}_PORT": port},
        requires=requires,
    )


def silent_service(name: str, port: int) -> Service:
    """Runs, but never answers its probe."""
    silent = [sys.executable, "-c", "import time; time.sleep(300)"]
    return Service(name, name, [Program(name, silent)], "", http_ok(f"http://127.0.0.1:{port}"))


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    ports = free_ports(3)
    declared: list[Service | SwitchedOff] = [
        web_service("store", ports[0]),
        web_service("tracker", ports[1], requires=("store",)),
        silent_service("mute", ports[2]),
        SwitchedOff("queue", "queue is off (TOY_QUEUE=none): turn it on to use it"),
    ]
    engine = Stack(
        layout=StateLayout(tmp_path / "state"),
        declared=declared,
        environment={},
        host="127.0.0.1",
        ready_timeout=3,
        home=tmp_path,
    )
    try:
        yield engine
    finally:
        engine.down()
        assert marked_processes(engine.layout.root) == []


@pytest.mark.stack
def test_declared_records_start_in_order_report_and_stop(stack: Stack) -> None:
    events: list[tuple[str, str]] = []
    outcome = stack.up(["tracker"], lambda name, event: events.append((name, event)))

    assert outcome == {"store": "started", "tracker": "started"}
    ready = [name for name, event in events if event.startswith("ready")]
    assert ready == ["store", "tracker"]
    assert events.index(("tracker", "starting")) > events.index(
        next(event for event in events if event[0] == "store" and event[1].startswith("ready"))
    ), "tracker starts only once what it requires is ready"
    # supervisord calls a program running once it has lived a second (startsecs=1).
    running = [ServiceState.RUNNING, ServiceState.RUNNING, ServiceState.STOPPED]
    assert poll_until(lambda: [s.state for s in stack.status().services] == running, 5)
    status = stack.status()
    assert status.service("tracker").healthy
    assert (
        StackStatus([type(s).from_json(s.to_json()) for s in status.services], status.state_dir)
        == status
    ), "the JSON `status` prints reads back to the same status"

    assert stack.up(["tracker"]) == {"store": "already running", "tracker": "already running"}
    assert stack.down(["tracker"]) == ["tracker"]
    assert stack.status().service("store").state is ServiceState.RUNNING


@pytest.mark.stack
def test_a_service_that_never_answers_fails_bounded_and_is_stopped(stack: Stack) -> None:
    with pytest.raises(ServiceFailed, match=r"mute did not become healthy: not healthy after 3 s"):
        stack.up(["mute", "store"])
    status = stack.status()
    assert status.service("mute").state is ServiceState.STOPPED
    assert status.service("store").state is ServiceState.STOPPED, "what that up started stops"


def test_names_are_checked_before_anything_starts(stack: Stack) -> None:
    with pytest.raises(StackError, match=r"queue is off \(TOY_QUEUE=none\)"):
        stack.up(["queue"])
    with pytest.raises(StackError, match="unknown service 'db': choose from store, tracker, mute"):
        stack.up(["db"])
    assert not stack.layout.supervisor_pidfile.exists()


# -- the process helpers -----------------------------------------------------------------------


def test_poll_until_returns_the_first_answer_or_none_at_the_deadline() -> None:
    answers = iter([None, 0, "found"])
    assert poll_until(lambda: next(answers), 5, 0.01) == "found"
    assert poll_until(lambda: False, 0.2, 0.05) is None


@pytest.mark.stack
def test_stop_groups_asks_then_kills_what_does_not_listen() -> None:
    deaf = "signal.signal(signal.SIGTERM, signal.SIG_IGN)"
    processes = {
        handler: subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"import signal, time; {handler}; print(1, flush=True); time.sleep(60)",
            ],
            start_new_session=True,
            stdout=subprocess.PIPE,
        )
        for handler in (deaf, "pass")
    }
    for process in processes.values():  # each says when its handler is in place
        assert process.stdout is not None and process.stdout.readline()

    def reap() -> None:
        for process in processes.values():
            process.poll()

    killed = stop_groups([p.pid for p in processes.values()], grace=0.5, reap=reap)

    assert killed == {processes[deaf].pid}
    assert processes[deaf].wait(5) == -signal.SIGKILL
    assert processes["pass"].wait(5) == -signal.SIGTERM


@pytest.mark.stack
def test_a_waiting_service_is_up_and_fine_and_a_refused_one_fails_at_once(tmp_path: Path) -> None:
    """`waiting` (running as it should, waiting for something outside the stack) lets `up`
    succeed and `status` call it fine; `refused` fails `up` on the spot, with its reason."""
    sleeper = [sys.executable, "-c", "import time; time.sleep(300)"]

    def declared(name: str, health: Health) -> Service:
        return Service(name, name, [Program(name, sleeper)], "", lambda _client: health)

    engine = Stack(
        layout=StateLayout(tmp_path / "state"),
        declared=[
            declared("patient", Health(False, "waiting for a record", waiting=True)),
            declared("picky", Health(False, "this record needs X", refused=True)),
        ],
        environment={},
        host="127.0.0.1",
        ready_timeout=60,
        home=tmp_path,
    )
    try:
        assert engine.up(["patient"]) == {"patient": "waiting: waiting for a record"}
        # supervisord calls a program running once it has lived a second (startsecs=1).
        assert poll_until(lambda: engine.status().service("patient").waiting, 5)
        patient = engine.status().service("patient")
        assert patient.waiting and patient.fine and not patient.healthy
        assert patient.detail == "waiting for a record"
        started = time.monotonic()
        with pytest.raises(ServiceFailed, match="picky did not become healthy: this record"):
            engine.up(["picky"])
        assert time.monotonic() - started < 30, "refused fails now, not at the timeout"
        assert engine.status().service("picky").state is ServiceState.STOPPED
    finally:
        engine.down()
