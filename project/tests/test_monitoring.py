"""Monitoring: the reference profile, PSI and KS per band, the drift verdict and its figure.

No services: synthetic tiles in memory, as the training and inference steps make them.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from water_mapping.dataloader.synthetic_tiles import BAND_NAMES, add_haze, generate_tiles
from water_mapping.monitoring.drift import (
    N_BINS,
    drift_report,
    ks_test,
    psi,
    reference_profile,
    tiles_as_pixels,
)
from water_mapping.monitoring.report import plot_drift
from water_mapping.monitoring.signals import DEFAULT_DRIFT_THRESHOLD
from water_mapping.preprocess.feature_store import feature_set_of
from water_mapping.train.training_data import split_by_tile


@pytest.fixture(scope="module")
def profile() -> dict:
    """The profile training logs: the sampled training pixels' bands (seed 0, 8 tiles)."""
    data = split_by_tile([feature_set_of(tile) for tile in generate_tiles(8, 0, 64)])
    return reference_profile(data.features[:, : len(BAND_NAMES)], BAND_NAMES)


def batch_pixels(batch_id: str, haze: float = 0.0) -> np.ndarray:
    """A batch as `receive_new_tiles` makes it: 3 tiles seeded by the batch id."""
    tiles = generate_tiles(3, zlib.crc32(batch_id.encode()), 64)
    return tiles_as_pixels(np.stack([add_haze(tile, haze).bands for tile in tiles]))


def test_psi_is_zero_for_the_same_distribution_and_grows_with_the_shift() -> None:
    expected = [0.25, 0.25, 0.25, 0.25]
    assert psi(expected, expected) == 0.0
    small = psi(expected, [0.30, 0.25, 0.25, 0.20])
    large = psi(expected, [0.70, 0.10, 0.10, 0.10])
    assert 0 < small < large
    # sum((a - e) ln(a / e)) by hand for the small shift
    assert small == pytest.approx(0.05 * np.log(0.30 / 0.25) - 0.05 * np.log(0.20 / 0.25))


def test_psi_stays_finite_for_an_empty_bin_and_refuses_unequal_bins() -> None:
    assert np.isfinite(psi([0.5, 0.5], [1.0, 0.0]))
    with pytest.raises(ValueError, match="as many bins"):
        psi([0.5, 0.5], [0.2, 0.3, 0.5])


def test_the_profile_holds_deciles_quantiles_and_statistics_per_band(profile: dict) -> None:
    assert list(profile["bands"]) == list(BAND_NAMES)
    for band in profile["bands"].values():
        assert len(band["edges"]) == N_BINS - 1
        assert band["edges"] == sorted(band["edges"])
        assert sum(band["fractions"]) == pytest.approx(1.0)
        assert max(band["fractions"]) < 0.2  # deciles: about a tenth of the pixels each
        assert band["p05"] <= band["median"] <= band["p95"]


def test_the_profile_refuses_pixels_that_do_not_match_the_bands() -> None:
    with pytest.raises(ValueError, match=r"\(pixels, 5\)"):
        reference_profile(np.zeros((100, 3)), BAND_NAMES)
    with pytest.raises(ValueError, match="'blue' has 4 valid pixels"):
        reference_profile(np.zeros((4, 5)), BAND_NAMES)


def test_normal_batches_do_not_drift(profile: dict) -> None:
    """Else train -> infer -> drift -> train would loop for ever: batches named as Airflow
    names runs stay below the default threshold, with room to spare."""
    for index in range(40):
        report = drift_report(
            profile, batch_pixels(f"asset_triggered__2026-01-{index}"), DEFAULT_DRIFT_THRESHOLD
        )
        assert not report["drifted"], report
        assert report["max_psi"] < DEFAULT_DRIFT_THRESHOLD / 1.5


def test_a_hazy_batch_drifts_most_in_the_blue_band(profile: dict) -> None:
    report = drift_report(profile, batch_pixels("hazy", haze=0.3), DEFAULT_DRIFT_THRESHOLD)
    assert report["drifted"] and report["max_psi_band"] == "blue"
    assert report["max_psi"] > 3 * DEFAULT_DRIFT_THRESHOLD
    blue = report["bands"]["blue"]
    assert blue["batch"]["mean"] > blue["reference"]["mean"] + 0.05
    assert blue["ks_statistic"] > 0.5 and blue["ks_pvalue"] < 1e-6


def test_the_ks_test_tells_a_shifted_sample_from_the_same_one() -> None:
    rng = np.random.default_rng(0)
    reference = np.quantile(rng.normal(size=10_000), (np.arange(200) + 0.5) / 200)
    same, _ = ks_test(reference, rng.normal(size=2_000))
    shifted, pvalue = ks_test(reference, rng.normal(loc=1.0, size=2_000))
    assert same < 0.05 < 0.3 < shifted
    assert pvalue < 1e-6


def test_the_report_refuses_a_bad_threshold_or_an_old_profile(profile: dict) -> None:
    pixels = batch_pixels("any")
    with pytest.raises(ValueError, match="drift threshold 0"):
        drift_report(profile, pixels, 0)
    with pytest.raises(ValueError, match="retrain the model"):
        drift_report({**profile, "version": 0}, pixels, 1.0)


def test_haze_veils_the_bands_and_keeps_the_truth() -> None:
    tile = generate_tiles(1, 3, 32)[0]
    hazy = add_haze(tile, 0.3)
    assert hazy.bands.mean() > tile.bands.mean()
    np.testing.assert_array_equal(hazy.water_mask, tile.water_mask)
    assert add_haze(tile, 0.0) is tile
    with pytest.raises(ValueError, match=r"haze strength 1\.5"):
        add_haze(tile, 1.5)


def test_tiles_become_pixels_by_band() -> None:
    bands = np.arange(2 * 5 * 3 * 4).reshape(2, 5, 3, 4)
    pixels = tiles_as_pixels(bands)
    assert pixels.shape == (24, 5)
    np.testing.assert_array_equal(pixels[0], bands[0, :, 0, 0])
    with pytest.raises(ValueError, match="got shape"):
        tiles_as_pixels(np.zeros((5, 5)))


def test_the_figure_names_each_band_and_its_psi(profile: dict) -> None:
    pixels = batch_pixels("hazy", haze=0.3)
    report = drift_report(profile, pixels, DEFAULT_DRIFT_THRESHOLD)
    figure = plot_drift(profile, report, pixels, title="batch hazy:")
    titles = [axis.get_title() for axis in figure.axes]
    assert titles[0].startswith("blue: PSI ") and len(titles) == len(BAND_NAMES)
    assert "drifted" in figure.get_suptitle()
