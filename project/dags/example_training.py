"""Airflow DAG `example_training`: generate -> preprocess -> train -> register -> publish_champion.

Tiles and features go to the data store ($H2OPS_DATA_URL), runs, the model and its training
data's reference profile to MLflow ($MLFLOW_TRACKING_URI). `register` is the promotion gate:
the new version and the champion are scored on the same held-out validation scenes, and
@champion moves only if the new one is better by the run's `promotion_margin` (else it becomes
@challenger); its result says why. `publish_champion` updates the champion model's Asset, which
schedules `example_inference`, and skips (no event) when the gate did not promote.

Runs when triggered by hand (or the REST API), and when an Asset event says an inference batch
drifted from the training data or new labelled data arrived: the retraining loop.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import Asset, Param, dag, task

from water_mapping import workflow_steps
from water_mapping.model.registry import CHAMPION_MODEL_URI, DEFAULT_PROMOTION_MARGIN
from water_mapping.monitoring.signals import DRIFT_ASSET_URI, LABELLED_DATA_ASSET_URI

CHAMPION_MODEL = Asset(CHAMPION_MODEL_URI)
DRIFT_ASSET = Asset(DRIFT_ASSET_URI)
NEW_LABELLED_DATA_ASSET = Asset(LABELLED_DATA_ASSET_URI)
# A task stopped from outside (its scheduler killed or restarted) runs again 5 s later, so the
# run still succeeds; each step can simply run again.
RETRIES = {"retries": 2, "retry_delay": timedelta(seconds=5)}


@dag(
    dag_id="example_training",
    schedule=(DRIFT_ASSET | NEW_LABELLED_DATA_ASSET),
    catchup=False,
    default_args=RETRIES,
    tags=["example", "training"],
    doc_md=__doc__,
    params={
        "promotion_margin": Param(
            DEFAULT_PROMOTION_MARGIN,
            type="number",
            minimum=0,
            maximum=0.99,
            description="IoU a new model must gain over the champion to replace it",
        ),
        "shuffle_labels": Param(
            False,
            type="boolean",
            description="Train on shuffled labels: a worse model the gate must refuse",
        ),
    },
)
def example_training() -> None:
    @task
    def generate(**context: Any) -> str:
        # A new labelled data event names its dataset; any other run generates tiles.
        events = context["triggering_asset_events"]
        labelled = events.get(NEW_LABELLED_DATA_ASSET, [])
        return workflow_steps.training_dataset([dict(event.extra or {}) for event in labelled])

    @task
    def preprocess(dataset: str) -> str:
        return workflow_steps.build_features(dataset)

    @task
    def train(dataset: str, **context: Any) -> dict[str, Any]:
        shuffle = bool(context["params"]["shuffle_labels"])
        return workflow_steps.train_water_classifier(dataset, shuffle_labels=shuffle)

    @task
    def register(training: dict[str, Any], **context: Any) -> dict[str, Any]:
        margin = context["params"]["promotion_margin"]
        return workflow_steps.register_and_gate_model(training, margin)

    @task(outlets=[CHAMPION_MODEL])
    def publish_champion(registration: dict[str, Any]) -> dict[str, Any]:
        return workflow_steps.publish_champion(registration)

    # TaskFlow passes XComArgs where the tasks' own types say values.
    publish_champion(register(train(preprocess(generate()))))  # type: ignore[arg-type]


example_training()
