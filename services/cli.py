"""`h2ops` (and the nox sessions): up, down, restart, status, logs, clean, env, shell, doctor,
open, package-model: every command a user runs against the stack, in one place.

Each command resolves the settings once (`StackPlan`), declares the services once (the catalog),
hands them to the engine and prints what it did; nothing here knows how a service runs. A
`StackError` is something the user can fix and is shown as a message; any other exception is
a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time
import webbrowser
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from services.catalog import stack_of
from services.doctor import Verdict, examine
from services.engine.errors import StackError
from services.engine.layout import tail
from services.engine.ports import PortTaken
from services.engine.stack import Progress, ServiceFailed
from services.engine.status import ServiceState
from services.plan import StackPlan
from services.postgres.service import database_line
from services.report import StatusReport, status_report
from services.serving.bundle import package
from services.settings import REPO_ROOT, SettingsError, load_settings
from services.workspace import (
    remove_editor_files,
    shell_environment,
    user_environment,
    write_editor_files,
)

console = Console(stderr=True, highlight=False, soft_wrap=True)
stdout = Console(highlight=False, soft_wrap=True)

EXIT_NOT_RUNNING = 3


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.run is _doctor:  # reports bad settings in its table instead of stopping at them
        return _doctor(args)
    try:
        plan = StackPlan.of(load_settings())
        return args.run(plan, args)
    except SettingsError as error:
        console.print(f"[red]Invalid setting[/red]\n{escape(str(error))}")
    except PortTaken as error:
        console.print("[red]Nothing was started:[/red]")
        for taken in error.taken:
            console.print(f"  {taken}")
    except ServiceFailed as error:
        console.print(f"[red]{error.service} did not become healthy:[/red] {error.reason}")
        console.print(f"Last lines of {error.log}:")
        for line in error.tail:
            console.print(f"  {line}", markup=False)
        console.print("The services this `up` started were stopped again; state is kept.")
    except StackError as error:  # what the user can fix; anything else is a bug: traceback
        console.print(f"[red]{escape(str(error))}[/red]")
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130
    return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="h2ops", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, run: Command | PlanFree, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(run=run)
        return sub

    command("up", _up, "Start services and wait until healthy.").add_argument(
        "services", nargs="*", metavar="SERVICE"
    )
    command("down", _down, "Stop services (all by default).").add_argument(
        "services", nargs="*", metavar="SERVICE"
    )
    command("restart", _restart, "Stop and start services.").add_argument(
        "services", nargs="+", metavar="SERVICE"
    )
    status = command("status", _status, "Show services, health, URLs and credentials.")
    status.add_argument("--json", action="store_true", help="one JSON object on stdout")
    logs = command("logs", _logs, "Show (or follow) service logs.")
    logs.add_argument("services", nargs="*", metavar="SERVICE")
    logs.add_argument("-f", "--follow", action="store_true")
    logs.add_argument("-n", "--lines", type=int, default=40)
    clean = command("clean", _clean, "Delete all state: data, databases, logs.")
    clean.add_argument("--yes", action="store_true", help="confirm: this deletes everything")
    command("env", _env, "Print the client environment as shell exports.")
    doctor = command("doctor", _doctor, "Check this machine for `up`; exits 1 if up would fail.")
    doctor.add_argument("--nox-version", help="the nox that runs the session (nox -s doctor)")
    opener = command("open", _open, "Open a service's UI in the browser ($BROWSER honoured).")
    opener.add_argument("service", nargs="?", default="airflow", metavar="SERVICE")
    shell = command(
        "shell", _shell, "Run $SHELL (or COMMAND) with the stack's endpoints and credentials."
    )
    shell.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")
    bundle = command(
        "package-model",
        _package_model,
        "Write a bundle that serves one model version on another host (default: the served one).",
    )
    bundle.add_argument("spec", nargs="?", help="MODEL@ALIAS or MODEL/VERSION (default: served)")
    bundle.add_argument("--output", type=Path, help="folder to write (default: dist/...)")
    return parser


Command = Callable[[StackPlan, argparse.Namespace], int]
PlanFree = Callable[[argparse.Namespace], int]  # doctor: runs without a valid plan


def _up(plan: StackPlan, args: argparse.Namespace) -> int:
    console.print(f"S3 backend: [bold]{plan.s3_backend}[/bold] ({plan.s3_backend_reason})")
    console.print(f"Database: [bold]{escape(database_line(plan))}[/bold]")
    plan.layout.check()  # a state dir open to others is refused before credentials are written
    plan = plan.with_credentials()
    stack = stack_of(plan)  # the one declaration of the services this `up` runs
    started = time.monotonic()
    rows: dict[str, Progress | None] = {
        service.name: None for service in stack.select(args.services)
    }

    def render() -> Table:
        table = Table.grid(padding=(0, 2))
        for name, event in rows.items():
            mark = "[green]✓[/green]" if event is not None and event.step.settled else "…"
            table.add_row(mark, f"[bold]{name}[/bold]", escape(event or "waiting"))
        return table

    with Live(Table.grid(), console=console, refresh_per_second=4, transient=True) as live:

        def report(name: str, event: Progress) -> None:
            if rows.get(name) == event:
                return
            rows[name] = event
            live.update(render())
            if event.step.settled and not console.is_terminal:
                console.print(f"✓ {name} {event}", markup=False)

        stack.up(args.services, report)
    if console.is_terminal:  # elsewhere each line was printed as it happened
        console.print(render())
    console.print(f"Stack healthy in {time.monotonic() - started:.1f} s")
    _print_status(status_report(plan, stack.status()))
    env_file, kernel = write_editor_files(plan, stack.declared)
    console.print(f"Editors and shells: {env_file} (VS Code's python.envFile), kernel {kernel}")
    return 0


def _down(plan: StackPlan, args: argparse.Namespace) -> int:
    stopped = stack_of(plan).down(args.services)
    console.print(f"Stopped: {', '.join(stopped)}" if stopped else "Nothing was running.")
    return 0


def _restart(plan: StackPlan, args: argparse.Namespace) -> int:
    plan.layout.check()
    plan = plan.with_credentials()
    stack = stack_of(plan)
    stack.restart(args.services, lambda name, event: console.print(f"{name}: {event}"))
    _print_status(status_report(plan, stack.status()))
    write_editor_files(plan, stack.declared)
    return 0


def _status(plan: StackPlan, args: argparse.Namespace) -> int:
    report = status_report(plan, stack_of(plan).status())
    if args.json:
        stdout.print_json(json.dumps(report.to_json()))
    else:
        _print_status(report)
    started = report.stack.started
    if not started:
        return EXIT_NOT_RUNNING
    return 0 if all(service.fine for service in started) else 1


def _print_status(report: StatusReport) -> None:
    table = Table(title="H2Ops stack", title_justify="left")
    for column in ("service", "state", "url", "pid"):
        table.add_column(column)
    details = []
    for service in report.services:
        state = service.state.value
        if service.state is ServiceState.RUNNING:
            state = "[green]healthy[/green]" if service.healthy else "[yellow]unhealthy[/yellow]"
            if service.waiting:
                state = "[cyan]waiting[/cyan]"
            if service.detail:
                details.append(f"{service.title}: {service.detail}")
        elif service.state is not ServiceState.STOPPED and service.detail != state:
            # Which program failed and why, and whether it is retried, in one line.
            details.append(f"{service.title} {state}: {service.detail}")
            if service.retrying:
                state = f"[yellow]{state}, retrying[/yellow]"
            else:
                state = f"[red]{state}[/red]"
        table.add_row(service.title, state, service.url, str(service.pid or ""))
    console.print(table)
    for line in details:  # under the table, unwrapped: versions, run ids, what it waits for
        console.print(line, markup=False)
    credentials = Table(title="Credentials (from .env)", title_justify="left", show_header=False)
    for key, value in report.credentials.items():
        credentials.add_row(key, value)
    console.print(credentials)
    console.print(f"State and logs: {report.stack.state_dir}   (nox -s logs -- SERVICE)")


def _logs(plan: StackPlan, args: argparse.Namespace) -> int:
    files = stack_of(plan).log_files(args.services)
    for path in files:
        console.print(f"[bold]==> {path} <==[/bold]")
        for line in tail(path, args.lines):
            stdout.print(line, markup=False, highlight=False)
    if args.follow:
        _follow(files)
    return 0


def _follow(files: list[Path]) -> None:
    """Print lines as they are appended, like `tail -F`, until Ctrl-C."""
    offsets = {path: path.stat().st_size if path.exists() else 0 for path in files}
    while True:
        for path in files:
            if not path.exists():
                continue
            size = path.stat().st_size
            if size < offsets[path]:  # rotated
                offsets[path] = 0
            if size > offsets[path]:
                with path.open("rb") as handle:
                    handle.seek(offsets[path])
                    chunk = handle.read().decode(errors="replace")
                offsets[path] = size
                for line in chunk.splitlines():
                    stdout.print(f"{path.stem} | {line}", markup=False, highlight=False)
        time.sleep(0.5)


def _clean(plan: StackPlan, args: argparse.Namespace) -> int:
    if not args.yes:
        console.print(
            f"This deletes every run, model, object, DAG run and log in {plan.layout.root}.\n"
            "Run again with --yes to confirm:  nox -s clean -- --yes"
        )
        return 2
    console.print(f"Deleted {stack_of(plan).clean()}")
    remove_editor_files(plan)
    return 0


def _doctor(args: argparse.Namespace) -> int:
    findings = examine(load_settings, REPO_ROOT, args.nox_version)
    colours = {Verdict.OK: "green", Verdict.WARN: "yellow", Verdict.FAIL: "red"}
    table = Table(title="H2Ops doctor", title_justify="left")
    for column in ("check", "result", "seen", "what to do"):
        table.add_column(column, overflow="fold")
    for finding in findings:
        verdict = f"[{colours[finding.verdict]}]{finding.verdict}[/]"
        table.add_row(finding.check, verdict, escape(finding.detail), escape(finding.fix))
    stdout.print(table)
    failed = [finding.check for finding in findings if finding.verdict is Verdict.FAIL]
    if failed:
        console.print(f"[red]`up` would fail:[/red] {', '.join(failed)}")
        return 1
    console.print("Ready for `nox -s up`.")
    return 0


def _open(plan: StackPlan, args: argparse.Namespace) -> int:
    stack = stack_of(plan)
    (service,) = stack.select([args.service], with_requirements=False)  # unknown: StackError
    if service.ui is None:
        console.print(f"{service.name} has no UI to open; {service.login}", markup=False)
        return 1
    state = status_report(plan, stack.status()).service(service.name)
    if not state.healthy:
        console.print(f"{service.name} is not running: `nox -s up` first")
        return EXIT_NOT_RUNNING
    try:
        opened = webbrowser.get().open(service.ui)
    except webbrowser.Error:
        opened = False
    if opened:
        console.print(f"Opened {service.title} at {service.url}; {service.login}")
    else:  # no browser here (a server, a container): the user opens it where they are
        console.print(f"No browser found ($BROWSER is not set). Open:\n  {service.ui}")
        console.print(service.login, markup=False)
    return 0


def _env(plan: StackPlan, _args: argparse.Namespace) -> int:
    for key, value in user_environment(plan, stack_of(plan).declared).items():
        stdout.print(f"export {key}={shlex.quote(value)}", markup=False, highlight=False)
    return 0


def _shell(plan: StackPlan, args: argparse.Namespace) -> int:
    """A shell (or one command) that talks to this stack: `h2ops shell -- airflow dags list`."""
    if plan.settings.missing_credentials():
        console.print("No credentials yet: `nox -s up` generates them and starts the stack.")
        return 1
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    command = command or [os.environ.get("SHELL") or "/bin/sh"]
    env = shell_environment(plan, stack_of(plan).declared)
    if shutil.which(command[0], path=env["PATH"]) is None:
        console.print(f"[red]{command[0]} was not found[/red]: is it installed and on PATH?")
        return 127
    # Replaced, not a child: Ctrl-C and job control reach the shell as in any terminal.
    os.execvpe(command[0], command, env)


def _package_model(plan: StackPlan, args: argparse.Namespace) -> int:
    """A bundle that serves one model version elsewhere (see services/serving/bundle.py)."""
    out = package(plan, args.spec, args.output)
    print(f"Wrote {out}\nNext: see {out / 'README.md'} (build the container, or ./serve.sh)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
