"""Samplers for the v-objective DiT, one function each, all with one signature (k-diffusion's shape):

    sample_<name>(denoiser, x, times, known, *, eta=0.0, repaint_n=1, generator=None, callback=None, disable=True)

* ``denoiser(x, t) -> v``: x (B, K*C, T), t (B, K) per-track diffusion time;
* ``x``: the starting noise of the frames to generate (not modified);
* ``times``: the sampling times from 1 down (:func:`mgeldm.diffusion.schedule.sampling_times`);
* ``known``: what the window knows before sampling (:class:`Known`): the number of tracks, a clean given
  track (reset before every denoiser call, its time 0) and context frames from an earlier window (re-noised
  to every level with fresh noise: time-axis outpainting). Windowing (:mod:`mgeldm.diffusion.windows`) builds it;
* ``eta`` (DDIM noise) and ``repaint_n`` (RePaint repeats per step) run only with DDIM; the two ODE solvers are
  deterministic (:meth:`SamplingSettings.check` refuses other values for them);
* ``generator``: a ``torch.Generator`` for every random draw, or one per equal block of rows (a batch of several
  songs then draws for each song exactly what that song draws alone); None falls back to torch's global one;
* ``callback``: called after every denoiser call with ``dict(i, j, t, x, x0)``; ``disable``: no progress bar.

Each returns the x0 estimate of the whole window (context frames first) at the last time, its given channels
the clean latent. Random draws, in this order within an update: DDIM's noise when eta > 0, the fresh noise that
re-noises the context, the RePaint re-corruption noise; with eta = 0, no context and ``repaint_n = 1`` nothing is
drawn. :data:`SAMPLERS` names them; :class:`SamplingSettings` is the one value that carries a user's sampling
choices from the command line or the API to these loops.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import astuple, dataclass, replace
from typing import Any

import torch
from torch import Tensor

from mgeldm import checks
from mgeldm.errors import OptionError
from mgeldm.progress import progress_bar

from .schedule import T_MIN, alpha_sigma, eps_from_v, x0_from_v

Denoiser = Callable[[Tensor, Tensor], Tensor]
"""``denoiser(x (B, K*C, T), t (B, K)) -> v (B, K*C, T)``."""

Callback = Callable[[dict[str, Any]], None]
"""Called after every denoiser call with ``dict(i, j, t, x, x0)`` (step, repaint iteration, diffusion time, the
model input and its x0 estimate). Heun's second call of an update, at the next step's time, comes with that
step's i and j = 1."""

Generators = torch.Generator | Sequence[torch.Generator] | None
"""One generator for the whole batch, or one per equal block of rows."""


@dataclass(frozen=True)
class SamplingSettings:
    """A user's sampling choices for one task call: steps, classifier-free guidance scale, window overlap in
    seconds, RePaint repeats, DDIM noise, the last sampling time and the sampler (the original's command line
    calls them +num_steps, +cfg_scale, +overlap_dur, +repaint_n, +eta). :meth:`check` is where each of them is
    checked, once."""

    steps: int
    cfg_scale: float
    overlap: float
    repaint_n: int = 1
    eta: float = 0.0
    t_min: float = T_MIN
    sampler: str = "ddim"

    def check(self) -> SamplingSettings:
        """These settings with plain int / float values (``self`` when they are already so), or an
        :class:`mgeldm.errors.OptionError` naming the
        parameter that is wrong."""
        out = replace(
            self,
            steps=checks.count("steps", self.steps),
            repaint_n=checks.count("repaint_n", self.repaint_n),
            cfg_scale=checks.number("cfg_scale", self.cfg_scale),
            overlap=checks.number("overlap", self.overlap, 0.0, "a number of seconds"),
            eta=checks.number("eta", self.eta, 0.0),
            sampler=checks.choice("sampler", self.sampler, SAMPLERS),
        )
        if out.sampler != "ddim" and out.repaint_n != 1:
            raise OptionError(
                "repaint_n",
                f"RePaint re-corruption runs only with sampler=ddim; use repaint_n=1 with sampler={out.sampler}",
                out.repaint_n,
            )
        if out.sampler != "ddim" and out.eta != 0:
            raise OptionError(
                "eta",
                f"stochastic sampling runs only with sampler=ddim; sampler={out.sampler} solves the ODE (eta=0)",
                self.eta,
            )
        same = [(type(v), v) for v in astuple(out)] == [(type(v), v) for v in astuple(self)]
        return self if same else out


