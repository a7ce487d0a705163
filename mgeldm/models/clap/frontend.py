"""CLAP audio front end: waveform -> log-mel (dB), then the fixed-size Swin image.

The STFT is a strided conv1d with the DFT kernels stored in the checkpoint (periodic Hann already
applied), the mel matrix is the stored Slaney filter bank. Using the stored values reproduces
laion_clap's float32 numbers; a fresh torch.stft drifts by ~0.3 dB in very quiet bins.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# power_to_db floor (10*log10(1e-10) = -100 dB) and reference (1.0 -> 0 dB offset), as in torchlibrosa.
_AMIN = 1e-10


class LogMelFrontend(nn.Module):
    """(B, L) waveform -> (B, 1, frames, mel_bins) log-mel in dB. Always computes in float32."""

    def __init__(self, n_fft: int, hop_size: int, mel_bins: int) -> None:
        super().__init__()
        n_freq = n_fft // 2 + 1
        self.n_fft = n_fft
        self.hop_size = hop_size
        # Filled from the checkpoint (audio_branch.spectrogram_extractor.stft.conv_*, logmel_extractor.melW).
        self.register_buffer("conv_real", torch.zeros(n_freq, 1, n_fft))
        self.register_buffer("conv_imag", torch.zeros(n_freq, 1, n_fft))
        self.register_buffer("melW", torch.zeros(n_freq, mel_bins))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        x = waveform.float()[:, None, :]
        pad = self.n_fft // 2
        x = F.pad(x, (pad, pad), mode="reflect")
        real = F.conv1d(x, self.conv_real.float(), stride=self.hop_size)
        imag = F.conv1d(x, self.conv_imag.float(), stride=self.hop_size)
        power = (real**2 + imag**2).transpose(1, 2)  # (B, frames, n_freq)
        mel = torch.matmul(power, self.melW.float())
        return (10.0 * torch.log10(torch.clamp(mel, min=_AMIN)))[:, None]
