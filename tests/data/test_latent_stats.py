"""Per-track statistics for the DiT's optional normalisation: what is measured, and on what."""

from __future__ import annotations

import numpy as np
import pytest

from mgeldm.data.latent_stats import measure_track_stats


class _Gaussian:
    """Items whose three tracks are N(mean_k, std_k) per channel: the truth the measurement must find."""

    def __init__(self, mean, std, frames=32):
        self.mean, self.std, self.frames = np.asarray(mean), np.asarray(std), frames
        self.draws = 0

    def sample(self, rng):
        self.draws += 1
        z = (
            rng.standard_normal((3,) + self.mean.shape[1:] + (self.frames,)) * self.std[..., None]
            + self.mean[..., None]
        )
        return {"mix_latent": z[0], "submix_latent": z[1], "src_latent": z[2]}


def test_measures_mean_and_std_per_track_and_channel():
    mean = np.array([[1.0, -2.0], [0.5, 0.0], [0.0, 3.0]])
    std = np.array([[2.0, 1.0], [0.5, 4.0], [1.0, 0.25]])
    ds = _Gaussian(mean, std)
    stats = measure_track_stats(ds, 2000)
    assert ds.draws == 2000
    np.testing.assert_allclose(stats["mean"], mean, atol=0.08)
    np.testing.assert_allclose(stats["std"], std, rtol=0.03)
    scaled = measure_track_stats(_Gaussian(mean, std), 500, scale=2.0)  # in the pretransform's space
    np.testing.assert_allclose(scaled["mean"], mean / 2, atol=0.08)


def test_measurement_is_seeded_apart_from_training_and_never_zero_std():
    ds = _Gaussian(np.zeros((3, 2)), np.array([[1.0, 0.0]] * 3))  # a channel that never varies
    a, b = measure_track_stats(ds, 50), measure_track_stats(ds, 50)
    assert a == b  # fixed stream, whatever the run's seed
    assert all(row[1] == 1.0 for row in a["std"])
    with pytest.raises(ValueError):
        measure_track_stats(ds, 0)
