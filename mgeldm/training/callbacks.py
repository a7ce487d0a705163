"""Lightning plumbing: atomic checkpoint writes, per-epoch dataset seeding, progress lines and demo rendering.

The demo renders with the **EMA** weights (the original used the online model, difference 11 of docs/compatibility.md)
and
writes wavs + spectrogram pngs under ``<demo_dir>/<step>/``.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.plugins.io import TorchCheckpointIO

from mgeldm.audio import SAMPLE_RATE
from mgeldm.models.tracks import MIX, SRC, TRACK_NAMES, track_channels


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint through ``mgeldm.files.atomic_path``: a temporary file in the same folder, fsynced,
    then renamed over the target, with the permissions of any new file (the umask's).

    A run killed while saving leaves the previous ``last.ckpt`` intact instead of a truncated one.

    ``kill_at_step`` is for tests only: the process SIGKILLs itself right after ``last.ckpt`` of that global
    step is durably written, so a test can interrupt a run at an exact point instead of racing it.
    """

    def __init__(self, kill_at_step: int | None = None) -> None:
        super().__init__()
        self.kill_at_step = kill_at_step

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        from mgeldm.files import atomic_path

        path = Path(path)
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)
        if (
            self.kill_at_step is not None
            and path.name == "last.ckpt"
            and checkpoint.get("global_step") == self.kill_at_step
        ):
            os.kill(os.getpid(), signal.SIGKILL)


class RunCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose ``last.ckpt`` always holds the final step of a run.

    When ``max_steps`` or a stop request (``max_time``, early stopping) ends the run between two periodic
    saves, ``last.ckpt`` is written right after the last batch, as a periodic save would be: mid-epoch,
    with the data loader's position, so a run extended later (a larger ``max_steps`` with ``ckpt_path=last``)
    continues the same data stream as one uninterrupted run. A run that ends with its epoch (``max_epochs``)
    is saved at its end as before.
    """

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if self.save_last and stops_after_this_batch(trainer) and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.save_last and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        else:
            super().on_train_end(trainer, pl_module)


def stops_after_this_batch(trainer: pl.Trainer) -> bool:
    """Whether the fit loop ends after the current batch: max_steps reached, or a callback asked to stop."""
    max_steps = trainer.max_steps
    return bool(trainer.should_stop) or (max_steps is not None and 0 <= max_steps <= trainer.global_step)


class DatasetEpochCallback(pl.Callback):
    """Calls ``dataset.set_epoch(epoch)`` on seeded datasets so each epoch draws new, reproducible items.

    On resume the epoch is set from the checkpoint, before Lightning creates the loader's iterator
    (and its workers), so a run resumed mid-epoch draws the same items as an uninterrupted one.
    """

    def __init__(self, datasets: list | None = None) -> None:
        self.datasets = list(datasets or [])

    def _set(self, trainer: pl.Trainer, epoch: int) -> None:
        for ds in self.datasets:
            if hasattr(ds, "set_epoch"):
                ds.set_epoch(epoch)
        set_dataset_epoch(trainer.train_dataloader, epoch)

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        self._set(trainer, int(checkpoint.get("epoch", 0)))

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._set(trainer, trainer.current_epoch)


def set_dataset_epoch(loaders: Any, epoch: int) -> None:
    if loaders is None:
        return
    for dl in loaders if isinstance(loaders, (list, tuple)) else [loaders]:
        ds = getattr(dl, "dataset", None)
        if hasattr(ds, "set_epoch"):
            ds.set_epoch(epoch)


def write_line(prog: str, text: str, file=None) -> None:
    """One whole line ``<prog>: <text>`` on ``file`` (stdout), through ``tqdm.write`` so a bar is redrawn below it."""
    from tqdm import tqdm

    out = file if file is not None else sys.stdout
    tqdm.write(f"{prog}: {text}", file=out)
    out.flush()


def _clock(seconds: float) -> str:
    """A duration as H:MM:SS (or M:SS under an hour)."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


