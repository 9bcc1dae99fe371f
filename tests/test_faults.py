"""What goes wrong: taken ports, services that never get ready, killed processes, bad input."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from botocore.client import BaseClient

from devtools.testing import StackRun, s3_client
from services.airflow import preload
from services.engine import supervisor
from services.engine.status import ServiceState

pytestmark = pytest.mark.stack


def marked_processes(run: StackRun) -> list[psutil.Process]:
    return supervisor.marked_processes(run.base / "state")


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def run(tmp_path: Path) -> Iterator[StackRun]:
    stack_run = StackRun(tmp_path)
    yield stack_run
    stack_run.down()
    assert marked_processes(stack_run) == []


def s3(run: StackRun) -> BaseClient:
    env = run.status().environment
    return s3_client(
        env["AWS_ENDPOINT_URL_S3"], env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    )


def test_taken_port_is_named_with_its_holder_and_nothing_starts(run: StackRun) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", run.ports["S3"]))
        holder.listen()
        result = run.cli("up", "s3", "mlflow")
    assert result.returncode == 1
    assert f"port {run.ports['S3']} is taken by pid {os.getpid()}" in result.stderr
    assert "H2OPS_S3_PORT" in result.stderr
    assert "Nothing was started" in result.stderr
    assert marked_processes(run) == []
    assert not (run.base / "state" / "supervisord.pid").exists()


def test_invalid_setting_is_refused_with_variable_and_value(run: StackRun) -> None:
    run.extra_env["H2OPS_MLFLOW_PORT"] = "abc"
    result = run.cli("up")
    assert result.returncode == 1
    assert "H2OPS_MLFLOW_PORT='abc'" in result.stderr
    assert marked_processes(run) == []


def test_unknown_service_name_lists_the_real_ones(run: StackRun) -> None:
    result = run.cli("up", "postgres")
    assert result.returncode == 1
    assert "unknown service 'postgres': choose from s3, mlflow, airflow, jupyter" in result.stderr


def test_service_that_never_gets_ready_fails_bounded_with_its_log(run: StackRun) -> None:
    run.extra_env["H2OPS_READY_TIMEOUT"] = "0.3"
    started = time.monotonic()
    result = run.cli("up", "jupyter", timeout=120)
    assert time.monotonic() - started < 120
    assert result.returncode == 1
    log = run.base / "state" / "logs" / "jupyter.log"
    assert "jupyter did not become healthy" in result.stderr
    assert f"Last lines of {log}" in result.stderr
    assert run.status().service("jupyter").state is ServiceState.STOPPED


def test_down_keeps_data_and_leaves_nothing_running(run: StackRun) -> None:
    run.up("s3", "jupyter")
    s3(run).put_object(Bucket="data", Key="kept.txt", Body=b"still here")
    run.down()
    assert marked_processes(run) == []
    assert not listening(run.ports["S3"]) and not listening(run.ports["JUPYTER"])
    assert run.cli("status").returncode == 3
    run.up("s3")
    body = s3(run).get_object(Bucket="data", Key="kept.txt")["Body"].read()
    assert body == b"still here"


def test_killed_supervisor_is_cleaned_up_by_next_up_and_down(run: StackRun) -> None:
    pidfile = run.base / "state" / "supervisord.pid"
    run.up("s3")
    orphan = run.status().service("s3").pid
    assert orphan is not None
    os.kill(int(pidfile.read_text()), signal.SIGKILL)
    time.sleep(0.5)
    assert psutil.pid_exists(orphan)  # the S3 server outlived its supervisor

    run.up("s3")  # cleans the stale socket, pid file and orphan, then starts afresh
    s3_service = run.status().service("s3")
    assert s3_service.healthy
    assert s3_service.pid != orphan
    assert not psutil.pid_exists(orphan)

    os.kill(int(pidfile.read_text()), signal.SIGKILL)
    result = run.down()
    assert result.returncode == 0
    assert marked_processes(run) == []
    assert not pidfile.exists()
    assert not listening(run.ports["S3"])


def test_logs_show_each_program_log(run: StackRun) -> None:
    run.up("s3")
    result = run.cli("logs", "s3", "-n", "5", timeout=60)
    assert result.returncode == 0
    assert "s3.log" in result.stderr
    assert "s3" in result.stdout.lower()


def test_clean_asks_for_confirmation_then_deletes_state(run: StackRun) -> None:
    run.up("s3")
    state = run.base / "state"
    refused = run.cli("clean", timeout=60)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert (state / "s3").is_dir()
    done = run.cli("clean", "--yes", timeout=120)
    assert done.returncode == 0
    assert not state.exists()
    assert marked_processes(run) == []


def test_airflow_preload_switched_off_takes_effect_on_restart(run: StackRun) -> None:
    run.up("airflow")
    assert "airflow-preload" in [p.name for p in run.status().service("airflow").programs]
    run.extra_env["H2OPS_AIRFLOW_PRELOAD"] = "false"
    result = run.cli("restart", "airflow")
    assert result.returncode == 0, result.stderr
    now = run.status().service("airflow")
    assert now.healthy, now
    assert "airflow-preload" not in [p.name for p in now.programs]
    commands = [" ".join(p.cmdline()) for p in marked_processes(run) if p.is_running()]
    assert not any(preload.__name__ in command for command in commands), commands
