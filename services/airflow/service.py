"""Apache Airflow 3: api-server, scheduler, dag-processor and triggerer as four programs.

Not `airflow standalone`: each component is supervised (restarted if it dies, stopped as a
process group), and the executor is sized for a laptop instead of 32 LocalExecutor workers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from services.airflow import main, preload
from services.airflow.project_settings import local_environment, unresolved
from services.engine.errors import StackError
from services.engine.layout import StateLayout, venv_bin, write_private
from services.engine.records import Health, HealthProbe, Program, Prunable, Service
from services.postgres.metadata import (
    metadata_requires,
    metadata_url,
    misplaced_metadata,
    prepare_metadata,
    sqlite_file,
)
from services.s3.store import REGION
from services.settings import Database, StackSettings

if TYPE_CHECKING:
    from services.plan import StackPlan

COMPONENTS = ("scheduler", "triggerer", "dag_processor")
PLUGINS_FOLDER = Path(__file__).with_name("plugins")
MIGRATE_TIMEOUT = 300


# LocalExecutor workers when H2OPS_AIRFLOW_PARALLELISM is unset: SQLite takes one writer at a
# time, PostgreSQL many.
DEFAULT_PARALLELISM = {Database.SQLITE: 2, Database.POSTGRES: 4}

# Only for the stack's own programs; a shell or an editor running Airflow's code keeps its own.
PROGRAM_ONLY = ("SPT_NOENV", "MLFLOW_CONFIGURE_LOGGING")


def parallelism(settings: StackSettings) -> int:
    """Airflow tasks run at once: the setting, else what the database takes."""
    chosen = settings.airflow_parallelism
    return chosen if chosen is not None else DEFAULT_PARALLELISM[settings.database]


def aws_connection(plan: StackPlan) -> dict[str, str]:
    """`aws_default` for Airflow's Amazon provider (S3Hook, ObjectStoragePath("s3://..."),
    operators): the local S3 with the generated keys, through the environment, so nothing is
    written to the metadata DB and a new key is picked up on restart."""
    if not plan.object_store:
        return {}
    settings = plan.settings
    endpoint = plan.url(settings.s3_port)
    connection = aws_connection_json(
        settings.s3_access_key, settings.s3_secret_key, endpoint, REGION
    )
    return {"AIRFLOW_CONN_AWS_DEFAULT": connection}


def aws_connection_json(access_key: str, secret_key: str, endpoint: str, region: str) -> str:
    """`aws_default` as Airflow reads it from AIRFLOW_CONN_AWS_DEFAULT: one shape for the local
    stack and for the cluster's S3 Secret (devtools/deploy_secrets.py)."""
    connection = {
        "conn_type": "aws",
        "login": access_key,
        "password": secret_key,
        "extra": {"endpoint_url": endpoint, "region_name": region},
    }
    return json.dumps(connection)


def airflow_environment(plan: StackPlan) -> dict[str, str]:
    """Airflow's configuration, as environment variables shared by every component."""
    settings = plan.settings
    home = plan.layout.service_dir("airflow")
    url = plan.url(settings.airflow_port)
    postgres = plan.database is Database.POSTGRES
    return {
        **aws_connection(plan),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(plan.root / "project" / "dags"),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(parallelism(settings)),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{settings.airflow_username}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url(settings, plan.layout, "airflow"),
        # On SQLite, the stack's own plugin (one writing API request at a time; see its
        # docstring); PostgreSQL takes concurrent writers and needs none.
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins" if postgres else PLUGINS_FOLDER),
        # Airflow's async engine: psycopg (3) serves both, no second driver (asyncpg).
        **(
            {
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": metadata_url(
                    settings, plan.layout, "airflow", "async"
                )
            }
            if postgres
            else {}
        ),
        "AIRFLOW__API_AUTH__JWT_SECRET": settings.airflow_jwt_secret,
        "AIRFLOW__API__SECRET_KEY": settings.airflow_jwt_secret,
        "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__API__HOST": settings.host,
        "AIRFLOW__API__PORT": str(settings.airflow_port),
        # New DAG files appear within about 10 s instead of the default 5 minutes.
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
        # A handful of DAG files needs one parser, not two.
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        # A scheduler that died without a word (SIGKILL, OOM) leaves its tasks "running": the
        # next scheduler gives them another try once it checks, 30 s after the dead one's last
        # heartbeat at the earliest; Airflow checks every 5 minutes by default.
        "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "30",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        # Task logs are chmodded to these whatever the umask (Airflow's defaults: 0o775, 0o664).
        "AIRFLOW__LOGGING__FILE_TASK_HANDLER_NEW_FOLDER_PERMISSIONS": "0o700",
        "AIRFLOW__LOGGING__FILE_TASK_HANDLER_NEW_FILE_PERMISSIONS": "0o600",
        "AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY": "False",
        # MLflow gives its loggers a handler of its own, on stderr, which a task's log shows as
        # ERROR lines whatever their level; without it they reach Airflow's task log through
        # Python logging, INFO as info and WARNING as warning.
        "MLFLOW_CONFIGURE_LOGGING": "false",
        # Process titles only in argv's memory: the environment keeps the H2OPS_STACK marker
        # that lets `down` find processes a killed supervisord left.
        "SPT_NOENV": "1",
    }


