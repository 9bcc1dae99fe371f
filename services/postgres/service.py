"""PostgreSQL for Airflow's and MLflow's metadata (H2OPS_DATABASE=postgres).

One cluster in the state dir, made by `initdb` on the first `up` with the generated password
from `.env`, listening on 127.0.0.1 only (no unix socket: nothing to collide with a system
server's). Once healthy (`pg_isready` and a real query), the `airflow` and `mlflow` databases
are created if missing; each service migrates its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from services.engine.records import Declared, Health, HealthProbe, Program, Service, SwitchedOff
from services.engine.stack import StackError
from services.postgres import server
from services.postgres.account import give_to, handed_over, server_account
from services.postgres.discovery import PostgresServer

if TYPE_CHECKING:
    from services.plan import StackPlan

SUPERUSER = "h2ops"
DATABASES = ("airflow", "mlflow")
INITDB_TIMEOUT = 120
PROBE_TIMEOUT = 5


def declare(plan: StackPlan) -> Declared:
    if plan.settings.database != "postgres":
        return SwitchedOff(
            "postgres", "postgres is off (H2OPS_DATABASE=sqlite): set H2OPS_DATABASE=postgres"
        )
    settings = plan.settings
    cluster = plan.postgres_cluster
    found = plan.postgres_server
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
        probe=answers_queries(plan),
        ports={"H2OPS_POSTGRES_PORT": port},
        prepare=lambda: prepare_cluster(plan),
        install_hint=plan.postgres_reason if found is None else "",
        after_ready=lambda: create_databases(plan),
        details=details,
    )


def connect(plan: StackPlan, database: str = "postgres") -> Any:
    """A psycopg connection as the stack's superuser, over loopback TCP."""
    import psycopg

    return psycopg.connect(
        host="127.0.0.1",
        port=plan.settings.postgres_port,
        user=SUPERUSER,
        password=plan.settings.postgres_password,
        dbname=database,
        connect_timeout=PROBE_TIMEOUT,
    )


def answers_queries(plan: StackPlan) -> HealthProbe:
    """Healthy when `pg_isready` says it accepts connections and a query with the stack's
    password answers (a server that accepts but cannot serve, or another server on that
    port, is not healthy)."""
    port = str(plan.settings.postgres_port)

    def probe(_client: httpx.Client) -> Health:
        found = plan.postgres_server
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
            connection = connect(plan)
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


def prepare_cluster(plan: StackPlan) -> None:
    """`initdb` on the first `up` (refusing a state dir whose metadata is in SQLite)."""
    found = require_server(plan)
    cluster = plan.postgres_cluster
    account = server_account(plan.settings.postgres_account)
    if (cluster / "PG_VERSION").exists():
        if account is not None:
            give_to(cluster, account)  # the server's start does this again; initdb is done
        return
    if problem := plan.sqlite_metadata_present():
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
    pwfile.write_text(plan.settings.postgres_password + "\n")
    pwfile.chmod(0o600)
    if account is not None:
        os.chown(pwfile, account.uid, account.gid)
    data, data_fd = handed_over(cluster, account)
    password, password_fd = handed_over(pwfile, account)
    log = plan.layout.log_file("postgres-initdb")
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


def require_server(plan: StackPlan) -> PostgresServer:
    if plan.postgres_server is None:
        raise StackError(plan.postgres_reason)
    return plan.postgres_server


def create_databases(plan: StackPlan) -> None:
    """The `airflow` and `mlflow` databases, created once (each service migrates its own)."""
    connection = connect(plan)
    try:
        connection.autocommit = True  # CREATE DATABASE needs it
        with connection.cursor() as cursor:
            cursor.execute("SELECT datname FROM pg_database")
            existing = {row[0] for row in cursor.fetchall()}
            for name in DATABASES:
                if name not in existing:
                    cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()
