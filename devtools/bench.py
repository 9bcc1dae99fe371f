"""`nox -s bench`: how fast the stack starts and stops, how much memory it holds idle, and the
same figures for `airflow standalone` and a default `mlflow server`, measured in the same run.

Every process it starts runs in a temporary directory on free ports and is stopped before it
returns; the figures are printed as a table and written as JSON for comparison across commits.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import httpx
import psutil
from rich.console import Console
from rich.table import Table

from devtools.harness import StackRun, free_ports
from services.airflow.preload import program_of
from services.airflow.service import all_components_healthy
from services.bootstrap import sync_command
from services.engine.layout import tail, venv_bin
from services.engine.processes import poll_until, stop_groups
from services.engine.supervisor import marked_processes
from services.report import StatusReport
from services.settings import REPO_ROOT

console = Console(stderr=True, highlight=False, soft_wrap=True, width=120)
WAIT_LIMIT = 300.0
DAG_RUN_LIMIT = 600.0


# -- measuring ------------------------------------------------------------------------------


def pss_mb(processes: list[psutil.Process]) -> float:
    """Proportional set size: shared pages split between the processes that share them."""
    total = 0
    for process in processes:
        try:
            total += process.memory_full_info().pss
        except psutil.Error:
            continue
    return total / 2**20


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            continue
    return total


def idle_figures(processes: Callable[[], list[psutil.Process]], seconds: float) -> dict:
    """Memory after `seconds` idle, and the CPU the processes burnt meanwhile."""
    before = cpu_seconds(processes())
    time.sleep(seconds)
    now = processes()
    return {
        "pss_mb": round(pss_mb(now), 1),
        "processes": len(now),
        "idle_cpu_percent": round(100 * (cpu_seconds(now) - before) / seconds, 1),
    }


def wait_until(check: Callable[[], bool], limit: float, what: str, interval: float = 0.2) -> float:
    """Seconds until `check` says yes; TimeoutError after `limit`."""
    started = time.monotonic()
    if not poll_until(check, limit, interval=interval):
        raise TimeoutError(f"{what} not ready within {limit:.0f} s")
    return time.monotonic() - started


def median(values: list[float]) -> float:
    return round(statistics.median(values), 1)


# -- the baselines ----------------------------------------------------------------------------


@contextmanager
def process_group(command: list[str], env: dict[str, str], log: Path) -> Iterator[psutil.Process]:
    """Run a command in its own session and stop its whole tree afterwards."""
    with log.open("ab") as output:
        popen = subprocess.Popen(
            command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    root = psutil.Process(popen.pid)
    try:
        yield root
    finally:
        groups = {popen.pid}
        for process in _children(root):  # children that made their own groups
            with _suppress():
                groups.add(os.getpgid(process.pid))
        stop_groups(groups, 20, reap=popen.poll)
        popen.wait(timeout=20)


def _family(root: psutil.Process) -> Callable[[], list[psutil.Process]]:
    """A process and its descendants as they are when asked (children come and go)."""
    return lambda: [root, *_children(root)]


def _children(root: psutil.Process) -> list[psutil.Process]:
    try:
        return root.children(recursive=True)
    except psutil.Error:
        return []


def _suppress() -> suppress:
    return suppress(OSError, psutil.Error)


def baseline_env() -> dict[str, str]:
    """The caller's environment without our settings, with `.venv/bin` first on PATH (as in
    an activated environment: `airflow standalone` runs `airflow` subcommands from PATH)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "H2OPS_"))}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def airflow_standalone(workdir: Path, runs: int, idle: float) -> dict:
    """`airflow standalone` with its defaults, in its own AIRFLOW_HOME, on a free port."""
    (port,) = free_ports(1)
    home = workdir / "airflow-standalone"
    env = baseline_env()
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__API__PORT=str(port))
    probe = all_components_healthy(f"http://127.0.0.1:{port}/api/v2/monitor/health")
    log = workdir / "airflow-standalone.log"
    figures: dict = {"start_s": []}
    with httpx.Client(timeout=3) as client:
        for attempt in range(runs + 1):  # the first run initialises the DB, like our first up
            started = time.monotonic()
            with process_group([venv_bin("airflow"), "standalone"], env, log) as root:
                wait_until(lambda: probe(client).healthy, WAIT_LIMIT, "airflow standalone")
                elapsed = time.monotonic() - started
                if attempt > 0:
                    figures["start_s"].append(round(elapsed, 1))
                if attempt == runs:
                    figures.update(idle_figures(_family(root), idle))
    figures["start_median_s"] = median(figures["start_s"])
    return figures


