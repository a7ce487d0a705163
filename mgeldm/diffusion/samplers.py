"""Samplers for the v-objective DiT: DDIM-v, DPM-Solver++(2M) and Heun, for joint generation and
generation around a given track.

Each sampler is one function with the same shape: a ``denoiser(x, t) -> v`` (x (B, K*C, T),
t (B, K) per-track diffusion time), the starting ``noise``, the number of steps, an explicit
``torch.Generator`` for every random draw, an optional ``callback`` and a progress bar (:mod:`mgeldm.progress`).
``sampler`` picks the update rule (:data:`SAMPLERS`):

* ``ddim`` (default, the original's): the shared :func:`ddim_v_step`, with eta and RePaint
  re-corruption (:func:`recorrupt`);
* ``dpmpp_2m``: DPM-Solver++(2M) (Lu et al. 2022), the second-order multistep solver of the
  probability-flow ODE in its data-prediction form (x0 = alpha x - sigma v), one denoiser call
  per step; the first update is the DDIM one;
* ``heun``: Heun's second-order method on the same ODE written as d(x / sigma) / d(alpha / sigma)
  = x0(x): a DDIM step as predictor, then the trapezoid of the two x0 estimates; two denoiser
  calls per update (:func:`denoiser_calls`).

All three run on the same time grid (:func:`mgeldm.diffusion.schedule.sampling_times`) and return
the x0 estimate at its last time, so they converge to the same answer as the step count grows.
The two ODE solvers are deterministic: they refuse eta > 0 and RePaint (``repaint_n > 1``).

The channel count per track is ``noise.shape[1] // num_tracks``; track k owns ``[k C, (k+1) C)``.

Random draws (in this order within an update): the DDIM noise when eta > 0, the fresh noise that
re-noises the overlap region, the RePaint re-corruption noise. With eta = 0, no overlap and
``repaint_n = 1`` nothing is drawn and the result is a deterministic function of the inputs.
A ``generator`` of None falls back to torch's global generator. A sequence of generators splits
the batch into equal blocks of rows, block i drawing from generator i: a batch of several songs
then draws for each song exactly what that song draws alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Callable

import torch
from torch import Tensor
from mgeldm.progress import progress_bar

from .schedule import T_MIN, alpha_sigma, eps_from_v, sampling_times, x0_from_v

__all__ = [
    "SAMPLERS",
    "Denoiser",
    "Callback",
    "Generators",
    "denoiser_calls",
    "check_sampler",
    "sampler_problem",
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
diffusion time, the model input and its x0 estimate). Heun's second call of an update, at the next
step's time, comes with that step's i and j = 1."""

Generators = torch.Generator | Sequence[torch.Generator] | None
"""One generator for the whole batch, or one per equal block of rows (see the module docstring)."""

SAMPLERS = ("ddim", "dpmpp_2m", "heun")


def denoiser_calls(sampler: str, steps: int, repaint_n: int = 1) -> int:
    """Denoiser calls of one window: DDIM and DPM-Solver++(2M) call once per step (DDIM repeats each
    but the last step ``repaint_n`` times), Heun twice per update plus once at the end."""
    if sampler == "heun":
        return 2 * (steps - 1) + 1
    return (steps - 1) * repaint_n + 1


def _randn(like: Tensor, generator: Generators) -> Tensor:
    """Standard normal noise shaped like ``like``, drawn on the generator's device."""
    if isinstance(generator, Sequence):
        if like.shape[0] % len(generator):
            raise ValueError(f"{len(generator)} generators cannot split a batch of {like.shape[0]} rows")
        rows = like.shape[0] // len(generator)
        return torch.cat([_randn(part, g) for part, g in zip(like.split(rows), generator)])
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
    generator: Generators = None,
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


