"""evaluate.py's engine under the excerpt's Log-Mel floor: every row of a file shares the floor of its mixture
(of its reference without mix_dir), and each Log-Mel figure has its ``_absfloor`` twin."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import soundfile as sf
import torch

from mgeldm.errors import UserError
from mgeldm.evaluation.stems import evaluate_pairs, markdown, pair_files
from mgeldm.metrics.logmel import LogMelConfig, logmel_l1, logmel_l1_ratio_vs_mix

SR = 16000


def _write(folder: Path, wave: torch.Tensor) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    sf.write(folder / "song.wav", wave.numpy(), SR, subtype="FLOAT")


@pytest.fixture()
def excerpt(tmp_path) -> dict:
    """One song: a quiet stem with digital silence in its second half, its estimate with a 0.002 RMS noise floor."""
    t = torch.arange(2 * SR) / SR
    quiet = 0.05 * torch.sin(2 * math.pi * 440 * t) * (t < 1).float()
    mix = quiet + 0.3 * torch.sin(2 * math.pi * 110 * t)
    noise = torch.randn(2 * SR, generator=torch.Generator().manual_seed(0))
    est = quiet + 0.002 * noise / noise.std()
    for name, wave in (("pred", est), ("ref", quiet), ("mix", mix)):
        _write(tmp_path / name / "piano", wave)
    return {"root": tmp_path, "est": est, "ref": quiet, "mix": mix}


def _model(result: dict) -> dict:
    return result["per_file"][0]["model"]


def test_every_logmel_figure_has_its_absfloor_twin(excerpt):
    root = excerpt["root"]
    result = evaluate_pairs(
        pair_files(root / "pred", root / "ref", root / "mix"),
        metrics=["logmel_l1", "logmel_l1_ratio_vs_mix"],
        n_boot=10,
    )
    model = _model(result)
    assert set(model) == {
        "logmel_l1",
        "logmel_l1_absfloor",
        "logmel_l1_ratio_vs_mix",
        "logmel_l1_ratio_vs_mix_absfloor",
    }
    rel, absolute = LogMelConfig(), LogMelConfig().absolute()
    est, ref, mix = excerpt["est"], excerpt["ref"], excerpt["mix"]
    assert model["logmel_l1"] == pytest.approx(float(logmel_l1(est, ref, rel, mix)), rel=1e-4)
    assert model["logmel_l1_absfloor"] == pytest.approx(float(logmel_l1(est, ref, absolute)), rel=1e-4)
    assert model["logmel_l1_ratio_vs_mix"] == pytest.approx(logmel_l1_ratio_vs_mix(est, ref, mix, rel), rel=1e-4)
    assert model["logmel_l1_ratio_vs_mix_absfloor"] == pytest.approx(
        logmel_l1_ratio_vs_mix(est, ref, mix, absolute), rel=1e-4
    )
    assert model["logmel_l1"] < 0.5 * model["logmel_l1_absfloor"]  # the noise floor in the silence
    rows = result["groups"]["piano"]["rows"]
    assert rows["mixture"]["logmel_l1_ratio_vs_mix"]["mean"] == pytest.approx(1.0)
    assert rows["mixture"]["logmel_l1_ratio_vs_mix_absfloor"]["mean"] == pytest.approx(1.0)
    assert set(rows["silence"]) >= {"logmel_l1", "logmel_l1_absfloor"}
    assert result["settings"]["logmel"]["floor_db_below_mix_peak"] == 60.0
    assert "60 dB" in result["settings"]["logmel_floor"]
    md = markdown(result)
    assert "logmel_l1_ratio_vs_mix_absfloor" in md and "Log-Mel floor" in md


def test_without_mixtures_the_floor_is_the_references(excerpt):
    root = excerpt["root"]
    result = evaluate_pairs(pair_files(root / "pred", root / "ref"), metrics=["logmel_l1"], n_boot=10)
    model = _model(result)
    assert model["logmel_l1"] == pytest.approx(
        float(logmel_l1(excerpt["est"], excerpt["ref"], LogMelConfig())), rel=1e-4
    )
    assert "reference" in result["settings"]["logmel_floor"]


def test_the_absolute_floor_alone_on_request(excerpt):
    root = excerpt["root"]
    result = evaluate_pairs(
        pair_files(root / "pred", root / "ref", root / "mix"),
        metrics=["logmel_l1"],
        n_boot=10,
        logmel=LogMelConfig().absolute(),
    )
    model = _model(result)
    assert model["logmel_l1"] == model["logmel_l1_absfloor"]  # the same computation twice


def test_the_cli_default_is_the_yaml_and_a_bad_logmel_key_is_one_line(excerpt):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from mgeldm.cli.evaluate import run

    configs = Path(__file__).resolve().parents[2] / "configs"
    with initialize_config_dir(config_dir=str(configs), version_base=None):
        yaml = OmegaConf.to_container(compose("evaluate"), resolve=True)["logmel"]
    defaults = {k: v for k, v in LogMelConfig().as_dict().items() if k != "sample_rate"}
    assert yaml == defaults  # the yaml states the dataclass's defaults (floor_db_below_mix_peak 60)
    root = excerpt["root"]
    cfg = {
        "pred_dir": str(root / "pred"),
        "ref_dir": str(root / "ref"),
        "output": str(root / "out.json"),
        "progress": False,
        "bootstrap": {"n_boot": 10},
        "logmel": {**yaml, "floor_db": 40},
    }
    with pytest.raises(UserError) as err:
        run(cfg)
    assert "\n" not in str(err.value) and str(err.value).startswith("logmel.floor_db: unknown key")
    with pytest.raises(UserError, match="floor_db_below_mix_peak"):
        run({**cfg, "logmel": {**yaml, "floor_db_below_mix_peak": -3}})
    result = run({**cfg, "logmel": {**yaml, "floor_db_below_mix_peak": None}})
    assert _model(result)["logmel_l1"] == _model(result)["logmel_l1_absfloor"]
