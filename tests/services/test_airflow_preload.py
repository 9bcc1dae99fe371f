"""The fork server under Airflow's components, with real processes and a stand-in component.

The stand-in is forked exactly as Airflow's components are (same server, same client); it
prints, sleeps or exits as its argv says, so each case takes a fraction of a second.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from services.airflow import preload
from services.engine.processes import poll_until
from services.settings import REPO_ROOT

pytestmark = pytest.mark.stack  # every test runs the fork server or its client as processes

SERVER = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path
    from services.airflow.preload import ForkServer

    timeout = {"request_timeout": float(sys.argv[2])} if len(sys.argv) > 2 else {}
    request = ForkServer(Path(sys.argv[1]), {"FROM_IMPORTS": "kept"}, **timeout).serve()
    if request is not None:  # the forked component: MESSAGE EXIT_CODE|sleep
        message, action = request.argv
        if action == "sleep":  # before saying it runs: a SIGTERM may follow at once
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(7))
        print(f"{message} pid={os.getpid()} pgid={os.getpgrp()} cwd={os.getcwd()} "
              f"marker={os.environ.get('MARKER')} imports={os.environ.get('FROM_IMPORTS')}",
              flush=True)
        if action == "sleep":
            time.sleep(60)
        sys.exit(int(action))
    """
)


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    assert poll_until(predicate, timeout, 0.05), f"timed out after {timeout} s"


def serving(tmp_path: Path, *options: str) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    """The fork server with the stand-in component; options: its request timeout."""
    path = tmp_path / "preload.sock"
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(path), *options], cwd=REPO_ROOT, start_new_session=True
    )
    wait_for(path.exists)
    yield path, process
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=30)
    assert not path.exists(), "the server removes its socket when it stops"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    yield from serving(tmp_path)


@pytest.fixture
def impatient_server(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    yield from serving(tmp_path, "0.5")


def client(path: Path, *argv: str, cwd: Path, **env: str) -> subprocess.Popen:
    command = [sys.executable, "-m", preload.__name__, "run", str(path), "--", *argv]
    return subprocess.Popen(
        command,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **env},
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # like supervisord: each program its own process group
    )


def component_pid(output_line: str) -> int:
    return int(output_line.split("pid=")[1].split()[0])


def sleeping_component(path: Path, name: str, cwd: Path) -> tuple[subprocess.Popen, int]:
    """A client and the pid of its forked stand-in, which sleeps until signalled."""
    run = client(path, name, "sleep", cwd=cwd)
    assert run.stdout is not None, "client() pipes stdout"
    return run, component_pid(run.stdout.readline())


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie nobody has reaped yet (not our child)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_component_gets_the_clients_stdout_cwd_and_environment_and_its_exit_code(
    server, tmp_path: Path
) -> None:
    path, _ = server
    run = client(path, "hello", "3", cwd=tmp_path, MARKER="from-client")
    output, _ = run.communicate(timeout=30)
    assert run.returncode == 3
    assert f"cwd={tmp_path}" in output
    assert "marker=from-client" in output
    assert "imports=kept" in output, "what importing Airflow set stays set in the forks"
    pid = component_pid(output)
    assert f"pgid={pid}" in output, "each component leads its own process group"


def test_stopping_the_client_stops_the_component_and_reports_how_it_ended(
    server, tmp_path: Path
) -> None:
    path, _ = server
    run, pid = sleeping_component(path, "waiting", tmp_path)
    assert psutil.pid_exists(pid)
    os.killpg(run.pid, signal.SIGTERM)  # what supervisord does to stop a program
    assert run.wait(timeout=15) == 7, "the component's own exit code, after its SIGTERM handler"
    wait_for(lambda: gone(pid))


def test_a_killed_client_leaves_no_component_behind(server, tmp_path: Path) -> None:
    path, _ = server
    run, pid = sleeping_component(path, "orphan", tmp_path)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait(timeout=5)
    wait_for(lambda: gone(pid))


def test_a_killed_server_makes_its_clients_stop_their_components(server, tmp_path: Path) -> None:
    path, process = server
    run, pid = sleeping_component(path, "abandoned", tmp_path)
    process.kill()
    process.wait(timeout=5)
    assert run.wait(timeout=20) == 1
    wait_for(lambda: gone(pid))
    path.unlink()  # a killed server cannot remove its socket; the next one replaces it


