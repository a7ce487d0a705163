"""Learning-rate schedules and the EMA factory (docs/compatibility.md#autoencoder-training,
docs/compatibility.md#dit-training)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


def inverse_lr(
    step: int, base_lr: float, *, inv_gamma: float, power: float, warmup: float, final_lr: float = 0.0
) -> float:
    """lr_n = (1 − warmup^(n+1)) · max(final_lr, base_lr · (1 + n/inv_gamma)^(−power))
    (docs/compatibility.md#autoencoder-training)."""
    warm = 1.0 - warmup ** (step + 1)
    return warm * max(final_lr, base_lr * (1.0 + step / inv_gamma) ** (-power))


class InverseLR(LRScheduler):
    """Inverse-decay schedule with exponential warmup; n is the number of ``step()`` calls so far."""

    def __init__(
        self,
        optimizer: Optimizer,
        inv_gamma: float = 1.0,
        power: float = 1.0,
        warmup: float = 0.0,
        final_lr: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        if not 0.0 <= warmup < 1.0:
            raise ValueError("InverseLR: warmup must be in [0, 1)")
        self.inv_gamma, self.power, self.warmup, self.final_lr = (
            float(inv_gamma),
            float(power),
            float(warmup),
            float(final_lr),
        )
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        n = self.last_epoch
        return [
            inverse_lr(n, base, inv_gamma=self.inv_gamma, power=self.power, warmup=self.warmup, final_lr=self.final_lr)
            for base in self.base_lrs
        ]


def build_adamw(params, cfg: Mapping[str, Any]) -> torch.optim.AdamW:
    """AdamW from ``{lr, betas, weight_decay[, fused]}``; ``fused`` null = fused kernels when all params are on CUDA."""
    params = list(params)
    fused = cfg.get("fused")
    if fused is None:
        fused = bool(params) and all(p.is_cuda for p in params)
    return torch.optim.AdamW(
        params,
        lr=float(cfg["lr"]),
        betas=tuple(float(b) for b in cfg.get("betas", (0.9, 0.999))),
        weight_decay=float(cfg.get("weight_decay", 0.0)),
        fused=bool(fused) or None,
    )


def build_inverse_lr(optimizer: Optimizer, cfg: Mapping[str, Any]) -> InverseLR:
    """InverseLR from ``{inv_gamma, power, warmup, final_lr}``."""
    return InverseLR(
        optimizer,
        inv_gamma=float(cfg.get("inv_gamma", 1.0)),
        power=float(cfg.get("power", 1.0)),
        warmup=float(cfg.get("warmup", 0.0)),
        final_lr=float(cfg.get("final_lr", 0.0)),
    )


def build_ema(model: nn.Module, cfg: Mapping[str, Any]):
    """ema-pytorch ``EMA`` with the original's settings (beta 0.9999, power 3/4, update_after_step 1).

    With ema-pytorch ≥ 0.2 the decay after n updates is min(beta, 1 − (n − 1)^(−power)) and the first
    two updates copy the weights, as docs/compatibility.md#autoencoder-training states (tests/training/test_ema_sched.py
    checks it).
    The online model is not registered inside the EMA (it is the training module's own).
    """
    from ema_pytorch import EMA

    ema_model = copyable_deepcopy(model)
    return EMA(
        model,
        ema_model=ema_model,
        beta=float(cfg.get("beta", 0.9999)),
        power=float(cfg.get("power", 0.75)),
        inv_gamma=float(cfg.get("inv_gamma", 1.0)),
        update_every=int(cfg.get("update_every", 1)),
        update_after_step=int(cfg.get("update_after_step", 1)),
        include_online_model=False,
        use_foreach=hasattr(torch, "_foreach_lerp_"),
    )


def copyable_deepcopy(model: nn.Module) -> nn.Module:
    """``deepcopy`` that also works after a forward pass through legacy ``weight_norm`` modules.

    Legacy weight norm leaves a non-leaf ``weight`` attribute behind, which deepcopy refuses; it is
    recomputed at every forward anyway, so a detached copy is put in its place first.
    """
    from torch.nn.utils.weight_norm import WeightNorm

    with torch.no_grad():
        for module in model.modules():
            for hook in module._forward_pre_hooks.values():
                if isinstance(hook, WeightNorm):
                    setattr(module, hook.name, hook.compute_weight(module).detach())
    return copy.deepcopy(model)
