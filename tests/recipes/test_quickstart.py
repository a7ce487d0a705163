"""``scripts/quickstart.sh --smoke`` end to end (every stage through the real scripts), and the report's fields.

The smoke run trains for a few steps only: its numbers mean nothing and no target is asserted here (the
targets are for the full run, see docs/quickstart.md#what-the-report-measures). The report builder is also
checked on hand-made inputs.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recipes.quickstart.report import METRIC_NAMES, PARAPHRASES, TARGETS, build_report, paraphrase_list, prompt_list

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
        assert set(METRIC_NAMES) <= set(vals), label
        assert set(vals) - set(METRIC_NAMES) <= {
            "latent_prompt_accuracy",
            "latent_rel_mse",
            "regressor_latent_prompt_accuracy",
            "regressor_latent_rel_mse",
        }, label
        assert all(isinstance(v, float) for v in vals.values()), label
    for name in (
        "logmel_l1_ratio_vs_mix",
        "prompt_accuracy",
        "untrained_prompt_accuracy",
        "oracle_prompt_accuracy",
        "paraphrase_accuracy",
    ):
        assert name in METRIC_NAMES and name + "_absfloor" in METRIC_NAMES, name
    assert list(report["targets"]) == [t.name for t in TARGETS]
    assert all(isinstance(t["met"], bool) and isinstance(t["value"], float) for t in report["targets"].values())
    assert isinstance(report["stage_seconds"], dict) and report["stage_seconds"]
    assert all(_is_number(v) and v >= 0 for v in report["stage_seconds"].values())


def _run(args: list[str], timeout: int = 600, umask: int = -1) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(
        ["bash", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, umask=umask
    )


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One ``quickstart.sh --smoke`` run under umask 022 shared by the tests of this module: (out, process)."""
    out = tmp_path_factory.mktemp("quickstart") / "qs"
    proc = _run([str(REPO / "scripts" / "quickstart.sh"), "--smoke", "--out", str(out)], umask=0o022)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc


@pytest.fixture(scope="module")
def smoke_out(smoke_run) -> Path:
    return smoke_run[0]


@pytest.mark.slow
def test_smoke_outputs_are_readable_under_umask_022(smoke_out):
    """Every file the pipeline writes (corpus, checkpoints, latents, wavs, pngs, run.json, reports, logs) is
    0644 and every folder 0755, as any program's, so others on a shared machine can read the results."""
    import stat

    entries = [smoke_out, *smoke_out.rglob("*")]
    wrong = {
        str(p.relative_to(smoke_out)): oct(stat.S_IMODE(p.lstat().st_mode))
        for p in entries
        if stat.S_IMODE(p.lstat().st_mode) != (0o755 if p.is_dir() else 0o644)
    }
    assert wrong == {}
    names = {p.name for p in entries}
    assert {
        "run.json",
        "prompt.txt",
        "gen_src.png",
        "mgeldm.ckpt",
        "last.ckpt",
        "mix.wav",
        "mix.npy",
        "quickstart_report.json",
        "manifest.json",
    } <= names


@pytest.mark.slow
def test_smoke_log_reads_as_plain_lines_with_training_progress(smoke_run):
    """No carriage returns or cursor codes in a log file, training progress lines, no third-party chatter."""
    _, proc = smoke_run
    log = proc.stdout + proc.stderr
    assert "\r" not in log and "\x1b" not in log
    for prog in ("train_ae.py", "train_dit.py"):
        assert f"{prog}: step 1/6 | loss " in log and f"{prog}: stopped at step 6 (max_steps=6 reached)" in log
    for chatter in ("Tip:", "GPU available", "Loading weights", "val_dataloader"):
        assert chatter not in log, chatter


