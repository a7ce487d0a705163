"""Reading the quickstart's ``infer.py`` runs: where each song's extraction is, copies of them in the layout
``evaluate.py`` pairs with ``ref/``, and the prompt accuracy of a run (closest stem, :mod:`mgeldm.metrics.closest`).

Every accuracy is computed under two Log-Mel floors (:func:`floor_configs`): the excerpt's, relative to the mel
peak of the song's mixture (``configs/evaluate.yaml``'s default, figures named as they are), and the absolute floor
alone (figures named with the suffix ``_absfloor``). Hits are ``{suffix: {label: [bool, ...]}}``."""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from mgeldm.errors import UserError
from mgeldm.metrics.closest import closest_stem, logmel_distance
from mgeldm.metrics.logmel import ABSFLOOR, LogMelConfig
from mgeldm.tasks.outputs import unique_slugs
from recipes.quickstart.evalset import load_song_stems, read_songs, stem_folder

Hits = dict[str, dict[str, list[bool]]]  # {floor suffix ("" or "_absfloor"): {stem label: one bool per estimate}}


def latest_run(folder: str | Path) -> Path:
    """The newest ``output_NNNN`` folder of an infer.py output directory."""
    runs = sorted(Path(folder).rglob("output_[0-9][0-9][0-9][0-9]"))
    if not runs:
        raise UserError(f"{folder}: no infer.py output folder (output_NNNN)")
    return runs[-1]


def extraction_files(run: Path, songs: Mapping[str, Any], n_prompts: int, key: str = "gen_src") -> dict:
    """``{(song, prompt index): wav path}`` of a source-extraction run over a folder of songs (infer.py's layout:
    one folder per input, ``<input slug>/<kk>_<prompt slug>/<key>.wav``)."""
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
    songs = read_songs(eval_dir)
    n = 0
    for (song, k), path in extraction_files(latest_run(run_dir), songs, len(labels)).items():
        if labels[k] not in songs[song]["labels"]:
            continue
        target = Path(dest) / stem_folder(labels[k]) / f"{song}.wav"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        if path.with_suffix(".png").is_file():
            shutil.copyfile(path.with_suffix(".png"), target.with_suffix(".png"))
        n += 1
    return n


def floor_configs(sample_rate: int) -> dict[str, LogMelConfig]:
    """The report's Log-Mel settings by the suffix of its figures' names: the excerpt's floor (the defaults of
    ``configs/evaluate.yaml``) and the absolute floor alone (``_absfloor``)."""
    cfg = LogMelConfig(sample_rate=sample_rate)
    return {"": cfg, ABSFLOOR: cfg.absolute()}


def closest_hits(
    estimate: torch.Tensor, stems: Mapping[str, torch.Tensor], target: str, mixture: torch.Tensor, sample_rate: int
) -> dict[str, bool]:
    """Per floor (:func:`floor_configs`), whether ``estimate`` is closest (Log-Mel L1) to the stem ``target`` of its
    song, whose mixture (``mixture``) sets the floor shared by every candidate."""
    return {
        suffix: closest_stem(estimate, stems, logmel_distance(cfg, mixture)) == target
        for suffix, cfg in floor_configs(sample_rate).items()
    }


def add_hits(hits: Hits, label: str, hit: Mapping[str, bool]) -> None:
    """Append one estimate's hits (per floor) to those of ``label``."""
    for suffix, value in hit.items():
        hits.setdefault(suffix, {}).setdefault(label, []).append(value)


def accuracy(
    run_dir: str, eval_dir: str, prompts: Sequence[tuple[str, str]], sample_rate: int, mix_folder: str = "mix"
) -> Hits:
    """Per floor and stem label, one bool per (song containing it, prompt of that label); the songs are those of
    ``<eval_dir>/<mix_folder>`` (the run's input folder, whose files are the mixtures)."""
    from mgeldm.audio import load_mono

    mix_dir = Path(eval_dir) / mix_folder
    given = {p.stem for p in mix_dir.glob("*.wav")}
    songs = {k: v for k, v in read_songs(eval_dir).items() if k in given}
    files = extraction_files(latest_run(run_dir), songs, len(prompts))
    out: Hits = {}
    for song, info in songs.items():
        stems = load_song_stems(eval_dir, song, info["labels"], sample_rate)
        mixture = load_mono(mix_dir / f"{song}.wav", sample_rate)[0]
        for k, (label, _) in enumerate(prompts):
            if label in stems:
                est = load_mono(files[(song, k)], sample_rate)[0]
                add_hits(out, label, closest_hits(est, stems, label, mixture, sample_rate))
    return out


def oracle_accuracy(eval_dir: str, sample_rate: int) -> Hits:
    """Per floor and stem label, whether each song's AE round trip of that stem (``oracle/``) is closest (Log-Mel
    L1) to that stem: the prompt accuracy a perfect latent extractor would reach through this AE."""
    from mgeldm.audio import load_mono

    out: Hits = {}
    for song, info in read_songs(eval_dir).items():
        stems = load_song_stems(eval_dir, song, info["labels"], sample_rate)
        round_trips = load_song_stems(eval_dir, song, info["labels"], sample_rate, folder="oracle")
        mixture = load_mono(Path(eval_dir) / "mix" / f"{song}.wav", sample_rate)[0]
        for label in info["labels"]:
            add_hits(out, label, closest_hits(round_trips[label], stems, label, mixture, sample_rate))
    return out
