"""Raw bands in, water mask out: the classifier packaged with its preprocessing for MLflow."""

from __future__ import annotations

import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

import joblib
import mlflow
import numpy as np
from mlflow.models import ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.pyfunc import PythonModel
from mlflow.types import Schema, TensorSpec
from sklearn.base import ClassifierMixin

from water_mapping.dataloader.synthetic_tiles import BAND_NAMES
from water_mapping.preprocess.pixel_features import pixel_features

MODEL_ARTIFACT_NAME = "water-mask-model"
CLASSIFIER_ARTIFACT = "classifier"
MODEL_CODE_FILE = Path(__file__).with_name("model_code.py")

# Any number of tiles of any size: (tile, band, row, column) -> (tile, row, column).
SIGNATURE = ModelSignature(
    inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, len(BAND_NAMES), -1, -1))]),
    outputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, -1, -1))]),
)


class WaterMaskModel(PythonModel):
    """A fitted per-pixel classifier applied tile by tile to raw reflectance bands.

    Built empty by MLflow from `model_code.py`, it loads the classifier from the model's
    artifacts; built with a classifier, it predicts right away (tests, notebooks).
    """

    def __init__(self, classifier: ClassifierMixin | None = None) -> None:
        self.classifier = classifier

    def load_context(self, context: Any) -> None:
        self.classifier = joblib.load(context.artifacts[CLASSIFIER_ARTIFACT])

    def predict(
        self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        """Masks (tile, row, column) of 1 = water for bands (tile, band, row, column).

        A single (band, row, column) tile gives a single (row, column) mask.
        """
        bands = np.asarray(model_input, dtype=np.float32)
        if bands.ndim == 3:
            return self.predict(context, bands[None], params)[0]
        return np.stack([self._predict_tile(tile) for tile in bands])

    def _predict_tile(self, bands: np.ndarray) -> np.ndarray:
        if self.classifier is None:
            raise RuntimeError("WaterMaskModel has no classifier: pass one, or load it by MLflow")
        labels = self.classifier.predict(pixel_features(bands))
        return labels.reshape(bands.shape[1:]).astype(np.uint8)


def log_water_mask_model(classifier: ClassifierMixin, example_bands: np.ndarray) -> ModelInfo:
    """Log the classifier as a WaterMaskModel ("models from code") in the active run.

    Requirements are pinned here instead of inferred: inference loads the model in a
    subprocess, which costs seconds per training run. Loading needs `water_mapping`
    installed, as it is in the stack's environment.
    """
    requirements = [
        f"{package}=={version(package)}"
        for package in ("mlflow", "scikit-learn", "numpy", "scipy", "pandas", "joblib")
    ]
    with tempfile.TemporaryDirectory() as folder:
        classifier_file = Path(folder) / "classifier.joblib"
        joblib.dump(classifier, classifier_file)
        return mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT_NAME,
            python_model=str(MODEL_CODE_FILE),
            artifacts={CLASSIFIER_ARTIFACT: str(classifier_file)},
            signature=SIGNATURE,
            input_example=np.asarray(example_bands[:, :8, :8], dtype=np.float32)[None],
            pip_requirements=requirements,
        )
