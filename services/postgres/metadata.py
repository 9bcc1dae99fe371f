"""Where the services with metadata keep it, and the state-dir guards that keep it there.

With H2OPS_DATABASE=sqlite each such service has a file `<service>.db` in its folder of the
state dir; with postgres, a database of that name in the stack's cluster (`<state>/postgres`),
which the service creates before its first start (`prepare_metadata`), so this room need not
know who its users are. A state dir holds one or the other: starting on the other would show
no runs and no DAG history, so `up` refuses (see `misplaced_metadata`, which the declarations
hand the engine as `refuse`).

No import of the plan: the declarations and the plan read this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.engine.layout import StateLayout
from services.settings import Database, StackSettings

SUPERUSER = "h2ops"
CONNECT_TIMEOUT = 5  # seconds: a server on loopback answers at once or not at all


def cluster_dir(layout: StateLayout) -> Path:
    return layout.service_dir("postgres")


def sqlite_file(layout: StateLayout, service: str) -> Path:
    return layout.service_dir(service) / f"{service}.db"


def metadata_url(
    settings: StackSettings, layout: StateLayout, service: str, variant: str = "sync"
) -> str:
    """Where `service` (airflow, mlflow) keeps its metadata (a SQLAlchemy URL): its SQLite
    file in its folder of the state dir, or its database in the stack's PostgreSQL through
    psycopg (3), sync or async."""
    if settings.database is Database.SQLITE:
        return f"sqlite:///{sqlite_file(layout, service)}"
    driver = "postgresql+psycopg_async" if variant == "async" else "postgresql+psycopg"
    return (
        f"{driver}://{SUPERUSER}:{settings.postgres_password}@127.0.0.1:"
        f"{settings.postgres_port}/{service}"
    )


def metadata_requires(settings: StackSettings) -> tuple[str, ...]:
    """What a service with metadata waits for: the database server, if one runs."""
    return ("postgres",) if settings.database is Database.POSTGRES else ()


def connect(settings: StackSettings, database: str = "postgres") -> Any:
    """A psycopg connection as the stack's superuser, over loopback TCP."""
    import psycopg

    return psycopg.connect(
        host="127.0.0.1",
        port=settings.postgres_port,
        user=SUPERUSER,
        password=settings.postgres_password,
        dbname=database,
        connect_timeout=CONNECT_TIMEOUT,
    )


def prepare_metadata(settings: StackSettings, service: str) -> None:
    """Before `service` starts on PostgreSQL: its database, created once (the service migrates
    it itself). SQLite creates its file on the first connection."""
    if settings.database is not Database.POSTGRES:
        return
    connection = connect(settings)
    try:
        connection.autocommit = True  # CREATE DATABASE needs it
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (service,))
            if cursor.fetchone() is None:
                cursor.execute(f'CREATE DATABASE "{service}"')
    finally:
        connection.close()


def sqlite_metadata_present(layout: StateLayout) -> str | None:
    """Why PostgreSQL must not start empty here: this state dir holds SQLite metadata."""
    found = sorted(
        path for path in layout.root.glob("*/*.db") if path == sqlite_file(layout, path.stem)
    )
    if not found:
        return None
    return (
        f"H2OPS_DATABASE=postgres, but {layout.root} holds SQLite metadata "
        f"({', '.join(str(path) for path in found)}) that PostgreSQL would not have: the "
        "stack would start with no runs and no DAG history. Keep it with "
        "H2OPS_DATABASE=sqlite, or start afresh on PostgreSQL with `nox -s clean` (deletes "
        "that state) or another H2OPS_STATE_DIR"
    )


def postgres_cluster_present(layout: StateLayout) -> str | None:
    """Why SQLite must not start empty here: this state dir holds a PostgreSQL cluster."""
    cluster = cluster_dir(layout)
    if not (cluster / "PG_VERSION").exists():
        return None
    return (
        f"H2OPS_DATABASE=sqlite, but {layout.root} holds the stack's PostgreSQL "
        f"cluster ({cluster}): the stack would start with no runs and no DAG "
        "history. Keep it with H2OPS_DATABASE=postgres, or start afresh on SQLite with "
        "`nox -s clean` or another H2OPS_STATE_DIR"
    )


def misplaced_metadata(settings: StackSettings, layout: StateLayout) -> str | None:
    """Why a service with metadata must not start here: the metadata is in the other database."""
    if settings.database is Database.SQLITE:
        return postgres_cluster_present(layout)
    if (cluster_dir(layout) / "PG_VERSION").exists():
        return None
    return sqlite_metadata_present(layout)
