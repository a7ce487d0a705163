"""MedleyDB v2 (``<root>/<track>/<track>_METADATA.yaml`` naming ``stem_dir`` and ``stems``).

The source label is each stem's ``instrument`` with spaces replaced by "_"; stems of the same instrument
are mono-summed. Stems of unequal length are zero-padded to the longest (the original skipped such songs).
There is no split: output goes to ``medleydbv2/trackNNNNN``.
"""

from __future__ import annotations

from mgeldm.data.corpora.base import BrokenSong, CorpusReader, StemCollector, Track, TrackRef
from mgeldm.data.corpora.slakh import read_metadata


def instrument_label(value: object, stem_id: str) -> str:
    """A stem's ``instrument`` field as a label (a list takes its first entry)."""
    if isinstance(value, list) and value:
        value = value[0]
    if not isinstance(value, str) or not value.strip():
        raise BrokenSong("bad metadata", f"stem {stem_id} has no instrument")
    return value.strip().replace(" ", "_")


class MedleyReader(CorpusReader):
    key = "medleydbV2"
    out_name = "medleydbv2"
    layout = "<track>/<track>_METADATA.yaml with its stem folder"
    song_marker = "*_METADATA.yaml"

    def refs(self) -> list[TrackRef]:
        return self._split_dirs({"": None})

    def files(self, ref: TrackRef):
        meta = read_metadata(ref.path / f"{ref.source_id}_METADATA.yaml")
        stems_dir = ref.path / str(meta.get("stem_dir") or f"{ref.source_id}_STEMS")
        return None, [stems_dir / str(info["filename"]) for info in meta["stems"].values()]

    def read(self, ref: TrackRef) -> Track:
        meta = read_metadata(ref.path / f"{ref.source_id}_METADATA.yaml")
        stems_dir = ref.path / str(meta.get("stem_dir") or f"{ref.source_id}_STEMS")
        collector = StemCollector()
        for stem_id, info in meta["stems"].items():
            if not isinstance(info, dict) or "filename" not in info:
                raise BrokenSong("bad metadata", f"stem {stem_id} has no filename")
            label = instrument_label(info.get("instrument"), str(stem_id))
            collector.add(label, stems_dir / str(info["filename"]))
        return collector.track(ref.source_id)
