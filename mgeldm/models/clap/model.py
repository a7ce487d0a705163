"""The CLAP network: our log-mel front end + transformers' HTSAT (ClapAudioEncoder) and RoBERTa
(ClapTextModel) encoders + the two 2-layer projections into the joint space.

transformers' modules give laion_clap's numbers once the weights are converted (loader.py):
ClapAudioEncoder does bn0, the bicubic time stretch, the freq_ratio fold, the Swin stages, the final
LayerNorm and the token mean; ClapTextModel is RoBERTa with its tanh pooler on ``<s>``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.clap.modeling_clap import ClapAudioEncoder, ClapTextModel

from mgeldm.models.clap.config import ClapSizes
from mgeldm.models.clap.frontend import LogMelFrontend


def _projection(in_dim: int, out_dim: int) -> nn.Sequential:
    # Same layout as laion_clap (keys .0 and .2), so the projection keys need no renaming.
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.ReLU(), nn.Linear(out_dim, out_dim))


class ClapModel(nn.Module):
    """HTSAT + RoBERTa CLAP without fusion. Inputs must already be ``clip_samples`` long at ``sample_rate``."""

    def __init__(self, sizes: ClapSizes) -> None:
        super().__init__()
        self.sizes = sizes
        self.frontend = LogMelFrontend(sizes.n_fft, sizes.hop_size, sizes.mel_bins)
        self.audio_encoder = ClapAudioEncoder(sizes.audio_config())
        self.audio_projection = _projection(sizes.audio_embed_dim, sizes.joint_embed_dim)
        self.text_model = ClapTextModel(sizes.text_config(), add_pooling_layer=True)
        self.text_projection = _projection(int(sizes.text["hidden_size"]), sizes.joint_embed_dim)

    @property
    def dtype(self) -> torch.dtype:
        return self.audio_projection[0].weight.dtype

    def logmel(self, waveform: torch.Tensor) -> torch.Tensor:
        """(B, clip_samples) -> (B, 1, frames, mel_bins) dB, float32."""
        return self.frontend(waveform)

    def audio_pooled(self, logmel: torch.Tensor) -> torch.Tensor:
        """Log-mel -> HTSAT embedding (B, audio_embed_dim), i.e. the token mean after the final LayerNorm."""
        return self.audio_encoder(logmel.to(self.dtype)).pooler_output

    def text_pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token ids -> RoBERTa pooler output (B, hidden): tanh(dense(h[<s>]))."""
        return self.text_model(input_ids=input_ids, attention_mask=attention_mask).pooler_output

    def embed_audio(self, waveform: torch.Tensor) -> torch.Tensor:
        """(B, clip_samples) waveform -> (B, joint_embed_dim) L2-normalised."""
        pooled = self.audio_pooled(self.logmel(waveform))
        return F.normalize(self.audio_projection(pooled), dim=-1)

    def embed_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T) token ids and mask -> (B, joint_embed_dim) L2-normalised."""
        pooled = self.text_pooled(input_ids, attention_mask)
        return F.normalize(self.text_projection(pooled), dim=-1)
