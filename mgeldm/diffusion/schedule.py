"""The cosine v-diffusion schedule and training-time timestep sampling.

t in [0, 1]: t = 0 is clean data, t = 1 pure noise. z_t = alpha z0 + sigma eps with
alpha = cos(pi t / 2), sigma = sin(pi t / 2); the model predicts v = alpha eps - sigma z0.

Everything is computed in float32 torch ops, as the original does, so that e.g. alpha(1) is
cos(pi/2) in fp32 (about -4.37e-8), not exactly 0.

A timestep ``t`` given to :func:`noisy` / :func:`v_target` may be a scalar, one value per sample
``(B,)``, or one value per sample and track ``(B, K)``; in the last case track k owns the channel
slice ``[k C, (k+1) C)`` with ``C = channels // K``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.quasirandom import SobolEngine

__all__ = [
    "alpha_sigma",
    "sampling_times",
    "expand_t",
    "noisy",
    "v_target",
    "x0_from_v",
    "eps_from_v",
    "SobolTimestepSampler",
]


def alpha_sigma(t: Tensor | float) -> tuple[Tensor, Tensor]:
    """Signal and noise scales (cos(pi t / 2), sin(pi t / 2)) of the cosine schedule."""
    t = torch.as_tensor(t, dtype=torch.float32) if not isinstance(t, Tensor) else t
    return torch.cos(t * math.pi / 2), torch.sin(t * math.pi / 2)


T_MIN = 0.02  # the last sampling time of the original's sampler (every sampler's and task's default)


def sampling_times(steps: int, t_min: float | None = T_MIN, device: torch.device | str | None = None) -> Tensor:
    """The ``steps`` sampling times, from 1 down to ``t_min`` inclusive.

    With ``t_min=None`` the grid is ``linspace(1, 0, steps + 1)`` without its final 0.
    Computed on the CPU in float32 (like the original) and then moved to ``device``.
    """
    if t_min is None:
        t = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float32)[:-1]
    else:
        t = torch.linspace(1.0, float(t_min), steps, dtype=torch.float32)
    return t.to(device) if device is not None else t


def expand_t(t: Tensor | float, like: Tensor) -> Tensor:
    """Broadcast a timestep (scalar, (B,) or per-track (B, K)) against ``like`` of shape (B, K*C, T)."""
    t = torch.as_tensor(t, dtype=torch.float32, device=like.device)
    if t.ndim == 0:
        return t
    if t.ndim == 1:
        return t.view(-1, *([1] * (like.ndim - 1)))
    if t.ndim == 2:
        if like.shape[1] % t.shape[1]:
            raise ValueError(f"{like.shape[1]} channels cannot be split into {t.shape[1]} tracks")
        per_track = t.repeat_interleave(like.shape[1] // t.shape[1], dim=1)  # (B, K*C)
        return per_track.view(*per_track.shape, *([1] * (like.ndim - 2)))
    raise ValueError(f"timestep must be a scalar, (B,) or (B, K); got shape {tuple(t.shape)}")


def noisy(z0: Tensor, eps: Tensor, t: Tensor | float) -> Tensor:
    """The forward process z_t = alpha(t) z0 + sigma(t) eps (t = 0 gives z0 exactly)."""
    alpha, sigma = alpha_sigma(expand_t(t, z0))
    return z0 * alpha + eps * sigma


def v_target(z0: Tensor, eps: Tensor, t: Tensor | float) -> Tensor:
    """The v-objective target v = alpha(t) eps - sigma(t) z0."""
    alpha, sigma = alpha_sigma(expand_t(t, z0))
    return eps * alpha - z0 * sigma


def x0_from_v(x: Tensor, v: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """Clean-data estimate x0 = alpha x - sigma v (alpha, sigma already broadcastable to x)."""
    return x * alpha - v * sigma


def eps_from_v(x: Tensor, v: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """Noise estimate eps = sigma x + alpha v (alpha, sigma already broadcastable to x)."""
    return x * sigma + v * alpha


class SobolTimestepSampler:
    """Training timesteps from a scrambled 1-D Sobol sequence, floored at ``eps``.

    One engine per process, so successive batches continue the low-discrepancy sequence.
    ``state_dict()`` holds only plain numbers (seed, number drawn), and ``load_state_dict``
    rebuilds the engine and fast-forwards it, so a resumed run continues the exact sequence.
    """

    def __init__(self, eps: float = 0.02, seed: int = 0) -> None:
        self.eps = float(eps)
        self.seed = int(seed)
        self._engine = SobolEngine(1, scramble=True, seed=self.seed)

    @property
    def num_generated(self) -> int:
        return int(self._engine.num_generated)

    def __call__(self, batch: int, device: torch.device | str | None = None) -> Tensor:
        t = self._engine.draw(batch, dtype=torch.float32)[:, 0]
        t = torch.clamp_min(t, self.eps)
        return t.to(device) if device is not None else t

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "num_generated": self.num_generated, "eps": self.eps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seed = int(state["seed"])
        self.eps = float(state.get("eps", self.eps))
        self._engine = SobolEngine(1, scramble=True, seed=self.seed)
        if int(state["num_generated"]) > 0:
            self._engine.fast_forward(int(state["num_generated"]))
