"""Audio embedders for Fréchet distances: one small interface, three implementations.

* ``vggish``: the VGGish network (Hershey et al. 2017), written here in torch, loaded from a LOCAL
  state-dict file (keys as the common torch port: ``features.{0,3,6,8,11,13}``, ``embeddings.{0,2,4}``;
  PCA post-processing keys, if present, are ignored). Never downloaded: a missing file is a UserError.
  Input: 16 kHz mono, 0.96 s examples of 96 frames x 64 log-mel bands (25 ms window, 10 ms hop,
  125-7500 Hz, log(mel + 0.01)); output one 128-d vector per example.
* ``clap``: audio embeddings of the CLAP conditioner (``mgeldm.models.conditioners``), one 512-d vector
  per segment.
* ``melstats``: a cheap deterministic offline embedder for tests and smoke runs: per segment, the mean
  and standard deviation over frames of each log-mel band.

Every embedder maps mono audio (L,) at any rate to (M, dim) float32 numpy embeddings, M >= 1 segments.
"""

from __future__ import annotations

import os
from typing import Mapping, Protocol

import numpy as np
import torch
from torch import nn

from mgeldm.audio import SAMPLE_RATE, resample
from mgeldm.errors import UserError
from mgeldm.metrics.logmel import LogMelConfig, log_mel, mel_filterbank

VGGISH_RATE = 16000  # VGGish's own input rate (its front end is defined at 16 kHz)


class Embedder(Protocol):
    name: str
    sample_rate: int
    dim: int

    def embed(self, audio: torch.Tensor, sample_rate: int) -> np.ndarray: ...


def _segments(audio: torch.Tensor, length: int) -> torch.Tensor:
    """(L,) -> (M, length): consecutive segments; a short signal is zero-padded to one segment."""
    if audio.numel() < length:
        audio = torch.nn.functional.pad(audio, (0, length - audio.numel()))
    m = audio.numel() // length
    return audio[: m * length].reshape(m, length)


# --------------------------------------------------------------------------------------------- VGGish
class VGGishNet(nn.Module):
    """VGG-style convolutional net over (N, 1, 96, 64) log-mel patches -> (N, 128)."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for item in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M"):
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c_in, int(item), 3, padding=1), nn.ReLU(inplace=True)]
                c_in = int(item)
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(
            nn.Linear(512 * 4 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, 128),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (N, 512, 6, 4)
        x = x.permute(0, 2, 3, 1).contiguous()  # channels last, as the TensorFlow original flattens
        return self.embeddings(x.flatten(1))


def vggish_log_mel(audio16k: torch.Tensor) -> torch.Tensor:
    """(L,) 16 kHz -> (M, 1, 96, 64) examples of 0.96 s (no overlap), as VGGish's front end."""
    win, hop, n_fft = 400, 160, 512
    if audio16k.numel() < win + 95 * hop:
        audio16k = torch.nn.functional.pad(audio16k, (0, win + 95 * hop - audio16k.numel()))
    frames = audio16k.float().unfold(0, win, hop) * torch.hann_window(win, periodic=True)
    spec = torch.fft.rfft(frames, n=n_fft).abs()  # (F, 257)
    mel = spec @ mel_filterbank(VGGISH_RATE, n_fft, 64, 125.0, 7500.0).T  # (F, 64)
    logmel = torch.log(mel + 0.01)
    m = logmel.shape[0] // 96
    return logmel[: m * 96].reshape(m, 1, 96, 64)


class VGGishEmbedder:
    name = "vggish"
    sample_rate = VGGISH_RATE
    dim = 128

    def __init__(self, weights_path: str | None, *, device: str = "cpu") -> None:
        if not weights_path or not os.path.isfile(str(weights_path)):
            raise UserError(
                f"VGGish weights file {weights_path!r} not found: give a local torch state-dict "
                "with +vggish_weights=PATH (nothing is downloaded)"
            )
        from mgeldm.checkpoints import load_weights, read_state_dict  # .safetensors or torch files

        sd = {k: v for k, v in read_state_dict(weights_path).items() if not k.startswith("pproc")}
        self.net = VGGishNet().eval()
        load_weights(self.net, sd, what="the VGGish network (features.*, embeddings.*)", path=weights_path)
        self.net.to(device)
        self.device = device

    @torch.no_grad()
    def embed(self, audio: torch.Tensor, sample_rate: int) -> np.ndarray:
        x = vggish_log_mel(resample(audio.reshape(-1).float(), sample_rate, VGGISH_RATE)).to(self.device)
        return self.net(x).cpu().numpy().astype(np.float32)


# ----------------------------------------------------------------------------------------------- CLAP
class ClapEmbedder:
    name = "clap"
    dim = 512

    def __init__(self, node: Mapping, *, segment_seconds: float = 10.0, device: str = "cpu") -> None:
        from mgeldm.models.conditioners import build_conditioner

        self.conditioner = build_conditioner(node, device=device)
        self.sample_rate = int(self.conditioner.sample_rate or 48000)
        self.dim = int(self.conditioner.dim)
        self.segment_seconds = segment_seconds

    @torch.no_grad()
    def embed(self, audio: torch.Tensor, sample_rate: int) -> np.ndarray:
        x = resample(audio.reshape(-1).float(), sample_rate, self.sample_rate)
        segs = _segments(x, int(self.segment_seconds * self.sample_rate))
        return self.conditioner.embed_audio(segs, self.sample_rate).float().cpu().numpy()


# ------------------------------------------------------------------------------------------ mel stats
class MelStatsEmbedder:
    """Mean and std of each of 32 log-mel bands over 1 s segments: 64-d, deterministic, offline."""

    name = "melstats"
    sample_rate = SAMPLE_RATE

    def __init__(self, *, n_mels: int = 32, segment_seconds: float = 1.0) -> None:
        self.cfg = LogMelConfig(
            sample_rate=self.sample_rate, n_fft=512, hop_length=160, win_length=400, n_mels=n_mels, f_min=30.0
        )
        self.dim = 2 * n_mels
        self.segment = int(segment_seconds * self.sample_rate)

    @torch.no_grad()
    def embed(self, audio: torch.Tensor, sample_rate: int) -> np.ndarray:
        segs = _segments(resample(audio.reshape(-1).float(), sample_rate, self.sample_rate), self.segment)
        lm = log_mel(segs, self.cfg)  # (M, n_mels, frames)
        return torch.cat([lm.mean(-1), lm.std(-1)], dim=-1).numpy().astype(np.float32)


def build_fad_embedder(name: str, options: Mapping | None = None) -> Embedder:
    """name: vggish (options: weights), clap (options: conditioner node), melstats."""
    options = dict(options or {})
    if name == "vggish":
        return VGGishEmbedder(options.get("weights"), device=options.get("device", "cpu"))
    if name == "clap":
        node = options.get("conditioner")
        if not node:
            raise UserError(
                "FAD embedder clap: give the conditioner node (+fad.clap_conditioner=... or "
                "the configs/model/conditioner/laion_clap.yaml block)"
            )
        return ClapEmbedder(node, device=options.get("device", "cpu"))
    if name == "melstats":
        return MelStatsEmbedder()
    raise UserError(f"FAD embedder {name!r}: expected one of vggish, clap, melstats")
