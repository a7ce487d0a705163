"""evaluate.py: pairing errors in one line, and a small end-to-end run with baseline rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mgeldm.cli.evaluate import run
from mgeldm.errors import UserError
from mgeldm.evaluation.stems import align, evaluate_pairs, pair_files

REPO = Path(__file__).resolve().parents[2]
SR = 16000


def _write(path: Path, x: np.ndarray, sr: int = SR) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), sr, subtype="FLOAT")


@pytest.fixture()
def dirs(tmp_path) -> Path:
    """Two stems x two songs: ref, mix = ref + other, pred = ref + 0.1 other, oracle = 0.9 ref."""
    rng = np.random.default_rng(0)
    t = np.arange(SR) / SR
    for k, song in enumerate(("song1", "song2")):
        bass = 0.3 * np.sin(2 * np.pi * (60 + 10 * k) * t)
        drums = 0.1 * rng.standard_normal(SR) * (np.sin(2 * np.pi * 2 * t) > 0)
        _write(tmp_path / "mix" / f"{song}.wav", bass + drums)
        for stem, ref, other in (("bass", bass, drums), ("drums", drums, bass)):
            _write(tmp_path / "ref" / stem / f"{song}.wav", ref)
            _write(tmp_path / "oracle" / stem / f"{song}.wav", 0.9 * ref)
            # predictions at 22.05 kHz and 100 samples longer: resampled, then trimmed
            pred = np.concatenate([ref + 0.1 * other, np.zeros(100)])
            import soxr

            _write(tmp_path / "pred" / stem / f"{song}.wav", soxr.resample(pred, SR, 22050), 22050)
    return tmp_path


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, str(REPO / "evaluate.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_unpaired_files_are_one_line_errors(dirs):
    (dirs / "pred" / "bass" / "song3.wav").write_bytes((dirs / "pred" / "bass" / "song1.wav").read_bytes())
    with pytest.raises(UserError) as err:
        pair_files(str(dirs / "pred"), str(dirs / "ref"))
    assert "\n" not in str(err.value) and "bass/song3.wav" in str(err.value)
    with pytest.raises(UserError, match="ref_dir"):
        pair_files(str(dirs / "pred"), str(dirs / "nowhere"))
    proc = _run(
        [
            f"+pred_dir={dirs / 'pred'}",
            f"+ref_dir={dirs / 'ref'}",
            f"+output={dirs / 'out'}",
            "+metrics=[si_sdr,logmel_l1]",
        ],
        dirs,
    )
    assert proc.returncode == 2
    assert not (dirs / "outputs").exists() and not (dirs / ".hydra").exists()  # Hydra writes nothing
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("evaluate.py: error: unpaired files") and "song3.wav" in lines[0]
    assert not (dirs / "out").exists()


def test_align_trims_to_shortest():
    import torch

    a, b = align(torch.ones(10), torch.ones(7))
    assert a.shape == b.shape == (7,)


def test_evaluate_end_to_end(dirs):
    cfg = {
        "pred_dir": str(dirs / "pred"),
        "ref_dir": str(dirs / "ref"),
        "mix_dir": str(dirs / "mix"),
        "oracle_dir": str(dirs / "oracle"),
        "output": str(dirs / "res.json"),
        "progress": False,
        "metrics": ["si_sdr", "si_sdri", "logmel_l1", "logmel_l1_ratio_vs_mix", "fad"],
        "bootstrap": {"n_boot": 200, "seed": 0},
    }
    run(cfg)
    res = json.loads((dirs / "res.json").read_text())
    assert (dirs / "res.md").read_text().count("| model |") == 4  # bass, drums, overall, FAD
    assert set(res["groups"]) == {"bass", "drums"} and res["n_files"] == 4
    bass = res["groups"]["bass"]["rows"]
    assert set(bass) == {"model", "mixture", "silence", "oracle"}
    # pred = ref + 0.1 * other is much better than the mixture, the oracle is near perfect
    assert bass["model"]["si_sdr"]["mean"] > bass["mixture"]["si_sdr"]["mean"] + 15
    assert bass["model"]["si_sdri"]["mean"] == pytest.approx(
        bass["model"]["si_sdr"]["mean"] - bass["mixture"]["si_sdr"]["mean"], abs=1e-6
    )
    assert bass["oracle"]["si_sdr"]["mean"] > 60
    assert bass["silence"]["si_sdr"]["n"] == 0  # undefined for silence
    assert bass["mixture"]["logmel_l1_ratio_vs_mix"]["mean"] == pytest.approx(1.0)
    assert bass["model"]["logmel_l1_ratio_vs_mix"]["mean"] < 1.0
    s = bass["model"]["logmel_l1"]
    assert s["ci_low"] <= s["mean"] <= s["ci_high"] and s["n"] == 2
    assert res["fad"]["sub_fad"]["oracle"]["mean"] < res["fad"]["sub_fad"]["silence"]["mean"]
    assert all(f["samples"] == SR for f in res["per_file"])  # trimmed to the reference


def test_unknown_metric_and_missing_mix(dirs):
    pairs = pair_files(str(dirs / "pred"), str(dirs / "ref"))
    with pytest.raises(UserError, match="unknown"):
        evaluate_pairs(pairs, metrics=["bleu"])
    with pytest.raises(UserError, match="mix_dir"):
        evaluate_pairs(pairs, metrics=["si_sdri"])
