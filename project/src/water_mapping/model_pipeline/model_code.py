"""The file MLflow logs with the model ("models from code"): it names the object that serves.

MLflow runs this file when the model is loaded; the classifier itself comes from the
model's artifacts (see `WaterMaskModel.load_context`).
"""

import mlflow

from water_mapping.model_pipeline.water_mask_model import WaterMaskModel

mlflow.models.set_model(WaterMaskModel())
