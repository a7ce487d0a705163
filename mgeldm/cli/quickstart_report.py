"""The helpers of ``scripts/quickstart.sh``: evaluation inputs, the untrained baseline, and the report.

``python -m mgeldm.cli.quickstart_report <command> ...``:

- ``prepare``: the held-out (test) songs of the built-in corpus as evaluation folders: ``mix/<song>.wav``,
  ``ref/<stem>/<song>.wav`` (one per stem class the song contains), ``submix/<song>.wav`` (the song without
  its partial-generation stem) and ``songs.json``; spectrogram pngs beside the wavs.
- ``init-dit``: an unwrapped MGE-LDM checkpoint with the trained AE and the DiT at initialisation (the
  "untrained" baseline, run through the very same inference and evaluation).
- ``oracle``: the reference stems through the AE round trip (``oracle/<stem>/<song>.wav``).
- ``collect``: copies the source-extraction outputs of an ``infer.py`` run into ``<dest>/<stem>/<song>.wav``
  (the layout ``evaluate.py`` pairs with ``ref/``).
- ``report``: ``quickstart_report.json`` / ``.md`` from the ``evaluate.py`` results and the extraction runs.

Prompt accuracy: an extraction is "right" when its Log-Mel L1 distance to the prompted stem is smaller than
to every other stem of the song (the song's stems, not the mixture, are the candidates).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from mgeldm.data.prompts import canonical_prompt
from mgeldm.metrics.closest import share as _share
from mgeldm.cli.boundary import run_tool
from mgeldm.errors import UserError
from mgeldm.files import write_text_atomic

PROG = "python -m mgeldm.cli.quickstart_report"

# Wordings that never appear in training (the training prompts are the 25 templates of
# mgeldm/data/prompts.py filled with the lower-cased class names).
PARAPHRASES: dict[str, tuple[str, ...]] = {
    "Drums": ("a drum kit playing a groove", "percussion with kick snare and hihats", "the beat on the drumset",
              "rhythm section drumming", "isolated drum kit recording"),
    "Bass": ("low end bass guitar", "the bassline", "deep bass notes", "a bass player grooving",
             "the low-frequency bass part"),
    "Piano": ("keyboard chords on a piano", "someone playing the keys", "acoustic or electric piano comping",
              "piano accompaniment", "a pianist playing chords"),
    "Guitar": ("strummed guitar chords", "a guitarist playing", "electric or acoustic guitar part",
               "six-string guitar accompaniment", "guitar strumming"),
    "Synth Lead": ("a synthesizer playing the melody", "lead synth line", "the electronic lead melody",
                   "a synth solo", "melodic synthesizer lead"),
}
METRIC_NAMES = ("logmel_l1_ratio_vs_mix", "untrained_logmel_l1_ratio_vs_mix", "oracle_logmel_l1_ratio_vs_mix",
                "silence_logmel_l1_ratio_vs_mix", "prompt_accuracy", "paraphrase_accuracy", "si_sdr_improvement_db")


def slug(label: str) -> str:
    """A stem class as a folder name: ``"Synth Lead"`` -> ``synth_lead``."""
    return label.strip().lower().replace(" ", "_")


def compose(config_name: str, overrides: Sequence[str] = ()) -> dict:
    """A config of configs/ as plain containers (what the entry points see)."""
    from mgeldm.config import compose_config

    return compose_config(config_name, overrides)


# --------------------------------------------------------------------------------------------- prepare


def best_excerpt(stems: Mapping[str, torch.Tensor], length: int, hop: int) -> int:
    """The start of the ``length``-sample excerpt whose quietest stem is loudest (every stem audible if possible)."""
    total = max(int(s.shape[-1]) for s in stems.values())
    if total <= length:
        return 0
    starts = list(range(0, total - length + 1, hop))
    score = [min(float(s[a:a + length].pow(2).mean()) for s in stems.values()) for a in starts]
    return starts[max(range(len(starts)), key=score.__getitem__)]


MIN_STEM_RMS = 1e-3   # a stem quieter than this over the excerpt is left out of the evaluation


def prepare(corpus: str, out: str, n_songs: int, sample_rate: int, pngs: bool = True,
            seconds: float | None = None, para_songs: int | None = None, split: str = "test") -> dict:
    """Write the evaluation folders of the first ``n_songs`` songs of ``split`` (the held-out test songs, or the
    validation songs recipes are tuned on); returns ``songs.json``'s content.

    ``seconds``: evaluate an excerpt of that length (the one where the quietest stem is loudest) instead of
    the whole song; stems that stay (nearly) silent in it are left out.
    """
    from mgeldm.audio import save_spectrogram_png, write_wav
    from mgeldm.data.corpora.registry import build_reader

    reader = build_reader("slakh2100", corpus)
    refs = [r for r in reader.refs() if str(r.split) == split][:n_songs]
    if not refs:
        raise UserError(f"{corpus}: no {split} songs (generate the corpus with songs in that split)")
    root = Path(out)
    songs: dict[str, Any] = {}

    def save(path: Path, wave: torch.Tensor) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_wav(path, wave, sample_rate)
        if pngs:
            save_spectrogram_png(path.with_suffix(".png"), wave, sample_rate)

    for ref in refs:
        track = reader.load(ref)
        if track.sample_rate != sample_rate:
            raise UserError(f"{corpus}: songs are at {track.sample_rate} Hz, the model at {sample_rate} Hz")
        name = ref.path.name
        length = track.num_samples
        stems = {k: torch.nn.functional.pad(v, (0, length - v.shape[-1])) for k, v in track.stems.items()}
        if seconds:
            n = int(seconds * sample_rate)
            start = best_excerpt(stems, n, sample_rate // 4)
            stems = {k: v[start:start + n] for k, v in stems.items()}
            length = min(length, n)
        mix_all = torch.stack(list(stems.values())).sum(0)
        stems = {k: v for k, v in stems.items() if float(v.pow(2).mean().sqrt()) >= MIN_STEM_RMS}
        if not stems:
            continue
        mix = mix_all
        save(root / "mix" / f"{name}.wav", mix)
        for label, wave in stems.items():
            save(root / "ref" / slug(label) / f"{name}.wav", wave)
        # partial generation: the song without one stem (Drums when present, else its last stem)
        missing = "Drums" if "Drums" in stems else list(stems)[-1]
        save(root / "submix" / f"{name}.wav", mix - stems[missing])  # (a left-out silent stem stays in)
        songs[name] = {"labels": list(stems), "partial_label": missing, "seconds": length / sample_rate}
    write_text_atomic(root / "songs.json", json.dumps(songs, indent=1))
    # the paraphrase runs (5 prompts per stem class) use the first ``para_songs`` songs: mix_para/
    for name in sorted(songs)[:para_songs or len(songs)]:
        (root / "mix_para").mkdir(exist_ok=True)
        shutil.copyfile(root / "mix" / f"{name}.wav", root / "mix_para" / f"{name}.wav")
    return songs


# --------------------------------------------------------------------------------------------- models


def init_dit(config_name: str, ae_ckpt: str, out: str, seed: int, overrides: Sequence[str] = ()) -> Path:
    """The unwrapped checkpoint of the untrained baseline: the trained AE + the DiT as initialised."""
    from mgeldm.checkpoints import load_weights, read_state_dict, write_state_dict
    from mgeldm.models.mgeldm import build_mgeldm

    cfg = compose(config_name, overrides)
    torch.manual_seed(int(seed))
    model = build_mgeldm(cfg["model"])
    load_weights(model.pretransform.model, read_state_dict(ae_ckpt), what="an autoencoder checkpoint", path=ae_ckpt)
    return write_state_dict(model.state_dict(), out)


def oracle(config_name: str, ae_ckpt: str, eval_dir: str, sample_rate: int, overrides: Sequence[str] = ()) -> int:
    """``ref/<stem>/<song>.wav`` through the AE (VAE mean) -> ``oracle/<stem>/<song>.wav``."""
    from mgeldm.audio import load_mono, write_wav
    from mgeldm.checkpoints import load_weights, read_state_dict
    from mgeldm.models.autoencoder import build_autoencoder

    cfg = compose(config_name, overrides)
    ae = build_autoencoder(cfg["model"])
    load_weights(ae, read_state_dict(ae_ckpt), what="an autoencoder checkpoint", path=ae_ckpt)
    ae.eval()
    root = Path(eval_dir)
    n = 0
    for path in sorted((root / "ref").rglob("*.wav")):
        y = round_trip(ae, load_mono(path, sample_rate)[0])
        dest = root / "oracle" / path.relative_to(root / "ref")
        dest.parent.mkdir(parents=True, exist_ok=True)
        write_wav(dest, y, sample_rate)
        n += 1
    return n


def latent(ckpt: str, eval_dir: str, sample_rate: int, *, steps: int, cfg_scale: float, overlap: float,
           seed: int = 0) -> dict[str, Any]:
    """The latent-space extraction scores (:mod:`mgeldm.evaluation.latent`) of the eval songs, with the
    report's sampler settings: the songs' mix and stems encoded by the model's own AE."""
    from mgeldm.api import MGELDM
    from mgeldm.cli.quickstart_score import load_songs
    from mgeldm.evaluation.latent import latent_scores, songs_from_audio

    model = MGELDM.from_pretrained(ckpt, device="cpu")
    songs = songs_from_audio(model, load_songs(eval_dir, sample_rate), sample_rate)
    return latent_scores(model, songs, canonical_prompt, steps=steps, cfg_scale=cfg_scale, overlap=overlap, seed=seed)


