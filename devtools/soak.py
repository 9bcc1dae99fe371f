"""`nox -s soak -- --minutes N`: does the stack stay the same over hours of work?

It triggers `example_training` once a minute for N minutes (each run's champion update triggers
`example_inference`; a minute whose previous training still runs is skipped, as a schedule with
one active run at most and no catch-up would) and measures what a laptop left running for days
suffers from: the memory (PSS) of each program, counted as the bench counts it (the smallest of
five samples), at the start, after a warm-up (ten minutes) and at the end, each time with no run
going; failed runs; and how much the state dir grew, by top-level folder.

By default it starts a stack of its own, in a temporary state dir on free ports, and stops and
deletes it afterwards, so the figures do not depend on what a user's stack holds; `--running`
soaks the stack of the current settings instead (started by `nox -s up`; left running).
The figures are printed and written as JSON beside the bench's (`bench-results/`). It exits 1
if a run failed or did not finish, or a program grew more than 10 % after the warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.table import Table

from devtools.bench import (
    Reporting,
    airflow_client,
    console,
    machine,
    steady_pss_by_program,
    wait_until,
)
from devtools.bench import _commit as commit_of
from devtools.harness import StackRun
from services.report import StatusReport
from services.settings import REPO_ROOT

TRAINING, INFERENCE = "example_training", "example_inference"
GROWTH_LIMIT = 0.10  # after the warm-up, a program may grow by this fraction at most
ACTIVE = {"queued", "running"}
DRAIN_LIMIT = 900.0  # after the last trigger, runs still going have this long to finish
TRIES = 6
POLL = 5.0  # seconds between asking Airflow whether runs still go: the soak must not load it
QUIET_LIMIT = 300.0  # the warm-up figure waits this long at most for the runs to finish


@dataclass
class RunningStack:
    """The stack of the caller's settings (`nox -s up`), asked through the same CLI."""

    def status(self) -> StatusReport:
        result = subprocess.run(
            [sys.executable, "-m", "services", "status", "--json"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        try:
            return StatusReport.from_json(json.loads(result.stdout))
        except (json.JSONDecodeError, KeyError):
            raise SystemExit(f"soak --running: no stack to ask ({result.stderr.strip()})") from None


# -- measuring ------------------------------------------------------------------------------


def disk_usage(state_dir: Path) -> dict[str, int]:
    """Bytes the state dir holds on disk (allocated blocks, as `du` counts), by top-level
    entry and in total; files that vanish while it walks (a task's log rotating) are skipped."""
    usage: dict[str, int] = {}
    for entry in sorted(state_dir.iterdir()):
        usage[entry.name] = _allocated(entry)
    usage["total"] = sum(usage.values())
    return usage


def _allocated(path: Path) -> int:
    try:
        total = path.lstat().st_blocks * 512
    except OSError:
        return 0
    if path.is_dir() and not path.is_symlink():
        for folder, dirs, files in os.walk(path, onerror=lambda _: None):
            for name in [*dirs, *files]:
                try:
                    total += os.lstat(os.path.join(folder, name)).st_blocks * 512
                except OSError:
                    continue
    return total


def snapshot(stack: Reporting, state_dir: Path, minute: float) -> dict[str, Any]:
    memory = steady_pss_by_program(stack)
    return {
        "minute": round(minute, 1),
        "pss_by_program_mb": memory,
        "pss_total_mb": round(sum(memory.values()), 1),
        "state_dir_bytes": disk_usage(state_dir),
    }


# -- judging --------------------------------------------------------------------------------


def growth(before: dict[str, float], after: dict[str, float]) -> dict[str, float | None]:
    """Each program's growth as a fraction of `before` (None: absent from one of them)."""
    return {
        name: round(after[name] / before[name] - 1, 3)
        if before.get(name) and name in after
        else None
        for name in sorted(set(before) | set(after))
    }


def verdict(results: dict[str, Any]) -> list[str]:
    """What missed the goal, one line each; empty when the soak passed."""
    problems = []
    for dag, counts in results["runs"].items():
        bad = {state: n for state, n in counts["states"].items() if state != "success"}
        if bad:
            problems.append(f"{dag}: runs not successful: {bad}")
        if counts.get("trigger_errors"):
            problems.append(f"{dag}: {counts['trigger_errors']} trigger(s) refused")
    if not results["runs"][INFERENCE]["states"].get("success"):
        problems.append(f"{INFERENCE}: never ran")
    for name, fraction in results.get("growth_after_warmup", {}).items():
        if fraction is not None and fraction > GROWTH_LIMIT:
            problems.append(
                f"{name} grew {fraction:.0%} after the warm-up (limit {GROWTH_LIMIT:.0%})"
            )
    return problems


# -- driving --------------------------------------------------------------------------------


class Airflow:
    """The REST calls the soak makes, logging in again when the token expires."""

    def __init__(self, stack: Reporting) -> None:
        self.stack = stack
        self.client = airflow_client(stack.status())

    def call(self, method: str, path: str, **request: Any) -> Any:
        for attempt in range(TRIES):  # an hour's run should outlast a moment of unreachability
            try:
                response = self.client.request(method, path, **request)
                break
            except httpx.TransportError as error:
                if attempt == TRIES - 1:
                    raise
                console.print(f"[yellow]{method} {path}: {error!r}; trying again[/yellow]")
                time.sleep(10)
        if response.status_code == 401:
            self.client.close()
            self.client = airflow_client(self.stack.status())
            response = self.client.request(method, path, **request)
        response.raise_for_status()
        return response.json()

    def runs(self, dag: str, since: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while True:
            page = self.call(
                "GET",
                f"/api/v2/dags/{dag}/dagRuns",
                params={"limit": 100, "offset": len(found), "run_after_gte": since},
            )["dag_runs"]
            found += page
            if len(page) < 100:
                return found

    def active(self, since: str, dags: tuple[str, ...] = (TRAINING, INFERENCE)) -> bool:
        return any(run["state"] in ACTIVE for dag in dags for run in self.runs(dag, since))

    def tasks(self, dag: str, run_id: str) -> list[dict[str, Any]]:
        found = self.call("GET", f"/api/v2/dags/{dag}/dagRuns/{run_id}/taskInstances")
        return list(found["task_instances"])


def task_line(task: dict[str, Any]) -> str:
    return f"{task['task_id']}: {task['state']} (try {task['try_number']})"


def soak(
    stack: Reporting,
    state_dir: Path,
    minutes: int,
    every: float,
    warmup: float,
    results: dict[str, Any],
) -> None:
    """Fills in `results` as it goes, so what was measured before an error is kept."""
    airflow = Airflow(stack)
    wait_until(
        lambda: (
            {TRAINING, INFERENCE}
            <= {d["dag_id"] for d in airflow.call("GET", "/api/v2/dags")["dags"]}
        ),
        300,
        "the example DAGs",
        POLL,
    )
    for dag in (TRAINING, INFERENCE):
        airflow.call("PATCH", f"/api/v2/dags/{dag}", json={"is_paused": False})
    since = datetime.now(UTC).isoformat()
    started = time.monotonic()

    def minute() -> float:
        return (time.monotonic() - started) / 60

    results["snapshots"] = {"start": snapshot(stack, state_dir, 0)}
    trigger_errors = skipped = 0
    for number in range(minutes):
        due = started + number * every
        time.sleep(max(0.0, due - time.monotonic()))
        if "warmup" not in results["snapshots"] and minute() >= warmup:
            # Measured once no run is going, as at the start and the end (a running task's
            # processes count in the scheduler's family); minutes spent waiting are skipped.
            try:
                wait_until(lambda: not airflow.active(since), QUIET_LIMIT, "a quiet moment", POLL)
            except TimeoutError as error:
                console.print(f"[red]{error}: measured while runs go on[/red]")
            results["snapshots"]["warmup"] = snapshot(stack, state_dir, minute())
        if time.monotonic() > due + every:
            skipped += 1
            console.print(f"minute {number + 1}/{minutes}: skipped (measuring took it)")
            continue
        # As a schedule with `max_active_runs=1` and no catch-up would: a minute whose
        # previous training still runs is skipped, so a slow machine is not buried in a queue.
        if airflow.active(since, (TRAINING,)):
            skipped += 1
            console.print(f"minute {number + 1}/{minutes}: skipped (the last run still goes)")
            continue
        try:
            airflow.call("POST", f"/api/v2/dags/{TRAINING}/dagRuns", json={"logical_date": None})
        except httpx.HTTPError as error:
            trigger_errors += 1
            console.print(f"[red]minute {number + 1}: trigger refused:[/red] {error}")
            continue
        console.print(f"minute {number + 1}/{minutes}: triggered")
    try:
        wait_until(lambda: not airflow.active(since), DRAIN_LIMIT, "the last runs", POLL)
    except TimeoutError as error:
        console.print(f"[red]{error}[/red]")
    results["snapshots"]["end"] = snapshot(stack, state_dir, minute())
    results["runs"] = {}
    for dag in (TRAINING, INFERENCE):
        runs = airflow.runs(dag, since)
        states: dict[str, int] = {}
        for run in runs:
            states[run["state"]] = states.get(run["state"], 0) + 1
        durations = [
            (datetime.fromisoformat(r["end_date"]) - datetime.fromisoformat(r["start_date"]))
            for r in runs
            if r["state"] == "success" and r.get("start_date") and r.get("end_date")
        ]
        tasks = {r["dag_run_id"]: airflow.tasks(dag, r["dag_run_id"]) for r in runs}
        results["runs"][dag] = {
            "states": states,
            "median_duration_s": (
                round(sorted(d.total_seconds() for d in durations)[len(durations) // 2], 1)
                if durations
                else None
            ),
            "not_successful": [
                {
                    "run_id": r["dag_run_id"],
                    "tasks": [
                        task_line(t) for t in tasks[r["dag_run_id"]] if t["state"] != "success"
                    ],
                }
                for r in runs
                if r["state"] != "success"
            ],
            # A run can succeed only thanks to a task's retry: no failure, but worth knowing.
            "tasks_retried": [
                f"{run_id} {task_line(t)}"
                for run_id, found in tasks.items()
                for t in found
                if (t.get("try_number") or 0) > 1
            ],
        }
    results["runs"][TRAINING]["trigger_errors"] = trigger_errors
    results["runs"][TRAINING]["minutes_skipped"] = skipped
    reference = results["snapshots"].get("warmup")
    if reference:
        results["growth_after_warmup"] = growth(
            reference["pss_by_program_mb"], results["snapshots"]["end"]["pss_by_program_mb"]
        )


@contextmanager
def own_stack(keep: Path | None) -> Iterator[tuple[Reporting, Path]]:
    """A stack in a temporary state dir (or `keep`, left in place), stopped afterwards."""
    with tempfile.TemporaryDirectory(prefix="h2ops-soak-") as scratch:
        base = keep or Path(scratch)
        extra = {"H2OPS_READY_TIMEOUT": os.environ.get("H2OPS_READY_TIMEOUT", "600")}
        run = StackRun(base, extra_env=extra)
        try:
            run.up()
            yield run, base / "state"
        finally:
            run.down()


# -- the report -------------------------------------------------------------------------------


def print_report(results: dict[str, Any]) -> None:
    snapshots = results["snapshots"]
    columns = [key for key in ("start", "warmup", "end") if key in snapshots]
    table = Table(
        title=f"Soak: {results['settings']['minutes']} runs of {TRAINING}, one a minute",
        title_justify="left",
    )
    table.add_column("program, PSS MB")
    for key in columns:
        table.add_column(f"{key} (min {snapshots[key]['minute']})")
    table.add_column("growth after warm-up")
    programs = sorted({p for s in snapshots.values() for p in s["pss_by_program_mb"]})
    growths = results.get("growth_after_warmup", {})
    for program in [*programs, "total"]:
        cells = [
            str(
                snapshots[k]["pss_total_mb"]
                if program == "total"
                else snapshots[k]["pss_by_program_mb"].get(program, "")
            )
            for k in columns
        ]
        fraction = growths.get(program)
        table.add_row(program, *cells, "" if fraction is None else f"{fraction:+.1%}")
    console.print(table)
    usage = Table(title="State dir on disk, MB", title_justify="left")
    usage.add_column("folder")
    for key in columns:
        usage.add_column(key)
    folders = sorted({f for s in snapshots.values() for f in s["state_dir_bytes"]} - {"total"})
    for folder in [*folders, "total"]:
        usage.add_row(
            folder,
            *(f"{snapshots[k]['state_dir_bytes'].get(folder, 0) / 2**20:.1f}" for k in columns),
        )
    console.print(usage)
    for dag, counts in results["runs"].items():
        skipped, retried = counts.get("minutes_skipped"), counts.get("tasks_retried")
        console.print(
            f"{dag}: {counts['states']}, median {counts['median_duration_s']} s per run"
            + (f", {skipped} minute(s) skipped while the last run went on" if skipped else "")
            + (f", {len(retried)} task(s) retried" if retried else "")
        )


def positive(value: str) -> int:
    number = int(value) if value.isdigit() else 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of minutes >= 1")
    return number


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="soak", description=__doc__)
    parser.add_argument("--minutes", type=positive, default=60, help="runs, one a minute")
    parser.add_argument(
        "--warmup", type=float, default=10.0, help="minutes before the reference memory figure"
    )
    parser.add_argument("--every", type=float, default=60.0, help=argparse.SUPPRESS)
    parser.add_argument(
        "--running", action="store_true", help="soak the stack of the current settings"
    )
    parser.add_argument(
        "--state-dir-base",
        type=Path,
        help="keep the soak's own stack here (its state dir is BASE/state) instead of deleting it",
    )
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "bench-results")
    args = parser.parse_args(argv)
    if args.every <= 0:
        parser.error(f"--every {args.every}: seconds between runs must be > 0")

    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit_of(),
        "machine": machine(),
        "python": sys.version.split()[0],
        "settings": {
            "minutes": args.minutes,
            "every_s": args.every,
            "warmup_minutes": args.warmup,
            "stack": "running" if args.running else "own",
        },
    }
    args.output.mkdir(parents=True, exist_ok=True)
    path = args.output / f"soak-{results['when'].replace(':', '')}-{results['commit']}.json"
    soaking = (args.minutes, args.every, args.warmup, results)
    try:
        if args.running:
            stack = RunningStack()
            soak(stack, Path(stack.status().stack.state_dir), *soaking)
        else:
            with own_stack(args.state_dir_base) as (run, state_dir):
                soak(run, state_dir, *soaking)
    except Exception as error:  # keep what was measured, and say what stopped it
        results["error"] = f"{type(error).__name__}: {error}"
        path.write_text(json.dumps(results, indent=2))
        console.print(f"[red]soak stopped: {results['error']}[/red]; figures so far in {path}")
        raise
    results["problems"] = verdict(results)
    path.write_text(json.dumps(results, indent=2))
    print_report(results)
    for problem in results["problems"]:
        console.print(f"[red]{problem}[/red]")
    console.print(f"Figures written to {path}")
    return 1 if results["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
