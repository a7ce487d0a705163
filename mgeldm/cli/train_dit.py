"""``python train_dit.py --config-name default_dit autoencoder_ckpt_path=<AE> clap_ckpt_path=<CLAP> [ckpt_path=last]``.

Builds MGELDM (DiT + frozen AE), loads the AE (``autoencoder_ckpt_path``) or a whole unwrapped
MGE-LDM (``pretrained_ckpt_path``, e.g. the mix-pretrained one), the CLAP text conditioner, the
latent datasets (``data``), and fits :class:`mgeldm.training.dit_module.DiTTrainingModule`; with
``trainer.monitor.every_n_steps > 0`` the held-out monitor (:mod:`mgeldm.evaluation.monitor`) scores the EMA
weights on a validation split and keeps the best checkpoint.
Everything that can be checked is checked before the first step (one-line errors).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mgeldm.audio import SAMPLE_RATE
from mgeldm.cli.hydra_args import hydra_cli
from mgeldm.cli.schema import boolean, choice, integer, list_of, number, optional, prefixed, text
from mgeldm.cli.train import (
    TRAINING_HELP,
    TRAINING_MESSAGES,
    TRAINING_NOTES,
    build_trainer,
    check_training_options,
    make_loader,
    resolve_resume,
    run_seed,
    seed_all,
)
from mgeldm.errors import OptionError, UserError
from mgeldm.evaluation.latent import BETTER
from mgeldm.files import check_readable_file

log = logging.getLogger(__name__)

PROG = "train_dit.py"
# Top-level keys this CLI reads: `key=`, `+key=` and `++key=` all set them.
MEASURE = "measure"  # model.track_norm: measure the per-track statistics from the training data
STATS_WINDOWS = 1024  # training windows the statistics are measured on

# trainer.monitor (configs/trainer/dit.yaml; mgeldm.evaluation.monitor): every key it has, and the sampler options
# it hands to the API under their Python names.
MONITOR_KEYS = (
    "every_n_steps",
    "split",
    "data_dir",
    "songs",
    "steps",
    "cfg_scale",
    "overlap_seconds",
    "seed",
    "x0_times",
    "metric",
    "save_top_k",
)
MONITOR_SAMPLING = {"steps": "steps", "cfg_scale": "cfg_scale", "overlap": "overlap_seconds"}
MONITOR_TEXT = ("the monitor", "or turn it off: trainer.monitor.every_n_steps=0")  # who needs the text encoder

OPTIONS = (
    "seed",
    "ckpt_path",
    "save_dir",
    "logger",
    "pretrained_ckpt_path",
    "autoencoder_ckpt_path",
    "clap_ckpt_path",
    "require_autoencoder",
)

# What DiT training reads besides the shared keys (mgeldm.cli.train.TRAINING_RULES).
DIT_RULES = {
    "autoencoder_ckpt_path": optional(text()),
    "clap_ckpt_path": optional(text()),
    "require_autoencoder": boolean(),
    "model.segment_length": integer(1),
    "trainer.peak_tflops": optional(number(above=0)),
    "trainer.flops_per_sample": optional(number(above=0)),
    "trainer.demo.steps": integer(1),
    "trainer.demo.cfg_scale": number(),
    "trainer.demo.t_min": number(0, below=1),
    "trainer.demo.prompts": list_of(text()),
    "data.data_dir": optional(text()),
    "data.zero_latent_name": text(),
    "data.zero_diff_threshold": number(0),
    "data.mmap": boolean(),
    "data.*.*.subdir": text(),
    "data.*.*.split": optional(text()),
    "data.*.*.zero_diff_threshold": number(0),
    **prefixed(
        "trainer.monitor",
        {
            "every_n_steps": integer(0),
            "split": text(),
            "data_dir": optional(text()),
            "songs": optional(integer(1)),
            "steps": integer(1),
            "cfg_scale": number(),
            "overlap_seconds": optional(number(0)),
            "seed": integer(0),
            "x0_times": list_of(number(hi=1, above=0)),
            "metric": choice(*BETTER),
            "save_top_k": integer(-1),
        },
    ),
    **prefixed(
        "trainer.recipe",
        {
            "timestep_eps": number(0, below=1),
            "timestep_shift": number(above=0),
            "timestep_dropout_prob": number(0, 1),
            "cfg_dropout_prob": number(0, 1),
            "grad_clip_norm": optional(number(0)),
            **{
                k: boolean()
                for k in (
                    "mixture_only_pretraining",
                    "blend_per_batch",
                    "text_conditioning",
                    "compile",
                    "activation_checkpointing",
                )
            },
        },
    ),
}


def check_options(cfg: Mapping[str, Any]) -> Path:
    """Every option and input file, before anything is read or written; returns save_dir."""
    from mgeldm.training.dit_module import parse_task_mix, parse_task_t1

    model = dict(cfg.get("model") or {})
    norm = model.get("track_norm")
    if isinstance(norm, str):
        if norm != MEASURE:
            raise UserError(f"model.track_norm={norm}: expected null, {MEASURE}, or mean/std lists per track")
        model["track_norm"] = None  # the statistics are measured once the data is read
    save_dir = check_training_options({**cfg, "model": model}, DIT_RULES, kind="mgeldm", default_save_dir="runs/dit")
    recipe = (cfg.get("trainer") or {}).get("recipe") or {}
    parse_task_mix(recipe.get("task_mix"), 3)
    parse_task_t1(recipe.get("task_t1"), recipe.get("task_mix"))
    if cfg.get("autoencoder_ckpt_path"):
        check_readable_file(cfg["autoencoder_ckpt_path"], "autoencoder_ckpt_path", "the unwrapped AE")
    if recipe.get("text_conditioning", True) and cfg.get("clap_ckpt_path"):
        check_readable_file(cfg["clap_ckpt_path"], "clap_ckpt_path", "the CLAP checkpoint")
    check_monitor(cfg)
    return save_dir


def monitor_node(cfg: Mapping[str, Any]) -> dict[str, Any] | None:
    """``trainer.monitor`` when the monitor is on (every_n_steps > 0), else None; unknown keys refused."""
    node = dict((cfg.get("trainer") or {}).get("monitor") or {})
    unknown = sorted(set(node) - set(MONITOR_KEYS))
    if unknown:
        raise UserError(f"trainer.monitor.{unknown[0]}: unknown key; expected some of {', '.join(MONITOR_KEYS)}")
    return node if int(node.get("every_n_steps") or 0) > 0 else None


def monitor_corpus(cfg: Mapping[str, Any], node: Mapping[str, Any]) -> Path:
    """The monitor's corpus folder: ``trainer.monitor.data_dir``, else the first corpus of ``data.train`` found
    (``data_dir`` or ``<data.data_dir>/<subdir>``, as training reads it; mix-only readers such as MTG-Jamendo
    skipped)."""
    from mgeldm.data.latent_datasets import DATASET_CLASSES

    if node.get("data_dir"):
        return Path(str(node["data_dir"])).expanduser()
    data = cfg.get("data") or {}
    root = data.get("data_dir")
    for name, entry in (data.get("train") or {}).items():
        if entry is None or name in DATASET_CLASSES:
            continue
        folder = entry.get("data_dir") or (Path(str(root)) / str(entry.get("subdir", name)) if root else None)
        if folder and Path(folder).is_dir():
            return Path(folder)
    where = "data.fake has no songs" if data.get("fake") else f"no corpus of data.train is under data.data_dir={root}"
    raise UserError(
        f"trainer.monitor.data_dir: null and {where}; set it to a pre-encoded corpus folder "
        "(<corpus>/<split>/<song>/, as pre_encode.py writes)"
    )


def monitor_silence(cfg: Mapping[str, Any], corpus: Path) -> Path:
    """The AE's latent of silence: the training data's (``data.zero_latent_path`` or ``<data.data_dir>/<name>``),
    else beside the monitor's corpus folder (pre_encode.py's layout)."""
    data = cfg.get("data") or {}
    name = str(data.get("zero_latent_name", "zero_latent.npy"))
    if data.get("zero_latent_path"):
        return Path(str(data["zero_latent_path"]))
    return Path(str(data["data_dir"])) / name if data.get("data_dir") else corpus.parent / name


def check_monitor(cfg: Mapping[str, Any]) -> None:
    """trainer.monitor, before anything is read: its sampler settings on this model, a text conditioner for
    its prompts, the split folder and the latent of silence."""
    from mgeldm.models.mgeldm import model_facts
    from mgeldm.tasks.tasks import sampling_settings

    node = monitor_node(cfg)
    if node is None:
        return
    sampling = {k: node.get(key) for k, key in MONITOR_SAMPLING.items()}
    try:
        sampling_settings("source_extract", model_facts(cfg["model"]), **sampling)
    except OptionError as exc:
        raise UserError(exc.spelled({k: f"trainer.monitor.{key}" for k, key in MONITOR_SAMPLING.items()})) from None
    text_conditioner_node(cfg, *MONITOR_TEXT, required=True)
    corpus = monitor_corpus(cfg, node)
    split = corpus / str(node.get("split"))
    if not split.is_dir():
        raise UserError(
            f"trainer.monitor.split={node.get('split')!r}: {split} is not a folder (expected "
            "<corpus>/<split>/<song>/, as pre_encode.py writes)"
        )
    silence = monitor_silence(cfg, corpus)
    if not silence.is_file():
        raise UserError(
            f"trainer.monitor: no latent of silence at {silence} (pre_encode.py writes zero_latent.npy "
            "beside the corpus folders)"
        )


def read_weights(cfg: Mapping[str, Any]) -> tuple[dict | None, dict | None]:
    """(pretrained MGE-LDM state, AE state) from the configured files; checked for their kind, not loaded."""
    from mgeldm.checkpoints import AE_PREFIX, DIT_PREFIX, read_state_dict, strip_prefix, unwrapped_kind

    pretrained, ae_path = cfg.get("pretrained_ckpt_path"), cfg.get("autoencoder_ckpt_path")
    full = ae = None
    if pretrained:
        full = read_state_dict(pretrained)
        if unwrapped_kind(full) != "mgeldm":
            raise UserError(
                f"pretrained_ckpt_path: {pretrained} is not an unwrapped MGE-LDM checkpoint "
                f"(no {DIT_PREFIX}* keys; unwrap_model.py +type=mgeldm writes one)"
            )
        ae = strip_prefix(full, AE_PREFIX)
    if ae_path:
        ae = read_state_dict(ae_path)
        if unwrapped_kind(ae) == "mgeldm":
            ae = strip_prefix(ae, AE_PREFIX)  # an unwrapped MGE-LDM file also holds the AE
    elif not pretrained and cfg.get("require_autoencoder", True):
        raise UserError(
            "autoencoder_ckpt_path: missing; pass autoencoder_ckpt_path=<unwrapped AE .ckpt/.safetensors> "
            "(the AE that encoded the latents)"
        )
    return full, ae


def build_model(cfg: Mapping[str, Any], full: dict | None, ae: dict | None):
    """MGELDM with the pretrained (DiT + AE) and/or AE weights loaded, strictly."""
    from mgeldm.checkpoints import load_weights
    from mgeldm.models.mgeldm import build_mgeldm

    model = build_mgeldm(cfg["model"])
    if full is not None:
        load_weights(model, full, what="an unwrapped MGE-LDM checkpoint", path=cfg.get("pretrained_ckpt_path"))
    if ae is not None and cfg.get("autoencoder_ckpt_path"):
        load_weights(model.pretransform.model, ae, what="an autoencoder checkpoint", path=cfg["autoencoder_ckpt_path"])
    return model


def text_conditioner_node(cfg: Mapping[str, Any], user: str, instead: str, *, required: bool = False) -> dict | None:
    """The model's text conditioner node with ``clap_ckpt_path`` filled in (None without one, an error when
    ``required``); a CLAP node without its checkpoint is an error naming ``user`` and what to do ``instead``."""
    node = (cfg["model"].get("conditioner") or {}).get("clap_text")
    if not node:
        if required:
            raise UserError(f"model.conditioner: none; {user} needs a text conditioner (set one, {instead})")
        return None
    config = dict(node.get("config") or {})
    if cfg.get("clap_ckpt_path"):
        config["clap_ckpt_path"] = cfg["clap_ckpt_path"]
    if node.get("type", "laion_clap") == "laion_clap" and not config.get("clap_ckpt_path"):
        raise UserError(
            f"clap_ckpt_path: missing; {user} needs the CLAP checkpoint (pass clap_ckpt_path=..., {instead})"
        )
    return {**node, "config": config}


def build_text_conditioner(cfg: Mapping[str, Any], recipe: Mapping[str, Any]):
    """The CLAP text encoder for the source-prompt blend, or None when text conditioning is off."""
    if not recipe.get("text_conditioning", True):
        return None
    node = text_conditioner_node(cfg, "the source-prompt blend", "or trainer.recipe.text_conditioning=false")
    if node is None:
        return None
    from mgeldm.models.conditioners import build_conditioner

    return build_conditioner(node, device="cpu")


def monitor_prompts(cfg: Mapping[str, Any], conditioner: Any, songs):
    """The songs' prompts embedded once, by the training conditioner or else the model config's; the global RNGs
    are left as they were (a conditioner built here initialises weights before loading its own)."""
    import torch

    from mgeldm.data.prompts import canonical_prompt
    from mgeldm.evaluation.monitor import PromptTable

    with torch.random.fork_rng(devices=[]):
        if conditioner is None:
            from mgeldm.models.conditioners import build_conditioner

            conditioner = build_conditioner(text_conditioner_node(cfg, *MONITOR_TEXT, required=True), device="cpu")
        return PromptTable(conditioner, [canonical_prompt(label) for song in songs for label in sorted(song.sources)])


def build_monitor(cfg: Mapping[str, Any], conditioner: Any, ae_hash: str | None, save_dir: Path):
    """The held-out monitor of ``trainer.monitor`` (:class:`mgeldm.evaluation.monitor.LatentMonitor`), or None
    when it is off: its songs read and their prompts embedded now (with the training conditioner when there is
    one, else the model config's), so a wrong split fails before the first step."""
    node = monitor_node(cfg)
    if node is None:
        return None
    from mgeldm.evaluation.monitor import LatentMonitor, MonitorSettings, read_silence, read_songs
    from mgeldm.models.mgeldm import model_facts

    corpus = monitor_corpus(cfg, node)
    silence = monitor_silence(cfg, corpus)
    songs = read_songs(
        corpus, str(node["split"]), node.get("songs"), model_facts(cfg["model"]).window, silence, ae_hash
    )
    prompts = monitor_prompts(cfg, conditioner, songs)
    settings = MonitorSettings(
        every_n_steps=int(node["every_n_steps"]),
        steps=int(node["steps"]),
        cfg_scale=float(node["cfg_scale"]),
        overlap=None if node.get("overlap_seconds") is None else float(node["overlap_seconds"]),
        seed=int(node["seed"]),
        x0_times=tuple(float(t) for t in node.get("x0_times") or ()),
        metric=str(node["metric"]),
        save_top_k=int(node["save_top_k"]),
    )
    log.info(f"{PROG}: monitor on {len(songs)} songs of {corpus / str(node['split'])}")
    return LatentMonitor(
        settings,
        songs,
        read_silence(silence),
        prompts,
        dirpath=save_dir / "checkpoints",
        model_config=cfg["model"],
        prog=PROG,
    )


def build_datasets(cfg: Mapping[str, Any], *, mix_only: bool, seed: int, ae_hash: str | None):
    """(train, valid or None) from the ``data`` node: ``fake`` (synthetic) or ``train``/``valid`` corpora."""
    from mgeldm.models.mgeldm import model_facts

    data = cfg.get("data") or {}
    model = cfg["model"]
    window = model_facts(model).window
    if data.get("fake"):
        from mgeldm.training.fake_data import FakeLatentDataset

        fake = dict(data["fake"])
        dit = model["MGELDM"]
        kw = dict(
            channels=int(dit["io_channels"]), frames=window, clap_dim=int(dit["global_cond_dim"]), mix_only=mix_only
        )
        return FakeLatentDataset(int(fake.get("num_examples", 64)), seed=int(fake.get("seed", seed)), **kw), None
    if not data.get("train"):
        raise UserError(
            "data.train: missing; choose a data config (e.g. data=multi_latent_pretrain_nomix) "
            "and set data.data_dir to the pre-encoded latents"
        )
    from mgeldm.data.latent_datasets import build_latent_datasets

    ae = model["pretransform"]["autoencoder"]
    kw = dict(
        segment_length=window,
        mix_only=mix_only,
        expected_ae_hash=ae_hash,
        ae_comp_ratio=int(ae["downsampling_ratio"]),
        ae_sample_rate=int(ae.get("sample_rate", SAMPLE_RATE)),
        mmap=bool(data.get("mmap", False)),
    )
    train = build_latent_datasets(data, part="train", seed=seed, **kw)
    if len(train) == 0:
        raise UserError("data.train: the datasets hold no examples (num_examples is 0)")
    valid = build_latent_datasets(data, part="valid", seed=seed + 1, shuffle=False, **kw) if data.get("valid") else None
    return train, valid


def resolve_track_norm(cfg: dict, train_set, resume: str | None) -> None:
    """``model.track_norm: measure`` -> the per-track statistics of the training data, written into the
    model config (which the checkpoints carry). A resumed run keeps the numbers its checkpoint holds."""
    model = cfg["model"]
    if model.get("track_norm") != MEASURE:
        return
    if resume is not None:
        from mgeldm.training.unwrap import load_training_checkpoint

        stored = (load_training_checkpoint(resume, mmap=True).get("model_config") or {}).get("track_norm")
        if isinstance(stored, Mapping):
            model["track_norm"] = dict(stored)
            return
    from mgeldm.data.latent_stats import measure_track_stats

    scale = float((model.get("pretransform") or {}).get("scale", 1.0))
    model["track_norm"] = measure_track_stats(train_set, STATS_WINDOWS, scale=scale)
    log.info(f"train_dit.py: model.track_norm measured on {STATS_WINDOWS} training windows")


def demo_callbacks(tcfg: Mapping[str, Any], save_dir: Path, source) -> list:
    """The demo renders of ``trainer.demo`` (none when every_n_steps is 0); extraction from ``source``'s mixes."""
    from mgeldm.training.callbacks import DiTDemoCallback

    demo = dict(tcfg.get("demo") or {})
    if int(demo.get("every_n_steps", 0) or 0) <= 0:
        return []
    from torch.utils.data import default_collate

    n = min(int(demo.get("num_demos", 8)), len(source))
    demo_batch = default_collate([source[i] for i in range(n)])  # given mixes of the extraction demo
    return [DiTDemoCallback(save_dir / "samples", demo_batch=demo_batch, **demo)]


def run(cfg: dict) -> None:
    save_dir = check_options(cfg)
    tcfg = dict(cfg.get("trainer") or {})
    if cfg.get("logger"):
        tcfg["logger"] = cfg["logger"]  # top-level `logger=wandb` wins over trainer.logger
    recipe = dict(tcfg.get("recipe") or {})
    recipe["seed"] = run_seed(cfg, recipe, "dit")
    resume = resolve_resume(cfg.get("ckpt_path"), save_dir, "mgeldm", cfg["model"])
    seed_all(int(recipe["seed"]))
    full, ae_state = read_weights(cfg)
    from mgeldm.data.pre_encode.hashing import state_dict_sha256

    ae_hash = state_dict_sha256(ae_state) if ae_state is not None else None
    # data first: a wrong root or latents of another AE fail before the (large) model is built
    train_set, valid_set = build_datasets(
        cfg, mix_only=bool(recipe.get("mixture_only_pretraining", False)), seed=int(recipe["seed"]), ae_hash=ae_hash
    )
    resolve_track_norm(cfg, train_set, resume)
    model = build_model(cfg, full, ae_state)
    del full, ae_state
    conditioner = build_text_conditioner(cfg, recipe)
    monitor = build_monitor(cfg, conditioner, ae_hash, save_dir)

    from mgeldm.training.dit_module import DiTTrainingModule

    module = DiTTrainingModule(
        model,
        recipe,
        conditioner=conditioner,
        flops_per_sample=tcfg.get("flops_per_sample"),
        peak_flops=float(tcfg["peak_tflops"]) * 1e12 if tcfg.get("peak_tflops") else None,
    )
    module.model_config = cfg["model"]
    callbacks = [
        *demo_callbacks(tcfg, save_dir, valid_set if valid_set is not None else train_set),
        *([monitor] if monitor is not None else []),
    ]
    trainer = build_trainer(tcfg, save_dir, callbacks, datasets=[train_set], prog="train_dit.py")
    val_loader = make_loader(valid_set, tcfg, train=False) if valid_set is not None else None
    trainer.fit(module, train_dataloaders=make_loader(train_set, tcfg), val_dataloaders=val_loader, ckpt_path=resume)


def usage() -> str:
    """The text of ``python train_dit.py --help``."""
    from mgeldm.cli.hydra_args import usage_text

    options = [
        (
            "--config-name NAME",
            "default_dit (default) | dit (2 GPUs) | default_dit_mix_pretrain | "
            "default_dit_scratch | quickstart_dit | default_dit_tiny",
        ),
        ("autoencoder_ckpt_path=FILE", "the unwrapped AE that encoded the latents"),
        ("clap_ckpt_path=FILE", "LAION's music CLAP, for the text side of the conditioning"),
        ("data.data_dir=DIR", "the pre-encoded latents (pre_encode.py's +save_root_dir)"),
        ("pretrained_ckpt_path=FILE", "start from an unwrapped MGE-LDM (e.g. the mix-pretrained one)"),
        (
            "trainer.monitor.every_n_steps=N",
            "held-out scores of the EMA weights every N steps; the best checkpoint is named in checkpoints/best.json",
        ),
        *TRAINING_HELP,
    ]
    examples = [
        "python train_dit.py --config-name dit save_dir=runs/dit autoencoder_ckpt_path=unwrapped_AE.ckpt "
        "clap_ckpt_path=music_audioset_epoch_15_esc_90.14.pt data.data_dir=pre_extracted_latents",
        "python train_dit.py --config-name default_dit_tiny save_dir=runs/tiny_dit   # a one-minute CPU check",
    ]
    return usage_text(
        "python train_dit.py [--config-name NAME] [key=value ...]",
        "Trains the three-track DiT on pre-encoded latents with Lightning; then unwrap_model.py +type=mgeldm.",
        options,
        examples,
        TRAINING_NOTES,
    )


CLI = hydra_cli(PROG, run, config_name="default_dit", options=OPTIONS, usage=usage, messages=TRAINING_MESSAGES)
main, run_config = CLI.main, CLI.run_config

if __name__ == "__main__":
    raise SystemExit(main())