def recorrupt(x: Tensor, alpha: Tensor, alpha_next: Tensor, generator: Generators = None) -> Tensor:
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
    t_min: float | None = T_MIN,
    repaint_n: int = 1,
    overlap_z: Tensor | None = None,
    generator: Generators = None,
    callback: Callback | None = None,
    disable_progress: bool = True,
    sampler: str = "ddim",
) -> Tensor:
    """Joint generation of all tracks with one shared t.

    With ``overlap_z`` (B, K*C, T1) the window is [T1 overlap frames | noise's T2 frames]: the
    overlap starts from fresh noise and after every update is replaced by overlap_z re-noised to
    the next level with fresh noise (time-axis outpainting), and with ``sampler="ddim"`` each step
    is repeated ``repaint_n`` times with RePaint re-corruption in between. Returns the x0 estimate
    of the whole window (B, K*C, T1 + T2); callers drop the first T1 frames.
    """
    if overlap_z is None and repaint_n != 1:
        raise ValueError(f"repaint_n must be 1 without overlap_z (got {repaint_n}); RePaint only harmonises an overlap")
    return _sample_window(denoiser, noise, steps=steps, num_tracks=num_tracks, eta=eta, t_min=t_min,
                          repaint_n=repaint_n, overlap_z=overlap_z, given=None, generator=generator,
                          callback=callback, disable_progress=disable_progress, sampler=sampler)


def sample_given_track(
    denoiser: Denoiser,
    noise: Tensor,
    given_z: Tensor,
    given_track: int,
    *,
    steps: int,
    num_tracks: int,
    eta: float = 0.0,
    t_min: float | None = T_MIN,
    repaint_n: int = 1,
    overlap_z: Tensor | None = None,
    generator: Generators = None,
    callback: Callback | None = None,
    disable_progress: bool = True,
    sampler: str = "ddim",
) -> Tensor:
    """Generation of the other tracks given one clean track.

    Before every denoiser call the given track's channels are reset to the clean latent
    (overlap_z's part for the first T1 frames, ``given_z`` (B, C, T2) for the rest) and its
    per-track time is 0; the other tracks get t_i. Outpainting and RePaint are as in
    :func:`sample_joint`, except that re-corruption runs even without an overlap. The given
    channels of the returned x0 are the clean latent.
    """
    return _sample_window(denoiser, noise, steps=steps, num_tracks=num_tracks, eta=eta, t_min=t_min,
                          repaint_n=repaint_n, overlap_z=overlap_z, given=(given_track, given_z),
                          generator=generator, callback=callback, disable_progress=disable_progress,
                          sampler=sampler)


def sampler_problem(sampler: str, repaint_n: int = 1, eta: float = 0.0) -> tuple[str, object, str] | None:
    """``(parameter, value, what is wrong)`` for an unknown sampler, or RePaint or eta > 0 with the deterministic
    ODE solvers; None when the combination runs."""
    if sampler not in SAMPLERS:
        return "sampler", sampler, f"expected one of {', '.join(SAMPLERS)}"
    if sampler != "ddim" and repaint_n != 1:
        return ("repaint_n", repaint_n, f"RePaint re-corruption runs only with sampler=ddim; use repaint_n=1 with "
                f"sampler={sampler}")
    if sampler != "ddim" and eta != 0:
        return "eta", eta, f"stochastic sampling runs only with sampler=ddim; sampler={sampler} solves the ODE (eta=0)"
    return None


def check_sampler(sampler: str, repaint_n: int = 1, eta: float = 0.0) -> None:
    """Refuse (ValueError) what :func:`sampler_problem` finds."""
    problem = sampler_problem(sampler, repaint_n, eta)
    if problem is not None:
        name, value, what = problem
        raise ValueError(f"{name}={value}: {what}")


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


