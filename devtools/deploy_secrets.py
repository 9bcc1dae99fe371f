"""`nox -s deploy -- --secrets`: the Secrets deploy/values/ reference, as one manifest file
outside git that only its owner can read, ready for `kubectl apply -f`.

Keys nobody needs to know (Fernet, api, JWT, the first user's password) are made fresh here;
what only the user knows (S3 keys, database URLs) is read from the environment, so it never
reaches a shell's history or a command line. A value already in the file is kept: a new Fernet
key on every run would make Airflow's encrypted connections unreadable. Nothing is printed but
the file's path and the Secrets' names.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml
from cryptography.fernet import Fernet

from devtools.deploy import (
    ADMIN_SECRET,
    AIRFLOW_SECRETS,
    AWS_DEFAULT_SECRET,
    KUBERNETES_VERSION,
    MLFLOW_DB_SECRET,
    S3_SECRET,
    SETTINGS_SECRET,
    Cluster,
    settings_secret_key,
)
from services.airflow.project_settings import AirflowSettingsError, resolved
from services.airflow.service import aws_connection_json
from services.engine.layout import write_private


def _random() -> str:
    return secrets.token_urlsafe(32)


def _fernet() -> str:
    return Fernet.generate_key().decode()


@dataclass(frozen=True)
class SecretKey:
    """One key of one Secret: where the user gives its value, or how a fresh one is made."""

    secret: str
    key: str
    variable: str
    make: Callable[[], str] | None = None


def secret_keys() -> list[SecretKey]:
    s3, s3_keys = S3_SECRET
    return [
        SecretKey(s3, s3_keys["AWS_ACCESS_KEY_ID"], "H2OPS_CLUSTER_S3_ACCESS_KEY_ID"),
        SecretKey(s3, s3_keys["AWS_SECRET_ACCESS_KEY"], "H2OPS_CLUSTER_S3_SECRET_ACCESS_KEY"),
        SecretKey(AIRFLOW_SECRETS["metadata"], "connection", "H2OPS_CLUSTER_AIRFLOW_DATABASE_URL"),
        SecretKey(MLFLOW_DB_SECRET[0], MLFLOW_DB_SECRET[1], "H2OPS_CLUSTER_MLFLOW_DATABASE_URL"),
        SecretKey(AIRFLOW_SECRETS["fernet"], "fernet-key", "H2OPS_CLUSTER_FERNET_KEY", _fernet),
        SecretKey(AIRFLOW_SECRETS["api"], "api-secret-key", "H2OPS_CLUSTER_API_SECRET", _random),
        SecretKey(AIRFLOW_SECRETS["jwt"], "jwt-secret", "H2OPS_CLUSTER_JWT_SECRET", _random),
        SecretKey(ADMIN_SECRET, "username", "H2OPS_CLUSTER_ADMIN_USERNAME", lambda: "admin"),
        SecretKey(ADMIN_SECRET, "password", "H2OPS_CLUSTER_ADMIN_PASSWORD", _random),
    ]


def default_path(state_dir: Path, cluster: Cluster) -> Path:
    """In the stack's state dir: git-ignored, owner-only, beside the local stack's own keys."""
    return state_dir / "cluster" / f"{cluster.namespace}-secrets.yaml"


def _kept(path: Path) -> dict[tuple[str, str], str]:
    if not path.exists():
        return {}
    return {
        (document["metadata"]["name"], key): value
        for document in yaml.safe_load_all(path.read_text())
        if document
        for key, value in (document.get("stringData") or {}).items()
    }


class MissingValuesError(Exception):
    """A value only the user knows was not given."""


def secret_manifests(
    cluster: Cluster,
    environ: Mapping[str, str],
    kept: Mapping[tuple[str, str], str],
    by_reference: Mapping[str, str],
) -> list[dict[str, Any]]:
    """Every Secret the values reference (and the first user's), values from the environment,
    else from the file written before, else made fresh; `by_reference`: the project's
    connections and variables that hold a `${NAME}`, filled from the environment."""
    data: dict[str, dict[str, str]] = {}
    missing = []
    try:
        project = resolved(by_reference, environ, "in the environment")
    except AirflowSettingsError as error:
        raise MissingValuesError(f"{error}; nothing was written") from None
    if project:
        data[SETTINGS_SECRET] = {settings_secret_key(k): v for k, v in project.items()}
    for entry in secret_keys():
        value = environ.get(entry.variable) or kept.get((entry.secret, entry.key))
        if not value and entry.make is not None:
            value = entry.make()
        if not value:
            missing.append(entry.variable)
            continue
        data.setdefault(entry.secret, {})[entry.key] = value
    if missing:
        raise MissingValuesError(
            f"set {', '.join(missing)} in the environment (only you know them), "
            "then run `nox -s deploy -- --secrets` again; nothing was written"
        )
    s3, s3_keys = S3_SECRET
    data[AWS_DEFAULT_SECRET[0]][AWS_DEFAULT_SECRET[1]] = aws_connection_json(
        data[s3][s3_keys["AWS_ACCESS_KEY_ID"]],
        data[s3][s3_keys["AWS_SECRET_ACCESS_KEY"]],
        cluster.s3_endpoint,
        cluster.s3_region,
    )
    manifests = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": cluster.namespace,
                "labels": {"app.kubernetes.io/part-of": "h2ops"},
            },
            "type": "Opaque",
            "stringData": values,
        }
        for name, values in data.items()
    ]
    for manifest in manifests:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    return manifests


def write_secrets(
    path: Path, cluster: Cluster, environ: Mapping[str, str], by_reference: Mapping[str, str]
) -> list[str]:
    """Write the Secrets to `path` (0600, its folder 0700); the names of the Secrets written."""
    manifests = secret_manifests(cluster, environ, _kept(path), by_reference)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    header = "# Written by `nox -s deploy -- --secrets`: never commit it; `kubectl apply -f` it.\n"
    write_private(path, header + yaml.safe_dump_all(manifests, sort_keys=False))
    return [manifest["metadata"]["name"] for manifest in manifests]
