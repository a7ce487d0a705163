"""Pre-encoding: corpus folders -> the latent + CLAP ``.npy`` layout that training reads (SPEC F.1).

For every song: the mix (sum of the stems, padded to the longest), each source and each submix (the
mix minus that source) are encoded separately with the VAE mean, and embedded per second over 10 s
windows by the audio embedder (CLAP at 48 kHz by default)::

    <root>/zero_latent.npy
    <root>/<corpus>/<split>/trackNNNNN/{mix.npy, mix_clap.npy, combK/{src,submix}{,_clap}.npy, combK/comb_info.json}
    <root>/<corpus>/manifest.json

What the original lacked: a track folder is written under a temporary name and renamed when complete, so a
killed run loses only the track in progress and a rerun skips complete tracks; ``num_shards``/``shard_id``
split the work (the last shard to finish merges the manifest); songs shorter than the 11 s the original
needed get one CLAP column of the padded clip; long songs can be encoded in chunks; broken songs are skipped
with one warning line and counted. Nothing written depends on the clock, so reruns give identical bytes.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mgeldm.audio import resample
from mgeldm.data.corpora.base import BrokenSong, CorpusReader, CorpusReport, Track, TrackRef

def warn_line(message: str) -> None:
    """One warning line on stderr (Hydra's quiet logging would swallow a logging call)."""
    print(message, file=sys.stderr, flush=True)

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
SHARDS_DIR = ".shards"
PARTIAL_PREFIX = "."
PARTIAL_SUFFIX = ".partial"
ZERO_LATENT_NAME = "zero_latent.npy"
ZERO_LATENT_SECONDS = 20.0
ZERO_LATENT_FRAME = 100
ZERO_LATENT_FRAMES = 156


@dataclass
class EncodeSettings:
    """Numbers of the encoding; the defaults are the original's (``configs/default_ae.yaml: pre_encode``)."""

    batch_size: int = 4              # signals per AE call (a song's mix, sources and submixes)
    clap_batch_size: int = 16        # windows per embedder call
    clap_window_seconds: float = 10.0
    clap_hop_seconds: float = 1.0
    short_clip_pad: str = "repeat"   # clips shorter than a window: "repeat" (laion_clap's repeatpad) or "zero"
    chunked: str | bool = "auto"     # AE chunked encoding: true, false, or "auto" (songs above chunk_min_seconds)
    chunk_min_seconds: float = 600.0
    chunk_size: int = 1024           # latent frames per chunk (131 s at 16 kHz / 2048)
    chunk_overlap: int = 64          # latent frames cross-faded between chunks
    progress: bool = True
    # What the *_clap.npy columns hold: "audio" = the embedder's audio embedding of each window (CLAP, the
    # original); "labels" = the embedder's *text* embedding of the labels the signal really contains (mix: all,
    # source: its own, submix: the others), the same column for every second. The stand-in for a text-only
    # embedder (the quickstart's MiniLM), where the stems' labels are known.
    clap_from: str = "audio"
    label_template: str = "{labels}"  # the text embedded in "labels" mode ({labels}: "drums, bass, and piano")

    @classmethod
    def from_mapping(cls, node: Mapping | None) -> "EncodeSettings":
        node = dict(node or {})
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(node) - known)
        if unknown:
            from mgeldm.errors import UserError

            raise UserError(f"pre_encode: unknown settings {unknown}; expected some of {sorted(known)}")
        settings = cls(**node)
        if settings.clap_from not in CLAP_SOURCES:
            from mgeldm.errors import UserError

            raise UserError(f"pre_encode.clap_from: {settings.clap_from!r}; expected one of {list(CLAP_SOURCES)}")
        return settings


CLAP_SOURCES = ("audio", "labels")


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
            from mgeldm.errors import UserError

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
        if isinstance(mode, str) and mode.lower() == "auto":
            return seconds > self.settings.chunk_min_seconds
        if isinstance(mode, str):
            return mode.lower() in ("true", "1", "yes")
        return bool(mode)

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
    elif mode not in ("repeat", "zero"):
        raise ValueError(f"short_clip_pad must be 'repeat' or 'zero', got {mode!r}")
    return torch.nn.functional.pad(clip, (0, length - clip.shape[-1]))


