"""The Log-Mel floor relative to each excerpt: 60 dB under the mel peak of its mixture, shared by the estimate,
the reference and the mixture; the absolute floor (1e-5) stays available as the ``_absfloor`` figures."""

from __future__ import annotations

import math

import pytest
import torch

from mgeldm.metrics.closest import closest_stem, logmel_distance
from mgeldm.metrics.logmel import (
    ABSFLOOR,
    LogMelConfig,
    excerpt_floor,
    log_mel,
    logmel_l1,
    logmel_l1_ratio_vs_mix,
    mel_magnitudes,
)

SR = 16000


def _excerpt(seconds: float = 2.0) -> dict[str, torch.Tensor]:
    """A quiet stem with digital silence in its second half, a loud stem, their mixture, and the quiet stem's
    estimate with a faint noise floor (0.002 RMS, like a decoded stem's)."""
    n = int(seconds * SR)
    t = torch.arange(n) / SR
    quiet = 0.05 * torch.sin(2 * math.pi * 440 * t) * (t < seconds / 2).float()
    loud = 0.3 * torch.sin(2 * math.pi * 110 * t) + 0.2 * torch.sin(2 * math.pi * 1500 * t)
    noise = torch.randn(n, generator=torch.Generator().manual_seed(0))
    return {"quiet": quiet, "loud": loud, "mix": quiet + loud, "estimate": quiet + 0.002 * noise / noise.std()}


def test_the_default_floor_is_60_db_under_the_mixture_mel_peak():
    cfg = LogMelConfig()
    assert cfg.floor_db_below_mix_peak == 60.0 and cfg.floor == 1e-5 and ABSFLOOR == "_absfloor"
    mix_mel = mel_magnitudes(_excerpt()["mix"], cfg)
    floor = excerpt_floor(mix_mel, cfg)
    assert floor.shape == (1, 1)
    assert 20 * math.log10(float(mix_mel.max()) / float(floor)) == pytest.approx(60.0, abs=1e-4)
    # the floored spectrogram bottoms out there
    logs = log_mel(_excerpt()["mix"], cfg, floor=floor)
    assert float(logs.min()) == pytest.approx(math.log10(float(floor)), abs=1e-6)
    # another depth, a silent mixture (never under the absolute floor) and the absolute floor alone
    assert 20 * math.log10(
        float(mix_mel.max()) / float(excerpt_floor(mix_mel, LogMelConfig(floor_db_below_mix_peak=40)))
    ) == pytest.approx(40.0, abs=1e-4)
    assert float(excerpt_floor(torch.zeros(80, 10), cfg)) == pytest.approx(1e-5)
    assert float(excerpt_floor(mix_mel, cfg.absolute())) == pytest.approx(1e-5)
    assert float(log_mel(torch.zeros(4000), cfg).min()) == pytest.approx(-5.0)  # a signal alone: the absolute floor


def test_the_floor_is_per_excerpt_in_a_batch():
    x = _excerpt()["mix"]
    mels = mel_magnitudes(torch.stack([x, 10 * x]))
    floors = excerpt_floor(mels)
    assert floors.shape == (2, 1, 1) and float(floors[1] / floors[0]) == pytest.approx(10.0, rel=1e-4)


def test_a_faint_noise_floor_in_digital_silence_costs_less_under_the_relative_floor():
    ex = _excerpt()
    rel, absolute = LogMelConfig(), LogMelConfig().absolute()
    d_rel = float(logmel_l1(ex["estimate"], ex["quiet"], rel, ex["mix"]))
    d_abs = float(logmel_l1(ex["estimate"], ex["quiet"], absolute, ex["mix"]))
    assert d_rel < 0.2 * d_abs
    # the closest-stem rule: the absolute floor takes the noisy estimate of the quiet stem for the loud stem
    stems = {"quiet": ex["quiet"], "loud": ex["loud"]}
    assert closest_stem(ex["estimate"], stems, logmel_distance(rel, ex["mix"])) == "quiet"
    assert closest_stem(ex["estimate"], stems, logmel_distance(absolute, ex["mix"])) == "loud"


@pytest.mark.parametrize("cfg", [LogMelConfig(), LogMelConfig().absolute()], ids=["relative", "absfloor"])
def test_the_mixture_scores_ratio_one_and_the_true_stem_zero(cfg):
    ex = _excerpt()
    assert logmel_l1_ratio_vs_mix(ex["mix"], ex["quiet"], ex["mix"], cfg) == pytest.approx(1.0)
    assert logmel_l1_ratio_vs_mix(ex["quiet"], ex["quiet"], ex["mix"], cfg) == 0.0
    assert float(logmel_l1(ex["quiet"], ex["quiet"], cfg, ex["mix"])) == 0.0


def test_a_scaled_excerpt_scores_the_same_under_the_relative_floor_only():
    ex = _excerpt()
    loud = {k: 10 * v for k, v in ex.items()}
    rel, absolute = LogMelConfig(), LogMelConfig().absolute()
    same = (
        float(logmel_l1(ex["estimate"], ex["quiet"], rel, ex["mix"])),
        float(logmel_l1(loud["estimate"], loud["quiet"], rel, loud["mix"])),
    )
    assert same[1] == pytest.approx(same[0], rel=1e-4)
    assert logmel_l1_ratio_vs_mix(loud["estimate"], loud["quiet"], loud["mix"], rel) == pytest.approx(
        logmel_l1_ratio_vs_mix(ex["estimate"], ex["quiet"], ex["mix"], rel), rel=1e-4
    )
    moved = (
        float(logmel_l1(ex["estimate"], ex["quiet"], absolute, ex["mix"])),
        float(logmel_l1(loud["estimate"], loud["quiet"], absolute, loud["mix"])),
    )
    assert abs(moved[1] - moved[0]) > 0.1


def test_without_a_mixture_the_reference_sets_the_floor():
    ex = _excerpt()
    cfg = LogMelConfig()
    alone = float(logmel_l1(ex["estimate"], ex["quiet"], cfg))
    as_mixture = float(logmel_l1(ex["estimate"], ex["quiet"], cfg, ex["quiet"]))
    assert alone == pytest.approx(as_mixture, rel=1e-6)
    dist = logmel_distance(cfg)
    assert dist(ex["estimate"], ex["quiet"]) == pytest.approx(alone, rel=1e-5)
    assert logmel_distance(cfg, ex["mix"])(ex["estimate"], ex["quiet"]) == pytest.approx(
        float(logmel_l1(ex["estimate"], ex["quiet"], cfg, ex["mix"])), rel=1e-5
    )
