"""Airflow DAG `example_inference`: runs whenever the champion model's Asset is updated.

Loads models:/example-water-mask@champion, predicts water masks for a batch of new tiles,
and writes masks and water-area statistics under predictions/<batch>/ in the data store; then
asks the stack's served model (MLflow's scoring server, over HTTP) for one tile and checks it
agrees with the batch prediction.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import Asset, dag, get_current_context, task

from water_mapping import workflow_steps
from water_mapping.model.registry import CHAMPION_MODEL_URI

CHAMPION_MODEL = Asset(CHAMPION_MODEL_URI)
# A task stopped from outside (its scheduler killed or restarted) runs again 5 s later, so the
# run still succeeds; each step can simply run again.
RETRIES = {"retries": 2, "retry_delay": timedelta(seconds=5)}


@dag(
    dag_id="example_inference",
    schedule=[CHAMPION_MODEL],
    catchup=False,
    default_args=RETRIES,
    tags=["example", "inference"],
    doc_md=__doc__,
)
def example_inference() -> None:
    @task
    def receive_new_tiles() -> dict[str, str]:
        batch_id = workflow_steps.batch_id_from(get_current_context()["run_id"])
        return {"batch_id": batch_id, "dataset": workflow_steps.receive_new_tiles(batch_id)}

    @task
    def predict(batch: dict[str, str]) -> dict[str, Any]:
        return workflow_steps.predict_water_masks(batch["dataset"], batch["batch_id"])

    @task
    def compare_with_served_model(summary: dict[str, Any]) -> dict[str, Any]:
        return workflow_steps.compare_with_served_model(summary)

    compare_with_served_model(predict(receive_new_tiles()))  # type: ignore[arg-type]  # an XComArg where a dict is typed


example_inference()
