"""Stack settings: ports, host, S3 backend, state dir and generated credentials.

Read from `H2OPS_*` environment variables, then the repository's `.env`, then `[tool.h2ops]` in
its pyproject.toml (a project's committed choices, e.g. `s3_backend = "none"`), so a user
changes a port with one line and credentials stay out of the code and out of git.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import annotated_types
from pydantic import Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "H2OPS_"

Port = Annotated[int, Field(ge=1, le=65535)]
S3Backend = Literal["auto", "minio", "rclone", "none"]

# The credentials `up` writes to `.env` on first run; each is random, none has a default.
GENERATED_CREDENTIALS: dict[str, int] = {
    "s3_access_key": 16,
    "s3_secret_key": 32,
    "airflow_password": 18,
    "airflow_jwt_secret": 32,
    "jupyter_token": 24,
}


class SettingsError(ValueError):
    """A setting has a value the stack cannot use; the message names the variable and value."""


class StackSettings(BaseSettings):
    """Everything a user may set about the stack, with the defaults a laptop wants."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        validate_default=True,
    )
    host: str = Field("127.0.0.1", description="Address every service binds to.")
    airflow_port: Port = Field(8080, description="Airflow API server and UI.")
    mlflow_port: Port = Field(5000, description="MLflow tracking server and UI.")
    jupyter_port: Port = Field(8888, description="JupyterLab.")
    s3_port: Port = Field(9000, description="S3 API.")
    s3_console_port: Port = Field(9001, description="MinIO console (MinIO backend only).")
    s3_backend: S3Backend = Field(
        "auto", description="minio, rclone, none, or auto (minio when on PATH, else rclone)."
    )
    state_dir: Path = Field(Path(".h2ops"), description="Data, databases, logs, sockets.")
    env_file: Path = Field(Path(".env"), description="Where generated credentials are kept.")
    ready_timeout: float = Field(
        180.0, gt=0, description="Seconds a service may take to become healthy."
    )
    # Each LocalExecutor worker is a process that holds about 50 MB while idle.
    airflow_parallelism: int = Field(
        2, ge=1, le=64, description="Airflow tasks run at once (LocalExecutor workers)."
    )
    # One process imports Airflow and forks the four components: about 200 MB less and a
    # faster start; off runs each component as its own interpreter.
    airflow_preload: bool = Field(
        True, description="Fork Airflow's components from one process that imported it once."
    )

    airflow_username: str = "admin"
    airflow_password: str = ""
    airflow_jwt_secret: str = ""
    jupyter_token: str = ""
    s3_access_key: str = ""
    s3_secret_key: str = ""

    @model_validator(mode="after")
    def _ports_differ(self) -> StackSettings:
        ports = {
            "H2OPS_AIRFLOW_PORT": self.airflow_port,
            "H2OPS_MLFLOW_PORT": self.mlflow_port,
            "H2OPS_JUPYTER_PORT": self.jupyter_port,
            "H2OPS_S3_PORT": self.s3_port,
            "H2OPS_S3_CONSOLE_PORT": self.s3_console_port,
        }
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
            }
        )

    @property
    def credentials(self) -> dict[str, str]:
        """The credentials a user types or pastes, under the names `status --json` promises."""
        return {
            "airflow_username": self.airflow_username,
            "airflow_password": self.airflow_password,
            "jupyter_token": self.jupyter_token,
            "s3_access_key": self.s3_access_key,
            "s3_secret_key": self.s3_secret_key,
        }

    def missing_credentials(self) -> list[str]:
        return [name for name in GENERATED_CREDENTIALS if not getattr(self, name)]


def _anchor(path: Path, root: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else (root / path)


def load_settings(root: Path = REPO_ROOT) -> StackSettings:
    """Read the settings of the repository at `root`; raise SettingsError on a bad value."""
    env_file = _anchor(Path(os.environ.get(f"{ENV_PREFIX}ENV_FILE", ".env")), root)
    try:
        sources: tuple[tuple[PydanticBaseSettingsSource, ...], dict[str, Any]]
        sources = (_sources(env_file, root), {})
        settings = StackSettings(_build_sources=sources)  # type: ignore[call-arg]
    except ValidationError as error:
        raise SettingsError(_explain(error)) from None
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


def _explain(error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        if not problem["loc"]:  # a rule across fields: its message names the variables
            lines.append(str(problem["msg"]).removeprefix("Value error, "))
            continue
        field = str(problem["loc"][0])
        variable = f"{ENV_PREFIX}{field.upper()}"
        hint = hint_for(field)
        lines.append(f"{variable}={problem['input']!r} is not valid ({problem['msg']}): {hint}")
    return "\n".join(lines)


def hint_for(field: str) -> str:
    """What a valid value of `field` looks like, read off its type and bounds (so the hint
    cannot disagree with the check)."""
    info = StackSettings.model_fields[field]
    if isinstance(info.json_schema_extra, dict) and "hint" in info.json_schema_extra:
        return str(info.json_schema_extra["hint"])  # what type and bounds cannot say
    if get_origin(info.annotation) is Literal:
        return "use one of " + ", ".join(str(choice) for choice in get_args(info.annotation))
    low = next((rule.ge for rule in info.metadata if isinstance(rule, annotated_types.Ge)), None)
    high = next((rule.le for rule in info.metadata if isinstance(rule, annotated_types.Le)), None)
    above = next((rule.gt for rule in info.metadata if isinstance(rule, annotated_types.Gt)), None)
    kind = "a whole number" if info.annotation is int else "a number"
    if low is not None and high is not None:
        return f"use {kind} from {low} to {high}"
    if above is not None:
        return f"use {kind} greater than {above}"
    if info.annotation is bool:
        return "use true or false"
    return "see the README's settings table"


def ensure_credentials(settings: StackSettings) -> StackSettings:
    """Generate the missing credentials into `.env` (mode 0600), keeping every existing line."""
    missing = settings.missing_credentials()
    if not missing:
        return settings
    generated = {name: secrets.token_urlsafe(GENERATED_CREDENTIALS[name]) for name in missing}
    path = settings.env_file
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = path.read_text() if path.exists() else ""
    header = (
        "" if existing else "# H2Ops credentials, generated on first `nox -s up`. Keep private.\n"
    )
    if existing and not existing.endswith("\n"):
        existing += "\n"
    lines = "".join(f"{ENV_PREFIX}{name.upper()}={value}\n" for name, value in generated.items())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(header + existing + lines)
    path.chmod(0o600)
    return settings.model_copy(update=generated)
