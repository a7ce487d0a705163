"""MR-STFT loss, A-weighting, KL and masked v-loss against docs/compatibility.md#autoencoder-training,
docs/compatibility.md#dit-training on hand-checked cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal
import torch

from mgeldm.training.losses import (
    MultiResolutionSTFTLoss,
    a_weighting_fir,
    masked_mse,
    per_track_mse,
    spectral_convergence,
    stft_magnitude,
)


def _spec_a6_taps(fs: int = 16000, ntaps: int = 101) -> np.ndarray:
    """docs/compatibility.md#autoencoder-training's recipe written out: IEC analog A-weighting -> bilinear ->
    freqz(512) -> firls."""
    f1, f2, f3, f4, a1000 = 20.598997, 107.65265, 737.86223, 12194.217, 1.9997
    num = [(2 * np.pi * f4) ** 2 * (10 ** (a1000 / 20)), 0, 0, 0, 0]
    den = np.polymul([1, 4 * np.pi * f4, (2 * np.pi * f4) ** 2], [1, 4 * np.pi * f1, (2 * np.pi * f1) ** 2])
    den = np.polymul(np.polymul(den, [1, 2 * np.pi * f3]), [1, 2 * np.pi * f2])
    b, a = scipy.signal.bilinear(num, den, fs=fs)
    w, h = scipy.signal.freqz(b, a, worN=512, fs=fs)
    return scipy.signal.firls(ntaps, w, np.abs(h), fs=fs)


def test_auraloss_a_weighting_is_spec_filter():
    taps = a_weighting_fir(16000, 101).fir.weight.detach().double().numpy().ravel()
    assert taps.shape == (101,)
    np.testing.assert_allclose(taps, _spec_a6_taps(), rtol=0, atol=1e-6)
    # and it is an A-weighting: compare with the standard analog curve where warping is small
    freqs = np.array([200.0, 500.0, 1000.0, 2000.0])
    _, h = scipy.signal.freqz(taps, worN=freqs, fs=16000)
    ra = (
        12194**2
        * freqs**4
        / ((freqs**2 + 20.6**2) * np.sqrt((freqs**2 + 107.7**2) * (freqs**2 + 737.9**2)) * (freqs**2 + 12194**2))
    )
    np.testing.assert_allclose(20 * np.log10(np.abs(h)), 20 * np.log10(ra) + 2.0, atol=0.5)


def test_stft_magnitude_floor_and_defaults():
    x = torch.zeros(1, 256)
    mag = stft_magnitude(x, 64, 16, 64)
    assert mag.shape == (1, 33, 256 // 16 + 1)  # center=True frames
    assert torch.allclose(mag, torch.full_like(mag, 1e-4))  # sqrt(1e-8)


def test_spectral_convergence_is_per_example():
    x = torch.stack([torch.ones(2, 3), torch.ones(2, 3) * 10])
    y = torch.stack([torch.ones(2, 3) * 2, torch.ones(2, 3) * 40])
    # example 0: |2-1|/2 = 0.5; example 1: |40-10|/40 = 0.75 -> mean 0.625 (pooled would be ~0.749)
    assert spectral_convergence(x, y).item() == pytest.approx(0.625)


def _noise(b: int, n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, 1, n, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("weighting", [True, False])
def test_mrstft_hand_checked_scaling(weighting):
    """target = g·input: each resolution gives SC = 1 − 1/g and log term = log g (FIR and STFT are linear)."""
    loss = MultiResolutionSTFTLoss(perceptual_weighting=weighting)
    x = _noise(2, 8192)
    gains = torch.tensor([2.0, 4.0]).view(2, 1, 1)
    out = loss(x, gains * x).item()
    sc = (0.5 + 0.75) / 2
    log_term = (math.log(2) + math.log(4)) / 2
    assert out == pytest.approx(sc + log_term, rel=1e-4)
    # argument order matters: input = reals, target = decoded (denominator)
    swapped = loss(gains * x, x).item()
    assert swapped == pytest.approx((1.0 + 3.0) / 2 + log_term, rel=1e-4)


def test_mrstft_zero_for_identical_and_fp32_under_autocast():
    loss = MultiResolutionSTFTLoss()
    x = _noise(1, 4096)
    assert loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = loss(x.bfloat16(), (0.5 * x).bfloat16())
    assert out.dtype == torch.float32 and torch.isfinite(out)


def test_mrstft_resolutions_default_to_spec():
    loss = MultiResolutionSTFTLoss()
    assert loss.resolutions == [
        (2048, 512, 2048),
        (1024, 256, 1024),
        (512, 128, 512),
        (256, 64, 256),
        (128, 32, 128),
        (64, 16, 64),
        (32, 8, 32),
    ]


def test_masked_mse_ignores_masked_tracks():
    torch.manual_seed(0)
    b, k, c, t = 3, 3, 4, 5
    pred, target = torch.randn(b, k * c, t), torch.randn(b, k * c, t)
    mask = torch.tensor([[1, 1, 1], [0, 1, 1], [1, 1, 0]], dtype=torch.float32)
    ref = []
    for i in range(b):
        for j in range(k):
            if mask[i, j]:
                ref.append((pred[i, j * c : (j + 1) * c] - target[i, j * c : (j + 1) * c]).square().flatten())
    expected = torch.cat(ref).mean()
    assert masked_mse(pred, target, mask, k).item() == pytest.approx(expected.item(), rel=1e-6)
    # changing a masked track's prediction changes nothing
    pred2 = pred.clone()
    pred2[1, 0:c] += 100.0
    assert masked_mse(pred2, target, mask, k).item() == pytest.approx(expected.item(), rel=1e-6)
    per_track = per_track_mse(pred, target, mask, k)
    assert per_track.shape == (3,)
    tr0 = torch.stack([(pred[i, :c] - target[i, :c]).square().mean() for i in (0, 2)]).mean()
    assert per_track[0].item() == pytest.approx(tr0.item(), rel=1e-6)
