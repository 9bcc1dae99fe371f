"""pytest plugin: the real stack in temporary state dirs on free ports, and the suite's rules.

Registered in the root `conftest.py`, so both `tests/` and `project/tests/` can ask for
`stack` (the whole default stack, started once per test session and shared), `stack_on_postgres`
and `stack_without_object_store` (the same for the other backends), or build their own with
`StackRun`. It also hands tests the stack's own helpers (`poll_until`) and a boto3 client
(`s3_client`), so no test writes them again.

The rules it enforces, so that the markers and the skips say the truth:
- a test that starts a process is marked `stack` (by its module, or because it asks for a
  fixture in `PROCESS_FIXTURES`); an unmarked test that starts one fails, so
  `pytest -m "not stack"` is a tier that starts nothing;
- `unavailable(reason)` is the one way to skip for a missing tool or permission: a skip here,
  a failure under CI, where `.ci/run` provides everything; and under CI any other skip fails
  the run unless its test is on `CI_ALLOWED_SKIPS`;
- a stack fixture that does not stop cleanly fails the session.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import boto3
import httpx
import pluggy
import pytest
from botocore.client import BaseClient
from botocore.config import Config

from devtools.harness import StackRun, free_ports
from services.engine.processes import poll_until
from services.engine.status import ProgramStatus
from services.engine.supervisor import marked_processes
from services.postgres.discovery import PostgresNotFound, find_server
from services.report import StatusReport
from services.settings import Database

# croniter (Airflow's and the DAGs') runs `file` on the interpreter when first imported
# (platform.architecture()): import it with the plugin, so that probe is no test's process.
importlib.import_module("croniter")

# Fixtures that start processes: a test that asks for one (directly or through another
# fixture) is marked `stack`, like a module that starts its own.
PROCESS_FIXTURES = frozenset(
    {"stack", "stack_on_sqlite", "stack_on_postgres", "stack_without_object_store", "s3_server"}
)

# Tests that may skip under CI, each with the reason CI cannot run it. Keep it short: every
# entry is a check CI does not make.
CI_ALLOWED_SKIPS: dict[str, str] = {}

# How long a test that disturbs the shared stack may leave it unhealthy before it is restarted.
RECOVERY_SECONDS = 180.0
# How often a test asks `status --json` while it waits: each call costs about a second of CPU
# (a Python start and every health probe), and the suite shares two cores with the stacks.
STATUS_POLL_SECONDS = 3.0

__all__ = [
    "PROCESS_FIXTURES",
    "STATUS_POLL_SECONDS",
    "RunningStack",
    "S3Server",
    "StackRun",
    "disturbed_stack",
    "free_ports",
    "nox_sessions",
    "on_ci",
    "poll_until",
    "require_postgres",
    "running",
    "s3_client",
    "stack",
    "stack_on_postgres",
    "stack_on_sqlite",
    "stack_without_object_store",
    "unavailable",
]


def on_ci() -> bool:
    """Whether this is CI (`CI` set, as GitHub Actions and `.ci/run` set it)."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def unavailable(reason: str) -> NoReturn:
    """A tool or permission a check needs is missing: skip it here, fail it under CI (`.ci/run`
    installs every tool, so there a missing one is a broken machine, not a choice)."""
    if on_ci():
        pytest.fail(f"{reason} (under CI this fails instead of skipping)", pytrace=False)
    pytest.skip(reason)


def require_tool(name: str, install: str) -> str:
    """The path of `name` on PATH; else `unavailable`, naming the command that installs it."""
    found = shutil.which(name)
    if found is None:
        unavailable(f"`{name}` is not on PATH: `{install}` enables this check")
    return found


def s3_client(endpoint: str, access_key: str, secret_key: str) -> BaseClient:
    """A boto3 client of the stack's S3 server (path-style, as MinIO and rclone expect): the
    library the example's data I/O and MLflow's artifact store use, so tests see what they see."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
    )


@dataclass(frozen=True)
class S3Server:
    """The stack's S3 service under test, as its client environment describes it."""

    env: dict[str, str]  # the stack's client environment, but the URLs of services not running

    @property
    def endpoint(self) -> str:
        return self.env["AWS_ENDPOINT_URL_S3"]

    def client(self) -> BaseClient:
        return s3_client(
            self.endpoint, self.env["AWS_ACCESS_KEY_ID"], self.env["AWS_SECRET_ACCESS_KEY"]
        )