def mlflow_server(workdir: Path, runs: int, idle: float) -> dict:
    """`mlflow server` as its docs start it: defaults but for a SQLite store and the port."""
    (port,) = free_ports(1)
    store = f"sqlite:///{workdir / 'mlflow-baseline.db'}"
    command = [venv_bin("mlflow"), "server", "--port", str(port), "--backend-store-uri", store]
    env = baseline_env()
    figures: dict = {"start_s": []}
    with httpx.Client(timeout=3) as client:

        def healthy() -> bool:
            try:
                return client.get(f"http://127.0.0.1:{port}/health").is_success
            except httpx.HTTPError:
                return False

        for attempt in range(runs + 1):
            started = time.monotonic()
            with process_group(command, env, workdir / "mlflow-baseline.log") as root:
                wait_until(healthy, WAIT_LIMIT, "mlflow server")
                if attempt > 0:
                    figures["start_s"].append(round(time.monotonic() - started, 1))
                if attempt == runs:
                    figures.update(idle_figures(_family(root), idle))
    figures["start_median_s"] = median(figures["start_s"])
    return figures


# -- H2Ops ------------------------------------------------------------------------------------


def h2ops_stack(
    workdir: Path, runs: int, idle: float, pipeline: bool, database: str = "sqlite"
) -> dict:
    # A busy machine may need more than the default 180 s per service; it changes no figure.
    extra = {
        "H2OPS_DATABASE": database,
        "H2OPS_READY_TIMEOUT": os.environ.get("H2OPS_READY_TIMEOUT", "600"),
    }
    run = StackRun(workdir / f"h2ops-{database}", extra_env=extra)
    state = run.base / "state"
    figures: dict = {"up_s": [], "down_s": [], "first_up_s": None}
    started = time.monotonic()
    try:
        run.up()  # first up: DB migrations, buckets, credentials (if it fails, `down` below)
        figures["first_up_s"] = round(time.monotonic() - started, 1)
        figures["services"] = [service.name for service in run.status().stack.started]
        for attempt in range(runs):
            figures["down_s"].append(_timed(run.down))
            figures["left_running_after_down"] = len(marked_processes(state))
            figures["up_s"].append(_timed(run.up))
            if attempt == runs - 1:
                figures.update(idle_figures(lambda: marked_processes(state), idle))
                figures["pss_by_program_mb"] = pss_by_program(run)
        if pipeline and (latency := training_to_inference(run)) is not None:
            figures["training_to_inference_s"] = latency
            figures["with_champion"] = with_champion(run, state, idle)
    finally:
        figures["down_s"].append(_timed(run.down))
        figures["left_running_after_down"] = len(marked_processes(state))
    figures["up_median_s"] = median(figures["up_s"])
    figures["down_median_s"] = median(figures["down_s"])
    return figures


def with_champion(run: StackRun, state: Path, idle: float) -> dict:
    """The stack as a user has it once real work happened: `down`, then `up` until every
    service is healthy, the served champion loaded included; then its idle memory."""
    run.down()
    figures: dict = {"up_s": _timed(run.up)}
    figures["serving"] = run.status().service("serving").detail
    figures.update(idle_figures(lambda: marked_processes(state), idle))
    figures["pss_by_program_mb"] = pss_by_program(run)
    return figures


