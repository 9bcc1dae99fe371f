"""The training DAG declared in YAML and built by dag-factory: its tasks and Asset, the tag it
leaves out, and a training run in-process with dag.test().

It has a module of its own so that a project without YAML DAGs drops this one file.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import pytest
from mlflow import MlflowClient

from water_mapping.model.registry import CHAMPION_ALIAS, CHAMPION_MODEL_URI, MODEL_NAME
from water_mapping.monitoring.signals import DRIFT_ASSET_URI
from water_mapping.train.hyperparameter_search import EXPERIMENT_NAME

if TYPE_CHECKING:
    from devtools.testing import S3Server

pytestmark = pytest.mark.mlflow_experiment(EXPERIMENT_NAME)
DAGS_FOLDER = Path(__file__).resolve().parents[1] / "dags"
YAML_DAG_ID = "example_training_from_config"
TRAINING_TASKS = {
    "generate": set(),
    "preprocess": {"generate"},
    "train": {"preprocess"},
    "register": {"train"},
    "publish_champion": {"register"},
}


def test_yaml_dag_runs_generate_preprocess_train_register(dag_bag: Any) -> None:
    assert YAML_DAG_ID in dag_bag.dag_ids
    dag = dag_bag.dags[YAML_DAG_ID]
    assert {task.task_id: set(task.upstream_task_ids) for task in dag.tasks} == TRAINING_TASKS


def test_yaml_dag_updates_the_asset_that_schedules_inference(dag_bag: Any) -> None:
    """Only publish_champion owns the Asset: it skips when the gate did not promote."""
    dag = dag_bag.dags[YAML_DAG_ID]
    assert dag.get_task("register").outlets == []
    publish = dag.get_task("publish_champion")
    assert [outlet.uri for outlet in publish.outlets] == [CHAMPION_MODEL_URI]


def test_drift_retrains_one_training_dag(dag_bag: Any) -> None:
    """One training per drift event: the Python DAG while it exists, else this one (`nox -s init
    -- --dags yaml` gives the YAML DAG the Python DAG's id and schedule)."""
    scheduled = [
        dag_id
        for dag_id, dag in dag_bag.dags.items()
        if dag.timetable.asset_condition is not None
        and DRIFT_ASSET_URI in {asset.uri for asset in dag.timetable.asset_condition.objects}
    ]
    assert scheduled == ["example_training"]


def test_yaml_dag_leaves_out_the_tag_that_sends_telemetry(dag_bag: Any) -> None:
    assert "dagfactory" not in dag_bag.dags[YAML_DAG_ID].tags


def test_a_misspelt_dag_level_key_fails_the_file_naming_the_key(
    airflow_db: Path, tmp_path: Path
) -> None:
    """dag-factory itself drops unknown keys; the loader must refuse them instead."""
    from airflow.dag_processing.dagbag import DagBag

    for path in DAGS_FOLDER.glob(f"{YAML_DAG_ID}.*"):
        shutil.copy(path, tmp_path / path.name)
    config = tmp_path / f"{YAML_DAG_ID}.yaml"
    config.write_text(config.read_text().replace("\n  catchup: false", "\n  catchupp: false"))

    bag = DagBag(dag_folder=str(tmp_path))

    errors = " ".join(bag.import_errors.values())
    assert "unknown key 'catchupp'; did you mean 'catchup'?" in errors, bag.import_errors
    assert YAML_DAG_ID not in bag.dag_ids


def test_training_defined_in_yaml_trains_and_promotes_a_new_champion(
    dag_bag: Any, pipeline_env: S3Server
) -> None:
    client = MlflowClient()
    before = _champion_version(client)

    run = dag_bag.dags[YAML_DAG_ID].test()

    assert run.state == "success"
    assert _champion_version(client) > before
    assert run.run_id in _champion_asset_source_runs()


def _champion_version(client: MlflowClient) -> int:
    try:
        return int(client.get_model_version_by_alias(MODEL_NAME, CHAMPION_ALIAS).version)
    except mlflow.exceptions.MlflowException:
        return 0


def _champion_asset_source_runs() -> list[str]:
    """The runs that updated the champion model's Asset, from Airflow's database."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return list(
            session.scalars(
                select(AssetEvent.source_run_id)
                .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
                .where(AssetModel.uri == CHAMPION_MODEL_URI)
            )
        )
