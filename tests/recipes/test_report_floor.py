"""The report command on a hand-made quickstart output (no training): every row under the excerpt's Log-Mel floor
with the ``_absfloor`` figures beside, the untrained DiT's own prompt accuracy, and the side-by-side png."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from mgeldm.audio import write_wav
from mgeldm.evaluation.stems import evaluate_pairs, pair_files
from mgeldm.tasks.outputs import unique_slugs
from recipes.quickstart.evalset import paraphrase_list, prompt_list, stem_folder

SR = 16000
CLASSES = ("Bass", "Piano", "Synth Lead")
SONGS = {"song_a": ("Bass", "Piano"), "song_b": ("Bass", "Synth Lead")}
METRICS = ["si_sdr", "si_sdri", "logmel_l1", "logmel_l1_ratio_vs_mix"]


def _stems(song: str) -> dict[str, torch.Tensor]:
    t = torch.arange(SR) / SR
    k = list(SONGS).index(song)
    waves = {
        "Bass": 0.3 * torch.sin(2 * math.pi * (80 + 20 * k) * t),
        "Piano": 0.1 * torch.sin(2 * math.pi * 523 * t),
        "Synth Lead": 0.05 * torch.sin(2 * math.pi * 2000 * t) * (t < 0.5).float(),
    }  # digital silence after
    return {label: waves[label] for label in SONGS[song]}


def _faint(wave: torch.Tensor, seed: int) -> torch.Tensor:
    """The wave with a decoded stem's noise floor (0.002 RMS)."""
    noise = torch.randn(wave.shape[-1], generator=torch.Generator().manual_seed(seed))
    return wave + 0.002 * noise / noise.std()


def _run(folder: Path, n_prompts: int, pick) -> None:
    """An infer.py source-extraction output: ``output_0000/<song>/<kk>_<prompt>/gen_src.wav``."""
    for song, slug in zip(sorted(SONGS), unique_slugs(sorted(SONGS), fallback="input")):
        for k in range(n_prompts):
            write_wav(folder / "output_0000" / slug / f"{k:02d}_prompt" / "gen_src.wav", pick(song, k), SR)


def _eval_folders(eval_dir: Path) -> None:
    songs = {}
    for song in SONGS:
        stems = _stems(song)
        mix = sum(stems.values())
        write_wav(eval_dir / "mix" / f"{song}.wav", mix, SR)
        write_wav(eval_dir / "mix_para" / f"{song}.wav", mix, SR)
        for label, wave in stems.items():
            write_wav(eval_dir / "ref" / stem_folder(label) / f"{song}.wav", wave, SR)
            write_wav(eval_dir / "oracle" / stem_folder(label) / f"{song}.wav", _faint(wave, 1), SR)
            write_wav(eval_dir / "pred" / stem_folder(label) / f"{song}.wav", _faint(wave, 2), SR)
            write_wav(eval_dir / "pred_untrained" / stem_folder(label) / f"{song}.wav", mix, SR)
        songs[song] = {"labels": list(stems), "partial_label": list(stems)[-1], "seconds": 1.0}
    (eval_dir / "songs.json").write_text(json.dumps(songs))


@pytest.fixture(scope="module")
def quickstart_out(tmp_path_factory) -> Path:
    """What scripts/quickstart.sh has written when its report stage starts (a trained DiT that extracts the prompted
    stem with a faint noise floor, an untrained one that returns the other stem of the song)."""
    out = tmp_path_factory.mktemp("qs")
    eval_dir = out / "eval"
    _eval_folders(eval_dir)
    canonical, para = prompt_list(CLASSES), paraphrase_list(CLASSES)

    def trained(prompts):
        return lambda song, k: _faint(_stems(song).get(prompts[k][0], torch.zeros(SR)), 3 + k)

    def untrained(song, k):
        stems = _stems(song)
        others = [w for label, w in stems.items() if label != canonical[k][0]]
        return others[0]

    _run(out / "infer" / "extract", len(canonical), trained(canonical))
    _run(out / "infer" / "paraphrase", len(para), trained(para))
    _run(out / "infer" / "extract_untrained", len(canonical), untrained)
    for pred, name in (("pred", "evaluation.json"), ("pred_untrained", "evaluation_untrained.json")):
        oracle = eval_dir / "oracle" if pred == "pred" else None
        result = evaluate_pairs(
            pair_files(eval_dir / pred, eval_dir / "ref", eval_dir / "mix", oracle), metrics=METRICS, n_boot=10
        )
        (eval_dir / name).write_text(json.dumps(result))
    return out


def _report(out: Path, *extra: str) -> int:
    from recipes.quickstart.report import main

    eval_dir, infer = out / "eval", out / "infer"
    return main(
        [
            "report",
            "--out",
            str(out),
            "--eval-dir",
            str(eval_dir),
            "--evaluation",
            str(eval_dir / "evaluation.json"),
            "--untrained-evaluation",
            str(eval_dir / "evaluation_untrained.json"),
            "--extract-run",
            str(infer / "extract"),
            "--untrained-run",
            str(infer / "extract_untrained"),
            "--paraphrase-run",
            str(infer / "paraphrase"),
            "--classes",
            ",".join(CLASSES),
            "--start-time",
            "0",
            *extra,
        ]
    )


