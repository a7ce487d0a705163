"""Extraction scored in the AE's latent space, where the decoder cannot cap (or flatter) a model.

For each (song, stem) pair the model extracts the stem from the mix latent with the stem's prompt
(the extraction task's windows and sampler, no VAE), and the estimate is compared with the true
latents of the song's stems (mean squared error over the whole song):

* ``latent_prompt_accuracy``: share of pairs whose estimate is closer to the prompted stem than to
  every other stem of the song (chance = 1 / number of stems);
* ``latent_rel_mse``: MSE(estimate, stem) / MSE(silence, stem), where silence is the AE's latent of
  digital silence (1 = no better than extracting nothing, 0 = exact);
* ``x0_error_t{t}``: at diffusion time t (mix given clean, submix and source noised, one model call),
  the same ratio for the model's clean estimate of the source, with the prompt and, as
  ``x0_error_t{t}_uncond``, with no condition at all: their gap is what the prompt is worth.

Every latent is in the AE's own space (VAE means, as ``pre_encode.py`` writes them), whatever
normalisation the DiT uses internally, so models trained with different recipes compare directly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mgeldm.diffusion.windows import plan_windows
from mgeldm.metrics.closest import closest_stem, share
from mgeldm.metrics.logmel import ratio_to_baseline
from mgeldm.models.tracks import SRC

PROBE_TIMES = (0.05, 0.4, 0.8, 1.0)
# Which way each overall score is better (a best checkpoint is chosen by one of them).
BETTER = {"latent_rel_mse": "min", "latent_prompt_accuracy": "max"}


@dataclass
class LatentSong:
    """One song's AE latents: the mix (C, F), and per stem label its source and the rest (submix)."""

    name: str
    mix: Tensor
    sources: dict[str, Tensor]
    submixes: dict[str, Tensor]


def songs_from_corpus(tracks: Sequence[Any]) -> list[LatentSong]:
    """Songs from the tracks a latent dataset read (``MixSubmixSourceLatentDataset.tracks``)."""
    songs = []
    for track in tracks:
        songs.append(
            LatentSong(
                name=track.name,
                mix=torch.as_tensor(track.mix[:], dtype=torch.float32),
                sources={c.src_label: torch.as_tensor(c.src[:], dtype=torch.float32) for c in track.combs},
                submixes={c.src_label: torch.as_tensor(c.submix[:], dtype=torch.float32) for c in track.combs},
            )
        )
    return songs


def songs_from_audio(
    model: Any, songs: Mapping[str, tuple[Tensor, Mapping[str, Tensor]]], sample_rate: int
) -> list[LatentSong]:
    """Encode ``{song: (mix (L,), {label: stem (L,)})}`` with the model's AE (the submix is mix - stem)."""
    out = []
    for name, (mix, stems) in songs.items():
        enc = lambda wave: model.encode_latents(wave[None], sample_rate)  # noqa: E731
        out.append(
            LatentSong(
                name=name,
                mix=enc(mix),
                sources={label: enc(s) for label, s in stems.items()},
                submixes={label: enc(mix[: s.shape[-1]] - s) for label, s in stems.items()},
            )
        )
    return out