def _timed(action: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    return round(time.monotonic() - started, 1)


class Reporting(Protocol):
    """A stack `status --json` can be asked of: a StackRun, or the user's running stack."""

    def status(self) -> StatusReport: ...


def pss_by_program(run: Reporting) -> dict[str, float]:
    """Where the memory goes: each supervised program with its children.

    Airflow's components are forks of the airflow-preload program, not children of their own
    programs; each fork (told apart by its title, `airflow scheduler ...`) counts for its own.
    """
    families: dict[str, list[psutil.Process]] = {}
    for service in run.status().services:
        for program in service.programs:
            if program.pid:
                with _suppress():
                    root = psutil.Process(program.pid)
                    families[program.name] = [root, *_children(root)]
    server = families.get("airflow-preload")
    if server:
        with _suppress():
            for fork in server[0].children():
                owner = program_of(fork.cmdline())
                if owner in families:
                    family = [fork, *_children(fork)]
                    families[owner] += family
                    moved = {process.pid for process in family}
                    server[:] = [process for process in server if process.pid not in moved]
    return {name: round(pss_mb(family), 1) for name, family in families.items()}


def airflow_client(report: StatusReport) -> httpx.Client:
    """An HTTP client of the stack's Airflow, logged in as its user (a token for a day). It is
    open already (it fetched the token), so `with` refuses it: close it with `closing`."""
    client = httpx.Client(base_url=report.service("airflow").url, timeout=30)
    credentials = report.credentials
    response = client.post(
        "/auth/token",
        json={
            "username": credentials["airflow_username"],
            "password": credentials["airflow_password"],
        },
    )
    response.raise_for_status()
    client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
    return client


def steady_pss_by_program(
    run: Reporting, samples: int = 5, interval: float = 2.0
) -> dict[str, float]:
    """Each program's smallest `pss_by_program` over a few samples: a program's steady size,
    without the children that come and go (the DAG processor forks one per parse every 10 s,
    which would make a single sample a matter of luck)."""
    taken = []
    for sample in range(samples):
        if sample:
            time.sleep(interval)
        taken.append(pss_by_program(run))
    names = {name for memory in taken for name in memory}
    return {name: min(m[name] for m in taken if name in m) for name in sorted(names)}


def training_to_inference(run: StackRun) -> float | None:
    """Seconds from triggering `example_training` to `example_inference` finishing."""
    with closing(airflow_client(run.status())) as client:

        def dag_ids() -> set[str]:
            return {d["dag_id"] for d in client.get("/api/v2/dags").json().get("dags", [])}

        try:
            wait_until(lambda: {"example_training", "example_inference"} <= dag_ids(), 120, "DAGs")
        except TimeoutError:
            console.print("example DAGs not found: skipping the pipeline figure")
            return None
        for dag in ("example_training", "example_inference"):
            client.patch(f"/api/v2/dags/{dag}", json={"is_paused": False})
        started = time.monotonic()
        client.post(
            "/api/v2/dags/example_training/dagRuns", json={"logical_date": None}
        ).raise_for_status()

        def inference_done() -> bool:
            runs = client.get("/api/v2/dags/example_inference/dagRuns").json()["dag_runs"]
            states = {r["state"] for r in runs}
            if "failed" in states:
                raise RuntimeError("example_inference failed")
            return "success" in states

        wait_until(inference_done, DAG_RUN_LIMIT, "example_inference")
        return round(time.monotonic() - started, 1)


def fresh_clone_first_up(workdir: Path) -> dict:
    """A new clone with a warm package cache: environment, migrations, buckets, all healthy."""
    clone = workdir / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(clone)], check=True)
    env = {
        k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")
    }
    started = time.monotonic()
    subprocess.run(sync_command(), cwd=clone, env=env, check=True, capture_output=True)
    synced = time.monotonic() - started
    run = StackRun(workdir / "clone-state", root=clone, python=str(clone / ".venv/bin/python"))
    try:
        run.up()
        total = time.monotonic() - started
    finally:
        run.down()
    return {"sync_s": round(synced, 1), "first_up_s": round(total, 1)}