def round_trip(ae: torch.nn.Module, wave: torch.Tensor) -> torch.Tensor:
    """(L,) audio through the AE's encode + decode, padded to a whole latent frame and cut back to L."""
    length = wave.shape[-1]
    padded = torch.nn.functional.pad(wave, (0, -length % ae.downsampling_ratio))
    with torch.no_grad():
        return ae.decode_audio(ae.encode_audio(padded[None, None]))[0, 0, :length]


# --------------------------------------------------------------------------------------------- infer outputs


def latest_run(folder: str | Path) -> Path:
    runs = sorted(Path(folder).rglob("output_[0-9][0-9][0-9][0-9]"))
    if not runs:
        raise UserError(f"{folder}: no infer.py output folder (output_NNNN)")
    return runs[-1]


def extraction_files(run: Path, songs: Mapping[str, Any], n_prompts: int, key: str = "gen_src") -> dict:
    """``{(song, prompt index): wav path}`` of a source-extraction run over a folder of songs."""
    from mgeldm.tasks.outputs import unique_slugs

    folders = unique_slugs(sorted(songs), fallback="input")
    out = {}
    for song, folder in zip(sorted(songs), folders):
        for k in range(n_prompts):
            hits = sorted((run / folder).glob(f"{k:02d}_*/{key}.wav"))
            if not hits:
                raise UserError(f"{run}/{folder}: no {k:02d}_*/{key}.wav (prompt {k} of song {song})")
            out[(song, k)] = hits[0]
    return out