def nox_sessions(noxfile: Path) -> set[str]:
    """The sessions a noxfile defines, as nox itself lists them (`nox -l`: `*` or `-` a line)."""
    listing = subprocess.run(
        [sys.executable, "-m", "nox", "-f", str(noxfile), "-l"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return set(re.findall(r"^[*-] (\S+)", listing, re.MULTILINE))


@dataclass
class RunningStack:
    """What a test needs to talk to the running stack, as a user's code would."""

    run: StackRun
    airflow_url: str
    mlflow_url: str
    s3_endpoint: str
    jupyter_url: str
    airflow_username: str
    airflow_password: str
    s3_access_key: str
    s3_secret_key: str
    jupyter_token: str
    env: dict[str, str]
    state_dir: str
    database: Database = Database.SQLITE
    postgres_password: str = ""

    @classmethod
    def from_status(cls, run: StackRun, report: StatusReport) -> RunningStack:
        urls = {service.name: service.url for service in report.services}
        return cls(
            run=run,
            airflow_url=urls["airflow"],
            mlflow_url=urls["mlflow"],
            s3_endpoint=urls.get("s3", ""),
            jupyter_url=urls["jupyter"],
            env=report.environment,
            state_dir=report.stack.state_dir,
            database=report.database,
            **report.credentials,
        )

    def airflow_api(self, timeout: float = 30) -> httpx.Client:
        """A client of Airflow's REST API (`/api/v2`), with a token from `/auth/token`."""
        response = httpx.post(
            f"{self.airflow_url}/auth/token",
            json={"username": self.airflow_username, "password": self.airflow_password},
            timeout=timeout,
        )
        response.raise_for_status()
        token = response.json()["access_token"]
        return httpx.Client(
            base_url=f"{self.airflow_url}/api/v2",
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    def programs(self, service: str) -> dict[str, ProgramStatus]:
        """The supervisord programs of one service, by name: state and pid, from `status`."""
        return {program.name: program for program in self.run.status().service(service).programs}


def stop_cleanly(run: StackRun) -> None:
    """`down`, and fail unless it succeeded and left no process of the stack behind."""
    result = run.down()
    left = marked_processes(run.base / "state")
    if result.returncode != 0 or left:
        pytest.fail(
            f"the stack in {run.base} did not stop cleanly (down exited {result.returncode}; "
            f"left running: {[process.pid for process in left]}):\n{result.stderr[-3000:]}",
            pytrace=False,
        )


def running(run: StackRun) -> Generator[RunningStack]:
    """Bring `run` up, yield it, and stop it whatever happens; a stop that is not clean fails."""
    try:
        run.up()
        yield RunningStack.from_status(run, run.status())
    finally:
        stop_cleanly(run)


def require_postgres() -> None:
    """A PostgreSQL server to run, or `unavailable` with what to install."""
    try:
        find_server(None)
    except PostgresNotFound as error:
        unavailable(str(error))


def traversable_base(prefix: str) -> Path:
    """A fresh temp dir others may traverse (0711): what keeps them out of a stack in it is the
    stack's own modes, not a private parent (the second-user test relies on that)."""
    base = Path(tempfile.mkdtemp(prefix=f"h2ops-{prefix}-"))
    base.chmod(0o711)
    return base


# The shared session stacks, in the order their users run (see pytest_collection_modifyitems_order):
# each starts with its first user and stops right after its last, so the tests that need none
# run beside no idle stack, and at most one idles beside the rest.
SHARED_STACKS = ("stack", "stack_on_postgres", "stack_without_object_store")
_running_shared: dict[str, StackRun] = {}
_last_user: dict[str, str] = {}  # shared stack -> node id of the last test that uses it


def _shared_stack(fixture: str, prefix: str, extra_env: dict[str, str]) -> Iterator[RunningStack]:
    base = traversable_base(prefix)
    run = StackRun(base, extra_env=extra_env)
    lifetime = running(run)
    try:
        running_stack = next(lifetime)
        _running_shared[fixture] = run
        yield running_stack
        _running_shared.pop(fixture, None)
        lifetime.close()  # stop_cleanly: fails the session if the stop is not clean
    finally:
        _running_shared.pop(fixture, None)
        shutil.rmtree(base, ignore_errors=True)


def shared_stacks_of(item: pytest.Item) -> set[str]:
    """The shared stacks a test uses: by fixture, or as the parameter of one (`any_stack`)."""
    names = set(getattr(item, "fixturenames", ()))
    callspec = getattr(item, "callspec", None)
    if callspec is not None:
        names |= {value for value in callspec.params.values() if isinstance(value, str)}
    names = {"stack" if name == "stack_on_sqlite" else name for name in names}
    return names & set(SHARED_STACKS)


@pytest.fixture(scope="session")
def stack() -> Iterator[RunningStack]:
    """The whole default stack (metadata in SQLite), up once for the test session and shared by
    every test that reads from it. A test that kills part of it asks for `disturbed_stack`."""
    yield from _shared_stack("stack", "stack", {"H2OPS_DATABASE": "sqlite"})


@pytest.fixture(scope="session")
def stack_on_sqlite(stack: RunningStack) -> RunningStack:
    """The default stack by the name the end-to-end test's backends share."""
    return stack


@pytest.fixture(scope="session")
def stack_on_postgres() -> Iterator[RunningStack]:
    """The whole stack with its metadata in PostgreSQL, for the checks where the database
    matters (unavailable where no server is installed)."""
    require_postgres()
    yield from _shared_stack("stack_on_postgres", "stack-postgres", {"H2OPS_DATABASE": "postgres"})


@pytest.fixture(scope="session")
def stack_without_object_store() -> Iterator[RunningStack]:
    """The stack with H2OPS_S3_BACKEND=none: local artifacts and a file:// data store."""
    yield from _shared_stack(
        "stack_without_object_store", "stack-none", {"H2OPS_S3_BACKEND": "none"}
    )


def _all_fine(run: StackRun) -> bool:
    try:
        return all(service.fine for service in run.status().services)
    except (subprocess.TimeoutExpired, ValueError):
        return False


@pytest.fixture
def disturbed_stack(stack: RunningStack) -> Iterator[RunningStack]:
    """The shared stack, for a test that kills part of it. Afterwards every service must be
    fine again within RECOVERY_SECONDS; if not, the stack is restarted (so no later test meets
    a damaged stack) and this test fails."""
    yield stack
    if poll_until(lambda: _all_fine(stack.run), RECOVERY_SECONDS, STATUS_POLL_SECONDS):
        return
    report = stack.run.cli("status").stdout
    stack.run.down()
    stack.run.up()
    pytest.fail(f"the shared stack was not healthy {RECOVERY_SECONDS} s after this test:\n{report}")


# -- the suite's rules --------------------------------------------------------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that asks for a fixture that starts processes, or runs end to end, is a `stack`
    test. First of all hooks: `-m "not stack"` deselects by these markers.

    Then the xdist groups (`--dist loadgroup` keeps a group in one worker): the users of a
    shared stack form one, so it starts once; any other test goes with its module, whose
    fixtures (a module's own stack, a model it registered) it shares."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        starts = names & PROCESS_FIXTURES or item.get_closest_marker("e2e") is not None
        if starts and item.get_closest_marker("stack") is None:
            item.add_marker(pytest.mark.stack)
        used = shared_stacks_of(item)
        group = min(used, key=SHARED_STACKS.index) if used else item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.hookimpl(trylast=True, specname="pytest_collection_modifyitems")
def pytest_collection_modifyitems_order(items: list[pytest.Item]) -> None:
    """Tests that need no shared stack first, then the users of each shared stack in turn
    (stable, so files and pytest's own grouping keep their order)."""

    def turn(item: pytest.Item) -> int:
        used = shared_stacks_of(item)
        return 1 + min(SHARED_STACKS.index(name) for name in used) if used else 0

    items.sort(key=turn)
    _last_user.clear()
    for item in items:
        for name in shared_stacks_of(item):
            _last_user[name] = item.nodeid


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    """After the last test of a shared stack, stop it (its fixture checks the stop was clean
    at the end of the session)."""
    yield
    for name, last in list(_last_user.items()):
        if last == item.nodeid and name in _running_shared:
            _running_shared.pop(name).down()


class _ProcessStarted(Exception):
    """An unmarked test started a process."""


@contextmanager
def _no_process_started(item: pytest.Item) -> Iterator[None]:
    """Outside `stack` tests, starting a process (subprocess, fork, spawn) raises while this
    holds: the marker says the truth."""
    if item.get_closest_marker("stack") is not None:
        yield
        return

    def refuse(*args: object, **kwargs: object) -> NoReturn:
        raise _ProcessStarted(
            f"{item.nodeid} starts a process: mark it `stack` (pytest.mark.stack)"
        )

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(subprocess.Popen, "_execute_child", refuse)
        for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp"):
            if hasattr(os, name):
                patch.setattr(os, name, refuse)
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    """The rule holds in a test's fixtures too. (Its teardown is free: a session's stack
    stops after its last test, whatever that test is.)"""
    with _no_process_started(item):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    with _no_process_started(item):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pluggy.Result[pytest.TestReport]]:
    """Under CI a skip fails the test, unless the test is on CI_ALLOWED_SKIPS."""
    outcome = yield
    report = outcome.get_result()
    if not (report.skipped and on_ci()) or hasattr(report, "wasxfail"):
        return
    if any(item.nodeid.startswith(allowed) for allowed in CI_ALLOWED_SKIPS):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = f"skipped under CI, and not on CI_ALLOWED_SKIPS: {reason}"