# -- the report -------------------------------------------------------------------------------


def ratio(ours: float | None, theirs: float | None) -> str:
    if not ours or not theirs:
        return ""
    return f"{ours / theirs:.2f}"


def print_table(results: dict) -> None:
    stack, standalone = results.get("h2ops", {}), results.get("airflow_standalone", {})
    mlflow = results.get("mlflow_server", {})
    if "error" in stack:
        return
    table = Table(title=f"H2Ops benchmark ({results['machine']['summary']})", title_justify="left")
    ours = f"H2Ops ({', '.join(stack.get('services', [])) or 'its services'})"
    for column in ("figure", ours, "airflow standalone", "ratio", "mlflow server"):
        table.add_column(column)
    rows = [
        (
            "up to all healthy, s (median)",
            stack.get("up_median_s"),
            standalone.get("start_median_s"),
        ),
        ("idle memory, PSS MB", stack.get("pss_mb"), standalone.get("pss_mb")),
        ("idle CPU, %", stack.get("idle_cpu_percent"), standalone.get("idle_cpu_percent")),
        ("processes", stack.get("processes"), standalone.get("processes")),
    ]
    mlflow_column = [
        mlflow.get("start_median_s"),
        mlflow.get("pss_mb"),
        mlflow.get("idle_cpu_percent"),
        mlflow.get("processes"),
    ]
    for (name, ours, theirs), other in zip(rows, mlflow_column, strict=True):
        table.add_row(name, _fmt(ours), _fmt(theirs), ratio(ours, theirs), _fmt(other))
    table.add_row("down, s (median)", _fmt(stack.get("down_median_s")), "", "", "")
    table.add_row("left running after down", _fmt(stack.get("left_running_after_down")), "", "", "")
    table.add_row(
        "example_training -> example_inference, s",
        _fmt(stack.get("training_to_inference_s")),
        "",
        "",
        "",
    )
    champion = stack.get("with_champion", {})
    for name, ours_key, theirs_key in (
        ("champion served: up to all healthy, s", "up_s", "start_median_s"),
        ("champion served: idle memory, PSS MB", "pss_mb", "pss_mb"),
    ):
        if champion:
            ours, theirs = champion.get(ours_key), standalone.get(theirs_key)
            table.add_row(name, _fmt(ours), _fmt(theirs), ratio(ours, theirs), "")
    if "sync_s" in results.get("fresh_clone", {}):
        fresh = results["fresh_clone"]
        table.add_row("fresh clone: uv sync, s", _fmt(fresh["sync_s"]), "", "", "")
        table.add_row("fresh clone: sync + first up, s", _fmt(fresh["first_up_s"]), "", "", "")
    console.print(table)
    by_program = stack.get("pss_by_program_mb", {})
    if by_program:
        console.print("PSS by program, MB: " + ", ".join(f"{k} {v}" for k, v in by_program.items()))


def print_databases(results: dict) -> None:
    """The stack on each database measured, side by side (`--databases sqlite,postgres`)."""
    measured = {
        database: results[key]
        for database, key in (("sqlite", "h2ops"), ("postgres", "h2ops_postgres"))
        if key in results and "error" not in results[key]
    }
    if len(measured) < 2:
        return
    table = Table(title="Metadata database: SQLite vs PostgreSQL", title_justify="left")
    table.add_column("figure")
    for database in measured:
        table.add_column(database)
    table.add_column("ratio")
    for name, key in (
        ("first up (initdb, migrations), s", "first_up_s"),
        ("up to all healthy, s (median)", "up_median_s"),
        ("down, s (median)", "down_median_s"),
        ("idle memory, PSS MB", "pss_mb"),
        ("idle CPU, %", "idle_cpu_percent"),
        ("processes", "processes"),
    ):
        sqlite, postgres = (measured[d].get(key) for d in ("sqlite", "postgres"))
        table.add_row(name, _fmt(sqlite), _fmt(postgres), ratio(postgres, sqlite))
    console.print(table)
    postgres_pss = measured["postgres"].get("pss_by_program_mb", {}).get("postgres")
    if postgres_pss is not None:
        console.print(f"PostgreSQL itself (server and its workers), PSS MB: {postgres_pss}")


