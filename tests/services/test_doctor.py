"""`h2ops doctor` and `h2ops open`, on real processes: a free machine, a port held by another
socket, processes a killed supervisor left, and a browser ($BROWSER) handed the UI's URL."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from devtools.testing import RunningStack, StackRun, poll_until
from services.engine.supervisor import marked_processes

pytestmark = pytest.mark.stack


def doctor(run: StackRun) -> subprocess.CompletedProcess[str]:
    # A wide terminal, so the table's cells are not folded across lines.
    return run.cli("doctor", "--nox-version", "0", timeout=120)


def row(result: subprocess.CompletedProcess[str], check: str) -> str:
    """The table row whose first cell is `check`."""
    for line in result.stdout.splitlines():
        cells = [cell.strip() for cell in line.split("│")]
        if len(cells) > 2 and cells[1] == check:
            return line
    raise AssertionError(f"no row {check!r} in:\n{result.stdout}")


@pytest.fixture
def run(tmp_path: Path) -> Iterator[StackRun]:
    stack_run = StackRun(tmp_path, extra_env={"COLUMNS": "200"})
    try:
        yield stack_run
    finally:
        stack_run.down()


def test_doctor_passes_on_a_free_machine(run: StackRun) -> None:
    result = doctor(run)
    assert result.returncode == 0, result.stdout + result.stderr
    for variable in ("H2OPS_S3_PORT", "H2OPS_MLFLOW_PORT", "H2OPS_AIRFLOW_PORT"):
        port = run.ports[variable.removeprefix("H2OPS_").removesuffix("_PORT")]
        assert "free on 127.0.0.1" in row(result, f"port {port} ({variable})")
    # Each declared service's executables were looked for: the catalog's, not a list here.
    for service in ("s3", "mlflow", "airflow", "jupyter"):
        assert " ok " in row(result, f"service {service}")
    assert "rclone" in row(result, "service s3")
    assert "Ready for `nox -s up`" in result.stderr


def test_doctor_fails_naming_a_port_another_process_holds(run: StackRun) -> None:
    port = run.ports["MLFLOW"]
    with socket.socket() as held:
        held.bind(("127.0.0.1", port))
        held.listen()
        result = doctor(run)
    assert result.returncode == 1
    line = row(result, f"port {port} (H2OPS_MLFLOW_PORT)")
    assert "FAIL" in line and f"pid {os.getpid()}" in line, line
    assert f"`up` would fail: port {port} (H2OPS_MLFLOW_PORT)" in result.stderr


def test_doctor_fails_when_a_service_executable_is_missing(tmp_path: Path) -> None:
    run = StackRun(tmp_path, extra_env={"COLUMNS": "200", "H2OPS_S3_BACKEND": "minio"})
    run.extra_env["PATH"] = str(Path(run.python).parent)  # the locked tools, and no minio
    result = doctor(run)
    assert result.returncode == 1
    assert "no minio binary is on PATH" in row(result, "services"), result.stdout


def test_doctor_says_how_to_get_a_missing_postgresql(tmp_path: Path) -> None:
    nowhere = tmp_path / "no-postgres-here"
    settings = {"H2OPS_DATABASE": "postgres", "H2OPS_POSTGRES_BIN": str(nowhere)}
    result = doctor(StackRun(tmp_path, extra_env={"COLUMNS": "400", **settings}))
    assert result.returncode == 1
    assert "FAIL" in row(result, "service postgres").upper(), result.stdout
    # What to do: the setting that points nowhere, how to install, how to fall back.
    for hint in (f"H2OPS_POSTGRES_BIN={nowhere}", "apt-get", "H2OPS_DATABASE=sqlite"):
        assert hint in result.stdout, hint


def test_doctor_reports_a_leftover_stack(run: StackRun) -> None:
    run.up("s3")
    pidfile = run.base / "state" / "supervisord.pid"
    os.kill(int(pidfile.read_text()), signal.SIGKILL)

    def orphans() -> list[psutil.Process]:
        """The stack's processes still alive (one that is exiting is no leftover)."""
        alive = []
        for process in marked_processes(run.base / "state"):
            with contextlib.suppress(psutil.Error):
                if process.status() != psutil.STATUS_ZOMBIE:
                    alive.append(process)
        return alive

    assert poll_until(lambda: orphans() or None, 10)
    result = doctor(run)
    line = row(result, "leftover processes")
    left = orphans()
    assert left and "warn" in line, result.stdout
    assert all(str(process.pid) in result.stdout for process in left), result.stdout
    assert "nox -s down" in result.stdout
    # Its S3 port is held, but by this stack: that is not a failure.
    assert "held by this stack" in row(result, f"port {run.ports['S3']} (H2OPS_S3_PORT)")
    assert result.returncode == 0, result.stdout


