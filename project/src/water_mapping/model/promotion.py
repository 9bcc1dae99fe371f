"""The promotion gate: a new model replaces the champion only if it is better on the same data.

Both the new version and the current champion predict the same fixed, held-out validation
scenes; `@champion` moves to the new version only when its score beats the champion's by at
least `margin`, otherwise the new version becomes `@challenger`. The first version of a model
becomes champion. The decision and both scores are kept as tags of the new version and as
metrics of the run that trained it, so the registry says why a version is (not) served.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from water_mapping.dataloader.synthetic_tiles import Tile
from water_mapping.model.metrics import mask_scores
from water_mapping.model.registry import (
    CHALLENGER_ALIAS,
    CHAMPION_ALIAS,
    DEFAULT_PROMOTION_MARGIN,
    MODEL_NAME,
    register_version,
)

DEFAULT_MARGIN = DEFAULT_PROMOTION_MARGIN
GATE_METRIC = "iou"
TAG_PREFIX = "gate."


@dataclass(frozen=True)
class GateDecision:
    """What the gate decided for one new version, and on which numbers."""

    promoted: bool
    alias: str  # the alias the new version got: champion or challenger
    reason: str
    new_version: str
    new_score: float
    champion_version: str | None
    champion_score: float | None
    margin: float
    metric: str = GATE_METRIC

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(new_score: float, champion_score: float | None, margin: float) -> tuple[bool, str]:
    """Promote when there is no champion, or when the new score is at least champion + margin."""
    if not 0.0 <= margin < 1.0:
        raise ValueError(
            f"promotion margin {margin!r} is not in [0, 1): give the {GATE_METRIC} gain a new "
            "model needs over the champion, e.g. 0.01"
        )
    if champion_score is None:
        return True, "first model: no champion yet"
    needed = champion_score + margin
    if new_score >= needed:
        return True, f"{GATE_METRIC} {new_score:.4f} >= champion {champion_score:.4f} + {margin}"
    return False, f"{GATE_METRIC} {new_score:.4f} < champion {champion_score:.4f} + {margin}"


def validation_score(model_uri: str, tiles: Sequence[Tile], metric: str = GATE_METRIC) -> float:
    """The model's `metric` over all pixels of the validation tiles (their truth vs its masks)."""
    from water_mapping.model.registry import load_champion

    model = load_champion(model_uri)
    masks: np.ndarray = np.asarray(model.predict(np.stack([tile.bands for tile in tiles])))
    truth = np.stack([tile.water_mask for tile in tiles])
    return float(mask_scores(truth, masks)[metric])


def register_and_gate(
    model_uri: str,
    validation: Sequence[Tile],
    margin: float = DEFAULT_MARGIN,
    name: str = MODEL_NAME,
) -> GateDecision:
    """Register `model_uri` as a new version of `name` and let the gate move the aliases."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    if not validation:
        raise ValueError("the promotion gate needs at least one validation tile with its truth")
    decide(0.0, None, margin)  # a bad margin fails before anything is registered
    client = MlflowClient()
    try:
        champion_version: str | None = str(
            client.get_model_version_by_alias(name, CHAMPION_ALIAS).version
        )
    except MlflowException:  # no such model or no champion yet
        champion_version = None
    new_version = register_version(model_uri, name)
    new_score = validation_score(f"models:/{name}/{new_version}", validation)
    champion_score = (
        validation_score(f"models:/{name}/{champion_version}", validation)
        if champion_version is not None
        else None
    )
    promoted, reason = decide(new_score, champion_score, margin)
    alias = CHAMPION_ALIAS if promoted else CHALLENGER_ALIAS
    client.set_registered_model_alias(name, alias, new_version)
    decision = GateDecision(
        promoted, alias, reason, new_version, new_score, champion_version, champion_score, margin
    )
    _record(client, name, decision)
    return decision


def _record(client: Any, name: str, decision: GateDecision) -> None:
    """The decision as tags of the new version, both scores as metrics of its training run."""
    for key, value in decision.as_dict().items():
        if value is not None:
            client.set_model_version_tag(
                name, decision.new_version, f"{TAG_PREFIX}{key}", str(value)
            )
    run_id = client.get_model_version(name, decision.new_version).run_id
    if run_id:
        client.log_metric(run_id, f"gate_new_{decision.metric}", decision.new_score)
        if decision.champion_score is not None:
            client.log_metric(run_id, f"gate_champion_{decision.metric}", decision.champion_score)
