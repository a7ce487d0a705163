"""Source-extraction speed: seconds per minute of audio, real-time factor, peak memory, and the share
of the memory-bandwidth bound reached (every DiT forward reads all DiT weights once).

Default: a small random model (same 16 kHz / 2048 VAE ratio and 100-frame windows as the released
one, narrow layers) on the CPU. ``--full`` builds the full-size model of configs/model/dit.yaml
(random weights, nothing to download) for a GPU run, e.g.

    python benchmarks/bench_infer.py --full --device cuda --precision bf16 --seconds 180

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mgeldm.api import default_model_config, resolve_device, resolve_precision  # noqa: E402
from mgeldm.models.mgeldm import build_mgeldm  # noqa: E402
from mgeldm.tasks import tasks as T  # noqa: E402
from mgeldm.tasks.windowing import overlap_frames, plan_windows  # noqa: E402

# Peak HBM bandwidth (GB/s) used for the bound when --bandwidth-gbs is not given.
KNOWN_BANDWIDTH = {"H100 80GB HBM3": 3350.0, "H100 PCIe": 2000.0, "H200": 4800.0, "A100-SXM4-80GB": 2039.0}


def small_config() -> dict:
    """The released layout (ratio 2048, 64 latent channels, 3 tracks, 100-frame windows), narrow."""
    ae = {"encoder": {"in_channels": 1, "channels": 8, "c_mults": [1, 2, 4, 8, 16], "strides": [2, 4, 4, 8, 8],
                      "latent_dim": 128, "use_snake": True},
          "decoder": {"out_channels": 1, "channels": 8, "c_mults": [1, 2, 4, 8, 16], "strides": [2, 4, 4, 8, 8],
                      "latent_dim": 64, "use_snake": True, "final_tanh": False},
          "bottleneck": {"type": "vae"}, "latent_dim": 64, "downsampling_ratio": 2048, "io_channels": 1}
    dit = {"io_channels": 64, "num_tracks": 3, "embed_dim": 64, "global_cond_dim": 32, "global_cond_grouped": True,
           "timestep_features_dim": 32, "depth": 2, "num_heads": 6, "norm_type": "groupnorm",
           "use_t_emb_trackwise": True, "diffusion_objective": "v", "global_cond_keys": ["prompt_cond", "audio_cond"]}
    return {"sample_rate": 16000, "segment_length": 100,
            "pretransform": {"iterate_batch": False, "scale": 1.0, "model_half": False, "chunked": False,
                             "enable_grad": False, "autoencoder": ae}, "MGELDM": dit}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="full-size model (configs/model/dit.yaml)")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default=None, help="fp32 | bf16 | fp16 (default: bf16 on cuda, else fp32)")
    p.add_argument("--seconds", type=float, default=30.0, help="length of the mix to separate")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--cfg-scale", type=float, default=10.0)
    p.add_argument("--overlap", type=float, default=3.0)
    p.add_argument("--prompts", type=int, default=1, help="prompts separated in one batch")
    p.add_argument("--bandwidth-gbs", type=float, default=None, help="peak memory bandwidth for the bound")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compile", action="store_true", help="torch.compile the DiT (CUDA graphs on CUDA)")
    args = p.parse_args()

    device = resolve_device(args.device)
    precision = args.precision or ("bf16" if device.type == "cuda" else "fp32")
    dtype = resolve_precision(precision)
    cfg = default_model_config() if args.full else small_config()
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    model = build_mgeldm(cfg).eval().requires_grad_(False).to(device)
    if dtype is not None:
        model.model_dit.to(dtype)  # as the API does: weights in the compute dtype, half the bytes per forward
    build_s = time.perf_counter() - t0
    runner = T.TaskRunner(model, device=device, autocast_dtype=dtype, compile=args.compile)
    gen = torch.Generator(device=device).manual_seed(args.seed)
    samples = int(args.seconds * runner.sample_rate)
    wave = 0.1 * torch.randn(samples, generator=torch.Generator().manual_seed(args.seed))
    cond = torch.nn.functional.normalize(torch.randn(args.prompts, runner.cond_dim), dim=-1)
    settings = T.SamplingSettings(args.steps, args.cfg_scale, args.overlap, 1)

    # warm-up (kernel selection, allocator, compilation / graph capture) on one window, not timed
    T.source_extract(runner, wave[: runner.window * runner.ratio], cond, T.SamplingSettings(3, args.cfg_scale, 0.0),
                     gen)
    runner.timings = T.Timings()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    T.source_extract(runner, wave, cond, settings, gen)
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start

    dit_params = sum(x.numel() for x in model.model_dit.parameters())
    bytes_per = 2 if dtype is not None else 4
    weight_bytes = dit_params * bytes_per
    calls = runner.timings.model_calls
    frames = math.ceil(samples / runner.ratio)
    windows = len(plan_windows(frames, runner.window, overlap_frames(args.overlap, runner.frame_rate, runner.window)))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    bandwidth = args.bandwidth_gbs or next((v for k, v in KNOWN_BANDWIDTH.items() if k in name), None)
    bound_s = weight_bytes * calls / (bandwidth * 1e9) if bandwidth else None
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    print(json.dumps({
        "bench": "infer_source_extract",
        "model": "full" if args.full else "small", "compile": args.compile,
        "device": name, "precision": precision, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "audio_seconds": args.seconds, "prompts": args.prompts, "steps": args.steps, "cfg_scale": args.cfg_scale,
        "overlap_s": args.overlap, "windows": windows, "dit_forwards": calls,
        "dit_params": dit_params, "dit_weight_bytes": weight_bytes,
        "seconds": round(elapsed, 3),
        "seconds_per_minute_of_audio": round(elapsed * 60.0 / args.seconds, 3),
        "real_time_factor": round(elapsed / args.seconds, 5),
        "ms_per_dit_forward": round(1000 * runner.timings.sample / max(calls, 1), 3),
        "encode_s": round(runner.timings.encode, 3), "sample_s": round(runner.timings.sample, 3),
        "decode_s": round(runner.timings.decode, 3),
        "peak_memory_bytes": int(peak), "peak_memory_kind": "cuda_max_allocated" if device.type == "cuda" else "max_rss",
        "bandwidth_gbs": bandwidth,
        "weight_read_bound_s": round(bound_s, 3) if bound_s else None,
        "share_of_bandwidth_bound": round(bound_s / runner.timings.sample, 4) if bound_s else None,
        "build_s": round(build_s, 2),
    }))


if __name__ == "__main__":
    main()