SUMMARY_NAME = "train_summary.json"  # written beside the checkpoints' folder by every training run


class ProgressLines(pl.Callback):
    """Training progress as whole lines a person can read, in a terminal and in a log file alike::

        train_dit.py: step 1,200/100,000 | loss 0.2841 | 3.42 steps/s | 5:51 elapsed | 1:09 left

    A line at the first step, then every ``every_n_steps`` optimizer steps but at most one per
    ``min_seconds``, and a closing line with the reason the run stopped. "left" is the sooner of
    ``max_steps`` at the measured rate and the ``max_time`` budget; the loss is the latest logged one.
    Lines go through ``tqdm.write``, so a Lightning bar on a terminal is redrawn below them. Rank 0 only.
    """

    LOSS_KEYS = ("train/loss", "loss")

    def __init__(
        self,
        prog: str,
        every_n_steps: int = 50,
        min_seconds: float = 10.0,
        file=None,
        summary_path: str | os.PathLike | None = None,
    ) -> None:
        self.prog, self.every, self.min_seconds = prog, max(1, int(every_n_steps)), float(min_seconds)
        self.file = file
        self.summary_path = summary_path  # the run's numbers as JSON when it stops (``SUMMARY_NAME``)
        self._first: tuple[int, float] | None = None  # (step, time) of the first step of this fit
        self._last_line = 0.0
        self._last_step = -1

    def _write(self, text: str) -> None:
        write_line(self.prog, text, self.file)

    def _loss(self, trainer: pl.Trainer) -> str | None:
        for key in self.LOSS_KEYS:
            value = trainer.callback_metrics.get(key)
            if value is not None:
                return f"loss {float(value):.4f}"
        return None

    def _rate(self, step: int, now: float) -> float | None:
        if self._first is None or step <= self._first[0] or now <= self._first[1]:
            return None
        return (step - self._first[0]) / (now - self._first[1])

    @staticmethod
    def _timer(trainer: pl.Trainer):
        from pytorch_lightning.callbacks import Timer

        return next((c for c in trainer.callbacks if isinstance(c, Timer)), None)

    def _left(self, trainer: pl.Trainer, step: int, rate: float | None) -> float | None:
        candidates = []
        if rate and trainer.max_steps is not None and trainer.max_steps > 0:
            candidates.append((trainer.max_steps - step) / rate)
        timer = self._timer(trainer)
        if timer is not None and timer.time_remaining() is not None:
            candidates.append(timer.time_remaining())
        return min(candidates) if candidates else None

    def line(self, trainer: pl.Trainer, step: int, now: float) -> str:
        """The progress line of ``step`` at time ``now`` (without the program name)."""
        total = f"/{trainer.max_steps:,}" if trainer.max_steps is not None and trainer.max_steps > 0 else ""
        parts = [f"step {step:,}{total}"]
        loss = self._loss(trainer)
        if loss:
            parts.append(loss)
        rate = self._rate(step, now)
        if rate is not None:
            parts.append(f"{rate:.2f} steps/s")
        if self._first is not None:
            parts.append(f"{_clock(now - self._first[1])} elapsed")
        left = self._left(trainer, step, rate)
        if left is not None:
            parts.append(f"{_clock(left)} left")
        return " | ".join(parts)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        step = trainer.global_step
        if not trainer.is_global_zero or step == self._last_step:
            return  # several optimizers (the AE) share one global step
        self._last_step = step
        now = time.monotonic()
        if self._first is None:
            self._first = (step, now)
            self._last_line = now
            self._write(self.line(trainer, step, now))
        elif step % self.every == 0 and now - self._last_line >= self.min_seconds:
            self._last_line = now
            self._write(self.line(trainer, step, now))

    def on_train_end(self, trainer: pl.Trainer, pl_module) -> None:
        if not trainer.is_global_zero or self._first is None:
            return
        timer = self._timer(trainer)
        if trainer.max_steps is not None and 0 < trainer.max_steps <= trainer.global_step:
            why = f"max_steps={trainer.max_steps:,} reached"
        elif timer is not None and (timer.time_remaining() or 0) <= 0:
            why = "max_time reached"
        elif trainer.interrupted:
            why = "interrupted"
        else:
            why = "done"
        now = time.monotonic()
        parts = [f"stopped at step {trainer.global_step:,} ({why})", f"{_clock(now - self._first[1])} of training"]
        loss = self._loss(trainer)
        if loss:
            parts.append(loss)
        self._write(" | ".join(parts))
        if self.summary_path is not None:
            self._write_summary(trainer.global_step, now, why)

    def _write_summary(self, step: int, now: float, why: str) -> None:
        """``{steps, seconds, steps_per_second, stopped}``: seconds from the first step to the end of this fit (a
        monitor's passes included), the rate over the steps after the first."""
        import json

        from mgeldm.files import write_text_atomic

        seconds = now - self._first[1]
        rate = self._rate(step, now)
        summary = {
            "steps": int(step),
            "first_step": int(self._first[0]),
            "seconds": round(seconds, 3),
            "steps_per_second": None if rate is None else round(rate, 4),
            "stopped": why,
        }
        write_text_atomic(self.summary_path, json.dumps(summary, indent=1) + "\n")


