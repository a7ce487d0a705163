"""Samplers for the v-objective DiT: DDIM-v, joint generation, given-track generation.

Each sampler is one function with the same shape: a ``denoiser(x, t) -> v`` (x (B, K*C, T),
t (B, K) per-track diffusion time), the starting ``noise``, the number of steps, an explicit
``torch.Generator`` for every random draw, an optional ``callback`` and a progress bar (:mod:`mgeldm.progress`).
The step rule is the shared :func:`ddim_v_step`; RePaint re-corruption is :func:`recorrupt`.

The channel count per track is ``noise.shape[1] // num_tracks``; track k owns ``[k C, (k+1) C)``.

Random draws (in this order within an update): the DDIM noise when eta > 0, the fresh noise that
re-noises the overlap region, the RePaint re-corruption noise. With eta = 0, no overlap and
``repaint_n = 1`` nothing is drawn and the result is a deterministic function of the inputs.
A ``generator`` of None falls back to torch's global generator.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor
from mgeldm.progress import progress_bar

from .schedule import alpha_sigma, eps_from_v, sampling_times, x0_from_v

__all__ = [
    "Denoiser",
    "Callback",
    "ddim_noise_scale",
    "ddim_v_step",
    "recorrupt",
    "sample_joint",
    "sample_given_track",
]

Denoiser = Callable[[Tensor, Tensor], Tensor]
"""``denoiser(x (B, K*C, T), t (B, K)) -> v (B, K*C, T)``."""

Callback = Callable[[dict[str, Any]], None]
"""Called after every denoiser call with ``dict(i, j, t, x, x0)`` (step, repaint iteration,
diffusion time, the model input and its x0 estimate)."""


def _randn(like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise shaped like ``like``, drawn on the generator's device."""
    device = generator.device if generator is not None else like.device
    noise = torch.randn(like.shape, generator=generator, device=device, dtype=torch.float32)
    return noise.to(device=like.device, dtype=like.dtype)


def ddim_noise_scale(alpha: Tensor, sigma: Tensor, alpha_next: Tensor, sigma_next: Tensor, eta: float) -> Tensor:
    """DDIM's sigma_eta = eta * sqrt(sigma'^2 / sigma^2) * sqrt(1 - alpha^2 / alpha'^2).

    At eta = 1 it is the DDPM posterior standard deviation of x_{t'} given (x_t, x0).
    """
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
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """One DDIM step (Song et al. 2021) for a v-prediction model, from level (alpha, sigma) to
    (alpha', sigma'). Returns ``(x_next, x0)``.

    x0 = alpha x - sigma v and eps = sigma x + alpha v; then
    x_next = alpha' x0 + sqrt(sigma'^2 - sigma_eta^2) eps + sigma_eta N(0, I). With eta = 0 this
    is the deterministic update alpha' x0 + sigma' eps and draws nothing.
    """
    x0 = x0_from_v(x, v, alpha, sigma)
    eps = eps_from_v(x, v, alpha, sigma)
    if eta > 0:
        s_eta = ddim_noise_scale(alpha, sigma, alpha_next, sigma_next, eta)
        kept = (sigma_next**2 - s_eta**2).clamp_min(0).sqrt()
        x_next = x0 * alpha_next + eps * kept
        x_next = x_next + _randn(x, generator) * s_eta
    else:
        x_next = x0 * alpha_next + eps * sigma_next
    return x_next, x0


