"""Reading the quickstart's ``infer.py`` runs: where each song's extraction is, copies of them in the layout
``evaluate.py`` pairs with ``ref/``, and the prompt accuracy of a run (closest stem, :mod:`mgeldm.metrics.closest`)."""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from mgeldm.errors import UserError
from mgeldm.metrics.closest import closest_stem, logmel_distance
from mgeldm.metrics.logmel import LogMelConfig
from mgeldm.tasks.outputs import unique_slugs
from recipes.quickstart.evalset import load_song_stems, read_songs, stem_folder


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


def closest_is(estimate: torch.Tensor, stems: Mapping[str, torch.Tensor], target: str, sample_rate: int) -> bool:
    """Whether ``estimate`` is closest (Log-Mel L1) to the stem ``target`` of its song."""
    return closest_stem(estimate, stems, logmel_distance(LogMelConfig(sample_rate=sample_rate))) == target


def accuracy(run_dir: str, eval_dir: str, prompts: Sequence[tuple[str, str]], sample_rate: int,
             mix_folder: str = "mix") -> dict[str, list[bool]]:
    """Per stem label, one bool per (song containing it, prompt of that label); the songs are those of
    ``<eval_dir>/<mix_folder>`` (the run's input folder)."""
    from mgeldm.audio import load_mono

    given = {p.stem for p in (Path(eval_dir) / mix_folder).glob("*.wav")}
    songs = {k: v for k, v in read_songs(eval_dir).items() if k in given}
    files = extraction_files(latest_run(run_dir), songs, len(prompts))
    out: dict[str, list[bool]] = {}
    for song, info in songs.items():
        stems = load_song_stems(eval_dir, song, info["labels"], sample_rate)
        for k, (label, _) in enumerate(prompts):
            if label in stems:
                est = load_mono(files[(song, k)], sample_rate)[0]
                out.setdefault(label, []).append(closest_is(est, stems, label, sample_rate))
    return out


def oracle_accuracy(eval_dir: str, sample_rate: int) -> dict[str, list[bool]]:
    """Per stem label, whether each song's AE round trip of that stem (``oracle/``) is closest (Log-Mel L1)
    to that stem: the prompt accuracy a perfect latent extractor would reach through this AE."""
    out: dict[str, list[bool]] = {}
    for song, info in read_songs(eval_dir).items():
        stems = load_song_stems(eval_dir, song, info["labels"], sample_rate)
        round_trips = load_song_stems(eval_dir, song, info["labels"], sample_rate, folder="oracle")
        for label in info["labels"]:
            out.setdefault(label, []).append(closest_is(round_trips[label], stems, label, sample_rate))
    return out
