"""What ``train_ae.py`` and ``train_dit.py`` share: option checks, trainer, logger, checkpoints, data loaders, resume.

Config layout (``configs/trainer/*.yaml``): ``pl_trainer`` is passed to ``pytorch_lightning.Trainer``
(devices, num_nodes, strategy, precision, max_epochs, max_steps, ...); ``recipe`` goes to the
training module; the other keys (batch_size, num_workers, checkpoint_every_n_steps, logger, demo,
progress) are read here.

What a run prints: a progress line every ``log_every_n_steps`` steps (``trainer.progress=false`` turns them
off; see :class:`mgeldm.training.callbacks.ProgressLines`); Lightning's own tqdm bar only on a terminal (in a
log file it is carriage returns); none of Lightning's banners and tips.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from mgeldm.checkpoints import STEP_NAME
from mgeldm.cli.boundary import Messages
from mgeldm.cli.schema import (
    Rule,
    boolean,
    check_config,
    choice,
    integer,
    list_of,
    mapping,
    number,
    one_of,
    optional,
    prefixed,
    text,
)
from mgeldm.errors import UserError
from mgeldm.files import check_readable_file, check_writable_dir

log = logging.getLogger(__name__)

# What --help shows of the options both training CLIs read (mgeldm.cli.train).
TRAINING_NOTES = ("Every number of a recipe is in configs/ and can be overridden as key=value.",)
TRAINING_HELP: tuple[tuple[str, str], ...] = (
    ("save_dir=DIR", "checkpoints/, logs/ and samples/ of the run"),
    ("ckpt_path=last|FILE", "resume: last = <save_dir>/checkpoints/last.ckpt (a fresh run when there is none)"),
    ("seed=N", "the run's seed (default: the config's, else its trainer.recipe.seed)"),
    ("logger=NAME", "csv (default) | tensorboard | wandb | none"),
    ("trainer.batch_size=N", "per device"),
    ("trainer.pl_trainer.max_steps=N", "stop after N optimizer steps (-1: no limit)"),
    ("trainer.pl_trainer.max_time=T", "stop after DD:HH:MM:SS of wall time"),
    ("trainer.pl_trainer.devices=N", "GPUs (or CPU processes); also accelerator=cpu|gpu|mps, num_nodes=N"),
    ("trainer.pl_trainer.precision=P", "auto (bf16-mixed where supported) | 16-mixed | 32-true | ..."),
    ("trainer.pl_trainer.log_every_n_steps=N", "metrics and progress lines every N steps (at most one line per 10 s)"),
    ("trainer.progress=false", "no progress lines"),
    ("trainer.recipe.optimizer.lr=X", "and the other trainer.recipe.* keys of configs/trainer/*.yaml"),
)

TRAINING_MESSAGES = Messages(
    interrupted="; ckpt_path=last resumes from the last checkpoint written",
    out_of_memory="try a smaller trainer.batch_size, trainer.pl_trainer.precision=bf16-mixed "
    "or trainer.recipe.activation_checkpointing=true",
)

LOGGERS = ("csv", "tensorboard", "wandb", "none")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
# Set by build_trainer itself: refused in trainer.pl_trainer.
OWN_TRAINER_ARGS = ("default_root_dir", "callbacks", "plugins", "logger")

_LOGGER = optional(one_of(choice(*LOGGERS), Rule("false", lambda v: v is False)))
_GPU_IDS = Rule(
    "GPU ids like '0,1'", lambda v: isinstance(v, str) and all(p.strip().isdigit() for p in v.strip(",").split(","))
)
_DURATION = Rule(
    "a duration DD:HH:MM:SS",
    lambda v: isinstance(v, str) and len(v.split(":")) == 4 and all(p.isdigit() for p in v.split(":")),
)

# The keys both training CLIs read at the top level and in `trainer` (configs/trainer/*.yaml).
TRAINING_RULES: dict[str, Rule] = {
    "seed": optional(integer()),
    "save_dir": text(),
    "logger": _LOGGER,
    "ckpt_path": optional(text()),
    "pretrained_ckpt_path": optional(text()),
    "trainer.batch_size": integer(1),
    "trainer.num_workers": integer(0),
    "trainer.pin_memory": boolean(),
    "trainer.progress": boolean(),
    "trainer.checkpoint_every_n_steps": integer(1),
    "trainer.save_top_k": integer(-1),
    "trainer.logger": _LOGGER,
    "trainer.wandb_project": text(),
    "trainer.demo.every_n_steps": optional(integer(0)),
    "trainer.demo.num_demos": integer(1),
    "trainer.pl_trainer.accelerator": choice(*ACCELERATORS),
    "trainer.pl_trainer.devices": one_of(integer(1), choice(-1, "auto"), list_of(integer(0)), _GPU_IDS),
    "trainer.pl_trainer.num_nodes": integer(1),
    "trainer.pl_trainer.strategy": text(),
    "trainer.pl_trainer.max_epochs": optional(integer(-1)),
    "trainer.pl_trainer.max_steps": integer(-1),
    "trainer.pl_trainer.max_time": optional(one_of(_DURATION, mapping())),
    "trainer.pl_trainer.min_steps": optional(integer(-1)),
    "trainer.pl_trainer.log_every_n_steps": integer(1),
    "trainer.pl_trainer.limit_train_batches": optional(one_of(integer(0), number(0, 1))),
    "trainer.pl_trainer.limit_val_batches": optional(one_of(integer(0), number(0, 1))),
    "trainer.pl_trainer.val_check_interval": optional(one_of(integer(1), number(hi=1, above=0))),
    "trainer.pl_trainer.check_val_every_n_epoch": optional(integer(1)),
    "trainer.pl_trainer.num_sanity_val_steps": optional(integer(-1)),
    "trainer.pl_trainer.accumulate_grad_batches": integer(1),
    "trainer.pl_trainer.enable_progress_bar": optional(boolean()),
    "trainer.pl_trainer.enable_model_summary": optional(boolean()),
    "trainer.pl_trainer.deterministic": optional(one_of(boolean(), choice("warn"))),
    "trainer.pl_trainer.benchmark": optional(boolean()),
    "data.num_examples_train": integer(0),
    "data.num_tracks_debug": optional(integer(1)),
    "data.loudness_cutoff": optional(number()),
    "data.*.*.data_dir": optional(text()),
    "data.*.*.num_examples": integer(0),
    "data.*.*.state_id": optional(integer()),
    "data.*.*.num_tracks_debug": optional(integer(1)),
    "data.fake.num_examples": integer(1),
    "data.fake.seed": integer(),
}

# The optimiser, schedule and EMA of both recipes (mgeldm.training.schedulers), under trainer.recipe.
OPTIMIZER_RULES = {
    "lr": number(above=0),
    "betas": list_of(number(0, below=1), 2),
    "weight_decay": number(0),
    "fused": optional(boolean()),
}
SCHEDULER_RULES = {
    "inv_gamma": number(above=0),
    "power": number(0),
    "warmup": number(0, below=1),
    "final_lr": number(0),
}
RECIPE_RULES: dict[str, Rule] = {
    "seed": integer(),
    "max_nonfinite_steps": integer(1),
    **prefixed("optimizer", OPTIMIZER_RULES),
    **prefixed("scheduler", SCHEDULER_RULES),
    "ema.beta": number(0, 1),
    "ema.power": number(above=0),
    "ema.inv_gamma": number(above=0),
    "ema.update_every": integer(1),
    "ema.update_after_step": integer(0),
}


def precisions() -> tuple[str, ...]:
    """``auto`` (ours) and every precision Lightning's Trainer accepts, as text (16 and "16" are the same)."""
    import typing

    from lightning_fabric.plugins.precision.precision import (
        _PRECISION_INPUT_INT,
        _PRECISION_INPUT_STR,
        _PRECISION_INPUT_STR_ALIAS,
    )

    names = [
        "auto",
        *(
            str(v)
            for t in (_PRECISION_INPUT_STR, _PRECISION_INPUT_STR_ALIAS, _PRECISION_INPUT_INT)
            for v in typing.get_args(t)
        ),
    ]
    return tuple(dict.fromkeys(names))


