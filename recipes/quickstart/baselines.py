"""The quickstart's bars besides the trained model: the DiT at initialisation ("untrained", run through the same
inference and evaluation), the true stems through the AE round trip ("oracle", the best any extractor can reach in
audio with this AE), and the latent-space scores of a model (:mod:`mgeldm.evaluation.latent`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mgeldm.api import MGELDM, Autoencoder
from mgeldm.config import compose_config
from recipes.quickstart.evalset import load_song_stems, load_songs, read_songs, stem_folder


def init_dit(
    config_name: str, ae_ckpt: str, out: str, seed: int, overrides: Sequence[str] = (), like: str | None = None
) -> Path:
    """The unwrapped checkpoint of the untrained baseline: the trained AE + the DiT as initialised.

    ``like``: a trained unwrapped model whose carried config (sizes, measured per-track statistics, conditioner)
    the baseline takes, so both are built and run alike; else ``config_name`` + ``overrides``.
    """
    from mgeldm.checkpoints import read_model_config

    model_cfg = read_model_config(like) if like else None
    if model_cfg is None:
        model_cfg = compose_config(config_name, overrides)["model"]
    return MGELDM.untrained(model_cfg, ae_ckpt, seed=seed).save(out)


def oracle(config_name: str, ae_ckpt: str, eval_dir: str, sample_rate: int, overrides: Sequence[str] = ()) -> int:
    """``ref/<stem>/<song>.wav`` through the AE (VAE mean) -> ``oracle/<stem>/<song>.wav``; returns the count."""
    from mgeldm.audio import write_wav

    ae = Autoencoder.from_pretrained(ae_ckpt, compose_config(config_name, overrides)["model"])
    root, n = Path(eval_dir), 0
    for song, info in read_songs(root).items():
        for label, wave in load_song_stems(root, song, info["labels"], sample_rate).items():
            write_wav(
                root / "oracle" / stem_folder(label) / f"{song}.wav", ae.round_trip(wave, sample_rate), ae.sample_rate
            )
            n += 1
    return n


def latent(
    ckpt: str,
    eval_dir: str,
    sample_rate: int,
    *,
    steps: int,
    cfg_scale: float,
    overlap: float,
    seed: int = 0,
    device: str = "cpu",
    regressor: str | None = None,
) -> dict[str, Any]:
    """The latent-space extraction scores of the eval songs with the report's sampler settings: the songs' mix and
    stems encoded by the model's own AE. ``regressor``: a ``diagnose.py regressor`` file trained on the DiT's
    batches, scored on the same songs and prompts (``regressor_*`` keys, per stem too)."""
    from mgeldm.data.prompts import canonical_prompt
    from mgeldm.evaluation.latent import latent_scores, silence_latent, songs_from_audio

    model = MGELDM.from_pretrained(ckpt, device=device)
    songs = songs_from_audio(model, load_songs(eval_dir, sample_rate), sample_rate)
    silence = silence_latent(model)
    scores = latent_scores(
        model, songs, canonical_prompt, steps=steps, cfg_scale=cfg_scale, overlap=overlap, seed=seed, silence=silence
    )
    if regressor:
        extra = regressor_scores(regressor, model, songs, silence)
        for label, values in extra.pop("per_stem").items():
            scores["per_stem"].setdefault(label, {}).update(values)
        scores.update(extra)
    return scores


def regressor_scores(path: str, model: MGELDM, songs, silence) -> dict[str, Any]:
    """The regressor's latent accuracy and relative MSE on ``songs`` (prompts embedded by ``model``)."""
    from mgeldm.data.prompts import canonical_prompt
    from mgeldm.evaluation.baseline import load_regressor, regressor_estimates
    from mgeldm.evaluation.latent import score_estimates

    net, stats, steps = load_regressor(path)
    est = regressor_estimates(net, stats, songs, lambda texts: model.embed_prompts(texts).cpu(), canonical_prompt)
    scores = score_estimates(songs, est, silence)
    keys = ("latent_prompt_accuracy", "latent_rel_mse")
    out: dict[str, Any] = {f"regressor_{k}": scores[k] for k in keys}
    out["regressor_steps"] = steps
    out["per_stem"] = {label: {f"regressor_{k}": v[k] for k in keys} for label, v in scores["per_stem"].items()}
    return out
