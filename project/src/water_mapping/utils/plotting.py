"""Figures of tiles and masks, shared by training (logged to MLflow) and the notebooks.

Figures are built on matplotlib's Agg canvas without pyplot: no GUI backend in Airflow
tasks, no global figure registry to leak, and notebooks show them with `display(figure)`.
"""

from __future__ import annotations

import numpy as np
from affine import Affine
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


def plot_scene_and_mask(
    bands: np.ndarray, mask: np.ndarray, transform: Affine, crs: str, title: str = ""
) -> Figure:
    """A scene in true colour and its water mask on the scene's own coordinates: both axes in
    the CRS's units (metres for UTM), so the figure lines up with any map of the place."""
    from rasterio.plot import plotting_extent

    if mask.shape != bands.shape[-2:]:
        raise ValueError(f"mask shape {mask.shape} is not the scene's {bands.shape[-2:]}")
    extent = plotting_extent(mask, transform)  # left, right, bottom, top
    figure = new_figure(9.0, 4.2)
    scene_axis, mask_axis = figure.subplots(1, 2, sharex=True, sharey=True)
    scene_axis.imshow(true_colour(bands), extent=extent)
    scene_axis.set_title("scene (true colour)")
    mask_axis.imshow(true_colour(bands), extent=extent)
    water = np.ma.masked_equal(mask, 0)
    mask_axis.imshow(water, extent=extent, cmap="cool", vmin=0, vmax=1, alpha=0.7)
    mask_axis.set_title("predicted water")
    for axis in (scene_axis, mask_axis):
        axis.set_xlabel(f"easting (m, {crs})")
        axis.ticklabel_format(style="plain", useOffset=False)
        axis.tick_params(axis="x", labelrotation=30)
    scene_axis.set_ylabel(f"northing (m, {crs})")
    if title:
        figure.suptitle(title)
    return figure
