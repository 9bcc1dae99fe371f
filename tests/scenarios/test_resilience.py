"""The default stack (Airflow on SQLite) under faults and load, on a stack of this module's own:
a scheduler killed mid-task, then a burst of triggers while tasks run.

The order matters: the killed scheduler's run needs a quiet stack, the burst leaves it busy.
That is also why it has a stack of its own rather than the shared one.

Cost: one stack start and stop, two training runs each interrupted by a killed scheduler
(retries 5 s apart, orphans reset after 30 s), and 20 triggers: the slowest scenario file.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from typing import Any

import httpx
import psutil
import pytest

from devtools.bench import wait_until
from devtools.testing import RunningStack, StackRun, running
from services.airflow.preload import program_of
from services.engine.status import ProgramState

pytestmark = pytest.mark.stack
DAG = "example_training"
BURST = 20
SPREAD_SECONDS = 1.0
PARSE_SECONDS = 120
RUN_SECONDS = 300
SCHEDULE_SECONDS = 180
AIRFLOW_PROGRAMS = {
    "airflow-preload",
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
}


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    yield from running(StackRun(tmp_path_factory.mktemp("resilience")))


@pytest.fixture(scope="module")
def airflow(own_stack: RunningStack) -> Iterator[httpx.Client]:
    with own_stack.airflow_api() as client:
        wait_until(lambda: client.get(f"/dags/{DAG}").is_success, PARSE_SECONDS, DAG)
        client.patch(f"/dags/{DAG}", json={"is_paused": False}).raise_for_status()
        yield client


def task_instances(airflow: httpx.Client, run_id: str) -> dict[str, dict[str, Any]]:
    response = airflow.get(f"/dags/{DAG}/dagRuns/{run_id}/taskInstances")
    response.raise_for_status()
    return {ti["task_id"]: ti for ti in response.json()["task_instances"]}


def run_state(airflow: httpx.Client, run_id: str) -> str:
    response = airflow.get(f"/dags/{DAG}/dagRuns/{run_id}")
    response.raise_for_status()
    return response.json()["state"]


def scheduler_pid(stack: RunningStack, target: str) -> int:
    """The airflow-scheduler program's pid from `status`, or the scheduler process itself: with
    airflow-preload the program is a client, and the scheduler a fork of the preload server."""
    programs = stack.programs("airflow")
    if target == "program" or "airflow-preload" not in programs:
        pid = programs["airflow-scheduler"].pid
        assert pid is not None, "the scheduler program runs"
        return pid
    server = psutil.Process(programs["airflow-preload"].pid)
    return next(
        child.pid
        for child in server.children()
        if program_of(child.cmdline()) == "airflow-scheduler"
    )


@pytest.mark.parametrize("target", ["program", "process"])
@pytest.mark.timeout(2 * RUN_SECONDS + 120)  # two waits of RUN_SECONDS, then diagnostics
def test_a_run_survives_its_scheduler_being_killed_mid_task(
    own_stack: RunningStack, airflow: httpx.Client, target: str
) -> None:
    """A killed scheduler takes its LocalExecutor workers with it. Its task either reports a
    failure (the example's retries run it again) or stays "running" until the next scheduler
    resets it (within a minute, not Airflow's default five)."""
    response = airflow.post(f"/dags/{DAG}/dagRuns", json={"logical_date": None})
    response.raise_for_status()
    run_id = response.json()["dag_run_id"]
    wait_until(
        lambda: task_instances(airflow, run_id)["train"]["state"] == "running",
        RUN_SECONDS,
        "the train task running",
    )
    killed = scheduler_pid(own_stack, target)
    os.kill(killed, signal.SIGKILL)

    wait_until(
        lambda: run_state(airflow, run_id) in ("success", "failed"), RUN_SECONDS, "run finished"
    )
    tasks = task_instances(airflow, run_id)
    assert run_state(airflow, run_id) == "success", tasks
    assert tasks["train"]["try_number"] >= 2, "the killed try ran again"
    assert scheduler_pid(own_stack, target) != killed


def test_a_burst_of_triggers_is_accepted_and_scheduled_and_nothing_crashes(
    own_stack: RunningStack, airflow: httpx.Client
) -> None:
    """20 triggers at once (each also writes Airflow's audit log) while tasks run: on SQLite
    this used to answer "Database error" after 25 s and crash the components that waited."""
    before = own_stack.programs("airflow")
    assert set(before) == AIRFLOW_PROGRAMS

    responses = asyncio.run(_trigger_together(airflow, BURST))

    failed = [(r.status_code, r.text[:300]) for r in responses if r.status_code != 200]
    assert not failed, failed
    run_ids = {response.json()["dag_run_id"] for response in responses}
    assert len(run_ids) == BURST

    # The scheduler starts as many as the DAG may run at once, and their tasks run and finish.
    details = airflow.get(f"/dags/{DAG}/details")
    details.raise_for_status()
    started = min(BURST, details.json()["max_active_runs"])

    def scheduled() -> bool:
        response = airflow.get(f"/dags/{DAG}/dagRuns", params={"limit": 100})
        response.raise_for_status()
        ours = [run for run in response.json()["dag_runs"] if run["dag_run_id"] in run_ids]
        return sum(run["state"] != "queued" for run in ours) >= started

    wait_until(scheduled, SCHEDULE_SECONDS, f"{started} of the burst's runs started")
    wait_until(
        lambda: _succeeded_tasks(airflow, run_ids) >= 2,
        SCHEDULE_SECONDS,
        "two of the burst's tasks succeeded",
    )

    after = own_stack.programs("airflow")
    assert {name: p.pid for name, p in after.items()} == {
        name: p.pid for name, p in before.items()
    }, "an Airflow program died and was restarted"
    assert all(program.state is ProgramState.RUNNING for program in after.values()), after


async def _trigger_together(airflow: httpx.Client, count: int) -> list[httpx.Response]:
    """`count` POSTs to dagRuns on a connection each, started SPREAD_SECONDS apart in all: they
    overlap, and arrive while earlier ones are being answered, as a script's calls would."""
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(
        base_url=str(airflow.base_url), headers=airflow.headers, timeout=120, limits=limits
    ) as client:

        async def trigger(index: int) -> httpx.Response:
            await asyncio.sleep(index * SPREAD_SECONDS / count)
            return await client.post(f"/dags/{DAG}/dagRuns", json={"logical_date": None})

        return await asyncio.gather(*(trigger(index) for index in range(count)))


def _succeeded_tasks(airflow: httpx.Client, run_ids: set[str]) -> int:
    response = airflow.get(
        f"/dags/{DAG}/dagRuns/~/taskInstances", params={"state": "success", "limit": 1000}
    )
    response.raise_for_status()
    return sum(ti["dag_run_id"] in run_ids for ti in response.json()["task_instances"])
