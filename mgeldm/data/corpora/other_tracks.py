"""``other_tracks``: a folder per song, every ``*.wav`` but ``mix.wav`` a stem labelled by its name."""

from __future__ import annotations

from mgeldm.data.corpora.base import CorpusReader, StemCollector, Track, TrackRef


class OtherTracksReader(CorpusReader):
    key = "other_tracks"
    out_name = "other_tracks"
    layout = "<song>/<stem>.wav"
    song_marker = "*.wav"

    def refs(self) -> list[TrackRef]:
        return self._split_dirs({"": None})

    def files(self, ref: TrackRef):
        mix = ref.path / "mix.wav"
        return (mix if mix.is_file() else None), [w for w in sorted(ref.path.glob("*.wav")) if w.name != "mix.wav"]

    def read(self, ref: TrackRef) -> Track:
        collector = StemCollector()
        for wav in sorted(ref.path.glob("*.wav")):
            if wav.name == "mix.wav":
                continue
            collector.add(wav.name.split(".")[0], wav)
        return collector.track(ref.source_id)
