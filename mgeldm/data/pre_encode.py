"""Pre-encoding: corpus folders -> the latent + CLAP ``.npy`` layout that training reads (docs/compatibility.md#pre-encoding).

For every song: the mix (sum of the stems, padded to the longest), each source and each submix (the
mix minus that source) are encoded separately with the VAE mean, and embedded per second over 10 s
windows by the audio embedder (CLAP at 48 kHz by default)::

    <root>/zero_latent.npy
    <root>/encoding.json            (the autoencoder and embedder every latent of the root comes from)
    <root>/<corpus>/<split>/trackNNNNN/{mix.npy, mix_clap.npy, combK/{src,submix}{,_clap}.npy, combK/comb_info.json}
    <root>/<corpus>/manifest.json

What the original lacked: a track folder is written under a temporary name and renamed when complete, so a
killed run loses only the track in progress and a rerun skips complete tracks; ``num_shards``/``shard_id``
split the work (the last shard to finish merges the manifest); songs shorter than the 11 s the original
needed get one CLAP column of the padded clip; long songs can be encoded in chunks; broken songs are skipped
with one warning line and counted. Nothing written depends on the clock or on where the corpus lies, so reruns
give identical bytes. Everything is checked before the first file is written: the settings, every corpus root
(an empty or wrong-layout root is refused) and the save root, whose latents must all come from one autoencoder
and embedder (a rerun with another one is refused unless ``reencode`` asks to start the run's corpora over).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import shutil
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mgeldm.audio import resample
from mgeldm.data.corpora.base import BrokenSong, CorpusReader, CorpusReport, Track, TrackRef
from mgeldm.errors import UserError
from mgeldm.files import atomic_folder, write_bytes_atomic

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
SHARDS_DIR = ".shards"
PARTIAL_PREFIX = "."
PARTIAL_SUFFIX = ".partial"
ZERO_LATENT_NAME = "zero_latent.npy"
ENCODING_NAME = "encoding.json"
OLD_SUFFIX = ".old" + PARTIAL_SUFFIX  # a corpus folder set aside by ``reencode``, then deleted
# Test hook: with MGELDM_TEST_STOP_AFTER_TRACKS=N the process kills itself (SIGKILL, like `kill -9`) right after
# writing its N-th track folder, so a test knows exactly where the run died.
STOP_AFTER_TRACKS_ENV = "MGELDM_TEST_STOP_AFTER_TRACKS"
CLAP_HOP_SECONDS = 1.0  # the only hop training reads: the column of second j for a window starting at second j
PAD_MODES = ("repeat", "zero")
ZERO_LATENT_SECONDS = 20.0
ZERO_LATENT_FRAME = 100
ZERO_LATENT_FRAMES = 156


@dataclass
class EncodeSettings:
    """Numbers of the encoding; their defaults (the original's) are ``configs/pre_encode/default.yaml``'s, read by
    :meth:`from_mapping`."""

    batch_size: int                  # signals per AE call (a song's mix, sources and submixes)
    clap_batch_size: int             # windows per embedder call
    clap_window_seconds: float
    clap_hop_seconds: float          # must be 1.0: see CLAP_HOP_SECONDS
    short_clip_pad: str              # clips shorter than a window: "repeat" (laion_clap's repeatpad) or "zero"
    chunked: str | bool              # AE chunked encoding: true, false, or "auto" (songs above chunk_min_seconds)
    chunk_min_seconds: float
    chunk_size: int                  # latent frames per chunk (131 s at 16 kHz / 2048)
    chunk_overlap: int               # latent frames cross-faded between chunks
    progress: bool
    reencode: bool                   # encode every track of the run's corpora again (see ``prepare_root``)
    # What the *_clap.npy columns hold: "audio" = the embedder's audio embedding of each window (CLAP, the
    # original); "labels" = the embedder's *text* embedding of the labels the signal really contains (mix: all,
    # source: its own, submix: the others), the same column for every second. The stand-in for a text-only
    # embedder (the quickstart's MiniLM), where the stems' labels are known.
    clap_from: str
    label_template: str              # the text embedded in "labels" mode ({labels}: "drums, bass, and piano")

    def __post_init__(self) -> None:
        """Refuse, before anything is written, a setting that would fail or be misread mid-run."""
        problem = self.problem()
        if problem:
            raise UserError(f"pre_encode.{problem}")

    def problem(self) -> str | None:
        """``"<name>: <value>; expected …"`` for the first bad setting, else None."""
        checks = [
            (("progress", "reencode"), _is_bool, "true or false"),
            (("chunked",), lambda v: _is_bool(v) or v == "auto", "true, false or auto"),
            (("batch_size", "clap_batch_size", "chunk_size"), _is_count, "a whole number >= 1"),
            (("chunk_overlap",), lambda v: _is_count(v) and v < self.chunk_size,
             f"a whole number in [1, chunk_size={self.chunk_size})"),
            (("clap_window_seconds", "chunk_min_seconds"), _is_positive, "a number of seconds > 0"),
            (("clap_hop_seconds",), lambda v: not _is_bool(v) and v == CLAP_HOP_SECONDS,
             f"{CLAP_HOP_SECONDS} (training reads one embedding column per second of latent, so column j must "
             "embed the window that starts at second j)"),
            (("short_clip_pad",), lambda v: v in PAD_MODES, f"one of {list(PAD_MODES)}"),
            (("clap_from",), lambda v: v in CLAP_SOURCES, f"one of {list(CLAP_SOURCES)}"),
        ]
        for names, ok, expected in checks:
            for name in names:
                if not ok(getattr(self, name)):
                    return f"{name}: {getattr(self, name)!r}; expected {expected}"
        return None

    @classmethod
    def from_mapping(cls, node: Mapping | None) -> "EncodeSettings":
        """The defaults of ``configs/pre_encode/default.yaml`` with the settings of ``node``."""
        from mgeldm.config import config_file

        node = dict(node or {})
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(node) - known)
        if unknown:
            raise UserError(f"pre_encode: unknown settings {unknown}; expected some of {sorted(known)}")
        return cls(**{**config_file("pre_encode/default.yaml"), **node})


CLAP_SOURCES = ("audio", "labels")


def _is_bool(value) -> bool:
    return isinstance(value, bool)


def _is_count(value) -> bool:
    return isinstance(value, int) and not _is_bool(value) and value >= 1


def _is_positive(value) -> bool:
    return isinstance(value, (int, float)) and not _is_bool(value) and value > 0


# --------------------------------------------------------------------------------------------- hashing


def state_dict_sha256(state: Mapping[str, torch.Tensor] | torch.nn.Module) -> str:
    """A hash of weights (names, dtypes, shapes, values) that does not depend on the file format.

    The same AE weights read from an ``.ckpt``, a ``.safetensors`` or the ``pretransform.model.*`` part of a
    DiT checkpoint give the same hash, so a training run can check which AE encoded its latents.
    """
    if isinstance(state, torch.nn.Module):
        state = state.state_dict()
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------- encoding


class TrackEncoder:
    """Turns waveforms into VAE-mean latents ``(C, T)`` and per-second embeddings ``(D, N_sec)``."""

    def __init__(self, autoencoder, embedder, settings: EncodeSettings, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.ae = autoencoder.to(self.device).eval()
        self.embedder = embedder.to(self.device) if hasattr(embedder, "to") else embedder
        self.settings = settings
        self.ae_sr = int(autoencoder.sample_rate)
        self.ratio = int(autoencoder.downsampling_ratio)
        rate = getattr(embedder, "sample_rate", None)
        self.clap_sr = int(rate) if rate else None
        if settings.clap_from == "audio" and self.clap_sr is None:
            raise UserError("embedder: this embedder is text-only (no sample_rate, no audio embeddings); "
                            "set pre_encode.clap_from=labels or use an audio embedder such as laion_clap")

    # -- AE
    def latents(self, waves: torch.Tensor, sample_rate: int) -> np.ndarray:
        """``(N, L)`` at ``sample_rate`` -> ``(N, C, T)`` float32 VAE means (T = frames after trimming)."""
        x = resample(waves.float(), sample_rate, self.ae_sr)
        usable = x.shape[-1] - x.shape[-1] % self.ratio
        if usable <= 0:
            raise BrokenSong("too short", f"{x.shape[-1]} samples at {self.ae_sr} Hz < one AE frame ({self.ratio})")
        x = x[:, :usable]
        chunked = self._use_chunks(usable / self.ae_sr)
        out = []
        with torch.no_grad():
            for start in range(0, x.shape[0], self.settings.batch_size):
                batch = x[start:start + self.settings.batch_size, None].to(self.device)
                z = self._encode_chunks(batch) if chunked else self.ae.encode_audio(batch, sample=False)
                out.append(z.float().cpu())
        return torch.cat(out).numpy()

    def _encode_chunks(self, x: torch.Tensor) -> torch.Tensor:
        """Encode ``(B, 1, L)`` in windows of ``chunk_size`` frames (bounded memory), cross-faded linearly over
        ``chunk_overlap`` frames. The last window is right-aligned to the end, so no window sees padding the
        one-pass encode would not see; only the seams differ (see the test for the tolerance)."""
        r, size, overlap = self.ratio, self.settings.chunk_size, self.settings.chunk_overlap
        frames = x.shape[-1] // r
        if frames <= size:
            return self.ae.encode_audio(x, sample=False)
        if not 0 < overlap < size:
            raise ValueError(f"chunk_overlap must be in (0, chunk_size), got {overlap} for {size}")
        starts = list(range(0, frames - size, size - overlap)) + [frames - size]
        ramp = torch.linspace(0.0, 1.0, overlap + 2, device=x.device)[1:-1]
        out = weight = None
        for start in starts:
            z = self.ae.encode_audio(x[..., start * r:(start + size) * r], sample=False)
            w = torch.ones(size, device=x.device)
            if start > 0:
                w[:overlap] = ramp
            if start + size < frames:
                w[-overlap:] = ramp.flip(0)
            if out is None:
                out = z.new_zeros(*z.shape[:-1], frames)
                weight = z.new_zeros(frames)
            out[..., start:start + size] += z * w
            weight[start:start + size] += w
        return out / weight

    def _use_chunks(self, seconds: float) -> bool:
        mode = self.settings.chunked
        return seconds > self.settings.chunk_min_seconds if mode == "auto" else mode

    def zero_latent(self) -> np.ndarray:
        """The VAE mean of 20 s of silence at frame 100: the reference the salient-segment draw compares to."""
        n = int(self.ae_sr * ZERO_LATENT_SECONDS)
        n -= n % self.ratio
        # The original's 20 s are 156 frames of the full AE; frame 100 sees only silence either way, so a small
        # AE (more frames per second) encodes just those 156 frames instead of 20 s.
        n = min(n, ZERO_LATENT_FRAMES * self.ratio)
        with torch.no_grad():
            z = self.ae.encode_audio(torch.zeros(1, 1, n, device=self.device), sample=False)
        frame = min(ZERO_LATENT_FRAME, z.shape[-1] - 1)
        return z[0, :, frame].float().cpu().numpy()

    # -- embedder
    def windows(self, wave: torch.Tensor) -> list[torch.Tensor]:
        """The embedder inputs of one signal at the embedder rate: one window per hop.

        ``N_sec = floor(duration - window)`` windows starting every hop (the original); a signal with
        ``N_sec < 1`` gets one window: the clip padded to the window length.
        """
        s = self.settings
        win = int(round(s.clap_window_seconds * self.clap_sr))
        hop = int(round(s.clap_hop_seconds * self.clap_sr))
        n_sec = int(wave.shape[-1] / self.clap_sr - s.clap_window_seconds)
        if n_sec >= 1:
            return [wave[i * hop:i * hop + win] for i in range(n_sec)]
        return [pad_clip(wave[:win], win, s.short_clip_pad)]

    def embeddings(self, waves: torch.Tensor, sample_rate: int) -> np.ndarray:
        """``(N, L)`` -> ``(N, D, N_sec)`` float32."""
        x = resample(waves.float(), sample_rate, self.clap_sr)
        per_signal = [self.windows(x[i]) for i in range(x.shape[0])]
        flat = [w for ws in per_signal for w in ws]
        out = []
        with torch.no_grad():
            for start in range(0, len(flat), self.settings.clap_batch_size):
                batch = torch.stack(flat[start:start + self.settings.clap_batch_size]).to(self.device)
                out.append(self.embedder.embed_audio(batch, self.clap_sr).float().cpu())
        emb = torch.cat(out)
        n = len(per_signal[0])
        return emb.reshape(x.shape[0], n, -1).permute(0, 2, 1).contiguous().numpy()


    def num_columns(self, seconds: float) -> int:
        """Columns of a signal of ``seconds``: ``floor(seconds - window)`` (at least 1), as :meth:`windows`."""
        return max(1, int(seconds - self.settings.clap_window_seconds))

    def label_embeddings(self, label_lists: Sequence[Sequence[str]], seconds: float) -> np.ndarray:
        """``clap_from: labels``: ``(N, D, N_sec)``, the text embedding of each signal's labels, repeated per
        column. A signal without labels (the submix of a one-stem song) gets zeros, like silence."""
        from mgeldm.data.prompts import join_labels

        n = self.num_columns(seconds)
        texts = [self.settings.label_template.format(labels=join_labels(ls)) for ls in label_lists if ls]
        dim = int(self.embedder.dim)
        out = np.zeros((len(label_lists), dim, n), dtype=np.float32)
        if texts:
            with torch.no_grad():
                emb = self.embedder.embed_text(texts).float().cpu().numpy()
            rows = [i for i, ls in enumerate(label_lists) if ls]
            out[rows] = np.repeat(emb[:, :, None], n, axis=2)
        return out


def pad_clip(clip: torch.Tensor, length: int, mode: str = "repeat") -> torch.Tensor:
    """Pad a short clip to ``length``: whole repeats then zeros ("repeat", laion_clap's repeatpad) or zeros."""
    n = clip.shape[-1]
    if n >= length:
        return clip[:length]
    if mode == "repeat" and n > 0:
        clip = clip.repeat(length // n)
    elif mode not in PAD_MODES:
        raise ValueError(f"short_clip_pad must be one of {PAD_MODES}, got {mode!r}")
    return torch.nn.functional.pad(clip, (0, length - clip.shape[-1]))


def combinations(stems: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, list[tuple[str, list[str], torch.Tensor, torch.Tensor]]]:
    """The mix and, per source in order, ``(label, other labels, source, submix)`` (docs/compatibility.md#pre-encoding)."""
    labels = list(stems)
    length = max(int(s.shape[-1]) for s in stems.values())
    waves = torch.stack([torch.nn.functional.pad(stems[k], (0, length - stems[k].shape[-1])) for k in labels])
    mix = waves.sum(0)
    combs = []
    for i, label in enumerate(labels):
        rest = torch.cat([waves[:i], waves[i + 1:]]).sum(0)
        combs.append((label, labels[:i] + labels[i + 1:], waves[i], rest))
    return mix, combs


def encode_track(track: Track, encoder: TrackEncoder, *, mix_only: bool) -> dict[str, object]:
    """All arrays and json of one track folder, as ``{relative file name: array | dict}``."""
    if mix_only:
        mix = next(iter(track.stems.values()))
        signals, combs = mix[None], []
    else:
        mix, combs = combinations(track.stems)
        signals = torch.stack([mix] + [w for _, _, src, sub in combs for w in (src, sub)])
    z = encoder.latents(signals, track.sample_rate)
    if encoder.settings.clap_from == "labels":
        labels = [] if mix_only else list(track.stems)
        label_lists = [labels] + [ls for label, others, _, _ in combs for ls in ([label], others)]
        c = encoder.label_embeddings(label_lists, signals.shape[-1] / track.sample_rate)
    else:
        c = encoder.embeddings(signals, track.sample_rate)
    files: dict[str, object] = {"mix.npy": z[0], "mix_clap.npy": c[0]}
    for k, (label, others, _, _) in enumerate(combs):
        src, sub = 1 + 2 * k, 2 + 2 * k
        files[f"comb{k}/src.npy"] = z[src]
        files[f"comb{k}/src_clap.npy"] = c[src]
        files[f"comb{k}/submix.npy"] = z[sub]
        files[f"comb{k}/submix_clap.npy"] = c[sub]
        files[f"comb{k}/comb_info.json"] = {
            "src_label": label,
            "submix_label_list": others,
            "wav_sr_ori": int(track.sample_rate),
            "sample_rate_ae": encoder.ae_sr,
            "sample_rate_clap": encoder.clap_sr,
        }
    return files


# --------------------------------------------------------------------------------------------- files


def partial_dir(final: Path) -> Path:
    return final.parent / f"{PARTIAL_PREFIX}{final.name}{PARTIAL_SUFFIX}"


def write_track_folder(final: Path, files: Mapping[str, object]) -> None:
    """Write every file under a temporary folder name, then rename it to ``final`` in one step; a complete
    folder another process wrote meanwhile is kept (``mgeldm.files.atomic_folder``)."""
    _forget_partial(final)
    with atomic_folder(final, replace=False) as tmp:
        for rel, content in files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, np.ndarray):
                np.save(path, np.ascontiguousarray(content, dtype=np.float32))
            else:
                path.write_text(json.dumps(content, indent=4))


def save_zero_latent(root: Path, encoder: TrackEncoder) -> Path:
    import io

    buf = io.BytesIO()
    np.save(buf, encoder.zero_latent().astype(np.float32))
    path = root / ZERO_LATENT_NAME
    write_bytes_atomic(path, buf.getvalue())
    return path


def track_summary(folder: Path, mix_only: bool) -> dict[str, object]:
    """What the manifest says about one complete track folder (read from its files, cheaply)."""
    mix = np.load(folder / "mix.npy", mmap_mode="r")
    clap = np.load(folder / "mix_clap.npy", mmap_mode="r")
    entry: dict[str, object] = {"frames": int(mix.shape[-1]), "clap_frames": int(clap.shape[-1])}
    if not mix_only:
        labels = []
        k = 0
        while (folder / f"comb{k}" / "comb_info.json").is_file():
            labels.append(json.loads((folder / f"comb{k}" / "comb_info.json").read_text())["src_label"])
            k += 1
        entry["labels"] = labels
    return entry


# --------------------------------------------------------------------------------------------- the run


@dataclass
class RunInfo:
    """What the manifest records about how the latents were made (no time stamps, no absolute paths)."""

    autoencoder: dict
    embedder: dict

    def versions(self) -> dict[str, str]:
        import mgeldm

        return {"mgeldm": mgeldm.__version__, "torch": torch.__version__.split("+")[0], "numpy": np.__version__}


def shard_file(corpus_dir: Path, shard_id: int, num_shards: int) -> Path:
    return corpus_dir / SHARDS_DIR / f"shard{shard_id:03d}-of-{num_shards:03d}.json"


def merge_manifest(root: Path, reader: CorpusReader, refs: Sequence[TrackRef], num_shards: int,
                   info: RunInfo) -> Path | None:
    """Write ``<corpus>/manifest.json`` once every shard has reported; None while some are missing."""
    corpus_dir = root / reader.out_name
    shard_files = [shard_file(corpus_dir, i, num_shards) for i in range(num_shards)]
    if not all(p.is_file() for p in shard_files):
        return None
    skipped = {}
    for p in shard_files:
        for item in json.loads(p.read_text())["skipped"]:
            skipped[(item["folder"], item["source"])] = item
    skipped_folders = {folder for folder, _ in skipped}
    tracks, missing, frames = [], [], 0
    for ref in refs:
        folder = root / ref.out_rel
        rel = _rel(reader, ref)
        if folder.is_dir():
            entry = {"folder": rel, "source": ref.source_id, **track_summary(folder, reader.mix_only)}
            frames += int(entry["frames"])
            tracks.append(entry)
        elif rel not in skipped_folders:
            missing.append(rel)
    if missing:
        log.warning(f"{reader.out_name}: {len(missing)} tracks neither encoded nor skipped "
                  f"(first: {missing[0]}); rerun to finish")
        return None
    ae_rate = info.autoencoder["sample_rate"] / info.autoencoder["downsampling_ratio"]
    manifest = {
        "format": MANIFEST_FORMAT,
        "corpus": reader.out_name,
        "reader": reader.key,
        "mix_only": reader.mix_only,
        "autoencoder": info.autoencoder,
        "embedder": info.embedder,
        "versions": info.versions(),
        "summary": {"tracks": len(tracks), "hours": round(frames / ae_rate / 3600.0, 4), "skipped": len(skipped)},
        "tracks": tracks,
        "skipped": [skipped[k] for k in sorted(skipped)],
    }
    path = corpus_dir / MANIFEST_NAME
    write_bytes_atomic(path, (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode())
    shutil.rmtree(corpus_dir / SHARDS_DIR, ignore_errors=True)
    return path


def is_complete(root: Path, ref: TrackRef) -> bool:
    return (root / ref.out_rel).is_dir()


def my_refs(refs: Sequence[TrackRef], offset: int, num_shards: int, shard_id: int) -> list[TrackRef]:
    """This shard's share: positions ``offset + i`` with ``(offset + i) % num_shards == shard_id``."""
    return [r for i, r in enumerate(refs) if (offset + i) % num_shards == shard_id]


@dataclass
class CorpusPlan:
    """One corpus of the run: its reader, every song, and this shard's share."""

    reader: CorpusReader
    refs: list[TrackRef]
    mine: list[TrackRef]


def plan_corpora(readers: Sequence[CorpusReader], num_shards: int, shard_id: int) -> list[CorpusPlan]:
    """List every corpus (refusing an empty or wrong-layout root) and this shard's share, writing nothing."""
    if num_shards < 1 or not 0 <= shard_id < num_shards:
        raise UserError(f"shard_id={shard_id}, num_shards={num_shards}: expected 0 <= shard_id < num_shards")
    plans, offset = [], 0
    for reader in readers:
        refs = reader.songs()
        plans.append(CorpusPlan(reader, refs, my_refs(refs, offset, num_shards, shard_id)))
        offset += len(refs)
    return plans


def pre_encode(
    readers: Sequence[CorpusReader],
    save_root: str | os.PathLike,
    *,
    encoder: TrackEncoder | None,
    info: RunInfo | None,
    num_shards: int = 1,
    shard_id: int = 0,
    dry_run: bool = False,
    echo: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
) -> list[CorpusReport]:
    """Encode every song of ``readers`` under ``save_root`` (this shard's share); return the reports.

    ``encoder``/``info`` may be None for a dry run, which only lists what would be done.
    """
    root = Path(save_root)
    plans = plan_corpora(readers, num_shards, shard_id)
    if dry_run:
        return [_dry_run(root, plan, echo) for plan in plans]
    prepare_root(root, plans, info, reencode=encoder.settings.reencode)
    save_zero_latent(root, encoder)
    after_track = _kill_hook()
    return [encode_corpus(root, plan, encoder, info, (shard_id, num_shards), echo, after_track) for plan in plans]


def _dry_run(root: Path, plan: CorpusPlan, echo: Callable[[str], None]) -> CorpusReport:
    todo = [r for r in plan.mine if not is_complete(root, r)]
    echo(_listing_line(plan, todo))
    for ref in todo:
        echo(f"  would encode {ref.source_id} -> {ref.out_rel}")
    return CorpusReport(plan.reader.out_name)


def _listing_line(plan: CorpusPlan, todo: list[TrackRef]) -> str:
    return (f"{plan.reader.out_name}: {len(plan.refs)} songs, this shard {len(plan.mine)}, "
            f"already complete {len(plan.mine) - len(todo)}")


def encode_corpus(root: Path, plan: CorpusPlan, encoder: TrackEncoder, info: RunInfo, shard: tuple[int, int],
                  echo: Callable[[str], None], after_track: Callable[[], None]) -> CorpusReport:
    """Encode this shard's songs of one corpus that are not complete yet, then report and merge the manifest."""
    reader = plan.reader
    report = CorpusReport(reader.out_name)
    todo = [r for r in plan.mine if not is_complete(root, r)]
    echo(_listing_line(plan, todo))
    skipped = []
    for ref in _progress(todo, reader.out_name, encoder.settings.progress):
        try:
            track = reader.load(ref)
            files = encode_track(track, encoder, mix_only=reader.mix_only)
        except BrokenSong as err:
            _forget_partial(root / ref.out_rel)
            skipped.append(_skip(report, reader, ref, ref.source_id, err))
            continue
        write_track_folder(root / ref.out_rel, files)
        report.add_song(track.seconds)
        after_track()
    todo_set = set(todo)
    for ref in plan.mine:
        if ref not in todo_set:  # complete from an earlier run: counted, not re-read
            frames = track_summary(root / ref.out_rel, reader.mix_only)["frames"]
            report.add_song(frames * encoder.ratio / encoder.ae_sr)
        for source in ref.dropped:
            skipped.append(_skip(report, reader, ref, source, BrokenSong("duplicate", f"{ref.source_id} is read instead")))
    shard_id, num_shards = shard
    shard_path = shard_file(root / reader.out_name, shard_id, num_shards)
    write_bytes_atomic(shard_path, json.dumps({"skipped": skipped}, indent=1).encode())
    merged = merge_manifest(root, reader, plan.refs, num_shards, info)
    echo(report.summary() + ("" if merged else " (manifest waits for the other shards)"))
    return report


def _skip(report: CorpusReport, reader: CorpusReader, ref: TrackRef, source: str, err: BrokenSong) -> dict:
    """Report a skipped file (one warning line) and return its manifest entry."""
    report.skip(source, err)
    return {"folder": _rel(reader, ref), "source": source, "reason": err.reason, "detail": err.detail}


def _kill_hook() -> Callable[[], None]:
    """What runs after each written track folder: nothing, or the test hook of ``STOP_AFTER_TRACKS_ENV``."""
    value = os.environ.get(STOP_AFTER_TRACKS_ENV)
    if not value:
        return lambda: None
    limit, written = int(value), 0

    def after_track() -> None:
        nonlocal written
        written += 1
        if written >= limit:
            os.kill(os.getpid(), signal.SIGKILL)

    return after_track


# --------------------------------------------------------------------------------------------- the save root


def encoding_record(info: RunInfo) -> dict:
    """What ``encoding.json`` holds: the autoencoder and the embedder (their hashes) of every latent of a root."""
    return {"autoencoder": info.autoencoder, "embedder": info.embedder}


def earlier_records(root: Path) -> dict[Path, dict]:
    """The records of earlier runs into ``root``: its ``encoding.json`` and every corpus ``manifest.json``."""
    manifests = sorted(p for p in root.glob(f"*/{MANIFEST_NAME}") if not p.parent.name.startswith(PARTIAL_PREFIX))
    found = {}
    for path in [root / ENCODING_NAME, *manifests]:
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text())
            found[path] = {"autoencoder": dict(data["autoencoder"]), "embedder": dict(data["embedder"])}
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{path}: not a pre-encoding record (no autoencoder and embedder); "
                            "move it out of +save_root_dir") from None
    return found


def encoder_difference(old: dict, new: dict) -> str | None:
    """How an earlier record differs from this run's, in words; None for the same autoencoder and embedder."""
    before, now = str(old["autoencoder"].get("sha256")), str(new["autoencoder"]["sha256"])
    if before != now:
        return f"autoencoder {before[:12]}… (this run: {now[:12]}…)"
    if old["embedder"] != new["embedder"]:
        return f"embedder {_embedder_words(old['embedder'])} (this run: {_embedder_words(new['embedder'])})"
    return None


def _embedder_words(embedder: dict) -> str:
    hashes = ",".join(str(h)[:12] for _, h in sorted(dict(embedder.get("sha256") or {}).items()))
    return f"{embedder.get('type')} dim {embedder.get('dim')}" + (f" weights {hashes}…" if hashes else "")


def prepare_root(root: Path, plans: Sequence[CorpusPlan], info: RunInfo, *, reencode: bool) -> None:
    """Before the first track: every latent of a root must come from one autoencoder and embedder.

    A root whose ``encoding.json`` or a corpus manifest names another one is refused, unless ``reencode``:
    then the run's corpus folders are deleted first (the whole folder, all shards' tracks, so that no old track
    is ever taken for a finished one), which is refused while the root holds other corpora of the old encoder.
    ``reencode`` also deletes this shard's tracks made with the same encoder, so that every track is encoded
    again. Then ``encoding.json`` records this run's encoder.
    """
    new = encoding_record(info)
    records = earlier_records(root)
    foreign = {p: d for p, old in records.items() if (d := encoder_difference(old, new))}
    if foreign and not reencode:
        path, what = next(iter(foreign.items()))
        raise UserError(f"{path}: {root} holds latents made with {what}; one root holds one encoder's latents: "
                        "pass pre_encode.reencode=true to encode this run's corpora again from scratch, "
                        "or choose another +save_root_dir")
    _remove_set_aside(root)
    if reencode and foreign:
        same = {p.parent.name for p in records if p.name == MANIFEST_NAME and p not in foreign}
        _delete_corpora(root, [plan.reader.out_name for plan in plans], same)
    if reencode:
        for ref in (ref for plan in plans for ref in plan.mine):
            shutil.rmtree(root / ref.out_rel, ignore_errors=True)
    write_bytes_atomic(root / ENCODING_NAME, (json.dumps(new, indent=2) + "\n").encode())


def _delete_corpora(root: Path, names: Sequence[str], same_encoder: set[str]) -> None:
    """Delete the corpus folders ``names`` (renamed aside first: one atomic step for concurrent shards); refuse
    while the root holds another corpus not known to come from this run's encoder (``same_encoder``)."""
    others = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                    and p.name not in names and p.name not in same_encoder)
    if others:
        raise UserError(f"pre_encode.reencode: {root} also holds {others}, not made with this run's encoder and not "
                        "in +extract_dataset; encode them in this run too or move them out of the root")
    for name in names:
        if (root / name).is_dir():
            aside = root / f"{PARTIAL_PREFIX}{name}.{os.getpid()}{OLD_SUFFIX}"
            os.replace(root / name, aside)
            shutil.rmtree(aside, ignore_errors=True)