@pytest.mark.slow
def test_smoke_quickstart_writes_a_full_report(smoke_out):
    out = smoke_out
    report = json.loads((out / "quickstart_report.json").read_text())
    check_report(report)
    assert set(report["stage_seconds"]) >= {"corpus", "train_ae", "pre_encode", "train_dit", "unwrap_dit", "evaluate"}
    # the budgets are steps: each training stage's steps and rate, the monitor's best checkpoint unwrapped, the
    # regressor on the DiT's batches, the extraction sampler the monitor used (configs/quickstart_dit.yaml's)
    training = report["training"]
    assert training["ae"]["steps"] == training["dit"]["steps"] == 6 and training["dit"]["steps_per_second"] > 0
    assert training["unwrapped"]["checkpoint"].startswith("best-step") and training["unwrapped"]["step"] in (3, 6)
    assert report["regressor_steps"] == 6 and 0.0 <= report["regressor_latent_prompt_accuracy"] <= 1.0
    assert report["extraction_sampler"] == {"steps": 1, "cfg_scale": 1.5, "overlap_seconds": 0.128}
    assert (out / "runs" / "ae" / "train_summary.json").is_file() and (out / "checkpoints" / "regressor.pt").is_file()
    assert report["wall_seconds"] >= sum(v for k, v in report["stage_seconds"].items() if k != "report") - 1
    # accuracies are shares; Log-Mel ratios are positive and finite for the baselines
    for key in (
        "prompt_accuracy",
        "paraphrase_accuracy",
        "untrained_prompt_accuracy",
        "oracle_prompt_accuracy",
        "prompt_accuracy_absfloor",
        "untrained_prompt_accuracy_absfloor",
    ):
        assert 0.0 <= report[key] <= 1.0, key
    for key in (
        "oracle_logmel_l1_ratio_vs_mix",
        "silence_logmel_l1_ratio_vs_mix",
        "logmel_l1_ratio_vs_mix",
        "untrained_logmel_l1_ratio_vs_mix",
    ):
        assert math.isfinite(report[key]) and report[key] > 0
    md = (out / "quickstart_report.md").read_text()
    assert "logmel_l1_ratio_vs_mix" in md and "prompt_accuracy" in md and "prompt_accuracy_absfloor" in md
    assert "## Training (budgets in steps)" in md and "Unwrapped: `best-step" in md
    assert "![extraction examples](extraction_examples.png)" in md and (out / "extraction_examples.png").is_file()
    # the three tasks wrote wavs with spectrogram pngs beside them; the score-only runs wrote wavs alone
    for task in ("extract", "paraphrase", "extract_untrained", "partial_gen", "total_gen"):
        wavs = list((out / "infer" / task).rglob("gen_*.wav"))
        assert wavs, task
        pngs = [w.with_suffix(".png").is_file() for w in wavs]
        assert all(pngs) if task in ("extract", "partial_gen", "total_gen") else not any(pngs), task


def _block(model, oracle=None, silence=None, sdri=None):
    rows = {
        "model": {"logmel_l1_ratio_vs_mix": {"mean": model}, "logmel_l1_ratio_vs_mix_absfloor": {"mean": 2 * model}}
    }
    if oracle is not None:
        rows["oracle"] = {
            "logmel_l1_ratio_vs_mix": {"mean": oracle},
            "si_sdri": {"mean": 2 * sdri},
            "logmel_l1_ratio_vs_mix_absfloor": {"mean": 2 * oracle},
        }
        rows["silence"] = {
            "logmel_l1_ratio_vs_mix": {"mean": silence},
            "logmel_l1_ratio_vs_mix_absfloor": {"mean": 2 * silence},
        }
        rows["model"]["si_sdri"] = {"mean": sdri}
    return {"rows": rows}


def _hand_made_report(latent_rel_mse: dict | None = None):
    evaluation = {
        "n_files": 3,
        "overall": _block(0.5, 0.2, 3.0, 4.0),
        "groups": {"bass": _block(0.4, 0.1, 2.0, 5.0), "synth_lead": _block(0.7, 0.3, 4.0, 2.5)},
    }
    untrained = {"overall": _block(1.5), "groups": {"bass": _block(1.2), "synth_lead": _block(1.8)}}
    mse = latent_rel_mse or {"Bass": 0.3}
    per_stem = {label: {"latent_prompt_accuracy": 1.0, "latent_rel_mse": v} for label, v in mse.items()}
    hits = {
        "prompt_accuracy": {"Bass": [True, False], "Synth Lead": [True]},
        "prompt_accuracy_absfloor": {"Bass": [False, False], "Synth Lead": [True]},
        "untrained_prompt_accuracy": {"Bass": [False, False], "Synth Lead": [True]},
        "untrained_prompt_accuracy_absfloor": {"Bass": [False, False], "Synth Lead": [False]},
        "paraphrase_accuracy": {"Bass": [True] * 5 + [False] * 5, "Synth Lead": [False] * 5},
        "paraphrase_accuracy_absfloor": {"Bass": [True] * 2 + [False] * 8, "Synth Lead": [False] * 5},
        "oracle_prompt_accuracy": {"Bass": [True, True], "Synth Lead": [False]},
        "oracle_prompt_accuracy_absfloor": {"Bass": [True, False], "Synth Lead": [False]},
    }
    return build_report(
        evaluation=evaluation,
        untrained=untrained,
        hits=hits,
        stage_seconds={"corpus": 1, "train_ae": 2.5},
        wall_seconds=10,
        n_songs=2,
        latent={
            "latent_prompt_accuracy": 0.75,
            "latent_rel_mse": 0.4,
            "x0_error_t1": 0.6,
            "x0_error_t1_uncond": 0.9,
            "regressor_latent_prompt_accuracy": 0.7,
            "regressor_latent_rel_mse": 0.35,
            "per_stem": per_stem,
        },
    )


