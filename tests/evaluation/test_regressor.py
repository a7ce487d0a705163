"""The conv regressor bar: ``diagnose.py regressor`` trains it on a DiT run's batches and saves it; the file loads
back to the same estimates; the quickstart scores it beside the DiT."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

_spec = importlib.util.spec_from_file_location("recipe_learns", Path(__file__).with_name("test_recipe_learns.py"))
_toy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_toy)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    from mgeldm.cli.diagnose import compose
    from mgeldm.models.conditioners import build_conditioner

    root = tmp_path_factory.mktemp("regressor")
    cfg = compose("quickstart_dit", _toy.SCALED_DOWN)
    conditioner = build_conditioner(cfg["model"]["conditioner"]["clap_text"])
    _toy.write_toy_latents(root / "latents", conditioner, int(cfg["model"]["MGELDM"]["io_channels"]))
    return root, conditioner


@pytest.mark.slow
def test_regressor_command_trains_on_the_dit_batches_and_saves(toy, capsys):
    from mgeldm.cli.diagnose import compose, eval_songs, main, silence_from
    from mgeldm.data.prompts import canonical_prompt
    from mgeldm.evaluation.baseline import load_regressor, regressor_estimates
    from mgeldm.evaluation.latent import score_estimates

    root, conditioner = toy
    out = root / "regressor.pt"
    assert (
        main(["regressor", "--latents", str(root / "latents"), "--steps", "40", "--out", str(out), *_toy.SCALED_DOWN])
        == 0
    )
    assert "regressor: 40 steps" in capsys.readouterr().out
    net, stats, steps = load_regressor(out)
    assert steps == 40 and len(stats["mean"]) == 3 and not net.training
    songs = eval_songs(compose("quickstart_dit", _toy.SCALED_DOWN), root / "latents", "train", None)
    est = regressor_estimates(net, stats, songs, conditioner.embed_text, canonical_prompt)
    again = regressor_estimates(load_regressor(out)[0], stats, songs, conditioner.embed_text, canonical_prompt)
    for song in songs:
        for label in song.sources:
            assert torch.equal(est[song.name][label], again[song.name][label])  # the file holds the model
    scores = score_estimates(songs, est, silence_from(root / "latents"))
    assert scores["n_pairs"] == 2 * len(_toy.LABELS) and scores["latent_rel_mse"] < 1.0  # 40 steps already learn
    # diagnose.py latents scores the file on any pre-encoded split, per stem with --per-stem: the same numbers
    assert (
        main(["latents", "--latents", str(root / "latents"), "--split", "train", "--regressor", str(out), "--per-stem"])
        == 0
    )
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["regressor"] == str(out) and row["steps"] == 40 and set(row["per_stem"]) == set(_toy.LABELS)
    assert row["latent_prompt_accuracy"] == round(scores["latent_prompt_accuracy"], 4)
    assert row["latent_rel_mse"] == round(scores["latent_rel_mse"], 4)
    assert main(["latents", "--latents", str(root / "latents")]) == 2  # nothing to score
    assert "name at least one checkpoint or --regressor" in capsys.readouterr().err


def test_load_regressor_refuses_another_file(tmp_path):
    from mgeldm.errors import UserError
    from mgeldm.evaluation.baseline import load_regressor

    bad = tmp_path / "not_a_regressor.pt"
    torch.save({"weights": torch.zeros(2)}, bad)
    with pytest.raises(UserError, match="not a regressor file"):
        load_regressor(bad)
