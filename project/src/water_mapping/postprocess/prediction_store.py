"""Predictions in the data store: per tile a georeferenced COG water mask, on the scene's own
grid, and a STAC Item (`predictions/<batch>/<tile_id>/<tile_id>.json`) with the mask as its
asset, its water statistics as properties and a link to the scene it was predicted from."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pystac
import rasterio

from water_mapping.dataloader.synthetic_tiles import Tile
from water_mapping.dataloader.tile_store import scene_geometry
from water_mapping.utils.cog import write_cog
from water_mapping.utils.data_store import DataStore
from water_mapping.utils.stac import asset_href, read_items, save_catalog

MASK_ASSET = "water_mask"
MASK_BANDS = ("water_mask", "raw_water_mask")  # cleaned, and as the model gave it
MASK_NODATA = 255


def prediction_item(
    store: DataStore,
    prefix: str,
    tile: Tile,
    masks: tuple[np.ndarray, np.ndarray],
    properties: Mapping[str, object],
    source: pystac.Item | None = None,
) -> pystac.Item:
    """Write the (cleaned, raw) masks of `tile` as one two-band COG; returns its Item."""
    href = write_cog(
        store,
        f"{prefix}/{tile.tile_id}/{MASK_ASSET}.tif",
        np.stack(masks).astype(np.uint8),
        crs=tile.crs,
        transform=tile.transform,
        descriptions=MASK_BANDS,
        nodata=MASK_NODATA,
    )
    geometry, bbox = scene_geometry(tile)
    item = pystac.Item(tile.tile_id, geometry, bbox, tile.acquired, properties=dict(properties))
    item.add_asset(
        MASK_ASSET,
        pystac.Asset(
            href,
            title="Water mask (1 = water): band 1 cleaned, band 2 raw",
            media_type=pystac.MediaType.COG,
            roles=["data"],
        ),
    )
    if source is not None and source.get_self_href():
        item.add_link(pystac.Link("derived_from", str(source.get_self_href())))
    return item


def save_predictions(store: DataStore, prefix: str, items: list[pystac.Item]) -> None:
    save_catalog(store, prefix, f"Water masks of batch {prefix.rsplit('/', 1)[-1]}", items)


def read_masks(item: pystac.Item) -> dict[str, np.ndarray]:
    """The masks of a prediction Item by band name (water_mask, raw_water_mask)."""
    with rasterio.open(asset_href(item, MASK_ASSET)) as source:
        return {name: source.read(index + 1) for index, name in enumerate(MASK_BANDS)}


def read_predictions(store: DataStore, prefix: str) -> list[pystac.Item]:
    return read_items(store, prefix)
