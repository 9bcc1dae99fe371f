"""A per-pixel water / not-water classifier and the small grid the training searches."""

from __future__ import annotations

from typing import Any

from sklearn.ensemble import RandomForestClassifier

# Small on purpose: the whole search must run in seconds on two cores.
SEARCH_SPACE: tuple[dict[str, Any], ...] = (
    {"n_estimators": 10, "max_depth": 3, "min_samples_leaf": 1},
    {"n_estimators": 20, "max_depth": 6, "min_samples_leaf": 1},
    {"n_estimators": 30, "max_depth": 10, "min_samples_leaf": 3},
)


def build_water_classifier(**params: Any) -> RandomForestClassifier:
    """A random forest with `params`; single-threaded and seeded, so runs are reproducible."""
    return RandomForestClassifier(random_state=0, n_jobs=1, **params)