def declare(plan: StackPlan) -> Service:
    settings, layout = plan.settings, plan.layout
    home = layout.service_dir("airflow")
    # The project's own connections and variables (deploy/airflow_settings.yaml) on top.
    environment = {**airflow_environment(plan), **local_environment(plan.root)}
    socket = layout.socket("airflow-preload")
    if settings.airflow_preload:
        client = [sys.executable, "-m", preload.__name__, "run", str(socket)]
        airflow = [*client, "--connect-timeout", str(settings.ready_timeout), "--"]
    else:
        airflow = [sys.executable, "-m", main.__name__]
    url = plan.url(settings.airflow_port)
    api_server = [
        *airflow,
        "api-server",
        "--host",
        settings.host,
        "--port",
        str(settings.airflow_port),
        "--workers",
        "1",
    ]
    commands = {
        "airflow-api-server": api_server,
        # Task logs are files on this machine, which the api-server reads directly: the log
        # servers the scheduler and triggerer would start (a process each) serve nobody.
        "airflow-scheduler": [*airflow, "scheduler", "--skip-serve-logs"],
        "airflow-dag-processor": [*airflow, "dag-processor"],
        "airflow-triggerer": [*airflow, "triggerer", "--skip-serve-logs"],
    }
    programs = [
        Program(name=name, command=command, environment=environment, directory=home)
        for name, command in commands.items()
    ]
    if settings.airflow_preload:
        server = [sys.executable, "-m", preload.__name__, "serve", str(socket)]
        # Stopped alone, it leaves its components 15 s to their clients, then SIGTERMs them
        # and SIGKILLs them 10 s later.
        programs.insert(0, Program("airflow-preload", server, environment, home, stop_seconds=30))
    return Service(
        name="airflow",
        title="Airflow",
        programs=programs,
        url=url,
        probe=all_components_healthy(f"{url}/api/v2/monitor/health"),
        ports={"H2OPS_AIRFLOW_PORT": settings.airflow_port},
        requires=metadata_requires(settings),
        refuse=lambda: misplaced_metadata(settings, layout) or unresolved(plan.root),
        # The simple auth manager logs in only through its own form (a token it sets itself);
        # its one way around the form, `simple_auth_manager_all_admins`, turns logins off.
        ui=url,
        login=f"log in as {settings.airflow_username} / {settings.airflow_password}",
        prepare=lambda: prepare_home(
            settings, layout, environment, layout.log_file("airflow-migrate")
        ),
        # A file per task try (and the DAG processor's per day), which Airflow never deletes.
        prunable=(Prunable(home / "logs", settings.task_log_retention_days, "*.log"),),
        # `airflow dags list`, `dag.test()` in an editor: the same home, database and DAGs.
        client_environment={k: v for k, v in environment.items() if k not in PROGRAM_ONLY},
    )


def all_components_healthy(url: str) -> HealthProbe:
    """Healthy when the metadata DB and every component report healthy, not just the port."""

    def probe(client: httpx.Client) -> Health:
        try:
            response = client.get(url)
            report = response.json() if response.is_success else None
        except (httpx.HTTPError, ValueError) as error:
            return Health(False, f"{url}: {type(error).__name__}")
        if report is None:
            return Health(False, f"{url}: HTTP {response.status_code}")
        waiting = [
            name
            for name in ("metadatabase", *COMPONENTS)
            if (report.get(name) or {}).get("status") != "healthy"
        ]
        if waiting:
            return Health(False, "waiting for " + ", ".join(waiting))
        return Health(True)

    return probe


def prepare_home(
    settings: StackSettings, layout: StateLayout, environment: dict[str, str], log: Path
) -> None:
    """Write the admin password and migrate the metadata DB when Airflow's version changed."""
    home = Path(environment["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    prepare_metadata(settings, "airflow")
    passwords = home / "passwords.json"
    write_private(passwords, json.dumps({settings.airflow_username: settings.airflow_password}))

    stamp = home / "migrated-version"
    # Migrated for this version, on this database (a SQLite file deleted by hand, a new
    # PostgreSQL database, count as not migrated).
    version = f"{_installed_airflow_version()} {settings.database}"
    database_file = sqlite_file(layout, "airflow")
    present = settings.database is Database.POSTGRES or database_file.exists()
    if present and stamp.exists() and stamp.read_text().strip() == version:
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as output:
        result = subprocess.run(
            [venv_bin("airflow"), "db", "migrate"],
            env={**os.environ, **environment},
            stdout=output,
            stderr=subprocess.STDOUT,
            timeout=MIGRATE_TIMEOUT,
            check=False,
        )
    if result.returncode != 0:
        raise StackError(f"airflow db migrate failed (exit {result.returncode}); see {log}")
    stamp.write_text(version)


def _installed_airflow_version() -> str:
    from importlib.metadata import version

    return version("apache-airflow-core")
