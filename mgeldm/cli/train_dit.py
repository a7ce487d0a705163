"""``python train_dit.py --config-name default_dit autoencoder_ckpt_path=<AE> clap_ckpt_path=<CLAP> [ckpt_path=last]``.

Builds MGELDM (DiT + frozen AE), loads the AE (``autoencoder_ckpt_path``) or a whole unwrapped
MGE-LDM (``pretrained_ckpt_path``, e.g. the mix-pretrained one), the CLAP text conditioner, the
latent datasets (``data``), and fits :class:`mgeldm.training.dit_module.DiTTrainingModule`.
Everything that can be checked is checked before the first step (one-line errors).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mgeldm.audio import SAMPLE_RATE
from mgeldm.cli.hydra_args import hydra_cli
from mgeldm.cli.schema import boolean, integer, list_of, number, optional, prefixed, text
from mgeldm.cli.train import (TRAINING_HELP, TRAINING_MESSAGES, TRAINING_NOTES, build_trainer, check_training_options,
                              make_loader, resolve_resume, run_seed, seed_all)
from mgeldm.errors import UserError
from mgeldm.files import check_readable_file

log = logging.getLogger(__name__)

PROG = "train_dit.py"
# Top-level keys this CLI reads: `key=`, `+key=` and `++key=` all set them.
MEASURE = "measure"   # model.track_norm: measure the per-track statistics from the training data
STATS_WINDOWS = 1024  # training windows the statistics are measured on

OPTIONS = ("seed", "ckpt_path", "save_dir", "logger", "pretrained_ckpt_path", "autoencoder_ckpt_path",
           "clap_ckpt_path", "require_autoencoder")

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
    **prefixed("trainer.recipe", {
        "timestep_eps": number(0, below=1),
        "timestep_shift": number(above=0),
        "timestep_dropout_prob": number(0, 1),
        "cfg_dropout_prob": number(0, 1),
        "grad_clip_norm": optional(number(0)),
        **{k: boolean() for k in ("mixture_only_pretraining", "blend_per_batch", "text_conditioning", "compile",
                                  "activation_checkpointing")},
    }),
}


def check_options(cfg: Mapping[str, Any]) -> Path:
    """Every option and input file, before anything is read or written; returns save_dir."""
    from mgeldm.training.dit_module import parse_task_mix

    model = dict(cfg.get("model") or {})
    norm = model.get("track_norm")
    if isinstance(norm, str):
        if norm != MEASURE:
            raise UserError(f"model.track_norm={norm}: expected null, {MEASURE}, or mean/std lists per track")
        model["track_norm"] = None  # the statistics are measured once the data is read
    save_dir = check_training_options({**cfg, "model": model}, DIT_RULES, kind="mgeldm", default_save_dir="runs/dit")
    parse_task_mix(((cfg.get("trainer") or {}).get("recipe") or {}).get("task_mix"), 3)
    if cfg.get("autoencoder_ckpt_path"):
        check_readable_file(cfg["autoencoder_ckpt_path"], "autoencoder_ckpt_path", "the unwrapped AE")
    recipe = (cfg.get("trainer") or {}).get("recipe") or {}
    if recipe.get("text_conditioning", True) and cfg.get("clap_ckpt_path"):
        check_readable_file(cfg["clap_ckpt_path"], "clap_ckpt_path", "the CLAP checkpoint")
    return save_dir


def read_weights(cfg: Mapping[str, Any]) -> tuple[dict | None, dict | None]:
    """(pretrained MGE-LDM state, AE state) from the configured files; checked for their kind, not loaded."""
    from mgeldm.checkpoints import AE_PREFIX, DIT_PREFIX, read_state_dict, strip_prefix, unwrapped_kind

    pretrained, ae_path = cfg.get("pretrained_ckpt_path"), cfg.get("autoencoder_ckpt_path")
    full = ae = None
    if pretrained:
        full = read_state_dict(pretrained)
        if unwrapped_kind(full) != "mgeldm":
            raise UserError(f"pretrained_ckpt_path: {pretrained} is not an unwrapped MGE-LDM checkpoint "
                            f"(no {DIT_PREFIX}* keys; unwrap_model.py +type=mgeldm writes one)")
        ae = strip_prefix(full, AE_PREFIX)
    if ae_path:
        ae = read_state_dict(ae_path)
        if unwrapped_kind(ae) == "mgeldm":
            ae = strip_prefix(ae, AE_PREFIX)  # an unwrapped MGE-LDM file also holds the AE
    elif not pretrained and cfg.get("require_autoencoder", True):
        raise UserError("autoencoder_ckpt_path: missing; pass autoencoder_ckpt_path=<unwrapped AE .ckpt/.safetensors> "
                        "(the AE that encoded the latents)")
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


def build_text_conditioner(cfg: Mapping[str, Any], recipe: Mapping[str, Any]):
    """The CLAP text encoder for the source-prompt blend, or None when text conditioning is off."""
    if not recipe.get("text_conditioning", True):
        return None
    node = (cfg["model"].get("conditioner") or {}).get("clap_text")
    if not node:
        return None
    config = dict(node.get("config") or {})
    if cfg.get("clap_ckpt_path"):
        config["clap_ckpt_path"] = cfg["clap_ckpt_path"]
    if node.get("type", "laion_clap") == "laion_clap" and not config.get("clap_ckpt_path"):
        raise UserError("clap_ckpt_path: missing; the source-prompt blend needs the CLAP checkpoint "
                        "(pass clap_ckpt_path=..., or trainer.recipe.text_conditioning=false)")
    from mgeldm.models.conditioners import build_conditioner

    return build_conditioner({**node, "config": config}, device="cpu")


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
        kw = dict(channels=int(dit["io_channels"]), frames=window,
                  clap_dim=int(dit["global_cond_dim"]), mix_only=mix_only)
        return FakeLatentDataset(int(fake.get("num_examples", 64)), seed=int(fake.get("seed", seed)), **kw), None
    if not data.get("train"):
        raise UserError("data.train: missing; choose a data config (e.g. data=multi_latent_pretrain_nomix) "
                        "and set data.data_dir to the pre-encoded latents")
    from mgeldm.data.latent_datasets import build_latent_datasets

    ae = model["pretransform"]["autoencoder"]
    kw = dict(segment_length=window, mix_only=mix_only, expected_ae_hash=ae_hash,
              ae_comp_ratio=int(ae["downsampling_ratio"]), ae_sample_rate=int(ae.get("sample_rate", SAMPLE_RATE)),
              mmap=bool(data.get("mmap", False)))
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
    from mgeldm.data.pre_encode import state_dict_sha256

    # data first: a wrong root or latents of another AE fail before the (large) model is built
    train_set, valid_set = build_datasets(cfg, mix_only=bool(recipe.get("mixture_only_pretraining", False)),
                                          seed=int(recipe["seed"]),
                                          ae_hash=state_dict_sha256(ae_state) if ae_state is not None else None)
    resolve_track_norm(cfg, train_set, resume)
    model = build_model(cfg, full, ae_state)
    del full, ae_state
    conditioner = build_text_conditioner(cfg, recipe)

    from mgeldm.training.callbacks import DiTDemoCallback
    from mgeldm.training.dit_module import DiTTrainingModule

    module = DiTTrainingModule(model, recipe, conditioner=conditioner,
                               flops_per_sample=tcfg.get("flops_per_sample"),
                               peak_flops=float(tcfg["peak_tflops"]) * 1e12 if tcfg.get("peak_tflops") else None)
    module.model_config = cfg["model"]
    callbacks = []
    demo = dict(tcfg.get("demo") or {})
    if int(demo.get("every_n_steps", 0) or 0) > 0:
        from torch.utils.data import default_collate

        source = valid_set if valid_set is not None else train_set
        n = min(int(demo.get("num_demos", 8)), len(source))
        demo_batch = default_collate([source[i] for i in range(n)])  # given mixes of the extraction demo
        callbacks.append(DiTDemoCallback(save_dir / "samples", demo_batch=demo_batch, **demo))
    trainer = build_trainer(tcfg, save_dir, callbacks, datasets=[train_set], prog="train_dit.py")
    val_loader = make_loader(valid_set, tcfg, train=False) if valid_set is not None else None
    trainer.fit(module, train_dataloaders=make_loader(train_set, tcfg), val_dataloaders=val_loader, ckpt_path=resume)


def usage() -> str:
    """The text of ``python train_dit.py --help``."""
    from mgeldm.cli.hydra_args import usage_text

    options = [("--config-name NAME", "default_dit (default) | dit (2 GPUs) | default_dit_mix_pretrain | "
                                      "default_dit_scratch | quickstart_dit | default_dit_tiny"),
               ("autoencoder_ckpt_path=FILE", "the unwrapped AE that encoded the latents"),
               ("clap_ckpt_path=FILE", "LAION's music CLAP, for the text side of the conditioning"),
               ("data.data_dir=DIR", "the pre-encoded latents (pre_encode.py's +save_root_dir)"),
               ("pretrained_ckpt_path=FILE", "start from an unwrapped MGE-LDM (e.g. the mix-pretrained one)"),
               *TRAINING_HELP]
    examples = ["python train_dit.py --config-name dit save_dir=runs/dit autoencoder_ckpt_path=unwrapped_AE.ckpt "
                "clap_ckpt_path=music_audioset_epoch_15_esc_90.14.pt data.data_dir=pre_extracted_latents",
                "python train_dit.py --config-name default_dit_tiny save_dir=runs/tiny_dit   # a one-minute CPU check"]
    return usage_text("python train_dit.py [--config-name NAME] [key=value ...]",
                      "Trains the three-track DiT on pre-encoded latents with Lightning; then unwrap_model.py "
                      "+type=mgeldm.", options, examples, TRAINING_NOTES)


CLI = hydra_cli(PROG, run, config_name="default_dit", options=OPTIONS, usage=usage, messages=TRAINING_MESSAGES)
main, run_config = CLI.main, CLI.run_config

if __name__ == "__main__":
    raise SystemExit(main())
