"""Corpora of mixtures only: MTG-Jamendo (``<root>/<NN>/<id>.mp3``) or any folder of audio files.

Every audio file found under the root (recursively, sorted) is one song with the single label ``mix``.
Its output folder is its path relative to the root without the suffix, so MTG-Jamendo gives the
original layout ``mtg_jamendo/<NN>/<id>/{mix.npy, mix_clap.npy}``.
"""

from __future__ import annotations

from pathlib import Path

from mgeldm.data.corpora.base import AUDIO_SUFFIXES, CorpusReader, Track, TrackRef, read_mono


class MixturesReader(CorpusReader):
    key = "mixtures"
    out_name = "mixtures"
    mix_only = True

    def __init__(self, root, key: str | None = None, out_name: str | None = None) -> None:
        super().__init__(root)
        self.key = key or self.key
        self.out_name = out_name or self.out_name

    def refs(self) -> list[TrackRef]:
        if not self.root.is_dir():
            return []
        files = sorted(
            (p for p in self.root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES),
            key=lambda p: p.relative_to(self.root).as_posix(),
        )
        refs, seen = [], set()
        for idx, path in enumerate(files):
            rel = path.relative_to(self.root).with_suffix("").as_posix()
            if rel in seen:  # song.mp3 beside song.wav: the first one (sorted) wins
                continue
            seen.add(rel)
            refs.append(TrackRef(self.out_name, None, idx, path.relative_to(self.root).as_posix(), path,
                                 f"{self.out_name}/{rel}"))
        return refs

    def files(self, ref: TrackRef):
        return Path(ref.path), []

    def read(self, ref: TrackRef) -> Track:
        wave, sr = read_mono(Path(ref.path))
        return Track(ref.source_id, sr, {"mix": wave})


class MTGJamendoReader(MixturesReader):
    key = "mtgjamendo"
    out_name = "mtg_jamendo"