def recorrupt(x: Tensor, alpha: Tensor, alpha_next: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """RePaint re-corruption (Lugmayr et al. 2022): take x from level t' back up to level t.

    With r = alpha(t) / alpha(t'), x <- r x + sqrt(1 - r^2) N(0, I). Under the variance-preserving
    marginal this maps alpha' z0 + sigma' eps to alpha z0 + sigma eps' exactly in distribution.
    """
    r = alpha / alpha_next
    return x * r + _randn(x, generator) * (1 - r**2).sqrt()


def sample_joint(
    denoiser: Denoiser,
    noise: Tensor,
    *,
    steps: int,
    num_tracks: int,
    eta: float = 0.0,
    t_min: float | None = 0.02,
    repaint_n: int = 1,
    overlap_z: Tensor | None = None,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    disable_progress: bool = True,
) -> Tensor:
    """Joint DDIM-v generation of all tracks with one shared t (SPEC D.2).

    With ``overlap_z`` (B, K*C, T1) the window is [T1 overlap frames | noise's T2 frames]: the
    overlap starts from fresh noise and after every update is replaced by overlap_z re-noised to
    the next level with fresh noise (time-axis outpainting), and each step is repeated
    ``repaint_n`` times with RePaint re-corruption in between. Returns the x0 estimate of the
    whole window (B, K*C, T1 + T2); callers drop the first T1 frames.
    """
    if overlap_z is None and repaint_n != 1:
        raise ValueError(f"repaint_n must be 1 without overlap_z (got {repaint_n}); RePaint only harmonises an overlap")
    return _sample_window(denoiser, noise, steps=steps, num_tracks=num_tracks, eta=eta, t_min=t_min,
                          repaint_n=repaint_n, overlap_z=overlap_z, given=None, generator=generator,
                          callback=callback, disable_progress=disable_progress)


def sample_given_track(
    denoiser: Denoiser,
    noise: Tensor,
    given_z: Tensor,
    given_track: int,
    *,
    steps: int,
    num_tracks: int,
    eta: float = 0.0,
    t_min: float | None = 0.02,
    repaint_n: int = 1,
    overlap_z: Tensor | None = None,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    disable_progress: bool = True,
) -> Tensor:
    """DDIM-v generation of the other tracks given one clean track (SPEC D.3).

    Before every denoiser call the given track's channels are reset to the clean latent
    (overlap_z's part for the first T1 frames, ``given_z`` (B, C, T2) for the rest) and its
    per-track time is 0; the other tracks get t_i. Outpainting and RePaint are as in
    :func:`sample_joint`, except that re-corruption runs even without an overlap. The given
    channels of the returned x0 are the clean latent.
    """
    return _sample_window(denoiser, noise, steps=steps, num_tracks=num_tracks, eta=eta, t_min=t_min,
                          repaint_n=repaint_n, overlap_z=overlap_z, given=(given_track, given_z),
                          generator=generator, callback=callback, disable_progress=disable_progress)


def _check(noise: Tensor, steps: int, num_tracks: int, repaint_n: int, eta: float,
           overlap_z: Tensor | None, given: tuple[int, Tensor] | None) -> int:
    """Validate the arguments; return the channel count per track."""
    if steps < 1 or repaint_n < 1 or eta < 0:
        raise ValueError(f"need steps >= 1, repaint_n >= 1, eta >= 0; got {steps}, {repaint_n}, {eta}")
    if noise.ndim != 3 or noise.shape[1] % num_tracks:
        raise ValueError(f"noise must be (B, {num_tracks}*C, T); got {tuple(noise.shape)}")
    channels = noise.shape[1] // num_tracks
    if overlap_z is not None and overlap_z.shape[:2] != noise.shape[:2]:
        raise ValueError(f"overlap_z {tuple(overlap_z.shape)} does not match noise {tuple(noise.shape)}")
    if given is not None:
        track, given_z = given
        if not 0 <= track < num_tracks:
            raise ValueError(f"given_track must be in [0, {num_tracks}); got {track}")
        if tuple(given_z.shape) != (noise.shape[0], channels, noise.shape[2]):
            raise ValueError(f"given_z must be {(noise.shape[0], channels, noise.shape[2])}; got {tuple(given_z.shape)}")
    return channels


def _sample_window(
    denoiser: Denoiser,
    noise: Tensor,
    *,
    steps: int,
    num_tracks: int,
    eta: float,
    t_min: float | None,
    repaint_n: int,
    overlap_z: Tensor | None,
    given: tuple[int, Tensor] | None,
    generator: torch.Generator | None,
    callback: Callback | None,
    disable_progress: bool,
) -> Tensor:
    """The loop shared by both samplers: DDIM-v + overlap re-noising + RePaint (+ clamping).

    At the last step no update follows, so its repeats would feed the same x again; they are
    skipped. Denoiser calls: (steps - 1) * repaint_n + 1.
    """
    channels = _check(noise, steps, num_tracks, repaint_n, eta, overlap_z, given)
    times = sampling_times(steps, t_min)
    alphas, sigmas = (a.to(noise.device) for a in alpha_sigma(times))
    width = 0 if overlap_z is None else overlap_z.shape[-1]
    x = noise.clone() if overlap_z is None else torch.cat([_randn(overlap_z, generator), noise], dim=-1)

    track, clean = None, None
    if given is not None:
        track, given_z = given
        rows = slice(channels * track, channels * (track + 1))
        clean = given_z if overlap_z is None else torch.cat([overlap_z[:, rows], given_z], dim=-1)

    for i in progress_bar(range(steps), desc="sampling", unit="step", disable=disable_progress):
        last = i == steps - 1
        for j in range(1 if last else repaint_n):
            t = torch.full((x.shape[0], num_tracks), float(times[i]), dtype=torch.float32, device=x.device)
            if clean is not None:
                t[:, track] = 0.0
                x[:, rows] = clean
            v = denoiser(x, t).to(x.dtype)
            if last:
                x0 = x0_from_v(x, v, alphas[i], sigmas[i])
            else:
                x_next, x0 = ddim_v_step(x, v, alphas[i], sigmas[i], alphas[i + 1], sigmas[i + 1],
                                         eta=eta, generator=generator)
            if callback is not None:
                callback({"i": i, "j": j, "t": times[i], "x": x, "x0": x0})
            if last:
                break
            x = x_next
            if overlap_z is not None:
                x[..., :width] = overlap_z * alphas[i + 1] + _randn(overlap_z, generator) * sigmas[i + 1]
            if j < repaint_n - 1:
                x = recorrupt(x, alphas[i], alphas[i + 1], generator)

    if clean is not None:
        x0 = x0.clone()
        x0[:, rows] = clean
    return x0