def collect(run_dir: str, eval_dir: str, dest: str, labels: Sequence[str]) -> int:
    """Copy the extraction of each song's own stems to ``<dest>/<stem>/<song>.wav`` (+ png)."""
    root = Path(eval_dir)
    songs = json.loads((root / "songs.json").read_text())
    files = extraction_files(latest_run(run_dir), songs, len(labels))
    n = 0
    for (song, k), path in files.items():
        if labels[k] not in songs[song]["labels"]:
            continue
        target = Path(dest) / slug(labels[k]) / f"{song}.wav"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        if path.with_suffix(".png").is_file():
            shutil.copyfile(path.with_suffix(".png"), target.with_suffix(".png"))
        n += 1
    return n


# --------------------------------------------------------------------------------------------- report


def _closest_is(est: torch.Tensor, stems: Mapping[str, torch.Tensor], target: str, sample_rate: int) -> bool:
    from mgeldm.metrics.closest import closest_stem, logmel_distance
    from mgeldm.metrics.logmel import LogMelConfig

    return closest_stem(est, stems, logmel_distance(LogMelConfig(sample_rate=sample_rate))) == target


def accuracy(run_dir: str, eval_dir: str, prompts: Sequence[tuple[str, str]], sample_rate: int,
             mix_folder: str = "mix") -> dict[str, list[bool]]:
    """Per stem label, one bool per (song containing it, prompt of that label); the songs are those of
    ``<eval_dir>/<mix_folder>`` (the run's input folder)."""
    from mgeldm.audio import load_mono

    root = Path(eval_dir)
    songs = json.loads((root / "songs.json").read_text())
    given = {p.stem for p in (root / mix_folder).glob("*.wav")}
    songs = {k: v for k, v in songs.items() if k in given}
    files = extraction_files(latest_run(run_dir), songs, len(prompts))
    out: dict[str, list[bool]] = {}
    for song, info in songs.items():
        stems = {label: load_mono(root / "ref" / slug(label) / f"{song}.wav", sample_rate)[0] for label in info["labels"]}
        for k, (label, _) in enumerate(prompts):
            if label in stems:
                est = load_mono(files[(song, k)], sample_rate)[0]
                out.setdefault(label, []).append(_closest_is(est, stems, label, sample_rate))
    return out


