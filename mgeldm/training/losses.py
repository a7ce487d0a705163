"""Training losses (docs/compatibility.md#autoencoder-training, docs/compatibility.md#dit-training): multi-resolution
STFT, KL weighting and the masked v-loss.

The STFT losses run in fp32 with autocast off: ``torch.stft`` rejects half precision, and the
log-magnitude term is poorly conditioned in bf16 anyway.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mgeldm.audio import SAMPLE_RATE

# docs/compatibility.md#autoencoder-training: seven resolutions, window = FFT size.
DEFAULT_FFT_SIZES = (2048, 1024, 512, 256, 128, 64, 32)
DEFAULT_HOP_SIZES = (512, 256, 128, 64, 32, 16, 8)


def a_weighting_fir(sample_rate: int = SAMPLE_RATE, ntaps: int = 101) -> nn.Module:
    """The fixed A-weighting FIR pre-filter of docs/compatibility.md#autoencoder-training (auraloss'
    ``FIRFilter(filter_type="aw")``).

    auraloss designs exactly what docs/compatibility.md#autoencoder-training describes (IEC analog filter, bilinear
    transform,
    512-point ``freqz``, least-squares ``firls``); tests/training/test_losses.py checks it.
    """
    from auraloss.perceptual import FIRFilter

    return FIRFilter(filter_type="aw", fs=sample_rate, ntaps=ntaps)


def stft_magnitude(x: Tensor, n_fft: int, hop: int, win_length: int, eps: float = 1e-8) -> Tensor:
    """|STFT| as sqrt(max(re² + im², eps)) with torch.stft defaults (center, reflect, not normalised).

    ``x`` is (N, L); returns (N, n_fft // 2 + 1, frames).
    """
    window = torch.hann_window(win_length, device=x.device, dtype=x.dtype)
    spec = torch.stft(x, n_fft, hop_length=hop, win_length=win_length, window=window, return_complex=True)
    return torch.sqrt(torch.clamp(spec.real.square() + spec.imag.square(), min=eps))


def spectral_convergence(x_mag: Tensor, y_mag: Tensor) -> Tensor:
    """Per-example ‖Y − X‖_F / ‖Y‖_F, averaged over the batch (dim 0). Y is the reference."""
    dims = tuple(range(1, y_mag.dim()))
    num = torch.linalg.vector_norm(y_mag - x_mag, dim=dims)
    den = torch.linalg.vector_norm(y_mag, dim=dims)
    return (num / den).mean()


class MultiResolutionSTFTLoss(nn.Module):
    """Σ_resolutions [SC + mean |log X − log Y|] / n_resolutions, on A-weighted signals
    (docs/compatibility.md#autoencoder-training).

    Called as ``loss(input, target)``; the AE module passes (reals, decoded), as the original does,
    so the SC denominator is the decoded spectrum.
    """

    def __init__(
        self,
        fft_sizes: Sequence[int] = DEFAULT_FFT_SIZES,
        hop_sizes: Sequence[int] = DEFAULT_HOP_SIZES,
        win_lengths: Sequence[int] | None = None,
        *,
        sample_rate: int = SAMPLE_RATE,
        perceptual_weighting: bool = True,
        w_sc: float = 1.0,
        w_log_mag: float = 1.0,
        eps: float = 1e-8,
    ) -> None:
        super().__init__()
        win_lengths = list(fft_sizes) if win_lengths is None else list(win_lengths)
        if not len(fft_sizes) == len(hop_sizes) == len(win_lengths):
            raise ValueError("fft_sizes, hop_sizes and win_lengths must have the same length")
        self.resolutions = list(zip(map(int, fft_sizes), map(int, hop_sizes), map(int, win_lengths)))
        self.fir = a_weighting_fir(sample_rate) if perceptual_weighting else None
        self.w_sc, self.w_log_mag, self.eps = float(w_sc), float(w_log_mag), float(eps)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: A002 (auraloss naming)
        with torch.autocast(device_type=input.device.type, enabled=False):
            x, y = input.float(), target.float()
            batch = x.shape[0]
            x = x.reshape(-1, 1, x.shape[-1])
            y = y.reshape(-1, 1, y.shape[-1])
            if self.fir is not None:
                taps = self.fir.fir.weight.to(device=x.device, dtype=torch.float32)
                pad = taps.shape[-1] // 2
                x, y = F.conv1d(x, taps, padding=pad), F.conv1d(y, taps, padding=pad)
            x, y = x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])
            total = x.new_zeros(())
            for n_fft, hop, win in self.resolutions:
                x_mag = stft_magnitude(x, n_fft, hop, win, self.eps)
                y_mag = stft_magnitude(y, n_fft, hop, win, self.eps)
                # group channels back per example so SC is per example (docs/compatibility.md#autoencoder-training)
                x_mag = x_mag.reshape(batch, -1, *x_mag.shape[-2:])
                y_mag = y_mag.reshape(batch, -1, *y_mag.shape[-2:])
                total = total + self.w_sc * spectral_convergence(x_mag, y_mag)
                total = total + self.w_log_mag * F.l1_loss(torch.log(x_mag), torch.log(y_mag))
            return total / len(self.resolutions)


def masked_mse(pred: Tensor, target: Tensor, track_mask: Tensor, num_tracks: int) -> Tensor:
    """docs/compatibility.md#dit-training: Σ M·(v̂ − v)² / (ΣM + 1e-8) / T, i.e. the mean over the un-masked elements.

    ``pred``/``target`` are (B, K·C, T); ``track_mask`` is (B, K) with 1 where the track is trained.
    """
    b, kc, t = pred.shape
    m = track_mask.to(torch.float32).repeat_interleave(kc // num_tracks, dim=1).unsqueeze(-1)  # (B, K·C, 1)
    err = (pred.float() - target.float()).square()
    return (err * m).sum() / (m.sum() + 1e-8) / t


def per_track_mse(pred: Tensor, target: Tensor, track_mask: Tensor, num_tracks: int) -> Tensor:
    """Mean squared error of each track over the samples where it is trained, (K,); NaN if none (logging)."""
    b, kc, t = pred.shape
    err = (pred.detach().float() - target.float()).square().reshape(b, num_tracks, -1).mean(-1)  # (B, K)
    m = track_mask.to(torch.float32)
    return (err * m).sum(0) / m.sum(0)