@pytest.fixture(scope="module")
def report(quickstart_out) -> dict:
    assert _report(quickstart_out) == 0
    return json.loads((quickstart_out / "quickstart_report.json").read_text())


def test_every_row_has_its_absfloor_figures_and_the_untrained_run_its_accuracy(report):
    for name in (
        "logmel_l1_ratio_vs_mix",
        "untrained_logmel_l1_ratio_vs_mix",
        "oracle_logmel_l1_ratio_vs_mix",
        "silence_logmel_l1_ratio_vs_mix",
        "prompt_accuracy",
        "untrained_prompt_accuracy",
        "oracle_prompt_accuracy",
        "paraphrase_accuracy",
    ):
        for key in (name, name + "_absfloor"):
            assert isinstance(report[key], float) and not math.isnan(report[key]), key
            assert all(key in v for v in report["per_stem"].values()), key
    # the trained DiT and the oracle extract the prompted stem (under a faint noise floor): right under the excerpt's
    # floor; the untrained DiT returns the other stem: wrong
    assert report["prompt_accuracy"] == 1.0 and report["oracle_prompt_accuracy"] == 1.0
    assert report["paraphrase_accuracy"] == 1.0
    assert (
        report["untrained_prompt_accuracy"] == 0.0
        and report["per_stem"]["Synth Lead"]["untrained_prompt_accuracy"] == 0.0
    )
    # the noise floor in the synth lead's digital silence costs more under the absolute floor
    lead = report["per_stem"]["Synth Lead"]
    assert lead["oracle_logmel_l1_ratio_vs_mix"] < lead["oracle_logmel_l1_ratio_vs_mix_absfloor"]
    assert report["n_pairs"] == 4 and set(report["per_stem"]) == set(CLASSES)
    assert report["targets"]["prompt_accuracy"] == {"target": ">= 0.85", "value": 1.0, "met": True}


def test_the_markdown_names_the_untrained_run_and_links_the_png(report, quickstart_out):
    md = (quickstart_out / "quickstart_report.md").read_text()
    assert "untrained_prompt_accuracy" in md and "prompt_accuracy_absfloor" in md
    assert "![extraction examples](extraction_examples.png)" in md
    assert str(quickstart_out / "infer" / "extract_untrained" / "output_0000") in md


def test_the_png_has_one_row_per_stem_class(report, quickstart_out, tmp_path):
    import matplotlib.image

    from recipes.quickstart.figures import example_files, extraction_examples, relative_db

    eval_dir = quickstart_out / "eval"
    rows = example_files(eval_dir, CLASSES)
    assert [(label, song) for label, song, _ in rows] == [
        ("Bass", "song_a"),
        ("Piano", "song_a"),
        ("Synth Lead", "song_b"),
    ]
    assert rows[2][2] == (
        eval_dir / "mix" / "song_b.wav",
        eval_dir / "ref" / "synth_lead" / "song_b.wav",
        eval_dir / "pred" / "synth_lead" / "song_b.wav",
    )
    png = quickstart_out / "extraction_examples.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in quickstart_out.iterdir() if p.name.startswith(".")]  # written atomically
    one = extraction_examples(eval_dir, CLASSES[:1], tmp_path / "one.png", SR)
    three_high, one_high = matplotlib.image.imread(png).shape[0], matplotlib.image.imread(one).shape[0]
    assert three_high > 2 * one_high  # a row per stem class
    assert extraction_examples(eval_dir, ("Drums",), tmp_path / "none.png", SR) is None  # no song has drums
    # one dB scale: 0 at the mixture's mel peak, the floor 60 dB under it, for every panel
    from mgeldm.audio import load_mono
    from mgeldm.metrics.logmel import LogMelConfig

    db = relative_db([load_mono(f, SR)[0] for f in rows[2][2]], LogMelConfig())
    assert float(db[0].max()) == pytest.approx(0.0, abs=1e-4)
    assert min(float(d.min()) for d in db) == pytest.approx(-60.0, abs=1e-3)


def test_the_report_needs_the_untrained_run(quickstart_out, capsys):
    with pytest.raises(SystemExit) as exit_:
        from recipes.quickstart.report import main

        main(
            [
                "report",
                "--out",
                str(quickstart_out),
                "--eval-dir",
                "x",
                "--evaluation",
                "x",
                "--untrained-evaluation",
                "x",
                "--extract-run",
                "x",
                "--paraphrase-run",
                "x",
                "--classes",
                "Bass",
                "--start-time",
                "0",
            ]
        )
    assert exit_.value.code == 2 and "--untrained-run" in capsys.readouterr().err