def silence_latent(model: Any) -> Tensor:
    """The AE's latent of digital silence, one vector (C, 1) (constant over frames in the interior)."""
    runner = model.runner
    samples = 2 * runner.facts.window * runner.facts.ratio
    z = runner.encode(torch.zeros(samples), None)[0].cpu() * float(model.model.pretransform.scale)
    return z[:, z.shape[-1] // 4 : -(z.shape[-1] // 4) or None].mean(-1, keepdim=True)


def _sq(a: Tensor, b: Tensor) -> float:
    n = min(a.shape[-1], b.shape[-1])
    return float((a[..., :n] - b[..., :n]).double().square().sum())


def _windows(z: Tensor, width: int) -> Tensor:
    """The DiT windows (W, C, width) of ``z`` (C, F) without overlap (:func:`plan_windows`: the last one
    right-aligned)."""
    return torch.stack([z[:, w.start : w.end] for w in plan_windows(z.shape[-1], width, 0)])


def _x0_errors(
    model: Any, song: LatentSong, label: str, emb: Tensor, silence: Tensor, times: Sequence[float], seed: int
) -> dict[str, tuple[float, float, float]]:
    """{t: (error with the prompt, error unconditioned, silence's error)} summed over the song's windows."""
    w = model.runner.facts.window
    clean = torch.stack([_windows(song.mix, w), _windows(song.submixes[label], w), _windows(song.sources[label], w)], 1)
    b, k = clean.shape[:2]
    cond = torch.zeros(b, k, emb.shape[-1])
    cond[:, SRC] = emb
    out = {}
    for t in times:
        tt = torch.tensor([0.0, t, t]).expand(b, k)
        x0 = [
            model.predict_x0(clean, tt, c, torch.Generator().manual_seed(seed)) for c in (cond, torch.zeros_like(cond))
        ]
        target = clean[:, SRC]
        out[f"{t:g}"] = (_sq(x0[0][:, SRC], target), _sq(x0[1][:, SRC], target), _sq(silence.expand_as(target), target))
    return out


def score_estimates(
    songs: Sequence[LatentSong], estimates: Mapping[str, Mapping[str, Tensor]], silence: Tensor
) -> dict[str, Any]:
    """``latent_prompt_accuracy`` and ``latent_rel_mse`` (overall, per stem) of ``{song: {label: estimate}}``."""
    hits: dict[str, list[bool]] = {}
    rels: dict[str, list[float]] = {}
    for song in songs:
        stems = {label: song.sources[label] for label in sorted(song.sources)}
        for label, est in estimates[song.name].items():
            hits.setdefault(label, []).append(closest_stem(est, stems, _sq) == label)
            floor = _sq(silence.expand_as(stems[label]), stems[label])
            rels.setdefault(label, []).append(ratio_to_baseline(_sq(est, stems[label]), floor))
    pairs = [h for v in hits.values() for h in v]
    if not pairs:
        raise ValueError("no (song, stem) pair to score")
    every_rel = [r for v in rels.values() for r in v]
    return {
        "latent_prompt_accuracy": share(pairs),
        "latent_rel_mse": sum(every_rel) / len(every_rel),
        "n_songs": len(songs),
        "n_pairs": len(pairs),
        "per_stem": {
            label: {"latent_prompt_accuracy": share(hits[label]), "latent_rel_mse": sum(rels[label]) / len(rels[label])}
            for label in sorted(hits)
        },
    }


def latent_scores(
    model: Any,
    songs: Sequence[LatentSong],
    prompt: Callable[[str], str],
    *,
    steps: int = 4,
    cfg_scale: float = 2.0,
    overlap: float = 0.0,
    seed: int = 0,
    times: Sequence[float] = PROBE_TIMES,
    silence: Tensor | None = None,
) -> dict[str, Any]:
    """The scores of the module docstring for ``model`` (a loaded :class:`mgeldm.api.MGELDM`); ``times=()``
    skips the x0 probes (and their model calls).

    ``silence`` (C, 1): the AE's latent of silence (e.g. ``pre_encode.py``'s ``zero_latent.npy``); by
    default it is encoded with the model's AE.
    """
    silence = silence_latent(model) if silence is None else silence.reshape(-1, 1).float()
    estimates: dict[str, dict[str, Tensor]] = {}
    probe: dict[str, list[float]] = {f"{t:g}": [0.0, 0.0, 0.0] for t in times}
    for n, song in enumerate(songs):
        labels = sorted(song.sources)
        prompts = [prompt(label) for label in labels]
        est = model.extract_latents(
            song.mix,
            prompts,
            steps=steps,
            cfg_scale=cfg_scale,
            overlap=overlap,
            generator=torch.Generator().manual_seed(seed + n),
        )
        estimates[song.name] = {label: est[i] for i, label in enumerate(labels)}
        if not times:
            continue  # no probes: no more model calls
        embs = model.embed_prompts(prompts)
        for i, label in enumerate(labels):
            for t, errors in _x0_errors(model, song, label, embs[i], silence, times, seed + n).items():
                probe[t] = [a + b for a, b in zip(probe[t], errors)]
    scores = score_estimates(songs, estimates, silence)
    per_stem = scores.pop("per_stem")
    for t, (ec, eu, es) in probe.items():
        scores[f"x0_error_t{t}"] = ratio_to_baseline(ec, es)
        scores[f"x0_error_t{t}_uncond"] = ratio_to_baseline(eu, es)
    scores["per_stem"] = per_stem
    return scores
