"""The drift figure a person opens beside a batch's predictions: per band, the training data's
distribution and the batch's, with the band's PSI (red when above the threshold)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from water_mapping.utils.plotting import new_figure


def plot_drift(
    profile: Mapping[str, Any], report: Mapping[str, Any], pixels: np.ndarray, title: str = ""
) -> Figure:
    """One panel per band: reference (from its quantiles) and batch reflectance histograms."""
    names = list(profile["bands"])
    figure = new_figure(2.8 * len(names), 3.0)
    axes = figure.subplots(1, len(names), squeeze=False)[0]
    for index, (axis, name) in enumerate(zip(axes, names, strict=True)):
        reference = np.asarray(profile["bands"][name]["quantiles"])
        batch = np.asarray(pixels)[:, index]
        low = min(reference.min(), batch.min())
        high = max(reference.max(), batch.max())
        bins = np.linspace(low, high if high > low else low + 1e-3, 40)
        axis.hist(reference, bins=bins, density=True, alpha=0.5, label="training")
        axis.hist(batch, bins=bins, density=True, histtype="step", linewidth=1.5, label="batch")
        band = report["bands"][name]
        drifted = band["psi"] > report["threshold"]
        axis.set_title(f"{name}: PSI {band['psi']:.2f}", color="tab:red" if drifted else "black")
        axis.set_xlabel("reflectance")
        axis.set_yticks([])
    axes[0].legend(loc="upper right", fontsize="small")
    verdict = "drifted" if report["drifted"] else "no drift"
    figure.suptitle(f"{title} {verdict} (PSI threshold {report['threshold']})".strip())
    return figure
