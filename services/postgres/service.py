"""PostgreSQL for Airflow's and MLflow's metadata (H2OPS_DATABASE=postgres).

One cluster in the state dir, made by `initdb` on the first `up` with the generated password
from `.env`, listening on 127.0.0.1 only (no unix socket: nothing to collide with a system
server's). Once healthy (`pg_isready` and a real query), the `airflow` and `mlflow` databases
are created if missing; each service migrates its own.

Which server runs is resolved here (`resolve_server`); where metadata lives and the guards that
keep a state dir on one database are in `metadata.py`, which the other rooms read too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from services.engine.errors import StackError
from services.engine.layout import StateLayout, write_private
from services.engine.records import Declared, Health, HealthProbe, Program, Service, SwitchedOff
from services.postgres import server
from services.postgres.account import give_to, handed_over, server_account
from services.postgres.discovery import PostgresNotFound, PostgresServer, find_server
from services.postgres.metadata import (
    SUPERUSER,
    cluster_dir,
    connect,
    misplaced_metadata,
    sqlite_metadata_present,
)
from services.settings import Database, StackSettings

if TYPE_CHECKING:
    from services.plan import StackPlan

INITDB_TIMEOUT = 120
PROBE_TIMEOUT = 5


def resolve_server(settings: StackSettings) -> tuple[PostgresServer | None, str]:
    """The PostgreSQL server to run and how it was found; None and what to do when there is
    none (only `up` needs one: `status` and `down` still work)."""
    if settings.database is not Database.POSTGRES:
        return None, f"H2OPS_DATABASE={settings.database}"
    try:
        found = find_server(settings.postgres_bin)
    except PostgresNotFound as error:
        return None, str(error)
    return found, found.describe()


def database_line(plan: StackPlan) -> str:
    """What `up` says about the metadata database."""
    if plan.database is Database.SQLITE:
        return "sqlite (files in the state dir; H2OPS_DATABASE=postgres for PostgreSQL)"
    return f"postgres ({resolve_server(plan.settings)[1]})"


def declare(plan: StackPlan) -> Declared:
    if plan.database is not Database.POSTGRES:
        return SwitchedOff(
            "postgres", "postgres is off (H2OPS_DATABASE=sqlite): set H2OPS_DATABASE=postgres"
        )
    settings, layout = plan.settings, plan.layout
    cluster = cluster_dir(layout)
    found, how = resolve_server(settings)
    bin_dir = found.bin_dir if found is not None else Path("postgres-not-found")
    port = settings.postgres_port
    command = [
        sys.executable,
        "-m",
        server.__name__,
        "--account",
        settings.postgres_account,
        "--cluster",
        str(cluster),
        "--",
        str(bin_dir / "postgres"),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        f"port={port}",
        "-c",
        "unix_socket_directories=",
        # Logs go to supervisord's log of this program.
        "-c",
        "logging_collector=off",
    ]
    details = {"data": str(cluster)}
    if found is not None:
        details.update(server=str(found.bin_dir), version=found.version, reason=found.found)
    return Service(
        name="postgres",
        title=f"PostgreSQL {found.version}" if found is not None else "PostgreSQL",
        # SIGINT is PostgreSQL's fast shutdown (clients disconnected, a clean checkpoint); its
        # SIGTERM would wait for every client to leave first.
        programs=[
            Program(
                "postgres",
                command,
                directory=plan.layout.root,
                stop_seconds=20,
                stop_signal="INT",
                runs=(str(bin_dir / "initdb"), str(bin_dir / "postgres")),
            )
        ],
        url=f"postgresql://127.0.0.1:{port}",
        probe=answers_queries(settings, found),
        ports={"H2OPS_POSTGRES_PORT": port},
        # No server to run, or a state dir whose metadata is in SQLite: refused before any start.
        refuse=lambda: how if found is None else misplaced_metadata(settings, layout),
        prepare=lambda: prepare_cluster(settings, layout, require_server(found, how)),
        install_hint=how if found is None else "",
        details=details,
    )


def answers_queries(settings: StackSettings, found: PostgresServer | None) -> HealthProbe:
    """Healthy when `pg_isready` says it accepts connections and a query with the stack's
    password answers (a server that accepts but cannot serve, or another server on that
    port, is not healthy)."""
    port = str(settings.postgres_port)

    def probe(_client: httpx.Client) -> Health:
        if found is None:
            return Health(False, "no PostgreSQL server found")
        try:
            ready = subprocess.run(
                [found.tool("pg_isready"), "-h", "127.0.0.1", "-p", port, "-t", "2"],
                capture_output=True,
                text=True,
                timeout=PROBE_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            return Health(False, f"pg_isready: {type(error).__name__}")
        if ready.returncode != 0:
            return Health(False, f"pg_isready: {ready.stdout.strip() or ready.returncode}")
        import psycopg

        try:
            connection = connect(settings)
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT count(*) FROM pg_database")
                    cursor.fetchone()
            finally:
                connection.close()
        except psycopg.Error as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            return Health(False, f"query: {first}")
        return Health(True)

    return probe


def prepare_cluster(settings: StackSettings, layout: StateLayout, found: PostgresServer) -> None:
    """`initdb` on the first `up` (refusing a state dir whose metadata is in SQLite)."""
    cluster = cluster_dir(layout)
    account = server_account(settings.postgres_account)
    if (cluster / "PG_VERSION").exists():
        if account is not None:
            give_to(cluster, account)  # the server's start does this again; initdb is done
        return
    if problem := sqlite_metadata_present(layout):
        raise StackError(problem)
    if cluster.exists() and any(cluster.iterdir()):
        raise StackError(
            f"{cluster} is not empty but holds no PostgreSQL cluster (no PG_VERSION): "
            "move it away, or `nox -s clean` to start the stack afresh"
        )
    give_to(cluster, account)
    # The password reaches initdb through a file only its account can read, removed after;
    # as root, both the file and the cluster folder are handed over open (see account.py).
    pwfile = cluster.parent / ".postgres-password"
    pwfile.unlink(missing_ok=True)
    write_private(pwfile, settings.postgres_password + "\n")
    if account is not None:
        os.chown(pwfile, account.uid, account.gid)
    data, data_fd = handed_over(cluster, account)
    password, password_fd = handed_over(pwfile, account)
    log = layout.log_file("postgres-initdb")
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        with log.open("a") as output:
            result = subprocess.run(
                [
                    found.tool("initdb"),
                    "-D",
                    data,
                    "-U",
                    SUPERUSER,
                    f"--pwfile={password}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                ],
                stdout=output,
                stderr=subprocess.STDOUT,
                timeout=INITDB_TIMEOUT,
                check=False,
                pass_fds=[fd for fd in (data_fd, password_fd) if fd is not None],
                user=account.uid if account is not None else None,
                group=account.gid if account is not None else None,
                extra_groups=[] if account is not None else None,
            )
    finally:
        pwfile.unlink(missing_ok=True)
        for fd in (data_fd, password_fd):
            if fd is not None:
                os.close(fd)
    if result.returncode != 0:
        raise StackError(f"initdb failed (exit {result.returncode}); see {log}")


def require_server(found: PostgresServer | None, how: str) -> PostgresServer:
    if found is None:
        raise StackError(how)
    return found
