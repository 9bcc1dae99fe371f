"""Stack settings: ports, host, S3 backend, state dir and generated credentials.

Read from `H2OPS_*` environment variables, then the repository's `.env`, then `[tool.h2ops]` in
its pyproject.toml (a project's committed choices, e.g. `s3_backend = "none"`), so a user
changes a port with one line and credentials stay out of the code and out of git.
"""

from __future__ import annotations

import difflib
import io
import os
import secrets
import socket
import tomllib
from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import annotated_types
from dotenv.parser import parse_stream
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from services.engine.errors import StackError
from services.engine.layout import write_private

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "H2OPS_"

Port = Annotated[int, Field(ge=1, le=65535)]


# Which S3 server runs: auto (minio when on PATH, else rclone), minio, rclone, or none (data and
# artifacts in folders of the state dir). The one place its allowed values are written.
S3Backend = Literal["auto", "minio", "rclone", "none"]


class Database(StrEnum):
    """Where Airflow and MLflow keep their metadata: the stack-wide choice, read everywhere as
    this value (never guessed from a URL or from which services run)."""

    SQLITE = "sqlite"
    POSTGRES = "postgres"


# The credentials `up` writes to `.env` on first run; each is random, none has a default.
GENERATED_CREDENTIALS: dict[str, int] = {
    "s3_access_key": 16,
    "s3_secret_key": 32,
    "airflow_password": 18,
    "airflow_jwt_secret": 32,
    "jupyter_token": 24,
    "postgres_password": 24,
}


class SettingsError(StackError):
    """A setting has a value the stack cannot use; the message names the variable and value."""


