"""LightningModule training the VAE with the adversarial recipe of docs/compatibility.md#autoencoder-training.

Even global steps train the generator (the AE), odd steps the discriminator; each optimizer has
its own AdamW + InverseLR. Generator loss = w_mrstft·MRSTFT(reals, decoded) + w_adv·L_adv +
w_fm·FM + w_kl·KL; discriminator loss = hinge L_D. Gradients are clipped at 50 (AE) and 10
(discriminator) after AMP un-scaling. The EMA of the AE is what gets exported.
``use_discriminator: false`` gives a quick MR-STFT + KL only mode (no odd steps).

Deliberate differences from the original: the EMA is updated after the generator's optimizer step
(the original updated it just before, i.e. one step behind); the discriminator step runs the AE
without a graph (same discriminator gradients, half the cost); clipping sees un-scaled gradients.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from mgeldm.training.base import SeededTrainingModule, merged_recipe, recipe_defaults
from mgeldm.training.discriminator import MultiScaleSTFTDiscriminator
from mgeldm.training.losses import MultiResolutionSTFTLoss
from mgeldm.training.schedulers import build_adamw, build_ema, build_inverse_lr

__all__ = ["AETrainingModule"]


class AETrainingModule(SeededTrainingModule):
    """Checkpoint layout as the original: ``autoencoder.*``, ``autoencoder_ema.ema_model.*``,
    ``discriminator.*`` (plus the MR-STFT FIR weights)."""

    def __init__(self, autoencoder: nn.Module, recipe: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.recipe = merged_recipe(recipe, recipe_defaults("autoencoder"))
        self.autoencoder = autoencoder
        self.autoencoder_ema = build_ema(autoencoder, self.recipe["ema"])
        self.discriminator = (
            MultiScaleSTFTDiscriminator(in_channels=int(autoencoder.io_channels), **self.recipe["discriminator"])
            if self.recipe["use_discriminator"]
            else None
        )
        self.mrstft = MultiResolutionSTFTLoss(**self.recipe["mrstft"], sample_rate=int(autoencoder.sample_rate))

    def configure_optimizers(self):
        opt = build_adamw(self.autoencoder.parameters(), self.recipe["optimizer"])
        sch = {"scheduler": build_inverse_lr(opt, self.recipe["scheduler"]), "interval": "step"}
        if self.discriminator is None:
            return [opt], [sch]
        opt_d = build_adamw(self.discriminator.parameters(), self.recipe["disc_optimizer"])
        sch_d = {"scheduler": build_inverse_lr(opt_d, self.recipe["disc_scheduler"]), "interval": "step"}
        return [opt, opt_d], [sch, sch_d]

    def params_for(self, optimizer_index: int) -> list[nn.Parameter]:
        return list((self.autoencoder if optimizer_index == 0 else self.discriminator).parameters())

    def clip_for(self, optimizer_index: int) -> float | None:
        return self.recipe["gen_grad_clip"] if optimizer_index == 0 else self.recipe["disc_grad_clip"]

    def is_generator_step(self) -> bool:
        return self.discriminator is None or self.global_step % 2 == 0

    def generator_losses(self, reals: Tensor) -> dict[str, Tensor]:
        """Forward the AE once and compute every generator term (also used for validation)."""
        r = self.recipe
        z, info = self.autoencoder.encode(reals, return_info=True, sample=True, generator=self.generator)
        decoded = self.autoencoder.decode(z)
        out = {"mrstft": self.mrstft(reals, decoded), "kl": info["kl"]}
        loss = r["mrstft_weight"] * out["mrstft"] + r["kl_weight"] * out["kl"]
        if r["l1_weight"]:
            out["l1"] = (reals - decoded).abs().mean()
            loss = loss + r["l1_weight"] * out["l1"]
        if self.discriminator is not None:
            _, adv, fm = self.discriminator.loss(reals, decoded)
            out.update(adv=adv, fm=fm)
            loss = loss + r["adversarial_weight"] * adv + r["feature_matching_weight"] * fm
        out["loss"] = loss
        return out

    def discriminator_loss(self, reals: Tensor) -> Tensor:
        # The AE forward needs no graph here: only the discriminator is stepped (same gradients
        # as the original's non-detached pass, at half the cost).
        with torch.no_grad():
            z = self.autoencoder.encode(reals, sample=True, generator=self.generator)
            decoded = self.autoencoder.decode(z)
        dis, _, _ = self.discriminator.loss(reals, decoded)
        return dis

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        if self.generator is None:
            self.setup_rng()
        reals = batch["mix_wav"] if isinstance(batch, Mapping) else batch
        optimizers = self.optimizers()
        schedulers = self.lr_schedulers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        schedulers = schedulers if isinstance(schedulers, list) else [schedulers]
        gen_step = self.is_generator_step()
        if gen_step:
            out = self.generator_losses(reals)
            loss = out["loss"]
        else:
            out = {}
            loss = self.discriminator_loss(reals)
        idx = 0 if gen_step else 1
        opt, sch = optimizers[idx], schedulers[idx]
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if not self.loss_is_finite(loss):  # after the backward is queued (one host sync per step)
            opt.zero_grad(set_to_none=True)
            self.log("train/nonfinite_steps", float(self.nonfinite_total))
            return None
        opt.step()  # clipping (50 / 10) in on_before_optimizer_step, after AMP un-scaling
        sch.step()
        if gen_step:
            self.autoencoder_ema.update()
        if self.should_log() or (not gen_step and self.should_log_previous()):
            self._log_step(out, loss, gen_step, reals.shape[0], opt)
        return None

    def should_log_previous(self) -> bool:
        every = max(1, int(getattr(self.trainer, "log_every_n_steps", 1) or 1))
        return (self.global_step - 1) % every == 0

    def _log_step(self, out: dict[str, Tensor], loss: Tensor, gen_step: bool, batch_size: int, opt) -> None:
        if gen_step:
            stats = {f"train/{k}_loss" if k != "loss" else "train/loss": float(v.detach()) for k, v in out.items()}
            stats["train/lr"] = opt.param_groups[0]["lr"]
            if 0 in self.last_grad_norms:
                stats["train/grad_norm"] = float(self.last_grad_norms[0])
        else:
            stats = {"train/disc_loss": float(loss.detach()), "train/disc_lr": opt.param_groups[0]["lr"]}
            if 1 in self.last_grad_norms:
                stats["train/disc_grad_norm"] = float(self.last_grad_norms[1])
        stats["train/nonfinite_steps"] = float(self.nonfinite_total)
        stats.update(self.throughput(batch_size))
        self.log_dict(stats, on_step=True, on_epoch=False, batch_size=batch_size)
        if gen_step:
            self.log(
                "mrstft",
                stats["train/mrstft_loss"],
                prog_bar=True,
                logger=False,
                on_step=True,
                on_epoch=False,
                batch_size=batch_size,
            )

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        reals = batch["mix_wav"] if isinstance(batch, Mapping) else batch
        saved = self.generator.get_state()
        self.generator.manual_seed(int(self.recipe["seed"]) + 7919 * (batch_idx + 1))
        out = self.generator_losses(reals)
        self.generator.set_state(saved)  # validation never disturbs the training stream
        self.log_dict({f"val/{k}": v for k, v in out.items()}, sync_dist=True, batch_size=reals.shape[0])

    def ema_autoencoder(self) -> nn.Module:
        """The EMA copy of the AE (exported by unwrap_model.py, rendered by the demo)."""
        return self.autoencoder_ema.ema_model
