"""Waveform excerpts for AE training (docs/compatibility.md#training-data): ``{"mix_wav": (1, segment_length)}`` at the
AE rate.

Each item is a loud-enough excerpt of a song: with probability ``mixture_prob`` the song's mixture (or, for
corpora without a mixture file, the sum of all its stems), otherwise the sum of a random subset of
1..n stems read at the first stem's offset. Loudness is ITU-R BS.1770 integrated loudness from pyloudnorm.
Randomness comes from ``(seed, epoch, index)`` only (see ``mgeldm.data.seeded``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from mgeldm.audio import resample
from mgeldm.data.corpora.base import BrokenSong, CorpusReader, TrackRef
from mgeldm.data.corpora.medleydb import MedleyReader
from mgeldm.data.corpora.mixtures import MTGJamendoReader
from mgeldm.data.corpora.moisesdb import MoisesReader
from mgeldm.data.corpora.musdb import MusdbReader
from mgeldm.data.corpora.other_tracks import OtherTracksReader
from mgeldm.data.corpora.slakh import SlakhReader
from mgeldm.data.seeded import SeededDataset, WeightedConcatDataset
from mgeldm.errors import UserError

log = logging.getLogger(__name__)

NUM_TRIES = 15
MAX_SONG_RETRIES = 5

# configs/data/single.yaml names -> readers
READERS: dict[str, type[CorpusReader]] = {
    "slakh2100": SlakhReader,
    "musdb18": MusdbReader,
    "moisesdb": MoisesReader,
    "medleydb2": MedleyReader,
    "mtg_jamendo": MTGJamendoReader,
    "others": OtherTracksReader,
}
NO_SPLIT = {"medleydb2", "others"}  # one folder of songs: train only, as the original


@dataclass(frozen=True)
class Song:
    name: str
    mix: Path | None
    stems: tuple[Path, ...]


def loudness(wave: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness (LUFS) of a mono or (L, C) excerpt; -inf for silence or too-short input."""
    import pyloudnorm

    data = np.asarray(wave, dtype=np.float64)
    meter = pyloudnorm.Meter(sample_rate)
    if data.shape[0] < int(meter.block_size * sample_rate) + 1:
        return -math.inf
    with np.errstate(divide="ignore"):
        return float(meter.integrated_loudness(data))


def read_excerpt(path: Path, offset_s: float, duration_s: float) -> tuple[np.ndarray, int]:
    """``duration_s`` seconds from ``offset_s`` as mono float32 ``(L,)`` at the file's rate."""
    info = sf.info(str(path))
    start = int(round(offset_s * info.samplerate))
    frames = int(round(duration_s * info.samplerate))
    data, sr = sf.read(str(path), start=min(start, info.frames), frames=frames, dtype="float32", always_2d=True)
    return data.mean(axis=1), int(sr)


def salient_excerpt(
    path: Path, duration_s: float, loudness_cutoff: float | None, rng: np.random.Generator, num_tries: int = NUM_TRIES
) -> tuple[np.ndarray, int, float]:
    """An excerpt whose loudness exceeds ``loudness_cutoff``: uniform offsets, at most ``num_tries``, last kept."""
    info = sf.info(str(path))
    total_s = info.frames / info.samplerate
    latest = max(0.0, total_s - duration_s)
    for _ in range(max(1, num_tries)):
        offset = float(rng.uniform(0.0, latest)) if latest > 0 else 0.0
        wave, sr = read_excerpt(path, offset, duration_s)
        if loudness_cutoff is None or loudness(wave, sr) > loudness_cutoff:
            break
    return wave, sr, offset


def _split_refs(name: str, refs: list[TrackRef], split: str, num_valid_subdirs: int) -> list[TrackRef]:
    """The song refs of corpus ``name`` in ``split``: the corpus's own split, MTG-Jamendo's last
    ``num_valid_subdirs`` subfolders as validation, or all of a train-only corpus."""
    if name in NO_SPLIT:
        if split != "train":
            raise UserError(f"data.{name}: has no {split!r} split (train only)")
    elif name == "mtg_jamendo":
        subdirs = sorted({Path(r.source_id).parts[0] for r in refs if len(Path(r.source_id).parts) > 1})
        keep = set(subdirs[:-num_valid_subdirs] if split == "train" else subdirs[-num_valid_subdirs:])
        refs = [r for r in refs if Path(r.source_id).parts[0] in keep]
    else:
        refs = [r for r in refs if r.split == ("valid" if split == "validation" else split)]
    return refs


