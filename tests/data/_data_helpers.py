"""Helpers of the data tests: tiny fake corpora in each corpus's real layout, a cheap test embedder.

Imported by the tests (through tests/data/conftest.py) and by the pre-encoding subprocesses (PYTHONPATH).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import yaml

SR = 8000  # corpus sample rate of the fakes: small, and different from the AE's 16 kHz


def tone(seconds: float, freq: float, sr: int = SR, channels: int = 1, seed: int = 0, amp: float = 0.3) -> np.ndarray:
    """A decaying tone plus a little noise, (L, channels) float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = amp * np.sin(2 * np.pi * freq * t) * (0.6 + 0.4 * np.cos(2 * np.pi * 0.5 * t)) + 0.01 * rng.standard_normal(
        t.size
    )
    return np.repeat(x[:, None], channels, axis=1).astype(np.float32)


def write(path: Path, data: np.ndarray, sr: int = SR, subtype: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, sr, subtype=subtype)
    return path


def garbage(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not audio at all" * 10)
    return path


# ---------------------------------------------------------------------------------------------- corpora


def make_slakh(root: Path, seconds: float = 12.0) -> Path:
    """train: Track00001 (Piano, Bass, Strings + Strings (continued), one unrendered), Track00002 broken
    (a stem file is missing); validation: Track00003 (two .wav stems)."""

    def track(split, name, stems, files):
        d = root / split / name
        meta = {"UUID": name, "stems": stems}
        (d / "stems").mkdir(parents=True, exist_ok=True)
        (d / "metadata.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
        for fname, data in files.items():
            write(d / "stems" / fname, data)
        write(d / "mix.wav", tone(seconds, 99.0))  # present in the corpus, never used

    def s(cls, rendered=True):
        return {"inst_class": cls, "audio_rendered": rendered, "program_num": 0}

    track(
        "train",
        "Track00001",
        {
            "S00": s("Piano"),
            "S01": s("Bass"),
            "S02": s("Strings"),
            "S03": s("Strings (continued)"),
            "S04": s("Drums", False),
        },
        {
            "S00.flac": tone(seconds, 440, seed=1),
            "S01.flac": tone(seconds * 0.75, 110, seed=2),
            "S02.flac": tone(seconds, 660, seed=3),
            "S03.flac": tone(seconds, 880, seed=4),
        },
    )
    track("train", "Track00002", {"S00": s("Piano"), "S01": s("Guitar")}, {"S00.flac": tone(seconds, 300)})
    track(
        "validation",
        "Track00003",
        {"S00": s("Guitar"), "S01": s("Organ")},
        {"S00.wav": tone(seconds, 220, seed=5), "S01.wav": tone(seconds, 330, seed=6)},
    )
    return root


def make_musdb(root: Path, seconds: float = 12.0) -> Path:
    """train: "A - Song" (stereo stems), "B - Broken" (unreadable drums.wav); test: "C - Song"."""
    for split, name, seed in (("train", "A - Song", 10), ("test", "C - Song", 20)):
        d = root / split / name
        for i, stem in enumerate(("mixture", "vocals", "drums", "bass", "other")):
            write(d / f"{stem}.wav", tone(seconds, 150 + 100 * i, channels=2, seed=seed + i))
    d = root / "train" / "B - Broken"
    for i, stem in enumerate(("mixture", "vocals", "bass", "other")):
        write(d / f"{stem}.wav", tone(seconds, 200 + 50 * i, channels=2))
    garbage(d / "drums.wav")
    return root


MOISES_IDS = ("0a1b", "1c2d", "2e3f", "3a4b", "4c5d")


def make_moisesdb(root: Path, seconds: float = 12.0) -> Path:
    """Five songs; "2e3f" is broken (a single stem). Each: data.json + stem folders of wavs."""
    for n, tid in enumerate(MOISES_IDS):
        d = root / tid
        d.mkdir(parents=True, exist_ok=True)
        (d / "data.json").write_text(json.dumps({"id": tid}))
        if tid == "2e3f":
            write(d / "vocals" / "v.wav", tone(seconds, 300))
            continue
        write(d / "vocals" / "v.wav", tone(seconds, 300 + n, seed=n))
        write(d / "drums" / "k.wav", tone(seconds, 80, seed=n + 10))
        write(d / "drums" / "s.wav", tone(seconds * 0.5, 200, seed=n + 20))  # summed, padded
        write(d / "other_keys" / "p.wav", tone(seconds, 500, seed=n + 30))
    return root


def make_medleydb(root: Path, seconds: float = 12.0) -> Path:
    """ "Artist_Song": two "electric bass" stems of unequal length (summed, padded) + "male singer";
    "Broken_Song": metadata without ``stems``."""
    name = "Artist_Song"
    d = root / name
    stems = {
        "S01": {"instrument": "electric bass", "filename": f"{name}_STEM_01.wav"},
        "S02": {"instrument": "male singer", "filename": f"{name}_STEM_02.wav"},
        "S03": {"instrument": "electric bass", "filename": f"{name}_STEM_03.wav"},
    }
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}_METADATA.yaml").write_text(
        yaml.safe_dump({"artist": "A", "stem_dir": f"{name}_STEMS", "stems": stems})
    )
    write(d / f"{name}_STEMS" / f"{name}_STEM_01.wav", tone(seconds, 60, seed=1))
    write(d / f"{name}_STEMS" / f"{name}_STEM_02.wav", tone(seconds, 400, seed=2))
    write(d / f"{name}_STEMS" / f"{name}_STEM_03.wav", tone(seconds * 0.5, 90, seed=3))
    b = root / "Broken_Song"
    b.mkdir(parents=True, exist_ok=True)
    (b / "Broken_Song_METADATA.yaml").write_text(yaml.safe_dump({"artist": "B", "stem_dir": "Broken_Song_STEMS"}))
    return root


