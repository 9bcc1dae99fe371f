"""utils: the data store on a local folder, URL handling, and figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from water_mapping.utils.data_store import (
    LocalDataStore,
    S3DataStore,
    get_arrays,
    open_data_store,
    put_arrays,
)
from water_mapping.utils.plotting import (
    plot_scene_and_mask,
    plot_tile_truth_prediction,
    true_colour,
)


def test_local_store_round_trips_bytes_and_lists_keys_under_a_prefix(tmp_path: Path) -> None:
    store = open_data_store(tmp_path.as_uri())
    url = store.put_bytes("raw/a/one.bin", b"1")
    store.put_bytes("raw/b/two.bin", b"2")
    store.put_bytes("features/a/three.bin", b"3")

    assert url == f"{tmp_path.as_uri()}/raw/a/one.bin"
    assert store.get_bytes("raw/a/one.bin") == b"1"
    assert store.list_keys("raw/") == ["raw/a/one.bin", "raw/b/two.bin"]
    assert store.list_keys() == ["features/a/three.bin", "raw/a/one.bin", "raw/b/two.bin"]


def test_local_store_lists_nothing_before_anything_is_written(tmp_path: Path) -> None:
    assert open_data_store((tmp_path / "not-yet").as_uri()).list_keys() == []


def test_arrays_round_trip_through_npz(tmp_path: Path) -> None:
    store = open_data_store(tmp_path.as_uri())
    put_arrays(store, "x.npz", a=np.arange(6).reshape(2, 3), b=np.array(["n", "m"]))

    arrays = get_arrays(store, "x.npz")

    np.testing.assert_array_equal(arrays["a"], np.arange(6).reshape(2, 3))
    assert arrays["b"].tolist() == ["n", "m"]


def test_store_comes_from_the_environment_and_defaults_to_s3_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("H2OPS_DATA_URL", tmp_path.as_uri())
    assert isinstance(open_data_store(), LocalDataStore)

    monkeypatch.delenv("H2OPS_DATA_URL")
    store = open_data_store()
    assert isinstance(store, S3DataStore)
    assert (store.bucket, store.prefix) == ("data", "")


def test_s3_url_splits_into_bucket_and_prefix() -> None:
    store = S3DataStore("s3://data/projects/lakes/")
    assert (store.bucket, store.prefix, store.base_url) == (
        "data",
        "projects/lakes",
        "s3://data/projects/lakes",
    )


def test_unsupported_data_url_names_the_variable_to_set() -> None:
    with pytest.raises(ValueError, match="H2OPS_DATA_URL"):
        open_data_store("gs://bucket")


def test_true_colour_is_an_rgb_image_in_unit_range() -> None:
    bands = np.full((5, 4, 4), 0.6, dtype=np.float32)
    image = true_colour(bands)
    assert image.shape == (4, 4, 3)
    assert image.max() == 1.0


def test_figure_shows_tile_truth_and_prediction_and_drops_unknown_truth() -> None:
    bands = np.random.default_rng(0).uniform(0, 0.3, size=(5, 8, 8)).astype(np.float32)
    mask = np.zeros((8, 8), dtype=np.uint8)

    assert len(plot_tile_truth_prediction(bands, mask, mask, title="t").axes) == 3
    assert len(plot_tile_truth_prediction(bands, None, mask).axes) == 2


def test_scene_and_mask_are_drawn_on_the_scenes_coordinates_in_metres() -> None:
    from water_mapping.dataloader.synthetic_tiles import generate_tiles

    tile = generate_tiles(2, seed=1, size=32)[1]  # the second tile: 320 m east of the first
    figure = plot_scene_and_mask(tile.bands, tile.water_mask, tile.transform, tile.crs)
    axis = figure.axes[0]
    west, north = tile.transform * (0, 0)
    assert axis.get_xlim() == pytest.approx((west, west + 320))
    assert axis.get_ylim() == pytest.approx((north - 320, north))
    assert "EPSG:32633" in axis.get_xlabel()
    with pytest.raises(ValueError, match=r"mask shape \(3, 3\)"):
        plot_scene_and_mask(tile.bands, np.zeros((3, 3)), tile.transform, tile.crs)


def test_s3_client_signs_with_the_keys_in_the_environment_now(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A kernel or test that changes AWS_* variables must not keep signing with the old keys."""
    from water_mapping.utils.data_store import _s3_client

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "first-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "first-secret")
    assert _s3_client()._request_signer._credentials.access_key == "first-key"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "second-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "second-secret")
    assert _s3_client()._request_signer._credentials.access_key == "second-key"
