"""Audio I/O: read any file soundfile understands, resample (soxr), down-mix, write atomically.

Waveforms are float32 torch tensors shaped (channels, samples) unless a function says otherwise.
"""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path

import numpy as np
import torch

from mgeldm.errors import UserError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000  # Hz: MGE-LDM's audio (the released VAE's rate), the default of every rate in the project


def load_audio(path: str | os.PathLike) -> tuple[torch.Tensor, int]:
    """Read an audio file as float32 (channels, samples) and its sample rate.

    A file that holds less audio than its header declares (a truncated copy or download) is read as far
    as it goes, with one warning (logged: one line on stderr from the command-line tools).
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise UserError(f"audio file {path}: no such file")
    try:
        info = sf.info(str(path))
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:
        raise UserError(f"audio file {path}: cannot be read as audio ({str(exc).splitlines()[0][:120]})") from None
    _warn_if_truncated(path, info.frames, data.shape[0], int(sr))
    return torch.from_numpy(np.ascontiguousarray(data.T)), int(sr)


def wav_declared_frames(path: str | os.PathLike) -> int | None:
    """Frames the ``data`` chunk of a RIFF/WAVE header declares, or None (not a WAV, size unknown).

    libsndfile trims the count to what the file holds, so only the header itself tells a truncated WAV.
    """
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            return None
        order = "<" if head[:4] == b"RIFF" else ">"
        block_align = 0
        while len(chunk := f.read(8)) == 8:
            name, size = chunk[:4], struct.unpack(order + "I", chunk[4:])[0]
            if name == b"data":
                # 0 and 0xFFFFFFFF: written by a stream that could not seek back to fill in the size
                return size // block_align if block_align and size not in (0, 0xFFFFFFFF) else None
            body = f.read(size) if name == b"fmt " else b""
            if name == b"fmt " and len(body) >= 14:
                block_align = struct.unpack(order + "H", body[12:14])[0]
            f.seek((size - len(body)) + (size & 1), os.SEEK_CUR)
    return None


def _warn_if_truncated(path: Path, frames: int, read: int, sr: int) -> None:
    """One warning line when a file holds less audio than its header declares.

    WAV headers are exact; other formats' counts can be estimates (e.g. MP3 without a Xing header),
    so those warn only when more than 1 % is missing.
    """
    declared = wav_declared_frames(path)
    exact = declared is not None
    declared = declared if exact else frames
    if declared <= 0 or read >= declared - (0 if exact else declared // 100):
        return
    log.warning(
        f"warning: audio file {path}: truncated: its header declares {declared / sr:.2f} s but the file "
        f"holds {read / sr:.2f} s; using the {read / sr:.2f} s"
    )


def check_audio(wave: torch.Tensor, name: str) -> None:
    """Refuse empty, non-finite or all-silent audio with one line naming it (``name``: e.g. ``audio song.wav``)."""
    if wave.numel() == 0 or wave.shape[-1] == 0:
        raise UserError(f"{name}: is empty (0 samples)")
    if not torch.isfinite(wave).all():
        raise UserError(f"{name}: contains NaN or infinite samples")
    if wave.abs().max() == 0:
        raise UserError(f"{name}: is digital silence; expected some signal")


def to_mono(wave: torch.Tensor) -> torch.Tensor:
    """Average the channels: (C, L) -> (1, L). A 1-D input becomes (1, L)."""
    if wave.dim() == 1:
        return wave[None]
    return wave.mean(dim=0, keepdim=True) if wave.shape[0] != 1 else wave


def resample(wave: torch.Tensor, orig_sr: int, target_sr: int, quality: str = "HQ") -> torch.Tensor:
    """High-quality resampling along the last axis with soxr (any leading shape, float32)."""
    if orig_sr == target_sr:
        return wave
    import soxr

    lead = wave.shape[:-1]
    flat = wave.reshape(-1, wave.shape[-1]).detach().cpu().numpy().astype(np.float32, copy=False)
    out = soxr.resample(flat.T, orig_sr, target_sr, quality=quality).T  # soxr wants (frames, channels)
    out = np.ascontiguousarray(out, dtype=np.float32)
    return torch.from_numpy(out).reshape(*lead, out.shape[-1]).to(wave.device)


def load_mono(path: str | os.PathLike, sample_rate: int | None = None) -> tuple[torch.Tensor, int]:
    """Read a file as mono (L,) float32, resampled to ``sample_rate`` when given; returns it and its rate."""
    wave, sr = load_audio(path)
    mono = to_mono(wave)[0]
    if sample_rate is None or sample_rate == sr or mono.numel() == 0:
        return mono.contiguous(), int(sr)
    return resample(mono[None], sr, sample_rate)[0].contiguous(), int(sample_rate)


def write_wav(path: str | os.PathLike, wave: torch.Tensor, sample_rate: int, subtype: str = "PCM_16") -> Path:
    """Write (C, L) or (L,) audio atomically (``mgeldm.files.atomic_path``). PCM_16 as the original."""
    import soundfile as sf

    from mgeldm.files import atomic_path

    path = Path(path)
    data = wave.detach().float().cpu()
    data = data[None] if data.dim() == 1 else data
    with atomic_path(path) as tmp:
        sf.write(str(tmp), data.numpy().T, sample_rate, subtype=subtype, format="WAV")
    return path


def save_spectrogram_png(
    path: str | os.PathLike, wave: torch.Tensor, sample_rate: int, n_fft: int = 1024, hop: int = 256
) -> Path:
    """A dB spectrogram image (relative to the max, magma), like the original's inference pngs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    mono = to_mono(wave.detach().float().cpu())[0]
    if mono.numel() < n_fft:
        mono = torch.nn.functional.pad(mono, (0, n_fft - mono.numel()))
    spec = torch.stft(mono, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True).abs()
    db = 20 * torch.log10(spec.clamp_min(1e-10) / spec.max().clamp_min(1e-10))
    fig, ax = plt.subplots(figsize=(10, 4))
    dur = mono.numel() / sample_rate
    img = ax.imshow(
        db.clamp_min(-80).numpy(), origin="lower", aspect="auto", cmap="magma", extent=(0, dur, 0, sample_rate / 2)
    )
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (Hz)")
    fig.colorbar(img, ax=ax, format="%+2.0f dB", fraction=0.05, pad=0.015)
    fig.subplots_adjust(left=0.07, right=0.955, bottom=0.12, top=0.96)  # fixed margins: tight_layout costs 1/4
    from mgeldm.files import atomic_path

    try:
        with atomic_path(path) as tmp:
            fig.savefig(str(tmp), format="png")
    finally:
        plt.close(fig)
    return path
