"""Input drift per band: the training data's reference profile, and a batch scored against it.

The reference profile is computed from the training pixels when the model is trained and
logged as an artifact of the model's run, so every registered version carries the data it
learned from. A batch is scored per band with two well-known measures:

- PSI (Population Stability Index) over the reference's deciles: the drift decision, since it
  grows with how much of the batch moved, not with how many pixels there are;
- the two-sample Kolmogorov-Smirnov test (scipy) against the reference's quantiles, reported
  beside it. Its p-value is not the decision: neighbouring pixels are not independent, so
  with thousands of pixels it calls trivial differences significant.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

PROFILE_VERSION = 1
N_BINS = 10  # PSI bins: the reference's deciles
N_QUANTILES = 200  # the reference sample the KS test compares with
PSI_FLOOR = 1e-4  # an empty bin counts as this fraction, so PSI stays finite


def reference_profile(pixels: np.ndarray, band_names: Sequence[str]) -> dict[str, Any]:
    """The profile of training pixels `(pixels, bands)`: per band its decile edges, the
    fraction of pixels in each bin, quantiles for the KS test and summary statistics."""
    values = _as_pixels(pixels, band_names)
    bands: dict[str, Any] = {}
    for name, column in zip(band_names, values.T, strict=True):
        column = column[np.isfinite(column)]
        if column.size < N_BINS:
            raise ValueError(
                f"band {name!r} has {column.size} valid pixels: a reference profile needs at "
                f"least {N_BINS}"
            )
        edges = np.quantile(column, np.linspace(0, 1, N_BINS + 1)[1:-1])
        levels = (np.arange(N_QUANTILES) + 0.5) / N_QUANTILES
        bands[name] = {
            "edges": _rounded(edges),
            "fractions": _rounded(_bin_fractions(column, edges)),
            "quantiles": _rounded(np.quantile(column, levels)),
            **input_statistics(column),
        }
    return {"version": PROFILE_VERSION, "n_pixels": int(values.shape[0]), "bands": bands}


def input_statistics(values: np.ndarray) -> dict[str, float]:
    """What a batch (or the reference) looks like in one band: mean, spread, percentiles."""
    values = np.asarray(values, dtype=float).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("no finite values to describe")
    p05, p50, p95 = np.quantile(values, [0.05, 0.5, 0.95])
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "p05": float(p05),
        "median": float(p50),
        "p95": float(p95),
        "max": float(values.max()),
    }


def psi(expected: ArrayLike, actual: ArrayLike) -> float:
    """Population Stability Index of two bin-fraction vectors: sum((a - e) * ln(a / e))."""
    e = np.maximum(np.asarray(expected, dtype=float), PSI_FLOOR)
    a = np.maximum(np.asarray(actual, dtype=float), PSI_FLOOR)
    if e.shape != a.shape:
        raise ValueError(f"PSI needs as many bins on both sides, got {e.shape} and {a.shape}")
    return float(np.sum((a - e) * np.log(a / e)))


def ks_test(reference_quantiles: ArrayLike, values: ArrayLike) -> tuple[float, float]:
    """Two-sample KS statistic and p-value of a batch's values against the reference sample."""
    from scipy.stats import ks_2samp

    result = ks_2samp(np.asarray(reference_quantiles, dtype=float), np.asarray(values, dtype=float))
    return float(result.statistic), float(result.pvalue)


def drift_report(
    profile: Mapping[str, Any], pixels: np.ndarray, threshold: float
) -> dict[str, Any]:
    """Per band: the batch's statistics, its PSI against the profile and the KS test; the batch
    has drifted when any band's PSI exceeds `threshold`."""
    if not threshold > 0:
        raise ValueError(f"drift threshold {threshold!r} must be a positive PSI, e.g. 0.5")
    if profile.get("version") != PROFILE_VERSION:
        raise ValueError(
            f"reference profile version {profile.get('version')!r} is not {PROFILE_VERSION}: "
            "retrain the model so that its run logs a current profile"
        )
    names = list(profile["bands"])
    values = _as_pixels(pixels, names)
    bands: dict[str, Any] = {}
    for name, column in zip(names, values.T, strict=True):
        column = column[np.isfinite(column)]
        reference = profile["bands"][name]
        statistic, pvalue = ks_test(reference["quantiles"], column)
        bands[name] = {
            "psi": psi(reference["fractions"], _bin_fractions(column, reference["edges"])),
            "ks_statistic": statistic,
            "ks_pvalue": pvalue,
            "batch": input_statistics(column),
            "reference": {key: reference[key] for key in ("mean", "std", "p05", "median", "p95")},
        }
    worst = max(bands, key=lambda name: bands[name]["psi"])
    drifted = [name for name, band in bands.items() if band["psi"] > threshold]
    return {
        "drifted": bool(drifted),
        "drifted_bands": drifted,
        "threshold": threshold,
        "max_psi": bands[worst]["psi"],
        "max_psi_band": worst,
        "n_pixels": int(values.shape[0]),
        "bands": bands,
    }


def tiles_as_pixels(bands: np.ndarray) -> np.ndarray:
    """`(tile, band, row, column)` or `(band, row, column)` reflectance as `(pixels, band)`."""
    array = np.asarray(bands)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4:
        raise ValueError(f"expected (tile, band, row, column) bands, got shape {array.shape}")
    return np.moveaxis(array, 1, -1).reshape(-1, array.shape[1])


def _as_pixels(pixels: np.ndarray, band_names: Sequence[str]) -> np.ndarray:
    values = np.asarray(pixels, dtype=float)
    if values.ndim != 2 or values.shape[1] != len(band_names) or values.shape[0] == 0:
        raise ValueError(
            f"expected pixels shaped (pixels, {len(band_names)}) for bands {list(band_names)}, "
            f"got {values.shape}"
        )
    return values


def _bin_fractions(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """The fraction of `values` in each bin: below the first edge, between edges, above."""
    counts = np.bincount(
        np.searchsorted(np.asarray(edges), values, side="right"), minlength=len(edges) + 1
    )
    return counts / max(1, values.size)


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(value), 6) for value in values]
