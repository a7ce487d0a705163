"""The quickstart's evaluation songs: the held-out songs of its corpus as folders of audio, and the prompts.

``prepare`` writes ``<eval>/mix/<song>.wav``, ``ref/<stem>/<song>.wav`` (one per stem class the song contains),
``submix/<song>.wav`` (the song without its partial-generation stem), ``mix_para/`` (the songs of the paraphrase
runs) and ``songs.json``; spectrogram pngs beside the wavs. ``<stem>`` is the stem class as a folder name
(``"Synth Lead"`` -> ``synth_lead``, :func:`stem_folder`).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from mgeldm.data.prompts import canonical_prompt
from mgeldm.errors import UserError
from mgeldm.files import write_text_atomic
from mgeldm.tasks.outputs import slugify

# Wordings that never appear in training (the training prompts are the 25 templates of
# mgeldm/data/prompts.py filled with the lower-cased class names).
PARAPHRASES: dict[str, tuple[str, ...]] = {
    "Drums": (
        "a drum kit playing a groove",
        "percussion with kick snare and hihats",
        "the beat on the drumset",
        "rhythm section drumming",
        "isolated drum kit recording",
    ),
    "Bass": (
        "low end bass guitar",
        "the bassline",
        "deep bass notes",
        "a bass player grooving",
        "the low-frequency bass part",
    ),
    "Piano": (
        "keyboard chords on a piano",
        "someone playing the keys",
        "acoustic or electric piano comping",
        "piano accompaniment",
        "a pianist playing chords",
    ),
    "Guitar": (
        "strummed guitar chords",
        "a guitarist playing",
        "electric or acoustic guitar part",
        "six-string guitar accompaniment",
        "guitar strumming",
    ),
    "Synth Lead": (
        "a synthesizer playing the melody",
        "lead synth line",
        "the electronic lead melody",
        "a synth solo",
        "melodic synthesizer lead",
    ),
}
MIN_STEM_RMS = 1e-3  # a stem quieter than this over the excerpt is left out of the evaluation
PARTIAL_LABEL = "Drums"  # the stem partial generation adds: each song's submix leaves it out (else its last stem)


def stem_folder(label: str) -> str:
    """A stem class as a folder name: ``"Synth Lead"`` -> ``synth_lead``."""
    return slugify(label, fallback="stem")


def prompt_list(labels: Sequence[str]) -> list[tuple[str, str]]:
    """(label, the canonical prompt of its class) per label."""
    return [(label, canonical_prompt(label)) for label in labels]


def paraphrase_list(labels: Sequence[str]) -> list[tuple[str, str]]:
    """(label, one unseen wording) for each of the 5 wordings of each label."""
    missing = [label for label in labels if label not in PARAPHRASES]
    if missing:
        raise UserError(f"no paraphrases for stem classes {missing}; add them to PARAPHRASES")
    return [(label, p) for label in labels for p in PARAPHRASES[label]]


def best_excerpt(stems: Mapping[str, torch.Tensor], length: int, hop: int) -> int:
    """The start of the ``length``-sample excerpt whose quietest stem is loudest (every stem audible if possible)."""
    total = max(int(s.shape[-1]) for s in stems.values())
    if total <= length:
        return 0
    starts = list(range(0, total - length + 1, hop))
    score = [min(float(s[a : a + length].pow(2).mean()) for s in stems.values()) for a in starts]
    return starts[max(range(len(starts)), key=score.__getitem__)]


def _song_stems(track: Any, sample_rate: int, seconds: float | None) -> dict[str, torch.Tensor]:
    """The song's stems at the same length (its best excerpt of ``seconds``, when given)."""
    length = track.num_samples
    stems = {k: torch.nn.functional.pad(v, (0, length - v.shape[-1])) for k, v in track.stems.items()}
    if seconds:
        n = int(seconds * sample_rate)
        start = best_excerpt(stems, n, sample_rate // 4)
        stems = {k: v[start : start + n] for k, v in stems.items()}
    return stems


def _write_song(root: Path, name: str, stems: Mapping[str, torch.Tensor], sample_rate: int, pngs: bool) -> dict:
    """One song's files; returns its songs.json entry (None when every stem is silent)."""
    from mgeldm.audio import save_spectrogram_png, write_wav

    def save(path: Path, wave: torch.Tensor) -> None:
        write_wav(path, wave, sample_rate)
        if pngs:
            save_spectrogram_png(path.with_suffix(".png"), wave, sample_rate)

    mix = torch.stack(list(stems.values())).sum(0)
    audible = {k: v for k, v in stems.items() if float(v.pow(2).mean().sqrt()) >= MIN_STEM_RMS}
    if not audible:
        return None
    save(root / "mix" / f"{name}.wav", mix)
    for label, wave in audible.items():
        save(root / "ref" / stem_folder(label) / f"{name}.wav", wave)
    # partial generation: the song without one stem (PARTIAL_LABEL when present, else its last stem)
    missing = PARTIAL_LABEL if PARTIAL_LABEL in audible else list(audible)[-1]
    save(root / "submix" / f"{name}.wav", mix - audible[missing])  # (a left-out silent stem stays in)
    return {"labels": list(audible), "partial_label": missing, "seconds": mix.shape[-1] / sample_rate}


def prepare(
    corpus: str,
    out: str,
    n_songs: int,
    sample_rate: int,
    pngs: bool = True,
    seconds: float | None = None,
    para_songs: int | None = None,
    split: str = "test",
) -> dict:
    """Write the evaluation folders of the first ``n_songs`` songs of ``split`` (the held-out test songs, or the
    validation songs recipes are tuned on); returns ``songs.json``'s content.

    ``seconds``: evaluate an excerpt of that length (the one where the quietest stem is loudest) instead of
    the whole song; stems that stay (nearly) silent in it are left out.
    """
    from mgeldm.data.corpora.registry import build_reader

    reader = build_reader("slakh2100", corpus)
    refs = [r for r in reader.refs() if str(r.split) == split][:n_songs]
    if not refs:
        raise UserError(f"{corpus}: no {split} songs (generate the corpus with songs in that split)")
    root, songs = Path(out), {}
    for ref in refs:
        track = reader.load(ref)
        if track.sample_rate != sample_rate:
            raise UserError(f"{corpus}: songs are at {track.sample_rate} Hz, the model at {sample_rate} Hz")
        entry = _write_song(root, ref.path.name, _song_stems(track, sample_rate, seconds), sample_rate, pngs)
        if entry is not None:
            songs[ref.path.name] = entry
    write_text_atomic(root / "songs.json", json.dumps(songs, indent=1))
    (root / "mix_para").mkdir(exist_ok=True)  # the paraphrase runs (5 prompts per stem class): the first songs
    for name in sorted(songs)[: para_songs or len(songs)]:
        shutil.copyfile(root / "mix" / f"{name}.wav", root / "mix_para" / f"{name}.wav")
    return songs


def read_songs(eval_dir: str | Path) -> dict[str, Any]:
    """``songs.json`` of an evaluation folder."""
    path = Path(eval_dir) / "songs.json"
    if not path.is_file():
        raise UserError(f"{eval_dir}: no songs.json (expected the eval folder of a quickstart run, <out>/eval)")
    return json.loads(path.read_text())


def load_song_stems(
    eval_dir: str | Path, song: str, labels: Sequence[str], sample_rate: int, folder: str = "ref"
) -> dict[str, torch.Tensor]:
    """``{label: (L,)}``: the song's stems of ``folder`` (``ref``: the true ones; ``oracle``: their AE round trip)."""
    from mgeldm.audio import load_mono

    root = Path(eval_dir)
    return {label: load_mono(root / folder / stem_folder(label) / f"{song}.wav", sample_rate)[0] for label in labels}


def load_songs(eval_dir: str | Path, sample_rate: int) -> dict[str, tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    """``{song: (mix (L,), {label: stem (L,)})}`` of an evaluation folder written by :func:`prepare`."""
    from mgeldm.audio import load_mono

    root = Path(eval_dir)
    return {
        song: (
            load_mono(root / "mix" / f"{song}.wav", sample_rate)[0],
            load_song_stems(root, song, info["labels"], sample_rate),
        )
        for song, info in sorted(read_songs(root).items())
    }
