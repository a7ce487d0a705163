"""``python train_ae.py --config-name default_ae [ckpt_path=last]``: the VAE with the adversarial recipe
(docs/compatibility.md#autoencoder-training).

``data`` is a ``configs/data/single.yaml``-style node (raw corpora) or ``fake`` (synthetic notes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mgeldm.cli.hydra_args import hydra_cli
from mgeldm.cli.schema import boolean, integer, list_of, number, optional, prefixed
from mgeldm.cli.train import (
    OPTIMIZER_RULES,
    SCHEDULER_RULES,
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
from mgeldm.errors import UserError

PROG = "train_ae.py"
# Top-level keys this CLI reads: `key=`, `+key=` and `++key=` all set them.
OPTIONS = ("seed", "ckpt_path", "save_dir", "logger", "pretrained_ckpt_path")

_FFT_LISTS = {k: list_of(integer(1)) for k in ("fft_sizes", "hop_sizes", "win_lengths")}
# What AE training reads besides the shared keys (mgeldm.cli.train.TRAINING_RULES).
AE_RULES = {
    "trainer.sample_size": integer(1),
    "data.num_examples_valid": integer(0),
    "data.mixture_prob": number(0, 1),
    "data.*.*.mixture_prob": number(0, 1),
    "data.*.*.loudness_cutoff": optional(number()),
    "data.*.*.split_seed": integer(),
    **prefixed(
        "trainer.recipe",
        {
            "use_discriminator": boolean(),
            **{
                k: number(0)
                for k in ("mrstft_weight", "adversarial_weight", "feature_matching_weight", "kl_weight", "l1_weight")
            },
            "gen_grad_clip": optional(number(0)),
            "disc_grad_clip": optional(number(0)),
            **prefixed("disc_optimizer", OPTIMIZER_RULES),
            **prefixed("disc_scheduler", SCHEDULER_RULES),
            **prefixed("mrstft", {**_FFT_LISTS, "perceptual_weighting": boolean()}),
            "discriminator.n_ffts": list_of(integer(1)),
            "discriminator.hop_lengths": list_of(integer(1)),
            "discriminator.win_lengths": list_of(integer(1)),
            "discriminator.filters": integer(1),
        },
    ),
}


def build_datasets(cfg: Mapping[str, Any], *, seed: int, sample_rate: int, segment_length: int):
    data = cfg.get("data") or {}
    if data.get("fake"):
        from mgeldm.training.fake_data import FakeAudioDataset

        fake = dict(data["fake"])
        return FakeAudioDataset(
            int(fake.get("num_examples", 64)),
            length=segment_length,
            sample_rate=sample_rate,
            seed=int(fake.get("seed", seed)),
        ), None
    if not data.get("train"):
        raise UserError("data.train: missing; use data=single and set data.train.<corpus>.data_dir")
    from mgeldm.data.audio_datasets import build_audio_datasets

    kw = dict(sample_rate=sample_rate, segment_length=segment_length)
    train = build_audio_datasets(dict(data["train"]), split="train", seed=seed, **kw)
    valid = None
    if data.get("valid") and any((e or {}).get("data_dir") for e in dict(data["valid"]).values()):
        valid = build_audio_datasets(dict(data["valid"]), split="valid", seed=seed + 1, shuffle=False, **kw)
    return train, valid


def run(cfg: dict) -> None:
    from mgeldm.checkpoints import load_weights, read_state_dict
    from mgeldm.models.autoencoder import build_autoencoder
    from mgeldm.training.ae_module import AETrainingModule
    from mgeldm.training.callbacks import AEDemoCallback

    save_dir = check_training_options(cfg, AE_RULES, kind="autoencoder", default_save_dir="runs/autoencoder")
    tcfg = dict(cfg.get("trainer") or {})
    if cfg.get("logger"):
        tcfg["logger"] = cfg["logger"]  # top-level `logger=wandb` wins over trainer.logger
    if not tcfg.get("recipe"):
        raise UserError(
            "trainer: missing; AE training needs `- trainer: autoencoder` (and `- data: single`) "
            "in the config's defaults, or trainer=autoencoder on the command line"
        )
    recipe = dict(tcfg["recipe"])
    recipe["seed"] = run_seed(cfg, recipe, "autoencoder")
    # In default_ae.yaml `ckpt_path` is also the unwrapped AE of pre-encoding; here it resumes a run
    # (`last` or a Lightning checkpoint) and an unwrapped file is refused with a hint.
    resume = resolve_resume(cfg.get("ckpt_path"), save_dir, "autoencoder", cfg["model"])
    seed_all(recipe["seed"])
    ae = build_autoencoder(cfg["model"])
    if cfg.get("pretrained_ckpt_path"):
        path = cfg["pretrained_ckpt_path"]
        load_weights(ae, read_state_dict(path), what="an autoencoder checkpoint", path=path)
    sample_size = int(tcfg.get("sample_size", 32768))
    if sample_size % ae.downsampling_ratio:
        raise UserError(f"trainer.sample_size: {sample_size} is not a multiple of the AE ratio {ae.downsampling_ratio}")
    train_set, valid_set = build_datasets(
        cfg, seed=recipe["seed"], sample_rate=ae.sample_rate, segment_length=sample_size
    )
    module = AETrainingModule(ae, recipe)
    module.model_config = cfg["model"]
    callbacks = []
    demo = dict(tcfg.get("demo") or {})
    if int(demo.get("every_n_steps", 0) or 0) > 0:
        import torch

        source = valid_set if valid_set is not None else train_set
        audio = torch.stack([source[i]["mix_wav"] for i in range(min(int(demo.get("num_demos", 4)), len(source)))])
        callbacks.append(AEDemoCallback(save_dir / "samples", audio, int(demo["every_n_steps"]), ae.sample_rate))
    trainer = build_trainer(tcfg, save_dir, callbacks, unused_params=True, datasets=[train_set], prog="train_ae.py")
    val_loader = make_loader(valid_set, tcfg, train=False) if valid_set is not None else None
    trainer.fit(module, train_dataloaders=make_loader(train_set, tcfg), val_dataloaders=val_loader, ckpt_path=resume)


def usage() -> str:
    """The text of ``python train_ae.py --help``."""
    from mgeldm.cli.hydra_args import usage_text

    options = [
        ("--config-name NAME", "default_ae (the VAE recipe, default) | quickstart_ae | default_ae_tiny"),
        *TRAINING_HELP,
        ("data.train.<corpus>.data_dir=DIR", "a raw corpus root (slakh2100, musdb18hq, moisesdb, ...)"),
        ("pretrained_ckpt_path=FILE", "start from an unwrapped AE"),
    ]
    examples = [
        "python train_ae.py --config-name default_ae save_dir=runs/autoencoder "
        "data.train.slakh2100.data_dir=/data/slakh2100_flac_redux",
        "python train_ae.py --config-name default_ae save_dir=runs/autoencoder ckpt_path=last   # resume",
    ]
    return usage_text(
        "python train_ae.py [--config-name NAME] [key=value ...]",
        "Trains the VAE (MR-STFT, adversarial and KL losses, EMA) with Lightning; then unwrap_model.py "
        "+type=autoencoder.",
        options,
        examples,
        TRAINING_NOTES,
    )


CLI = hydra_cli(PROG, run, config_name="default_ae", options=OPTIONS, usage=usage, messages=TRAINING_MESSAGES)
main, run_config = CLI.main, CLI.run_config

if __name__ == "__main__":
    raise SystemExit(main())
