"""Corpora of mixtures only: any folder of audio files (``mixtures``) or MTG-Jamendo (``<root>/<NN>/<id>.mp3``).

Every audio file found under the root (recursively, sorted) is one song with the single label ``mix``; files
that differ only in their audio suffix (``song.wav`` beside ``song.mp3``) are one song, the first in sorted
order is read and the others are reported as skipped. Songs are numbered in the order of their names.

``mixtures`` writes its songs flat, ``mixtures/trackNNNNN`` in sorted order (the manifest names each source
file), like every other reader: training reads a corpus one folder level deep, so a song found in a sub-folder
is read end to end. MTG-Jamendo keeps the original layout ``mtg_jamendo/<NN>/<id>/{mix.npy, mix_clap.npy}``,
whose ``<NN>`` folders training splits into train and valid; a file elsewhere is refused (training would
never see it), and ``<id>.low.mp3`` (the low-quality copy) is the song ``<id>``, read only where ``<id>.mp3``
is absent.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from mgeldm.data.corpora.base import AUDIO_SUFFIXES, CorpusReader, Track, TrackRef, read_mono


class MixturesReader(CorpusReader):
    key = "mixtures"
    out_name = "mixtures"
    mix_only = True
    layout = f"audio files ({', '.join(AUDIO_SUFFIXES)}) in the folder or its sub-folders"

    def __init__(self, root, key: str | None = None, out_name: str | None = None) -> None:
        super().__init__(root)
        self.key = key or self.key
        self.out_name = out_name or self.out_name

    def refs(self) -> list[TrackRef]:
        songs: dict[str, list[PurePosixPath]] = {}
        for rel in self._audio_files():
            songs.setdefault(self.song_name(rel), []).append(rel)
        refs = []
        for idx, (name, rels) in enumerate(sorted(songs.items())):
            chosen = min(rels, key=self.preference)
            dropped = tuple(r.as_posix() for r in rels if r != chosen)
            refs.append(
                TrackRef(
                    self.out_name,
                    None,
                    idx,
                    chosen.as_posix(),
                    self.root / chosen,
                    f"{self.out_name}/{self.out_folder(name, idx)}",
                    dropped,
                )
            )
        return refs

    def _audio_files(self) -> list[PurePosixPath]:
        """Every audio file under the root, relative, in sorted order."""
        if not self.root.is_dir():
            return []
        files = (p for p in self.root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        return sorted(PurePosixPath(p.relative_to(self.root).as_posix()) for p in files)

    def song_name(self, rel: PurePosixPath) -> str:
        """The song a file holds: its path without the audio suffix."""
        return rel.with_suffix("").as_posix()

    def preference(self, rel: PurePosixPath) -> tuple:
        """Sort key among the files of one song: the smallest is read."""
        return (rel.as_posix(),)

    def out_folder(self, name: str, index: int) -> str:
        return f"track{index:05d}"

    def looks_like_song(self, ref: TrackRef) -> bool:
        return True  # every ref is an audio file

    def files(self, ref: TrackRef):
        return Path(ref.path), []

    def read(self, ref: TrackRef) -> Track:
        wave, sr = read_mono(Path(ref.path))
        return Track(ref.source_id, sr, {"mix": wave})


class MTGJamendoReader(MixturesReader):
    key = "mtgjamendo"
    out_name = "mtg_jamendo"
    layout = "<NN>/<id>.mp3"
    LOW_QUALITY = ".low"

    def song_name(self, rel: PurePosixPath) -> str:
        name = super().song_name(rel)
        return name.removesuffix(self.LOW_QUALITY)

    def preference(self, rel: PurePosixPath) -> tuple:
        return (rel.with_suffix("").name.endswith(self.LOW_QUALITY), rel.as_posix())

    def out_folder(self, name: str, index: int) -> str:
        return name

    def songs(self) -> list[TrackRef]:
        refs = super().songs()
        for ref in refs:
            if len(PurePosixPath(ref.source_id).parts) != 2:
                from mgeldm.errors import UserError

                folder = (self.root / ref.source_id).parent
                raise UserError(
                    f"data_dirs.{self.key}: {folder} holds {Path(ref.source_id).name} outside the "
                    f"{self.layout} layout, which training reads two folder levels deep and so would "
                    "never see it; move it into a <NN> folder or pre-encode it with the mixtures key"
                )
        return refs
