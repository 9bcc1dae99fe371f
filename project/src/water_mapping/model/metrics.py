"""Scores of a predicted water mask against the truth, as every run reports them."""

from __future__ import annotations

import numpy as np


def mask_scores(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """IoU, F1, precision, recall and accuracy of the water class.

    An empty truth and an empty prediction agree perfectly: every score is 1.
    """
    truth = np.asarray(truth).astype(bool).reshape(-1)
    predicted = np.asarray(predicted).astype(bool).reshape(-1)
    if truth.shape != predicted.shape:
        raise ValueError(f"truth has {truth.size} pixels, prediction {predicted.size}")
    true_positive = float(np.sum(truth & predicted))
    false_positive = float(np.sum(~truth & predicted))
    false_negative = float(np.sum(truth & ~predicted))
    return {
        "iou": _ratio(true_positive, true_positive + false_positive + false_negative),
        "f1": _ratio(2 * true_positive, 2 * true_positive + false_positive + false_negative),
        "precision": _ratio(true_positive, true_positive + false_positive),
        "recall": _ratio(true_positive, true_positive + false_negative),
        "accuracy": float(np.mean(truth == predicted)) if truth.size else 1.0,
    }


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 1.0