def oracle_accuracy(eval_dir: str, sample_rate: int) -> dict[str, list[bool]]:
    """Per stem label, whether each song's AE round trip of that stem (``oracle/``) is closest (Log-Mel L1)
    to that stem: the prompt accuracy a perfect latent extractor would reach through this AE."""
    from mgeldm.audio import load_mono

    root = Path(eval_dir)
    songs = json.loads((root / "songs.json").read_text())
    out: dict[str, list[bool]] = {}
    for song, info in songs.items():
        stems = {label: load_mono(root / "ref" / slug(label) / f"{song}.wav", sample_rate)[0] for label in info["labels"]}
        for label in info["labels"]:
            est = load_mono(root / "oracle" / slug(label) / f"{song}.wav", sample_rate)[0]
            out.setdefault(label, []).append(_closest_is(est, stems, label, sample_rate))
    return out


def _row_mean(block: Mapping, row: str, metric: str) -> float:
    value = ((block.get("rows") or {}).get(row) or {}).get(metric) or {}
    mean = value.get("mean")
    return float(mean) if mean is not None else float("nan")


LATENT_KEYS = ("latent_prompt_accuracy", "latent_rel_mse", "x0_error_t0.05", "x0_error_t0.05_uncond", "x0_error_t0.4",
               "x0_error_t0.4_uncond", "x0_error_t0.8", "x0_error_t0.8_uncond", "x0_error_t1", "x0_error_t1_uncond")


def build_report(*, evaluation: Mapping, untrained: Mapping, prompt_hits: Mapping[str, list[bool]],
                 para_hits: Mapping[str, list[bool]], stage_seconds: Mapping[str, float], wall_seconds: float,
                 n_songs: int, oracle_hits: Mapping[str, list[bool]] | None = None,
                 latent: Mapping[str, Any] | None = None) -> dict:
    """The report's JSON: every field of the issue, overall and per stem; the latent scores (overall and the
    per-stem accuracy and MSE) when ``latent`` is given."""
    label_of = {slug(label): label for label in list(prompt_hits) + list(para_hits)}
    oracle_hits = oracle_hits or {}
    latent = latent or {}

    def metrics(block: Mapping, ublock: Mapping, hits: Sequence[bool], phits: Sequence[bool],
                ohits: Sequence[bool], lat: Mapping[str, Any]) -> dict[str, float]:
        return {**{k: float(lat[k]) for k in LATENT_KEYS if k in lat},
                "oracle_prompt_accuracy": _share(ohits),
                "oracle_si_sdr_improvement_db": _row_mean(block, "oracle", "si_sdri"),
            "logmel_l1_ratio_vs_mix": _row_mean(block, "model", "logmel_l1_ratio_vs_mix"),
            "untrained_logmel_l1_ratio_vs_mix": _row_mean(ublock, "model", "logmel_l1_ratio_vs_mix"),
            "oracle_logmel_l1_ratio_vs_mix": _row_mean(block, "oracle", "logmel_l1_ratio_vs_mix"),
            "silence_logmel_l1_ratio_vs_mix": _row_mean(block, "silence", "logmel_l1_ratio_vs_mix"),
            "prompt_accuracy": _share(hits),
            "paraphrase_accuracy": _share(phits),
            "si_sdr_improvement_db": _row_mean(block, "model", "si_sdri"),
        }

    per_stem = {}
    for group, block in sorted(evaluation["groups"].items()):
        label = label_of.get(group, group)
        per_stem[label] = metrics(block, untrained["groups"].get(group, {}), prompt_hits.get(label, []),
                                  para_hits.get(label, []), oracle_hits.get(label, []),
                                  (latent.get("per_stem") or {}).get(label, {}))
    overall = metrics(evaluation["overall"], untrained["overall"], [h for v in prompt_hits.values() for h in v],
                      [h for v in para_hits.values() for h in v], [h for v in oracle_hits.values() for h in v], latent)
    return {"wall_seconds": float(wall_seconds), **overall, "per_stem": per_stem, "n_songs": int(n_songs),
            "n_pairs": int(evaluation["n_files"]), "stage_seconds": {k: float(v) for k, v in stage_seconds.items()}}