class StackSettings(BaseSettings):
    """Everything a user may set about the stack, with the defaults a laptop wants."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        validate_default=True,
        env_file_encoding="utf-8",
    )
    host: str = Field(
        "127.0.0.1",
        description="Address every service binds to.",
        # What a type cannot say: the error hint for it (see hint_for).
        json_schema_extra={
            "hint": "use an address of this machine: 127.0.0.1 (the default), or 0.0.0.0 for all"
        },
    )
    airflow_port: Port = Field(8080, description="Airflow API server and UI.")
    mlflow_port: Port = Field(5000, description="MLflow tracking server and UI.")
    jupyter_port: Port = Field(8888, description="JupyterLab.")
    s3_port: Port = Field(9000, description="S3 API.")
    s3_console_port: Port = Field(9001, description="MinIO console (MinIO backend only).")
    serving_port: Port = Field(5001, description="The champion model's scoring server.")
    s3_backend: S3Backend = Field(
        "auto",
        description="minio, rclone, none, or auto (minio when on PATH, else rclone).",
    )
    database: Database = Field(
        Database.SQLITE,
        description="Airflow's and MLflow's metadata: sqlite (files, nothing to install) or "
        "postgres (a PostgreSQL cluster in the state dir, for concurrent writers).",
    )
    postgres_port: Port = Field(5432, description="PostgreSQL (H2OPS_DATABASE=postgres only).")
    postgres_bin: Path | None = Field(
        None,
        description="Folder with initdb and postgres; unset finds one (PATH, Debian, Homebrew).",
    )
    postgres_account: str = Field(
        "postgres",
        description="The account PostgreSQL runs as when the stack runs as root (it refuses root).",
    )
    state_dir: Path = Field(Path(".h2ops"), description="Data, databases, logs, sockets.")
    env_file: Path = Field(Path(".env"), description="Where generated credentials are kept.")
    ready_timeout: float = Field(
        180.0, gt=0, description="Seconds a service may take to become healthy."
    )
    # Airflow writes a log file per task try and never deletes one: a stack kept up for weeks
    # would fill the disk with them. The stack deletes those older than this, hourly and on `up`.
    task_log_retention_days: int = Field(
        14,
        ge=1,
        le=3650,
        description="Days Airflow's task logs are kept; older ones are deleted by the stack.",
    )
    # Each LocalExecutor worker is a process that holds about 50 MB while idle. Unset: 2 on
    # SQLite (one writer at a time), 4 on PostgreSQL (concurrent writers).
    airflow_parallelism: int | None = Field(
        None, ge=1, le=64, description="Airflow tasks run at once (LocalExecutor workers)."
    )
    # One process imports Airflow and forks the four components: about 200 MB less and a
    # faster start; off runs each component as its own interpreter.
    airflow_preload: bool = Field(
        True, description="Fork Airflow's components from one process that imported it once."
    )

    project_name: str = Field(
        "",
        description="Names the Jupyter kernel `up` writes (default: the project's name).",
    )
    kernels_dir: Path | None = Field(
        None,
        description="Where `up` writes that kernel (default: the venv's share/jupyter/kernels).",
    )

    # The registered model `serving` serves, and the alias it follows (the example registers
    # example-water-mask@champion); a project names its own under [tool.h2ops].
    serving_model: str = Field(
        "example-water-mask", min_length=1, description="Registered model the stack serves."
    )
    serving_alias: str = Field(
        "champion", min_length=1, description="Registry alias whose version is served."
    )
    serving_poll_seconds: float = Field(
        5.0, gt=0, le=3600, description="How often serving asks the registry where the alias is."
    )

    airflow_username: str = "admin"
    airflow_password: str = ""
    airflow_jwt_secret: str = ""
    jupyter_token: str = ""
    s3_access_key: str = ""
    s3_secret_key: str = ""
    postgres_password: str = ""

    @field_validator("host")
    @classmethod
    def _local_address(cls, host: str) -> str:
        """Resolvable and on this machine, or every service would fail to bind it."""
        try:
            family, kind, _, _, address = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0]
        except (socket.gaierror, UnicodeError) as error:
            raise ValueError(f"cannot be resolved: {getattr(error, 'strerror', error)}") from None
        with socket.socket(family, kind) as probe:
            try:
                probe.bind((address[0], 0))
            except OSError as error:
                raise ValueError(f"not an address of this machine: {error.strerror}") from None
        return host

    @model_validator(mode="after")
    def _ports_differ(self) -> StackSettings:
        ports = {
            "H2OPS_AIRFLOW_PORT": self.airflow_port,
            "H2OPS_MLFLOW_PORT": self.mlflow_port,
            "H2OPS_JUPYTER_PORT": self.jupyter_port,
            "H2OPS_S3_PORT": self.s3_port,
            "H2OPS_S3_CONSOLE_PORT": self.s3_console_port,
            "H2OPS_SERVING_PORT": self.serving_port,
        }
        if self.database is Database.POSTGRES:
            ports["H2OPS_POSTGRES_PORT"] = self.postgres_port
        seen: dict[int, str] = {}
        for variable, port in ports.items():
            if port in seen:
                raise ValueError(f"{variable} and {seen[port]} are both {port}: give each its own")
            seen[port] = variable
        return self

    def resolve_paths(self, root: Path) -> StackSettings:
        """Anchor relative paths at the repository root, so any working directory works."""
        return self.model_copy(
            update={
                "state_dir": _anchor(self.state_dir, root),
                "env_file": _anchor(self.env_file, root),
                "kernels_dir": _anchor(self.kernels_dir, root) if self.kernels_dir else None,
            }
        )

    @property
    def credentials(self) -> dict[str, str]:
        """The credentials a user types or pastes, under the names `status --json` promises."""
        shown = {
            "airflow_username": self.airflow_username,
            "airflow_password": self.airflow_password,
            "jupyter_token": self.jupyter_token,
            "s3_access_key": self.s3_access_key,
            "s3_secret_key": self.s3_secret_key,
        }
        if self.database is Database.POSTGRES:  # for `psql -h 127.0.0.1 -U h2ops`
            shown["postgres_password"] = self.postgres_password
        return shown

    def missing_credentials(self) -> list[str]:
        return [name for name in GENERATED_CREDENTIALS if not getattr(self, name)]


def _anchor(path: Path, root: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else (root / path)


def load_settings(root: Path = REPO_ROOT) -> StackSettings:
    """Read settings from the environment and `.env`; raise SettingsError on a bad value.

    `.env` is checked first, whole: a line python-dotenv cannot parse would otherwise be
    skipped with a warning and its value silently lost.
    """
    env_file = _anchor(Path(os.environ.get(f"{ENV_PREFIX}ENV_FILE", ".env")), root)
    lines = read_env_file(env_file)
    sources: tuple[tuple[PydanticBaseSettingsSource, ...], dict[str, Any]]
    sources = (_sources(env_file, root), {})
    try:
        settings = StackSettings(_build_sources=sources)
    except ValidationError as error:
        raise SettingsError(_explain(error, env_file, lines)) from None
    return settings.resolve_paths(root)


def _sources(env_file: Path, root: Path) -> tuple[PydanticBaseSettingsSource, ...]:
    """Where settings come from, first wins: the environment, `.env`, then the project's
    committed choices (`[tool.h2ops]` in the pyproject.toml at `root`)."""
    return (
        EnvSettingsSource(StackSettings),
        DotEnvSettingsSource(StackSettings, env_file=env_file),
        InitSettingsSource(StackSettings, project_choices(root / "pyproject.toml")),
    )


def project_choices(pyproject: Path) -> dict[str, Any]:
    """`[tool.h2ops]` in a pyproject.toml: the settings a project commits (`nox -s init` writes
    `s3_backend` there)."""
    try:
        data = tomllib.loads(pyproject.read_text())
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"{pyproject} is not valid TOML ({error}): fix it") from None
    return data.get("tool", {}).get("h2ops", {})


def read_env_file(path: Path) -> dict[str, int]:
    """The `H2OPS_` variables a `.env` sets, with their line numbers; SettingsError naming the
    file, the line and what to do for anything that is not one clean NAME=value."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise SettingsError(
            f"{path}, line {line}: byte {data[error.start : error.start + 1]!r} is not UTF-8: "
            "save the file as UTF-8 (or remove the character)"
        ) from None
    known = {f"{ENV_PREFIX}{name.upper()}" for name in StackSettings.model_fields}
    found: dict[str, int] = {}
    for binding in parse_stream(io.StringIO(text)):
        original = binding.original.string
        # The binding starts where the previous one ended, blank lines included.
        line = binding.original.line + original[: len(original) - len(original.lstrip())].count(
            "\n"
        )
        shown = original.strip().splitlines()[0][:80] if original.strip() else ""
        where = f"{path}, line {line}"
        if binding.error:
            raise SettingsError(f"{where}: cannot read `{shown}`: {_line_problem(shown)}")
        if binding.key is None:  # blank lines and comments
            continue
        if binding.value is None:
            raise SettingsError(
                f"{where}: `{shown}` has no `=`: write {binding.key}=VALUE, or delete the line"
            )
        name = binding.key.upper()
        if not name.startswith(ENV_PREFIX):
            continue
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"did you mean {close[0]}?" if close else "see the settings page of the docs"
            raise SettingsError(f"{where}: {binding.key} is not a setting: {hint}")
        if name in found:
            raise SettingsError(
                f"{where}: {binding.key} is set again (first on line {found[name]}): keep one"
            )
        found[name] = line
    return found


