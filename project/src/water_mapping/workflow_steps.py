"""The steps of the example's pipelines, as plain functions that DAGs, YAML and notebooks call.

Each step reads its inputs from the data store or MLflow, writes its outputs there, and
returns small JSON values (dataset names, URIs, scores) that Airflow passes on as XCom.
Heavy libraries are imported inside the steps: DAG files import this module and must parse
fast.
"""

from __future__ import annotations

import io
import re
import zlib
from typing import Any

from water_mapping.model.registry import CHAMPION_MODEL_URI, MODEL_NAME
from water_mapping.monitoring.signals import (
    DEFAULT_DRIFT_THRESHOLD,
    MONITORING_EXPERIMENT,
    REFERENCE_PROFILE_ARTIFACT,
)

TRAINING_DATASET = "training"
INCOMING_DATASET = "incoming"
PREDICTIONS_PREFIX = "predictions"
VALIDATION_DATASET = "validation"
VALIDATION_SEED = 1_000_003  # not a seed training or incoming batches use


def generate_training_tiles(
    dataset: str = TRAINING_DATASET, n_tiles: int = 8, tile_size: int = 64, seed: int = 0
) -> str:
    """Write synthetic tiles with ground truth to raw/<dataset>/; returns the dataset name."""
    from water_mapping.dataloader.synthetic_tiles import generate_tiles
    from water_mapping.dataloader.tile_store import write_tiles
    from water_mapping.utils.data_store import open_data_store

    write_tiles(open_data_store(), dataset, generate_tiles(n_tiles, seed, tile_size))
    return dataset


def training_dataset(labelled_events: list[dict[str, Any]]) -> str:
    """The dataset a training run learns from: the newest labelled dataset an event on the new
    labelled data Asset named (its `extra` is `{"dataset": NAME}`, tiles already under
    raw/NAME/ in the layout `write_tiles` writes), else freshly generated synthetic tiles."""
    from water_mapping.dataloader.tile_store import list_tile_ids
    from water_mapping.utils.data_store import open_data_store

    named = [extra.get("dataset") for extra in labelled_events if extra.get("dataset")]
    if not named:
        return generate_training_tiles()
    dataset = str(named[-1])
    store = open_data_store()
    if not list_tile_ids(store, dataset):
        raise ValueError(
            f"the new labelled data event names dataset {dataset!r}, but {store.base_url}/raw/"
            f"{dataset}/ holds no tiles: write them there first (tile_store.write_tiles), then "
            'post the event with extra {"dataset": "<name>"}'
        )
    return dataset


def build_features(dataset: str) -> str:
    """Turn raw/<dataset>/ tiles into per-pixel feature sets under features/<dataset>/."""
    from water_mapping.dataloader.tile_store import read_tiles
    from water_mapping.preprocess.feature_store import feature_set_of, write_feature_set
    from water_mapping.utils.data_store import open_data_store

    store = open_data_store()
    for tile in read_tiles(store, dataset):
        write_feature_set(store, dataset, feature_set_of(tile))
    return dataset


def train_water_classifier(
    dataset: str, experiment_name: str | None = None, shuffle_labels: bool = False
) -> dict[str, Any]:
    """Run the hyperparameter search on features/<dataset>/; returns the best model's URI.

    The training pixels' reference profile (per band) is logged with the model, as the
    artifact REFERENCE_PROFILE_ARTIFACT of its run: inference scores drift against it.
    `shuffle_labels` trains on permuted labels: a deliberately worse model, to see the
    promotion gate refuse it."""
    from dataclasses import replace

    import numpy as np
    from mlflow import MlflowClient

    from water_mapping.dataloader.synthetic_tiles import BAND_NAMES
    from water_mapping.monitoring.drift import reference_profile
    from water_mapping.train.hyperparameter_search import (
        EXPERIMENT_NAME,
        run_hyperparameter_search,
    )
    from water_mapping.train.training_data import load_training_data
    from water_mapping.utils.data_store import open_data_store

    data = load_training_data(open_data_store(), dataset)
    if shuffle_labels:
        data = replace(data, labels=np.random.default_rng(0).permutation(data.labels))
    result = run_hyperparameter_search(data, experiment_name=experiment_name or EXPERIMENT_NAME)
    profile = reference_profile(data.features[:, : len(BAND_NAMES)], BAND_NAMES)
    MlflowClient().log_dict(result.parent_run_id, profile, REFERENCE_PROFILE_ARTIFACT)
    return {
        "model_uri": result.model_uri,
        "parent_run_id": result.parent_run_id,
        "best_run_id": result.best_run_id,
        "best_params": result.best_params,
        "best_scores": result.best_scores,
    }


