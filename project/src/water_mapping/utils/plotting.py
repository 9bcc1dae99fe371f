"""Figures of tiles and masks, shared by training (logged to MLflow) and the notebooks.

Figures are built on matplotlib's Agg canvas without pyplot: no GUI backend in Airflow
tasks, no global figure registry to leak, and notebooks show them with `display(figure)`.
"""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

RGB_BAND_INDICES = (2, 1, 0)  # red, green, blue in BAND_NAMES order


def true_colour(bands: np.ndarray, brightest: float = 0.3) -> np.ndarray:
    """An (H, W, 3) image in [0, 1]; reflectance above `brightest` saturates, as in quicklooks."""
    rgb = np.stack([bands[index] for index in RGB_BAND_INDICES], axis=-1)
    return np.clip(rgb / brightest, 0.0, 1.0)


def new_figure(width: float, height: float) -> Figure:
    """A figure drawn by Agg, independent of the current matplotlib backend."""
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def plot_tile_truth_prediction(
    bands: np.ndarray,
    truth: np.ndarray | None,
    prediction: np.ndarray,
    title: str = "",
) -> Figure:
    """Tile, ground truth and predicted mask side by side; omits truth when it is unknown."""
    panels: list[tuple[str, np.ndarray, str | None]] = [
        ("tile (true colour)", true_colour(bands), None)
    ]
    if truth is not None:
        panels.append(("ground truth", truth, "Blues"))
    panels.append(("prediction", prediction, "Blues"))
    figure = new_figure(3.2 * len(panels), 3.4)
    axes = figure.subplots(1, len(panels))
    for axis, (label, image, colour_map) in zip(axes, panels, strict=True):
        axis.imshow(image, cmap=colour_map, vmin=0, vmax=1, interpolation="nearest")
        axis.set_title(label)
        axis.set_axis_off()
    if title:
        figure.suptitle(title)
    return figure
