"""MUSDB18-HQ (``<root>/{train,test}/<song>/{vocals,drums,bass,other}.wav``), stereo down-mixed to mono."""

from __future__ import annotations

from mgeldm.data.corpora.base import CorpusReader, StemCollector, Track, TrackRef

SPLITS = {"train": "train", "test": "test"}
STEMS = ("vocals", "drums", "bass", "other")  # the original's order, which sets comb0..comb3


class MusdbReader(CorpusReader):
    key = "musdb18hq"
    out_name = "musdb18"
    layout = "train|test/<song>/{vocals,drums,bass,other}.wav"
    song_marker = "*.wav"

    def refs(self) -> list[TrackRef]:
        return self._split_dirs(SPLITS)

    def files(self, ref: TrackRef):
        mix = ref.path / "mixture.wav"
        return (mix if mix.is_file() else None), [ref.path / f"{s}.wav" for s in STEMS]

    def read(self, ref: TrackRef) -> Track:
        collector = StemCollector()
        for stem in STEMS:
            collector.add(stem, ref.path / f"{stem}.wav")
        return collector.track(ref.source_id)
