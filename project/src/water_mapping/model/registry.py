"""The registered model's name and alias, and how to promote and load the champion.

Promotion uses registry aliases (`@champion`), not the deprecated stages. MLflow is imported
inside the functions: DAG files import the names here and must parse fast.
"""

from __future__ import annotations

import contextlib
import io
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow.pyfunc import PyFuncModel

MODEL_NAME = "example-water-mask"
CHAMPION_ALIAS = "champion"
CHALLENGER_ALIAS = "challenger"  # a newer version the gate did not promote
# IoU a new model must gain over the champion to replace it (see model.promotion): by default
# it must be at least as good; a tie goes to the newer model, trained on the newest data.
DEFAULT_PROMOTION_MARGIN = 0.0
CHAMPION_MODEL_URI = f"models:/{MODEL_NAME}@{CHAMPION_ALIAS}"
log = logging.getLogger(__name__)


def register_version(model_uri: str, name: str = MODEL_NAME) -> str:
    """Register `model_uri` as a new version of `name`, no alias moved; returns the version."""
    import mlflow

    # register_model prints its news ("Created version ...") to stderr, which an Airflow task
    # log shows as errors; they go to the log at their level instead.
    printed = io.StringIO()
    try:
        with contextlib.redirect_stderr(printed):
            version = mlflow.register_model(model_uri, name).version
    finally:
        for line in printed.getvalue().splitlines():
            log.info(line)
    return str(version)


def register_champion(model_uri: str, name: str = MODEL_NAME, alias: str = CHAMPION_ALIAS) -> str:
    """Register `model_uri` as a new version of `name`, point `alias` at it; returns the version."""
    from mlflow import MlflowClient

    version = register_version(model_uri, name)
    MlflowClient().set_registered_model_alias(name, alias, version)
    return version


def load_champion(model_uri: str = CHAMPION_MODEL_URI) -> PyFuncModel:
    """The model the champion alias points at, as a pyfunc: raw bands in, water mask out."""
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(model_uri)