def lightning_precision(value: Any) -> str:
    """``auto``: bf16-mixed where the GPU supports it, else 32-true (CPU runs stay fp32)."""
    value = str(value)
    if value != "auto":
        return value
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def resolve_resume(resume: Any, save_dir: Path, kind: str, model_cfg: Mapping[str, Any] | None = None) -> str | None:
    """The training checkpoint to resume, from the option ``ckpt_path`` (``resume``): null (fresh), ``last``
    (``<save_dir>/checkpoints/last.ckpt`` if present), or a training checkpoint of ``kind`` (``autoencoder`` /
    ``mgeldm``); anything else is a one-line error. With ``model_cfg`` the checkpoint's weights must have the
    configured model's names and shapes."""
    if resume in (None, "", "null"):
        return None
    if str(resume) == "last":
        last = save_dir / "checkpoints" / "last.ckpt"
        if last.is_file():
            _check_resumable(last, kind, model_cfg)
            return str(last)
        log.info(f"ckpt_path=last: no {last} yet, starting a fresh run")
        return None
    path = Path(str(resume))
    if not path.is_file():
        raise UserError(f"ckpt_path: {path} does not exist (use ckpt_path=last to resume {save_dir})")
    _check_resumable(path, kind, model_cfg)
    return str(path)


def _check_resumable(path: Path, kind: str, model_cfg: Mapping[str, Any] | None) -> None:
    from mgeldm.training.unwrap import check_resumable

    check_resumable(path, kind, model_cfg)