def denoiser_calls(sampler: str, steps: int, repaint_n: int = 1) -> int:
    """Denoiser calls of one window: DDIM and DPM-Solver++(2M) call once per step (DDIM repeats each but the
    last step ``repaint_n`` times), Heun twice per update plus once at the end."""
    if sampler == "heun":
        return 2 * (steps - 1) + 1
    return (steps - 1) * repaint_n + 1


def _randn(like: Tensor, generator: Generators) -> Tensor:
    """Standard normal noise shaped like ``like``, drawn on the generator's device (one block per generator)."""
    if isinstance(generator, Sequence):
        if like.shape[0] % len(generator):
            raise ValueError(f"{len(generator)} generators cannot split a batch of {like.shape[0]} rows")
        rows = like.shape[0] // len(generator)
        return torch.cat([_randn(part, g) for part, g in zip(like.split(rows), generator)])
    device = generator.device if generator is not None else like.device
    noise = torch.randn(like.shape, generator=generator, device=device, dtype=torch.float32)
    return noise.to(device=like.device, dtype=like.dtype)


class Known:
    """What a window knows before it is sampled.

    ``num_tracks`` K: x holds K tracks of C channels, track k owning rows ``[k C, (k+1) C)``.
    ``context`` (B, K*C, T1): the window's first T1 frames, from an earlier window; they start from fresh noise
    and after every update are replaced by ``context`` re-noised to the next level with fresh noise.
    ``given_track`` with ``given_z`` (B, C, T2): a clean track of the T2 new frames (the context's part of that
    track covers the first T1); it is reset before every denoiser call, with time 0.
    """

    def __init__(
        self,
        num_tracks: int,
        *,
        context: Tensor | None = None,
        given_track: int | None = None,
        given_z: Tensor | None = None,
    ) -> None:
        self.num_tracks, self.context = num_tracks, context
        self.width = 0 if context is None else context.shape[-1]
        self.track, self.clean, self.rows = given_track, None, slice(0, 0)
        if given_z is not None:
            channels = given_z.shape[1]
            self.rows = slice(channels * given_track, channels * (given_track + 1))
            self.clean = given_z if context is None else torch.cat([context[:, self.rows], given_z], dim=-1)

    def start(self, noise: Tensor, generator: Generators) -> Tensor:
        """The first x: fresh noise for the context frames, then ``noise``."""
        if self.context is None:
            return noise.clone()
        return torch.cat([_randn(self.context, generator), noise], dim=-1)

    def v(self, denoiser: Denoiser, x: Tensor, t: Tensor) -> Tensor:
        """The denoiser at time ``t`` (a scalar); first resets the given track of ``x`` (in place)."""
        times = torch.full((x.shape[0], self.num_tracks), float(t), dtype=torch.float32, device=x.device)
        if self.clean is not None:
            times[:, self.track] = 0.0
            x[:, self.rows] = self.clean
        return denoiser(x, times).to(x.dtype)

    def renoised(self, alpha: Tensor, sigma: Tensor, generator: Generators) -> Tensor | None:
        """The context at level (alpha, sigma) with fresh noise (None without context)."""
        if self.context is None:
            return None
        return self.context * alpha + _randn(self.context, generator) * sigma

    def put(self, x: Tensor, renoised: Tensor | None) -> Tensor:
        """``x`` with its context frames replaced by ``renoised`` (in place)."""
        if renoised is not None:
            x[..., : self.width] = renoised
        return x

    def finish(self, x0: Tensor) -> Tensor:
        """The returned x0: its given channels are the clean latent."""
        if self.clean is None:
            return x0
        x0 = x0.clone()
        x0[:, self.rows] = self.clean
        return x0


def _report(callback: Callback | None, i: int, j: int, t: Tensor, x: Tensor, x0: Tensor) -> None:
    if callback is not None:
        callback({"i": i, "j": j, "t": t, "x": x, "x0": x0})


