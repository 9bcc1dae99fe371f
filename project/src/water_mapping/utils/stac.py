"""The STAC catalog of the data store: every dataset of scenes and every batch of predictions
is a catalog of Items (with their COG assets), linked from `catalog.json` at the store's root.

pystac reads and writes through `StoreStacIO`, so the same code runs on s3://data and on a
local folder, and any STAC client (QGIS, stac-browser, pystac) can walk what the project wrote.
"""

from __future__ import annotations

from typing import Any

import pystac
from pystac.stac_io import DefaultStacIO
from pystac.utils import make_relative_href

from water_mapping.utils.data_store import DataStore

ROOT_CATALOG_KEY = "catalog.json"


class StoreStacIO(DefaultStacIO):
    """pystac's I/O through the data store for s3:// hrefs (boto3 with the stack's keys);
    local paths and http(s) URLs (a public STAC API) as pystac reads them itself."""

    def __init__(self, store: DataStore) -> None:
        super().__init__()
        self.store = store
        self._prefix = store.gdal_path("")

    def _key(self, href: str) -> str | None:
        if href.startswith("s3://") and href.startswith(self._prefix):
            return href[len(self._prefix) :]
        return None

    def read_text_from_href(self, href: str) -> str:
        key = self._key(href)
        return (
            self.store.get_bytes(key).decode()
            if key is not None
            else super().read_text_from_href(href)
        )

    def write_text_to_href(self, href: str, txt: str) -> None:
        key = self._key(href)
        if key is None:
            super().write_text_to_href(href, txt)
        else:
            self.store.put_bytes(key, txt.encode())


def catalog_key(prefix: str) -> str:
    return f"{prefix}/catalog.json"


def save_catalog(
    store: DataStore, prefix: str, description: str, items: list[pystac.Item]
) -> pystac.Catalog:
    """Write `items` as the catalog at `<prefix>/catalog.json` (each Item at
    `<prefix>/<id>/<id>.json`, its assets' hrefs relative to it) and link it from the root."""
    stac_io = StoreStacIO(store)
    catalog = pystac.Catalog(id=prefix.replace("/", "-"), description=description)
    for item in items:
        catalog.add_item(item)
    # The catalog file itself, not its folder: pystac takes a folder with a dot for a file.
    catalog.normalize_hrefs(store.gdal_path(catalog_key(prefix)), skip_unresolved=True)
    catalog.make_all_asset_hrefs_relative()
    catalog.save(pystac.CatalogType.SELF_CONTAINED, stac_io=stac_io)
    _link_from_root(store, stac_io, prefix)
    return catalog


def read_items(store: DataStore, prefix: str) -> list[pystac.Item]:
    """The Items of the catalog at `<prefix>/catalog.json`, in id order."""
    href = store.gdal_path(catalog_key(prefix))
    if catalog_key(prefix) not in store.list_keys(catalog_key(prefix)):
        raise FileNotFoundError(f"no STAC catalog at {href}: write the dataset first")
    catalog = pystac.Catalog.from_file(href, stac_io=StoreStacIO(store))
    return sorted(catalog.get_items(), key=lambda item: item.id)


def _link_from_root(store: DataStore, stac_io: StoreStacIO, prefix: str) -> None:
    """Add the child link to the root catalog, writing the root alone (not its children)."""
    href = store.gdal_path(ROOT_CATALOG_KEY)
    children = {store.gdal_path(catalog_key(prefix))}
    if store.list_keys(ROOT_CATALOG_KEY):
        existing = pystac.Catalog.from_file(href, stac_io=stac_io)
        children |= {
            str(link.get_absolute_href()) for link in existing.links if link.rel == "child"
        }
    root = pystac.Catalog(
        id="h2ops-data", description="Scenes and predictions in the H2Ops data store"
    )
    for child in sorted(children):
        relative = make_relative_href(child, href)
        root.add_link(pystac.Link(pystac.RelType.CHILD, relative, pystac.MediaType.JSON))
    document: dict[str, Any] = root.to_dict(include_self_link=False, transform_hrefs=False)
    stac_io.save_json(href, document)


def asset_href(item: pystac.Item, key: str) -> str:
    """The absolute href of an Item's asset, for rasterio; a clear error when it is missing."""
    asset = item.assets.get(key)
    href = asset.get_absolute_href() if asset is not None else None
    if href is None:
        raise ValueError(
            f"STAC Item {item.id} has no asset {key!r} with an href (it has {sorted(item.assets)})"
        )
    return href