def test_a_stopped_server_stops_its_components(server, tmp_path: Path) -> None:
    path, process = server
    run, pid = sleeping_component(path, "stopped-with-server", tmp_path)
    process.terminate()
    assert process.wait(timeout=30) == 0
    assert run.wait(timeout=5) == 7, "the client still reports the component's exit"
    assert not psutil.pid_exists(pid)


def test_no_server_is_a_bounded_wait_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "nobody.sock"
    started = time.monotonic()
    command = [sys.executable, "-m", preload.__name__, "run", str(path)]
    result = subprocess.run(
        [*command, "--connect-timeout", "1", "--", "x", "0"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert str(path) in result.stderr and "airflow-preload" in result.stderr
    assert time.monotonic() - started < 15


def test_a_stop_signal_right_after_the_fork_is_not_lost(server, tmp_path: Path) -> None:
    path, process = server
    for _ in range(10):
        run = client(path, "early", "sleep", cwd=tmp_path)
        known = {child.pid for child in psutil.Process(process.pid).children()}

        def forked(known: set[int] = known) -> bool:
            return len(psutil.Process(process.pid).children()) > len(known)

        wait_for(forked)
        os.killpg(run.pid, signal.SIGTERM)  # the component may not have run a line yet
        assert run.wait(timeout=10) in (7, 128 + signal.SIGTERM)


def test_a_bad_request_is_refused_and_the_server_keeps_serving(server, tmp_path: Path) -> None:
    path, process = server
    fds_before = psutil.Process(process.pid).num_fds()
    for payload in (b"not json\n", b'{"cwd": "/"}\n'):
        with socket.socket(socket.AF_UNIX) as raw:
            raw.connect(str(path))
            socket.send_fds(raw, [b"\0"], [0, 1, 2])
            raw.sendall(payload)
            assert raw.recv(100) == b"", "refused: the server hangs up without a pid"
    assert psutil.Process(process.pid).num_fds() == fds_before, "no descriptor kept"
    run = client(path, "after", "0", cwd=tmp_path)
    assert run.wait(timeout=15) == 0


def test_a_component_dies_with_the_server_even_if_its_client_died_too(
    server, tmp_path: Path
) -> None:
    path, process = server
    run, pid = sleeping_component(path, "double-loss", tmp_path)
    os.killpg(run.pid, signal.SIGKILL)
    process.kill()
    run.wait(timeout=5)
    process.wait(timeout=5)
    wait_for(lambda: gone(pid))
    path.unlink()


def still_waiting(connection: socket.socket) -> bool:
    """The server neither answered nor hung up on this connection."""
    connection.setblocking(False)
    try:
        connection.recv(1)
    except BlockingIOError:
        return True
    return False


def test_a_stalled_client_holds_up_no_other(server, tmp_path: Path) -> None:
    path, _ = server
    with socket.socket(socket.AF_UNIX) as silent, socket.socket(socket.AF_UNIX) as halfway:
        silent.connect(str(path))  # connects and sends nothing
        halfway.connect(str(path))  # sends its stdio and half a request, then nothing
        socket.send_fds(halfway, [b"\0"], [0, 1, 2])
        halfway.sendall(b'{"argv": ["never"')
        run = client(path, "served", "0", cwd=tmp_path)
        output, _ = run.communicate(timeout=30)
        assert run.returncode == 0 and output.startswith("served")
        assert still_waiting(silent) and still_waiting(halfway), "served while they stalled"


def test_a_stalled_client_is_dropped_after_the_request_timeout(
    impatient_server, tmp_path: Path
) -> None:
    path, process = impatient_server
    fds_before = psutil.Process(process.pid).num_fds()
    with socket.socket(socket.AF_UNIX) as halfway:
        halfway.connect(str(path))
        socket.send_fds(halfway, [b"\0"], [0, 1, 2])
        halfway.settimeout(30)
        assert halfway.recv(1) == b"", "the server hangs up on it"
    wait_for(lambda: psutil.Process(process.pid).num_fds() == fds_before)
    run = client(path, "after", "0", cwd=tmp_path)
    assert run.wait(timeout=15) == 0
