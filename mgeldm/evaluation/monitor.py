"""Held-out extraction scores of the EMA weights during DiT training (``trainer.monitor``), and the best checkpoint.

Every ``every_n_steps`` optimizer steps and at the run's last step, :class:`LatentMonitor` extracts each stem of
the validation songs from their mix latent with the stem's prompt (the windowed sampler of
:meth:`mgeldm.api.MGELDM.extract_latents`, run on the EMA DiT) and scores the estimates as
:mod:`mgeldm.evaluation.latent` does. It logs ``val/latent_prompt_accuracy``, ``val/latent_rel_mse``, both per
stem class (``val/latent_rel_mse_<stem>``) and any x0 probe through the run's loggers, at the optimizer step
(the number in the checkpoint names), and prints one progress line.

It runs from training hooks (the end of a batch, the end of training), so it works where Lightning's validation
loop is off (``compute: cpu``), and it leaves training as it found it: generators of its own (song n samples with
``seed + n``), the global RNG states restored, inference mode, the train/eval modes and ``requires_grad`` flags of
every module restored, and no call to the text encoder training uses (the prompts are embedded once, before
training). A run ends with bitwise the weights it has without the monitor (tested). Under DDP rank 0 scores and
broadcasts the numbers while the other ranks wait (a pass must end within the process group's timeout), so every
rank takes the same checkpoint decision.

It is a ``ModelCheckpoint`` of ``val/<metric>``: the ``save_top_k`` best steps are kept as
``checkpoints/best-stepNNNNNNNN.ckpt`` (whole training checkpoints, written through the run's atomic checkpoint
IO before ``last.ckpt`` of the same step, so ``ckpt_path=last`` resumes the ranking), and ``checkpoints/best.json``
names the best one: ``path`` (absolute), ``file`` (its name beside the json), ``step``, ``metric``, ``mode``,
``value`` and the kept ``top_k``.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import Tensor

from mgeldm.checkpoints import BEST_JSON, BEST_NAME, checkpoint_step
from mgeldm.data.prompts import canonical_prompt
from mgeldm.errors import UserError
from mgeldm.evaluation.latent import BETTER, LatentSong, latent_scores, songs_from_corpus
from mgeldm.training.callbacks import stops_after_this_batch, write_line

PREFIX = "val/"


@dataclass(frozen=True)
class MonitorSettings:
    """What a pass does (``trainer.monitor`` of configs/trainer/dit.yaml, the one owner of the defaults)."""

    every_n_steps: int
    steps: int
    cfg_scale: float
    overlap: float | None  # seconds; None: the extraction task's default for the model's window
    seed: int
    x0_times: tuple[float, ...]
    metric: str
    save_top_k: int


class PromptTable:
    """The monitor's text conditioner: the embeddings of its prompts, computed once before training."""

    sample_rate = None

    def __init__(self, conditioner: Any, prompts: Sequence[str]) -> None:
        texts = list(dict.fromkeys(prompts))
        with torch.no_grad():
            emb = conditioner.embed_text(texts).float().cpu()
        self.rows = {text: emb[i] for i, text in enumerate(texts)}
        self.dim = int(emb.shape[-1])

    def embed_text(self, texts: Sequence[str]) -> Tensor:
        return torch.stack([self.rows[t] for t in texts])

    def to(self, device=None, dtype=None) -> PromptTable:
        return self


def read_songs(
    corpus: Path, split: str, count: int | None, window: int, zero_latent: Path, ae_hash: str | None = None
) -> list[LatentSong]:
    """The first ``count`` (None: all) usable songs of ``<corpus>/<split>``, as pre_encode.py wrote them."""
    from mgeldm.data.latent_datasets import MixSubmixSourceLatentDataset

    ds = MixSubmixSourceLatentDataset(
        data_dir=corpus,
        split=split,
        segment_length=window,
        num_examples=1,
        zero_diff_threshold=None,
        num_tracks_debug=count,
        zero_latent_path=str(zero_latent),
        expected_ae_hash=ae_hash,
    )
    return songs_from_corpus(ds.tracks)


def read_silence(path: Path) -> Tensor:
    """The AE's latent of silence (C, 1) from pre_encode.py's ``zero_latent.npy``."""
    import numpy as np

    return torch.from_numpy(np.load(path).astype("float32")).reshape(-1, 1)


def metric_values(scores: Mapping[str, Any]) -> dict[str, float]:
    """``latent_scores``' numbers as logged names: ``val/<score>`` and ``val/<score>_<stem>`` per stem class."""
    out = {PREFIX + k: float(v) for k, v in scores.items() if isinstance(v, (int, float)) and not k.startswith("n_")}
    for label, per in sorted(scores.get("per_stem", {}).items()):
        for key, value in per.items():
            out[f"{PREFIX}{key}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', label)}"] = float(value)
    return out


def best_checkpoint(folder: str | os.PathLike) -> Path:
    """The best checkpoint that ``<folder>/best.json`` names (``folder``: a run's ``checkpoints/``)."""
    record = Path(folder) / BEST_JSON
    if not record.is_file():
        raise UserError(f"{record}: no such file (a run writes it with trainer.monitor.every_n_steps > 0)")
    return record.parent / json.loads(record.read_text())["file"]


