"""Slakh2100 (``<root>/{train,validation,test}/TrackNNNNN/metadata.yaml`` + ``stems/SNN.flac|wav``).

Only stems with ``audio_rendered: true`` are used; they are grouped by ``inst_class`` ("Strings
(continued)" counts as "Strings"), and each group is padded to the longest stem and summed into one
source named after the class. Output split ``validation`` is written as ``valid``.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from mgeldm.data.corpora.base import BrokenSong, CorpusReader, StemCollector, Track, TrackRef

SPLITS = {"train": "train", "validation": "valid", "test": "test"}
CLASS_ALIASES = {"Strings (continued)": "Strings"}
STEM_SUFFIXES = (".flac", ".wav")


def read_metadata(path: Path) -> dict:
    """``metadata.yaml`` as a dict; ``BrokenSong('bad metadata')`` when absent or malformed."""
    try:
        meta = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise BrokenSong("bad metadata", f"{path.name}: {str(exc).splitlines()[0]}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("stems"), dict):
        raise BrokenSong("bad metadata", f"{path.name}: no 'stems' mapping")
    return meta


def stem_file(stems_dir: Path, stem_id: str) -> Path:
    for suffix in STEM_SUFFIXES:
        candidate = stems_dir / f"{stem_id}{suffix}"
        if candidate.is_file():
            return candidate
    raise BrokenSong("missing file", f"{stems_dir.name}/{stem_id}.flac|.wav")


class SlakhReader(CorpusReader):
    key = "slakh2100"
    out_name = "slakh2100"
    layout = "train|validation|test/TrackNNNNN/metadata.yaml with stems/"
    song_marker = "metadata.yaml"

    def refs(self) -> list[TrackRef]:
        return self._split_dirs(SPLITS)

    def files(self, ref: TrackRef) -> tuple[Path | None, list[Path]]:
        meta = read_metadata(ref.path / "metadata.yaml")
        stems = [
            stem_file(ref.path / "stems", str(s))
            for s, info in sorted(meta["stems"].items())
            if isinstance(info, dict) and info.get("audio_rendered") is True
        ]
        mix = ref.path / "mix.wav"
        return (mix if mix.is_file() else None), stems

    def read(self, ref: TrackRef) -> Track:
        meta = read_metadata(ref.path / "metadata.yaml")
        collector = StemCollector()
        for stem_id, info in meta["stems"].items():
            if not isinstance(info, dict) or "inst_class" not in info:
                raise BrokenSong("bad metadata", f"stem {stem_id} has no inst_class")
            if info.get("audio_rendered") is not True:
                continue
            label = CLASS_ALIASES.get(info["inst_class"], info["inst_class"])
            collector.add(str(label), stem_file(ref.path / "stems", str(stem_id)))
        return collector.track(ref.source_id)
