"""What the repository is now: read from its files, so init needs no record of earlier runs."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass

from devtools.init import InitError
from devtools.init.answers import DagStyle
from devtools.init.repository import Files, packages_in

PACKAGES_DIR = "project/src"
DAGS_DIR = "project/dags"
PROJECT_PYPROJECT = "project/pyproject.toml"
ROOT_PYPROJECT = "pyproject.toml"
# The worked example's DAG that every example layout keeps; gone means the example is gone.
EXAMPLE_MARKER = f"{DAGS_DIR}/example_inference.py"
YAML_LOADER_CALL = "load_yaml_dags"
# The skeleton's monitoring DAG is Python in every style: it says nothing of the pipeline's.
MONITORING_DAG_SUFFIX = "_monitoring.py"


@dataclass(frozen=True)
class ProjectState:
    package: str
    distribution: str
    description: str
    examples: bool
    dags: DagStyle | None
    object_store: str | None
    database: str | None = None

    @classmethod
    def of(cls, files: Files) -> ProjectState:
        project = _toml(files, PROJECT_PYPROJECT).get("project", {})
        h2ops = _toml(files, ROOT_PYPROJECT).get("tool", {}).get("h2ops", {})
        return cls(
            package=current_package(files),
            distribution=project.get("name", ""),
            description=project.get("description", ""),
            examples=EXAMPLE_MARKER in files,
            dags=dag_style(files),
            object_store=h2ops.get("s3_backend"),
            database=h2ops.get("database"),
        )


def current_package(files: Files) -> str:
    """The one package under project/src (a folder with an __init__.py)."""
    found = packages_in(files, PACKAGES_DIR)
    if len(found) != 1:
        raise InitError(
            f"expected exactly one package under {PACKAGES_DIR}/, found {found or 'none'}: "
            "init renames that one package; merge or remove the others first"
        )
    return found[0]


def dag_style(files: Files) -> DagStyle | None:
    """python, yaml or both, from the pipeline DAG files there are (a YAML loader is not a
    Python DAG, nor is the skeleton's monitoring DAG)."""
    dags = {
        path: content
        for path, content in files.items()
        if path.startswith(f"{DAGS_DIR}/") and not path.endswith(MONITORING_DAG_SUFFIX)
    }
    yaml = any(path.endswith((".yaml", ".yml")) for path in dags)
    python = any(
        path.endswith(".py") and YAML_LOADER_CALL.encode() not in content
        for path, content in dags.items()
    )
    if python and yaml:
        return "both"
    return "python" if python else ("yaml" if yaml else None)


def _toml(files: Files, path: str) -> dict:
    if path not in files:
        raise InitError(f"{path} is missing: init needs the template's layout")
    try:
        return tomllib.loads(files[path].decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise InitError(
            f"{path} is not valid TOML ({error}): fix it, then run init again"
        ) from None
