"""Rotary position embedding (RoPE), non-interleaved "rotate-half" layout.

The angle table for positions ``0..N-1`` is built once per forward pass (``cos_sin``) and shared by
every attention layer. Angles and the rotation itself are computed in float32 with plain
element-wise ops, so autocast never lowers their precision; the rotated tensor is returned in the
dtype it came in.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class RotaryEmbedding(nn.Module):
    """Holds ``inv_freq_j = base^(-2j/dim)`` (persistent buffer, part of the state_dict)."""

    def __init__(self, dim: int, base: float = 10000.0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"rotary dim must be even, got {dim}")
        self.dim = dim
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
        self.register_buffer("inv_freq", inv_freq, persistent=True)

    def cos_sin(self, seq_len: int, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
        """cos and sin of the angles ``[θ, θ]`` for positions 0..seq_len-1, each (seq_len, dim) float32."""
        inv_freq = self.inv_freq.to(device=device, dtype=torch.float32)
        pos = torch.arange(seq_len, device=inv_freq.device, dtype=torch.float32)
        angles = pos[:, None] * inv_freq[None, :]  # element-wise: immune to autocast
        angles = torch.cat((angles, angles), dim=-1)
        return angles.cos(), angles.sin()


def rotate_half(x: Tensor) -> Tensor:
    """[a, b] -> [-b, a] over the last dim."""
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate the first ``cos.shape[-1]`` channels of ``x``'s last dim; the rest pass unchanged.

    ``cos``/``sin`` must broadcast against ``x[..., :rot_dim]`` (e.g. (N, 1, rot_dim) for
    x (B, N, H, head_dim)). Computed in float32, returned in ``x.dtype``.
    """
    rot_dim = cos.shape[-1]
    xf = x.float()
    if rot_dim == x.shape[-1]:
        return (xf * cos + rotate_half(xf) * sin).to(x.dtype)
    head, tail = xf[..., :rot_dim], xf[..., rot_dim:]
    head = head * cos + rotate_half(head) * sin
    return torch.cat((head, tail), dim=-1).to(x.dtype)
