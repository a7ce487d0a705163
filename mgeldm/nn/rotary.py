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

    ``x * cos + rotate_half(x) * sin`` with ``cos``/``sin`` broadcasting against
    ``x[..., :rot_dim]`` (e.g. (N, 1, rot_dim) for x (B, N, H, head_dim)). Computed in float32
    (bf16/fp16 inputs are promoted exactly), returned in ``x.dtype``.
    """
    rot_dim = cos.shape[-1]
    if rot_dim != x.shape[-1]:
        head = apply_rotary(x[..., :rot_dim].float(), cos, sin)
        return torch.cat((head, x[..., rot_dim:].float()), dim=-1).to(x.dtype)
    # rotate_half(x) * sin == roll(x, half) * [-sin_a, sin_b]: one roll instead of chunk/neg/cat,
    # and the products promote to float32 without a separate up-cast copy.
    half = rot_dim // 2
    signed_sin = torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)
    out = torch.addcmul(x * cos, torch.roll(x, shifts=half, dims=-1), signed_sin)
    return out.to(x.dtype)