def test_build_report_fields_and_values():
    report = _hand_made_report()
    check_report(report)
    assert (
        report["oracle_prompt_accuracy"] == pytest.approx(2 / 3)
        and report["per_stem"]["Synth Lead"]["oracle_prompt_accuracy"] == 0.0
    )
    assert report["oracle_prompt_accuracy_absfloor"] == pytest.approx(1 / 3)
    assert (
        report["oracle_si_sdr_improvement_db"] == 8.0
        and report["per_stem"]["Bass"]["oracle_si_sdr_improvement_db"] == 10.0
    )
    assert report["latent_prompt_accuracy"] == 0.75 and report["x0_error_t1_uncond"] == 0.9
    assert (
        report["per_stem"]["Bass"]["latent_rel_mse"] == 0.3 and "latent_rel_mse" not in report["per_stem"]["Synth Lead"]
    )
    assert report["logmel_l1_ratio_vs_mix"] == 0.5 and report["untrained_logmel_l1_ratio_vs_mix"] == 1.5
    assert (
        report["logmel_l1_ratio_vs_mix_absfloor"] == 1.0 and report["untrained_logmel_l1_ratio_vs_mix_absfloor"] == 3.0
    )
    assert report["oracle_logmel_l1_ratio_vs_mix"] == 0.2 and report["silence_logmel_l1_ratio_vs_mix"] == 3.0
    assert report["silence_logmel_l1_ratio_vs_mix_absfloor"] == 6.0
    assert report["prompt_accuracy"] == pytest.approx(2 / 3) and report["prompt_accuracy_absfloor"] == pytest.approx(
        1 / 3
    )
    assert report["untrained_prompt_accuracy"] == pytest.approx(1 / 3)
    assert report["per_stem"]["Synth Lead"]["untrained_prompt_accuracy"] == 1.0
    assert report["paraphrase_accuracy"] == pytest.approx(5 / 15)
    assert report["paraphrase_accuracy_absfloor"] == pytest.approx(2 / 15)
    assert report["si_sdr_improvement_db"] == 4.0
    assert set(report["per_stem"]) == {"Bass", "Synth Lead"}
    assert report["per_stem"]["Bass"]["prompt_accuracy"] == 0.5
    assert report["per_stem"]["Synth Lead"]["untrained_logmel_l1_ratio_vs_mix"] == 1.8
    assert report["n_pairs"] == 3 and report["stage_seconds"] == {"corpus": 1.0, "train_ae": 2.5}


def test_report_targets():
    """The targets of the full run: latent accuracy 0.9, latent MSE 0.5 overall and 0.7 for every stem class, prompt
    accuracy 0.85, oracle accuracy 0.95, paraphrases 0.8, SI-SDRi above 0; the markdown states them."""
    from recipes.quickstart.report import markdown

    report = _hand_made_report({"Bass": 0.3, "Synth Lead": 0.9})
    t = report["targets"]
    assert {name: v["target"] for name, v in t.items()} == {
        "latent_prompt_accuracy": ">= 0.9",
        "latent_rel_mse": "<= 0.5",
        "latent_rel_mse (every stem class)": "<= 0.7",
        "prompt_accuracy": ">= 0.85",
        "oracle_prompt_accuracy": ">= 0.95",
        "paraphrase_accuracy": ">= 0.8",
        "si_sdr_improvement_db": "> 0",
        "latent_prompt_accuracy vs regressor_latent_prompt_accuracy": ">= regressor_latent_prompt_accuracy (0.700)",
        "latent_rel_mse vs regressor_latent_rel_mse": "<= regressor_latent_rel_mse (0.350)",
    }
    assert t["latent_prompt_accuracy vs regressor_latent_prompt_accuracy"]["met"]  # 0.75 >= 0.7
    assert not t["latent_rel_mse vs regressor_latent_rel_mse"]["met"]  # 0.4 > 0.35
    assert t["latent_rel_mse"] == {"target": "<= 0.5", "value": 0.4, "met": True}
    assert t["latent_rel_mse (every stem class)"] == {"target": "<= 0.7", "value": 0.9, "met": False}  # the worst
    assert _hand_made_report({"Bass": 0.3, "Synth Lead": 0.6})["targets"]["latent_rel_mse (every stem class)"]["met"]
    assert not t["latent_prompt_accuracy"]["met"] and t["si_sdr_improvement_db"]["met"]
    assert not t["prompt_accuracy"]["met"] and t["prompt_accuracy"]["value"] == pytest.approx(2 / 3)
    md = markdown(report, {"examples": "extraction_examples.png"})
    assert "| latent_rel_mse (every stem class) | <= 0.7 | no (0.900) |" in md
    assert "![extraction examples](extraction_examples.png)" in md
    per_stem_header = next(line for line in md.splitlines() if line.startswith("| | latent_prompt_accuracy"))
    for name in (
        "latent_rel_mse",
        "prompt_accuracy",
        "prompt_accuracy_absfloor",
        "untrained_prompt_accuracy",
        "oracle_prompt_accuracy_absfloor",
        "paraphrase_accuracy_absfloor",
    ):
        assert f"| {name} |" in per_stem_header, name


