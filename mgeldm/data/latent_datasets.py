"""Training items from pre-encoded latents (docs/compatibility.md#training-data): (mix, submix, source) windows, CLAP
columns, prompts.

Differences from the original, all deliberate: a track that cannot give an item (NaN, shorter than one
segment, no usable comb) is dropped with one warning line instead of crashing when drawn (difference 9 of
docs/compatibility.md); the
randomness of item i is seeded by (seed, epoch, i), never the clock; ``mmap=True`` reads the ``.npy``
files through memory maps instead of preloading them; a corpus whose ``manifest.json`` names another
autoencoder than the expected one is refused.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mgeldm.audio import SAMPLE_RATE
from mgeldm.data.pre_encode.layout import MANIFEST_NAME
from mgeldm.data.prompts import make_prompt
from mgeldm.data.seeded import SeededDataset, WeightedConcatDataset
from mgeldm.errors import UserError

log = logging.getLogger(__name__)

NUM_TRIES = 15


@dataclass
class Comb:
    src: np.ndarray
    src_clap: np.ndarray
    submix: np.ndarray
    submix_clap: np.ndarray
    src_label: str
    submix_labels: list[str]


@dataclass
class LatentTrack:
    name: str
    mix: np.ndarray
    mix_clap: np.ndarray
    combs: list[Comb] = field(default_factory=list)


def check_manifest(data_dir: str | os.PathLike, expected_ae_hash: str | None) -> None:
    """Refuse latents made by another AE; a corpus without manifest (made by the original) only warns."""
    if not expected_ae_hash:
        return
    path = Path(data_dir) / MANIFEST_NAME
    if not path.is_file():
        log.warning(f"{data_dir}: no {MANIFEST_NAME}, cannot check which autoencoder encoded these latents")
        return
    try:
        found = json.loads(path.read_text())["autoencoder"]["sha256"]
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{path}: not a pre-encoding manifest (no autoencoder.sha256)") from None
    if found != expected_ae_hash:
        raise UserError(
            f"{path}: these latents were encoded with autoencoder {found[:12]}…, but this run uses "
            f"{expected_ae_hash[:12]}…; re-run pre_encode.py with this autoencoder or train with the one that "
            "encoded them"
        )


def salient_offset(
    latent: np.ndarray,
    segment_length: int,
    zero_latent: np.ndarray | None,
    threshold: float | None,
    rng: np.random.Generator,
    num_tries: int = NUM_TRIES,
) -> int:
    """A window start ``o`` whose frames are not silence (docs/compatibility.md#training-data).

    ``o`` is uniform in ``[0, T - segment_length)`` (0 when ``T == segment_length``); a draw is accepted
    when ``|mean(latent[:, o:o+S] - zero_latent)| > threshold`` (signed mean over all values), else
    redrawn, at most ``num_tries`` draws; the last draw is kept.
    """
    upper = latent.shape[-1] - segment_length
    if upper < 0:
        raise ValueError(f"latent of {latent.shape[-1]} frames is shorter than a segment ({segment_length})")
    for _ in range(max(1, num_tries)):
        offset = int(rng.integers(0, upper)) if upper > 0 else 0
        if threshold is None or zero_latent is None:
            return offset
        window = latent[:, offset : offset + segment_length]
        if abs(float(np.mean(window - zero_latent[:, None]))) > threshold:
            return offset
    return offset


def clap_column(offset: int, num_columns: int, ae_comp_ratio: int, ae_sample_rate: int) -> int:
    """The per-second embedding column of a window starting at latent frame ``offset``."""
    return min(int(offset * (ae_comp_ratio / ae_sample_rate)), num_columns - 1)


def _window(x: np.ndarray, offset: int, length: int) -> np.ndarray:
    return np.array(x[:, offset : offset + length], dtype=np.float32)


def _column(x: np.ndarray, j: int) -> np.ndarray:
    return np.array(x[:, j], dtype=np.float32)


def _subfolders(folder: Path) -> list[str]:
    """The sorted names of ``folder``'s subfolders, hidden ones left out."""
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


class _LatentDataset(SeededDataset):
    """Shared loading, skipping and item assembly of the two latent datasets."""

    def __init__(
        self,
        *,
        data_dir,
        segment_length: int,
        num_examples: int,
        zero_diff_threshold: float | None,
        zero_latent_path,
        seed: int,
        state_id: int | None,
        mmap: bool,
        expected_ae_hash: str | None,
        ae_comp_ratio: int,
        ae_sample_rate: int,
        num_tries: int,
    ) -> None:
        super().__init__(num_examples, seed if state_id is None else state_id)
        if zero_latent_path is None:
            raise UserError("zero_latent_path: required (the zero_latent.npy written by pre_encode.py)")
        if not Path(zero_latent_path).is_file():
            raise UserError(f"zero_latent_path: {zero_latent_path} is not a file")
        if not Path(data_dir).is_dir():
            raise UserError(f"data_dir: {data_dir} is not a folder of pre-encoded latents")
        check_manifest(data_dir, expected_ae_hash)
        self.corpus_dir = Path(data_dir)
        self.segment_length = int(segment_length)
        self.zero_diff_threshold = zero_diff_threshold
        self.zero_latent = np.load(zero_latent_path).astype(np.float32).reshape(-1)
        self.mmap = mmap
        self.ae_comp_ratio = int(ae_comp_ratio)
        self.ae_sample_rate = int(ae_sample_rate)
        self.num_tries = int(num_tries)
        self.tracks: list[LatentTrack] = []
        self.skipped: list[tuple[str, str]] = []

    def _load(self, path: Path) -> np.ndarray:
        return np.load(path, mmap_mode="r" if self.mmap else None)

    def _skip(self, name: str, why: str) -> None:
        self.skipped.append((name, why))
        log.warning(f"skip {self.corpus_dir.name}/{name}: {why}")

    def _read_mix(self, name: str, folder: Path) -> LatentTrack | None:
        try:
            mix, clap = self._load(folder / "mix.npy"), self._load(folder / "mix_clap.npy")
        except (OSError, ValueError) as exc:
            self._skip(name, f"unreadable ({str(exc).splitlines()[0][:100]})")
            return None
        if np.isnan(mix).any() or np.isnan(clap).any():
            self._skip(name, "NaN in mix latents")
            return None
        if mix.ndim != 2 or clap.ndim != 2 or clap.shape[-1] < 1:
            self._skip(name, f"unexpected shapes mix {mix.shape}, mix_clap {clap.shape}")
            return None
        if mix.shape[-1] < self.segment_length:
            self._skip(name, f"{mix.shape[-1]} frames, shorter than a segment ({self.segment_length})")
            return None
        return LatentTrack(name, mix, clap)

    def _finish(self, what: str) -> None:
        if not self.tracks:
            raise UserError(f"{what}: no usable track (skipped {len(self.skipped)}; see the warnings above)")

    def _mix_only_item(self, rng: np.random.Generator) -> dict:
        track = self.tracks[int(rng.integers(len(self.tracks)))]
        o = salient_offset(
            track.mix, self.segment_length, self.zero_latent, self.zero_diff_threshold, rng, self.num_tries
        )
        j = clap_column(o, track.mix_clap.shape[-1], self.ae_comp_ratio, self.ae_sample_rate)
        mix, mix_clap = _window(track.mix, o, self.segment_length), _column(track.mix_clap, j)
        return {
            "mix_latent": mix,
            "mix_clap": mix_clap,
            "src_latent": np.zeros_like(mix),
            "src_clap": np.zeros_like(mix_clap),
            "src_prompt": "",
            "submix_latent": mix.copy(),
            "submix_clap": mix_clap.copy(),
            "submix_prompt": "",
        }


class MixSubmixSourceLatentDataset(_LatentDataset):
    """Items of one pre-encoded corpus folder (``<data_dir>/<split>`` or ``<data_dir>`` when split is None).

    Full mode: a track, then a comb, uniformly; a salient window of the source; the same frames of submix
    and mix; one CLAP column for all three; prompts from the comb labels. Combs whose source label contains
    "other" are not used as sources. ``return_mix_only``: the window is chosen on the mix; source zeros,
    submix = mix, empty prompts.
    """

    def __init__(
        self,
        *,
        data_dir,
        segment_length: int,
        split: str | None = "train",
        num_examples: int = 10000,
        zero_diff_threshold: float | None = 0.1,
        zero_latent_path=None,
        num_tracks_debug: int | None = None,
        seed: int = 0,
        state_id: int | None = None,
        return_mix_only: bool = False,
        mmap: bool = False,
        expected_ae_hash: str | None = None,
        ae_comp_ratio: int = 2048,
        ae_sample_rate: int = SAMPLE_RATE,
        num_tries: int = NUM_TRIES,
        loudness_cutoff: float | None = None,
    ) -> None:
        super().__init__(
            data_dir=data_dir,
            segment_length=segment_length,
            num_examples=num_examples,
            zero_diff_threshold=zero_diff_threshold,
            zero_latent_path=zero_latent_path,
            seed=seed,
            state_id=state_id,
            mmap=mmap,
            expected_ae_hash=expected_ae_hash,
            ae_comp_ratio=ae_comp_ratio,
            ae_sample_rate=ae_sample_rate,
            num_tries=num_tries,
        )
        del loudness_cutoff  # present in the original's configs, never used
        self.return_mix_only = return_mix_only
        self.data_dir = self.corpus_dir / split if split else self.corpus_dir
        if not self.data_dir.is_dir():
            raise UserError(f"data_dir/split: {self.data_dir} is not a folder")
        names = _subfolders(self.data_dir)
        if num_tracks_debug is not None:
            names = names[:num_tracks_debug]
        for name in names:
            self._add_track(name)
        self._finish(str(self.data_dir))

    def _add_track(self, name: str) -> None:
        """Keep track ``name`` of ``data_dir`` if its mix (and, in full mode, at least one comb) is usable."""
        track = self._read_mix(name, self.data_dir / name)
        if track is None:
            return
        if not self.return_mix_only:
            track.combs = self._read_combs(name, self.data_dir / name, track)
            if not track.combs:
                self._skip(name, "no usable comb (none, all 'other' or all broken)")
                return
        self.tracks.append(track)

    def _read_combs(self, name: str, folder: Path, track: LatentTrack) -> list[Comb]:
        combs = []
        comb_dirs = sorted((p for p in folder.glob("comb*") if p.is_dir()), key=lambda p: (len(p.name), p.name))
        for comb_dir in comb_dirs:
            where = f"{name}/{comb_dir.name}"
            try:
                info = json.loads((comb_dir / "comb_info.json").read_text())
                label, others = str(info["src_label"]), [str(x) for x in info["submix_label_list"]]
                if "other" in label.lower():  # "other" stems are never a source (still named in submix prompts)
                    continue
                arrays = [
                    self._load(comb_dir / f) for f in ("src.npy", "src_clap.npy", "submix.npy", "submix_clap.npy")
                ]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                self._skip(where, f"unreadable comb ({str(exc).splitlines()[0][:100]})")
                continue
            if not others:
                self._skip(where, "empty submix label list")
                continue
            if any(np.isnan(a).any() for a in arrays):
                self._skip(where, "NaN in comb latents")
                continue
            src, src_clap, sub, sub_clap = arrays
            if not (
                src.shape == sub.shape == track.mix.shape and src_clap.shape == sub_clap.shape == track.mix_clap.shape
            ):
                self._skip(where, "comb shapes differ from the mix")
                continue
            combs.append(Comb(src, src_clap, sub, sub_clap, label, others))
        return combs

    def sample(self, rng: np.random.Generator) -> dict:
        if self.return_mix_only:
            return self._mix_only_item(rng)
        track = self.tracks[int(rng.integers(len(self.tracks)))]
        comb = track.combs[int(rng.integers(len(track.combs)))]
        o = salient_offset(
            comb.src, self.segment_length, self.zero_latent, self.zero_diff_threshold, rng, self.num_tries
        )
        j = clap_column(o, comb.src_clap.shape[-1], self.ae_comp_ratio, self.ae_sample_rate)
        s = self.segment_length
        return {
            "mix_latent": _window(track.mix, o, s),
            "mix_clap": _column(track.mix_clap, j),
            "src_latent": _window(comb.src, o, s),
            "src_clap": _column(comb.src_clap, j),
            "src_prompt": make_prompt([comb.src_label], rng),
            "submix_latent": _window(comb.submix, o, s),
            "submix_clap": _column(comb.submix_clap, j),
            "submix_prompt": make_prompt(comb.submix_labels, rng),
        }


def _split_subdirs(subdirs: list[str], data_dir, split: str, num_valid_subdirs: int) -> list[str]:
    """MTG-Jamendo's subfolders of ``split``: all but the last ``num_valid_subdirs`` for train, those for valid."""
    if len(subdirs) <= num_valid_subdirs:
        raise UserError(f"data_dir: {data_dir} has {len(subdirs)} subfolders; expected more than {num_valid_subdirs}")
    if split == "train":
        return subdirs[:-num_valid_subdirs] if num_valid_subdirs else subdirs
    if split in ("valid", "validation"):
        return subdirs[-num_valid_subdirs:]
    raise UserError(f"split: {split!r} for mtg_jamendo; expected 'train' or 'valid'")


class MTGJamendoLatentDataset(_LatentDataset):
    """Mix-only items of ``<data_dir>/<subdir>/<song>/{mix,mix_clap}.npy`` (MTG-Jamendo's 100 folders).

    Sorted subfolders: all but the last ``num_valid_subdirs`` are ``train``, the last ones ``valid``
    (98 / 2 for MTG-Jamendo, as the original).
    """

    def __init__(
        self,
        *,
        data_dir,
        segment_length: int,
        split: str = "train",
        num_examples: int = 10000,
        zero_diff_threshold: float | None = 0.1,
        zero_latent_path=None,
        num_tracks_debug: int | None = None,
        seed: int = 0,
        state_id: int | None = None,
        return_mix_only: bool = True,
        mmap: bool = False,
        expected_ae_hash: str | None = None,
        ae_comp_ratio: int = 2048,
        ae_sample_rate: int = SAMPLE_RATE,
        num_tries: int = NUM_TRIES,
        num_valid_subdirs: int = 2,
        loudness_cutoff: float | None = None,
    ) -> None:
        if not return_mix_only:
            raise UserError(
                "mtg_jamendo: holds mixtures only; it needs return_mix_only=true (mixture_only_pretraining)"
            )
        super().__init__(
            data_dir=data_dir,
            segment_length=segment_length,
            num_examples=num_examples,
            zero_diff_threshold=zero_diff_threshold,
            zero_latent_path=zero_latent_path,
            seed=seed,
            state_id=state_id,
            mmap=mmap,
            expected_ae_hash=expected_ae_hash,
            ae_comp_ratio=ae_comp_ratio,
            ae_sample_rate=ae_sample_rate,
            num_tries=num_tries,
        )
        del loudness_cutoff
        self.return_mix_only = True
        subdirs = _split_subdirs(_subfolders(self.corpus_dir), data_dir, split, num_valid_subdirs)
        if num_tracks_debug is not None:
            subdirs = subdirs[:num_tracks_debug]
        for sub in subdirs:
            self._add_subdir(sub)
        self._finish(str(self.corpus_dir))

    def _add_subdir(self, sub: str) -> None:
        """Keep the songs of subfolder ``sub`` whose mix is usable."""
        for song in _subfolders(self.corpus_dir / sub):
            track = self._read_mix(f"{sub}/{song}", self.corpus_dir / sub / song)
            if track is not None:
                self.tracks.append(track)

    def sample(self, rng: np.random.Generator) -> dict:
        return self._mix_only_item(rng)


DATASET_CLASSES = {"mtg_jamendo": MTGJamendoLatentDataset}


def _zero_latent_path(data: Mapping, root) -> str | None:
    """``data.zero_latent_path``, else ``<root>/<data.zero_latent_name>`` (default ``zero_latent.npy``)."""
    return data.get("zero_latent_path") or (
        str(Path(root) / data.get("zero_latent_name", "zero_latent.npy")) if root else None
    )


def _pop_corpus_dir(entry: dict, name: str, *, root, part: str) -> str:
    """The corpus folder of entry ``name``: its ``data_dir``, else ``<root>/<subdir>`` (both keys popped)."""
    subdir = entry.pop("subdir", name)
    corpus_dir = entry.pop("data_dir", None) or (str(Path(root) / subdir) if root else None)
    if corpus_dir is None:
        raise UserError(
            f"data.data_dir: not set; point it to the pre_encode.py output (or set data.{part}.{name}.data_dir)"
        )
    return corpus_dir


def _dataset_class(name: str, *, part: str, mix_only: bool) -> type[_LatentDataset]:
    """The dataset class of corpus ``name``; MTG-Jamendo (mixtures only) is refused outside mix-only training."""
    cls = DATASET_CLASSES.get(name, MixSubmixSourceLatentDataset)
    if cls is MTGJamendoLatentDataset and not mix_only:
        raise UserError(f"data.{part}.{name}: MTG-Jamendo holds mixtures only; use it with mixture_only_pretraining")
    return cls


def _entry_overrides(entry: dict, cls: type[_LatentDataset], mix_only: bool) -> dict:
    """The entry's own constructor arguments (a null ``state_id`` left out), and the run's mix-only switch for
    corpora with combs."""
    if entry.get("state_id") is None:
        entry.pop("state_id", None)
    overrides = dict(entry)
    if cls is MixSubmixSourceLatentDataset:
        overrides["return_mix_only"] = mix_only
    return overrides


def build_latent_datasets(
    data: Mapping,
    *,
    segment_length: int,
    part: str = "train",
    mix_only: bool = False,
    seed: int = 0,
    mmap: bool = False,
    expected_ae_hash: str | None = None,
    ae_comp_ratio: int = 2048,
    ae_sample_rate: int = SAMPLE_RATE,
    shuffle: bool = True,
) -> WeightedConcatDataset:
    """One weighted concatenation from a ``configs/data/multi_latent_*.yaml`` node (its ``part`` list).

    Each entry reads ``entry.data_dir`` or ``<data.data_dir>/<entry.subdir>``; the key ``mtg_jamendo`` is the
    mix-only MTG reader. A missing corpus folder is left out with a warning; each corpus gets the seed
    ``seed + position`` (only used outside shuffle mode).
    """
    root = data.get("data_dir")
    zero_latent = _zero_latent_path(data, root)
    datasets = []
    for i, (name, entry) in enumerate(dict(data.get(part) or {}).items()):
        if entry is None:
            continue
        entry = dict(entry)
        corpus_dir = _pop_corpus_dir(entry, name, root=root, part=part)
        if not Path(corpus_dir).is_dir():
            log.warning(f"data.{part}.{name}: {corpus_dir} not found; this corpus is left out")
            continue
        cls = _dataset_class(name, part=part, mix_only=mix_only)
        kwargs = dict(
            data_dir=corpus_dir,
            zero_latent_path=zero_latent,
            segment_length=segment_length,
            seed=seed + i,
            mmap=mmap,
            expected_ae_hash=expected_ae_hash,
            ae_comp_ratio=ae_comp_ratio,
            ae_sample_rate=ae_sample_rate,
        )
        kwargs.update(_entry_overrides(entry, cls, mix_only))
        datasets.append(cls(**kwargs))
    if not datasets:
        raise UserError(f"data.{part}: no corpus found (data_dir={root}); run pre_encode.py first")
    return WeightedConcatDataset(datasets, shuffle=shuffle, seed=seed)
