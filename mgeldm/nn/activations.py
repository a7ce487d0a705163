"""SnakeBeta, the periodic activation of the Oobleck autoencoder.

``f(x) = x + 1 / (beta + 1e-9) * sin(alpha * x)^2`` per channel, with ``alpha = exp(a)`` and
``beta = exp(b)``: the parameters ``alpha`` / ``beta`` hold the logs ``a`` / ``b`` (zeros at init).
The forward arithmetic follows the original operation by operation, so values match it bit for bit.

Autograd through the plain expression keeps three full-size intermediates per activation alive for
the backward pass. ``_SnakeBetaFn`` keeps only the input and recomputes ``sin`` in the backward,
which cuts the activation memory of AE training substantially at the cost of one extra ``sin``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

__all__ = ["SnakeBeta", "snake_beta"]

_NO_DIV_BY_ZERO = 1e-9


def _coefficients(alpha: Tensor, beta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``exp(alpha)``, ``exp(beta)`` and ``1 / (exp(beta) + 1e-9)``, shaped ``(1, C, 1)``."""
    a = alpha[None, :, None].exp()
    eb = beta[None, :, None].exp()
    return a, eb, (eb + _NO_DIV_BY_ZERO).reciprocal()


def _forward_inplace(x: Tensor, a: Tensor, inv_b: Tensor) -> Tensor:
    """``x + inv_b * sin(a * x)^2`` using one temporary (same operations, same values)."""
    y = torch.mul(x, a)
    y.sin_().square_().mul_(inv_b)
    return y.add_(x)


class _SnakeBetaFn(torch.autograd.Function):
    """SnakeBeta with a memory-lean backward (saves ``x`` only).

    With ``s = sin(a x)``: ∂f/∂x = 1 + inv_b · a · sin(2 a x); ∂f/∂a = inv_b · x · sin(2 a x);
    ∂f/∂inv_b = s²; and by the chain rule ∂a/∂alpha = a, ∂inv_b/∂beta = −inv_b² · exp(beta).
    """

    @staticmethod
    def forward(ctx, x: Tensor, alpha: Tensor, beta: Tensor) -> Tensor:  # type: ignore[override]
        with torch.no_grad():
            a, eb, inv_b = _coefficients(alpha, beta)
            out = _forward_inplace(x, a, inv_b)
        ctx.save_for_backward(x, alpha, beta)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:  # type: ignore[override]
        x, alpha, beta = ctx.saved_tensors
        need_x, need_alpha, need_beta = ctx.needs_input_grad
        a, eb, inv_b = _coefficients(alpha, beta)
        ax = torch.mul(x, a)
        grad_x = grad_alpha = grad_beta = None
        if need_beta:
            s2 = torch.sin(ax).square_()
            grad_beta = (grad * s2).sum(dim=(0, 2)) * (-(inv_b * inv_b) * eb).view(-1)
            del s2
        if need_x or need_alpha:
            t = ax.mul_(2.0).sin_().mul_(grad).mul_(inv_b)  # grad · inv_b · sin(2ax), reusing ax
            if need_alpha:
                grad_alpha = (t * x).sum(dim=(0, 2)) * a.view(-1)
            if need_x:
                grad_x = t.mul_(a).add_(grad)
        return grad_x, grad_alpha, grad_beta


def snake_beta(x: Tensor, alpha: Tensor, beta: Tensor) -> Tensor:
    """Functional SnakeBeta on ``(B, C, T)`` with log-scale ``alpha``/``beta`` of shape ``(C,)``."""
    if torch.is_grad_enabled() and (x.requires_grad or alpha.requires_grad or beta.requires_grad):
        return _SnakeBetaFn.apply(x, alpha, beta)
    a, _, inv_b = _coefficients(alpha, beta)
    return _forward_inplace(x, a, inv_b)


class SnakeBeta(nn.Module):
    """Per-channel SnakeBeta on ``(B, C, T)`` with log-scale ``alpha`` and ``beta`` of shape ``(C,)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = int(channels)
        self.alpha = nn.Parameter(torch.zeros(self.channels))
        self.beta = nn.Parameter(torch.zeros(self.channels))

    def extra_repr(self) -> str:
        return f"{self.channels}"

    def forward(self, x: Tensor) -> Tensor:
        return snake_beta(x, self.alpha, self.beta)
