"""Log-Mel L1 distance between two signals, with every spectrogram parameter stated in one place.

Defaults (at the evaluation rate, 16 kHz): STFT n_fft 1024, hop 256, periodic Hann window of 1024,
centred with reflect padding; magnitude (power 1); 80 triangular HTK-scale mel bands from 0 Hz to
sr/2 without area normalisation; log10 of max(mel, floor) with floor 1e-5. The distance is the mean
absolute difference over bands and frames. Because of the floor, silence has a finite distance.

The ratio to the mixture (:func:`logmel_l1_ratio_vs_mix`) scores an extracted stem against doing nothing: the
mixture itself scores 1, lower is better.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, asdict
from typing import Mapping

import torch

from mgeldm.audio import SAMPLE_RATE

RATIO_FLOOR = 1e-12


@dataclass(frozen=True)
class LogMelConfig:
    sample_rate: int = SAMPLE_RATE
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = None      # None: sample_rate / 2
    power: float = 1.0
    floor: float = 1e-5

    @classmethod
    def from_mapping(cls, m: Mapping | None, **override) -> "LogMelConfig":
        d = {k: v for k, v in dict(m or {}).items() if k in cls.__dataclass_fields__}
        d.update(override)
        return cls(**d)

    def as_dict(self) -> dict:
        return asdict(self)


def hz_to_mel(f: torch.Tensor) -> torch.Tensor:
    """HTK mel scale."""
    return 2595.0 * torch.log10(1.0 + f / 700.0)


def mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10 ** (m / 2595.0) - 1.0)


@functools.lru_cache(maxsize=16)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> torch.Tensor:
    """Triangular filters on the HTK mel scale, (n_mels, n_fft // 2 + 1), peak value 1."""
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    edges = mel_to_hz(torch.linspace(float(hz_to_mel(torch.tensor(f_min))),
                                     float(hz_to_mel(torch.tensor(f_max))), n_mels + 2, dtype=torch.float64))
    lower, center, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lower) / (center - lower)
    down = (upper - freqs[None]) / (upper - center)
    return torch.clamp(torch.minimum(up, down), min=0.0).float()


def log_mel(audio: torch.Tensor, cfg: LogMelConfig = LogMelConfig()) -> torch.Tensor:
    """(..., T) float audio -> (..., n_mels, frames) log10 mel spectrogram."""
    shape = audio.shape[:-1]
    x = audio.reshape(-1, audio.shape[-1]).float()
    window = torch.hann_window(cfg.win_length, periodic=True, device=x.device)
    spec = torch.stft(x, cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length, window=window,
                      center=True, pad_mode="reflect", return_complex=True).abs()
    if cfg.power != 1.0:
        spec = spec ** cfg.power
    fb = mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, float(cfg.f_min),
                        float(cfg.f_max if cfg.f_max is not None else cfg.sample_rate / 2)).to(x.device)
    mel = torch.einsum("mf,bft->bmt", fb, spec)
    out = torch.log10(mel.clamp_min(cfg.floor))
    return out.reshape(*shape, *out.shape[-2:])


def logmel_l1(estimate: torch.Tensor, reference: torch.Tensor, cfg: LogMelConfig = LogMelConfig()) -> torch.Tensor:
    """Mean |log_mel(estimate) - log_mel(reference)| over bands and frames; (..., T) -> (...)."""
    if estimate.shape != reference.shape:
        raise ValueError(f"logmel_l1: shapes differ {tuple(estimate.shape)} vs {tuple(reference.shape)}")
    return (log_mel(estimate, cfg) - log_mel(reference, cfg)).abs().mean(dim=(-2, -1))


def ratio_to_baseline(distance: float, baseline_distance: float) -> float:
    """A distance relative to a baseline's distance to the same reference (the mixture's, silence's: 1 = no better
    than the baseline); a baseline at distance 0 (a mixture that is the reference itself) gives a finite ratio."""
    return float(distance) / max(float(baseline_distance), RATIO_FLOOR)


def logmel_l1_ratio_vs_mix(estimate: torch.Tensor, reference: torch.Tensor, mixture: torch.Tensor,
                           cfg: LogMelConfig = LogMelConfig()) -> float:
    """Log-Mel L1(estimate, reference) / Log-Mel L1(mixture, reference), the three trimmed to the shortest."""
    n = min(estimate.shape[-1], reference.shape[-1], mixture.shape[-1])
    ref = reference[..., :n]
    return ratio_to_baseline(float(logmel_l1(estimate[..., :n], ref, cfg)), float(logmel_l1(mixture[..., :n], ref, cfg)))