def _remove_set_aside(root: Path) -> None:
    """Delete corpus folders a killed ``reencode`` left set aside (concurrent deletions tolerate each other)."""
    for path in root.glob(f"{PARTIAL_PREFIX}*{OLD_SUFFIX}"):
        shutil.rmtree(path, ignore_errors=True)


def _rel(reader: CorpusReader, ref: TrackRef) -> str:
    """The track folder relative to its corpus folder (``train/track00003``)."""
    return ref.out_rel[len(reader.out_name) + 1:]


def _forget_partial(final: Path) -> None:
    tmp = partial_dir(final)
    if tmp.exists():
        shutil.rmtree(tmp)


def _progress(items: list, name: str, enabled: bool):
    if not enabled or not items:
        return items
    from mgeldm.progress import progress_bar

    return progress_bar(items, desc=f"pre-encode {name}", unit="track")


# --------------------------------------------------------------------------------------------- building


def build_audio_embedder(node: Mapping, device: str = "cpu"):
    """The audio embedder: ``{target: "module:callable", config: {...}}`` for a plug-in, else a conditioner node."""
    node = dict(node)
    target = node.get("target")
    if target:
        module_name, _, attr = str(target).partition(":")
        factory = getattr(importlib.import_module(module_name), attr)
        return factory(**dict(node.get("config") or {}))
    from mgeldm.models.conditioners import build_conditioner

    return build_conditioner(node, device=device)


def embedder_info(node: Mapping, embedder) -> dict:
    """Type, width, rate and the hash of every ``*ckpt_path`` file named in the node's config."""
    config = dict(node.get("config") or {})
    hashes = {k: file_sha256(v) for k, v in sorted(config.items())
              if k.endswith("ckpt_path") and v and Path(str(v)).is_file()}
    return {"type": str(node.get("target") or node.get("type")), "dim": int(embedder.dim),
            "sample_rate": int(embedder.sample_rate) if getattr(embedder, "sample_rate", None) else None,
            "sha256": hashes}


def autoencoder_info(ae) -> dict:
    return {"sha256": state_dict_sha256(ae), "sample_rate": int(ae.sample_rate),
            "downsampling_ratio": int(ae.downsampling_ratio), "latent_dim": int(ae.latent_dim)}