class _EveryNSteps(pl.Callback):
    """Calls ``render(pl_module, step)`` once every ``self.every`` optimizer steps, on rank 0 only.

    ``global_step`` counts optimizer steps, so with several optimizers (the AE) or gradient
    accumulation it can stay the same over batches: each step renders at most once.
    """

    every: int = 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        step = trainer.global_step
        if self.every <= 0 or step == 0 or step % self.every or not trainer.is_global_zero:
            return
        if getattr(self, "_last_step", None) == step:
            return
        self._last_step = step
        self.render(pl_module, step)

    def render(self, pl_module, step: int) -> list[Path]:
        raise NotImplementedError


class DiTDemoCallback(_EveryNSteps):
    """Every ``every_n_steps`` optimizer steps: total generation and extraction with the EMA DiT, sampled by the
    windowed sampler inference uses (:func:`mgeldm.diffusion.windows.sample_windows`).

    ``prompts`` are source-track texts; extraction uses the first items of ``demo_batch`` (latents)
    as the given mix. Needs the module's ``conditioner`` for text, else renders unconditionally.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        every_n_steps: int = 10000,
        *,
        prompts: list[str] | None = None,
        num_demos: int = 2,
        steps: int = 100,
        cfg_scale: float = 3.0,
        t_min: float = 0.02,
        seed: int = 0,
        demo_batch: dict | None = None,
    ) -> None:
        self.out_dir, self.every = Path(out_dir), int(every_n_steps)
        self.prompts = list(prompts or ["The sound of piano."])
        self.num_demos, self.steps, self.cfg_scale, self.t_min, self.seed = num_demos, steps, cfg_scale, t_min, seed
        self.demo_batch = demo_batch

    def _text(self, pl_module, dit, n: int) -> torch.Tensor:
        """(n, G): the conditioner's embeddings of the prompts, zeros (no condition) without a conditioner."""
        if pl_module.conditioner is None:
            return torch.zeros(n, dit.global_cond_dim, device=pl_module.device)
        prompts = (self.prompts * n)[:n]
        return pl_module.conditioner.embed_text(prompts).to(device=pl_module.device, dtype=torch.float32)

    @torch.no_grad()
    def sample(self, pl_module) -> dict[str, torch.Tensor]:
        """The demo's latents in the DiT's space (rows, K*C, frames): ``total_gen`` (text on the source track,
        as the original's demo) and, with a ``demo_batch``, ``extraction`` around its mixes."""
        from mgeldm.diffusion.samplers import SamplingSettings
        from mgeldm.diffusion.windows import sample_windows, track_conditions

        dit, diffusion = pl_module.ema_model_dit(), pl_module.diffusion
        k, c, frames = dit.num_tracks, dit.io_channels, int(diffusion.segment_length)
        embed = track_conditions(self._text(pl_module, dit, self.num_demos), SRC, k)
        settings = SamplingSettings(self.steps, self.cfg_scale, 0.0, t_min=self.t_min)
        gen = torch.Generator(device="cpu").manual_seed(self.seed)

        def run(rows: int, length: int, **given):
            def make(songs: int):
                return lambda x, t: dit(x, t, embed[:rows].repeat(songs, 1, 1), cfg_scale=self.cfg_scale)

            return sample_windows(
                make,
                settings,
                [length],
                [gen],
                rows=rows,
                channels=c,
                num_tracks=k,
                window=frames,
                overlap=0,
                device=pl_module.device,
                **given,
            )[0]

        out = {"total_gen": run(self.num_demos, frames)}
        if self.demo_batch is not None:
            given = pl_module.latents(self.demo_batch)[: self.num_demos, :c]  # the DiT's space, as in training
            out["extraction"] = run(given.shape[0], given.shape[-1], given_z=[given], given_track=MIX)
        return out

    def render(self, pl_module, step: int) -> list[Path]:
        if getattr(pl_module.diffusion, "pretransform", None) is None:
            return []
        dit = pl_module.ema_model_dit()
        was_training = dit.training
        dit.eval()
        try:
            latents = self.sample(pl_module)
        finally:
            dit.train(was_training)
        return [path for task, z in latents.items() for path in self._write(pl_module.diffusion, z, step, task)]

    @torch.no_grad()
    def _write(self, diffusion, z: torch.Tensor, step: int, task: str) -> list[Path]:
        from mgeldm.audio import save_spectrogram_png, write_wav

        out = []
        c = diffusion.io_channels
        folder = self.out_dir / f"{step:08d}" / task / f"cfg_{self.cfg_scale:g}"
        for i in range(z.shape[0]):
            for j, name in enumerate(TRACK_NAMES[: diffusion.num_tracks]):
                wav = diffusion.decode_track(track_channels(z[i : i + 1].float(), j, c), j)[0]
                out.append(write_wav(folder / f"{i:02d}_{name}.wav", wav, diffusion.sample_rate))
                save_spectrogram_png(folder / f"{i:02d}_{name}.png", wav, diffusion.sample_rate)
        return out


