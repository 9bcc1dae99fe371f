"""What goes wrong: taken ports, services that never get ready, killed processes, bad input.

Cost: each test has a stack of its own with only the services it needs (most S3 or MLflow;
switching Airflow's preload off starts Airflow twice, the slowest here)."""

from __future__ import annotations

import os
import signal
import socket
import stat
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


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"H2OPS_HOST=no-such-host.invalid\n", "line 1: H2OPS_HOST='no-such-host.invalid'"),
        (b"# ok\nH2OPS_S3_BACKEND=rcl\xe9ne\n", "line 2: byte b'\\xe9' is not UTF-8"),
        (b"\nH2OPS_MLFLOW_PORT 5100\n", "line 2: cannot read `H2OPS_MLFLOW_PORT 5100`"),
        (b"H2OPS_JUPYTER_TOKEN='abc\n", "line 1: cannot read `H2OPS_JUPYTER_TOKEN='abc`"),
    ],
    ids=["unresolvable-host", "not-utf8", "no-equals", "unbalanced-quote"],
)
def test_a_bad_env_file_is_refused_before_anything_starts(
    run: StackRun, content: bytes, problem: str
) -> None:
    env_file = run.base / "stack.env"
    env_file.write_bytes(content)
    result = run.cli("up", "s3")
    assert result.returncode == 1
    assert f"Invalid setting\n{env_file}, {problem}" in result.stderr
    assert "Traceback" not in result.stderr
    assert marked_processes(run) == []
    assert not (run.base / "state").exists()
    assert env_file.read_bytes() == content, "nothing was added to it"


def test_a_state_dir_other_users_can_write_is_refused(run: StackRun) -> None:
    state = run.base / "state"
    state.mkdir()
    state.chmod(0o777)
    result = run.cli("up", "s3")
    assert result.returncode == 1
    assert f"{state} can be written by other users (mode 0777)" in result.stderr
    assert f"chmod go-w {state}" in result.stderr
    assert marked_processes(run) == []
    assert list(state.iterdir()) == []


def test_up_makes_the_state_and_what_the_programs_write_private(run: StackRun) -> None:
    state = run.base / "state"
    (state / "logs").mkdir(parents=True)
    old = state / "logs" / "from-an-older-version.log"
    old.write_text("x")
    for path in (state, state / "logs"):
        path.chmod(0o755)
    old.chmod(0o644)
    run.up("s3")
    s3(run).put_object(Bucket="data", Key="dir/object.txt", Body=b"private")
    stored = state / "s3" / "data" / "dir" / "object.txt"
    modes = {
        path.name: oct(stat.S_IMODE(path.stat().st_mode))
        for path in (state, state / "logs", old, state / "logs" / "s3.log", stored.parent, stored)
    }
    assert modes == {
        "state": "0o700",
        "logs": "0o700",
        old.name: "0o600",
        "s3.log": "0o600",
        "dir": "0o700",
        "object.txt": "0o600",
    }


def test_unknown_service_name_lists_the_real_ones(run: StackRun) -> None:
    result = run.cli("up", "grafana")
    assert result.returncode == 1
    real = "s3, mlflow, airflow, jupyter, serving"
    assert f"unknown service 'grafana': choose from {real}" in result.stderr
    # A real service that is switched off says why, not that it is unknown.
    result = run.cli("up", "postgres")
    assert result.returncode == 1
    assert "postgres is off (H2OPS_DATABASE=sqlite): set H2OPS_DATABASE=postgres" in result.stderr


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


def test_s3_is_healthy_only_with_the_stack_keys_and_buckets_are_made_once(run: StackRun) -> None:
    """The S3 probe signs a request (minio client): a server that refuses the keys is not
    healthy; creating the buckets again leaves them, and what is in them, alone."""
    import httpx

    from services.s3.service import _answers_signed, create_buckets
    from services.settings import StackSettings

    run.up("s3")
    env = run.status().environment
    endpoint, key, secret = (
        env["AWS_ENDPOINT_URL_S3"],
        env["AWS_ACCESS_KEY_ID"],
        env["AWS_SECRET_ACCESS_KEY"],
    )
    with httpx.Client() as client:
        assert _answers_signed(endpoint, key, secret)(client).healthy
        refused = _answers_signed(endpoint, key, "not-the-secret")(client)
    assert not refused.healthy and endpoint in refused.detail, refused
    s3(run).put_object(Bucket="data", Key="kept.txt", Body=b"kept")
    create_buckets(StackSettings(s3_access_key=key, s3_secret_key=secret), endpoint)
    names = {bucket["Name"] for bucket in s3(run).list_buckets()["Buckets"]}
    assert {"mlflow", "data"} <= names
    assert s3(run).get_object(Bucket="data", Key="kept.txt")["Body"].read() == b"kept"
