"""The one interface every corpus reader shares, and the skip-and-count bookkeeping.

A corpus is listed as ``TrackRef`` items (cheap: names only), then each song is read into a ``Track``:
an id, a sample rate and an ordered ``{label: mono stem}`` dict. A reader that meets a broken song raises
``BrokenSong`` with a short reason; ``CorpusReport`` turns that into one warning line and a count, and
prints a per-corpus summary at the end (songs, hours, skipped and why).
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mgeldm.audio import load_mono

log = logging.getLogger(__name__)

# File suffixes soundfile reads (lower case), for the mixture and folder readers.
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".aiff", ".aif")
DETAIL_CHARS = 200  # a skipped song's detail is cut to this length (after the corpus root is taken out)


class BrokenSong(Exception):
    """A song that cannot be used; ``reason`` is a short category, ``detail`` says where."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class TrackRef:
    """One song of a corpus, before reading it.

    ``out_rel`` is the song's output folder relative to the save root (``slakh2100/train/track00000``),
    ``index`` its position in the listing its ``trackNNNNN`` number comes from, ``dropped`` the other files of
    the same song that are not used (e.g. MTG-Jamendo's ``<id>.low.mp3`` beside ``<id>.mp3``).
    """

    corpus: str
    split: str | None
    index: int
    source_id: str
    path: Path
    out_rel: str
    dropped: tuple[str, ...] = ()


@dataclass
class Track:
    """A song read from disk: stems are mono float32 ``(L,)`` tensors at ``sample_rate``."""

    id: str
    sample_rate: int
    stems: dict[str, torch.Tensor]

    @property
    def num_samples(self) -> int:
        return max((int(s.shape[-1]) for s in self.stems.values()), default=0)

    @property
    def seconds(self) -> float:
        return self.num_samples / self.sample_rate if self.sample_rate else 0.0


class CorpusReader(ABC):
    """Lists and reads the songs of one corpus folder.

    Subclasses set ``key`` (the ``extract_dataset`` name), ``out_name`` (the output folder), ``mix_only``
    (True for corpora of mixtures, whose tracks hold the single label ``"mix"``), ``layout`` (the expected
    layout, for messages) and ``song_marker`` (a file pattern every song folder of the corpus holds).
    """

    key: str = ""
    out_name: str = ""
    mix_only: bool = False
    layout: str = ""
    song_marker: str = "*"

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(os.path.abspath(root))

    @abstractmethod
    def refs(self) -> list[TrackRef]:
        """Every song, in output order (sorted listing within a split)."""

    @abstractmethod
    def read(self, ref: TrackRef) -> Track:
        """Read one song; raise ``BrokenSong`` for a problem the reader recognises."""

    def files(self, ref: TrackRef) -> tuple[Path | None, list[Path]]:
        """The song's mixture file (None when the corpus has none) and its stem files, for waveform excerpts."""
        raise NotImplementedError(f"{type(self).__name__} lists no files")

    def load(self, ref: TrackRef) -> Track:
        """``read`` + the shared checks; every failure becomes ``BrokenSong`` whose detail names files
        relative to the corpus root (the manifest must not depend on where the corpus lies)."""
        try:
            track = self.read(ref)
            check_track(track, mix_only=self.mix_only)
        except BrokenSong as err:
            raise BrokenSong(err.reason, self._relative(err.detail)) from None
        except Exception as exc:  # any unexpected reader failure is a broken song, not a crash
            raise BrokenSong("unreadable", self._relative(_first_line(exc))) from None
        return track

    def _relative(self, text: str) -> str:
        """``text`` with every spelling of the corpus root's absolute path removed, then cut to one short line."""
        for root in sorted({str(self.root), str(self.root.resolve())}, key=len, reverse=True):
            text = text.replace(root + os.sep, "").replace(root, ".")
        return text[:DETAIL_CHARS]

    def songs(self) -> list[TrackRef]:
        """``refs()`` for pre-encoding; ``UserError`` when the root holds no song in this corpus's layout (an
        empty folder or another corpus's), so that nothing is written for a mistyped root."""
        refs = self.refs()
        if not any(self.looks_like_song(ref) for ref in refs):
            from mgeldm.errors import UserError

            raise UserError(f"data_dirs.{self.key}: {self.root} holds no song in the {self.key} layout ({self.layout})")
        return refs

    def looks_like_song(self, ref: TrackRef) -> bool:
        """A cheap layout check: the song's folder holds a file matching ``song_marker``."""
        return any(ref.path.glob(self.song_marker))

    def _split_dirs(self, splits: dict[str, str | None]) -> list[TrackRef]:
        """Refs for ``{folder under root: output split}`` with one song folder per entry."""
        refs: list[TrackRef] = []
        for folder, out_split in splits.items():
            split_dir = self.root / folder if folder else self.root
            if not split_dir.is_dir():
                continue
            for idx, name in enumerate(sorted(p.name for p in split_dir.iterdir() if p.is_dir())):
                refs.append(self._ref(out_split, idx, name, split_dir / name))
        return refs

    def _ref(self, split: str | None, index: int, source_id: str, path: Path) -> TrackRef:
        parts = [self.out_name] + ([split] if split else []) + [f"track{index:05d}"]
        return TrackRef(self.out_name, split, index, source_id, path, "/".join(parts))

    def require_root(self) -> None:
        from mgeldm.errors import UserError

        if not self.root.is_dir():
            raise UserError(f"data root for {self.key}: {self.root} is not a folder")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_mono(path: Path, sample_rate: int | None = None) -> tuple[torch.Tensor, int]:
    """:func:`mgeldm.audio.load_mono`, with a missing or unreadable file as a ``BrokenSong``."""
    if not path.is_file():
        raise BrokenSong("missing file", path.name)
    try:
        return load_mono(path, sample_rate)
    except Exception:  # the loader's message names the absolute path; keep the report root-independent
        raise BrokenSong("unreadable", f"{path.name}: cannot be read as audio") from None


