"""A small hyperparameter search, one nested MLflow run per configuration.

Each child run logs its parameters, validation scores (IoU, F1, ...) and a PNG of a
validation tile with its truth and prediction. The parent run logs the best configuration
and the best model as a pyfunc (raw bands in, mask out), ready to register.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mlflow
import numpy as np
from sklearn.base import ClassifierMixin

from water_mapping.model.classifier import SEARCH_SPACE, build_water_classifier
from water_mapping.model.metrics import mask_scores
from water_mapping.model_pipeline.water_mask_model import log_water_mask_model
from water_mapping.train.training_data import TrainingData
from water_mapping.utils.plotting import plot_tile_truth_prediction

EXPERIMENT_NAME = "example-water-mapping"
SELECTION_METRIC = "val_iou"


@dataclass(frozen=True)
class SearchResult:
    parent_run_id: str
    best_run_id: str
    best_params: dict[str, Any]
    best_scores: dict[str, float]
    model_uri: str  # the logged pyfunc model, e.g. models:/m-...


def run_hyperparameter_search(
    data: TrainingData,
    search_space: tuple[dict[str, Any], ...] = SEARCH_SPACE,
    experiment_name: str = EXPERIMENT_NAME,
    run_name: str = "hyperparameter-search",
) -> SearchResult:
    """Fit one classifier per configuration, keep the one with the best validation IoU."""
    mlflow.set_experiment(experiment_name)
    with mlflow.start_run(run_name=run_name) as parent:
        mlflow.log_params(
            {"n_configurations": len(search_space), "n_training_pixels": len(data.labels)}
        )
        candidates = [
            _fit_and_log(data, params, index) for index, params in enumerate(search_space)
        ]
        best_run_id, best_params, best_scores, best_classifier = max(
            candidates, key=lambda candidate: candidate[2][SELECTION_METRIC]
        )
        mlflow.log_params({f"best_{name}": value for name, value in best_params.items()})
        mlflow.log_metrics({f"best_{name}": value for name, value in best_scores.items()})
        mlflow.set_tag("best_run_id", best_run_id)
        model_info = log_water_mask_model(best_classifier, data.validation[0].bands)
    return SearchResult(
        parent_run_id=parent.info.run_id,
        best_run_id=best_run_id,
        best_params=best_params,
        best_scores=best_scores,
        model_uri=model_info.model_uri,
    )


def _fit_and_log(
    data: TrainingData, params: dict[str, Any], index: int
) -> tuple[str, dict[str, Any], dict[str, float], ClassifierMixin]:
    with mlflow.start_run(run_name=f"config-{index}", nested=True) as child:
        classifier = build_water_classifier(**params)
        classifier.fit(data.features, data.labels)
        predictions = [
            classifier.predict(feature_set.features).reshape(feature_set.shape)
            for feature_set in data.validation
        ]
        truths = [feature_set.labels.reshape(feature_set.shape) for feature_set in data.validation]
        scores = {
            f"val_{name}": value
            for name, value in mask_scores(np.stack(truths), np.stack(predictions)).items()
        }
        mlflow.log_params({"model": type(classifier).__name__, **params})
        mlflow.log_metrics(scores)
        shown = data.validation[0]
        figure = plot_tile_truth_prediction(
            shown.bands,
            truths[0],
            predictions[0],
            title=f"config-{index}: {shown.tile_id}, IoU {scores['val_iou']:.3f}",
        )
        mlflow.log_figure(figure, "validation_tile.png")
    return child.info.run_id, params, scores, classifier