def make_mtg(root: Path, seconds: float = 12.0, subdirs: int = 3) -> Path:
    """``<NN>/<id>.{wav,flac}`` mixtures; ``01/empty.wav`` holds no samples (broken)."""
    for k in range(subdirs):
        write(root / f"{k:02d}" / f"{1000 + k}.wav", tone(seconds, 200 + 40 * k, seed=k))
    write(root / "01" / f"{2000}.flac", tone(seconds, 333, seed=7))
    write(root / "01" / "empty.wav", np.zeros((0, 1), np.float32))
    return root


def make_other_tracks(root: Path, seconds: float = 12.0) -> Path:
    """ "song_a": guitar + vocals (+ mix.wav, ignored); "song_b": a NaN in its bass (broken)."""
    write(root / "song_a" / "guitar.wav", tone(seconds, 250, seed=1))
    write(root / "song_a" / "lead_vocals.wav", tone(seconds, 500, seed=2))
    write(root / "song_a" / "mix.wav", tone(seconds, 50))
    bad = tone(seconds, 120)
    bad[100, 0] = np.nan
    write(root / "song_b" / "bass.wav", bad, subtype="FLOAT")
    write(root / "song_b" / "keys.wav", tone(seconds, 700))
    return root


MAKERS = {
    "slakh2100": make_slakh,
    "musdb18hq": make_musdb,
    "moisesdb": make_moisesdb,
    "medleydbV2": make_medleydb,
    "mtgjamendo": make_mtg,
    "other_tracks": make_other_tracks,
}


# ---------------------------------------------------------------------------------------------- embedder


class TinyEmbedder:
    """A deterministic stand-in for CLAP (the Conditioner protocol): log band energies, L2-normalised."""

    def __init__(self, dim: int = 8, sample_rate: int = 48000) -> None:
        self.dim = int(dim)
        self.sample_rate = int(sample_rate)
        self.calls = 0

    def to(self, device=None, dtype=None) -> "TinyEmbedder":
        return self

    def embed_text(self, texts):
        raise NotImplementedError

    def embed_audio(self, audio: torch.Tensor, sample_rate: int, *, generator=None) -> torch.Tensor:
        assert sample_rate == self.sample_rate, (sample_rate, self.sample_rate)
        x = torch.as_tensor(audio, dtype=torch.float32)
        x = x[None] if x.dim() == 1 else x
        self.calls += x.shape[0]
        n = x.shape[-1] // self.dim * self.dim
        energy = x[:, :n].reshape(x.shape[0], self.dim, -1).pow(2).mean(-1)
        feat = torch.log1p(1e3 * energy) + torch.arange(self.dim) * 1e-3
        return feat / feat.norm(dim=-1, keepdim=True)


def tiny_embedder(dim: int = 8, sample_rate: int = 48000) -> TinyEmbedder:
    return TinyEmbedder(dim, sample_rate)


def load_tiny_ae(fixture_root: Path):
    from mgeldm.checkpoints import load_weights, read_state_dict
    from mgeldm.models.autoencoder import build_autoencoder

    readme = json.loads((Path(fixture_root) / "README.json").read_text())
    ae = build_autoencoder(readme["autoencoder"])
    load_weights(ae, read_state_dict(Path(fixture_root) / "tiny_ae.ckpt"), what="tiny AE")
    return ae.eval()


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative posix path -> bytes)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------------- latent corpora


def write_latent_track(
    folder: Path,
    *,
    marker: float,
    frames: int,
    labels: list[str] | None,
    channels: int = 8,
    dim: int = 8,
    nan: bool = False,
    ratio: int = 2048,
    sr: int = 16000,
) -> None:
    """A pre-encoded track whose values say where they come from.

    Latents: channel 0 = frame index, channel 1 = ``marker``, channel 2 = -1 (mix), k (src of comb k),
    100 + k (submix of comb k). Embeddings: row 0 = column index, row 1 = ``marker``, row 2 as channel 2.
    ``labels=None`` writes a mix-only track.
    """
    n_sec = max(1, int(frames * ratio / sr - 10))

    def lat(tag):
        z = np.zeros((channels, frames), np.float32)
        z[0] = np.arange(frames)
        z[1] = marker
        z[2] = tag
        return z

    def emb(tag):
        c = np.zeros((dim, n_sec), np.float32)
        c[0] = np.arange(n_sec)
        c[1] = marker
        c[2] = tag
        return c

    folder.mkdir(parents=True, exist_ok=True)
    mix = lat(-1)
    if nan:
        mix[3, 5] = np.nan
    np.save(folder / "mix.npy", mix)
    np.save(folder / "mix_clap.npy", emb(-1))
    for k, label in enumerate(labels or []):
        d = folder / f"comb{k}"
        d.mkdir(exist_ok=True)
        np.save(d / "src.npy", lat(k))
        np.save(d / "src_clap.npy", emb(k))
        np.save(d / "submix.npy", lat(100 + k))
        np.save(d / "submix_clap.npy", emb(100 + k))
        info = {
            "src_label": label,
            "submix_label_list": [x for x in labels if x != label],
            "wav_sr_ori": 44100,
            "sample_rate_ae": sr,
            "sample_rate_clap": 48000,
        }
        (d / "comb_info.json").write_text(json.dumps(info, indent=4))