def pad_to(wave: torch.Tensor, length: int) -> torch.Tensor:
    """Zero-pad or crop the last axis to ``length``."""
    n = wave.shape[-1]
    if n >= length:
        return wave[..., :length]
    return torch.nn.functional.pad(wave, (0, length - n))


def sum_padded(waves: list[torch.Tensor]) -> torch.Tensor:
    """Sum 1-D waves after padding each to the longest."""
    length = max(int(w.shape[-1]) for w in waves)
    return torch.stack([pad_to(w, length) for w in waves]).sum(0)


def pad_stems(stems: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Pad every stem to the longest one (the original pads, it never crops a stem)."""
    length = max(int(s.shape[-1]) for s in stems.values())
    return {k: pad_to(v, length) for k, v in stems.items()}


class StemCollector:
    """Reads stem files of one song at a common sample rate (the first file's) and sums per label."""

    def __init__(self) -> None:
        self.sample_rate: int | None = None
        self.groups: dict[str, list[torch.Tensor]] = {}

    def add(self, label: str, path: Path) -> None:
        wave, sr = read_mono(path, self.sample_rate)
        if self.sample_rate is None:
            self.sample_rate = sr
        if wave.numel() == 0:
            raise BrokenSong("empty stem", f"{label} ({path.name})")
        self.groups.setdefault(label, []).append(wave)

    def track(self, track_id: str) -> Track:
        if self.sample_rate is None or not self.groups:
            raise BrokenSong("no stems", track_id)
        stems = pad_stems({k: sum_padded(v) for k, v in self.groups.items()})
        return Track(track_id, self.sample_rate, stems)


def check_track(track: Track, *, mix_only: bool) -> None:
    """The shared checks: enough stems, none empty, all finite."""
    if not track.stems:
        raise BrokenSong("no stems", track.id)
    if not mix_only and len(track.stems) < 2:
        raise BrokenSong("single stem", f"{track.id} has only {list(track.stems)}")
    if track.sample_rate <= 0:
        raise BrokenSong("bad sample rate", f"{track.id}: {track.sample_rate}")
    for label, wave in track.stems.items():
        if wave.numel() == 0:
            raise BrokenSong("empty stem", f"{track.id}: {label}")
        if not torch.isfinite(wave).all():
            raise BrokenSong("non-finite samples", f"{track.id}: {label}")


@dataclass
class CorpusReport:
    """Counts songs, hours and skips of one corpus; one warning line per skipped song."""

    name: str
    songs: int = 0
    seconds: float = 0.0
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (source id, reason, detail)

    def add_song(self, seconds: float) -> None:
        self.songs += 1
        self.seconds += seconds

    def skip(self, source_id: str, error: BrokenSong) -> None:
        self.skipped.append((source_id, error.reason, error.detail))
        log.warning(f"skip {self.name}/{source_id}: {error}")

    def summary(self) -> str:
        hours = self.seconds / 3600.0
        line = f"{self.name}: {self.songs} songs, {hours:.2f} h, {len(self.skipped)} skipped"
        if self.skipped:
            why = Counter(reason for _, reason, _ in self.skipped)
            line += " (" + ", ".join(f"{r}: {n}" for r, n in sorted(why.items())) + ")"
        return line