class _Window:
    """What every update rule shares on one window: the time grid, the start, the denoiser call
    (given track reset to its clean latent, its t = 0), the overlap re-noising and the callback."""

    def __init__(self, denoiser: Denoiser, noise: Tensor, *, steps: int, num_tracks: int, t_min: float | None,
                 overlap_z: Tensor | None, given: tuple[int, Tensor] | None, generator: Generators,
                 callback: Callback | None, channels: int) -> None:
        self.denoiser, self.num_tracks, self.callback = denoiser, num_tracks, callback
        self.overlap_z, self.generator = overlap_z, generator
        self.times = sampling_times(steps, t_min)
        self.alphas, self.sigmas = (a.to(noise.device) for a in alpha_sigma(self.times))
        self.width = 0 if overlap_z is None else overlap_z.shape[-1]
        self.track, self.clean, self.rows = None, None, slice(0, 0)
        if given is not None:
            self.track, given_z = given
            self.rows = slice(channels * self.track, channels * (self.track + 1))
            self.clean = given_z if overlap_z is None else torch.cat([overlap_z[:, self.rows], given_z], dim=-1)

    def start(self, noise: Tensor) -> Tensor:
        """The first x: the noise, after fresh noise for the overlap frames."""
        if self.overlap_z is None:
            return noise.clone()
        return torch.cat([_randn(self.overlap_z, self.generator), noise], dim=-1)

    def v(self, x: Tensor, i: int) -> Tensor:
        """The denoiser at step i's time; first resets the given track of ``x`` (in place) to its clean latent."""
        t = torch.full((x.shape[0], self.num_tracks), float(self.times[i]), dtype=torch.float32, device=x.device)
        if self.clean is not None:
            t[:, self.track] = 0.0
            x[:, self.rows] = self.clean
        return self.denoiser(x, t).to(x.dtype)

    def x0(self, x: Tensor, i: int, j: int = 0) -> Tensor:
        """The x0 estimate at step i (one denoiser call), reported to the callback."""
        x0 = x0_from_v(x, self.v(x, i), self.alphas[i], self.sigmas[i])
        self.report(i, j, x, x0)
        return x0

    def report(self, i: int, j: int, x: Tensor, x0: Tensor) -> None:
        if self.callback is not None:
            self.callback({"i": i, "j": j, "t": self.times[i], "x": x, "x0": x0})

    def overlap_at(self, i: int) -> Tensor | None:
        """overlap_z at step i's level with fresh noise (None without an overlap)."""
        if self.overlap_z is None:
            return None
        return self.overlap_z * self.alphas[i] + _randn(self.overlap_z, self.generator) * self.sigmas[i]

    def put_overlap(self, x: Tensor, overlap: Tensor | None) -> Tensor:
        if overlap is not None:
            x[..., :self.width] = overlap
        return x

    def finish(self, x0: Tensor) -> Tensor:
        """The returned x0: its given channels are the clean latent."""
        if self.clean is None:
            return x0
        x0 = x0.clone()
        x0[:, self.rows] = self.clean
        return x0

    def ode_coefficients(self) -> list[tuple[float, float, float]]:
        """Per update i -> i+1 of the ODE solvers: (sigma'/sigma, alpha' - alpha sigma'/sigma, h / (2 h_prev)).

        The first two are the first-order (DDIM) update x' = (sigma'/sigma) x + (alpha' - alpha sigma'/sigma) x0;
        the third is DPM-Solver++(2M)'s extrapolation weight, with h = lambda' - lambda and lambda =
        log(alpha / sigma); it is 0 after the start at t = 1 (lambda = -inf), where the 2M step is first order.
        Plain floats computed in float64 on the CPU, so no update waits on the device.
        """
        alphas, sigmas = alpha_sigma(self.times)
        a = [max(float(v), 0.0) for v in alphas.double()]
        s = [float(v) for v in sigmas.double()]
        lam = [math.log(ai) - math.log(si) if ai > 0 else -math.inf for ai, si in zip(a, s)]
        out = []
        for i in range(len(a) - 1):
            ratio = s[i + 1] / s[i]
            h, h_prev = lam[i + 1] - lam[i], (lam[i] - lam[i - 1]) if i > 0 else math.inf
            out.append((ratio, a[i + 1] - a[i] * ratio, h / (2 * h_prev)))
        return out


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
    generator: Generators,
    callback: Callback | None,
    disable_progress: bool,
    sampler: str = "ddim",
) -> Tensor:
    """Check the arguments, set up the window and run the sampler's loop."""
    check_sampler(sampler, repaint_n, eta)
    channels = _check(noise, steps, num_tracks, repaint_n, eta, overlap_z, given)
    win = _Window(denoiser, noise, steps=steps, num_tracks=num_tracks, t_min=t_min, overlap_z=overlap_z,
                  given=given, generator=generator, callback=callback, channels=channels)
    loop = {"ddim": _ddim_loop, "dpmpp_2m": _dpmpp_2m_loop, "heun": _heun_loop}[sampler]
    x0 = loop(win, win.start(noise), steps, eta=eta, repaint_n=repaint_n, disable_progress=disable_progress)
    return win.finish(x0)


