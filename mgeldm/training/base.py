"""What the AE and DiT training modules share: per-rank random streams saved in the checkpoint,
the non-finite-loss guard, clipping after AMP un-scaling, and throughput logging.

Both modules use manual optimisation (one explicit ``opt.step()`` per batch) so that these pieces
are visible in the code rather than spread over Lightning flags.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

RANK_SEED_STRIDE = 1000


class NonFiniteLossError(RuntimeError):
    """Raised when too many optimizer steps in a row had a non-finite loss."""


def recipe_defaults(trainer: str) -> dict[str, Any]:
    """The ``recipe`` node of ``configs/trainer/<trainer>.yaml``: the one owner of a training recipe's defaults."""
    from mgeldm.config import config_file

    return config_file(f"trainer/{trainer}.yaml")["recipe"]


def merged_recipe(recipe: Mapping[str, Any] | None, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``defaults`` updated with ``recipe`` (nested dicts merged one level); unknown keys refused."""
    from mgeldm.errors import UserError

    out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in defaults.items()}
    for k, v in (recipe or {}).items():
        if k not in out:
            raise UserError(f"training recipe: unknown key `{k}`; expected one of {sorted(out)}")
        out[k] = {**out[k], **dict(v)} if isinstance(out[k], dict) and isinstance(v, Mapping) else v
    return out


class SeededTrainingModule(pl.LightningModule):
    """Base class: ``self.generator`` (one per rank, seed + 1000·rank, difference 10 of docs/compatibility.md) and the
    guards.

    Subclasses set ``self.recipe`` (with ``seed`` and ``max_nonfinite_steps``), may override
    :meth:`extra_rng_state` / :meth:`load_extra_rng_state` (e.g. the Sobol engine) and
    :meth:`clip_for` (max grad norm per optimizer).
    """

    recipe: dict[str, Any]

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.generator: torch.Generator | None = None
        self._pending_rng: dict[str, Any] | None = None
        self.nonfinite_in_a_row = 0
        self.nonfinite_total = 0
        self.last_grad_norms: dict[int, Tensor] = {}
        self._t_last: tuple[float, int] | None = None
        self.model_config: dict | None = (
            None  # stored in checkpoints as plain containers (docs/compatibility.md#checkpoints)
        )

    # -------------------------------------------------------------- random streams

    @property
    def rank_seed(self) -> int:
        rank = self.trainer.global_rank if self._trainer is not None else 0
        return int(self.recipe["seed"]) + RANK_SEED_STRIDE * int(rank)

    def extra_rng_state(self) -> list[int]:
        """Integers that, with the generator, restore this rank's streams (e.g. Sobol draws so far)."""
        return []

    def load_extra_rng_state(self, state: list[int]) -> None:
        pass

    def reset_extra_rng(self, seed: int) -> None:
        pass

    def setup_rng(self, device: torch.device | str | None = None) -> None:
        """(Re)create this rank's streams, then apply the state loaded from a checkpoint, if any."""
        device = torch.device(device if device is not None else self.device)
        seed = self.rank_seed
        pending, self._pending_rng = self._pending_rng, None
        if pending is not None and pending.get("fresh_seed") is not None:
            seed = int(pending["fresh_seed"])
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)
        self.reset_extra_rng(seed)
        if pending is not None:
            if pending.get("generator") is not None:
                self.generator.set_state(pending["generator"].to(torch.uint8).cpu())
                self.load_extra_rng_state([int(v) for v in pending.get("extra", [])])
            self.nonfinite_in_a_row = int(pending.get("nonfinite_in_a_row", 0))
            self.nonfinite_total = int(pending.get("nonfinite_total", 0))

    def on_fit_start(self) -> None:
        if self.generator is None or self.generator.device != self.device or self._pending_rng is not None:
            self.setup_rng()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Called on every rank (Lightning writes rank 0's dict): gather all ranks' streams so that a
        # resume on the same number of ranks continues each one exactly.
        if self.model_config is not None:
            checkpoint["model_config"] = self.model_config
        if self.generator is None:
            return
        gen = self.generator.get_state().to(torch.int64)
        extra = torch.tensor(self.extra_rng_state(), dtype=torch.int64)
        world = self.trainer.world_size if self._trainer is not None else 1
        if world > 1:
            gens = self.all_gather(gen.to(self.device)).cpu()
            extras = self.all_gather(extra.to(self.device)).cpu() if extra.numel() else torch.zeros(world, 0)
        else:
            gens, extras = gen[None], extra[None]
        checkpoint["mgeldm_rng"] = {
            "per_rank": [{"generator": gens[r].to(torch.uint8), "extra": extras[r].tolist()} for r in range(world)],
            "nonfinite_in_a_row": self.nonfinite_in_a_row,
            "nonfinite_total": self.nonfinite_total,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        rng = checkpoint.get("mgeldm_rng")
        if not rng:
            return
        rank = self.trainer.global_rank if self._trainer is not None else 0
        world = self.trainer.world_size if self._trainer is not None else 1
        per_rank = rng.get("per_rank", [])
        pending = {
            "nonfinite_in_a_row": rng.get("nonfinite_in_a_row", 0),
            "nonfinite_total": rng.get("nonfinite_total", 0),
        }
        if len(per_rank) == world:
            pending.update(per_rank[rank])
        else:
            # another number of ranks: fresh streams that do not repeat the first run's draws
            pending["fresh_seed"] = self.rank_seed + 7_919 * int(checkpoint.get("global_step", 0))
        self._pending_rng = pending

    def _rand(self, *shape: int, generator: torch.Generator | None = None) -> Tensor:
        gen = generator or self.generator
        return torch.rand(shape, generator=gen, device=gen.device).to(self.device)

    # -------------------------------------------------------------- guards

    def loss_is_finite(self, loss: Tensor) -> bool:
        """True when the loss is finite on every rank (all ranks must agree to skip a step under DDP)."""
        bad = (~torch.isfinite(loss.detach())).float().reshape(())
        if self._trainer is not None and self.trainer.world_size > 1:
            bad = self.trainer.strategy.reduce(bad, reduce_op="sum")
        finite = bool(bad.item() == 0)
        if finite:
            self.nonfinite_in_a_row = 0
            return True
        self.nonfinite_in_a_row += 1
        self.nonfinite_total += 1
        limit = int(self.recipe["max_nonfinite_steps"])
        if self.nonfinite_in_a_row >= limit:
            raise NonFiniteLossError(
                f"training stopped: the loss was non-finite for {self.nonfinite_in_a_row} steps in a row "
                f"(limit trainer.recipe.max_nonfinite_steps={limit}, {self.nonfinite_total} skipped in total); "
                "lower the learning rate or try precision=bf16-mixed / 32-true"
            )
        return False

    def clip_for(self, optimizer_index: int) -> float | None:
        return None

    def params_for(self, optimizer_index: int) -> list[torch.nn.Parameter]:
        raise NotImplementedError

    def on_before_optimizer_step(self, optimizer) -> None:
        # Lightning un-scales fp16 gradients before this hook, except for optimizers that un-scale
        # inside their step (fused AdamW): those are un-scaled here, so the clip always sees the true
        # norm (the original clipped scaled gradients, docs/compatibility.md#autoencoder-training). GradScaler.step
        # accepts that order.
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        if scaler is not None and getattr(optimizer, "_step_supports_amp_scaling", False):
            try:
                scaler.unscale_(optimizer)
            except RuntimeError:  # already un-scaled since the last update()
                pass
        optimizers = self.trainer.optimizers
        idx = next(i for i, o in enumerate(optimizers) if o is optimizer or getattr(o, "optimizer", None) is optimizer)
        params = [p for p in self.params_for(idx) if p.grad is not None]
        clip = self.clip_for(idx)
        self.last_grad_norms[idx] = torch.nn.utils.clip_grad_norm_(params, float(clip) if clip else float("inf"))

    # -------------------------------------------------------------- logging

    def should_log(self) -> bool:
        every = max(1, int(getattr(self.trainer, "log_every_n_steps", 1) or 1))
        return self.global_step % every == 0 or self.global_step == 1

    def throughput(
        self, batch_size: int, flops_per_sample: float | None = None, peak_flops: float | None = None
    ) -> dict[str, float]:
        """samples/s (all ranks) since the previous call, and MFU when FLOPs are known."""
        world = max(1, self.trainer.world_size)
        now, stats = time.perf_counter(), {}
        if self._t_last is not None and now > self._t_last[0] and self.global_step > self._t_last[1]:
            sps = batch_size * world * (self.global_step - self._t_last[1]) / (now - self._t_last[0])
            stats["train/samples_per_s"] = sps
            if flops_per_sample and peak_flops:
                stats["train/mfu"] = sps * flops_per_sample / (peak_flops * world)
        self._t_last = (now, self.global_step)
        return stats
