"""The edges between the engine, the declarations and the CLI are typed: progress is a step,
not a text prefix; a refusal is asked before the ports; one error type is the user's, and
anything else is a bug that shows its traceback."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from services import cli
from services.catalog import stack_of
from services.engine.errors import StackError
from services.engine.layout import StateLayout
from services.engine.ports import PortTaken
from services.engine.records import Program, Service, http_ok
from services.engine.stack import Progress, Stack, Step
from services.plan import StackPlan
from services.settings import Database, SettingsError, StackSettings

KEYS = {
    "s3_access_key": "a",
    "s3_secret_key": "s",
    "airflow_password": "p",
    "airflow_jwt_secret": "j",
    "jupyter_token": "t",
    "postgres_password": "pg",
    "s3_backend": "rclone",
}


def plan_in(tmp_path: Path, **values: Any) -> StackPlan:
    return StackPlan.of(StackSettings(**{**KEYS, "state_dir": tmp_path / "state", **values}))


def test_progress_is_decided_by_its_step_not_its_words() -> None:
    """Airflow's "waiting for scheduler" while starting once read as a settled service."""
    starting = Progress(Step.STARTING, "waiting for scheduler, triggerer")
    assert starting == "waiting for scheduler, triggerer" and not starting.step.settled
    assert Progress(Step.READY, "4.2 s") == "ready in 4.2 s"
    assert Progress(Step.WAITING, "no model yet").step.settled
    assert Progress(Step.ALREADY_RUNNING) == "already running"


def test_the_database_is_one_typed_value(tmp_path: Path) -> None:
    assert plan_in(tmp_path, database="postgres").database is Database.POSTGRES
    assert plan_in(tmp_path).database is Database.SQLITE


def test_a_refusal_comes_before_the_port_check(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        service = Service(
            "toy",
            "Toy",
            [Program("toy", [sys.executable, "-c", "pass"])],
            "",
            http_ok(f"http://127.0.0.1:{port}"),
            ports={"TOY_PORT": port},
            refuse=lambda: "toy must not start: its data is elsewhere",
        )
        stack = Stack(StateLayout(tmp_path / "state"), [service], {}, "127.0.0.1", 5, tmp_path)
        with pytest.raises(StackError, match="its data is elsewhere") as raised:
            stack.up()
        assert not isinstance(raised.value, PortTaken)


def test_metadata_in_the_other_database_is_refused_by_its_users(tmp_path: Path) -> None:
    """A PostgreSQL cluster in a SQLite stack's state dir, and SQLite files in a PostgreSQL
    one: the services that keep metadata refuse to start empty, saying why."""
    sqlite = plan_in(tmp_path)
    (sqlite.layout.service_dir("postgres")).mkdir(parents=True)
    (sqlite.layout.service_dir("postgres") / "PG_VERSION").write_text("16\n")
    services = {s.name: s for s in stack_of(sqlite).services}
    for name in ("airflow", "mlflow"):
        refuse = services[name].refuse
        assert refuse is not None
        assert "holds the stack's PostgreSQL cluster" in (refuse() or "")
    assert services["jupyter"].refuse is None

    postgres = plan_in(tmp_path / "pg", database="postgres", postgres_bin=tmp_path / "none")
    airflow_db = postgres.layout.service_dir("airflow") / "airflow.db"
    airflow_db.parent.mkdir(parents=True)
    airflow_db.write_text("")
    declared = {s.name: s for s in stack_of(postgres).services}
    refuse = declared["postgres"].refuse
    assert refuse is not None and "has no initdb" in (refuse() or ""), "no server: says so"
    refuse = declared["mlflow"].refuse
    assert refuse is not None and "holds SQLite metadata" in (refuse() or "")


def test_the_cli_shows_a_stack_error_as_a_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuses(_plan: StackPlan, _args: object) -> int:
        raise SettingsError("H2OPS_X is not valid: fix it")

    monkeypatch.setattr(cli, "_status", refuses)
    assert cli.main(["status"]) == 1
    assert "H2OPS_X is not valid: fix it" in capsys.readouterr().err


def test_anything_else_is_a_bug_and_shows_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(_plan: StackPlan, _args: object) -> int:
        raise FileNotFoundError("/no/such/file")

    monkeypatch.setattr(cli, "_status", broken)
    with pytest.raises(FileNotFoundError):
        cli.main(["status"])


def test_every_error_a_user_can_fix_is_a_stack_error() -> None:
    from services.engine.layout import UnsafeStateError
    from services.engine.stack import ServiceFailed
    from services.engine.supervisor import SupervisorError
    from services.postgres.account import AccountError
    from services.postgres.discovery import PostgresNotFound
    from services.serving.bundle import BundleError

    for error in (
        PortTaken,
        ServiceFailed,
        SupervisorError,
        UnsafeStateError,
        SettingsError,
        AccountError,
        PostgresNotFound,
        BundleError,
    ):
        assert issubclass(error, StackError), error
