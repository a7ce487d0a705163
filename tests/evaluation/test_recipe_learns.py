"""The shipped quickstart DiT recipe learns to extract the prompted source (sizes and step counts scaled down).

The data are built here, in the pre-encoded layout training reads: latents of two "songs" whose stems are
fixed per-instrument timbre vectors switched on and off by note patterns (the mix is their sum, as a VAE is
roughly additive for well-separated sources), and per-second conditions that embed the stems' labels with the
recipe's own text encoder, as the quickstart's ``clap_from: labels`` pre-encoding does. The recipe is
``configs/quickstart_dit.yaml`` as shipped, with only the DiT's sizes, the window and the step count made
smaller. ``diagnose.py overfit`` trains it through ``train_dit.py`` and scores the checkpoints in latent space:
the prompted stem must be the one extracted for every (song, stem) pair.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

LABELS = ("Bass", "Drums", "Piano")
FRAMES = 768  # latent frames per song (about 3 s at the quickstart AE's 250 frames per second)
SCALED_DOWN = [  # sizes and steps only: every recipe option stays as configs/quickstart_dit.yaml ships it
    "model.MGELDM.depth=2",
    "model.MGELDM.embed_dim=32",
    "model.MGELDM.num_heads=3",
    "model.MGELDM.timestep_features_dim=32",
    "model.segment_length=64",
]
STEPS, EVERY, BATCH = 150, 150, 16


def _envelope(rng: np.random.Generator, frames: int) -> np.ndarray:
    """Notes: on/off blocks of 16-64 frames with random levels."""
    env = np.zeros(frames, dtype=np.float32)
    t = 0
    while t < frames:
        length = int(rng.integers(16, 64))
        if rng.random() < 0.6:
            env[t : t + length] = rng.uniform(0.5, 1.5)
        t += length
    return env


def write_toy_latents(root: Path, conditioner, channels: int, songs: int = 2, seed: int = 0) -> None:
    from mgeldm.data.pre_encode import ZERO_LATENT_NAME, write_track_folder
    from mgeldm.data.prompts import join_labels

    rng = np.random.default_rng(seed)
    timbre = {label: rng.normal(0, 3.0, channels).astype(np.float32) for label in LABELS}
    seconds = int(np.ceil(FRAMES / 250))

    def clap(labels) -> np.ndarray:
        emb = conditioner.embed_text([join_labels(labels)]).float().numpy()[0]
        return np.repeat(emb[:, None], seconds, axis=1).astype(np.float32)

    for n in range(songs):
        stems = {
            label: timbre[label][:, None] * _envelope(rng, FRAMES)[None]
            + rng.normal(0, 0.1, (channels, FRAMES)).astype(np.float32)
            for label in LABELS
        }
        mix = sum(stems.values())
        files: dict[str, object] = {"mix.npy": mix, "mix_clap.npy": clap(LABELS)}
        for k, label in enumerate(LABELS):
            others = [x for x in LABELS if x != label]
            files[f"comb{k}/src.npy"] = stems[label]
            files[f"comb{k}/src_clap.npy"] = clap([label])
            files[f"comb{k}/submix.npy"] = mix - stems[label]
            files[f"comb{k}/submix_clap.npy"] = clap(others)
            files[f"comb{k}/comb_info.json"] = {"src_label": label, "submix_label_list": others}
        write_track_folder(root / "slakh2100" / "train" / f"track{n:05d}", files)
    np.save(root / ZERO_LATENT_NAME, np.zeros(channels, dtype=np.float32))


def random_autoencoder(path: Path, model_cfg: dict) -> Path:
    """train_dit.py needs the AE the latents came from; these latents come from none, so any AE of the size."""
    from mgeldm.checkpoints import write_state_dict
    from mgeldm.models.autoencoder import build_autoencoder

    torch.manual_seed(0)
    return write_state_dict(build_autoencoder(model_cfg["pretransform"]["autoencoder"]).state_dict(), path)


@pytest.mark.slow
def test_quickstart_recipe_extracts_the_prompted_source(tmp_path, capsys):
    from mgeldm.cli.diagnose import compose, main
    from mgeldm.models.conditioners import build_conditioner

    cfg = compose("quickstart_dit", SCALED_DOWN)
    conditioner = build_conditioner(cfg["model"]["conditioner"]["clap_text"])
    latents = tmp_path / "latents"
    write_toy_latents(latents, conditioner, int(cfg["model"]["MGELDM"]["io_channels"]))
    ae = random_autoencoder(tmp_path / "ae.ckpt", cfg["model"])
    out = tmp_path / "overfit"
    rc = main(
        [
            "overfit",
            "--latents",
            str(latents),
            "--ae",
            str(ae),
            "--songs",
            "2",
            "--steps",
            str(STEPS),
            "--every",
            str(EVERY),
            "--batch",
            str(BATCH),
            "--no-baseline",
            "--out",
            str(out),
            *SCALED_DOWN,
        ]
    )
    assert rc == 0
    rows = json.loads((out / "overfit.json").read_text())["rows"]
    final = [r for r in rows if r["step"] == STEPS and r["weights"] == "ema"][0]
    assert final["n_pairs"] == 2 * len(LABELS)
    assert final["latent_prompt_accuracy"] == 1.0, final
    # the first sampling step's estimate of the source (mix given, source pure noise) is mostly right already
    assert final["x0_error_t1"] < 0.45, final
    assert final["x0_error_t1"] < 0.7 * final["x0_error_t1_uncond"], final  # and the prompt is what decides

    # diagnose.py latents scores the same checkpoint again (the same songs, sampler and seed: the same numbers),
    # per stem class with --per-stem
    ckpt = next((out / "run" / "checkpoints").glob(f"*step*{STEPS}*.ckpt"))
    assert (
        main(
            [
                "latents",
                str(ckpt),
                "--latents",
                str(latents),
                "--split",
                "train",
                "--songs",
                "2",
                "--per-stem",
                "--sample-steps",
                "4",
                "--cfg-scale",
                "2",
            ]
        )
        == 0
    )
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["latent_prompt_accuracy"] == final["latent_prompt_accuracy"]
    assert row["latent_rel_mse"] == pytest.approx(final["latent_rel_mse"], abs=2e-4)
    assert set(row["per_stem"]) == set(LABELS)