def check_devices(pl_cfg: Mapping[str, Any]) -> None:
    """The accelerator and devices asked for exist on this machine."""
    accel = str(pl_cfg.get("accelerator", "auto"))
    devices = pl_cfg.get("devices", "auto")
    gpus = torch.cuda.device_count()
    key = "trainer.pl_trainer"
    if accel in ("gpu", "cuda") and gpus == 0:
        raise UserError(f"{key}.accelerator={accel}: no CUDA GPU is visible here; use accelerator=cpu (or auto)")
    if accel == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError(f"{key}.accelerator=mps: MPS is not available here; use accelerator=cpu (or auto)")
    if accel not in ("gpu", "cuda") and not (accel == "auto" and gpus > 0):
        return
    if isinstance(devices, str) and "," in devices:  # Lightning's "0,1": GPU ids
        devices = [int(p) for p in devices.strip(",").split(",")]
    elif isinstance(devices, str) and devices.strip().isdigit():  # "2": a count
        devices = int(devices)
    if isinstance(devices, (list, tuple)):
        wanted = [int(i) for i in devices]
    else:
        wanted = list(range(devices)) if isinstance(devices, int) else []  # -1 / "auto": all there are
    if any(i >= gpus for i in wanted):
        raise UserError(f"{key}.devices={devices}: only {gpus} CUDA device(s) are visible here")


def check_trainer_args(pl_cfg: Mapping[str, Any]) -> None:
    """Every ``trainer.pl_trainer`` key is an argument of Lightning's Trainer that we do not set ourselves."""
    import inspect

    import pytorch_lightning as pl

    known = set(inspect.signature(pl.Trainer.__init__).parameters) - {"self", *OWN_TRAINER_ARGS}
    for key in pl_cfg:
        if key not in known:
            raise UserError(
                f"trainer.pl_trainer.{key}: not an argument of Lightning's Trainer "
                f"(or one this CLI sets itself); expected some of {', '.join(sorted(known))}"
            )


def check_training_config(cfg: Mapping[str, Any], rules: Mapping[str, Rule]) -> None:
    """The typed keys (shared ones and ``rules``), the precision and Lightning's Trainer arguments; no file,
    device or model is looked at."""
    check_config(cfg, {**TRAINING_RULES, **prefixed("trainer.recipe", RECIPE_RULES), **rules})
    pl_cfg = dict((cfg.get("trainer") or {}).get("pl_trainer") or {})
    if str(pl_cfg.get("precision", "auto")) not in precisions():
        raise UserError(
            f"trainer.pl_trainer.precision={pl_cfg['precision']}: expected one of {', '.join(precisions())}"
        )
    check_trainer_args(pl_cfg)


def check_training_options(
    cfg: Mapping[str, Any], rules: Mapping[str, Rule], *, kind: str, default_save_dir: str
) -> Path:
    """Every option of a training run, checked before anything is read or written; returns save_dir."""
    from mgeldm.training.unwrap import build_on_meta

    check_training_config(cfg, rules)
    check_devices(dict((cfg.get("trainer") or {}).get("pl_trainer") or {}))
    if cfg.get("pretrained_ckpt_path"):
        check_readable_file(cfg["pretrained_ckpt_path"], "pretrained_ckpt_path", f"an unwrapped {kind} checkpoint")
    build_on_meta(kind, cfg.get("model") or {})
    return check_writable_dir(save_dir_of(cfg, default_save_dir), "save_dir")


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


# Lightning's info lines that say nothing about this run (banners, advertisements) or that the progress
# lines say better (why the run stopped).
_LIGHTNING_CHATTER = (
    "💡 Tip",
    "GPU available",
    "TPU available",
    "HPU available",
    "`Trainer.fit` stopped",
    "Time limit reached",
)


class _DropChatter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(_LIGHTNING_CHATTER)


def quiet_lightning() -> None:
    """Silence Lightning's banners and tips, and its warning about a validation_step without validation data
    (our modules define one; most runs have no validation set)."""
    log = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if not any(isinstance(f, _DropChatter) for f in log.filters):
        log.addFilter(_DropChatter())
    warnings.filterwarnings("ignore", message=".*`validation_step` but have no `val_dataloader`.*")


