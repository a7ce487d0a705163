"""``scripts/quickstart.sh --smoke`` end to end (every stage through the real scripts), and the report's fields.

The smoke run trains for a few steps only: its numbers mean nothing and no target is asserted here (the
targets are for the full run, see README). The report builder is also checked on hand-made inputs.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mgeldm.cli.quickstart_report import METRIC_NAMES, PARAPHRASES, build_report, paraphrase_list, prompt_list

REPO = Path(__file__).resolve().parents[2]
TOP_FLOATS = ("wall_seconds",) + METRIC_NAMES


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_report(report: dict) -> None:
    for key in TOP_FLOATS:
        assert isinstance(report[key], float), key
    assert isinstance(report["n_songs"], int) and report["n_songs"] >= 1
    assert isinstance(report["n_pairs"], int) and report["n_pairs"] >= report["n_songs"]
    assert isinstance(report["per_stem"], dict) and report["per_stem"]
    for label, vals in report["per_stem"].items():
        assert set(vals) == set(METRIC_NAMES), label
        assert all(isinstance(v, float) for v in vals.values()), label
    assert isinstance(report["stage_seconds"], dict) and report["stage_seconds"]
    assert all(_is_number(v) and v >= 0 for v in report["stage_seconds"].values())


@pytest.mark.slow
def test_smoke_quickstart_writes_a_full_report(tmp_path):
    out = tmp_path / "qs"
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(REPO / "scripts" / "quickstart.sh"), "--smoke", "--out", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "quickstart_report.json").read_text())
    check_report(report)
    assert set(report["stage_seconds"]) >= {"corpus", "train_ae", "pre_encode", "train_dit", "infer", "evaluate"}
    assert report["wall_seconds"] >= sum(v for k, v in report["stage_seconds"].items() if k != "report") - 1
    # accuracies are shares; Log-Mel ratios are positive and finite for the baselines
    for key in ("prompt_accuracy", "paraphrase_accuracy"):
        assert 0.0 <= report[key] <= 1.0
    for key in ("oracle_logmel_l1_ratio_vs_mix", "silence_logmel_l1_ratio_vs_mix", "logmel_l1_ratio_vs_mix",
                "untrained_logmel_l1_ratio_vs_mix"):
        assert math.isfinite(report[key]) and report[key] > 0
    md = (out / "quickstart_report.md").read_text()
    assert "logmel_l1_ratio_vs_mix" in md and "prompt_accuracy" in md
    # the three tasks wrote wavs with spectrogram pngs beside them; the score-only runs wrote wavs alone
    for task in ("extract", "paraphrase", "extract_untrained", "partial_gen", "total_gen"):
        wavs = list((out / "infer" / task).rglob("gen_*.wav"))
        assert wavs, task
        pngs = [w.with_suffix(".png").is_file() for w in wavs]
        assert all(pngs) if task in ("extract", "partial_gen", "total_gen") else not any(pngs), task


def _block(model, oracle=None, silence=None, sdri=None):
    rows = {"model": {"logmel_l1_ratio_vs_mix": {"mean": model}}}
    if oracle is not None:
        rows["oracle"] = {"logmel_l1_ratio_vs_mix": {"mean": oracle}}
        rows["silence"] = {"logmel_l1_ratio_vs_mix": {"mean": silence}}
        rows["model"]["si_sdri"] = {"mean": sdri}
    return {"rows": rows}


def test_build_report_fields_and_values():
    evaluation = {"n_files": 3, "overall": _block(0.5, 0.2, 3.0, 4.0),
                  "groups": {"bass": _block(0.4, 0.1, 2.0, 5.0), "synth_lead": _block(0.7, 0.3, 4.0, 2.5)}}
    untrained = {"overall": _block(1.5), "groups": {"bass": _block(1.2), "synth_lead": _block(1.8)}}
    report = build_report(evaluation=evaluation, untrained=untrained,
                          prompt_hits={"Bass": [True, False], "Synth Lead": [True]},
                          para_hits={"Bass": [True] * 5 + [False] * 5, "Synth Lead": [False] * 5},
                          stage_seconds={"corpus": 1, "train_ae": 2.5}, wall_seconds=10, n_songs=2)
    check_report(report)
    assert report["logmel_l1_ratio_vs_mix"] == 0.5 and report["untrained_logmel_l1_ratio_vs_mix"] == 1.5
    assert report["oracle_logmel_l1_ratio_vs_mix"] == 0.2 and report["silence_logmel_l1_ratio_vs_mix"] == 3.0
    assert report["prompt_accuracy"] == pytest.approx(2 / 3)
    assert report["paraphrase_accuracy"] == pytest.approx(5 / 15)
    assert report["si_sdr_improvement_db"] == 4.0
    assert set(report["per_stem"]) == {"Bass", "Synth Lead"}
    assert report["per_stem"]["Bass"]["prompt_accuracy"] == 0.5
    assert report["per_stem"]["Synth Lead"]["untrained_logmel_l1_ratio_vs_mix"] == 1.8
    assert report["n_pairs"] == 3 and report["stage_seconds"] == {"corpus": 1.0, "train_ae": 2.5}


def test_paraphrases_never_appear_in_training_prompts():
    from mgeldm.data.prompts import TEMPLATES, normalize_label

    for label, wordings in PARAPHRASES.items():
        assert len(set(wordings)) >= 5
        seen = {t.format(labels=normalize_label(label)).lower() for t in TEMPLATES}
        assert not seen & {w.lower() for w in wordings}, label
    canonical = [p for _, p in prompt_list(list(PARAPHRASES))]
    assert all(p.startswith("The sound of ") for p in canonical)
    assert len(paraphrase_list(list(PARAPHRASES))) == 5 * len(PARAPHRASES)
