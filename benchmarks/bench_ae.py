"""Benchmark the Oobleck VAE: encode / decode forward and a training step (forward + backward).

Prints one JSON object. Default: CPU, float32, a small config (the full-size yaml with narrower
channels, same 2048x ratio), 1 x 4 s of audio. ``--config full`` uses configs/model/autoencoder.yaml.

    python benchmarks/bench_ae.py
    python benchmarks/bench_ae.py --config full --device cuda --dtype bfloat16 --seconds 30 --batch 4
    python benchmarks/bench_ae.py --config full --device cuda --seconds 180 --chunked
"""

from __future__ import annotations

import argparse
import copy
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from benchlib import add_common_args, apply_threads, emit  # noqa: E402
from mgeldm.models.autoencoder import build_autoencoder  # noqa: E402

FULL_CONFIG = REPO / "configs" / "model" / "autoencoder.yaml"
SMALL_CHANNELS = 16  # the "small" preset: full-size layout and ratio, 8x narrower
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_config(name: str) -> dict[str, Any]:
    cfg = yaml.safe_load(FULL_CONFIG.read_text())
    if name == "small":
        cfg = copy.deepcopy(cfg)
        cfg["encoder"]["channels"] = cfg["decoder"]["channels"] = SMALL_CHANNELS
    elif name != "full":
        raise SystemExit(f"--config must be 'small' or 'full', got {name!r}")
    return cfg


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int) -> float:
    """Median wall time of ``fn`` in seconds, after ``warmup`` untimed calls.

    Peak-memory counters restart after the warm-up, so cuDNN's algorithm search (``--cudnn-benchmark``
    tries workspaces of many GiB) does not count: the peak is that of the steady state.
    """
    for _ in range(warmup):
        fn()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # CPU: the process's peak resident set size so far (Linux reports KiB); it never goes down.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="small", help="small (default) or full (the released size)")
    add_common_args(p)
    p.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seconds", type=float, default=4.0, help="audio length per item (rounded to whole latent frames)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--no-fold", action="store_true", help="keep recomputing the weight norm in inference")
    p.add_argument("--chunked", action="store_true", help="chunked encode/decode (chunk 128, overlap 4 frames)")
    p.add_argument("--chunk-batch", type=int, default=1, help="windows per forward in chunked mode")
    p.add_argument("--no-train", action="store_true", help="skip the forward+backward measurement")
    p.add_argument("--fuse", action="store_true", help="compiled one-kernel SnakeBeta in inference (CUDA only)")
    p.add_argument("--cudnn-benchmark", action="store_true", help="let cuDNN pick conv algorithms by timing")
    return p


def random_audio(
    model, args: argparse.Namespace, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Generator, int, float]:
    """The input (whole latent frames of noise), the generator it came from, its latent frames and seconds."""
    ratio, sr = model.downsampling_ratio, model.sample_rate
    frames = max(1, round(args.seconds * sr / ratio))
    seconds = frames * ratio / sr
    gen = torch.Generator(device=device).manual_seed(0)
    audio = 0.1 * torch.randn(args.batch, model.io_channels, frames * ratio, generator=gen, device=device, dtype=dtype)
    return audio, gen, frames, seconds


def describe(model, args: argparse.Namespace, device: torch.device, frames: int, seconds: float) -> dict[str, Any]:
    """The settings the numbers belong to (the first keys of the JSON object)."""
    result: dict[str, Any] = {
        "dtype": args.dtype,
        "config": args.config,
        "params": sum(p.numel() for p in model.parameters()),
        "batch": args.batch,
        "audio_seconds": seconds,
        "latent_frames": frames,
        "chunked": args.chunked,
        "weight_norm_folded": not args.no_fold,
    }
    if device.type == "cuda":
        result.update(
            {"cudnn_benchmark": torch.backends.cudnn.benchmark, "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32}
        )
    return result


def time_inference(
    model, audio: torch.Tensor, args: argparse.Namespace, device: torch.device, total: float
) -> dict[str, Any]:
    """Encode and decode times (and their peak memory), in inference mode."""
    chunk = dict(chunked=args.chunked, max_batch_size=args.chunk_batch)
    with torch.inference_mode():
        z = model.encode_audio(audio, **chunk)
        t_enc = timed(lambda: model.encode_audio(audio, **chunk), device, args.repeats, args.warmup)
        peak_enc = peak_memory_mb(device)
        t_dec = timed(lambda: model.decode_audio(z, **chunk), device, args.repeats, args.warmup)
        peak_dec = peak_memory_mb(device)
    return {
        "peak_memory_encode_mb": round(peak_enc, 1),
        "peak_memory_decode_mb": round(peak_dec, 1),
        "encode_s": t_enc,
        "decode_s": t_dec,
        "encode_audio_s_per_s": total / t_enc,
        "decode_audio_s_per_s": total / t_dec,
    }


def time_training(
    model, audio: torch.Tensor, gen: torch.Generator, args: argparse.Namespace, device: torch.device, total: float
) -> dict[str, Any]:
    """One training step's time (forward + backward of an L1 + KL loss) and its peak memory."""
    model.train()  # drops the fold: gradients go to weight_g / weight_v

    def step() -> None:
        z, info = model.encode(audio, return_info=True, generator=gen)
        loss = (model.decode(z) - audio).abs().mean() + 1e-4 * info["kl"]
        loss.backward()
        model.zero_grad(set_to_none=True)

    t_train = timed(step, device, args.repeats, args.warmup)
    return {
        "train_step_s": t_train,
        "train_audio_s_per_s": total / t_train,
        "peak_memory_train_mb": round(peak_memory_mb(device), 1),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    apply_threads(args.threads)
    if args.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    cfg = load_config(args.config)
    torch.manual_seed(0)
    model = build_autoencoder(cfg).to(device=device, dtype=dtype).eval()
    audio, gen, frames, seconds = random_audio(model, args, device, dtype)

    result = describe(model, args, device, frames, seconds)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if not args.no_fold:
        model.fold_weight_norm()
    model.fuse_activations(args.fuse)
    result["fused_activations"] = args.fuse and device.type == "cuda"
    total = args.batch * seconds
    result.update(time_inference(model, audio, args, device, total))
    if not args.no_train:
        result.update(time_training(model, audio, gen, args, device, total))
    return emit("ae", result, device)


if __name__ == "__main__":
    main()
