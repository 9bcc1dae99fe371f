"""`nox -s deploy`: render `deploy/` (the project's image and the values for the official Airflow
and MLflow Helm charts) from the settings the local stack uses, and check it offline.

The local stack is for development; a cluster runs the real engines. What both must agree on
(the locked packages, the Airflow and Python versions, bucket names, the experiment, the image
tag, the environment a task reads) is read here from `uv.lock`, `.python-version`, `services/`
and `project/`, so the rendered files cannot drift from them: `--check` fails when a file is
out of date, when a values file breaks its chart's schema (vendored in `deploy/schemas/`), when
one of our manifests is not valid Kubernetes, or when a secret is written inline.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from services.airflow.project_settings import AirflowSettings, references
from services.plan import ClientEndpoints, client_environment
from services.port_forwarding import mlflow_allowed_hosts
from services.s3.store import ARTIFACTS_BUCKET, DATA_BUCKET
from services.serving.bundle import PORT as BUNDLE_PORT
from services.serving.server import SERVED_PATH
from services.serving.service import REGISTRY_CLIENT_ENVIRONMENT
from services.settings import REPO_ROOT, StackSettings, project_choices

DEPLOY = REPO_ROOT / "deploy"
# The official Apache Airflow chart (Airflow 3 from 1.17 on) and MLflow's own chart (mlflow/mlflow
# `charts/`); their schemas in deploy/schemas/ say which commit they come from.
AIRFLOW_CHART = ("apache-airflow/airflow", "https://airflow.apache.org", "1.18.0")
MLFLOW_CHART = ("oci://ghcr.io/mlflow/charts/mlflow", "", "0.1.1")
# Where `helm pull` puts the pinned charts for `--check` to render them (git-ignored).
CHARTS_DIR = DEPLOY / ".charts"
# The Kubernetes version our own manifests are checked against (kubernetes-validate's schemas).
KUBERNETES_VERSION = "1.33.0"
# Where the cluster keeps what must never be written into a values file: Secret name, then
# the key in it for each environment variable (see the README's "Beyond one machine").
S3_SECRET = (
    "h2ops-s3",
    {"AWS_ACCESS_KEY_ID": "access-key-id", "AWS_SECRET_ACCESS_KEY": "secret-access-key"},
)
AIRFLOW_SECRETS = {
    "metadata": "h2ops-airflow-metadata",  # key `connection`: postgresql://...
    "fernet": "h2ops-airflow-fernet",  # key `fernet-key`
    "api": "h2ops-airflow-api-secret",  # key `api-secret-key`
    "jwt": "h2ops-airflow-jwt",  # key `jwt-secret`
}
MLFLOW_DB_SECRET = ("h2ops-mlflow-db", "uri")  # postgresql://...
# `aws_default` as the local stack defines it, built from the S3 keys by `--secrets`.
AWS_DEFAULT_SECRET = ("h2ops-s3", "aws-default-connection")
# Not referenced by the values: the first Airflow user is made from it by hand (see the docs).
ADMIN_SECRET = "h2ops-airflow-admin"  # keys `username`, `password`
# The project's connections and variables that hold a `${NAME}` reference, resolved by `--secrets`.
SETTINGS_SECRET = "h2ops-airflow-settings"
MLFLOW_SERVICE = "h2ops-mlflow"
SERVING = "h2ops-serving"  # the champion's Deployment and Service (deploy/k8s/serving.yaml)
MLFLOW_PORT = 5000
# Airflow's settings of the local stack that a cluster needs too (services/airflow/service.py).
SHARED_AIRFLOW_SETTINGS = (
    "AIRFLOW__CORE__LOAD_EXAMPLES",
    "AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY",
    "MLFLOW_CONFIGURE_LOGGING",
)
SECRET_NAMES = re.compile(r"(SECRET|PASSWORD|TOKEN|ACCESS_KEY|FERNET|_CONN$|CONNECTION)", re.I)


@dataclass(frozen=True)
class Cluster:
    """What only the cluster knows (deploy/cluster.toml): edit it, then `nox -s deploy`."""

    namespace: str
    image_repository: str
    s3_endpoint: str
    s3_region: str
    # Where tasks reach the champion (H2OPS_SERVING_URL); unset: the serving Deployment's
    # Service (deploy/k8s/serving.yaml), on the port a packaged bundle uses too.
    serving_url: str = ""

    @classmethod
    def load(cls, path: Path) -> Cluster:
        data = tomllib.loads(path.read_text())
        fields = cls.__dataclass_fields__
        required = [name for name in fields if name != "serving_url"]
        missing = [name for name in required if name not in data]
        if missing:
            raise SystemExit(f"{path}: set {', '.join(missing)} (see the docs: beyond one machine)")
        return cls(**{name: str(data[name]) for name in fields if name in data})

    @property
    def serving(self) -> str:
        default = f"http://{SERVING}.{self.namespace}.svc.cluster.local:{BUNDLE_PORT}"
        return self.serving_url or default


@dataclass(frozen=True)
class Project:
    """What the local stack and the example project already decide."""

    airflow_version: str
    python_version: str
    project_version: str
    distribution: str
    artifacts_bucket: str
    data_bucket: str
    airflow_settings: dict[str, str]
    project_settings: dict[str, str]
    # What the champion is: the committed choices ([tool.h2ops]), as the local `serving` has.
    serving_model: str
    serving_alias: str
    serving_poll_seconds: float

    @classmethod
    def read(cls, root: Path = REPO_ROOT) -> Project:
        lock = tomllib.loads((root / "uv.lock").read_text())
        versions = {package["name"]: package["version"] for package in lock["package"]}
        project = tomllib.loads((root / "project" / "pyproject.toml").read_text())
        choices = StackSettings.model_validate(
            {**project_choices(root / "pyproject.toml"), "airflow_jwt_secret": "unused"}
        )
        return cls(
            airflow_version=versions["apache-airflow"],
            python_version=(root / ".python-version").read_text().strip(),
            project_version=project["project"]["version"],
            distribution=project["project"]["name"],
            artifacts_bucket=ARTIFACTS_BUCKET,
            data_bucket=DATA_BUCKET,
            airflow_settings=_shared_airflow_settings(),
            project_settings=AirflowSettings.read(root).environment(),
            serving_model=choices.serving_model,
            serving_alias=choices.serving_alias,
            serving_poll_seconds=choices.serving_poll_seconds,
        )


# The local `serving` service's own server, so the cluster serves the champion the same way.
SERVING_FILES = (
    "services/__init__.py",
    "services/serving/__init__.py",
    "services/serving/server.py",
    "services/serving/requirements.py",
)
# What the image holds besides the rendered Dockerfile and requirements (DOCKERIGNORE lets in
# exactly these, less bytecode caches).
BAKED_PATHS = ("project/src", "project/dags", *SERVING_FILES)


def image_tag(root: Path, version: str, dockerfile_text: str, requirements_text: str) -> str:
    """The project's version and a digest of everything baked into the image: a change to a
    DAG, the package, a locked pin or the Dockerfile gives a new tag, so `helm upgrade` rolls
    out new pods and no node keeps an old image under an old tag (pullPolicy IfNotPresent)."""
    digest = hashlib.sha256()
    baked = [("deploy/Dockerfile", dockerfile_text.encode())]
    baked.append(("deploy/requirements.txt", requirements_text.encode()))
    for baked_path in BAKED_PATHS:
        top = root / baked_path
        for path in [top] if top.is_file() else sorted(top.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                baked.append((path.relative_to(root).as_posix(), path.read_bytes()))
    for name, content in baked:
        digest.update(f"{name}\0{len(content)}\0".encode())
        digest.update(content)
    return f"{version}-{digest.hexdigest()[:12]}"


def _shared_airflow_settings() -> dict[str, str]:
    from services.airflow.service import airflow_environment
    from services.plan import StackPlan
    from services.settings import StackSettings

    settings = StackSettings.model_validate({"airflow_jwt_secret": "unused"})
    local = airflow_environment(StackPlan.of(settings))
    return {name: local[name] for name in SHARED_AIRFLOW_SETTINGS}


def mlflow_url(cluster: Cluster) -> str:
    return f"http://{MLFLOW_SERVICE}.{cluster.namespace}.svc.cluster.local:{MLFLOW_PORT}"


def task_environment(cluster: Cluster, project: Project, tracking_uri: str) -> dict[str, str]:
    """What a task (and a notebook, and the MLflow server) reads to reach MLflow and S3: built
    by the local stack's own builder (services/plan.py), without the keys (a Secret has them)."""
    return client_environment(
        ClientEndpoints(
            tracking_uri=tracking_uri,
            serving_url=cluster.serving,
            data_url=f"s3://{project.data_bucket}",
            s3_endpoint=cluster.s3_endpoint,
            s3_region=cluster.s3_region,
        )
    )


