"""H2OPS_DATABASE=postgres on real processes: concurrent writers, a cluster that survives a
SIGKILL and down/up, and the errors a user meets (taken port, no server, a SQLite state dir).

Cost: the shared PostgreSQL stack (its start is shared with the e2e), three training runs at
once on it, and a PostgreSQL cluster of its own started three times."""

from __future__ import annotations

import os
import signal
import socket
import stat
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import pytest

from devtools.testing import (
    STATUS_POLL_SECONDS,
    RunningStack,
    StackRun,
    poll_until,
    require_postgres,
)
from services.engine.supervisor import marked_processes

pytestmark = pytest.mark.stack
WAIT_SECONDS = 120
WRITERS = 8
METRICS_PER_WRITER = 25
TRAINING_DAG = "example_training_from_config"
PARALLEL_RUNS = 3
PARALLEL_RUN_SECONDS = 420  # with the parse wait, within the test's 600 s
LOCK_ERRORS = ("database is locked", "deadlock detected", "could not serialize")


def postgres_run(base: Path, **extra: str) -> StackRun:
    require_postgres()
    return StackRun(base, extra_env={"H2OPS_DATABASE": "postgres", **extra})


def query(run: StackRun, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """Run one statement in the `postgres` database as the stack's superuser; its rows."""
    import psycopg

    password = run.status().credentials["postgres_password"]
    with (
        psycopg.connect(
            host="127.0.0.1",
            port=run.ports["POSTGRES"],
            user="h2ops",
            password=password,
            dbname="postgres",
            connect_timeout=10,
            autocommit=True,
        ) as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def test_on_postgres_status_lists_it_before_its_users_and_every_service_is_fine(
    stack_on_postgres: RunningStack,
) -> None:
    report = stack_on_postgres.run.status()
    names = [service.name for service in report.services]
    assert names == ["s3", "postgres", "mlflow", "airflow", "jupyter", "serving"]
    assert all(service.fine for service in report.services), report
    assert report.credentials["postgres_password"], "a generated password, no default"
    # Each user of the cluster created its own database before its first start.
    databases = {row[0] for row in query(stack_on_postgres.run, "SELECT datname FROM pg_database")}
    assert {"airflow", "mlflow"} <= databases


def test_concurrent_mlflow_writers_finish_without_lock_errors(
    stack_on_postgres: RunningStack,
) -> None:
    stack = stack_on_postgres
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=stack.mlflow_url)
    experiment = client.create_experiment(f"writers-{time.time_ns()}")
    errors: list[BaseException] = []
    runs: list[str] = []

    def write(writer: int) -> None:
        try:
            run = client.create_run(experiment, run_name=f"writer-{writer}")
            for step in range(METRICS_PER_WRITER):
                client.log_metric(run.info.run_id, "loss", 1.0 / (step + 1), step=step)
            client.set_terminated(run.info.run_id)
            runs.append(run.info.run_id)
        except BaseException as error:
            errors.append(error)

    started = time.monotonic()
    threads = [threading.Thread(target=write, args=(n,)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_SECONDS)
    elapsed = time.monotonic() - started
    assert not errors, errors
    assert len(runs) == WRITERS
    for run_id in runs:
        assert client.get_run(run_id).info.status == "FINISHED"
        assert len(client.get_metric_history(run_id, "loss")) == METRICS_PER_WRITER
    print(f"{WRITERS} writers x {METRICS_PER_WRITER} metrics: {elapsed:.1f} s")


def test_parallel_airflow_runs_overlap_and_succeed(stack_on_postgres: RunningStack) -> None:
    """Several training runs at once (each writing to MLflow from its tasks): all succeed,
    their tasks run at the same time, and no component logged a lock error."""
    stack = stack_on_postgres
    with stack.airflow_api(timeout=60) as api:
        assert poll_until(lambda: api.get(f"/dags/{TRAINING_DAG}").is_success, WAIT_SECONDS, 2), (
            f"{TRAINING_DAG} was not parsed"
        )
        api.patch(f"/dags/{TRAINING_DAG}", json={"is_paused": False}).raise_for_status()
        results: list[Any] = []
        threads = [
            threading.Thread(
                target=lambda: results.append(
                    api.post(f"/dags/{TRAINING_DAG}/dagRuns", json={"logical_date": None})
                )
            )
            for _ in range(PARALLEL_RUNS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert [r.status_code for r in results] == [200] * PARALLEL_RUNS, [r.text for r in results]
        run_ids = [r.json()["dag_run_id"] for r in results]

        def finished() -> list[dict[str, Any]] | None:
            states = [api.get(f"/dags/{TRAINING_DAG}/dagRuns/{run}").json() for run in run_ids]
            done = all(state["state"] in ("success", "failed") for state in states)
            return states if done else None

        states = poll_until(finished, PARALLEL_RUN_SECONDS, 5)
        assert states is not None, f"the runs did not finish within {PARALLEL_RUN_SECONDS} s"
        assert [state["state"] for state in states] == ["success"] * PARALLEL_RUNS
        spans = []
        for run in run_ids:
            tasks = api.get(f"/dags/{TRAINING_DAG}/dagRuns/{run}/taskInstances").json()
            for task in tasks["task_instances"]:
                start = datetime.fromisoformat(task["start_date"])
                spans.append((start, datetime.fromisoformat(task["end_date"]), run))
    overlapping = any(a[2] != b[2] and a[0] < b[1] and b[0] < a[1] for a in spans for b in spans)
    assert overlapping, "no two runs had tasks running at the same time"
    logs = Path(stack.state_dir, "logs")
    for log in logs.glob("airflow-*.log"):
        text = log.read_text(errors="replace")
        assert not [error for error in LOCK_ERRORS if error in text], log


def test_cluster_survives_sigkill_and_down_up_and_clean_removes_it(tmp_path: Path) -> None:
    run = postgres_run(tmp_path)
    try:
        run.up("postgres")
        state = Path(run.env["H2OPS_STATE_DIR"])
        cluster = state / "postgres"
        query(run, "CREATE TABLE kept (value text)")
        query(run, "INSERT INTO kept VALUES ('before the kill')")

        killed = run.status().service("postgres").pid
        assert killed is not None
        os.kill(killed, signal.SIGKILL)

        def back() -> bool:
            status = run.status().service("postgres")
            return status.healthy and status.pid not in (None, killed)

        assert poll_until(back, WAIT_SECONDS, STATUS_POLL_SECONDS), (
            "postgres did not come back after SIGKILL"
        )
        assert query(run, "SELECT value FROM kept") == [("before the kill",)]
        query(run, "INSERT INTO kept VALUES ('after the kill')")

        if os.geteuid() == 0:  # run as the unprivileged account, reached by traverse only
            assert cluster.stat().st_uid != 0
            assert psutil.Process(run.status().service("postgres").pid).uids().real != 0
        for path in state.rglob("*"):
            if path.is_relative_to(cluster) or path.is_symlink():
                continue
            assert not stat.S_IMODE(path.stat().st_mode) & 0o077, path

        server = run.status().service("postgres").pid
        run.down()
        assert not psutil.pid_exists(server or 0)
        assert not marked_processes(state)
        run.up("postgres")
        rows = query(run, "SELECT value FROM kept ORDER BY value")
        assert rows == [("after the kill",), ("before the kill",)]
    finally:
        run.down()
    clean = run.cli("clean", "--yes")
    assert clean.returncode == 0, clean.stderr
    assert not cluster.exists()


def test_a_taken_port_is_named_before_anything_starts(tmp_path: Path) -> None:
    run = postgres_run(tmp_path)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", run.ports["POSTGRES"]))
        holder.listen()
        result = run.cli("up", "postgres")
    assert result.returncode == 1
    assert f"port {run.ports['POSTGRES']} is taken" in result.stderr
    assert "H2OPS_POSTGRES_PORT" in result.stderr


def test_a_missing_server_says_what_to_install_and_how_to_fall_back(tmp_path: Path) -> None:
    nowhere = tmp_path / "no-postgres-here"
    run = StackRun(
        tmp_path, extra_env={"H2OPS_DATABASE": "postgres", "H2OPS_POSTGRES_BIN": str(nowhere)}
    )
    result = run.cli("up")
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert f"H2OPS_POSTGRES_BIN={nowhere}" in message
    assert "apt-get install postgresql" in message
    assert "brew install postgresql@16" in message
    assert "H2OPS_DATABASE=sqlite" in message
    assert not Path(run.env["H2OPS_STATE_DIR"]).exists()


def test_switching_a_sqlite_state_dir_to_postgres_is_refused(tmp_path: Path) -> None:
    sqlite = StackRun(tmp_path)
    sqlite.up("mlflow")
    sqlite.down()
    mlflow_db = Path(sqlite.env["H2OPS_STATE_DIR"], "mlflow", "mlflow.db")
    assert mlflow_db.exists()
    result = postgres_run(tmp_path).cli("up", "mlflow")
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert "holds SQLite metadata" in message
    assert "H2OPS_DATABASE=sqlite" in message
    assert "nox -s clean" in message
    assert not Path(sqlite.env["H2OPS_STATE_DIR"], "postgres").exists()
