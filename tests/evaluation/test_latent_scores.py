"""Latent-space extraction scores and the conv baseline: known estimates give known scores."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from mgeldm.evaluation.latent import LatentSong, latent_scores, score_estimates

_spec = importlib.util.spec_from_file_location("tasks_tests", Path(__file__).parents[1] / "tasks" / "test_tasks.py")


def _songs(c: int = 4, frames: int = 40) -> list[LatentSong]:
    g = torch.Generator().manual_seed(0)
    songs = []
    for n in range(2):
        stems = {label: torch.randn(c, frames, generator=g) + i for i, label in enumerate(("Bass", "Drums", "Piano"))}
        mix = sum(stems.values())
        songs.append(LatentSong(f"song{n}", mix, stems, {k: mix - v for k, v in stems.items()}))
    return songs


def test_true_stems_score_perfectly_and_silence_scores_one():
    songs = _songs()
    silence = torch.zeros(4, 1)
    truth = score_estimates(songs, {s.name: dict(s.sources) for s in songs}, silence)
    assert truth["latent_prompt_accuracy"] == 1.0 and truth["latent_rel_mse"] == 0.0 and truth["n_pairs"] == 6
    quiet = score_estimates(
        songs, {s.name: {k: torch.zeros_like(v) for k, v in s.sources.items()} for s in songs}, silence
    )
    assert quiet["latent_rel_mse"] == pytest.approx(1.0)


def test_swapped_stems_score_zero_and_per_stem_is_kept_apart():
    songs = _songs()
    swap = {"Bass": "Drums", "Drums": "Piano", "Piano": "Bass"}
    est = {s.name: {k: s.sources[swap[k]] for k in s.sources} for s in songs}
    scores = score_estimates(songs, est, torch.zeros(4, 1))
    assert scores["latent_prompt_accuracy"] == 0.0
    assert set(scores["per_stem"]) == {"Bass", "Drums", "Piano"}
    assert all(v["latent_prompt_accuracy"] == 0.0 for v in scores["per_stem"].values())


@pytest.mark.reference
def test_model_scores_run_on_the_tiny_model_and_are_seeded(reference_fixtures):
    spec = importlib.util.spec_from_file_location("tt", Path(__file__).parents[1] / "tasks" / "test_tasks.py")
    tt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tt)
    from mgeldm.api import MGELDM

    rd = reference_fixtures.readme
    cfg = {
        "sample_rate": rd["sample_rate"],
        "segment_length": 16,
        "pretransform": {**rd["pretransform"], "autoencoder": rd["autoencoder"]},
        "MGELDM": rd["mgeldm"],
    }
    model = MGELDM.from_pretrained(
        reference_fixtures.path("tiny_mgeldm.ckpt"),
        model_config=cfg,
        device="cpu",
        conditioner=tt.HashConditioner(rd["mgeldm"]["global_cond_dim"]),
    )
    songs = _songs(c=rd["mgeldm"]["io_channels"], frames=40)
    a = latent_scores(model, songs, lambda label: f"The sound of {label}.", steps=2, times=(0.05, 1.0))
    b = latent_scores(model, songs, lambda label: f"The sound of {label}.", steps=2, times=(0.05, 1.0))
    assert a == b
    assert a["n_pairs"] == 6 and 0.0 <= a["latent_prompt_accuracy"] <= 1.0
    for key in ("x0_error_t0.05", "x0_error_t0.05_uncond", "x0_error_t1", "x0_error_t1_uncond"):
        assert a[key] > 0
    # at t = 0.05 the noisy source is nearly the answer: any model is far better than at t = 1
    assert a["x0_error_t0.05"] < a["x0_error_t1"]


@pytest.mark.slow
def test_regressor_learns_a_prompted_choice():
    """The bar itself must be able to learn: keep the prompted one of two stems, loss falls 5x."""
    from mgeldm.evaluation.baseline import train_regressor

    class Cond:
        def embed_text(self, texts):
            return torch.stack([torch.tensor([1.0, 0.0]) if "a" in t else torch.tensor([0.0, 1.0]) for t in texts])

    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(300):
        a, b = torch.randn(8, 2, 16, generator=g), torch.randn(8, 2, 16, generator=g)
        a[:, 1], b[:, 0] = 0, 0  # stem a lives in channel 0, b in 1
        which = torch.rand(8, generator=g) < 0.5
        prompts = ["a" if w else "b" for w in which]
        src = torch.where(which[:, None, None], a, b)
        batches.append({"mix_latent": a + b, "src_latent": src, "src_clap": torch.zeros(8, 2), "src_prompt": prompts})
    stats = {"mean": [[0.0, 0.0]] * 3, "std": [[1.0, 1.0]] * 3}
    # the blend draws audio/text weights: give the text all the weight by an all-zero audio condition
    net, losses = train_regressor(batches, stats, Cond(), cond_dim=2, seed=0)
    assert sum(losses[-20:]) < 0.2 * sum(losses[:20])