TARGETS = {  # the targets of the full CPU run (held-out songs); checked in the markdown only
    "latent_prompt_accuracy": ">= 0.9",
    "prompt_accuracy": ">= 0.9",
    "paraphrase_accuracy": ">= 0.8",
    "si_sdr_improvement_db": "> 0",
    "oracle_prompt_accuracy": ">= 0.95",
    "logmel_l1_ratio_vs_mix": "<= 0.6 (stretch)",
}
_TARGET_TESTS = {
    "latent_prompt_accuracy": lambda r: r.get("latent_prompt_accuracy", float("nan")) >= 0.9,
    "prompt_accuracy": lambda r: r["prompt_accuracy"] >= 0.9,
    "paraphrase_accuracy": lambda r: r["paraphrase_accuracy"] >= 0.8,
    "si_sdr_improvement_db": lambda r: r["si_sdr_improvement_db"] > 0,
    "oracle_prompt_accuracy": lambda r: r["oracle_prompt_accuracy"] >= 0.95,
    "logmel_l1_ratio_vs_mix": lambda r: r["logmel_l1_ratio_vs_mix"] <= 0.6,
}


def _targets_met(r: Mapping) -> dict[str, bool]:
    return {m: bool(test(r)) for m, test in _TARGET_TESTS.items()}


def _num(v: float) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def markdown(report: Mapping, extra: Mapping[str, Any]) -> str:
    met = _targets_met(report)
    lines = ["# MGE-LDM quickstart report", "",
             f"{report['n_songs']} held-out songs, {report['n_pairs']} (song, stem) pairs; wall time "
             f"{report['wall_seconds']:.0f} s ({extra.get('mode', '')}).", "",
             "Log-Mel L1 ratio = Log-Mel L1(estimate, true stem) / Log-Mel L1(mixture, true stem), mean over pairs "
             "(lower is better; the mixture itself scores 1). Prompt accuracy: share of pairs whose extraction is "
             "closer (Log-Mel L1) to the prompted stem than to every other stem of the song; paraphrase accuracy: "
             f"the same with {extra.get('n_paraphrases', 5)} wordings per stem never seen in training, on the first "
             f"{extra.get('n_para_songs', report['n_songs'])} songs.", "",
             "| | " + " | ".join(METRIC_NAMES) + " |", "|---|" + "---|" * len(METRIC_NAMES),
             "| **all** | " + " | ".join(_num(report[m]) for m in METRIC_NAMES) + " |"]
    for label, vals in report["per_stem"].items():
        lines.append(f"| {label} | " + " | ".join(_num(vals[m]) for m in METRIC_NAMES) + " |")
    present = [k for k in ("latent_prompt_accuracy", "latent_rel_mse", "oracle_prompt_accuracy",
                           "oracle_logmel_l1_ratio_vs_mix", "oracle_si_sdr_improvement_db") if k in report]
    if "latent_prompt_accuracy" in report:
        lines += ["", "## Latent space and the AE's own scores", "",
                  "Latent scores compare the extracted source latent with the true stems' AE latents (MSE; the decoder "
                  "cannot cap them); oracle scores are the true stems through the AE round trip, the best any "
                  "extractor can reach in audio with this AE. x0 error: the DiT's clean estimate of the source in one "
                  "call at diffusion time t (mix given), relative to silence's error, with the prompt and without.", "",
                  "| | " + " | ".join(present) + " |", "|---|" + "---|" * len(present),
                  "| **all** | " + " | ".join(_num(report.get(m)) for m in present) + " |"]
        lines += [f"| {label} | " + " | ".join(_num(vals.get(m)) for m in present) + " |"
                  for label, vals in report["per_stem"].items()]
        times = [k[len("x0_error_t"):] for k in report if k.startswith("x0_error_t") and not k.endswith("_uncond")]
        lines += ["", "| t | " + " | ".join(times) + " |", "|---|" + "---|" * len(times),
                  "| x0 error, prompt | " + " | ".join(_num(report[f"x0_error_t{t}"]) for t in times) + " |",
                  "| x0 error, no condition | " + " | ".join(_num(report[f"x0_error_t{t}_uncond"]) for t in times) + " |"]
    lines += ["", "## Targets (full run)", "", "| metric | target | reached |", "|---|---|---|"]
    for m, t in TARGETS.items():
        lines.append(f"| {m} | {t} | {'yes' if met[m] else 'no'} ({_num(report.get(m))}) |")
    lines += ["", "## Stages", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in report["stage_seconds"].items()]
    if extra.get("paraphrases"):
        lines += ["", "## Paraphrases (never seen in training)", ""]
        lines += [f"- {label}: " + "; ".join(f'"{p}"' for p in ps) for label, ps in extra["paraphrases"].items()]
    if extra.get("files"):
        lines += ["", "## Files", ""] + [f"- {k}: `{v}`" for k, v in extra["files"].items()]
    return "\n".join(lines) + "\n"


