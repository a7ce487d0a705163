"""LaionClap: text and audio embeddings of LAION's music CLAP, as the DiT conditioning expects them.

Audio follows laion_clap's non-fusion rules at 48 kHz: a clip shorter than ``clip_samples`` is tiled
``floor(clip/len)`` whole times and zero-padded ("repeatpad"), a longer one is cropped to a random
window ("rand_trunc") whose start comes from the ``generator`` (or a generator seeded with
``crop_seed`` when none is given, so the same input always gives the same embedding).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import torch

from mgeldm.errors import UserError
from mgeldm.models.clap.config import ClapSizes
from mgeldm.models.clap.loader import load_clap
from mgeldm.models.clap.model import ClapModel
from mgeldm.models.clap.tokenizer import ClapTokenizer
from mgeldm.models.conditioners import PromptEmbeddingCache


def resample(audio: torch.Tensor, from_rate: int, to_rate: int, quality: str = "VHQ") -> torch.Tensor:
    """(N, L) -> (N, L') with soxr (on the CPU; returns float32 on the input's device)."""
    if int(from_rate) == int(to_rate):
        return audio
    import soxr

    x = audio.detach().to("cpu", torch.float32).numpy().T  # soxr wants (frames, channels)
    y = soxr.resample(np.ascontiguousarray(x), int(from_rate), int(to_rate), quality=quality)
    return torch.from_numpy(np.ascontiguousarray(y.T)).to(audio.device)


def fit_to_clip(audio: torch.Tensor, clip_samples: int, generator: torch.Generator) -> torch.Tensor:
    """(N, L) -> (N, clip_samples) by laion_clap's non-fusion rules (repeatpad / rand_trunc)."""
    n, length = audio.shape
    if length == clip_samples:
        return audio
    if length < clip_samples:
        tiled = audio.repeat(1, clip_samples // length)
        return torch.nn.functional.pad(tiled, (0, clip_samples - tiled.shape[1]))
    starts = torch.randint(0, length - clip_samples + 1, (n,), generator=generator, device=generator.device)
    return torch.stack([audio[i, s : s + clip_samples] for i, s in enumerate(starts.tolist())])


def as_mono_batch(audio: torch.Tensor | np.ndarray) -> torch.Tensor:
    """(L,) -> (1, L); (N, L) stays; (N, C, L) is down-mixed to (N, L) by the channel mean."""
    x = torch.as_tensor(audio)
    if not x.is_floating_point():
        raise TypeError(f"CLAP audio must be a float waveform, got dtype {x.dtype}")
    if x.dim() == 1:
        x = x[None]
    elif x.dim() == 3:
        x = x.mean(dim=1)
    elif x.dim() != 2:
        raise ValueError(f"CLAP audio must be (L,), (N, L) or (N, C, L), got shape {tuple(x.shape)}")
    if x.shape[-1] == 0 or x.shape[0] == 0:
        raise ValueError(f"CLAP audio is empty (shape {tuple(x.shape)})")
    return x


class LaionClap:
    """LAION-CLAP (HTSAT + RoBERTa, no fusion) as a conditioner: 512-d L2-normalised embeddings.

    Not an nn.Module on purpose: it is frozen and must not appear in the DiT's state_dict.
    Embeddings are returned as float32 on the model's device, whatever dtype the model runs in.
    """

    def __init__(
        self,
        model: ClapModel,
        tokenizer: ClapTokenizer,
        *,
        audio_batch_size: int = 8,
        text_cache_size: int = 4096,
        crop_seed: int = 0,
        resample_quality: str = "VHQ",
    ) -> None:
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.audio_batch_size = int(audio_batch_size)
        self.crop_seed = int(crop_seed)
        self.resample_quality = resample_quality
        self._cache = PromptEmbeddingCache(self._embed_tokens, text_cache_size)

    @classmethod
    def from_config(cls, cfg: Mapping, *, device: str | torch.device = "cpu") -> "LaionClap":
        """``cfg`` = the ``config`` block of configs/model/conditioner/laion_clap.yaml."""
        ckpt = cfg.get("clap_ckpt_path")
        if not ckpt:
            raise UserError(
                "clap_ckpt_path is not set: point the CLAP conditioner's config.clap_ckpt_path "
                "to music_audioset_epoch_15_esc_90.14.pt"
            )
        sizes = ClapSizes.from_mapping(cfg)
        tokenizer = ClapTokenizer(cfg.get("tokenizer_path"), sizes.max_text_length)
        model = load_clap(os.path.expanduser(str(ckpt)), sizes, device=device)
        options = ("audio_batch_size", "text_cache_size", "crop_seed", "resample_quality")
        return cls(model, tokenizer, **{k: cfg[k] for k in options if cfg.get(k) is not None})

    @property
    def dim(self) -> int:
        return self.model.sizes.joint_embed_dim

    @property
    def sample_rate(self) -> int:
        return self.model.sizes.sample_rate

    @property
    def device(self) -> torch.device:
        return self.model.audio_projection[0].weight.device

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "LaionClap":
        """Move the model; ``dtype`` applies to the encoders and projections, the front end stays float32."""
        if device is not None:
            self.model.to(device)
        if dtype is not None:
            for part in (
                self.model.audio_encoder,
                self.model.audio_projection,
                self.model.text_model,
                self.model.text_projection,
            ):
                part.to(dtype)
        self._cache.clear()
        return self

    @torch.no_grad()
    def _embed_tokens(self, texts: list[str]) -> torch.Tensor:
        ids, mask = self.tokenizer(texts)
        return self.model.embed_tokens(ids.to(self.device), mask.to(self.device)).float()

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        """(N,) prompts -> (N, dim) float32, L2-normalised. Each distinct prompt is embedded alone, once, and cached."""
        out = self._cache.embed(texts)
        if not out:
            return torch.zeros(0, self.dim, device=self.device)
        return torch.stack(out)

    def prepare_audio(
        self, audio: torch.Tensor | np.ndarray, sample_rate: int, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Any waveform -> (N, clip_samples) float32 at the model rate: down-mix, resample, repeatpad/crop."""
        x = resample(as_mono_batch(audio).float(), sample_rate, self.sample_rate, self.resample_quality)
        if generator is None:
            generator = torch.Generator().manual_seed(self.crop_seed)
        return fit_to_clip(x, self.model.sizes.clip_samples, generator)

    @torch.no_grad()
    def embed_audio(
        self, audio: torch.Tensor | np.ndarray, sample_rate: int, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """(L,), (N, L) or (N, C, L) at ``sample_rate`` -> (N, dim) float32, L2-normalised."""
        clips = self.prepare_audio(audio, sample_rate, generator=generator)
        out = [
            self.model.embed_audio(clips[i : i + self.audio_batch_size].to(self.device)).float()
            for i in range(0, clips.shape[0], self.audio_batch_size)
        ]
        return torch.cat(out)

    def embed_audio_windows(
        self, audio: torch.Tensor | np.ndarray, sample_rate: int, *, hop_seconds: float = 1.0
    ) -> torch.Tensor:
        """One track -> (N, dim) embeddings of its ``clip_samples`` windows every ``hop_seconds`` (pre-encoding).

        ``audio`` is (L,) or (C, L) (channels are down-mixed). As in the original pre-encoding, the track is
        resampled first, and window i starts at i*hop_seconds for i < floor((duration - window) / hop);
        a track without one such window is a UserError.
        """
        x = torch.as_tensor(audio)
        if not x.is_floating_point() or x.dim() not in (1, 2):
            raise ValueError(f"embed_audio_windows expects one float track (L,) or (C, L), got {tuple(x.shape)}")
        x = x.float()
        x = x.mean(dim=0) if x.dim() == 2 else x
        x = resample(x[None], sample_rate, self.sample_rate, self.resample_quality)[0]
        clip = self.model.sizes.clip_samples
        hop = int(round(hop_seconds * self.sample_rate))
        if hop < 1:
            raise ValueError(f"embed_audio_windows: hop_seconds must be positive, got {hop_seconds}")
        count = (x.shape[0] - clip) // hop  # floor(duration - 10 s) for a 1 s hop, as the original
        if count < 1:
            raise UserError(
                f"audio of {x.shape[0] / self.sample_rate:.2f} s is too short for CLAP windows "
                f"(needs more than {clip / self.sample_rate + hop_seconds:g} s)"
            )
        return self.embed_audio(x.unfold(0, clip, hop)[:count], self.sample_rate)
