"""The cosine v-schedule helpers and the resumable Sobol timestep sampler."""

from __future__ import annotations

import io
import math

import pytest
import torch

from mgeldm.diffusion.schedule import (
    SobolTimestepSampler,
    alpha_sigma,
    eps_from_v,
    expand_t,
    noisy,
    sampling_times,
    v_target,
    x0_from_v,
)


def test_alpha_at_t1_is_fp32_cos_not_zero():
    alpha, sigma = alpha_sigma(torch.tensor(1.0))
    assert alpha.dtype == torch.float32
    # The original computes cos(pi/2) in float32, which is about -4.37e-8, not 0.
    assert alpha.item() == pytest.approx(-4.371138828673793e-08, rel=1e-6)
    assert sigma.item() == 1.0
    alpha0, sigma0 = alpha_sigma(0.0)
    assert alpha0.item() == 1.0 and sigma0.item() == 0.0


def test_alpha_sigma_cosine_and_unit_norm():
    t = torch.linspace(0, 1, 101)
    alpha, sigma = alpha_sigma(t)
    torch.testing.assert_close(alpha, torch.cos(t * math.pi / 2))
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(t))
    assert torch.all(alpha[1:] <= alpha[:-1]), "alpha must decrease with t"


def test_sampling_times_grid(reference_fixtures):
    sampler = reference_fixtures.readme["sampler"]
    steps, t_min = sampler["steps"], sampler["t_min"]
    t = sampling_times(steps, t_min)
    assert t.shape == (steps,) and t.dtype == torch.float32
    assert t[0].item() == 1.0 and t[-1].item() == pytest.approx(t_min)
    assert torch.equal(t, torch.linspace(1, t_min, steps))


def test_sampling_times_without_t_min_drops_zero():
    t = sampling_times(10, None)
    assert t.shape == (10,)
    assert t[0].item() == 1.0 and t[-1].item() == pytest.approx(0.1)
    assert bool((t > 0).all())


def test_expand_t_per_track_owns_channel_slices():
    like = torch.zeros(2, 6, 5)  # 3 tracks of 2 channels
    t = torch.tensor([[0.0, 0.5, 1.0], [0.1, 0.2, 0.3]])
    e = expand_t(t, like)
    assert e.shape == (2, 6, 1)
    assert e[0, :, 0].tolist() == [0.0, 0.0, 0.5, 0.5, 1.0, 1.0]
    assert expand_t(torch.tensor([0.3, 0.7]), like).shape == (2, 1, 1)


def test_noisy_v_target_and_estimates_roundtrip():
    g = torch.Generator().manual_seed(0)
    z0, eps = torch.randn(4, 6, 7, generator=g), torch.randn(4, 6, 7, generator=g)
    t = torch.rand(4, generator=g)
    zt, v = noisy(z0, eps, t), v_target(z0, eps, t)
    alpha, sigma = alpha_sigma(expand_t(t, z0))
    torch.testing.assert_close(zt, alpha * z0 + sigma * eps)
    torch.testing.assert_close(x0_from_v(zt, v, alpha, sigma), z0, atol=1e-5, rtol=0)
    torch.testing.assert_close(eps_from_v(zt, v, alpha, sigma), eps, atol=1e-5, rtol=0)


def test_noisy_with_track_time_zero_is_clean_on_that_track():
    g = torch.Generator().manual_seed(1)
    z0, eps = torch.randn(2, 6, 4, generator=g), torch.randn(2, 6, 4, generator=g)
    t = torch.tensor([[0.0, 0.6, 0.6], [0.4, 0.4, 0.0]])
    zt = noisy(z0, eps, t)
    assert torch.equal(zt[0, 0:2], z0[0, 0:2])
    assert torch.equal(zt[1, 4:6], z0[1, 4:6])
    assert not torch.allclose(zt[0, 2:], z0[0, 2:])
    v = v_target(z0, eps, t)
    assert torch.equal(v[0, 0:2], eps[0, 0:2]), "at t = 0, v = eps"


def test_sobol_sampler_range_floor_and_spread():
    s = SobolTimestepSampler(eps=0.02, seed=5)
    t = s(1024)
    assert t.shape == (1024,) and t.dtype == torch.float32
    assert t.min().item() >= torch.tensor(0.02).item() and t.max().item() < 1.0
    # Low-discrepancy: every tenth of [0, 1) gets close to 1/10 of the draws.
    counts = torch.histc(t, bins=10, min=0.0, max=1.0)
    assert (counts - 102.4).abs().max().item() <= 3
    floored = SobolTimestepSampler(eps=0.5, seed=5)(64)
    assert floored.min().item() == 0.5 and (floored == 0.5).sum().item() > 10


def test_sobol_sampler_seeded_and_continues_sequence():
    a, b = SobolTimestepSampler(seed=3), SobolTimestepSampler(seed=3)
    first, second = a(8), a(8)
    assert torch.equal(torch.cat([first, second]), b(16))
    assert not torch.equal(first, second), "successive batches must continue the sequence"
    assert not torch.equal(first, SobolTimestepSampler(seed=4)(8))


def test_sobol_sampler_resume_continues_exact_sequence():
    uninterrupted = SobolTimestepSampler(eps=0.02, seed=11)
    expected = [uninterrupted(7) for _ in range(5)]

    run = SobolTimestepSampler(eps=0.02, seed=11)
    before = [run(7) for _ in range(2)]
    buffer = io.BytesIO()
    torch.save({"sampler": run.state_dict()}, buffer)  # as inside a Lightning checkpoint
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)["sampler"]

    resumed = SobolTimestepSampler(eps=0.3, seed=999)  # different construction on purpose
    resumed.load_state_dict(state)
    after = [resumed(7) for _ in range(3)]
    for got, want in zip(before + after, expected):
        assert torch.equal(got, want)
    assert resumed.num_generated == uninterrupted.num_generated == 35
