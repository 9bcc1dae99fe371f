"""Programs supervisord gave up on come back by themselves, and `status` says why they died and
that they are retried: the engine's re-arming listener (services/engine/rearm.py) with a
stand-in service, real supervisord and processes.

Cost: one stand-in stack; about 40 s, most of it supervisord's own five quick retries before
it gives up (FATAL), then the first re-arm 5 s later (checked every 5 s)."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.harness import free_ports
from services.engine.layout import StateLayout
from services.engine.processes import poll_until
from services.engine.rearm import LISTENER, MAX_DELAY, delay_before
from services.engine.records import Program, Service, http_ok
from services.engine.stack import Stack
from services.engine.status import ProgramState, ServiceState
from services.engine.supervisor import marked_processes

# supervisord's five retries (1 + 2 + 3 + 4 + 5 s of backoff) and a loaded machine's slack.
FATAL_SECONDS = 60
# The first re-arm is due 5 s after FATAL, seen on a 5 s tick; then the program starts.
BACK_SECONDS = 45

# Dies at once (a shell, so even a loaded machine sees it die within supervisord's 1 s) as a
# full disk makes programs die while `broken` exists; serves HTTP otherwise.
FLAKY = """
if [ -e "$1" ]; then echo 'sqlite3.OperationalError: database or disk is full'; exit 1; fi
exec "$3" -m http.server "$2" --bind 127.0.0.1
"""


@pytest.fixture
def flaky(tmp_path: Path) -> Iterator[tuple[Stack, Path]]:
    (port,) = free_ports(1)
    broken = tmp_path / "broken"
    url = f"http://127.0.0.1:{port}"
    script = tmp_path / "flaky.sh"
    script.write_text(FLAKY)
    command = ["/bin/sh", str(script), str(broken), str(port), sys.executable]
    service = Service("flaky", "Flaky", [Program("flaky", command)], url, http_ok(url))
    engine = Stack(
        layout=StateLayout(tmp_path / "state"),
        declared=[service],
        environment={},
        host="127.0.0.1",
        ready_timeout=30,
        home=tmp_path,
    )
    try:
        yield engine, broken
    finally:
        stopped = engine.down()
        assert LISTENER not in stopped, "the listener is the engine's, not a program to list"
        assert marked_processes(engine.layout.root) == []


def test_delays_grow_then_stay_bounded() -> None:
    delays = [delay_before(attempt) for attempt in range(1, 9)]
    assert delays == sorted(delays) and delays[0] < delays[-1] == MAX_DELAY
    with pytest.raises(ValueError, match="attempt must be 1 or more, not 0"):
        delay_before(0)


def fatal(engine: Stack) -> bool:
    return engine.status().service("flaky").programs[0].state is ProgramState.FATAL


@pytest.mark.stack
def test_a_program_supervisord_gave_up_on_is_named_retried_and_back(
    flaky: tuple[Stack, Path],
) -> None:
    engine, broken = flaky
    engine.up(["flaky"])
    assert poll_until(lambda: engine.status().service("flaky").healthy, 10)
    listener = engine.supervisor.states()[LISTENER]
    assert listener.state is ProgramState.RUNNING, "the engine added its listener to the stack"

    broken.touch()
    pid = engine.status().service("flaky").pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert poll_until(lambda: fatal(engine), FATAL_SECONDS, 1), "supervisord gave up"

    service = engine.status().service("flaky")
    assert service.state is ServiceState.FAILED and service.retrying, service
    assert service.detail.startswith("flaky fatal; state dir's filesystem was full (now "), (
        service.detail
    )
    assert "retrying: attempt 1 in " in service.detail
    program = type(service).from_json(service.to_json()).programs[0]
    assert program.attempt == 1 and program.next_try is not None, "--json says it too"
    assert program.next_try - time.time() <= delay_before(1)

    broken.unlink()  # the cause is gone: no `up`, no `restart`
    started = time.monotonic()
    assert poll_until(lambda: engine.status().service("flaky").healthy, BACK_SECONDS, 1), (
        engine.status().service("flaky")
    )
    print(f"back {time.monotonic() - started:.1f} s after the cause went")


@pytest.mark.stack
def test_a_failed_program_that_is_stopped_stays_stopped(flaky: tuple[Stack, Path]) -> None:
    """`down` (and a failed `up`) make a FATAL program STOPPED: the listener leaves it alone."""
    engine, broken = flaky
    engine.up(["flaky"])
    broken.touch()
    pid = engine.status().service("flaky").pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert poll_until(lambda: fatal(engine), FATAL_SECONDS, 1)
    engine.down(["flaky"])
    broken.unlink()
    time.sleep(delay_before(1) + 6)  # past the first re-arm and the tick that would start it
    service = engine.status().service("flaky")
    assert service.state is ServiceState.STOPPED and not service.retrying, service
