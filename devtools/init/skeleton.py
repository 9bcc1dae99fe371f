"""`--no-examples`: the worked example out, the old template's `change_me_*` skeletons in.

What stays is generic: the package and its subpackages, `utils/data_store.py`, the tests'
fixtures (`tests/conftest.py`) and `data/`. What comes in imports, passes its tests and runs
on the stack: one guidance module per subpackage, a pipeline DAG (Python, YAML or both) with
the promotion gate's hook, a monitoring DAG with the drift hook (the retraining loop's
Assets wired as in the example), a starter test, a DAG integrity test, an end-to-end test and
a getting-started notebook.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from devtools.init.answers import DagStyle
from devtools.init.project_state import MONITORING_DAG_SUFFIX
from devtools.init.repository import Files, packages_in

TEMPLATES = Path(__file__).with_name("templates")
PROJECT = "project"
KEPT = ("utils/data_store.py",)
KEPT_TESTS = ("conftest.py",)
# Each subpackage's __init__.py says what belongs in it; the example's speak of water.
PURPOSES = {
    "dataloader": "Getting data in: where raw data comes from, kept in the data store.",
    "preprocess": "From raw data to model inputs: cleaning, features, training sets.",
    "train": "Fitting and choosing models, every run logged to MLflow.",
    "model": "The model itself: how it is built and scored, and its registered name.",
    "model_pipeline": "The deployable model: an MLflow pyfunc from raw inputs to predictions.",
    "postprocess": "After the model: from predictions to a product (clean-up, statistics).",
    "monitoring": "Watching what the model is asked: reference profile, drift, when to retrain.",
    "utils": "Shared helpers that are not modelling steps; data_store.py does all data I/O.",
}
YAML_NOTE = """
dag-factory reports runs of DAGs tagged `dagfactory` to an outside telemetry service unless
`AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY=False`; the YAML loaders in `dags/` drop that tag, so
the stack stays on loopback either way. Do the same for YAML DAGs you add.
"""


@dataclass(frozen=True)
class Skeleton:
    name: str
    package: str
    distribution: str
    description: str
    dags: DagStyle

    @property
    def monitoring_dag_id(self) -> str:
        """The DAG the champion Asset schedules: it scores batches for drift (any DAG style)."""
        return f"{self.package}{MONITORING_DAG_SUFFIX.removesuffix('.py')}"

    @property
    def dag_ids(self) -> list[str]:
        pipeline = f"{self.package}_pipeline"
        return {
            "python": [pipeline],
            "yaml": [pipeline],
            "both": [pipeline, f"{pipeline}_from_config"],
        }[self.dags]

    def replace_examples(self, files: Files) -> Files:
        """`files` without the example's code, DAGs, notebooks and tests, with the skeleton."""
        source = f"{PROJECT}/src/{self.package}/"
        kept = {path: content for path, content in files.items() if not _is_example(path, source)}
        new = {
            **self._subpackage_files(files),
            **self._dag_files(),
            **self._test_files(),
            f"{PROJECT}/notebooks/01_getting_started.ipynb": self._notebook(),
            f"{PROJECT}/README.md": self.render(
                TEMPLATES / "README.md.tmpl",
                dag_list=", ".join(
                    f"`{dag_id}`" for dag_id in (*self.dag_ids, self.monitoring_dag_id)
                ),
                yaml_note=YAML_NOTE if self.dags != "python" else "",
            ),
        }
        return {**kept, **{path: text.encode() for path, text in new.items()}}

    def _subpackage_files(self, files: Files) -> dict[str, str]:
        """A guiding __init__.py and a change_me_<subpackage>.py in each subpackage there is."""
        source = f"{PROJECT}/src/{self.package}"
        subpackages = packages_in(files, source)
        new: dict[str, str] = {}
        for subpackage in subpackages:
            purpose = PURPOSES.get(subpackage, "Change me: say what belongs in this subpackage.")
            template = TEMPLATES / "change_me" / f"{subpackage}.py.tmpl"
            guide = f"change_me_{subpackage}.py"
            start = f"\n\nStart with `{guide}`.\n" if template.exists() else ""
            new[f"{source}/{subpackage}/__init__.py"] = f'"""{purpose}{start}"""\n'
            if template.exists():
                new[f"{source}/{subpackage}/{guide}"] = self.render(template)
        return new

    def _test_files(self) -> dict[str, str]:
        dag_ids = repr(self.dag_ids).replace("'", '"')
        # The pipeline DAG in Python is scheduled by the drift and new-data Assets.
        python_ids = self.dag_ids[:1] if self.dags in ("python", "both") else []
        retrained = repr(python_ids).replace("'", '"')
        names = {
            "test_package": f"test_{self.package}",
            "test_dag_integrity": "test_dag_integrity",
            "test_pipeline_on_the_stack": "test_pipeline_on_the_stack",
        }
        return {
            f"{PROJECT}/tests/{name}.py": self.render(
                TEMPLATES / "tests" / f"{template}.py.tmpl",
                dag_ids=dag_ids,
                retrained_dag_ids=retrained,
                monitoring_dag_id=f'"{self.monitoring_dag_id}"',
            )
            for template, name in names.items()
        }

    def _dag_files(self) -> dict[str, str]:
        dags = f"{PROJECT}/dags"
        python_id, yaml_id = self.dag_ids[0], self.dag_ids[-1]
        new = {
            f"{dags}/{self.monitoring_dag_id}.py": self.render(
                TEMPLATES / "dags" / "monitoring.py.tmpl", dag_id=self.monitoring_dag_id
            )
        }
        if self.dags in ("python", "both"):
            new[f"{dags}/{python_id}.py"] = self.render(
                TEMPLATES / "dags" / "pipeline.py.tmpl", dag_id=python_id
            )
        if self.dags in ("yaml", "both"):
            new[f"{dags}/{yaml_id}.yaml"] = self.render(
                TEMPLATES / "dags" / "pipeline.yaml.tmpl", dag_id=yaml_id
            )
            new[f"{dags}/{yaml_id}.py"] = self.render(
                TEMPLATES / "dags" / "yaml_loader.py.tmpl", dag_id=yaml_id
            )
        return new

    def render(self, template: Path, **extra: str) -> str:
        """The template with each `<<key>>` filled in; unknown keys are a bug, so they raise."""
        values = {
            "name": self.name,
            "package": self.package,
            "distribution": self.distribution,
            "description": self.description,
            **extra,
        }
        text = template.read_text()
        for key, value in values.items():
            text = text.replace(f"<<{key}>>", value)
        if unfilled := re.search(r"<<\w+>>", text):
            raise ValueError(f"{template}: no value fills {unfilled[0]}")
        return text

    def _notebook(self) -> str:
        cells = [
            (
                "markdown",
                "# Getting started\n\n"
                "The stack gives this kernel the data store's URL (`H2OPS_DATA_URL`) and MLflow's\n"
                "(`MLFLOW_TRACKING_URI`), so nothing here names a server or a key. This notebook\n"
                "shows what is in both so far.",
            ),
            (
                "code",
                f"from {self.package}.utils.data_store import open_data_store\n\n"
                "store = open_data_store()\n"
                'print("data store:", store.base_url)\n'
                "store.list_keys()[:20]",
            ),
            (
                "code",
                "import mlflow\n\n"
                'print("MLflow:", mlflow.get_tracking_uri())\n'
                "[experiment.name for experiment in mlflow.search_experiments()]",
            ),
        ]
        notebook = {
            "cells": [_cell(index, kind, source) for index, (kind, source) in enumerate(cells)],
            "metadata": {
                "kernelspec": {
                    "display_name": "Python 3 (ipykernel)",
                    "language": "python",
                    "name": "python3",
                },
                "language_info": {"name": "python"},
            },
            "nbformat": 4,
            "nbformat_minor": 5,
        }
        return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"


def _cell(index: int, kind: str, source: str) -> dict:
    cell: dict = {
        "cell_type": kind,
        "id": f"cell-{index:02d}",
        "metadata": {},
        "source": source.splitlines(keepends=True),
    }
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def _is_example(path: str, source: str) -> bool:
    """The example's files: the package's modules but the generic ones, every DAG, notebook
    and test but the fixtures."""
    if path.startswith(source):
        inner = path[len(source) :]
        return not (inner in KEPT or inner.endswith("__init__.py"))
    folder, _, name = path.removeprefix(f"{PROJECT}/").partition("/")
    if folder in ("dags", "notebooks"):
        return path.startswith(f"{PROJECT}/{folder}/")
    return folder == "tests" and path.startswith(f"{PROJECT}/tests/") and name not in KEPT_TESTS
