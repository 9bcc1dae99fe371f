"""DAG integrity: every file in project/dags imports, the example DAGs exist and are acyclic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from water_mapping.model.registry import CHAMPION_ALIAS, CHAMPION_MODEL_URI, MODEL_NAME
from water_mapping.monitoring.signals import DRIFT_ASSET_URI, LABELLED_DATA_ASSET_URI

DAGS_FOLDER = Path(__file__).resolve().parents[1] / "dags"
EXAMPLE_DAG_IDS = {"example_training", "example_inference"}
TRAINING_TASKS = {
    "generate": set(),
    "preprocess": {"generate"},
    "train": {"preprocess"},
    "register": {"train"},
    "publish_champion": {"register"},
}


def test_every_dag_file_imports_without_errors(dag_bag: Any) -> None:
    assert dag_bag.import_errors == {}
    files_with_dags = {Path(dag.fileloc).name for dag in dag_bag.dags.values()}
    assert {path.name for path in DAGS_FOLDER.glob("*.py")} <= files_with_dags


def test_the_example_dags_exist(dag_bag: Any) -> None:
    assert set(dag_bag.dag_ids) >= EXAMPLE_DAG_IDS


CYCLIC_DAG = """
from airflow.sdk import DAG
from airflow.providers.standard.operators.empty import EmptyOperator

with DAG("cyclic", schedule=None):
    first, second = EmptyOperator(task_id="first"), EmptyOperator(task_id="second")
    first >> second >> first
"""


def test_a_dag_with_a_cycle_is_refused_by_the_parse_every_dag_passes(
    dag_bag: Any, tmp_path: Path
) -> None:
    """`dag_bag` holds only DAGs without cycles because the parse refuses a cyclic one: shown
    here on one, so the fixture's `import_errors == {}` means "no cycle" too."""
    from airflow.dag_processing.dagbag import DagBag

    (tmp_path / "cyclic.py").write_text(CYCLIC_DAG)
    refused = DagBag(dag_folder=str(tmp_path))
    assert "cyclic" not in refused.dag_ids
    assert any("cycle" in error.lower() for error in refused.import_errors.values()), (
        refused.import_errors
    )
    for dag in dag_bag.dags.values():
        dag.check_cycle()  # what the parse ran on each of ours


def test_training_runs_generate_preprocess_train_register(dag_bag: Any) -> None:
    dag = dag_bag.dags["example_training"]
    assert {task.task_id: set(task.upstream_task_ids) for task in dag.tasks} == TRAINING_TASKS


def test_training_updates_the_asset_that_schedules_inference(dag_bag: Any) -> None:
    """Only publish_champion owns the Asset: it skips when the gate did not promote, so a
    version that became @challenger starts no inference."""
    training = dag_bag.dags["example_training"]
    assert training.get_task("register").outlets == []
    publish = training.get_task("publish_champion")
    assert [outlet.uri for outlet in publish.outlets] == [CHAMPION_MODEL_URI]
    inference = dag_bag.dags["example_inference"]
    assert [asset.uri for asset in inference.timetable.asset_condition.objects] == [
        CHAMPION_MODEL_URI
    ]


def test_inference_checks_its_batch_against_the_served_model(dag_bag: Any) -> None:
    dag = dag_bag.dags["example_inference"]
    assert {task.task_id: set(task.upstream_task_ids) for task in dag.tasks} == {
        "receive_new_tiles": set(),
        "predict": {"receive_new_tiles"},
        "compare_with_served_model": {"predict"},
        "monitor": {"predict"},
        "signal_drift": {"monitor"},
    }


def test_drift_or_new_labelled_data_schedules_training(dag_bag: Any) -> None:
    """The loop: inference's signal_drift updates the drift Asset, and either that or the new
    labelled data Asset schedules training (which can still be triggered by hand)."""
    from airflow.sdk import Asset, AssetAny

    signal = dag_bag.dags["example_inference"].get_task("signal_drift")
    assert [outlet.uri for outlet in signal.outlets] == [DRIFT_ASSET_URI]
    condition = dag_bag.dags["example_training"].timetable.asset_condition
    assert isinstance(condition, AssetAny)
    assert list(condition.objects) == [Asset(DRIFT_ASSET_URI), Asset(LABELLED_DATA_ASSET_URI)]


def test_the_stack_serves_the_model_the_example_registers() -> None:
    from services.settings import StackSettings

    assert StackSettings.model_fields["serving_model"].default == MODEL_NAME
    assert StackSettings.model_fields["serving_alias"].default == CHAMPION_ALIAS