def ddim_noise_scale(alpha: Tensor, sigma: Tensor, alpha_next: Tensor, sigma_next: Tensor, eta: float) -> Tensor:
    """DDIM's sigma_eta = eta * sqrt(sigma'^2 / sigma^2) * sqrt(1 - alpha^2 / alpha'^2); at eta = 1 the DDPM
    posterior standard deviation of x_{t'} given (x_t, x0)."""
    return eta * (sigma_next**2 / sigma**2).sqrt() * (1 - alpha**2 / alpha_next**2).sqrt()


def ddim_v_step(
    x: Tensor,
    v: Tensor,
    alpha: Tensor,
    sigma: Tensor,
    alpha_next: Tensor,
    sigma_next: Tensor,
    *,
    eta: float = 0.0,
    generator: Generators = None,
) -> tuple[Tensor, Tensor]:
    """One DDIM step (Song et al. 2021) of a v-prediction model from level (alpha, sigma) to (alpha', sigma'):
    x0 = alpha x - sigma v, eps = sigma x + alpha v, x' = alpha' x0 + sqrt(sigma'^2 - sigma_eta^2) eps +
    sigma_eta N(0, I); with eta = 0 the deterministic alpha' x0 + sigma' eps, drawing nothing. -> (x', x0)."""
    x0 = x0_from_v(x, v, alpha, sigma)
    eps = eps_from_v(x, v, alpha, sigma)
    if eta <= 0:
        return x0 * alpha_next + eps * sigma_next, x0
    s_eta = ddim_noise_scale(alpha, sigma, alpha_next, sigma_next, eta)
    x_next = x0 * alpha_next + eps * (sigma_next**2 - s_eta**2).clamp_min(0).sqrt()
    return x_next + _randn(x, generator) * s_eta, x0


def recorrupt(x: Tensor, alpha: Tensor, alpha_next: Tensor, generator: Generators = None) -> Tensor:
    """RePaint re-corruption (Lugmayr et al. 2022) from level t' back up to t: with r = alpha(t) / alpha(t'),
    x <- r x + sqrt(1 - r^2) N(0, I), which maps alpha' z0 + sigma' eps to alpha z0 + sigma eps' in distribution."""
    r = alpha / alpha_next
    return x * r + _randn(x, generator) * (1 - r**2).sqrt()


def sample_ddim(
    denoiser: Denoiser,
    x: Tensor,
    times: Tensor,
    known: Known,
    *,
    eta: float = 0.0,
    repaint_n: int = 1,
    generator: Generators = None,
    callback: Callback | None = None,
    disable: bool = True,
) -> Tensor:
    """DDIM-v (Song et al. 2021), the original's sampler, with RePaint (Lugmayr et al. 2022): every step but the
    last runs ``repaint_n`` times, re-corrupting x back to the step's level in between (its last step's repeats
    would feed the same x again, so they are skipped). Denoiser calls: (steps - 1) * repaint_n + 1."""
    assert repaint_n == 1 or known.context is not None or known.clean is not None, "RePaint needs something known"
    alphas, sigmas = (a.to(x.device) for a in alpha_sigma(times))
    x, last = known.start(x, generator), len(times) - 1
    for i in progress_bar(range(len(times)), desc="sampling", unit="step", disable=disable):
        for j in range(1 if i == last else repaint_n):
            v = known.v(denoiser, x, times[i])
            if i == last:
                x0 = x0_from_v(x, v, alphas[i], sigmas[i])
                _report(callback, i, j, times[i], x, x0)
                break
            x_next, x0 = ddim_v_step(
                x, v, alphas[i], sigmas[i], alphas[i + 1], sigmas[i + 1], eta=eta, generator=generator
            )
            _report(callback, i, j, times[i], x, x0)
            x = known.put(x_next, known.renoised(alphas[i + 1], sigmas[i + 1], generator))
            if j < repaint_n - 1:
                x = recorrupt(x, alphas[i], alphas[i + 1], generator)
    return known.finish(x0)


