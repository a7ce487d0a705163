"""LightningModule training the three-track DiT on pre-encoded latents (docs/compatibility.md#dit-training).

One optimizer step per batch, written out by hand (manual optimisation) so that skipping a
non-finite step, clipping after AMP un-scaling, and the EMA update are explicit:

    t ~ Sobol (eps 0.02), shared by the tracks; with prob. p one track per sample is "given"
    (t_k = 0, clean input, loss mask 0); z_t = α z0 + σ ε; v = α ε − σ z0;
    v̂ = DiT(z_t, t, CLAP per track with CFG dropout); L = masked MSE(v̂, v).

Fixes of docs/compatibility.md#differences: mixture-only pretraining masks the source track's loss and gives it an
all-zero
condition (I.1, I.2); the audio/text blend weights are drawn per sample unless
``blend_per_batch`` (I.4); every rank draws its own timesteps, noise and dropout (I.10).
All randomness comes from one ``torch.Generator`` per rank plus the Sobol engine, both saved in
the checkpoint, so ``ckpt_path=last`` continues the exact sequence.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from mgeldm import checks
from mgeldm.diffusion.schedule import SobolTimestepSampler, noisy, v_target
from mgeldm.models.tracks import CLAP_KEYS, LATENT_KEYS, MIX, SRC, SUBMIX, TRACK_NAMES
from mgeldm.training.base import NonFiniteLossError, SeededTrainingModule, merged_recipe, recipe_defaults
from mgeldm.training.losses import masked_mse, per_track_mse
from mgeldm.training.schedulers import build_adamw, build_ema, build_inverse_lr

__all__ = ["DiTTrainingModule", "NonFiniteLossError"]


# Training patterns of ``task_mix``: (given track or None, the one track whose condition is kept), i.e. the
# inference tasks: extraction gives the mix and prompts the source, partial generation gives the submix and
# prompts the source, accompaniment gives the source and prompts the submix, total generation gives nothing
# and prompts the mix. ``original`` is the original's draw (timestep dropout + independent CFG dropout).
TASK_PATTERNS: dict[str, tuple[int | None, int]] = {
    "extract": (MIX, SRC),
    "partial": (SUBMIX, SRC),
    "accomp": (SRC, SUBMIX),
    "total": (None, MIX),
}
ORIGINAL_PATTERN = "original"


def blend_source_condition(src_audio: Tensor, prompts: list[str], conditioner: Any, w: Tensor) -> Tensor:
    """The source condition of training: ``w[:, 0]·audio + w[:, 1]·text(prompt)``, the audio alone where the
    prompt is empty. ``src_audio`` (B, G), ``w`` (B, 2) weights summing to 1."""
    has_text = torch.tensor([bool(p) for p in prompts], device=src_audio.device)
    if not has_text.any():
        return src_audio
    text = src_audio.new_zeros(src_audio.shape)
    idx = has_text.nonzero()[:, 0]
    emb = conditioner.embed_text([prompts[i] for i in idx.tolist()])
    text[idx] = emb.to(device=src_audio.device, dtype=src_audio.dtype).reshape(len(idx), -1)
    blended = w[:, :1] * src_audio + w[:, 1:] * text
    return torch.where(has_text[:, None], blended, src_audio)


def parse_task_t1(node: Any, task_mix: Any) -> dict[str, float]:
    """``task_t1`` -> {pattern: probability that a row of it is trained at t = 1 exactly}; every pattern named must
    be one of ``task_mix``'s task patterns."""
    from mgeldm.errors import UserError

    if node is None:
        return {}
    if not isinstance(node, Mapping):
        raise UserError(
            f"trainer.recipe.task_t1: {node!r}; expected null or a mapping of task patterns to probabilities"
        )
    known = [n for n in (task_mix or {}) if n in TASK_PATTERNS]
    out = {}
    for name, p in node.items():
        if name not in known:
            raise UserError(
                f"trainer.recipe.task_t1.{name}: not a task pattern of trainer.recipe.task_mix "
                f"(expected some of {known})"
            )
        if not checks.is_number(p) or not 0 <= p <= 1:
            raise UserError(f"trainer.recipe.task_t1.{name}: {p!r}; expected a probability in [0, 1]")
        out[name] = float(p)
    return out