def ensure_validation_tiles(n_tiles: int = 4, tile_size: int = 64) -> str:
    """The fixed, held-out scenes the promotion gate scores models on (raw/validation/):
    written once from their own seed, never trained on, the same for every model."""
    from water_mapping.dataloader.synthetic_tiles import generate_tiles
    from water_mapping.dataloader.tile_store import list_tile_ids, write_tiles
    from water_mapping.utils.data_store import open_data_store

    store = open_data_store()
    if not list_tile_ids(store, VALIDATION_DATASET):
        tiles = generate_tiles(n_tiles, VALIDATION_SEED, tile_size, prefix="val")
        write_tiles(store, VALIDATION_DATASET, tiles)
    return VALIDATION_DATASET


def register_and_gate_model(
    training: dict[str, Any], margin: float | None = None
) -> dict[str, Any]:
    """Register the trained model; the promotion gate scores it and the champion on the
    validation scenes and moves @champion only if it is better by `margin` (else
    @challenger). Returns the decision with its numbers, also kept on the version's tags."""
    from water_mapping.dataloader.tile_store import read_tiles
    from water_mapping.model.promotion import DEFAULT_MARGIN, register_and_gate
    from water_mapping.utils.data_store import open_data_store

    validation = read_tiles(open_data_store(), ensure_validation_tiles())
    decision = register_and_gate(
        training["model_uri"], validation, DEFAULT_MARGIN if margin is None else float(margin)
    )
    return {
        "name": MODEL_NAME,
        "version": decision.new_version,
        "alias": decision.alias,
        "model_uri": CHAMPION_MODEL_URI,
        "gate": decision.as_dict(),
    }


def publish_champion(registration: dict[str, Any]) -> dict[str, Any]:
    """Succeed only when the gate moved @champion: the task that calls this owns the champion
    Asset, and a skipped task emits no Asset event, so inference runs only for a new champion.
    """
    gate = registration["gate"]
    if not gate["promoted"]:
        _skip(f"version {gate['new_version']} became @{gate['alias']}: {gate['reason']}")
    return {"champion_version": registration["version"], "model_uri": registration["model_uri"]}


def _skip(reason: str) -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    raise AirflowSkipException(reason)


