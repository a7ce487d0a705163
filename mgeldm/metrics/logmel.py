"""Log-Mel L1 distance between two signals, with every spectrogram parameter stated in one place.

Defaults (at the evaluation rate, 16 kHz): STFT n_fft 1024, hop 256, periodic Hann window of 1024,
centred with reflect padding; magnitude (power 1); 80 triangular HTK-scale mel bands from 0 Hz to
sr/2 without area normalisation; log10 of max(mel, floor). The distance is the mean absolute difference
over bands and frames. Because of the floor, silence has a finite distance.

The floor (:func:`excerpt_floor`) is relative to the excerpt being scored: 60 dB
(``floor_db_below_mix_peak``) under the largest mel value of the excerpt's *mixture*, and never under the
absolute floor 1e-5 (``floor``). The estimate, the reference and the mixture of one excerpt share that floor,
so a decoded stem's faint noise floor in the true stem's digital silence costs nothing a listener would hear,
and the score does not change when the whole excerpt is scaled. Without a mixture the reference stands in for
it (60 dB under the reference's own peak). ``floor_db_below_mix_peak=None`` keeps the absolute floor alone:
the figures named with :data:`ABSFLOOR` (``logmel_l1_absfloor``, ...) are computed so, beside the others.

The ratio to the mixture (:func:`logmel_l1_ratio_vs_mix`) scores an extracted stem against doing nothing: the
mixture itself scores 1, lower is better.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, replace
from typing import Mapping

import torch

from mgeldm.audio import SAMPLE_RATE

RATIO_FLOOR = 1e-12
ABSFLOOR = "_absfloor"  # the suffix of a figure computed with the absolute floor alone


@dataclass(frozen=True)
class LogMelConfig:
    sample_rate: int = SAMPLE_RATE
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = None  # None: sample_rate / 2
    power: float = 1.0
    floor: float = 1e-5  # the absolute floor: log10(max(mel, floor))
    # the excerpt's floor: this many dB under its mixture's mel peak (never under ``floor``); None: ``floor`` alone
    floor_db_below_mix_peak: float | None = 60.0

    @classmethod
    def from_mapping(cls, m: Mapping | None, **override) -> "LogMelConfig":
        d = {k: v for k, v in dict(m or {}).items() if k in cls.__dataclass_fields__}
        d.update(override)
        return cls(**d)

    def as_dict(self) -> dict:
        return asdict(self)

    def absolute(self) -> "LogMelConfig":
        """The same front end with the absolute floor alone (the ``_absfloor`` figures)."""
        return replace(self, floor_db_below_mix_peak=None)


def hz_to_mel(f: torch.Tensor) -> torch.Tensor:
    """HTK mel scale."""
    return 2595.0 * torch.log10(1.0 + f / 700.0)


def mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10 ** (m / 2595.0) - 1.0)


@functools.lru_cache(maxsize=16)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> torch.Tensor:
    """Triangular filters on the HTK mel scale, (n_mels, n_fft // 2 + 1), peak value 1."""
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    edges = mel_to_hz(
        torch.linspace(
            float(hz_to_mel(torch.tensor(f_min))),
            float(hz_to_mel(torch.tensor(f_max))),
            n_mels + 2,
            dtype=torch.float64,
        )
    )
    lower, center, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lower) / (center - lower)
    down = (upper - freqs[None]) / (upper - center)
    return torch.clamp(torch.minimum(up, down), min=0.0).float()


def mel_magnitudes(audio: torch.Tensor, cfg: LogMelConfig = LogMelConfig()) -> torch.Tensor:
    """(..., T) float audio -> (..., n_mels, frames) mel spectrogram (linear, ``power`` of the STFT magnitude)."""
    shape = audio.shape[:-1]
    x = audio.reshape(-1, audio.shape[-1]).float()
    window = torch.hann_window(cfg.win_length, periodic=True, device=x.device)
    spec = torch.stft(
        x,
        cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.win_length,
        window=window,
        center=True,
        pad_mode="reflect",
        return_complex=True,
    ).abs()
    if cfg.power != 1.0:
        spec = spec**cfg.power
    fb = mel_filterbank(
        cfg.sample_rate,
        cfg.n_fft,
        cfg.n_mels,
        float(cfg.f_min),
        float(cfg.f_max if cfg.f_max is not None else cfg.sample_rate / 2),
    ).to(x.device)
    mel = torch.einsum("mf,bft->bmt", fb, spec)
    return mel.reshape(*shape, *mel.shape[-2:])


