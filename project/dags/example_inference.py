"""Airflow DAG `example_inference`: runs whenever a new champion is published.

Loads models:/example-water-mask@champion, predicts water masks for a batch of new tiles,
and writes masks and water-area statistics under predictions/<batch>/ in the data store; then
asks the stack's served model (MLflow's scoring server, over HTTP) for one tile and checks it
agrees with the batch prediction. `monitor` scores the batch's input against the training
data's reference profile (PSI and KS per band: predictions/<batch>/drift.json and drift.png,
and a run in MLflow's monitoring experiment); `signal_drift` updates the drift Asset, which
schedules `example_training`, only when a band's PSI is above `drift_threshold`.

Trigger it by hand with `{"haze": 0.3}` for a hazy batch that drifts.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import Asset, Param, dag, get_current_context, task

from water_mapping import workflow_steps
from water_mapping.model.registry import CHAMPION_MODEL_URI
from water_mapping.monitoring.signals import DEFAULT_DRIFT_THRESHOLD, DRIFT_ASSET_URI

CHAMPION_MODEL = Asset(CHAMPION_MODEL_URI)
DRIFT_ASSET = Asset(DRIFT_ASSET_URI)
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
    params={
        "haze": Param(
            0.0,
            type="number",
            minimum=0,
            maximum=0.95,
            description="Veil the new tiles in haze (0 = clear): a batch that drifts",
        ),
        "drift_threshold": Param(
            DEFAULT_DRIFT_THRESHOLD,
            type="number",
            exclusiveMinimum=0,
            description="PSI of a band above which the batch has drifted and retraining starts",
        ),
    },
)
def example_inference() -> None:
    @task
    def receive_new_tiles() -> dict[str, str]:
        context = get_current_context()
        batch_id = workflow_steps.batch_id_from(context["run_id"])
        haze = float(context["params"]["haze"])
        dataset = workflow_steps.receive_new_tiles(batch_id, haze=haze)
        return {"batch_id": batch_id, "dataset": dataset}

    @task
    def predict(batch: dict[str, str]) -> dict[str, Any]:
        return workflow_steps.predict_water_masks(batch["dataset"], batch["batch_id"])

    @task
    def compare_with_served_model(summary: dict[str, Any]) -> dict[str, Any]:
        return workflow_steps.compare_with_served_model(summary)

    @task
    def monitor(summary: dict[str, Any], **context: Any) -> dict[str, Any]:
        return workflow_steps.monitor_batch(summary, context["params"]["drift_threshold"])

    @task(outlets=[DRIFT_ASSET])
    def signal_drift(monitoring: dict[str, Any], **context: Any) -> dict[str, Any]:
        drift = workflow_steps.signal_drift(monitoring)
        context["outlet_events"][DRIFT_ASSET].extra = drift  # what drifted, on the event
        return drift

    # TaskFlow passes XComArgs where the tasks' own types say values.
    summary = predict(receive_new_tiles())  # type: ignore[arg-type]
    compare_with_served_model(summary)  # type: ignore[arg-type]
    signal_drift(monitor(summary))  # type: ignore[arg-type]


example_inference()