def _several_devices(pl_cfg: Mapping[str, Any]) -> bool:
    """Whether the ``pl_trainer`` settings ask for more than one device or node (a DDP run)."""
    devices, nodes = pl_cfg.get("devices", 1), int(pl_cfg.get("num_nodes", 1))
    return (
        nodes > 1
        or (isinstance(devices, int) and devices > 1)
        or (isinstance(devices, (list, tuple)) and len(devices) > 1)
    )


def _checkpoint_callback(tcfg: Mapping[str, Any], save_dir: Path):
    """The run's checkpoint callback (every N steps + last) under ``save_dir/checkpoints``, after removing the
    temporaries of checkpoint writes killed in earlier runs."""
    from mgeldm.files import remove_stale_temporaries
    from mgeldm.training.callbacks import RunCheckpoint

    remove_stale_temporaries(save_dir / "checkpoints")  # of checkpoint writes killed in earlier runs
    return RunCheckpoint(
        dirpath=str(save_dir / "checkpoints"),
        every_n_train_steps=int(tcfg.get("checkpoint_every_n_steps", 10000)),
        save_last=True,
        save_top_k=int(tcfg.get("save_top_k", 1)),
        filename=STEP_NAME,
        auto_insert_metric_name=False,
    )


def build_trainer(
    tcfg: Mapping[str, Any],
    save_dir: Path,
    callbacks: list,
    *,
    unused_params: bool = False,
    datasets: list | None = None,
    prog: str = "training",
):
    """A Lightning Trainer with atomic checkpoints (every N steps + last), the configured logger and progress
    lines naming ``prog``. A checkpoint callback among ``callbacks`` (the monitor's best checkpoint) saves before
    ``last.ckpt`` of the same step (Lightning keeps their order), so ``last.ckpt`` holds its state."""
    import pytorch_lightning as pl

    from mgeldm.progress import on_terminal
    from mgeldm.training.callbacks import SUMMARY_NAME, AtomicCheckpointIO, DatasetEpochCallback, ProgressLines

    quiet_lightning()
    pl_cfg = dict(tcfg.get("pl_trainer") or {})
    if not on_terminal(sys.stdout):  # Lightning's bar draws on stdout
        pl_cfg["enable_progress_bar"] = False
    if tcfg.get("progress", True):
        callbacks = [
            *callbacks,
            ProgressLines(prog, int(pl_cfg.get("log_every_n_steps", 50)), summary_path=save_dir / SUMMARY_NAME),
        ]
    pl_cfg["precision"] = lightning_precision(pl_cfg.get("precision", "auto"))
    multi = _several_devices(pl_cfg)
    if pl_cfg.get("strategy", "auto") == "auto" and multi:
        pl_cfg["strategy"] = "ddp_find_unused_parameters_true" if unused_params else "ddp"
    if pl_cfg.get("gradient_clip_val"):
        raise UserError("trainer.pl_trainer.gradient_clip_val: not used; set the clip in trainer.recipe instead")
    ckpt = _checkpoint_callback(tcfg, save_dir)
    return pl.Trainer(
        **pl_cfg,
        default_root_dir=str(save_dir),
        callbacks=[DatasetEpochCallback(datasets), *callbacks, ckpt],
        plugins=[AtomicCheckpointIO(kill_at_step=kill_step_for_tests())],
        logger=build_logger(tcfg.get("logger", "csv"), save_dir, tcfg),
    )


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
    return StatefulDataLoader(
        dataset,
        batch_size=int(tcfg.get("batch_size", 1)),
        shuffle=False,
        drop_last=train,
        num_workers=workers,
        pin_memory=bool(tcfg.get("pin_memory", False)) and torch.cuda.is_available(),
        persistent_workers=False,
    )


def run_seed(cfg: Mapping[str, Any], recipe: Mapping[str, Any], trainer: str) -> int:
    """The top-level ``seed`` when set, else the recipe's (``trainer.recipe.seed`` of the config, or of
    ``configs/trainer/<trainer>.yaml`` when the config's recipe has none)."""
    from mgeldm.training.base import recipe_defaults

    seed = cfg.get("seed")
    if seed is None:
        seed = recipe.get("seed", recipe_defaults(trainer)["seed"])
    return int(seed)


def seed_all(seed: int) -> None:
    """Seeds the global generators too (model init); training randomness uses explicit generators."""
    import pytorch_lightning as pl

    pl.seed_everything(int(seed), workers=True, verbose=False)


def save_dir_of(cfg: Mapping[str, Any], default: str) -> Path:
    return Path(os.path.expanduser(str(cfg.get("save_dir") or default)))