class AEDemoCallback(_EveryNSteps):
    """Every ``every_n_steps`` steps: reconstruct ``demo_audio`` with the EMA AE; write wavs + pngs."""

    def __init__(
        self,
        out_dir: str | os.PathLike,
        demo_audio: torch.Tensor,
        every_n_steps: int = 10000,
        sample_rate: int = SAMPLE_RATE,
    ) -> None:
        self.out_dir, self.audio, self.every, self.sample_rate = (
            Path(out_dir),
            demo_audio,
            int(every_n_steps),
            sample_rate,
        )

    @torch.no_grad()
    def render(self, pl_module, step: int) -> list[Path]:
        from mgeldm.audio import save_spectrogram_png, write_wav

        ae = pl_module.ema_autoencoder()
        was_training = ae.training
        ae.eval()
        try:
            x = self.audio.to(pl_module.device).float()
            y = ae.decode(ae.encode(x, sample=False))
        finally:
            ae.train(was_training)
        folder = self.out_dir / f"{step:08d}" / "recon"
        out = []
        for i in range(x.shape[0]):
            for name, wav in (("real", x[i]), ("recon", y[i])):
                out.append(write_wav(folder / f"{i:02d}_{name}.wav", wav, self.sample_rate))
                save_spectrogram_png(folder / f"{i:02d}_{name}.png", wav, self.sample_rate)
        return out