def batch_id_from(run_id: str) -> str:
    """A key-safe name for a batch of new tiles, e.g. from an Airflow run id."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", run_id).strip("-")


def receive_new_tiles(
    batch_id: str, n_tiles: int = 3, tile_size: int = 64, haze: float = 0.0
) -> str:
    """Stand in for new imagery arriving: tiles under raw/incoming/<batch_id>/.

    The seed comes from the batch id, so each batch differs and a rerun gives the same tiles.
    `haze` (0 to 1) veils them (see `add_haze`): a batch that drifts from the training data.
    """
    from water_mapping.dataloader.synthetic_tiles import add_haze, generate_tiles
    from water_mapping.dataloader.tile_store import write_tiles
    from water_mapping.utils.data_store import open_data_store

    dataset = f"{INCOMING_DATASET}/{batch_id}"
    seed = zlib.crc32(batch_id.encode())
    tiles = [add_haze(tile, haze) for tile in generate_tiles(n_tiles, seed, tile_size)]
    write_tiles(open_data_store(), dataset, tiles)
    return dataset


def predict_water_masks(
    dataset: str, batch_id: str, model_uri: str = CHAMPION_MODEL_URI
) -> dict[str, Any]:
    """Predict, clean up and summarise the masks of raw/<dataset>/ with the champion model.

    Writes a COG water mask and a STAC Item per tile under predictions/<batch_id>/ (their
    catalog linked from the root one), and predictions/<batch_id>/water_statistics.csv.
    """
    import numpy as np

    from water_mapping.dataloader.tile_store import read_items_of, read_scene
    from water_mapping.model.metrics import mask_scores
    from water_mapping.model.registry import load_champion
    from water_mapping.postprocess.mask_cleanup import clean_water_mask
    from water_mapping.postprocess.prediction_store import prediction_item, save_predictions
    from water_mapping.postprocess.water_statistics import (
        pixel_area_km2,
        statistics_table,
        water_statistics,
    )
    from water_mapping.utils.data_store import open_data_store

    store = open_data_store()
    scenes = read_items_of(store, dataset)
    tiles = [read_scene(item) for item in scenes]
    model_uri, version = _pin_version(model_uri)
    raw_masks: np.ndarray = np.asarray(
        load_champion(model_uri).predict(np.stack([tile.bands for tile in tiles]))
    )
    prefix = f"{PREDICTIONS_PREFIX}/{batch_id}"
    rows, items = [], []
    for scene, tile, raw_mask in zip(scenes, tiles, raw_masks, strict=True):
        mask = clean_water_mask(raw_mask)
        statistics = water_statistics(tile.tile_id, mask, pixel_area_km2(tile.crs, tile.transform))
        # Synthetic tiles come with truth, so each batch also reports how good the masks are.
        row = {**statistics, "iou_vs_truth": mask_scores(tile.water_mask, mask)["iou"]}
        rows.append(row)
        properties = {**row, "model_uri": model_uri}
        items.append(prediction_item(store, prefix, tile, (mask, raw_mask), properties, scene))
    save_predictions(store, prefix, items)
    table = statistics_table(rows)
    statistics_url = store.put_bytes(
        f"{prefix}/water_statistics.csv", table.to_csv(index=False).encode()
    )
    return {
        "batch_id": batch_id,
        "n_tiles": len(tiles),
        "statistics_url": statistics_url,
        "catalog_url": store.gdal_path(f"{prefix}/catalog.json"),
        "total_water_area_km2": float(table["water_area_km2"].sum()),
        "mean_iou_vs_truth": float(table["iou_vs_truth"].mean()),
        "dataset": dataset,
        "model_uri": model_uri,
        "model_version": version,
    }


def _pin_version(model_uri: str) -> tuple[str, str | None]:
    """`models:/NAME@ALIAS` as the version the alias points at now, so the batch and a later
    check name the same model; other URIs as they are (no version)."""
    if not (model_uri.startswith("models:/") and "@" in model_uri):
        return model_uri, None
    from mlflow import MlflowClient

    name, alias = model_uri.removeprefix("models:/").split("@", 1)
    version = str(MlflowClient().get_model_version_by_alias(name, alias).version)
    return f"models:/{name}/{version}", version


def compare_with_served_model(batch: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
    """Ask the served model (the stack's `serving`, over HTTP) for the batch's first tile and
    check it gives the batch prediction's raw mask, pixel for pixel.

    Waits (bounded) until the served version is the one the batch used. Outside the stack
    (no H2OPS_SERVING_URL) or for a model that is not a registry version, says why it skipped.
    """
    import numpy as np

    from water_mapping.dataloader.tile_store import read_items_of, read_scene
    from water_mapping.model.serving import predict_served, serving_url, wait_until_serving
    from water_mapping.postprocess.prediction_store import read_masks, read_predictions
    from water_mapping.utils.data_store import open_data_store

    url = serving_url()
    if url is None or batch.get("model_version") is None:
        reason = "no H2OPS_SERVING_URL" if url is None else "the batch used no registry version"
        return {"checked": False, "reason": reason}
    served = wait_until_serving(url, batch["model_version"], timeout)
    store = open_data_store()
    tile = read_scene(read_items_of(store, batch["dataset"])[0])
    predictions = read_predictions(store, f"{PREDICTIONS_PREFIX}/{batch['batch_id']}")
    prediction = next(item for item in predictions if item.id == tile.tile_id)
    expected = read_masks(prediction)["raw_water_mask"]
    answer = predict_served(url, tile.bands[None])[0]
    differing = int(np.count_nonzero(answer != expected))
    if answer.shape != expected.shape or differing:
        raise RuntimeError(
            f"the served model (version {served['version']} at {url}) disagrees with the batch "
            f"prediction on {tile.tile_id}: {differing} of {expected.size} pixels differ"
        )
    return {
        "checked": True,
        "tile_id": tile.tile_id,
        "model_version": served["version"],
        "run_id": served["run_id"],
        "pixels": int(expected.size),
    }


def monitor_batch(batch: dict[str, Any], threshold: float | None = None) -> dict[str, Any]:
    """Score a predicted batch's input for drift against its model's reference profile.

    Per band: input statistics, PSI and the KS test (see `monitoring.drift`). Written beside
    the predictions (predictions/<batch>/drift.json and drift.png) and logged to MLflow as a
    run of the MONITORING_EXPERIMENT (metrics per band). Returns the verdict: `drifted` when a
    band's PSI is above `threshold`.
    """
    import json

    import mlflow
    import numpy as np
    from mlflow import MlflowClient

    from water_mapping.dataloader.tile_store import read_tiles
    from water_mapping.monitoring.drift import drift_report, tiles_as_pixels
    from water_mapping.monitoring.report import plot_drift
    from water_mapping.utils.data_store import open_data_store

    version = batch.get("model_version")
    if version is None:
        raise ValueError(
            f"batch {batch.get('batch_id')!r} used {batch.get('model_uri')!r}, not a registered "
            "version: its reference profile is found through the version's run"
        )
    threshold = DEFAULT_DRIFT_THRESHOLD if threshold is None else float(threshold)
    run_id = MlflowClient().get_model_version(MODEL_NAME, str(version)).run_id
    profile = mlflow.artifacts.load_dict(f"runs:/{run_id}/{REFERENCE_PROFILE_ARTIFACT}")
    store = open_data_store()
    pixels = tiles_as_pixels(np.stack([tile.bands for tile in read_tiles(store, batch["dataset"])]))
    report = {
        "batch_id": batch["batch_id"],
        "model_version": str(version),
        **drift_report(profile, pixels, threshold),
    }
    figure = plot_drift(profile, report, pixels, title=f"batch {batch['batch_id']}:")
    prefix = f"{PREDICTIONS_PREFIX}/{batch['batch_id']}"
    drift_url = store.put_bytes(f"{prefix}/drift.json", json.dumps(report, indent=1).encode())
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=100)
    plot_url = store.put_bytes(f"{prefix}/drift.png", png.getvalue())

    mlflow.set_experiment(MONITORING_EXPERIMENT)
    with mlflow.start_run(run_name=batch["batch_id"]) as run:
        mlflow.set_tags({"model_version": str(version), "drifted": str(report["drifted"])})
        mlflow.log_params({"batch_id": batch["batch_id"], "threshold": threshold})
        metrics = {"max_psi": report["max_psi"], "drifted": float(report["drifted"])}
        for name, band in report["bands"].items():
            metrics |= {
                f"psi_{name}": band["psi"],
                f"ks_{name}": band["ks_statistic"],
                f"mean_{name}": band["batch"]["mean"],
                f"std_{name}": band["batch"]["std"],
            }
        mlflow.log_metrics(metrics)
        mlflow.log_dict(report, "drift.json")
        mlflow.log_figure(figure, "drift.png")
    return {
        "batch_id": batch["batch_id"],
        "model_version": str(version),
        "drifted": report["drifted"],
        "drifted_bands": report["drifted_bands"],
        "max_psi": report["max_psi"],
        "max_psi_band": report["max_psi_band"],
        "threshold": threshold,
        "drift_url": drift_url,
        "plot_url": plot_url,
        "mlflow_run_id": run.info.run_id,
    }


def signal_drift(monitoring: dict[str, Any]) -> dict[str, Any]:
    """Succeed only when the batch drifted: the task that calls this owns the drift Asset, whose
    event schedules retraining; a batch without drift skips it (no event, no retraining)."""
    if not monitoring["drifted"]:
        _skip(
            f"no drift: highest PSI {monitoring['max_psi']:.3f} ({monitoring['max_psi_band']}) "
            f"<= {monitoring['threshold']}"
        )
    keys = ("batch_id", "model_version", "drifted_bands", "max_psi", "max_psi_band", "threshold")
    return {key: monitoring[key] for key in keys}
