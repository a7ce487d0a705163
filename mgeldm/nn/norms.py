"""The DiT's group norm over a token sequence, optionally fused with AdaGN modulation.

Works on the (B, N, D) token layout but computes exactly ``F.group_norm`` on (B, D, N): the mean
and variance are taken per sample and per channel group over the group's channels **and all N
tokens** (timestep token included), as the original does (docs/compatibility.md#the-diffusion-transformer, difference
6). It is therefore not a
per-token norm, and the result depends on the whole window.

Parameters: learned ``gamma`` (D,) and a zero ``beta`` (D,) that is a persistent buffer (in the
state_dict, never trained). Statistics are computed in float32 (float64 for a float64 input).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class GroupNorm(nn.Module):
    def __init__(self, dim: int, num_groups: int, eps: float = 1e-5) -> None:
        super().__init__()
        if dim % num_groups:
            raise ValueError(f"dim {dim} is not divisible by num_groups {num_groups}")
        self.dim = dim
        self.num_groups = num_groups
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(dim))
        self.register_buffer("beta", torch.zeros(dim), persistent=True)

    def _stats(self, x4: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """mean and 1/std per (sample, group), shaped (B, 1, G, 1), in ``dtype``."""
        var, mean = torch.var_mean(x4.to(dtype), dim=(1, 3), unbiased=False, keepdim=True)
        return mean, torch.rsqrt(var + self.eps)

    def forward(self, x: Tensor) -> Tensor:
        """Plain group norm of x (B, N, D) (output dtype as in ``modulate``)."""
        return self.modulate(x, None, None)

    def modulate(self, x: Tensor, scale: Tensor | None, shift: Tensor | None) -> Tensor:
        """``GN(x) * (1 + scale) + shift`` as one affine map per (sample, channel).

        ``scale``/``shift`` are (B, 1, D) or None. Everything small is folded into a (B, 1, G, D/G)
        multiplier ``a`` and offset ``b`` (float32), so the (B, N, D) tensor is touched by a single
        ``b + x * a`` (one kernel eager, fused under torch.compile). Output dtype: x's dtype, or the
        autocast dtype when autocast is on (the next op is a matmul that would cast anyway).
        """
        b_, n, d = x.shape
        g = self.num_groups
        e = d // g
        x4 = x.reshape(b_, n, g, e)
        dt = torch.promote_types(x.dtype, torch.float32)  # float32, or float64 for a float64 model
        mean, rstd = self._stats(x4, dt)
        a = rstd * self.gamma.to(dt).view(1, 1, g, e)  # (B, 1, G, E)
        b = self.beta.to(dt).view(1, 1, g, e) - mean * a
        if scale is not None:
            s = 1.0 + scale.to(dt).view(b_, 1, g, e)
            a = a * s
            b = b * s
        if shift is not None:
            b = b + shift.to(dt).view(b_, 1, g, e)
        out_dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
        return torch.addcmul(b, x4, a).to(out_dtype).view(b_, n, d)
