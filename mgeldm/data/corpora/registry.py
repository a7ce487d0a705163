"""The corpus keys of ``+extract_dataset=[...]`` and the reader class of each."""

from __future__ import annotations

import os

from mgeldm.data.corpora.base import CorpusReader
from mgeldm.data.corpora.medleydb import MedleyReader
from mgeldm.data.corpora.mixtures import MixturesReader, MTGJamendoReader
from mgeldm.data.corpora.moisesdb import MoisesReader
from mgeldm.data.corpora.musdb import MusdbReader
from mgeldm.data.corpora.other_tracks import OtherTracksReader
from mgeldm.data.corpora.slakh import SlakhReader
from mgeldm.errors import UserError

READERS: dict[str, type[CorpusReader]] = {
    cls.key: cls
    for cls in (
        SlakhReader,
        MusdbReader,
        MoisesReader,
        MedleyReader,
        MTGJamendoReader,
        OtherTracksReader,
        MixturesReader,
    )
}


def build_reader(key: str, root: str | os.PathLike | None) -> CorpusReader:
    """The reader for ``key`` over ``root``; UserError for an unknown key or a missing root."""
    if key not in READERS:
        raise UserError(f"extract_dataset: unknown corpus '{key}'; expected one of {sorted(READERS)}")
    if root is None:
        raise UserError(f"data_dirs.{key}: no data root given; pass +data_dirs.{key}=/path/to/{key}")
    reader = READERS[key](root)
    reader.require_root()
    return reader
