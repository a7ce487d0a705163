"""EnCodec-style multi-scale STFT discriminator and its hinge / feature-matching losses
(docs/compatibility.md#autoencoder-training).

Key names follow the original (``discriminators.{i}.convs.{j}.conv.weight_g`` ...), so an original
AE training checkpoint's discriminator could be loaded. The spectrogram is the torchaudio
``Spectrogram(normalized=True, center=False, power=None)`` the original calls: the complex STFT
divided by sqrt(Σ window²). Everything runs in fp32 with autocast off.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _weight_norm(module: nn.Module) -> nn.Module:
    # Legacy weight_norm keeps the original's `weight_g` / `weight_v` key names.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.nn.utils.weight_norm(module)


def _same_padding(kernel: tuple[int, int], dilation: tuple[int, int] = (1, 1)) -> tuple[int, int]:
    return ((kernel[0] - 1) * dilation[0] // 2, (kernel[1] - 1) * dilation[1] // 2)


class NormConv2d(nn.Module):
    """A Conv2d held as ``.conv`` (the original's wrapper), optionally weight-normed."""

    def __init__(self, *args, weight_norm: bool = True, **kwargs) -> None:
        super().__init__()
        conv = nn.Conv2d(*args, **kwargs)
        self.conv = _weight_norm(conv) if weight_norm else conv

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class STFTDiscriminator(nn.Module):
    """One scale: complex STFT → (B, 2C, frames, freq) → 5 convs (+LeakyReLU) → conv_post logits."""

    def __init__(
        self,
        n_fft: int,
        hop_length: int,
        win_length: int,
        *,
        filters: int = 64,
        in_channels: int = 1,
        out_channels: int = 1,
        kernel_size: tuple[int, int] = (3, 9),
        dilations: Sequence[int] = (1, 2, 4),
        stride: tuple[int, int] = (1, 2),
        filters_scale: int = 1,
        max_filters: int = 1024,
        negative_slope: float = 0.2,
    ) -> None:
        super().__init__()
        self.n_fft, self.hop_length, self.win_length = int(n_fft), int(hop_length), int(win_length)
        self.negative_slope = negative_slope
        self.register_buffer("window", torch.hann_window(self.win_length), persistent=False)
        kernel_size = tuple(kernel_size)
        spec_channels = 2 * in_channels
        # conv0 has no weight norm in the original (docs/compatibility.md#autoencoder-training).
        convs = [NormConv2d(spec_channels, filters, kernel_size, padding=_same_padding(kernel_size), weight_norm=False)]
        in_chs = filters
        for i, d in enumerate(dilations):
            out_chs = min(filters_scale ** (i + 1) * filters, max_filters)
            convs.append(
                NormConv2d(
                    in_chs,
                    out_chs,
                    kernel_size,
                    stride=stride,
                    dilation=(d, 1),
                    padding=_same_padding(kernel_size, (d, 1)),
                )
            )
            in_chs = out_chs
        out_chs = min(filters_scale ** (len(dilations) + 1) * filters, max_filters)
        square = (kernel_size[0], kernel_size[0])
        convs.append(NormConv2d(in_chs, out_chs, square, padding=_same_padding(square)))
        self.convs = nn.ModuleList(convs)
        self.conv_post = NormConv2d(out_chs, out_channels, square, padding=_same_padding(square))

    def spectrogram(self, x: Tensor) -> Tensor:
        """(B, C, L) → (B, 2C, frames, freq): [real ‖ imag], window-normalised like torchaudio."""
        b, c, n = x.shape
        spec = torch.stft(
            x.reshape(b * c, n),
            self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window.to(x),
            center=False,
            normalized=False,
            return_complex=True,
        )
        spec = spec / self.window.to(x).square().sum().sqrt()
        spec = spec.reshape(b, c, *spec.shape[-2:])
        z = torch.cat([spec.real, spec.imag], dim=1)  # (B, 2C, freq, frames)
        return z.transpose(-1, -2)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        z = self.spectrogram(x)
        fmap = []
        for layer in self.convs:
            z = F.leaky_relu(layer(z), self.negative_slope)
            fmap.append(z)
        return self.conv_post(z), fmap


class MultiScaleSTFTDiscriminator(nn.Module):
    """Five STFT discriminators (n_fft 2048 … 128 by default); fp32, autocast off."""

    def __init__(
        self,
        n_ffts: Sequence[int] = (2048, 1024, 512, 256, 128),
        hop_lengths: Sequence[int] = (512, 256, 128, 64, 32),
        win_lengths: Sequence[int] | None = None,
        *,
        filters: int = 64,
        in_channels: int = 1,
        out_channels: int = 1,
        **kwargs,
    ) -> None:
        super().__init__()
        win_lengths = list(n_ffts) if win_lengths is None else list(win_lengths)
        if not len(n_ffts) == len(hop_lengths) == len(win_lengths):
            raise ValueError("n_ffts, hop_lengths and win_lengths must have the same length")
        self.discriminators = nn.ModuleList(
            STFTDiscriminator(n, h, w, filters=filters, in_channels=in_channels, out_channels=out_channels, **kwargs)
            for n, h, w in zip(n_ffts, hop_lengths, win_lengths)
        )

    def forward(self, x: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            logits, fmaps = [], []
            for disc in self.discriminators:
                logit, fmap = disc(x)
                logits.append(logit)
                fmaps.append(fmap)
            return logits, fmaps

    def loss(self, reals: Tensor, fakes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(L_D, L_adv, feature matching), each summed over the scales (docs/compatibility.md#autoencoder-training)."""
        logits_real, fmaps_real = self(reals)
        logits_fake, fmaps_fake = self(fakes)
        return hinge_losses(logits_real, logits_fake, fmaps_real, fmaps_fake)


def hinge_losses(
    logits_real: Sequence[Tensor],
    logits_fake: Sequence[Tensor],
    fmaps_real: Sequence[Sequence[Tensor]],
    fmaps_fake: Sequence[Sequence[Tensor]],
) -> tuple[Tensor, Tensor, Tensor]:
    """L_D = Σ mean relu(1 − D(x)) + mean relu(1 + D(x̂)); L_adv = Σ −mean D(x̂);
    FM = Σ_scales (1/n_layers) Σ_layers mean |f(x) − f(x̂)|."""
    dis = adv = fm = logits_real[0].new_zeros(())
    for lr, lf, fr, ff in zip(logits_real, logits_fake, fmaps_real, fmaps_fake):
        dis = dis + F.relu(1 - lr).mean() + F.relu(1 + lf).mean()
        adv = adv - lf.mean()
        fm = fm + sum((a - b).abs().mean() for a, b in zip(fr, ff)) / len(fr)
    return dis, adv, fm
