"""Pre-encoding throughput: hours of songs encoded per minute (AE latents + per-second CLAP), one JSON line.

Default: CPU, the tiny fixture sizes (AE and CLAP, random weights: only the speed is measured), 2 songs of
2 stems x 12 s. ``--full``: the full-size AE (configs/model/autoencoder.yaml) and CLAP
(configs/model/conditioner/laion_clap.yaml), on ``--device cuda`` typically, with longer songs.
Each song is 2K+1 signals (mix, K sources, K submixes), as pre_encode.py encodes them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from benchlib import add_common_args, apply_threads, emit, fixture_dir, tiny_clap_config  # noqa: E402
from mgeldm.data.corpora.base import Track  # noqa: E402
from mgeldm.data.pre_encode.encoder import TrackEncoder  # noqa: E402
from mgeldm.data.pre_encode.settings import EncodeSettings  # noqa: E402
from mgeldm.data.pre_encode.tracks import encode_track  # noqa: E402


def build_models(full: bool, device: str):
    from mgeldm.models.autoencoder import build_autoencoder
    from mgeldm.models.clap.config import ClapSizes
    from mgeldm.models.clap.embedder import LaionClap
    from mgeldm.models.clap.loader import build_clap_model

    if full:
        ae_cfg = yaml.safe_load((REPO / "configs/model/autoencoder.yaml").read_text())
        clap_cfg = yaml.safe_load((REPO / "configs/model/conditioner/laion_clap.yaml").read_text())["config"]
    else:
        ref = json.loads((fixture_dir("MGELDM_REFERENCE_FIXTURES", "reference_tiny") / "README.json").read_text())
        ae_cfg = {**ref["autoencoder"], "sample_rate": ref["sample_rate"]}
        clap_cfg = tiny_clap_config(fixture_dir("MGELDM_CLAP_FIXTURES", "laion_clap_tiny"))
    torch.manual_seed(0)
    ae = build_autoencoder(ae_cfg)
    clap = LaionClap(build_clap_model(ClapSizes.from_mapping(clap_cfg), device), tokenizer=None)
    return ae, clap


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--full", action="store_true", help="full-size AE and CLAP")
    add_common_args(p)
    p.add_argument("--songs", type=int, default=2)
    p.add_argument("--stems", type=int, default=2)
    p.add_argument("--seconds", type=float, default=12.0)
    p.add_argument("--sample-rate", type=int, default=44100)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--clap-batch-size", type=int, default=16)
    return p


def choose_resampler() -> str:
    """soxr where installed; else the encoder's resampler becomes a linear interpolation. Returns which."""
    try:
        import soxr  # noqa: F401
    except ImportError:  # some bare GPU hosts lack it: time the models with a linear-interpolation stand-in
        import mgeldm.data.pre_encode.encoder as pe

        def _linear(wave, orig_sr, target_sr):
            if orig_sr == target_sr:
                return wave
            n = int(round(wave.shape[-1] * target_sr / orig_sr))
            return torch.nn.functional.interpolate(wave[:, None], size=n, mode="linear")[:, 0]

        pe.resample = _linear
        return "linear (soxr missing)"
    return "soxr"


def random_songs(args: argparse.Namespace) -> list[Track]:
    """``--songs`` songs of ``--stems`` stems of noise (seed 0)."""
    gen = torch.Generator().manual_seed(0)
    n = int(args.seconds * args.sample_rate)
    return [
        Track(
            f"song{i}", args.sample_rate, {f"stem{k}": 0.1 * torch.randn(n, generator=gen) for k in range(args.stems)}
        )
        for i in range(args.songs)
    ]


def timed(name: str, fn, timers: dict[str, float], device: str):
    """``fn``, adding its wall time (device synced) to ``timers[name]`` at every call."""

    def run(*a, **kw):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = fn(*a, **kw)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        timers[name] += time.perf_counter() - t
        return out

    return run


def time_songs(enc: TrackEncoder, songs: list[Track], device: str) -> tuple[float, dict[str, float]]:
    """Wall seconds to encode ``songs`` after a warm-up on the first, and the seconds in the AE and in CLAP."""
    timers = {"ae": 0.0, "clap": 0.0}
    enc.latents = timed("ae", enc.latents, timers, device)
    enc.embeddings = timed("clap", enc.embeddings, timers, device)
    encode_track(songs[0], enc, mix_only=False)  # warm-up (kernels, allocator), not counted
    timers.update(ae=0.0, clap=0.0)
    start = time.perf_counter()
    for song in songs:
        encode_track(song, enc, mix_only=False)
    return time.perf_counter() - start, timers


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    apply_threads(args.threads)
    resampler = choose_resampler()
    ae, clap = build_models(args.full, args.device)
    settings = EncodeSettings.from_mapping(
        {"batch_size": args.batch_size, "clap_batch_size": args.clap_batch_size, "progress": False}
    )
    enc = TrackEncoder(ae, clap, settings, device=args.device)
    songs = random_songs(args)
    wall, timers = time_songs(enc, songs, args.device)
    song_hours = args.songs * args.seconds / 3600.0
    signals = args.songs * (2 * args.stems + 1)
    return emit(
        "pre_encode",
        {
            "size": "full" if args.full else "tiny",
            "resampler": resampler,
            "songs": args.songs,
            "stems": args.stems,
            "seconds_per_song": args.seconds,
            "signals": signals,
            "wall_s": round(wall, 3),
            "ae_s": round(timers["ae"], 3),
            "clap_s": round(timers["clap"], 3),
            "song_hours_per_minute": round(song_hours / (wall / 60.0), 4),
            "signal_hours_per_minute": round(signals * args.seconds / 3600.0 / (wall / 60.0), 4),
            "clap_windows": signals * max(1, int(args.seconds - 10)),
        },
        args.device,
    )


if __name__ == "__main__":
    main()