class AudioExcerptDataset(SeededDataset):
    """AE training excerpts of one corpus (``name`` = a ``configs/data/single.yaml`` key)."""

    def __init__(
        self,
        *,
        name: str,
        data_dir,
        sample_rate: int,
        segment_length: int,
        split: str = "train",
        num_examples: int = 10000,
        loudness_cutoff: float | None = -40.0,
        mixture_prob: float = 0.5,
        seed: int = 0,
        state_id: int | None = None,
        num_tracks_debug: int | None = None,
        num_tries: int = NUM_TRIES,
        num_valid_subdirs: int = 2,
        split_seed: int = 42,
    ) -> None:
        super().__init__(num_examples, seed if state_id is None else state_id)
        if name not in READERS:
            raise UserError(f"data: unknown corpus '{name}'; expected one of {sorted(READERS)}")
        if data_dir is None or not Path(data_dir).is_dir():
            raise UserError(f"data.{name}.data_dir: {data_dir} is not a folder")
        self.name = name
        self.sample_rate = int(sample_rate)
        self.segment_length = int(segment_length)
        self.duration_s = float(math.ceil(self.segment_length / self.sample_rate))
        self.loudness_cutoff = loudness_cutoff
        self.mixture_prob = float(mixture_prob)
        self.num_tries = int(num_tries)
        reader = READERS[name](data_dir, split_seed=split_seed) if name == "moisesdb" else READERS[name](data_dir)
        refs = _split_refs(name, reader.refs(), split, num_valid_subdirs)
        if num_tracks_debug is not None:
            refs = refs[:num_tracks_debug]
        self.songs: list[Song] = self._read_songs(reader, refs)
        if not self.songs:
            raise UserError(f"data.{name}: no songs found under {data_dir} (split {split})")

    def _read_songs(self, reader: CorpusReader, refs: list[TrackRef]) -> list[Song]:
        """The songs of ``refs`` with a mixture or stems; songs whose files cannot be listed are skipped."""
        songs = []
        for ref in refs:
            try:
                mix, stems = reader.files(ref)
            except (BrokenSong, OSError, KeyError, TypeError) as exc:
                log.warning(f"skip {self.name}/{ref.source_id}: {exc}")
                continue
            if mix is None and not stems:
                continue
            songs.append(Song(ref.source_id, mix, tuple(stems)))
        return songs

    def _finish(self, wave: np.ndarray, sr: int) -> torch.Tensor:
        x = resample(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))[None], sr, self.sample_rate)
        x = x[:, : self.segment_length]
        return torch.nn.functional.pad(x, (0, self.segment_length - x.shape[-1]))

    def _stem_sum(self, song: Song, chosen: list[Path], rng: np.random.Generator) -> torch.Tensor:
        first, sr, offset = salient_excerpt(chosen[0], self.duration_s, self.loudness_cutoff, rng, self.num_tries)
        total = self._finish(first, sr)
        for path in chosen[1:]:
            try:
                wave, sr = read_excerpt(path, offset, self.duration_s)
                total = total + self._finish(wave, sr)
            except Exception:  # a stem that fails (or ends before the offset) counts as silence, as the original
                continue
        return total

    def _song_item(self, song: Song, rng: np.random.Generator) -> torch.Tensor:
        n = len(song.stems)
        use_mix = rng.random() < self.mixture_prob
        if song.mix is not None and (use_mix or n == 0):
            wave, sr, _ = salient_excerpt(song.mix, self.duration_s, self.loudness_cutoff, rng, self.num_tries)
            return self._finish(wave, sr)
        k = n if (use_mix and song.mix is None) else int(rng.integers(1, n + 1))
        chosen = [song.stems[i] for i in rng.permutation(n)[:k]]
        return self._stem_sum(song, chosen, rng)

    def sample(self, rng: np.random.Generator) -> dict:
        for _ in range(MAX_SONG_RETRIES):
            song = self.songs[int(rng.integers(len(self.songs)))]
            try:
                return {"mix_wav": self._song_item(song, rng)}
            except (RuntimeError, OSError, ValueError) as exc:  # unreadable file: say so, draw another song
                log.warning(f"skip {self.name}/{song.name}: {str(exc).splitlines()[0][:160]}")
        raise UserError(f"data.{self.name}: {MAX_SONG_RETRIES} songs in a row could not be read; check the corpus")


def build_audio_datasets(
    node: Mapping, *, sample_rate: int, segment_length: int, split: str = "train", seed: int = 0, shuffle: bool = True
) -> WeightedConcatDataset:
    """The weighted concatenation of a ``configs/data/single.yaml`` ``train`` or ``valid`` node.

    Entries whose ``data_dir`` is null are left out; ``state_id`` (the original's fixed-RNG switch) sets the
    entry's seed.
    """
    datasets = []
    for i, (name, entry) in enumerate(node.items()):
        entry = dict(entry)
        if entry.get("data_dir") is None:
            continue
        kwargs = dict(name=name, sample_rate=sample_rate, segment_length=segment_length, split=split, seed=seed + i)
        kwargs.update(entry)
        datasets.append(AudioExcerptDataset(**kwargs))
    if not datasets:
        raise UserError("data: every corpus has data_dir null; set at least one (see configs/data/single.yaml)")
    return WeightedConcatDataset(datasets, shuffle=shuffle, seed=seed)