def test_paraphrases_never_appear_in_training_prompts():
    from mgeldm.data.prompts import TEMPLATES, normalize_label

    for label, wordings in PARAPHRASES.items():
        assert len(set(wordings)) >= 5
        seen = {t.format(labels=normalize_label(label)).lower() for t in TEMPLATES}
        assert not seen & {w.lower() for w in wordings}, label
    canonical = [p for _, p in prompt_list(list(PARAPHRASES))]
    assert all(p.startswith("The sound of ") for p in canonical)
    assert len(paraphrase_list(list(PARAPHRASES))) == 5 * len(PARAPHRASES)


@pytest.mark.slow
def test_curve_scores_every_checkpoint_of_a_longer_run(smoke_out, tmp_path):
    curve = tmp_path / "curve"
    proc = _run(
        [
            str(REPO / "scripts" / "quickstart_curve.sh"),
            "--from",
            str(smoke_out),
            "--model",
            "dit",
            "--steps",
            "5",
            "--every",
            "2",
            "--out",
            str(curve),
            "--",
            "model.MGELDM.depth=2",
        ]
    )  # a model override reaches training, unwrapping and scoring
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = json.loads((curve / "curve.json").read_text())
    assert [r["step"] for r in rows] == [2, 4, 5]  # every 2 steps, then the end of training (step 5, from last.ckpt)
    songs = json.loads((smoke_out / "eval" / "songs.json").read_text())
    assert all(r["n_pairs"] == sum(len(s["labels"]) for s in songs.values()) for r in rows)
    for r in rows:
        assert math.isfinite(r["logmel_l1_ratio_vs_mix"]) and r["logmel_l1_ratio_vs_mix"] > 0
        assert 0.0 <= r["prompt_accuracy"] <= 1.0
    assert rows[0]["logmel_l1_ratio_vs_mix"] != rows[1]["logmel_l1_ratio_vs_mix"]  # training moved it
    # scoring is seeded: the same checkpoint scores the same again, here through the Python function
    from mgeldm.config import compose_config
    from recipes.quickstart.score import score_checkpoints

    classes = (smoke_out / "classes.txt").read_text().strip().split(",")
    sampler = compose_config("quickstart_dit", [])["trainer"]["monitor"]  # the curve scores with the report's
    again = score_checkpoints(
        "dit",
        [rows[1]["checkpoint"]],
        str(smoke_out / "eval"),
        classes=classes,
        steps=int(sampler["steps"]),
        cfg_scale=float(sampler["cfg_scale"]),
        overlap=float(sampler["overlap_seconds"]),
        overrides=["model.MGELDM.depth=2"],
    )
    assert again[0]["logmel_l1_ratio_vs_mix"] == rows[1]["logmel_l1_ratio_vs_mix"]
    assert again[0]["per_stem"] == rows[1]["per_stem"]
    assert "| step00000004.ckpt | 4 |" in (curve / "curve.md").read_text()


