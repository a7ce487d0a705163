"""What ``train_ae.py`` and ``train_dit.py`` share: trainer, logger, checkpoints, data loaders, resume.

Config layout (``configs/trainer/*.yaml``): ``pl_trainer`` is passed to ``pytorch_lightning.Trainer``
(devices, num_nodes, strategy, precision, max_epochs, max_steps, ...); ``recipe`` goes to the
training module; the other keys (batch_size, num_workers, checkpoint_every_n_steps, logger, demo)
are read here.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from mgeldm.errors import UserError


def resolve_precision(value: Any) -> str:
    """``auto``: bf16-mixed where the GPU supports it, else 32-true (CPU runs stay fp32)."""
    value = str(value)
    if value != "auto":
        return value
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def resolve_resume(ckpt_path: Any, save_dir: Path, kind: str) -> str | None:
    """``ckpt_path``: null (fresh), ``last`` (``<save_dir>/checkpoints/last.ckpt`` if present), or a
    training checkpoint of ``kind`` (``autoencoder`` / ``mgeldm``); anything else is a one-line error."""
    if ckpt_path in (None, "", "null"):
        return None
    if str(ckpt_path) == "last":
        last = save_dir / "checkpoints" / "last.ckpt"
        if last.is_file():
            return str(last)
        print(f"ckpt_path=last: no {last} yet, starting a fresh run", file=sys.stderr)
        return None
    path = Path(str(ckpt_path))
    if not path.is_file():
        raise UserError(f"ckpt_path: {path} does not exist (use ckpt_path=last to resume {save_dir})")
    from mgeldm.training.unwrap import check_resumable

    check_resumable(path, kind)
    return str(path)


def build_logger(kind: Any, save_dir: Path, cfg: Mapping[str, Any]):
    """csv (default) | tensorboard | wandb | none; all offline except wandb."""
    kind = str(kind or "none").lower()
    if kind in ("none", "false"):
        return False
    if kind == "csv":
        from pytorch_lightning.loggers import CSVLogger

        return CSVLogger(str(save_dir), name="logs")
    if kind == "tensorboard":
        from pytorch_lightning.loggers import TensorBoardLogger

        return TensorBoardLogger(str(save_dir), name="tb")
    if kind == "wandb":
        from pytorch_lightning.loggers import WandbLogger

        return WandbLogger(project=str(cfg.get("wandb_project", "mgeldm")), save_dir=str(save_dir))
    raise UserError(f"trainer.logger: unknown logger {kind!r}; expected csv, tensorboard, wandb or none")


def build_trainer(tcfg: Mapping[str, Any], save_dir: Path, callbacks: list, *, unused_params: bool = False,
                  datasets: list | None = None):
    """A Lightning Trainer with atomic checkpoints (every N steps + last) and the configured logger."""
    import pytorch_lightning as pl

    from mgeldm.files import remove_stale_temporaries
    from mgeldm.training.callbacks import AtomicCheckpointIO, DatasetEpochCallback, RunCheckpoint

    pl_cfg = dict(tcfg.get("pl_trainer") or {})
    pl_cfg["precision"] = resolve_precision(pl_cfg.get("precision", "auto"))
    devices, nodes = pl_cfg.get("devices", 1), int(pl_cfg.get("num_nodes", 1))
    multi = nodes > 1 or (isinstance(devices, int) and devices > 1) or (isinstance(devices, (list, tuple)) and len(devices) > 1)
    if pl_cfg.get("strategy", "auto") == "auto" and multi:
        pl_cfg["strategy"] = "ddp_find_unused_parameters_true" if unused_params else "ddp"
    if pl_cfg.get("gradient_clip_val"):
        raise UserError("trainer.pl_trainer.gradient_clip_val: not used; set the clip in trainer.recipe instead")
    remove_stale_temporaries(save_dir / "checkpoints")  # of checkpoint writes killed in earlier runs
    ckpt = RunCheckpoint(dirpath=str(save_dir / "checkpoints"), every_n_train_steps=int(tcfg.get("checkpoint_every_n_steps", 10000)),
                           save_last=True, save_top_k=int(tcfg.get("save_top_k", 1)),
                           filename="step{step:08d}", auto_insert_metric_name=False)
    return pl.Trainer(**pl_cfg, default_root_dir=str(save_dir), callbacks=[ckpt, DatasetEpochCallback(datasets), *callbacks],
                      plugins=[AtomicCheckpointIO(kill_at_step=kill_step_for_tests())], logger=build_logger(tcfg.get("logger", "csv"), save_dir, tcfg))


TEST_KILL_ENV = "MGELDM_TEST_KILL_AT_STEP"


def kill_step_for_tests() -> int | None:
    """For tests only: ``MGELDM_TEST_KILL_AT_STEP=N`` makes the run SIGKILL itself right after ``last.ckpt``
    of global step N is durably written (a deterministic interruption point for resume tests)."""
    value = os.environ.get(TEST_KILL_ENV)
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise UserError(f"{TEST_KILL_ENV}: expected a step number, got {value!r}") from None


def make_loader(dataset, tcfg: Mapping[str, Any], *, train: bool = True):
    """A torchdata ``StatefulDataLoader`` (Lightning checkpoints its position, so resume is mid-epoch exact).

    Items are random draws seeded by (seed, epoch, index), so a sequential order is enough; under
    DDP Lightning gives each rank its own indices.
    """
    from torchdata.stateful_dataloader import StatefulDataLoader

    workers = int(tcfg.get("num_workers", 0))
    return StatefulDataLoader(dataset, batch_size=int(tcfg.get("batch_size", 1)), shuffle=False, drop_last=train,
                              num_workers=workers, pin_memory=bool(tcfg.get("pin_memory", False)) and torch.cuda.is_available(),
                              persistent_workers=False)


def seed_all(seed: int) -> None:
    """Seeds the global generators too (model init); training randomness uses explicit generators."""
    import pytorch_lightning as pl

    pl.seed_everything(int(seed), workers=True, verbose=False)


def run_cli(prog: str, fn: Callable[[dict], None], cfg) -> None:
    """Resolve the Hydra config to plain containers, run ``fn``, turn UserError into one line + exit 2."""
    import warnings

    from omegaconf import OmegaConf

    # Expected with our setup: the frozen AE is in eval mode; checkpoints hold post-step weights.
    warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")
    warnings.filterwarnings("ignore", message=".*pre-optimization state.*")
    warnings.filterwarnings("ignore", message=".*set_vital.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*litlogger.*")
    try:
        fn(OmegaConf.to_container(cfg, resolve=True))
    except UserError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        sys.exit(2)


def save_dir_of(cfg: Mapping[str, Any], default: str) -> Path:
    return Path(os.path.expanduser(str(cfg.get("save_dir") or default)))