def excerpt_floor(mixture_mel: torch.Tensor, cfg: LogMelConfig = LogMelConfig()) -> torch.Tensor:
    """The floor of each excerpt, (..., 1, 1), from the mel spectrogram (..., n_mels, frames) of its mixture:
    ``max(mixture mel) * 10 ** (-floor_db_below_mix_peak / 20)``, never under ``cfg.floor`` (a silent mixture);
    ``cfg.floor`` alone when ``floor_db_below_mix_peak`` is None."""
    absolute = torch.full((*mixture_mel.shape[:-2], 1, 1), float(cfg.floor), device=mixture_mel.device)
    if cfg.floor_db_below_mix_peak is None:
        return absolute
    peak = mixture_mel.float().amax(dim=(-2, -1), keepdim=True)
    return torch.maximum(peak * 10 ** (-float(cfg.floor_db_below_mix_peak) / 20), absolute)


def floored_log(mel: torch.Tensor, floor: torch.Tensor | float) -> torch.Tensor:
    """log10(max(mel, floor)); ``floor`` a number or a tensor broadcast over the spectrogram."""
    return torch.log10(torch.maximum(mel, torch.as_tensor(floor, dtype=mel.dtype, device=mel.device)))


def log_mel(
    audio: torch.Tensor, cfg: LogMelConfig = LogMelConfig(), floor: torch.Tensor | float | None = None
) -> torch.Tensor:
    """(..., T) float audio -> (..., n_mels, frames) log10 mel spectrogram, floored at ``floor`` (an excerpt's,
    :func:`excerpt_floor`) or, when None, at the absolute ``cfg.floor`` (a signal alone knows no excerpt)."""
    return floored_log(mel_magnitudes(audio, cfg), cfg.floor if floor is None else floor)


def mel_l1(estimate_mel: torch.Tensor, reference_mel: torch.Tensor, floor: torch.Tensor | float) -> torch.Tensor:
    """The Log-Mel L1 of two mel spectrograms (:func:`mel_magnitudes`) floored at ``floor``: the mean absolute
    difference of their log10 over bands and frames, (..., n_mels, frames) -> (...)."""
    return (floored_log(estimate_mel, floor) - floored_log(reference_mel, floor)).abs().mean(dim=(-2, -1))


def logmel_l1(
    estimate: torch.Tensor,
    reference: torch.Tensor,
    cfg: LogMelConfig = LogMelConfig(),
    mixture: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean |log_mel(estimate) - log_mel(reference)| over bands and frames; (..., T) -> (...).

    Both are floored at the excerpt's floor: that of ``mixture`` (same shape), else of ``reference``."""
    if estimate.shape != reference.shape:
        raise ValueError(f"logmel_l1: shapes differ {tuple(estimate.shape)} vs {tuple(reference.shape)}")
    ref = mel_magnitudes(reference, cfg)
    floor = excerpt_floor(ref if mixture is None else mel_magnitudes(mixture, cfg), cfg)
    return mel_l1(mel_magnitudes(estimate, cfg), ref, floor)


def ratio_to_baseline(distance: float, baseline_distance: float) -> float:
    """A distance relative to a baseline's distance to the same reference (the mixture's, silence's: 1 = no better
    than the baseline); a baseline at distance 0 (a mixture that is the reference itself) gives a finite ratio."""
    return float(distance) / max(float(baseline_distance), RATIO_FLOOR)


def logmel_l1_ratio_vs_mix(
    estimate: torch.Tensor, reference: torch.Tensor, mixture: torch.Tensor, cfg: LogMelConfig = LogMelConfig()
) -> float:
    """Log-Mel L1(estimate, reference) / Log-Mel L1(mixture, reference), the three trimmed to the shortest and
    floored at the mixture's floor."""
    n = min(estimate.shape[-1], reference.shape[-1], mixture.shape[-1])
    ref, mix = reference[..., :n], mixture[..., :n]
    return ratio_to_baseline(float(logmel_l1(estimate[..., :n], ref, cfg, mix)), float(logmel_l1(mix, ref, cfg, mix)))
