"""Tiles in the data store: one .npz object per tile under `raw/<dataset>/`."""

from __future__ import annotations

from water_mapping.dataloader.synthetic_tiles import Tile
from water_mapping.utils.data_store import DataStore, get_arrays, put_arrays

RAW_PREFIX = "raw"


def tile_key(dataset: str, tile_id: str) -> str:
    return f"{RAW_PREFIX}/{dataset}/{tile_id}.npz"


def write_tiles(store: DataStore, dataset: str, tiles: list[Tile]) -> list[str]:
    """Write tiles to `raw/<dataset>/`; returns their URLs."""
    return [
        put_arrays(
            store,
            tile_key(dataset, tile.tile_id),
            bands=tile.bands,
            water_mask=tile.water_mask,
            cloud_mask=tile.cloud_mask,
        )
        for tile in tiles
    ]


def list_tile_ids(store: DataStore, dataset: str) -> list[str]:
    prefix = f"{RAW_PREFIX}/{dataset}/"
    names = [key[len(prefix) :] for key in store.list_keys(prefix)]
    return [name[: -len(".npz")] for name in names if name.endswith(".npz") and "/" not in name]


def read_tile(store: DataStore, dataset: str, tile_id: str) -> Tile:
    arrays = get_arrays(store, tile_key(dataset, tile_id))
    return Tile(tile_id, arrays["bands"], arrays["water_mask"], arrays["cloud_mask"])


def read_tiles(store: DataStore, dataset: str) -> list[Tile]:
    """All tiles of a dataset, in tile id order."""
    tile_ids = list_tile_ids(store, dataset)
    if not tile_ids:
        raise FileNotFoundError(
            f"no tiles under {store.base_url}/{RAW_PREFIX}/{dataset}/: generate them first"
        )
    return [read_tile(store, dataset, tile_id) for tile_id in tile_ids]
