"""Weight-normalised 1-D convolutions with the legacy ``weight_g`` / ``weight_v`` state-dict layout.

The original wraps ``nn.Conv1d`` / ``nn.ConvTranspose1d`` in the legacy ``torch.nn.utils.weight_norm``
with ``dim=0``: the effective weight is ``g * v / ||v||`` with the norm taken over every dimension but
the first. For a transposed convolution the first dimension of the weight is the *input* channel, so
``weight_g`` has shape ``(in, 1, 1)`` there and ``(out, 1, 1)`` for a plain convolution.

Recomputing the norm costs a pass over every weight per call. For inference, ``fold()`` computes the
effective weight once and keeps it in a non-persistent buffer: outputs are bit-identical (it is the
same computation, done once), the state dict keeps the original keys and values, and loading a
state dict refreshes the folded weight. Switching a module to training mode drops the fold, so
gradients always reach ``weight_g`` / ``weight_v`` while training.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["WNConv1d", "WNConvTranspose1d", "fold_weight_norm", "unfold_weight_norm"]


class _WeightNorm:
    """Mixin: replace the conv's ``weight`` parameter by ``weight_g`` and ``weight_v`` (legacy order)."""

    weight_g: nn.Parameter
    weight_v: nn.Parameter
    _folded_weight: Tensor | None

    def _setup_weight_norm(self) -> None:
        weight = self._parameters.pop("weight")  # type: ignore[attr-defined]
        if weight.is_meta:  # shape only (the meta norm goes through slow Python reference kernels)
            g = torch.empty((weight.shape[0],) + (1,) * (weight.dim() - 1), dtype=weight.dtype, device="meta")
        else:
            with torch.no_grad():
                g = torch.norm_except_dim(weight, 2, 0)
        # Same registration order as the legacy hook (g, then v), so state-dict order matches too.
        self.register_parameter("weight_g", nn.Parameter(g))  # type: ignore[attr-defined]
        self.register_parameter("weight_v", nn.Parameter(weight.detach()))  # type: ignore[attr-defined]
        self.register_buffer("_folded_weight", None, persistent=False)  # type: ignore[attr-defined]
        self.register_load_state_dict_post_hook(_refresh_fold)  # type: ignore[attr-defined]

    def effective_weight(self) -> Tensor:
        """``g * v / ||v||`` (norm over all dims but 0), exactly as the legacy weight norm computes it."""
        return torch._weight_norm(self.weight_v, self.weight_g, 0)

    def _weight(self) -> Tensor:
        w = self._folded_weight
        return self.effective_weight() if w is None else w

    @property
    def is_folded(self) -> bool:
        return self._folded_weight is not None

    def fold(self) -> None:
        """Cache the effective weight for inference (outputs unchanged, state dict unchanged)."""
        if self.weight_v.is_meta:  # placeholder; loading real weights refreshes it (see _refresh_fold)
            self._folded_weight = torch.empty_like(self.weight_v)
            return
        with torch.no_grad():
            self._folded_weight = self.effective_weight().detach()

    def unfold(self) -> None:
        """Drop the cached weight; the norm is recomputed from ``weight_g``/``weight_v`` on every call."""
        self._folded_weight = None

    def train(self, mode: bool = True) -> Any:
        if mode:
            self.unfold()
        return super().train(mode)  # type: ignore[misc]


def _refresh_fold(module: nn.Module, _incompatible_keys: Any) -> None:
    """After new weights are loaded, recompute a fold that was active (also turns a meta fold real)."""
    if getattr(module, "_folded_weight", None) is not None:
        module.fold()  # type: ignore[operator]


class WNConv1d(_WeightNorm, nn.Conv1d):
    """``nn.Conv1d`` under legacy weight norm (dim 0): keys ``weight_g`` (out,1,1), ``weight_v``, ``bias``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._setup_weight_norm()

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self._weight(), self.bias)


class WNConvTranspose1d(_WeightNorm, nn.ConvTranspose1d):
    """``nn.ConvTranspose1d`` under legacy weight norm (dim 0): ``weight_g`` has shape (in,1,1)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._setup_weight_norm()

    def forward(self, x: Tensor) -> Tensor:
        return F.conv_transpose1d(
            x,
            self._weight(),
            self.bias,
            self.stride,
            self.padding,
            self.output_padding,
            self.groups,
            self.dilation,
        )


def fold_weight_norm(module: nn.Module) -> nn.Module:
    """Fold every weight-normed conv inside ``module`` (see the module docstring); returns ``module``."""
    for m in module.modules():
        if isinstance(m, _WeightNorm):
            m.fold()
    return module


def unfold_weight_norm(module: nn.Module) -> nn.Module:
    """Undo ``fold_weight_norm``; returns ``module``."""
    for m in module.modules():
        if isinstance(m, _WeightNorm):
            m.unfold()
    return module