def read_stages(path: str | None) -> dict[str, float]:
    stages: dict[str, float] = {}
    if path and Path(path).is_file():
        for line in Path(path).read_text().splitlines():
            if "\t" in line:
                name, sec = line.split("\t", 1)
                stages[name] = stages.get(name, 0.0) + float(sec)
    return stages


def prompt_list(labels: Sequence[str]) -> list[tuple[str, str]]:
    return [(label, canonical_prompt(label)) for label in labels]


def paraphrase_list(labels: Sequence[str]) -> list[tuple[str, str]]:
    missing = [label for label in labels if label not in PARAPHRASES]
    if missing:
        raise UserError(f"no paraphrases for stem classes {missing}; add them to PARAPHRASES")
    return [(label, p) for label in labels for p in PARAPHRASES[label]]


# --------------------------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG)
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("prepare")
    a.add_argument("--corpus", required=True)
    a.add_argument("--eval-dir", required=True)
    a.add_argument("--n-songs", type=int, default=8)
    a.add_argument("--sample-rate", type=int, default=16000)
    a.add_argument("--no-png", action="store_true")
    a.add_argument("--seconds", type=float, default=None, help="evaluate an excerpt of this length per song")
    a.add_argument("--para-songs", type=int, default=None, help="songs of the paraphrase runs (mix_para/)")
    a.add_argument("--split", default="test", choices=("test", "valid"), help="which held-out songs (default test)")
    a = sub.add_parser("init-dit")
    a.add_argument("--config-name", default="quickstart_dit")
    a.add_argument("--ae", required=True)
    a.add_argument("--out", required=True)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("overrides", nargs="*")
    a = sub.add_parser("oracle")
    a.add_argument("--config-name", default="quickstart_ae")
    a.add_argument("--ae", required=True)
    a.add_argument("--eval-dir", required=True)
    a.add_argument("--sample-rate", type=int, default=16000)
    a.add_argument("overrides", nargs="*")
    a = sub.add_parser("latent", help="latent-space extraction scores of an unwrapped MGE-LDM on the eval songs")
    a.add_argument("--ckpt", required=True)
    a.add_argument("--eval-dir", required=True)
    a.add_argument("--output", required=True, help="the JSON file to write")
    a.add_argument("--steps", type=int, default=4)
    a.add_argument("--cfg-scale", type=float, default=2.0)
    a.add_argument("--overlap", type=float, default=0.128)
    a.add_argument("--sample-rate", type=int, default=16000)
    a = sub.add_parser("prompts", help="print the prompts of a run as a Hydra list (canonical | paraphrase)")
    a.add_argument("kind", choices=("canonical", "paraphrase"))
    a.add_argument("--classes", required=True)
    a = sub.add_parser("collect")
    a.add_argument("--run-dir", required=True)
    a.add_argument("--eval-dir", required=True)
    a.add_argument("--dest", required=True)
    a.add_argument("--classes", required=True)
    a = sub.add_parser("report")
    a.add_argument("--out", required=True)
    a.add_argument("--eval-dir", required=True)
    a.add_argument("--evaluation", required=True)
    a.add_argument("--untrained-evaluation", required=True)
    a.add_argument("--extract-run", required=True)
    a.add_argument("--paraphrase-run", required=True)
    a.add_argument("--classes", required=True)
    a.add_argument("--stages", default=None)
    a.add_argument("--start-time", type=float, required=True, help="epoch seconds when the quickstart started")
    a.add_argument("--sample-rate", type=int, default=16000)
    a.add_argument("--mode", default="")
    a.add_argument("--latent-scores", default=None, help="the JSON written by the `latent` command")
    return p


