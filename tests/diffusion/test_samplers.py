"""DDIM-v samplers: reference outputs of the original, and toy denoisers whose answer is known.

The toy denoisers are exact posterior means for simple data distributions (point mass,
element-wise Gaussian, and a three-track linear-Gaussian "mix = submix + src" model), computed
in float64 from the per-track times the sampler passes, so they also check that t is right.
"""

from __future__ import annotations

import math

import pytest
import torch

from mgeldm.diffusion.samplers import SAMPLERS, Known, SamplingSettings, ddim_noise_scale, ddim_v_step, recorrupt
from mgeldm.diffusion.schedule import T_MIN, alpha_sigma, noisy, sampling_times
from mgeldm.errors import OptionError

K = 3  # tracks in the toy problems (the model's track layout: mix, submix, src)


def sample_given_track(
    denoiser,
    noise,
    given_z,
    given_track,
    *,
    steps,
    num_tracks,
    t_min=T_MIN,
    overlap_z=None,
    disable_progress=True,
    sampler="ddim",
    **options,
):
    """Generation around the clean ``given_track`` (none: joint generation of every track) through the samplers'
    one signature, as windowing calls it; ``options``: eta, repaint_n, generator, callback."""
    known = Known(num_tracks, context=overlap_z, given_track=given_track, given_z=given_z)
    times = sampling_times(steps, t_min)
    return SAMPLERS[sampler](denoiser, noise, times, known, disable=disable_progress, **options)


