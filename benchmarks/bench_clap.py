"""Throughput of the CLAP conditioner: text prompts/s and seconds of audio embedded per second.

Default: the tiny fixture model on the CPU (``MGELDM_CLAP_FIXTURES`` or ../shared/fixtures/laion_clap_tiny).
``--size full`` uses configs/model/conditioner/laion_clap.yaml with ``--ckpt`` (the released .pt) or,
without one, random weights of the same size (same cost). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from benchlib import add_common_args, apply_threads, emit, fixture_dir, tiny_clap_config  # noqa: E402
from mgeldm.models.clap import ClapSizes, LaionClap, build_clap_model  # noqa: E402
from mgeldm.models.clap.tokenizer import ClapTokenizer  # noqa: E402


def build(args) -> LaionClap:
    if args.size == "tiny":
        root = fixture_dir("MGELDM_CLAP_FIXTURES", "laion_clap_tiny")
        if not (root / "README.json").is_file():
            sys.exit(f"tiny CLAP fixture not found at {root}; set MGELDM_CLAP_FIXTURES or use --size full")
        cfg = tiny_clap_config(root)
    else:
        cfg = yaml.safe_load((REPO / "configs/model/conditioner/laion_clap.yaml").read_text())["config"]
        cfg["clap_ckpt_path"] = args.ckpt
        fixture_tok = fixture_dir("MGELDM_CLAP_FIXTURES", "laion_clap_tiny") / "tokenizer"
        cfg["tokenizer_path"] = args.tokenizer or (str(fixture_tok) if fixture_tok.is_dir() else None)
    cfg["audio_batch_size"] = args.audio_batch
    if cfg.get("clap_ckpt_path"):
        clap = LaionClap.from_config(cfg, device=args.device)
    else:  # random weights, same compute
        sizes = ClapSizes.from_mapping(cfg)
        torch.manual_seed(0)
        model = build_clap_model(sizes, args.device)
        tok = ClapTokenizer(cfg["tokenizer_path"], sizes.max_text_length)
        clap = LaionClap(model, tok, audio_batch_size=args.audio_batch)
    return clap.to(dtype=getattr(torch, args.dtype))


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", choices=["tiny", "full"], default="tiny")
    p.add_argument("--ckpt", default=None, help="released .pt or converted .safetensors (full size)")
    p.add_argument("--tokenizer", default=None, help="folder with roberta-base vocab.json + merges.txt")
    add_common_args(p)
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--clips", type=int, default=4, help="10 s clips")
    p.add_argument("--audio-batch", type=int, default=8)
    return p


def time_text(clap: LaionClap, n_prompts: int, device: str) -> tuple[float, float]:
    """Seconds to embed ``n_prompts`` prompts after a warm-up: first with an empty cache, then cached."""
    moods = ["calm", "loud", "fast"]
    prompts = [f"a recording number {i} of a {moods[i % 3]} piano piece" for i in range(n_prompts)]
    clap.embed_text(prompts[:2])  # warm-up
    clap._cache.clear()
    _sync(device)
    t0 = time.perf_counter()
    clap.embed_text(prompts)
    _sync(device)
    text_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    clap.embed_text(prompts)
    _sync(device)
    cached_s = time.perf_counter() - t0
    return text_s, cached_s


def time_audio(clap: LaionClap, clips: int, device: str) -> tuple[float, float]:
    """Seconds to embed ``clips`` clips of noise after a warm-up, and the seconds of audio they hold."""
    g = torch.Generator().manual_seed(0)
    clip = clap.model.sizes.clip_samples
    audio = 0.1 * torch.randn(clips, clip, generator=g)
    clap.embed_audio(audio[:1], clap.sample_rate)  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    clap.embed_audio(audio, clap.sample_rate)
    _sync(device)
    audio_s = time.perf_counter() - t0
    return audio_s, clips * clip / clap.sample_rate


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    apply_threads(args.threads)
    t0 = time.perf_counter()
    clap = build(args)
    load_s = time.perf_counter() - t0
    text_s, cached_s = time_text(clap, args.prompts, args.device)
    audio_s, seconds = time_audio(clap, args.clips, args.device)

    return emit(
        "clap",
        {
            "size": args.size,
            "weights": "checkpoint" if args.size == "tiny" or args.ckpt else "random",
            "dtype": args.dtype,
            "load_s": round(load_s, 3),
            "text_prompts_per_s": round(args.prompts / text_s, 2),
            "text_prompts_per_s_cached": round(args.prompts / max(cached_s, 1e-9), 1),
            "audio_clips": args.clips,
            "audio_seconds_per_s": round(seconds / audio_s, 2),
        },
        args.device,
    )


if __name__ == "__main__":
    main()
