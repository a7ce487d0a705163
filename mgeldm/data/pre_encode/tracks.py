"""One song -> the arrays and json of its track folder: the mix, and per source the source and its submix."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from mgeldm.data.corpora.base import Track
from mgeldm.data.pre_encode.encoder import TrackEncoder

Comb = tuple[str, list[str], torch.Tensor, torch.Tensor]  # (label, other labels, source, submix)


def combinations(stems: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, list[Comb]]:
    """The mix and, per source in order, ``(label, other labels, source, submix)``
    (docs/compatibility.md#pre-encoding)."""
    labels = list(stems)
    length = max(int(s.shape[-1]) for s in stems.values())
    waves = torch.stack([torch.nn.functional.pad(stems[k], (0, length - stems[k].shape[-1])) for k in labels])
    mix = waves.sum(0)
    combs = []
    for i, label in enumerate(labels):
        rest = torch.cat([waves[:i], waves[i + 1 :]]).sum(0)
        combs.append((label, labels[:i] + labels[i + 1 :], waves[i], rest))
    return mix, combs


def encode_track(track: Track, encoder: TrackEncoder, *, mix_only: bool) -> dict[str, object]:
    """All arrays and json of one track folder, as ``{relative file name: array | dict}``."""
    if mix_only:
        mix = next(iter(track.stems.values()))
        signals, combs = mix[None], []
    else:
        mix, combs = combinations(track.stems)
        signals = torch.stack([mix] + [w for _, _, src, sub in combs for w in (src, sub)])
    z = encoder.latents(signals, track.sample_rate)
    if encoder.settings.clap_from == "labels":
        labels = [] if mix_only else list(track.stems)
        label_lists = [labels] + [ls for label, others, _, _ in combs for ls in ([label], others)]
        c = encoder.label_embeddings(label_lists, signals.shape[-1] / track.sample_rate)
    else:
        c = encoder.embeddings(signals, track.sample_rate)
    files: dict[str, object] = {"mix.npy": z[0], "mix_clap.npy": c[0]}
    for k, (label, others, _, _) in enumerate(combs):
        src, sub = 1 + 2 * k, 2 + 2 * k
        files[f"comb{k}/src.npy"] = z[src]
        files[f"comb{k}/src_clap.npy"] = c[src]
        files[f"comb{k}/submix.npy"] = z[sub]
        files[f"comb{k}/submix_clap.npy"] = c[sub]
        files[f"comb{k}/comb_info.json"] = {
            "src_label": label,
            "submix_label_list": others,
            "wav_sr_ori": int(track.sample_rate),
            "sample_rate_ae": encoder.ae_sr,
            "sample_rate_clap": encoder.clap_sr,
        }
    return files