def sample_joint(denoiser, noise, **kwargs):
    """Joint generation of every track: nothing given."""
    return sample_given_track(denoiser, noise, None, None, **kwargs)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _per_track(t: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """alpha, sigma (float64) broadcast to x's channels from per-track t (B, K)."""
    t = t.double().repeat_interleave(x.shape[1] // t.shape[1], dim=1)[..., None]
    return torch.cos(t * math.pi / 2), torch.sin(t * math.pi / 2)


def gaussian_denoiser(scale: float, mean: float = 0.0):
    """Exact v for data z0 ~ N(mean, scale^2) i.i.d. per element."""

    def denoiser(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, s = _per_track(t, x)
        xd = x.double()
        var = a**2 * scale**2 + s**2
        z0 = mean + a * scale**2 * (xd - a * mean) / var
        eps = s * (xd - a * mean) / var
        return (a * eps - s * z0).to(x.dtype)

    return denoiser


def point_mass_denoiser(target: torch.Tensor):
    """Exact v for data equal to ``target``; on a clean track (sigma = 0) eps is taken as 0."""

    def denoiser(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, s = _per_track(t, x)
        resid = x.double() - a * target[..., -x.shape[-1] :].double()
        eps = torch.where(s > 0, resid / s.clamp_min(1e-30), torch.zeros_like(resid))
        return (a * eps - s * target.double()).to(x.dtype)

    return denoiser


# mix = submix + src with submix, src independent N(mu_k, 1) per element: z0 = A s + m.
MIX_A = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
MIX_MU = torch.tensor([0.5, -1.0], dtype=torch.float64)


def mixture_denoiser(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Exact v for the linear-Gaussian three-track model (tracks coupled by mix = submix + src)."""
    b, kc, frames = x.shape
    a = torch.cos(t.double() * math.pi / 2)  # (B, K)
    s = torch.sin(t.double() * math.pi / 2)
    m = MIX_A @ MIX_MU  # (K,)
    cov_z = MIX_A @ MIX_A.T
    xs = x.double().reshape(b, K, -1)  # (B, K, C*T)
    cov_x = a[:, :, None] * cov_z * a[:, None, :] + torch.diag_embed(s**2)
    sol = torch.linalg.solve(cov_x, xs - a[..., None] * m[:, None])
    z0 = m[:, None] + cov_z @ (a[..., None] * sol)
    eps = s[..., None] * sol
    v = a[..., None] * eps - s[..., None] * z0
    return v.reshape(b, kc, frames).to(x.dtype)


class Recorder:
    """Wraps a denoiser and keeps a copy of every (x, t) it is called with."""

    def __init__(self, denoiser):
        self.denoiser, self.calls = denoiser, []

    def __call__(self, x, t):
        self.calls.append((x.clone(), t.clone()))
        return self.denoiser(x, t)


def _ddim_gain(scale: float, steps: int, t_min: float | None) -> torch.Tensor:
    """DDIM (eta 0) with an exact N(mu, scale^2) denoiser is x0 = mu + gain * noise: the product of
    the per-step gains (a' a s^2 + sigma' sigma) / (a^2 s^2 + sigma^2), then the posterior-mean
    gain a s^2 / (a^2 s^2 + sigma^2) at t_min. (Exact up to alpha(1) * mu ~ 4e-8 mu.)"""
    a, s = alpha_sigma(sampling_times(steps, t_min).double())
    gain = torch.ones((), dtype=torch.float64)
    for i in range(steps - 1):
        gain = gain * (a[i + 1] * a[i] * scale**2 + s[i + 1] * s[i]) / (a[i] ** 2 * scale**2 + s[i] ** 2)
    return gain * a[-1] * scale**2 / (a[-1] ** 2 * scale**2 + s[-1] ** 2)


def _ddpm_std(scale: float, steps: int, t_min: float | None) -> float:
    """Std of the eta = 1 sampler's x0 for N(mu, scale^2) data and an exact denoiser (all maps are
    linear, so the variance follows W' = g^2 W + sigma_eta^2 from W = 1 at t = 1)."""
    a, s = alpha_sigma(sampling_times(steps, t_min).double())
    var = lambda i: a[i] ** 2 * scale**2 + s[i] ** 2  # noqa: E731
    w = torch.ones((), dtype=torch.float64)
    for i in range(steps - 1):
        e = ddim_noise_scale(a[i], s[i], a[i + 1], s[i + 1], 1.0)
        g = (a[i + 1] * a[i] * scale**2 + (s[i + 1] ** 2 - e**2).sqrt() * s[i]) / var(i)
        w = g * g * w + e * e
    return float((a[-1] * scale**2 / var(steps - 1)) * w.sqrt())


# --------------------------------------------------------------------------------------------
# Reference outputs of the original (tiny DiT from the fixture set)
# --------------------------------------------------------------------------------------------

REFERENCE_CASES = [
    ("sample_total_gen", None),
    ("sample_given_mix", 0),
    ("sample_given_submix", 1),
    ("sample_given_src", 2),
]


@pytest.fixture(scope="module")
def tiny_dit(reference_fixtures):
    from mgeldm.checkpoints import load_weights, read_state_dict, strip_prefix
    from mgeldm.models.dit import build_dit

    path = reference_fixtures.path("tiny_mgeldm.ckpt")
    dit = build_dit(reference_fixtures.readme["mgeldm"])
    load_weights(dit, strip_prefix(read_state_dict(path), "model_dit."), what="tiny DiT", path=path)
    return dit.eval()


@pytest.mark.reference
@pytest.mark.parametrize("case,given_track", REFERENCE_CASES)
def test_matches_original_sampler(reference_fixtures, ref_close, tiny_dit, case, given_track):
    readme, cases = reference_fixtures.readme, reference_fixtures.cases
    sp = readme["sampler"]
    num_tracks = readme["mgeldm"]["num_tracks"]

    def denoiser(x, t):
        return tiny_dit(x, t, global_embed=cases["dit_cond"], cfg_scale=sp["cfg_scale"])

    noise = cases["sample_noise"].clone()
    kwargs = dict(
        steps=sp["steps"],
        num_tracks=num_tracks,
        eta=sp["eta"],
        t_min=sp["t_min"],
        repaint_n=sp["repaint_n"],
        generator=_gen(0),
    )
    with torch.no_grad():
        if given_track is None:
            out = sample_joint(denoiser, noise, **kwargs)
        else:
            out = sample_given_track(denoiser, noise, cases["given_z"], given_track, **kwargs)
    assert torch.equal(noise, cases["sample_noise"]), "the sampler must not modify its noise input"
    ref_close(out, cases[case], case)


# --------------------------------------------------------------------------------------------
# The DDIM step and RePaint re-corruption on their own
# --------------------------------------------------------------------------------------------


def test_ddim_step_with_exact_v_lands_on_next_level():
    g = _gen(0)
    z0, eps = torch.randn(2, 6, 50, generator=g), torch.randn(2, 6, 50, generator=g)
    (a, a_next), (s, s_next) = alpha_sigma(torch.tensor([0.8, 0.55]))
    x, v = a * z0 + s * eps, a * eps - s * z0
    x_next, x0 = ddim_v_step(x, v, a, s, a_next, s_next, eta=0.0)
    torch.testing.assert_close(x0, z0, atol=1e-5, rtol=0)
    torch.testing.assert_close(x_next, a_next * z0 + s_next * eps, atol=1e-5, rtol=0)


def test_ddim_eta_one_noise_is_ddpm_posterior_std():
    (a, a_next), (s, s_next) = alpha_sigma(torch.tensor([0.7, 0.6], dtype=torch.float64))
    # DDPM posterior q(x_t' | x_t, x0): variance sigma'^2 (1 - (a sigma')^2 / (a' sigma)^2).
    posterior_var = s_next**2 * (1 - (a * s_next) ** 2 / (a_next * s) ** 2)
    torch.testing.assert_close(ddim_noise_scale(a, s, a_next, s_next, 1.0) ** 2, posterior_var)
    assert ddim_noise_scale(a, s, a_next, s_next, 0.0).item() == 0.0


def test_ddim_eta_keeps_marginal_variance():
    """With exact v, x_next - a' z0 = sqrt(s'^2 - s_eta^2) eps + s_eta n has variance s'^2."""
    g = _gen(1)
    z0, eps = torch.randn(200_000, generator=g) * 2, torch.randn(200_000, generator=g)
    (a, a_next), (s, s_next) = alpha_sigma(torch.tensor([0.9, 0.7]))
    x, v = a * z0 + s * eps, a * eps - s * z0
    x_next, _ = ddim_v_step(x, v, a, s, a_next, s_next, eta=1.0, generator=_gen(2))
    resid = x_next - a_next * z0
    assert resid.var().item() == pytest.approx(s_next.item() ** 2, rel=0.02)
    # The fresh noise is really there: the residual is not just a multiple of eps.
    corr = torch.corrcoef(torch.stack([resid, eps]))[0, 1].item()
    assert corr < 0.95


@pytest.mark.parametrize("t_from,t_to", [(1.0, 0.86), (0.58, 0.44), (0.16, 0.02)])
def test_recorruption_preserves_variance(t_from, t_to):
    """RePaint's r = a/a' maps the level-t' marginal to the level-t marginal (var and cov with z0)."""
    g = _gen(3)
    data_std = 2.0
    z0 = torch.randn(400_000, generator=g) * data_std
    (a, a_next), (s, s_next) = alpha_sigma(torch.tensor([t_from, t_to]))
    x_next = noisy(z0, torch.randn(400_000, generator=g), t_to)
    x = recorrupt(x_next, a, a_next, generator=_gen(4))
    want_var = a.item() ** 2 * data_std**2 + s.item() ** 2
    assert x.var().item() == pytest.approx(want_var, rel=0.01)
    cov = ((x - x.mean()) * (z0 - z0.mean())).mean().item()
    assert cov == pytest.approx(a.item() * data_std**2, abs=0.02)


# --------------------------------------------------------------------------------------------
# Exact denoisers: the sampler must return the right x0
# --------------------------------------------------------------------------------------------


def test_point_mass_data_is_recovered_exactly():
    target = torch.randn(2, K * 4, 9, generator=_gen(5))
    noise = torch.randn(2, K * 4, 9, generator=_gen(6))
    out = sample_joint(point_mass_denoiser(target), noise, steps=6, num_tracks=K)
    torch.testing.assert_close(out, target, atol=1e-5, rtol=0)


@pytest.mark.parametrize("steps,t_min", [(8, 0.02), (25, 0.02), (10, None)])
def test_gaussian_data_matches_closed_form_ddim(steps, t_min):
    """For N(0, s^2) data DDIM is a known linear map of the noise; any wrong alpha/sigma index,
    schedule or t shows up here."""
    scale = 1.7
    noise = torch.randn(2, K * 4, 16, generator=_gen(7))
    out = sample_joint(gaussian_denoiser(scale), noise, steps=steps, num_tracks=K, t_min=t_min)
    torch.testing.assert_close(out.double(), noise.double() * _ddim_gain(scale, steps, t_min), atol=2e-5, rtol=1e-5)


def test_eta_zero_is_deterministic_and_draws_nothing():
    noise = torch.randn(2, K * 4, 16, generator=_gen(8))
    den = gaussian_denoiser(1.3)
    g = _gen(9)
    state = g.get_state()
    first = sample_joint(den, noise, steps=5, num_tracks=K, generator=g)
    assert torch.equal(g.get_state(), state), "eta = 0 without overlap must draw no noise"
    second = sample_joint(den, noise, steps=5, num_tracks=K, generator=_gen(123))
    assert torch.equal(first, second)


def test_eta_one_samples_gaussian_distribution():
    scale, mean = 2.0, 0.5
    noise = torch.randn(8, K * 8, 250, generator=_gen(10))
    out = sample_joint(gaussian_denoiser(scale, mean), noise, steps=60, num_tracks=K, eta=1.0, generator=_gen(11))
    assert out.mean().item() == pytest.approx(mean, abs=0.03)
    # The finite-step law: a little narrower than the data (1.93 vs 2 at 60 steps), not the eta = 0 one.
    assert out.std().item() == pytest.approx(_ddpm_std(scale, 60, 0.02), rel=0.01)
    # Not the eta = 0 answer: the stochastic path really runs.
    assert not torch.allclose(out, sample_joint(gaussian_denoiser(scale, mean), noise, steps=60, num_tracks=K))


def _tracks(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    c = z.shape[1] // K
    return z[:, :c].double(), z[:, c : 2 * c].double(), z[:, 2 * c :].double()


def test_given_mix_extraction_is_exact():
    """Mix given (t = 0): submix + src must equal the mix, and w = (submix - src)/sqrt(2), whose law
    given the mix is N((mu_sub - mu_src)/sqrt(2), 1), is 1-D Gaussian DDIM of the noise's w."""
    b, c, frames, steps = 2, 4, 32, 12
    g = _gen(12)
    s = torch.randn(b, 2, c * frames, generator=g, dtype=torch.float64) + MIX_MU[None, :, None]
    mix = (s[:, 0] + s[:, 1]).reshape(b, c, frames).float()
    noise = torch.randn(b, K * c, frames, generator=g)
    out = sample_given_track(mixture_denoiser, noise, mix, 0, steps=steps, num_tracks=K)
    assert torch.equal(out[:, :c], mix)
    _, sub, src = _tracks(out)
    _, n_sub, n_src = _tracks(noise)
    torch.testing.assert_close(sub + src, mix.double(), atol=2e-5, rtol=0)
    mu_w = float(MIX_MU[0] - MIX_MU[1]) / math.sqrt(2)
    want_w = mu_w + _ddim_gain(1.0, steps, 0.02) * (n_sub - n_src) / math.sqrt(2)
    torch.testing.assert_close((sub - src) / math.sqrt(2), want_w, atol=2e-5, rtol=0)


def test_given_src_accompaniment_is_consistent():
    b, c, frames = 2, 4, 64
    src = torch.randn(b, c, frames, generator=_gen(13)) + float(MIX_MU[1])
    noise = torch.randn(b, K * c, frames, generator=_gen(14))
    out = sample_given_track(mixture_denoiser, noise, src, 2, steps=12, num_tracks=K)
    assert torch.equal(out[:, 2 * c :], src)
    torch.testing.assert_close(out[:, :c] - out[:, c : 2 * c], src, atol=2e-4, rtol=0)


def test_joint_samples_follow_the_three_track_law():
    """Joint generation with one shared t decouples along the eigenvectors of the tracks'
    covariance (variances 3, 1, 0): each projection is 1-D Gaussian DDIM of the noise's."""
    b, c, frames, steps = 2, 4, 32, 10
    noise = torch.randn(b, K * c, frames, generator=_gen(15))
    out = sample_joint(mixture_denoiser, noise, steps=steps, num_tracks=K)
    m = (MIX_A @ MIX_MU).tolist()
    directions = [([2.0, 1.0, 1.0], 3.0), ([0.0, 1.0, -1.0], 1.0), ([1.0, -1.0, -1.0], 0.0)]
    for u, var in directions:
        u = torch.tensor(u, dtype=torch.float64) / math.sqrt(sum(x * x for x in u))
        proj = lambda z: sum(w * tr for w, tr in zip(u.tolist(), z))  # noqa: E731
        want = proj(m) + _ddim_gain(math.sqrt(var), steps, 0.02) * proj(_tracks(noise))
        torch.testing.assert_close(proj(_tracks(out)), want, atol=2e-5, rtol=0)
    mix, sub, src = _tracks(out)
    torch.testing.assert_close(mix, sub + src, atol=2e-5, rtol=0)


# --------------------------------------------------------------------------------------------
# Given track, per-track t, call counts
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("given_track", [0, 1, 2])
def test_given_track_clamped_before_every_call_with_zero_time(given_track):
    c, steps, repaint_n = 3, 5, 2
    noise = torch.randn(2, K * c, 10, generator=_gen(16))
    given = torch.randn(2, c, 10, generator=_gen(17))
    rows = slice(c * given_track, c * (given_track + 1))
    rec = Recorder(gaussian_denoiser(1.0))
    out = sample_given_track(
        rec, noise, given, given_track, steps=steps, num_tracks=K, repaint_n=repaint_n, generator=_gen(18)
    )
    assert torch.equal(out[:, rows], given), "given track must be returned unchanged"
    times = sampling_times(steps, 0.02)
    step_of_call = [i for i in range(steps - 1) for _ in range(repaint_n)] + [steps - 1]
    assert len(rec.calls) == len(step_of_call)
    others = [k for k in range(K) if k != given_track]
    for (x, t), i in zip(rec.calls, step_of_call):
        assert t.shape == (2, K)
        assert torch.equal(x[:, rows], given)
        assert bool((t[:, given_track] == 0).all())
        assert bool((t[:, others] == times[i]).all())


def test_joint_passes_shared_time_to_all_tracks():
    rec = Recorder(gaussian_denoiser(1.0))
    sample_joint(rec, torch.randn(3, K * 2, 5, generator=_gen(19)), steps=4, num_tracks=K)
    times = sampling_times(4, 0.02)
    assert [t.shape for _, t in rec.calls] == [(3, K)] * 4
    for (_, t), ti in zip(rec.calls, times):
        assert bool((t == ti).all())


@pytest.mark.parametrize("steps,repaint_n", [(1, 3), (4, 1), (4, 3), (7, 2)])
def test_number_of_denoiser_calls(steps, repaint_n):
    """(steps - 1) * repaint_n + 1: the last step's repeats would feed the same x again."""
    c = 2
    overlap = torch.randn(1, K * c, 3, generator=_gen(20))
    noise = torch.randn(1, K * c, 5, generator=_gen(21))
    joint, given = Recorder(gaussian_denoiser(1.0)), Recorder(gaussian_denoiser(1.0))
    sample_joint(joint, noise, steps=steps, num_tracks=K, repaint_n=repaint_n, overlap_z=overlap, generator=_gen(0))
    sample_given_track(given, noise, noise[:, :c], 0, steps=steps, num_tracks=K, repaint_n=repaint_n, generator=_gen(0))
    assert len(joint.calls) == len(given.calls) == (steps - 1) * repaint_n + 1


def test_joint_without_overlap_rejects_repaint():
    """RePaint only harmonises what is known: windowing never asks for it on a window that knows nothing."""
    with pytest.raises(AssertionError, match="RePaint"):
        sample_joint(gaussian_denoiser(1.0), torch.zeros(1, K, 4), steps=3, num_tracks=K, repaint_n=2)


# --------------------------------------------------------------------------------------------
# Outpainting (overlap_z) and randomness
# --------------------------------------------------------------------------------------------


def test_overlap_region_is_renoised_each_step_and_kept():
    c, t1, t2, steps = 4, 50, 30, 8
    overlap = torch.randn(4, K * c, t1, generator=_gen(22))
    noise = torch.randn(4, K * c, t2, generator=_gen(23))
    rec = Recorder(gaussian_denoiser(1.0))
    out = sample_joint(rec, noise, steps=steps, num_tracks=K, overlap_z=overlap, repaint_n=1, generator=_gen(24))
    assert out.shape == (4, K * c, t1 + t2)
    alphas, sigmas = alpha_sigma(sampling_times(steps, 0.02))
    for i, (x, _) in enumerate(rec.calls):
        if i == 0:
            continue  # the first call sees fresh noise
        # The overlap the model sees is overlap_z at this step's level plus fresh unit noise.
        resid = (x[..., :t1] - alphas[i] * overlap) / sigmas[i]
        assert resid.mean().abs().item() < 0.05
        assert resid.std().item() == pytest.approx(1.0, rel=0.06)
    # With an exact denoiser the overlap part of the result is overlap_z (up to t_min's noise).
    err = (out[..., :t1] - overlap).abs()
    assert err.mean().item() < 0.04 and err.max().item() < 0.2
    # Element-wise data: the generated part is plain DDIM of its noise, untouched by the overlap.
    torch.testing.assert_close(out[..., t1:].double(), noise.double() * _ddim_gain(1.0, steps, 0.02), atol=2e-5, rtol=0)


def test_given_track_with_overlap_uses_overlap_then_given():
    c, t1, t2 = 2, 4, 6
    overlap = torch.randn(2, K * c, t1, generator=_gen(25))
    noise = torch.randn(2, K * c, t2, generator=_gen(26))
    given = torch.randn(2, c, t2, generator=_gen(27))
    rec = Recorder(gaussian_denoiser(1.0))
    out = sample_given_track(
        rec, noise, given, 1, steps=4, num_tracks=K, overlap_z=overlap, repaint_n=2, generator=_gen(28)
    )
    clean = torch.cat([overlap[:, c : 2 * c], given], dim=-1)
    assert out.shape == (2, K * c, t1 + t2)
    assert torch.equal(out[:, c : 2 * c], clean)
    for x, t in rec.calls:
        assert torch.equal(x[:, c : 2 * c], clean)
        assert bool((t[:, 1] == 0).all())


def _stochastic_runs(seed: int) -> list[torch.Tensor]:
    c = 3
    overlap = torch.randn(2, K * c, 4, generator=_gen(30))
    noise = torch.randn(2, K * c, 6, generator=_gen(31))
    den = gaussian_denoiser(1.2, 0.3)
    common = dict(steps=5, num_tracks=K, generator=_gen(seed))
    return [
        sample_joint(den, noise, eta=0.7, **common),
        sample_joint(den, noise, overlap_z=overlap, repaint_n=3, **common),
        sample_given_track(den, noise, noise[:, :c], 0, repaint_n=2, **common),  # repaint without overlap
        sample_given_track(den, noise, noise[:, :c], 2, eta=1.0, overlap_z=overlap, repaint_n=2, **common),
    ]


def test_seeded_stochastic_runs_reproduce_and_differ_across_seeds():
    global_state = torch.random.get_rng_state()
    first, again, other = _stochastic_runs(1), _stochastic_runs(1), _stochastic_runs(2)
    assert torch.equal(torch.random.get_rng_state(), global_state), "all randomness must use the generator"
    for k, (a, b, o) in enumerate(zip(first, again, other)):
        assert torch.equal(a, b), f"run {k} is not reproducible"
        assert not torch.allclose(a, o), f"run {k} does not depend on the seed"


def test_noise_input_not_modified_and_callback_sees_every_call():
    noise = torch.randn(1, K * 2, 5, generator=_gen(32))
    keep = noise.clone()
    seen = []
    sample_given_track(
        gaussian_denoiser(1.0),
        noise,
        torch.zeros(1, 2, 5),
        0,
        steps=3,
        num_tracks=K,
        repaint_n=2,
        generator=_gen(0),
        callback=seen.append,
    )
    assert torch.equal(noise, keep)
    assert [(d["i"], d["j"]) for d in seen] == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)]
    assert all(set(d) >= {"i", "t", "x", "x0"} for d in seen)


def test_progress_bar_runs():
    out = sample_joint(
        gaussian_denoiser(1.0), torch.randn(1, K, 4, generator=_gen(33)), steps=3, num_tracks=K, disable_progress=False
    )
    assert out.shape == (1, K, 4)


# --------------------------------------------------------------------------------------------
# The ODE solvers (DPM-Solver++(2M), Heun): order, given track, overlap, seeds, refusals
# --------------------------------------------------------------------------------------------

FAST = ["dpmpp_2m", "heun"]


def _exact_gaussian_ode(noise: torch.Tensor, scale: float, mean: float, t_min: float = 0.02) -> torch.Tensor:
    """The probability-flow ODE for N(mean, scale^2) data keeps x's standardised value, so from x(1) = noise
    it is x(t) = a mean + sqrt(a^2 scale^2 + s^2) noise; the x0 estimate at t_min is then
    mean + a scale^2 noise / sqrt(a^2 scale^2 + s^2)."""
    a, s = (v.double() for v in alpha_sigma(torch.tensor(t_min)))
    return mean + a * scale**2 * noise.double() / torch.sqrt(a**2 * scale**2 + s**2)


@pytest.mark.parametrize(
    "sampler,order,low,high", [("ddim", 1, 0.9, 1.1), ("dpmpp_2m", 2, 1.7, 2.3), ("heun", 2, 1.85, 2.15)]
)
def test_order_of_convergence_on_gaussian_data(sampler, order, low, high):
    """Halving the step (steps - 1 intervals doubled) divides the error by about 2^order.

    DPM-Solver++(2M) comes out at about 1.8 here: its steps in lambda = log(alpha / sigma) do not
    shrink near t = 1 (lambda -> -inf), which adds a h^2 log(1/h) term; the ratio still tends to 4."""
    scale, mean = 2.0, 0.5
    noise = torch.randn(2, K * 4, 16, generator=_gen(40), dtype=torch.float64)
    exact = _exact_gaussian_ode(noise, scale, mean)
    errors = [
        (sample_joint(gaussian_denoiser(scale, mean), noise, steps=n, num_tracks=K, sampler=sampler) - exact)
        .abs()
        .max()
        .item()
        for n in (321, 641)
    ]
    measured = math.log2(errors[0] / errors[1])
    assert low <= measured <= high, f"{sampler}: errors {errors}, order {measured:.2f}, expected about {order}"


@pytest.mark.parametrize("sampler", FAST)
def test_fast_samplers_beat_ddim_at_equal_model_calls(sampler):
    from mgeldm.diffusion.samplers import denoiser_calls

    scale, mean = 2.0, 0.5
    noise = torch.randn(2, K * 4, 16, generator=_gen(41), dtype=torch.float64)
    exact = _exact_gaussian_ode(noise, scale, mean)
    steps = 6
    calls = denoiser_calls(sampler, steps)
    rec = Recorder(gaussian_denoiser(scale, mean))
    fast = sample_joint(rec, noise, steps=steps, num_tracks=K, sampler=sampler)
    ddim = sample_joint(gaussian_denoiser(scale, mean), noise, steps=calls, num_tracks=K)
    assert len(rec.calls) == calls
    assert (fast - exact).abs().max() < 0.7 * (ddim - exact).abs().max()


@pytest.mark.parametrize("sampler", FAST)
def test_fast_samplers_extract_from_a_given_mix(sampler):
    """Mix given: submix + src equals the mix, and w = (submix - src)/sqrt(2) (1-D N(mu_w, 1) given the mix)
    converges to its exact ODE solution mu_w + alpha(t_min) w_noise."""
    b, c, frames = 2, 4, 32
    g = _gen(42)
    s = torch.randn(b, 2, c * frames, generator=g, dtype=torch.float64) + MIX_MU[None, :, None]
    mix = (s[:, 0] + s[:, 1]).reshape(b, c, frames).float()
    noise = torch.randn(b, K * c, frames, generator=g)
    _, n_sub, n_src = _tracks(noise)
    mu_w = float(MIX_MU[0] - MIX_MU[1]) / math.sqrt(2)
    exact_w = _exact_gaussian_ode((n_sub - n_src) / math.sqrt(2), 1.0, mu_w)
    err = {}
    for name, steps in ((sampler, 41), ("ddim", 41)):
        out = sample_given_track(mixture_denoiser, noise, mix, 0, steps=steps, num_tracks=K, sampler=name)
        assert torch.equal(out[:, :c], mix)
        _, sub, src = _tracks(out)
        torch.testing.assert_close(sub + src, mix.double(), atol=2e-5, rtol=0)
        err[name] = ((sub - src) / math.sqrt(2) - exact_w).abs().max().item()
    assert err[sampler] < 0.2 * err["ddim"], err


@pytest.mark.parametrize("sampler", FAST)
@pytest.mark.parametrize("given_track", [0, 2])
def test_fast_samplers_reset_the_given_track_before_every_call(sampler, given_track):
    from mgeldm.diffusion.samplers import denoiser_calls

    c, steps = 3, 5
    noise = torch.randn(2, K * c, 10, generator=_gen(43))
    given = torch.randn(2, c, 10, generator=_gen(44))
    rows = slice(c * given_track, c * (given_track + 1))
    rec = Recorder(gaussian_denoiser(1.3))
    out = sample_given_track(rec, noise, given, given_track, steps=steps, num_tracks=K, sampler=sampler)
    assert torch.equal(out[:, rows], given), "given track must be returned unchanged"
    times = sampling_times(steps, 0.02)
    # DPM-Solver++(2M) calls once per step; Heun at t_i and t_{i+1} for each update, then at t_min.
    step_of_call = (
        list(range(steps)) if sampler == "dpmpp_2m" else [k for i in range(steps - 1) for k in (i, i + 1)] + [steps - 1]
    )
    assert len(rec.calls) == len(step_of_call) == denoiser_calls(sampler, steps)
    others = [k for k in range(K) if k != given_track]
    for (x, t), i in zip(rec.calls, step_of_call):
        assert torch.equal(x[:, rows], given)
        assert bool((t[:, given_track] == 0).all())
        assert bool((t[:, others] == times[i]).all())


@pytest.mark.parametrize("sampler", FAST)
def test_fast_samplers_renoise_the_overlap_each_update(sampler):
    c, t1, t2, steps = 4, 50, 30, 8
    overlap = torch.randn(4, K * c, t1, generator=_gen(45))
    noise = torch.randn(4, K * c, t2, generator=_gen(46))
    rec = Recorder(gaussian_denoiser(1.0))
    out = sample_joint(rec, noise, steps=steps, num_tracks=K, overlap_z=overlap, generator=_gen(47), sampler=sampler)
    assert out.shape == (4, K * c, t1 + t2)
    alphas, sigmas = alpha_sigma(sampling_times(steps, 0.02))
    step_of_call = (
        list(range(steps)) if sampler == "dpmpp_2m" else [k for i in range(steps - 1) for k in (i, i + 1)] + [steps - 1]
    )
    for (x, t), i in list(zip(rec.calls, step_of_call))[1:]:  # the first call sees fresh noise
        assert bool((t == sampling_times(steps, 0.02)[i]).all())
        resid = (x[..., :t1] - alphas[i] * overlap) / sigmas[i]
        assert resid.mean().abs().item() < 0.05
        assert resid.std().item() == pytest.approx(1.0, rel=0.06)
    err = (out[..., :t1] - overlap).abs()
    assert err.mean().item() < 0.04 and err.max().item() < 0.2
    # Element-wise data: the generated frames are those of the same sampler without an overlap.
    alone = sample_joint(gaussian_denoiser(1.0), noise, steps=steps, num_tracks=K, sampler=sampler)
    torch.testing.assert_close(out[..., t1:], alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize("sampler", FAST)
def test_fast_samplers_seeds_reproduce(sampler):
    c = 3
    overlap = torch.randn(2, K * c, 4, generator=_gen(48))
    noise = torch.randn(2, K * c, 6, generator=_gen(49))
    den = gaussian_denoiser(1.2, 0.3)

    def run(seed):
        return sample_given_track(
            den, noise, noise[:, :c], 1, steps=5, num_tracks=K, overlap_z=overlap, generator=_gen(seed), sampler=sampler
        )

    global_state = torch.random.get_rng_state()
    first, again, other = run(1), run(1), run(2)
    assert torch.equal(torch.random.get_rng_state(), global_state), "all randomness must use the generator"
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)
    g = _gen(3)
    state = g.get_state()
    sample_joint(den, noise, steps=5, num_tracks=K, generator=g, sampler=sampler)
    assert torch.equal(g.get_state(), state), "without an overlap the ODE solvers draw nothing"


@pytest.mark.parametrize("sampler", ["ddim", *FAST])
def test_one_generator_per_block_of_rows_draws_what_each_block_draws_alone(sampler):
    c = 2
    overlap = torch.randn(4, K * c, 3, generator=_gen(50))
    noise = torch.randn(4, K * c, 5, generator=_gen(51))
    den = gaussian_denoiser(1.1)
    kw = dict(steps=4, num_tracks=K, sampler=sampler)
    both = sample_joint(den, noise, overlap_z=overlap, generator=[_gen(7), _gen(8)], **kw)
    first = sample_joint(den, noise[:2], overlap_z=overlap[:2], generator=_gen(7), **kw)
    second = sample_joint(den, noise[2:], overlap_z=overlap[2:], generator=_gen(8), **kw)
    torch.testing.assert_close(both, torch.cat([first, second]), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="3 generators"):
        sample_joint(den, noise, overlap_z=overlap, generator=[_gen(1), _gen(2), _gen(3)], **kw)


@pytest.mark.parametrize("sampler", FAST)
def test_fast_samplers_refuse_repaint_and_eta(sampler):
    """The settings refuse RePaint and eta > 0 for the ODE solvers (where a user's value enters); the solvers
    themselves assert it."""
    with pytest.raises(OptionError, match="repaint_n=2.*ddim"):
        SamplingSettings(3, 1.0, 0.0, repaint_n=2, sampler=sampler).check()
    with pytest.raises(OptionError, match="eta=0.5.*ddim"):
        SamplingSettings(3, 1.0, 0.0, eta=0.5, sampler=sampler).check()
    den, noise = gaussian_denoiser(1.0), torch.zeros(1, K * 2, 4)
    with pytest.raises(AssertionError):
        sample_joint(den, noise, steps=3, num_tracks=K, eta=0.5, sampler=sampler)


def test_unknown_sampler_is_refused():
    with pytest.raises(OptionError, match="sampler=euler: expected one of ddim, dpmpp_2m, heun"):
        SamplingSettings(3, 1.0, 0.0, sampler="euler").check()


@pytest.mark.parametrize(
    "field,value,expected",
    [
        ("steps", 0, "steps=0: expected an integer >= 1"),
        ("steps", 2.5, "steps=2.5: expected an integer >= 1"),
        ("repaint_n", True, "repaint_n=True: expected an integer >= 1"),
        ("cfg_scale", float("nan"), "cfg_scale=nan: expected a finite number"),
        ("overlap", -1.0, "overlap=-1.0: expected a number of seconds >= 0"),
        ("eta", -0.1, "eta=-0.1: expected a number >= 0"),
    ],
)
def test_settings_refuse_each_bad_value_naming_it(field, value, expected):
    from dataclasses import replace

    with pytest.raises(OptionError) as err:
        replace(SamplingSettings(3, 1.0, 0.0), **{field: value}).check()
    assert str(err.value) == expected


def test_checked_settings_are_plain_numbers_and_the_same_object_when_already_plain():
    s = SamplingSettings(4.0, 2, 0, repaint_n=2, eta=0)
    checked = s.check()
    assert (checked.steps, checked.cfg_scale, checked.overlap, checked.eta) == (4, 2.0, 0.0, 0.0)
    assert [type(v) for v in (checked.steps, checked.cfg_scale, checked.overlap, checked.eta)] == [
        int,
        float,
        float,
        float,
    ]
    assert checked.check() is checked