def settings_secret_key(variable: str) -> str:
    """The key in SETTINGS_SECRET for one of the project's AIRFLOW_CONN_*/AIRFLOW_VAR_*."""
    return variable.lower().replace("_", "-")


def split_by_reference(settings: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The project's connections and variables: those written out in full (the values get
    them), and those that hold a `${NAME}` (the cluster reads them from SETTINGS_SECRET)."""
    inline = {name: text for name, text in settings.items() if not references(text)}
    return inline, {name: text for name, text in settings.items() if name not in inline}


def airflow_values(cluster: Cluster, project: Project, tag: str) -> dict[str, Any]:
    inline, by_reference = split_by_reference(project.project_settings)
    environment = {
        **task_environment(cluster, project, mlflow_url(cluster)),
        **project.airflow_settings,
        # Task logs go to S3: a KubernetesExecutor pod is gone when its task ends.
        "AIRFLOW__LOGGING__REMOTE_LOGGING": "True",
        "AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER": f"s3://{project.data_bucket}/airflow-logs",
        # The same `aws_default` as on the laptop, from the S3 Secret (the `secret` list below).
        "AIRFLOW__LOGGING__REMOTE_LOG_CONN_ID": "aws_default",
        # The project's own (deploy/airflow_settings.yaml), as `up` gives them locally.
        **inline,
    }
    secret_name, keys = S3_SECRET
    return {
        "defaultAirflowRepository": cluster.image_repository,
        "defaultAirflowTag": tag,
        "airflowVersion": project.airflow_version,
        "images": {
            "airflow": {
                "repository": cluster.image_repository,
                "tag": tag,
                "pullPolicy": "IfNotPresent",
            },
            # The migration job runs the same image, so it migrates to our Airflow version.
            "useDefaultImageForMigration": False,
        },
        "executor": "KubernetesExecutor",
        "env": [{"name": name, "value": value} for name, value in environment.items()],
        "secret": [
            *(
                {"envName": env, "secretName": secret_name, "secretKey": key}
                for env, key in keys.items()
            ),
            {
                "envName": "AIRFLOW_CONN_AWS_DEFAULT",
                "secretName": AWS_DEFAULT_SECRET[0],
                "secretKey": AWS_DEFAULT_SECRET[1],
            },
            *(
                {
                    "envName": name,
                    "secretName": SETTINGS_SECRET,
                    "secretKey": settings_secret_key(name),
                }
                for name in by_reference
            ),
        ],
        # Metadata in an external Postgres; the chart's own Postgres is off.
        "data": {"metadataSecretName": AIRFLOW_SECRETS["metadata"]},
        "postgresql": {"enabled": False},
        "fernetKeySecretName": AIRFLOW_SECRETS["fernet"],
        "apiSecretKeySecretName": AIRFLOW_SECRETS["api"],
        "jwtSecretName": AIRFLOW_SECRETS["jwt"],
        # No `admin`/`admin`: the chart's create-user job stays off; the first user is made from
        # a Secret you create (docs: beyond one machine), as the local stack generates its own.
        "webserver": {"defaultUser": {"enabled": False}},
        # Weight the KubernetesExecutor never uses: Redis is the Celery executors' broker (and
        # its Secrets would be regenerated on every upgrade), nobody reads statsd, and task logs
        # are in S3, so the triggerer needs no volume (nor a default StorageClass).
        "redis": {"enabled": False},
        "statsd": {"enabled": False},
        "triggerer": {"persistence": {"enabled": False}},
    }


def mlflow_values(cluster: Cluster, project: Project, tag: str) -> dict[str, Any]:
    service_names = [
        MLFLOW_SERVICE,
        f"{MLFLOW_SERVICE}.{cluster.namespace}",
        f"{MLFLOW_SERVICE}.{cluster.namespace}.svc",
        f"{MLFLOW_SERVICE}.{cluster.namespace}.svc.cluster.local",
    ]
    # In-cluster clients dial the Service's names; a browser comes through `kubectl
    # port-forward` on any local port, as the local stack's MLflow accepts it (one definition).
    allowed = [
        *service_names,
        *(f"{name}:{MLFLOW_PORT}" for name in service_names),
        *mlflow_allowed_hosts(MLFLOW_PORT, {}),
    ]
    server_env = {
        name: value
        for name, value in task_environment(cluster, project, "").items()
        if name not in ("MLFLOW_TRACKING_URI", "H2OPS_DATA_URL", "H2OPS_SERVING_URL")
    }
    secret_name, keys = S3_SECRET
    db_secret, db_key = MLFLOW_DB_SECRET
    return {
        "fullnameOverride": MLFLOW_SERVICE,
        # The project's image: the locked mlflow, boto3 and the Postgres driver of Airflow's image.
        "image": {
            "repository": cluster.image_repository,
            "tag": tag,
            "pullPolicy": "IfNotPresent",
        },
        "server": {
            "value_options": {
                "host": "0.0.0.0",
                "port": MLFLOW_PORT,
                "workers": 2,
                # MLflow answers only the host names it is told (tasks dial the Service's name).
                "allowed_hosts": ",".join(allowed),
            },
            # Clients never touch the bucket: the server proxies artifacts (as locally).
            "flag_options": ["serve_artifacts"],
        },
        # `mlflow db upgrade` once, as a pre-install/pre-upgrade hook, before any server starts
        # (not two workers racing to migrate the same database).
        "migrations": {"enabled": True},
        "mlflow": {
            "backendStoreUriFrom": {"secretKeyRef": {"name": db_secret, "key": db_key}},
            "artifactsDestination": f"s3://{project.artifacts_bucket}/",
        },
        "env": [
            *({"name": name, "value": value} for name, value in server_env.items()),
            *(
                {"name": env, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": key}}}
                for env, key in keys.items()
            ),
        ],
        # Airflow's image runs as uid 50000 in group 0.
        "podSecurityContext": {
            "runAsNonRoot": True,
            "runAsUser": 50000,
            "fsGroup": 0,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }


MODELS_DIR = "/opt/h2ops/models"


def namespace_manifest(cluster: Cluster) -> dict[str, Any]:
    """The namespace both releases and the serving Deployment go into."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": cluster.namespace, "labels": {"app.kubernetes.io/part-of": "h2ops"}},
    }