@contextmanager
def left_as_found(module: torch.nn.Module, device: torch.device) -> Iterator[None]:
    """Restores the train/eval modes and ``requires_grad`` flags of ``module``'s parts and the global RNGs."""
    modes = [(m, m.training) for m in module.modules()]
    flags = [(p, p.requires_grad) for p in module.parameters()]
    devices = (
        [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    )
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            for m, mode in modes:
                m.training = mode
            for p, flag in flags:
                p.requires_grad_(flag)


class LatentMonitor(ModelCheckpoint):
    """The held-out monitor and its best checkpoints (the module docstring); attached by ``train_dit.py``."""

    def __init__(
        self,
        settings: MonitorSettings,
        songs: Sequence[LatentSong],
        silence: Tensor,
        prompts: PromptTable,
        *,
        dirpath: str | os.PathLike,
        model_config: Mapping[str, Any] | None = None,
        prog: str = "train_dit.py",
        file=None,
    ) -> None:
        if settings.metric not in BETTER or settings.every_n_steps < 1:
            raise ValueError(f"monitor settings: {settings}")
        super().__init__(
            dirpath=str(dirpath),
            filename=BEST_NAME,
            monitor=PREFIX + settings.metric,
            mode=BETTER[settings.metric],
            save_top_k=settings.save_top_k,
            save_last=False,
            auto_insert_metric_name=False,
            enable_version_counter=False,
            save_on_train_epoch_end=False,
        )
        self.settings, self.songs, self.silence, self.prompts = settings, list(songs), silence, prompts
        self.model_config = dict(model_config) if model_config is not None else None
        self.prog, self.file = prog, file
        self.latest: dict[str, float] = {}
        self.scored_step: int | None = None

    # -- when: every N optimizer steps and the last one; never ModelCheckpoint's epoch or validation saves
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        step = trainer.global_step
        if step % self.settings.every_n_steps == 0 or stops_after_this_batch(trainer):
            self.score(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module) -> None:
        self.score(trainer, pl_module)  # a run that ended with its last epoch (no-op if its step is scored)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module) -> None:
        pass

    def on_validation_end(self, trainer: pl.Trainer, pl_module) -> None:
        pass

    # -- what
    def compute(self, pl_module) -> dict[str, Any]:
        """The scores of the EMA weights on the songs (``latent_scores``' dict)."""
        from mgeldm.api import MGELDM
        from mgeldm.models.mgeldm import MGELDMNet

        net, s = pl_module.diffusion, self.settings
        with left_as_found(pl_module, pl_module.device):
            ema = MGELDMNet(
                pl_module.ema_model_dit(),
                net.pretransform,
                sample_rate=net.sample_rate,
                segment_length=net.segment_length,
                track_norm=net.track_norm,
            )
            model = MGELDM(ema, self.prompts, device=pl_module.device, model_config=self.model_config)
            with torch.inference_mode():
                return latent_scores(
                    model,
                    self.songs,
                    canonical_prompt,
                    steps=s.steps,
                    cfg_scale=s.cfg_scale,
                    overlap=s.overlap,
                    seed=s.seed,
                    times=s.x0_times,
                    silence=self.silence,
                )

    def score(self, trainer: pl.Trainer, pl_module) -> None:
        """Score this step (rank 0, broadcast), log, keep the checkpoint if it ranks, print the line."""
        step = trainer.global_step
        if step == 0 or step == self.scored_step or trainer.sanity_checking:
            return
        start = time.perf_counter()
        scores = trainer.strategy.broadcast(self.compute(pl_module) if trainer.is_global_zero else None, src=0)
        self.scored_step, self.latest = step, metric_values(scores)
        for logger in trainer.loggers:  # Lightning's loggers write on rank 0 only
            logger.log_metrics(self.latest, step=step)
            logger.save()
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_topk_checkpoint(trainer, self._monitor_candidates(trainer))
            if trainer.is_global_zero and self.best_model_path:
                from mgeldm.files import write_text_atomic

                write_text_atomic(Path(self.dirpath) / BEST_JSON, json.dumps(self.best_record(), indent=1) + "\n")
        if trainer.is_global_zero:
            write_line(self.prog, self.line(step, scores, time.perf_counter() - start), self.file)

    def _monitor_candidates(self, trainer: pl.Trainer) -> dict[str, Tensor]:
        found = super()._monitor_candidates(trainer)
        found.update({k: torch.tensor(v) for k, v in self.latest.items()})
        return found

    # -- reports
    def best_record(self) -> dict[str, Any]:
        """What ``best.json`` holds (the module docstring)."""

        def entry(path: str, value: Tensor) -> dict[str, Any]:
            return {"file": Path(path).name, "step": checkpoint_step(path), "value": float(value)}

        ranked = sorted(self.best_k_models.items(), key=lambda kv: float(kv[1]), reverse=self.mode == "max")
        return {
            "path": os.path.abspath(self.best_model_path),
            **entry(self.best_model_path, self.best_model_score),
            "metric": self.monitor,
            "mode": self.mode,
            "top_k": [entry(p, v) for p, v in ranked],
        }

    def line(self, step: int, scores: Mapping[str, Any], seconds: float) -> str:
        """``monitor at step 2,000 | latent_prompt_accuracy 0.750 | latent_rel_mse 0.612 | best ... | ...``."""
        parts = [
            f"monitor at step {step:,}",
            f"latent_prompt_accuracy {scores['latent_prompt_accuracy']:.3f}",
            f"latent_rel_mse {scores['latent_rel_mse']:.4f}",
        ]
        if self.best_model_path:
            parts.append(
                f"best {self.settings.metric} {float(self.best_model_score):.4f} at step "
                f"{checkpoint_step(self.best_model_path):,}"
            )
        parts.append(f"{scores['n_pairs']} pairs of {scores['n_songs']} songs in {seconds:.1f} s")
        return " | ".join(parts)