def _fmt(value: object) -> str:
    return "" if value is None else str(value)


def machine() -> dict:
    memory = psutil.virtual_memory().total / 2**30
    cores = os.cpu_count()
    summary = f"{cores} cores, {memory:.0f} GiB, {platform.system()} {platform.machine()}"
    return {"cores": cores, "memory_gib": round(memory, 1), "summary": summary}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="timed starts per subject")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds idle before memory")
    parser.add_argument("--no-baselines", action="store_true", help="skip standalone/mlflow")
    parser.add_argument("--no-pipeline", action="store_true", help="skip the example DAG runs")
    parser.add_argument("--no-fresh-clone", action="store_true", help="skip the clone figure")
    parser.add_argument(
        "--databases",
        default="sqlite",
        help="the stack on each of these (comma-separated): sqlite, postgres, or sqlite,postgres",
    )
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "bench-results")
    args = parser.parse_args(argv)
    databases = [name.strip() for name in args.databases.split(",") if name.strip()]
    if not databases or set(databases) - {"sqlite", "postgres"}:
        parser.error(f"--databases {args.databases!r}: use sqlite, postgres or sqlite,postgres")

    results: dict = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "machine": machine(),
        "python": sys.version.split()[0],
        "settings": {"runs": args.runs, "idle_seconds": args.idle, "databases": databases},
    }
    args.output.mkdir(parents=True, exist_ok=True)
    path = args.output / f"bench-{results['when'].replace(':', '')}-{results['commit']}.json"
    runs, idle = args.runs, args.idle
    sections: list[tuple[str, str, Callable[[Path], dict]]] = [
        (
            "h2ops" if database == "sqlite" else f"h2ops_{database}",
            f"H2Ops on {database}: first up, then {runs} x (down, up), {idle:.0f} s idle",
            lambda work, database=database: h2ops_stack(  # type: ignore[misc]
                work, runs, idle, not args.no_pipeline, database
            ),
        )
        for database in databases
    ]
    if not args.no_baselines:
        sections += [
            (
                "airflow_standalone",
                f"airflow standalone: {runs + 1} starts, {idle:.0f} s idle",
                lambda work: airflow_standalone(work, runs, idle),
            ),
            (
                "mlflow_server",
                f"mlflow server: {runs + 1} starts, {idle:.0f} s idle",
                lambda work: mlflow_server(work, runs, idle),
            ),
        ]
    if not args.no_fresh_clone:
        sections.append(("fresh_clone", "fresh clone: uv sync and first up", fresh_clone_first_up))
    with tempfile.TemporaryDirectory(prefix="h2ops-bench-") as scratch:
        for key, label, measure in sections:
            console.print(label)
            try:
                results[key] = measure(Path(scratch))
            except Exception as error:  # one failed figure must not lose the others
                results[key] = {"error": f"{type(error).__name__}: {error}"}
                console.print(f"[red]{key} failed:[/red] {results[key]['error']}")
                for log in sorted(Path(scratch).glob("*.log")):
                    console.print(f"last lines of {log.name}:\n" + "\n".join(tail(log, 15)))
            path.write_text(json.dumps(results, indent=2))  # after each, so nothing is lost
    print_table(results)
    print_databases(results)
    console.print(f"Figures written to {path}")
    return (
        0
        if not any("error" in value for value in results.values() if isinstance(value, dict))
        else 1
    )


def _commit() -> str:
    result = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    return result.stdout.strip() or "unknown"


if __name__ == "__main__":
    sys.exit(main())