def parse_task_mix(node: Any, num_tracks: int) -> tuple[list[str], Tensor] | None:
    """``task_mix`` -> (pattern names, probabilities), or None for the original draw alone."""
    if node is None:
        return None
    from mgeldm.errors import UserError

    allowed = [*TASK_PATTERNS, ORIGINAL_PATTERN]
    if not isinstance(node, Mapping) or not node:
        raise UserError(f"trainer.recipe.task_mix: {node!r}; expected null or a mapping of {allowed} to weights")
    unknown = sorted(set(node) - set(allowed))
    if unknown:
        raise UserError(f"trainer.recipe.task_mix: unknown pattern(s) {unknown}; expected some of {allowed}")
    if num_tracks != 3 and set(node) - {ORIGINAL_PATTERN}:
        raise UserError("trainer.recipe.task_mix: task patterns need the three tracks mix, submix, source")
    weights = {}
    for name, w in node.items():
        if not checks.is_number(w) or w < 0:
            raise UserError(f"trainer.recipe.task_mix.{name}: {w!r}; expected a number >= 0")
        weights[name] = float(w)
    total = sum(weights.values())
    if total <= 0:
        raise UserError("trainer.recipe.task_mix: the weights sum to 0")
    names = list(weights)
    return names, torch.tensor([weights[n] / total for n in names])


