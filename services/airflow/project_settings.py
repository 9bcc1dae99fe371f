"""The connections and variables a project's DAGs use, declared once in a committed file
(`deploy/airflow_settings.yaml`, in the spirit of Astro's `airflow_settings.yaml`) and given to
Airflow as `AIRFLOW_CONN_*` / `AIRFLOW_VAR_*` on the laptop (`nox -s up`) and on the cluster
(`nox -s deploy`) alike, so neither needs clicking in the UI nor a copy in the metadata DB.

A secret is written by reference only: `${NAME}`, read from the environment (or `.env`) when
the local stack starts, and put into a Kubernetes Secret by `nox -s deploy -- --secrets`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

import yaml
from dotenv import dotenv_values

from services.engine.errors import StackError

SETTINGS_FILE = Path("deploy") / "airflow_settings.yaml"
# What an Airflow connection in JSON may hold (Airflow reads AIRFLOW_CONN_* as JSON or a URI).
CONNECTION_FIELDS = ("conn_type", "host", "login", "password", "schema", "port", "extra")


class AirflowSettingsError(StackError):
    """The file, or a reference in it, is wrong: the message says where and what to do."""


@dataclass(frozen=True)
class AirflowSettings:
    """Connections (by id) and variables (by name) from the committed file."""

    connections: dict[str, dict[str, Any]] = field(default_factory=dict)
    variables: dict[str, str] = field(default_factory=dict)

    @classmethod
    def read(cls, root: Path) -> AirflowSettings:
        path = root / SETTINGS_FILE
        if not path.exists():
            return cls()
        data = yaml.safe_load(path.read_text()) or {}
        connections = data.get("connections") or {}
        variables = data.get("variables") or {}
        if not isinstance(connections, dict) or not isinstance(variables, dict):
            raise AirflowSettingsError(
                f"{path}: `connections` and `variables` must be mappings (id: fields, name: value)"
            )
        for conn_id, fields in connections.items():
            unknown = set(fields or {}) - set(CONNECTION_FIELDS)
            if "conn_type" not in (fields or {}) or unknown:
                raise AirflowSettingsError(
                    f"{path}: connection {conn_id!r} needs `conn_type` and takes only "
                    f"{', '.join(CONNECTION_FIELDS)} (got {sorted(unknown) or 'no conn_type'})"
                )
        return cls(dict(connections), {name: str(value) for name, value in variables.items()})

    def environment(self) -> dict[str, str]:
        """Airflow's variables for them, `${NAME}` references still in place."""
        env = {
            f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(fields)
            for conn_id, fields in self.connections.items()
        }
        env.update({f"AIRFLOW_VAR_{name.upper()}": value for name, value in self.variables.items()})
        return env


def references(text: str) -> list[str]:
    """The `${NAME}` references in one value."""
    return Template(text).get_identifiers()


def resolved(
    environment: Mapping[str, str],
    values: Mapping[str, str],
    where: str = "in the environment or in .env",
) -> dict[str, str]:
    """`environment` with every `${NAME}` replaced from `values`; a missing one is an error."""
    missing = sorted(
        {name for text in environment.values() for name in references(text)} - set(values)
    )
    if missing:
        raise AirflowSettingsError(
            f"{SETTINGS_FILE} refers to {', '.join(missing)}: set them {where} "
            "(a secret is never written into that file)"
        )
    return {name: Template(text).substitute(values) for name, text in environment.items()}


def _values(root: Path) -> dict[str, str]:
    """What a reference may name: `.env`, then the environment (which wins, as in settings)."""
    values = {k: v for k, v in dotenv_values(root / ".env").items() if v is not None}
    return {**values, **os.environ}


def local_environment(root: Path) -> dict[str, str]:
    """What `up` gives Airflow: the file's connections and variables with their references
    filled. One that cannot be filled (or a broken file) is left out here, so `down` and
    `status` still work; `unresolved` makes `up` refuse to start Airflow without it."""
    try:
        declared = AirflowSettings.read(root).environment()
    except AirflowSettingsError:
        return {}
    values = _values(root)
    return resolved(
        {name: text for name, text in declared.items() if set(references(text)) <= set(values)},
        values,
    )


def unresolved(root: Path) -> str | None:
    """Why Airflow must not start: the file is broken, or a reference in it is not set."""
    try:
        resolved(AirflowSettings.read(root).environment(), _values(root))
    except AirflowSettingsError as error:
        return str(error)
    return None