def recording_browser(tmp_path: Path) -> tuple[Path, Path]:
    """A $BROWSER that writes the URL it is given to a file, as a browser would open it."""
    record = tmp_path / "opened.txt"
    script = tmp_path / "browser"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> "{record}"\n')
    script.chmod(stat.S_IRWXU)
    return script, record


def open_ui(
    stack: RunningStack, service: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """`h2ops open SERVICE` on this stack, as a user runs it."""
    command = [stack.run.python, "-m", "services", "open", service]
    return subprocess.run(
        command, env=env, cwd=stack.run.root, capture_output=True, text=True, timeout=60
    )


def test_open_hands_the_browser_jupyter_with_its_token(stack: RunningStack, tmp_path: Path) -> None:
    script, record = recording_browser(tmp_path)
    env = {**stack.run.env, "BROWSER": str(script)}
    opened = open_ui(stack, "jupyter", env)
    assert opened.returncode == 0, opened.stderr
    (url,) = record.read_text().split()
    assert url == f"{stack.jupyter_url}/lab?token={stack.jupyter_token}"
    # The URL logs a browser in: JupyterLab answers it with the lab page and its auth cookie.
    with httpx.Client(follow_redirects=True, timeout=30) as browser:
        page = browser.get(url)
        assert page.status_code == 200 and "JupyterLab" in page.text
        assert browser.get(f"{stack.jupyter_url}/api/contents").status_code == 200

    for service, expected in (("mlflow", stack.mlflow_url), ("airflow", stack.airflow_url)):
        result = open_ui(stack, service, env)
        assert result.returncode == 0, result.stderr
        assert record.read_text().split()[-1] == expected
    assert stack.airflow_password in result.stderr, "Airflow's form cannot be filled: say how"


def test_open_without_a_browser_prints_the_url_and_login(stack: RunningStack) -> None:
    # No $BROWSER and no browser on PATH: webbrowser finds none.
    env = {**stack.run.env, "PATH": str(Path(stack.run.python).parent)}
    for variable in ("BROWSER", "DISPLAY", "WAYLAND_DISPLAY"):
        env.pop(variable, None)
    result = open_ui(stack, "jupyter", env)
    assert result.returncode == 0, result.stderr
    assert f"{stack.jupyter_url}/lab?token={stack.jupyter_token}" in result.stderr


def test_documented_logs_follow_form_follows(stack: RunningStack, tmp_path: Path) -> None:
    """`nox -s logs -- airflow -f` (README): shows Airflow's logs and keeps following them."""
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    log = Path(stack.state_dir) / "logs" / "airflow-scheduler.log"
    with out.open("w") as stdout, err.open("w") as stderr:
        follower = subprocess.Popen(
            [stack.run.python, "-m", "services", "logs", "airflow", "-f", "-n", "1"],
            env=stack.run.env,
            cwd=stack.run.root,
            stdout=stdout,
            stderr=stderr,
            # Ctrl-C as in a terminal: an xdist worker ignores SIGINT, and a child would inherit
            # that (Python then installs no KeyboardInterrupt handler).
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    try:  # a busy machine may take a while to import; then it must still be running
        assert poll_until(lambda: "airflow-triggerer.log" in err.read_text(), 120), err.read_text()
        assert follower.poll() is None, err.read_text()
        with log.open("a") as handle:
            handle.write("a line appended by test_doctor\n")
        appended = "airflow-scheduler | a line appended by test_doctor"
        assert poll_until(lambda: appended in out.read_text(), 30), out.read_text()[-2000:]
    finally:
        follower.send_signal(signal.SIGINT)
        follower.wait(timeout=30)
    headers = err.read_text()
    assert "airflow-scheduler.log" in headers and "airflow-api-server.log" in headers, headers
    assert "jupyter.log" not in headers, "only the named service"