class DiTTrainingModule(SeededTrainingModule):
    """Trains ``diffusion.model_dit``; ``diffusion`` is the MGELDM (or any module with ``model_dit``).

    The checkpoint layout follows the original: ``diffusion.*`` and ``diffusion_ema.ema_model.*``.
    ``conditioner`` (CLAP text) is kept outside the module registry: it is neither trained nor saved.
    """

    def __init__(
        self,
        diffusion: nn.Module,
        recipe: Mapping[str, Any] | None = None,
        *,
        conditioner: Any | None = None,
        flops_per_sample: float | None = None,
        peak_flops: float | None = None,
    ) -> None:
        super().__init__()
        self.recipe = merged_recipe(recipe, recipe_defaults("dit"))
        self.diffusion = diffusion
        pretransform = getattr(diffusion, "pretransform", None)
        if pretransform is not None:
            pretransform.requires_grad_(False).eval()
        dit = diffusion.model_dit
        dit.gradient_checkpointing = bool(self.recipe["activation_checkpointing"])
        self.diffusion_ema = build_ema(dit, self.recipe["ema"])
        self.num_tracks = int(dit.num_tracks)
        self.cond_dim = int(dit.global_cond_dim)
        # not a submodule: never saved or trained; text_conditioning=false trains on the audio conditions alone
        object.__setattr__(self, "conditioner", conditioner if self.recipe["text_conditioning"] else None)
        object.__setattr__(self, "_dit_call", torch.compile(dit) if self.recipe["compile"] else dit)
        self.mask_loss_track = SRC if self.recipe["mixture_only_pretraining"] else None
        self.task_mix = parse_task_mix(self.recipe["task_mix"], self.num_tracks)
        self.task_t1 = parse_task_t1(self.recipe["task_t1"], self.recipe["task_mix"])
        if self.task_mix is not None and self.mask_loss_track is not None:
            from mgeldm.errors import UserError

            raise UserError("trainer.recipe.task_mix: not with mixture_only_pretraining (its items hold no sources)")
        self.flops_per_sample, self.peak_flops = flops_per_sample, peak_flops
        self.sobol: SobolTimestepSampler | None = None

    # ------------------------------------------------------------------ randomness

    def reset_extra_rng(self, seed: int) -> None:
        self.sobol = SobolTimestepSampler(eps=float(self.recipe["timestep_eps"]), seed=seed)

    def extra_rng_state(self) -> list[int]:
        return [self.sobol.seed, self.sobol.num_generated]

    def load_extra_rng_state(self, state: list[int]) -> None:
        self.sobol.load_state_dict({"seed": state[0], "num_generated": state[1]})

    def on_fit_start(self) -> None:
        super().on_fit_start()
        if self.conditioner is not None and hasattr(self.conditioner, "to"):
            self.conditioner.to(self.device)

    # ------------------------------------------------------------------ the recipe

    def assemble_conditioning(self, batch: Mapping[str, Any], generator: torch.Generator | None = None) -> Tensor:
        """(B, K, G) per-track conditions: mix/submix audio CLAP; src = w_a·audio + w_t·text
        (docs/compatibility.md#dit-training).

        Empty or missing source prompts use the audio CLAP alone (so mix-only items, whose audio
        CLAP is zero, get zeros); mixture-only pretraining forces zeros for the source (difference 2 of
        docs/compatibility.md).
        """
        mix = batch[CLAP_KEYS[MIX]].float()
        b = mix.shape[0]
        src_audio = batch[CLAP_KEYS[SRC]].float()
        u = self._rand(1 if self.recipe["blend_per_batch"] else b, 2, generator=generator) + 1e-6
        w = (u / u.sum(-1, keepdim=True)).expand(b, 2)
        src = src_audio
        prompts = batch.get("src_prompt")
        if self.conditioner is not None and prompts is not None and self.mask_loss_track != SRC:
            src = blend_source_condition(src_audio, prompts, self.conditioner, w)
        if self.mask_loss_track == SRC:
            src = torch.zeros_like(src_audio)
        return torch.stack([mix, batch[CLAP_KEYS[SUBMIX]].float(), src], dim=1)

    def latents(self, batch: Mapping[str, Any]) -> Tensor:
        """z0 = [mix ‖ submix ‖ src] (B, K·C, T) in the DiT's space: divided by the pretransform scale (1.0
        in the original), then mapped by the per-track normalisation when the model has one."""
        z0 = torch.cat([batch[key] for key in LATENT_KEYS], dim=1).float()
        pretransform = getattr(self.diffusion, "pretransform", None)
        scale = float(getattr(pretransform, "scale", 1.0)) if pretransform is not None else 1.0
        z0 = z0 / scale if scale != 1.0 else z0
        to_dit = getattr(self.diffusion, "to_dit_space", None)
        return to_dit(z0) if to_dit is not None else z0

    def draw_t(self, b: int, sobol: SobolTimestepSampler | None = None) -> Tensor:
        """(B,) diffusion times: the Sobol draw, then ``timestep_shift`` s: t -> s t / (1 + (s - 1) t), which keeps
        0 and 1 and moves the draws toward the noisy end for s > 1 (1: the original's uniform draw)."""
        t = (sobol or self.sobol)(b, device=self.device)
        s = float(self.recipe["timestep_shift"])
        return t if s == 1.0 else s * t / (1.0 + (s - 1.0) * t)

    def draw_timesteps(
        self, b: int, generator: torch.Generator | None = None, sobol: SobolTimestepSampler | None = None
    ) -> tuple[Tensor, Tensor]:
        """Per-track t (B, K) and loss mask (B, K), with timestep dropout and the mixture-only mask."""
        k = self.num_tracks
        t = self.draw_t(b, sobol)[:, None].repeat(1, k)
        mask = torch.ones(b, k, device=self.device)
        drop = self._rand(b, generator=generator) < float(self.recipe["timestep_dropout_prob"])
        track = (self._rand(b, generator=generator) * k).long().clamp_max(k - 1)
        given = torch.nn.functional.one_hot(track, k).bool() & drop[:, None]  # (B, K), no host sync
        t = t.masked_fill(given, 0.0)
        mask = mask.masked_fill(given, 0.0)
        if self.mask_loss_track is not None:
            mask[:, self.mask_loss_track] = 0.0
        return t, mask

    def t1_rows(self, b: int, generator: torch.Generator | None = None) -> Tensor | None:
        """(B,) rows trained at t = 1 (``task_t1``), from the patterns drawn last; None without ``task_t1``."""
        if not self.task_t1:
            return None
        names = self.task_mix[0]
        p = torch.tensor([self.task_t1.get(n, 0.0) for n in names], device=self.device)[self._last_pick]
        return self._rand(b, generator=generator) < p

    def draw_task_patterns(self, b: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``task_mix``: one pattern per sample -> given (B, K), kept conditions (B, K), CFG dropout (B, K).

        A task pattern gives its track (t = 0, no loss) and keeps only its prompted track's condition,
        which training still drops with ``cfg_dropout_prob`` (the unconditional half of CFG); ``original``
        rows draw timestep dropout and independent per-track condition dropout as the original does.
        """
        names, probs = self.task_mix
        k = self.num_tracks
        pick = torch.multinomial(probs, b, replacement=True, generator=generator or self.generator).to(self.device)
        self._last_pick = pick
        table_given = torch.zeros(len(names), k, dtype=torch.bool)
        table_cond = torch.zeros(len(names), k, dtype=torch.bool)
        for i, name in enumerate(names):
            if name == ORIGINAL_PATTERN:
                continue
            given, cond = TASK_PATTERNS[name]
            if given is not None:
                table_given[i, given] = True
            table_cond[i, cond] = True
        given, keep = table_given.to(self.device)[pick], table_cond.to(self.device)[pick]
        original = torch.tensor([n == ORIGINAL_PATTERN for n in names], device=self.device)[pick]
        p_t, p_c = float(self.recipe["timestep_dropout_prob"]), float(self.recipe["cfg_dropout_prob"])
        drop_t = self._rand(b, generator=generator) < p_t
        track = (self._rand(b, generator=generator) * k).long().clamp_max(k - 1)
        orig_given = torch.nn.functional.one_hot(track, k).bool() & drop_t[:, None]
        cond_drop = self._rand(b, k, generator=generator) < p_c
        given = torch.where(original[:, None], orig_given, given)
        keep = torch.where(original[:, None], torch.ones_like(keep), keep)
        return given, keep, cond_drop

    def compute_loss(
        self,
        batch: Mapping[str, Any],
        generator: torch.Generator | None = None,
        sobol: SobolTimestepSampler | None = None,
    ) -> dict[str, Tensor]:
        """One forward of the recipe; returns loss, per-track losses, and the tensors tests inspect.

        ``generator``/``sobol`` default to the training streams; validation passes fresh ones.
        """
        gen = generator or self.generator
        z0 = self.latents(batch)
        b = z0.shape[0]
        dit = self.diffusion.model_dit
        if self.task_mix is None:
            t, mask = self.draw_timesteps(b, gen, sobol)
        else:
            t = self.draw_t(b, sobol)[:, None].repeat(1, self.num_tracks)
            given, keep, cond_drop = self.draw_task_patterns(b, gen)
            t1 = self.t1_rows(b, gen)
            if t1 is not None:
                t = t.masked_fill(t1[:, None], 1.0)
            t, mask = t.masked_fill(given, 0.0), (~given).float()
            keep = keep & ~cond_drop if dit.training else keep
        eps = torch.randn(z0.shape, generator=gen, device=gen.device).to(z0)
        zt, v = noisy(z0, eps, t), v_target(z0, eps, t)
        cond = self.assemble_conditioning(batch, gen)
        if self.task_mix is not None:
            cond = cond * keep[..., None].to(cond.dtype)
        elif dit.training and float(self.recipe["cfg_dropout_prob"]) > 0:
            # the DiT's own CFG dropout (docs/compatibility.md#the-diffusion-transformer), called here so a compiled
            # forward stays graph-clean
            cond = dit.cfg_dropout(cond, float(self.recipe["cfg_dropout_prob"]), gen)
        v_hat = self._dit_call(zt, t, cond)
        loss = masked_mse(v_hat, v, mask, self.num_tracks)
        return {
            "loss": loss,
            "per_track": per_track_mse(v_hat, v, mask, self.num_tracks),
            "v_hat": v_hat,
            "v": v,
            "t": t,
            "mask": mask,
            "cond": cond,
            "z_t": zt,
        }

    # ------------------------------------------------------------------ Lightning hooks

    def configure_optimizers(self):
        opt = build_adamw(self.diffusion.model_dit.parameters(), self.recipe["optimizer"])
        sch = build_inverse_lr(opt, self.recipe["scheduler"])
        return [opt], [{"scheduler": sch, "interval": "step"}]

    def params_for(self, optimizer_index: int) -> list[nn.Parameter]:
        return list(self.diffusion.model_dit.parameters())

    def clip_for(self, optimizer_index: int) -> float | None:
        return self.recipe["grad_clip_norm"]

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        if self.generator is None:
            self.setup_rng()
        out = self.compute_loss(batch)
        loss = out["loss"]
        opt, sch = self.optimizers(), self.lr_schedulers()
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        # Checked once the backward is queued: the one host sync of the step then waits for work
        # already on the GPU instead of stalling it between forward and backward.
        if not self.loss_is_finite(loss):
            opt.zero_grad(set_to_none=True)
            self.log("train/nonfinite_steps", float(self.nonfinite_total))
            return None
        opt.step()  # clipping happens in on_before_optimizer_step, after AMP un-scaling
        sch.step()
        self.diffusion_ema.update()
        if self.should_log():
            self._log_step(loss, out["per_track"], int(out["v"].shape[0]))
        return None

    def _log_step(self, loss: Tensor, per_track: Tensor, batch_size: int) -> None:
        stats = {
            "train/loss": float(loss.detach()),
            "train/lr": self.optimizers().param_groups[0]["lr"],
            "train/nonfinite_steps": float(self.nonfinite_total),
        }
        for name, value in zip(TRACK_NAMES, per_track.tolist()):
            if not math.isnan(value):
                stats[f"train/loss_{name}"] = value
        if 0 in self.last_grad_norms:
            stats["train/grad_norm"] = float(self.last_grad_norms[0])
        stats.update(self.throughput(batch_size, self.flops_per_sample, self.peak_flops))
        b = batch_size * max(1, self.trainer.world_size)
        self.log_dict(stats, on_step=True, on_epoch=False, batch_size=b)
        self.log("loss", stats["train/loss"], prog_bar=True, on_step=True, on_epoch=False, logger=False, batch_size=b)

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        # fixed streams per batch: validation never disturbs the training RNG (exact resume)
        gen = torch.Generator(device=self.device).manual_seed(int(self.recipe["seed"]) + 7919 * (batch_idx + 1))
        sobol = SobolTimestepSampler(eps=float(self.recipe["timestep_eps"]), seed=int(self.recipe["seed"]) + batch_idx)
        out = self.compute_loss(batch, gen, sobol)
        self.log("val/loss", out["loss"], sync_dist=True, batch_size=out["v"].shape[0])

    # ------------------------------------------------------------------ export

    def ema_model_dit(self) -> nn.Module:
        """The EMA copy of ``model_dit`` (what unwrap exports and the demo renders with)."""
        return self.diffusion_ema.ema_model
