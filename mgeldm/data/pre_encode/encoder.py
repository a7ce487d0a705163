"""The encoder: waveforms -> VAE-mean latents (in chunks for long songs), the zero latent, and per-second
embeddings (audio windows, or the text of the labels)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mgeldm.audio import resample
from mgeldm.data.corpora.base import BrokenSong
from mgeldm.data.pre_encode.settings import PAD_MODES, EncodeSettings
from mgeldm.errors import UserError

ZERO_LATENT_SECONDS = 20.0
ZERO_LATENT_FRAME = 100
ZERO_LATENT_FRAMES = 156


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
            raise UserError(
                "embedder: this embedder is text-only (no sample_rate, no audio embeddings); "
                "set pre_encode.clap_from=labels or use an audio embedder such as laion_clap"
            )

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
                batch = x[start : start + self.settings.batch_size, None].to(self.device)
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
            z = self.ae.encode_audio(x[..., start * r : (start + size) * r], sample=False)
            w = torch.ones(size, device=x.device)
            if start > 0:
                w[:overlap] = ramp
            if start + size < frames:
                w[-overlap:] = ramp.flip(0)
            if out is None:
                out = z.new_zeros(*z.shape[:-1], frames)
                weight = z.new_zeros(frames)
            out[..., start : start + size] += z * w
            weight[start : start + size] += w
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
            return [wave[i * hop : i * hop + win] for i in range(n_sec)]
        return [pad_clip(wave[:win], win, s.short_clip_pad)]

    def embeddings(self, waves: torch.Tensor, sample_rate: int) -> np.ndarray:
        """``(N, L)`` -> ``(N, D, N_sec)`` float32."""
        x = resample(waves.float(), sample_rate, self.clap_sr)
        per_signal = [self.windows(x[i]) for i in range(x.shape[0])]
        flat = [w for ws in per_signal for w in ws]
        out = []
        with torch.no_grad():
            for start in range(0, len(flat), self.settings.clap_batch_size):
                batch = torch.stack(flat[start : start + self.settings.clap_batch_size]).to(self.device)
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