def _ddim_loop(win: _Window, x: Tensor, steps: int, *, eta: float, repaint_n: int, disable_progress: bool) -> Tensor:
    """DDIM-v + overlap re-noising + RePaint.

    At the last step no update follows, so its repeats would feed the same x again; they are
    skipped. Denoiser calls: (steps - 1) * repaint_n + 1.
    """
    alphas, sigmas = win.alphas, win.sigmas
    for i in progress_bar(range(steps), desc="sampling", unit="step", disable=disable_progress):
        last = i == steps - 1
        for j in range(1 if last else repaint_n):
            v = win.v(x, i)
            if last:
                x0 = x0_from_v(x, v, alphas[i], sigmas[i])
            else:
                x_next, x0 = ddim_v_step(x, v, alphas[i], sigmas[i], alphas[i + 1], sigmas[i + 1],
                                         eta=eta, generator=win.generator)
            win.report(i, j, x, x0)
            if last:
                break
            x = win.put_overlap(x_next, win.overlap_at(i + 1))
            if j < repaint_n - 1:
                x = recorrupt(x, alphas[i], alphas[i + 1], win.generator)
    return x0


def _dpmpp_2m_loop(win: _Window, x: Tensor, steps: int, *, disable_progress: bool, **_: Any) -> Tensor:
    """DPM-Solver++(2M): x' = (sigma'/sigma) x + (alpha' - alpha sigma'/sigma) D with
    D = (1 + c) x0_i - c x0_{i-1}, c = h / (2 h_prev). One denoiser call per step."""
    coefficients = win.ode_coefficients()
    previous = None
    for i in progress_bar(range(steps), desc="sampling", unit="step", disable=disable_progress):
        x0 = win.x0(x, i)
        if i == steps - 1:
            break
        ratio, weight, c = coefficients[i]
        d = x0 if previous is None or c == 0 else x0 * (1 + c) - previous * c
        x = win.put_overlap(x * ratio + d * weight, win.overlap_at(i + 1))
        previous = x0
    return x0


def _heun_loop(win: _Window, x: Tensor, steps: int, *, disable_progress: bool, **_: Any) -> Tensor:
    """Heun on d(x / sigma) / d(alpha / sigma) = x0: predictor x_p = the DDIM step, then
    x' = (sigma'/sigma) x + (alpha' - alpha sigma'/sigma) (x0_i + x0(x_p)) / 2. The overlap of x_p and
    of x' is the same re-noised overlap (one draw per update). Denoiser calls: 2 (steps - 1) + 1."""
    coefficients = win.ode_coefficients()
    for i in progress_bar(range(steps - 1), desc="sampling", unit="step", disable=disable_progress):
        ratio, weight, _c = coefficients[i]
        x0 = win.x0(x, i)
        overlap = win.overlap_at(i + 1)
        predicted = win.put_overlap(x * ratio + x0 * weight, overlap)
        x0_next = win.x0(predicted, i + 1, 1)
        x = win.put_overlap(x * ratio + (x0 + x0_next) * (0.5 * weight), overlap)
    return win.x0(x, steps - 1)