def _classes(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


def _hydra_list(prompts: Sequence[str]) -> str:
    return "[" + ",".join("'" + p.replace("'", "") + "'" for p in prompts) + "]"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return run_tool(PROG, lambda: _command(args))


def _command(args: argparse.Namespace) -> None:
    if args.cmd == "prepare":
        songs = prepare(args.corpus, args.eval_dir, args.n_songs, args.sample_rate, pngs=not args.no_png,
                        seconds=args.seconds, para_songs=args.para_songs, split=args.split)
        print(f"{args.eval_dir}: {len(songs)} songs, {sum(len(s['labels']) for s in songs.values())} stems")
    elif args.cmd == "init-dit":
        print(f"wrote {init_dit(args.config_name, args.ae, args.out, args.seed, args.overrides)}")
    elif args.cmd == "oracle":
        print(f"{oracle(args.config_name, args.ae, args.eval_dir, args.sample_rate, args.overrides)} oracle stems")
    elif args.cmd == "latent":
        scores = latent(args.ckpt, args.eval_dir, args.sample_rate, steps=args.steps, cfg_scale=args.cfg_scale,
                        overlap=args.overlap)
        write_text_atomic(Path(args.output), json.dumps(scores, indent=1) + "\n")
        print(json.dumps({k: v for k, v in scores.items() if k != "per_stem"}))
    elif args.cmd == "prompts":
        pairs = (prompt_list if args.kind == "canonical" else paraphrase_list)(_classes(args.classes))
        print(_hydra_list([p for _, p in pairs]))
    elif args.cmd == "collect":
        labels = [label for label, _ in prompt_list(_classes(args.classes))]
        print(f"{collect(args.run_dir, args.eval_dir, args.dest, labels)} extractions -> {args.dest}")
    elif args.cmd == "report":
        classes = _classes(args.classes)
        hits = accuracy(args.extract_run, args.eval_dir, prompt_list(classes), args.sample_rate)
        para = accuracy(args.paraphrase_run, args.eval_dir, paraphrase_list(classes), args.sample_rate,
                        mix_folder="mix_para")
        songs = json.loads((Path(args.eval_dir) / "songs.json").read_text())
        stages = read_stages(args.stages)
        report = build_report(evaluation=json.loads(Path(args.evaluation).read_text()),
                              untrained=json.loads(Path(args.untrained_evaluation).read_text()),
                              prompt_hits=hits, para_hits=para, stage_seconds=stages,
                              wall_seconds=time.time() - args.start_time, n_songs=len(songs),
                              oracle_hits=oracle_accuracy(args.eval_dir, args.sample_rate),
                              latent=json.loads(Path(args.latent_scores).read_text()) if args.latent_scores else None)
        out = Path(args.out)
        write_text_atomic(out / "quickstart_report.json", json.dumps(report, indent=1) + "\n")
        n_para = len(list((Path(args.eval_dir) / "mix_para").glob("*.wav")))
        extra = {"mode": args.mode, "n_paraphrases": 5, "n_para_songs": n_para,
                 "paraphrases": {c: list(PARAPHRASES[c]) for c in classes if c in PARAPHRASES},
                 "files": {"evaluation (trained)": args.evaluation, "evaluation (untrained)": args.untrained_evaluation,
                           "source extraction run": str(latest_run(args.extract_run)),
                           "paraphrase run": str(latest_run(args.paraphrase_run))}}
        write_text_atomic(out / "quickstart_report.md", markdown(report, extra))
        print((out / "quickstart_report.md").read_text())


if __name__ == "__main__":
    sys.exit(main())