def _line_problem(line: str) -> str:
    """What is wrong with a line python-dotenv could not parse, and what to do."""
    _, equals, value = line.partition("=")
    if not equals:
        return "it has no `=`: write NAME=VALUE, or start the line with # for a comment"
    value = value.lstrip()
    if value[:1] in ("'", '"'):
        return f"the {value[0]} that opens the value is never closed: close it, or remove it"
    return "write NAME=VALUE, with quotes around a value that has spaces, quotes or #"


def _explain(error: ValidationError, env_file: Path, lines: dict[str, int]) -> str:
    out = []
    for problem in error.errors():
        message = str(problem["msg"]).removeprefix("Value error, ")
        if not problem["loc"]:  # a rule across fields: its message names the variables
            out.append(message)
            continue
        field = str(problem["loc"][0])
        variable = f"{ENV_PREFIX}{field.upper()}"
        hint = hint_for(field)
        from_file = variable in lines and variable not in {k.upper() for k in os.environ}
        where = f"{env_file}, line {lines[variable]}: " if from_file else ""
        out.append(f"{where}{variable}={problem['input']!r} is not valid ({message}): {hint}")
    return "\n".join(out)


def hint_for(field: str) -> str:
    """What a valid value of `field` looks like, read off its type and bounds (so the hint
    cannot disagree with the check)."""
    info = StackSettings.model_fields[field]
    if isinstance(info.json_schema_extra, dict) and "hint" in info.json_schema_extra:
        return str(info.json_schema_extra["hint"])
    if get_origin(info.annotation) is Literal:
        return "use one of " + ", ".join(str(choice) for choice in get_args(info.annotation))
    if isinstance(info.annotation, type) and issubclass(info.annotation, Enum):
        return "use one of " + ", ".join(str(choice.value) for choice in info.annotation)
    low = next((rule.ge for rule in info.metadata if isinstance(rule, annotated_types.Ge)), None)
    high = next((rule.le for rule in info.metadata if isinstance(rule, annotated_types.Le)), None)
    above = next((rule.gt for rule in info.metadata if isinstance(rule, annotated_types.Gt)), None)
    kind = "a whole number" if info.annotation in (int, int | None) else "a number"
    if low is not None and high is not None:
        return f"use {kind} from {low} to {high}"
    if above is not None:
        return f"use {kind} greater than {above}"
    if info.annotation is bool:
        return "use true or false"
    return "see the settings page of the docs"


def ensure_credentials(settings: StackSettings) -> StackSettings:
    """Generate the missing credentials into `.env` (mode 0600), keeping every existing line."""
    missing = settings.missing_credentials()
    path = settings.env_file
    if path.exists() and path.stat().st_mode & 0o077:
        path.chmod(0o600)  # written by hand, or by an older version: it holds the secrets
    if not missing:
        return settings
    generated = {name: secrets.token_urlsafe(GENERATED_CREDENTIALS[name]) for name in missing}
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = path.read_text() if path.exists() else ""
    header = (
        "" if existing else "# H2Ops credentials, generated on first `nox -s up`. Keep private.\n"
    )
    if existing and not existing.endswith("\n"):
        existing += "\n"
    lines = "".join(f"{ENV_PREFIX}{name.upper()}={value}\n" for name, value in generated.items())
    write_private(path, header + existing + lines)
    return settings.model_copy(update=generated)