def combinations(stems: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, list[tuple[str, list[str], torch.Tensor, torch.Tensor]]]:
    """The mix and, per source in order, ``(label, other labels, source, submix)`` (SPEC F.1)."""
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
    """Write every file under a temporary folder name, then rename it to ``final`` in one step."""
    tmp = partial_dir(final)
    if tmp.exists():
        shutil.rmtree(tmp)
    for rel, content in files.items():
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, np.ndarray):
            np.save(path, np.ascontiguousarray(content, dtype=np.float32))
        else:
            with open(path, "w") as f:
                json.dump(content, f, indent=4)
    if final.exists():  # a complete folder left by another process: keep it, drop ours
        shutil.rmtree(tmp)
        return
    os.replace(tmp, final)


def write_atomic_bytes(path: Path, data: bytes) -> None:
    from mgeldm.files import write_bytes_atomic  # also removes this file's temporaries of killed writes

    write_bytes_atomic(path, data)


def save_zero_latent(root: Path, encoder: TrackEncoder) -> Path:
    import io

    buf = io.BytesIO()
    np.save(buf, encoder.zero_latent().astype(np.float32))
    path = root / ZERO_LATENT_NAME
    write_atomic_bytes(path, buf.getvalue())
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
            skipped[item["folder"]] = item
    tracks, missing, frames = [], [], 0
    for ref in refs:
        folder = root / ref.out_rel
        rel = _rel(reader, ref)
        if folder.is_dir():
            entry = {"folder": rel, "source": ref.source_id, **track_summary(folder, reader.mix_only)}
            frames += int(entry["frames"])
            tracks.append(entry)
        elif rel not in skipped:
            missing.append(rel)
    if missing:
        warn_line(f"{reader.out_name}: {len(missing)} tracks neither encoded nor skipped "
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
    write_atomic_bytes(path, (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode())
    shutil.rmtree(corpus_dir / SHARDS_DIR, ignore_errors=True)
    return path


def is_complete(root: Path, ref: TrackRef) -> bool:
    return (root / ref.out_rel).is_dir()


def my_refs(refs: Sequence[TrackRef], offset: int, num_shards: int, shard_id: int) -> list[TrackRef]:
    """This shard's share: positions ``offset + i`` with ``(offset + i) % num_shards == shard_id``."""
    return [r for i, r in enumerate(refs) if (offset + i) % num_shards == shard_id]


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
    from mgeldm.errors import UserError

    if num_shards < 1 or not 0 <= shard_id < num_shards:
        raise UserError(f"shard_id={shard_id}, num_shards={num_shards}: expected 0 <= shard_id < num_shards")
    root = Path(save_root)
    reports = []
    if not dry_run:
        save_zero_latent(root, encoder)
    offset = 0
    for reader in readers:
        refs = reader.refs()
        mine = my_refs(refs, offset, num_shards, shard_id)
        offset += len(refs)
        report = CorpusReport(reader.out_name)
        todo = [r for r in mine if not is_complete(root, r)]
        todo_set = set(todo)
        echo(f"{reader.out_name}: {len(refs)} songs, this shard {len(mine)}, already complete {len(mine) - len(todo)}")
        if dry_run:
            for ref in todo:
                echo(f"  would encode {ref.source_id} -> {ref.out_rel}")
            reports.append(report)
            continue
        skipped = []
        for ref in _progress(todo, reader.out_name, encoder.settings.progress):
            try:
                track = reader.load(ref)
                files = encode_track(track, encoder, mix_only=reader.mix_only)
            except BrokenSong as err:
                _forget_partial(root / ref.out_rel)
                report.skip(ref.source_id, err)
                skipped.append({"folder": _rel(reader, ref), "source": ref.source_id,
                                "reason": err.reason, "detail": err.detail})
                continue
            write_track_folder(root / ref.out_rel, files)
            report.add_song(track.seconds)
        for ref in mine:
            if ref not in todo_set:  # complete from an earlier run: counted, not re-read
                frames = track_summary(root / ref.out_rel, reader.mix_only)["frames"]
                report.add_song(frames * encoder.ratio / encoder.ae_sr)
        shard_path = shard_file(root / reader.out_name, shard_id, num_shards)
        write_atomic_bytes(shard_path, json.dumps({"skipped": skipped}, indent=1).encode())
        merged = merge_manifest(root, reader, refs, num_shards, info)
        echo(report.summary() + ("" if merged else " (manifest waits for the other shards)"))
        reports.append(report)
    return reports


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
    from tqdm import tqdm

    return tqdm(items, desc=f"pre-encode {name}", unit="track", dynamic_ncols=True)


# --------------------------------------------------------------------------------------------- building


def build_embedder(node: Mapping, device: str = "cpu"):
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