def _ode_coefficients(times: Tensor) -> list[tuple[float, float, float]]:
    """Per update i -> i+1 of the ODE solvers: (sigma'/sigma, alpha' - alpha sigma'/sigma, h / (2 h_prev)).

    The first two make the first-order (DDIM) update x' = (sigma'/sigma) x + (alpha' - alpha sigma'/sigma) x0;
    the third is DPM-Solver++(2M)'s extrapolation weight with h = lambda' - lambda, lambda = log(alpha / sigma);
    it is 0 after the start at t = 1 (lambda = -inf). Plain floats computed in float64 on the CPU.
    """
    alphas, sigmas = alpha_sigma(times.cpu())
    a = [max(float(v), 0.0) for v in alphas.double()]
    s = [float(v) for v in sigmas.double()]
    lam = [math.log(ai) - math.log(si) if ai > 0 else -math.inf for ai, si in zip(a, s)]
    out = []
    for i in range(len(a) - 1):
        ratio = s[i + 1] / s[i]
        h, h_prev = lam[i + 1] - lam[i], (lam[i] - lam[i - 1]) if i > 0 else math.inf
        out.append((ratio, a[i + 1] - a[i] * ratio, h / (2 * h_prev)))
    return out


def sample_dpmpp_2m(
    denoiser: Denoiser,
    x: Tensor,
    times: Tensor,
    known: Known,
    *,
    eta: float = 0.0,
    repaint_n: int = 1,
    generator: Generators = None,
    callback: Callback | None = None,
    disable: bool = True,
) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022), the second-order multistep solver of the probability-flow ODE in its
    data-prediction form: x' = (sigma'/sigma) x + (alpha' - alpha sigma'/sigma) D with D = (1 + c) x0_i - c x0_{i-1},
    c = h / (2 h_prev); the first update is DDIM's. One denoiser call per step."""
    assert eta == 0 and repaint_n == 1, "the ODE solvers are deterministic"
    alphas, sigmas = (a.to(x.device) for a in alpha_sigma(times))
    coefficients, previous = _ode_coefficients(times), None
    x = known.start(x, generator)
    for i in progress_bar(range(len(times)), desc="sampling", unit="step", disable=disable):
        x0 = x0_from_v(x, known.v(denoiser, x, times[i]), alphas[i], sigmas[i])
        _report(callback, i, 0, times[i], x, x0)
        if i == len(times) - 1:
            break
        ratio, weight, c = coefficients[i]
        d = x0 if previous is None or c == 0 else x0 * (1 + c) - previous * c
        x = known.put(x * ratio + d * weight, known.renoised(alphas[i + 1], sigmas[i + 1], generator))
        previous = x0
    return known.finish(x0)


def sample_heun(
    denoiser: Denoiser,
    x: Tensor,
    times: Tensor,
    known: Known,
    *,
    eta: float = 0.0,
    repaint_n: int = 1,
    generator: Generators = None,
    callback: Callback | None = None,
    disable: bool = True,
) -> Tensor:
    """Heun's second-order method on the ODE written as d(x / sigma) / d(alpha / sigma) = x0(x): the DDIM step
    x_p as predictor, then x' = (sigma'/sigma) x + (alpha' - alpha sigma'/sigma) (x0_i + x0(x_p)) / 2. x_p and x'
    share one re-noised context per update. Denoiser calls: 2 (steps - 1) + 1."""
    assert eta == 0 and repaint_n == 1, "the ODE solvers are deterministic"
    alphas, sigmas = (a.to(x.device) for a in alpha_sigma(times))
    coefficients, last = _ode_coefficients(times), len(times) - 1
    x = known.start(x, generator)
    for i in progress_bar(range(last), desc="sampling", unit="step", disable=disable):
        ratio, weight, _ = coefficients[i]
        x0 = x0_from_v(x, known.v(denoiser, x, times[i]), alphas[i], sigmas[i])
        _report(callback, i, 0, times[i], x, x0)
        renoised = known.renoised(alphas[i + 1], sigmas[i + 1], generator)
        predicted = known.put(x * ratio + x0 * weight, renoised)
        x0_next = x0_from_v(predicted, known.v(denoiser, predicted, times[i + 1]), alphas[i + 1], sigmas[i + 1])
        _report(callback, i + 1, 1, times[i + 1], predicted, x0_next)
        x = known.put(x * ratio + (x0 + x0_next) * (0.5 * weight), renoised)
    x0 = x0_from_v(x, known.v(denoiser, x, times[last]), alphas[last], sigmas[last])
    _report(callback, last, 0, times[last], x, x0)
    return known.finish(x0)


SAMPLERS: dict[str, Callable[..., Tensor]] = {"ddim": sample_ddim, "dpmpp_2m": sample_dpmpp_2m, "heun": sample_heun}