def test_curve_rejects_a_folder_that_is_not_a_quickstart_output(tmp_path):
    proc = _run([str(REPO / "scripts" / "quickstart_curve.sh"), "--from", str(tmp_path)], timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "eval/songs.json: missing" in proc.stderr


def _tone(freq: float, n: int = 16000, sr: int = 16000):
    import torch

    t = torch.arange(n) / sr
    return 0.3 * torch.sin(2 * torch.pi * freq * t)


def test_score_ratio_and_accuracy_on_known_estimates():
    import torch

    from recipes.quickstart.score import score

    stems = {"Bass": _tone(80.0), "Synth Lead": _tone(2000.0)}
    mix = stems["Bass"] + stems["Synth Lead"]
    songs = {"s1": (mix, stems), "s2": (mix * 0.5, {k: v * 0.5 for k, v in stems.items()})}
    perfect = score(lambda song, m, st: dict(st), songs, 16000)
    assert perfect["logmel_l1_ratio_vs_mix"] == 0.0 and perfect["prompt_accuracy"] == 1.0
    assert perfect["n_pairs"] == 4 and set(perfect["per_stem"]) == {"Bass", "Synth Lead"}
    the_mix = score(lambda song, m, st: {k: m for k in st}, songs, 16000)
    assert the_mix["logmel_l1_ratio_vs_mix"] == pytest.approx(1.0)
    swapped = score(lambda song, m, st: {"Bass": st["Synth Lead"], "Synth Lead": st["Bass"]}, songs, 16000)
    assert swapped["prompt_accuracy"] == 0.0 and swapped["logmel_l1_ratio_vs_mix"] > 0.5
    assert set(perfect) == {
        "logmel_l1_ratio_vs_mix",
        "logmel_l1_ratio_vs_mix_absfloor",
        "prompt_accuracy",
        "prompt_accuracy_absfloor",
        "n_pairs",
        "per_stem",
    }
    assert perfect["prompt_accuracy_absfloor"] == 1.0 and the_mix["logmel_l1_ratio_vs_mix_absfloor"] == pytest.approx(
        1.0
    )
    half = score(lambda song, m, st: {"Bass": st["Bass"], "Synth Lead": torch.zeros_like(m)}, songs, 16000)
    assert (
        half["per_stem"]["Bass"]["prompt_accuracy"] == 1.0 and half["per_stem"]["Bass"]["logmel_l1_ratio_vs_mix"] == 0.0
    )
    assert half["per_stem"]["Synth Lead"]["logmel_l1_ratio_vs_mix"] > 1.0


def test_checkpoint_step_from_names():
    from mgeldm.checkpoints import checkpoint_step

    assert checkpoint_step("run/step00001400.ckpt") == 1400
    assert checkpoint_step("unwrapped/step00000002.ckpt") == 2
    assert checkpoint_step("last.ckpt") is None


@pytest.mark.slow
def test_ae_curve_rows_are_the_oracle_scores(smoke_out):
    """An AE checkpoint's row holds the report's oracle numbers: ratio and prompt accuracy of the true stems
    through the round trip (computed in memory, so equal to the report's up to 16-bit quantisation)."""
    from recipes.quickstart.score import markdown, score_checkpoints

    rows = score_checkpoints("ae", [str(smoke_out / "checkpoints" / "autoencoder.ckpt")], str(smoke_out / "eval"))
    row = rows[0]
    assert {"oracle_logmel_l1_ratio_vs_mix", "oracle_prompt_accuracy", "oracle_prompt_accuracy_absfloor"} <= set(row)
    assert "prompt_accuracy" not in row and "logmel_l1_ratio_vs_mix" not in row
    assert 0.0 <= row["oracle_prompt_accuracy"] <= 1.0
    report = json.loads((smoke_out / "quickstart_report.json").read_text())
    assert row["oracle_logmel_l1_ratio_vs_mix"] == pytest.approx(report["oracle_logmel_l1_ratio_vs_mix"], rel=0.02)
    assert report["oracle_prompt_accuracy"] == pytest.approx(row["oracle_prompt_accuracy"], abs=0.2)
    assert all(
        set(v)
        == {
            "oracle_logmel_l1_ratio_vs_mix",
            "oracle_prompt_accuracy",
            "oracle_logmel_l1_ratio_vs_mix_absfloor",
            "oracle_prompt_accuracy_absfloor",
        }
        for v in row["per_stem"].values()
    )
    assert "oracle_prompt_accuracy" in markdown(rows).splitlines()[0]


def test_extraction_settings_follow_the_dit_config_and_its_overrides(capsys, tmp_path):
    """The report scores with the sampler the monitor chose checkpoints by: the DiT config's, overrides included;
    best-checkpoint names what a run's best.json points at, and refuses a folder without one."""
    from recipes.quickstart.report import main as report_main

    assert report_main(["extraction-settings"]) == 0
    assert capsys.readouterr().out.split() == ["1", "1.5", "0.128"]
    assert report_main(["extraction-settings", "trainer.monitor.steps=4", "trainer.monitor.cfg_scale=2"]) == 0
    assert capsys.readouterr().out.split() == ["4", "2.0", "0.128"]
    assert report_main(["best-checkpoint", str(tmp_path)]) == 2
    assert str(tmp_path) in capsys.readouterr().err