def serving_manifests(cluster: Cluster, project: Project, tag: str) -> list[dict[str, Any]]:
    """The champion, served as locally: the `serving` service's server (services/serving/
    server.py) following `models:/<model>@<alias>` in the cluster's MLflow, behind the Service
    tasks dial (H2OPS_SERVING_URL). Ready only while a version is served (/ping), as locally."""
    labels = {"app.kubernetes.io/name": SERVING, "app.kubernetes.io/part-of": "h2ops"}
    metadata = {"name": SERVING, "namespace": cluster.namespace, "labels": labels}
    # The tasks' client environment (one builder), and the registry client's patience.
    environment = {
        **task_environment(cluster, project, mlflow_url(cluster)),
        **REGISTRY_CLIENT_ENVIRONMENT,
    }
    container = {
        "name": "serving",
        "image": f"{cluster.image_repository}:{tag}",
        "imagePullPolicy": "IfNotPresent",
        # The image's entrypoint (Airflow's) runs a `python` command as it is.
        "args": [
            "python",
            "-m",
            "services.serving.server",
            "--host",
            "0.0.0.0",
            "--port",
            str(BUNDLE_PORT),
            "--model",
            project.serving_model,
            "--alias",
            project.serving_alias,
            "--poll-seconds",
            str(project.serving_poll_seconds),
            "--models-dir",
            MODELS_DIR,
        ],
        "env": [{"name": name, "value": value} for name, value in environment.items()],
        "ports": [{"name": "http", "containerPort": BUNDLE_PORT}],
        "readinessProbe": {"httpGet": {"path": "/ping", "port": "http"}, "periodSeconds": 10},
        "livenessProbe": {
            "httpGet": {"path": SERVED_PATH, "port": "http"},
            "initialDelaySeconds": 30,
            "periodSeconds": 30,
        },
        "volumeMounts": [{"name": "models", "mountPath": MODELS_DIR}],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/name": SERVING}},
            "template": {
                "metadata": {"labels": dict(labels)},  # a copy: no YAML anchor
                "spec": {
                    "containers": [container],
                    "volumes": [{"name": "models", "emptyDir": {}}],
                    # Airflow's image runs as uid 50000 in group 0.
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 50000,
                        "fsGroup": 0,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "selector": {"app.kubernetes.io/name": SERVING},
            "ports": [{"name": "http", "port": BUNDLE_PORT, "targetPort": "http"}],
        },
    }
    return [deployment, service]


def dockerfile(project: Project) -> str:
    serving_copies = "\n".join(
        f"COPY --chown=airflow:root {path} /opt/h2ops/{path}" for path in SERVING_FILES
    )
    return f"""\
# Rendered by `nox -s deploy` from uv.lock and .python-version: edit devtools/deploy.py instead.
# Build from the repository root: `nox -s deploy` prints the command with the image's tag.
FROM apache/airflow:{project.airflow_version}-python{project.python_version}

# Exactly the packages uv.lock pins for the project (hashes checked, nothing resolved here);
# Airflow's own image brings the providers the chart needs (cncf.kubernetes, amazon, postgres),
# at its own constraints; `pip check` fails the build if the two sets do not fit together.
COPY --chown=airflow:root deploy/requirements.txt /opt/h2ops/requirements.txt
RUN pip install --no-cache-dir --no-deps --require-hashes -r /opt/h2ops/requirements.txt \\
    && pip check

# The project's package is imported from its source, as the local stack's editable install does,
# and its DAGs are the image's DAGs folder (the chart's default: no git-sync, no volume).
COPY --chown=airflow:root project/src /opt/h2ops/project/src
COPY --chown=airflow:root project/dags /opt/airflow/dags
# The local stack's model server, for the serving Deployment (deploy/k8s/serving.yaml).
{serving_copies}
ENV PYTHONPATH=/opt/h2ops/project/src:/opt/h2ops
"""


DOCKERIGNORE = """\
# Rendered by `nox -s deploy`: the build context is the repository; send only what the image uses.
*
!deploy/requirements.txt
!project/src
!project/dags
!services/__init__.py
!services/serving/__init__.py
!services/serving/server.py
!services/serving/requirements.py
**/__pycache__
"""


def requirements(distribution: str, root: Path = REPO_ROOT) -> str:
    """The project's locked dependencies with hashes, as `uv export` writes them."""
    uv = Path(sys.executable).with_name("uv")
    return subprocess.run(
        [
            str(uv),
            "export",
            "--frozen",
            "--no-dev",
            "--package",
            distribution,
            "--no-emit-workspace",
            "--format",
            "requirements-txt",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout


def _yaml(header: str, data: Any) -> str:
    return header + yaml.safe_dump(data, sort_keys=False, width=100)


def render(root: Path = REPO_ROOT) -> dict[str, str]:
    """Every file under deploy/ this module owns, by path relative to deploy/."""
    cluster = Cluster.load(root / "deploy" / "cluster.toml")
    project = Project.read(root)
    name, repository, version = AIRFLOW_CHART
    airflow_header = (
        "# Rendered by `nox -s deploy`: edit deploy/cluster.toml or devtools/deploy.py instead.\n"
        f"# Chart {name} {version} ({repository}); schema: deploy/schemas/airflow.\n"
    )
    chart, _, mlflow_version = MLFLOW_CHART
    mlflow_header = (
        "# Rendered by `nox -s deploy`: edit deploy/cluster.toml or devtools/deploy.py instead.\n"
        f"# Chart {chart} {mlflow_version}; schema: deploy/schemas/mlflow.\n"
    )
    k8s_header = "# Rendered by `nox -s deploy`: apply before installing the charts.\n"
    docker = dockerfile(project)
    locked = requirements(project.distribution, root)
    tag = image_tag(root, project.project_version, docker, locked)
    return {
        "Dockerfile": docker,
        "Dockerfile.dockerignore": DOCKERIGNORE,
        "requirements.txt": locked,
        "values/airflow.yaml": _yaml(airflow_header, airflow_values(cluster, project, tag)),
        "values/mlflow.yaml": _yaml(mlflow_header, mlflow_values(cluster, project, tag)),
        "k8s/namespace.yaml": _yaml(k8s_header, namespace_manifest(cluster)),
        "k8s/serving.yaml": k8s_header
        + yaml.safe_dump_all(serving_manifests(cluster, project, tag), sort_keys=False, width=100),
    }


def image_reference(rendered: dict[str, str]) -> str:
    """`repository:tag` of the project's image, as the rendered Airflow values name it."""
    image = yaml.safe_load(rendered["values/airflow.yaml"])["images"]["airflow"]
    return f"{image['repository']}:{image['tag']}"


def write(directory: Path, files: dict[str, str]) -> list[str]:
    changed = []
    for relative, text in files.items():
        path = directory / relative
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            changed.append(relative)
    return changed


def _schema_problems(values_file: Path, schema_file: Path) -> list[str]:
    values = yaml.safe_load(values_file.read_text())
    validator = jsonschema.Draft7Validator(json.loads(schema_file.read_text()))
    problems = []
    for error in sorted(validator.iter_errors(values), key=lambda error: list(error.path)):
        where = ".".join(str(part) for part in error.absolute_path) or "(top level)"
        problems.append(f"{values_file.name}: {where}: {error.message}")
    return problems


def _inline_secrets(values_file: Path) -> list[str]:
    """An environment variable that carries a secret must come from a Secret, never a value."""
    values = yaml.safe_load(values_file.read_text()) or {}
    return [
        f"{values_file.name}: env {entry.get('name')} is a secret written inline: "
        "reference a Secret instead (valueFrom.secretKeyRef, or the chart's `secret` list)"
        for entry in values.get("env") or []
        if isinstance(entry, dict)
        and SECRET_NAMES.search(str(entry.get("name", "")))
        and "value" in entry
    ]


def _default_user_problems(values_file: Path) -> list[str]:
    """The chart's create-user job makes `admin`/`admin` unless told not to: a known login."""
    values = yaml.safe_load(values_file.read_text()) or {}
    enabled = ((values.get("webserver") or {}).get("defaultUser") or {}).get("enabled", True)
    # Charts after 1.18 read the default user from `createUserJob.defaultUser`.
    newer = (values.get("createUserJob") or {}).get("defaultUser")
    if enabled is False and not newer:
        return []
    return [
        f"{values_file.name}: webserver.defaultUser.enabled is not false: the chart would create "
        "the user admin/admin; set it false and create the first user from a Secret "
        "(see the docs: beyond one machine)"
    ]


def _manifest_problems(path: Path) -> list[str]:
    problems = []
    for document in yaml.safe_load_all(path.read_text()):
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(part) for part in error.path) or "(top level)"
            problems.append(f"{path.name}: {where}: {error.message}")
    return problems


def check(directory: Path, expected: dict[str, str] | None = None) -> list[str]:
    """Everything wrong with the deploy files in `directory` (empty when all is well).
    With `expected` (what `render` writes), a file that differs is out of date."""
    problems = []
    for relative, text in (expected or {}).items():
        path = directory / relative
        if not path.exists() or path.read_text() != text:
            diff = difflib.unified_diff(
                path.read_text().splitlines() if path.exists() else [],
                text.splitlines(),
                f"{relative} (on disk)",
                f"{relative} (rendered)",
                lineterm="",
                n=0,
            )
            shown = "\n    ".join(list(diff)[2:8])
            problems.append(f"{relative} is out of date: run `nox -s deploy`\n    {shown}")
    schemas = directory / "schemas"
    for chart in ("airflow", "mlflow"):
        values = directory / "values" / f"{chart}.yaml"
        problems += _schema_problems(values, schemas / chart / "values.schema.json")
        problems += _inline_secrets(values)
    problems += _default_user_problems(directory / "values" / "airflow.yaml")
    for manifest in sorted((directory / "k8s").glob("*.yaml")):
        problems += _manifest_problems(manifest)
    return problems


def chart_archives(charts_dir: Path) -> dict[str, Path]:
    """The pinned charts as `helm pull` saves them, by the values file each takes."""
    return {
        "airflow": charts_dir / f"airflow-{AIRFLOW_CHART[2]}.tgz",
        "mlflow": charts_dir / f"mlflow-{MLFLOW_CHART[2]}.tgz",
    }


def helm_check(directory: Path, charts_dir: Path, namespace: str) -> tuple[list[str], str]:
    """Both charts rendered with `helm template` and our values, every object validated
    strictly; where helm or a pinned chart is not here, the one line that says so."""
    helm = shutil.which("helm")
    archives = chart_archives(charts_dir)
    skipped = "helm template: not run ({}); the values were checked against the charts' schemas"
    if helm is None:
        return [], skipped.format("no `helm` on PATH")
    missing = [path.name for path in archives.values() if not path.exists()]
    if missing:
        pull = (
            f"`helm pull {AIRFLOW_CHART[0]} --version {AIRFLOW_CHART[2]}` and "
            f"`helm pull {MLFLOW_CHART[0]} --version {MLFLOW_CHART[2]}` with `-d {charts_dir}`"
        )
        return [], skipped.format(f"no {', '.join(missing)} in {charts_dir}: {pull}")
    problems: list[str] = []
    objects = 0
    for chart, archive in archives.items():
        values = directory / "values" / f"{chart}.yaml"
        command = [
            helm,
            "template",
            chart,
            str(archive),
            "--namespace",
            namespace,
            "-f",
            str(values),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            problems.append(f"helm template {archive.name}: {done.stderr.strip()[-2000:]}")
            continue
        for document in yaml.safe_load_all(done.stdout):
            if not document:
                continue
            objects += 1
            try:
                kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as error:
                where = ".".join(str(part) for part in error.path) or "(top level)"
                name = f"{document.get('kind')}/{document.get('metadata', {}).get('name')}"
                problems.append(f"{archive.name}: {name}: {where}: {error.message}")
    return problems, (
        f"helm template: {objects} objects rendered from both charts, each valid Kubernetes "
        f"{KUBERNETES_VERSION}"
    )


def _write_secrets(path: Path | None) -> int:
    import os

    from devtools.deploy_secrets import MissingValuesError, default_path, write_secrets
    from services.settings import load_settings

    cluster = Cluster.load(DEPLOY / "cluster.toml")
    path = path or default_path(load_settings().state_dir.resolve(), cluster)
    _, by_reference = split_by_reference(AirflowSettings.read(REPO_ROOT).environment())
    try:
        names = write_secrets(path, cluster, os.environ, by_reference)
    except MissingValuesError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"wrote the Secrets {', '.join(names)} to {path} (owner-only; never commit it)")
    print(f"  kubectl apply -f {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nox -s deploy --", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="change nothing; fail if anything is wrong"
    )
    parser.add_argument("--dir", type=Path, default=DEPLOY, help="the deploy folder to check")
    parser.add_argument(
        "--charts",
        type=Path,
        default=CHARTS_DIR,
        help="where `helm pull` saved the pinned charts, for `helm template`",
    )
    parser.add_argument(
        "--secrets",
        action="store_true",
        help="write the Secrets the values reference (owner-only, outside git) and stop",
    )
    parser.add_argument(
        "--secrets-file",
        type=Path,
        help="where --secrets writes (default: <state dir>/cluster/<namespace>-secrets.yaml)",
    )
    args = parser.parse_args(argv)
    if args.secrets:
        return _write_secrets(args.secrets_file)
    rendered = render()
    if not args.check:
        for relative in write(args.dir, rendered):
            print(f"wrote deploy/{relative}")
    problems = check(args.dir, rendered)
    namespace = Cluster.load(args.dir / "cluster.toml").namespace
    helm_problems, helm_line = helm_check(args.dir, args.charts, namespace)
    problems += helm_problems
    print(helm_line)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    image = image_reference(rendered)
    print(
        f"deploy/ is up to date and valid: image {image}, "
        f"Airflow chart {AIRFLOW_CHART[2]}, MLflow chart {MLFLOW_CHART[2]}"
    )
    if not args.check:
        print(f"build and push it:\n  docker build -f deploy/Dockerfile -t {image} .")
        print(f"  docker push {image}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


def queue_workload(dag_id: str, run_id: str, task_id: str) -> str:
    """The scheduler's half of a KubernetesExecutor task, on the local stack this process's
    settings name: the task instance set to queued and the `ExecuteTask` workload (with its
    execution-API token) the executor serialises into the worker pod's command. For the test
    that runs that command (tests/devtools/test_deploy.py); a cluster's scheduler does this
    itself."""
    import os
    from datetime import UTC, datetime

    from services.airflow.service import airflow_environment
    from services.plan import StackPlan
    from services.settings import load_settings

    os.environ.update(airflow_environment(StackPlan.of(load_settings())))
    from airflow.executors.base_executor import BaseExecutor
    from airflow.executors.workloads import ExecuteTask
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    with create_session() as session:
        instance = session.scalars(
            select(TaskInstance).where(
                TaskInstance.dag_id == dag_id,
                TaskInstance.run_id == run_id,
                TaskInstance.task_id == task_id,
                TaskInstance.map_index == -1,
            )
        ).one()
        instance.state = TaskInstanceState.QUEUED
        instance.queued_dttm = datetime.now(UTC)
        session.flush()
        workload = ExecuteTask.make(instance, generator=BaseExecutor().jwt_generator)
        return workload.model_dump_json()
