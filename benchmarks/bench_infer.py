"""Source-extraction speed from a loaded model to decoded audio: the time per phase (CLAP, VAE encode, DiT
sampling, VAE decode), real-time factor, songs per minute, peak memory, and the DiT phase against its two
lower bounds: reading every DiT weight once per forward at the device's memory bandwidth, and the forward's
matmul FLOPs at the device's dense peak (bench_dit.py's formula, the CFG batch counted).

Default: a small random model (the released geometry: 16 kHz, VAE ratio 2048, 64 latent channels x 3 tracks,
100-frame windows; narrow layers) on the CPU. ``--full`` builds the full-size model of configs/model/dit.yaml
and the full-size CLAP of configs/model/conditioner/laion_clap.yaml, both with random weights, from the YAML
files alone (nothing to download, no Hydra):

    python benchmarks/bench_infer.py --full --device cuda --seconds 180 --steps 200 --compile \\
        --also dpmpp_2m:20 --songs 1
    python benchmarks/bench_infer.py --full --device cuda --seconds 180 --songs 4 --compile   # songs per minute

The CLAP phase embeds each prompt alone (as the conditioner does) from random token ids: the tokenizer's
files are not in the repository, and tokenizing takes microseconds on the CPU. The timed part excludes
building the model and compiling it (a warm-up on one window of every batch shape comes first).
``--also SAMPLER:STEPS`` measures the same song(s) again with another sampler on the same loaded model;
``--songs N`` runs N songs in shared DiT batches (``--sequential`` also times them one at a time).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import resource
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_dit import device_peak, forward_flops  # noqa: E402
from benchlib import add_common_args, apply_threads, emit  # noqa: E402
from mgeldm.diffusion.samplers import SAMPLERS  # noqa: E402
from mgeldm.diffusion.windows import plan_windows  # noqa: E402
from mgeldm.inputs import compute_dtype, resolve_device  # noqa: E402
from mgeldm.models.mgeldm import build_mgeldm  # noqa: E402
from mgeldm.tasks import tasks  # noqa: E402
from mgeldm.tasks.windowing import overlap_frames  # noqa: E402

# Peak HBM bandwidth (GB/s) used for the bound when --bandwidth-gbs is not given.
KNOWN_BANDWIDTH = {"H100 80GB HBM3": 3350.0, "H100 PCIe": 2000.0, "H200": 4800.0, "A100-SXM4-80GB": 2039.0}
# How the two DiT lower bounds of the report are computed (reported with them).
BOUND_FORMULAS = {
    "weight_read": "dit_weight_bytes * dit_forwards / bandwidth",
    "flops": "dit_forwards * (2*P_tok*B*N + 4*L*B*N^2*D) / peak, B = CFG x prompts x songs",
}


def small_autoencoder() -> dict:
    """The released VAE layout (ratio 2048 = 2*4*4*8*8, 64 latent channels), 8 base channels."""
    return {
        "encoder": {
            "in_channels": 1,
            "channels": 8,
            "c_mults": [1, 2, 4, 8, 16],
            "strides": [2, 4, 4, 8, 8],
            "latent_dim": 128,
            "use_snake": True,
        },
        "decoder": {
            "out_channels": 1,
            "channels": 8,
            "c_mults": [1, 2, 4, 8, 16],
            "strides": [2, 4, 4, 8, 8],
            "latent_dim": 64,
            "use_snake": True,
            "final_tanh": False,
        },
        "bottleneck": {"type": "vae"},
        "latent_dim": 64,
        "downsampling_ratio": 2048,
        "io_channels": 1,
    }


def small_dit() -> dict:
    """The released DiT layout (64 latent channels x 3 tracks, grouped conditions), two narrow blocks."""
    return {
        "io_channels": 64,
        "num_tracks": 3,
        "embed_dim": 64,
        "global_cond_dim": 32,
        "global_cond_grouped": True,
        "timestep_features_dim": 32,
        "depth": 2,
        "num_heads": 6,
        "norm_type": "groupnorm",
        "use_t_emb_trackwise": True,
        "diffusion_objective": "v",
        "global_cond_keys": ["prompt_cond", "audio_cond"],
    }


def small_config() -> dict:
    """The released layout (ratio 2048, 64 latent channels, 3 tracks, 100-frame windows), narrow."""
    return {
        "sample_rate": 16000,
        "segment_length": 100,
        "pretransform": {
            "iterate_batch": False,
            "scale": 1.0,
            "model_half": False,
            "chunked": False,
            "enable_grad": False,
            "autoencoder": small_autoencoder(),
        },
        "MGELDM": small_dit(),
    }


def full_config() -> dict:
    """The ``model`` node that configs/dit.yaml composes (configs/model/dit.yaml with the autoencoder yaml in
    its place), read with plain YAML so that a bare GPU host needs no Hydra; the conditioner is left out."""
    cfg = yaml.safe_load((ROOT / "configs" / "model" / "dit.yaml").read_text())
    cfg.pop("defaults", None)
    cfg["pretransform"]["autoencoder"] = yaml.safe_load((ROOT / "configs" / "model" / "autoencoder.yaml").read_text())
    return cfg


def clap_config(size: str, joint_dim: int) -> dict:
    """The released CLAP sizes (``full``) or a narrow one (``small``) with the DiT's condition width."""
    cfg = yaml.safe_load((ROOT / "configs" / "model" / "conditioner" / "laion_clap.yaml").read_text())["config"]
    if size == "small":
        cfg["htsat"].update(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1])
        cfg["audio_embed_dim"] = 16 * 8
        cfg["text"].update(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    cfg["joint_embed_dim"] = joint_dim
    return cfg


def build_clap(size: str, joint_dim: int, device: torch.device, dtype: torch.dtype | None):
    """A random-weight CLAP model on ``device`` (its encoders in ``dtype``), or None without transformers."""
    try:
        from mgeldm.models.clap.config import ClapSizes
        from mgeldm.models.clap.loader import build_clap_model
    except ImportError:
        return None
    model = build_clap_model(ClapSizes.from_mapping(clap_config(size, joint_dim)), device)
    if dtype is not None:
        for part in (model.audio_encoder, model.audio_projection, model.text_model, model.text_projection):
            part.to(dtype)
    return model


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Conditions:
    """The prompts' condition vectors: CLAP's text tower on random token ids, one prompt at a time (timed),
    or random unit vectors when no CLAP model is built."""

    def __init__(self, clap, prompts: int, dim: int, device: torch.device, seed: int) -> None:
        self.clap, self.device = clap, device
        g = torch.Generator().manual_seed(seed)
        if clap is not None:
            length = clap.sizes.max_text_length
            vocab = int(clap.sizes.text["vocab_size"])
            self.ids = torch.randint(3, vocab, (prompts, length), generator=g)
        self.fixed = torch.nn.functional.normalize(torch.randn(prompts, dim, generator=g), dim=-1)

    @torch.inference_mode()
    def __call__(self) -> tuple[torch.Tensor, float]:
        start = time.perf_counter()
        if self.clap is None:
            return self.fixed, 0.0
        rows = []
        for ids in self.ids.to(self.device):
            mask = torch.ones_like(ids)
            rows.append(self.clap.embed_tokens(ids[None], mask[None]).float())
        cond = torch.cat(rows).cpu()
        sync(self.device)
        return cond, time.perf_counter() - start


@contextlib.contextmanager
def count_syncs(device: torch.device, enabled: bool):
    """Count the host syncs CUDA reports (``torch.cuda.set_sync_debug_mode``) inside; yields a list to read."""
    found: list[int] = []
    if not (enabled and device.type == "cuda"):
        yield found
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield found
        finally:
            torch.cuda.set_sync_debug_mode("default")
    found.append(sum("synchroniz" in str(w.message).lower() for w in caught))


def parse_also(values: list[str]) -> list[tuple[str, int]]:
    out = []
    for value in values:
        name, _, steps = value.partition(":")
        if name not in SAMPLERS or not steps.isdigit() or int(steps) < 1:
            raise SystemExit(f"--also {value}: expected SAMPLER:STEPS with SAMPLER one of {', '.join(SAMPLERS)}")
        out.append((name, int(steps)))
    return out


def measure(
    runner: tasks.TaskRunner,
    conditions: Conditions,
    waves: list[torch.Tensor],
    settings: tasks.SamplingSettings,
    seed: int,
    count: bool,
) -> dict[str, Any]:
    """One timed extraction of every wave (one batch of songs); per-phase seconds and DiT calls."""
    runner.timings = tasks.Timings()
    gens = [torch.Generator(device=runner.device).manual_seed(seed + i) for i in range(len(waves))]
    sync(runner.device)
    start = time.perf_counter()
    with count_syncs(runner.device, count) as syncs:
        cond, clap_s = conditions()
        tasks.run_task(runner, tasks.TASKS["source_extract"], cond, settings, gens, waves=waves)
        sync(runner.device)
    elapsed = time.perf_counter() - start
    tm = runner.timings
    return {
        "sampler": settings.sampler,
        "steps": settings.steps,
        "songs": len(waves),
        "seconds": round(elapsed, 3),
        "phases": {
            "clap_s": round(clap_s, 4),
            "encode_s": round(tm.encode, 4),
            "dit_s": round(tm.sample, 4),
            "decode_s": round(tm.decode, 4),
        },
        "dit_forwards": tm.model_calls,
        "windows": tm.windows,
        "ms_per_dit_forward": round(1000 * tm.sample / max(tm.model_calls, 1), 3),
        "host_syncs": syncs[0] if syncs else None,
    }


def with_bounds(
    run: dict[str, Any],
    flops_per_call: float,
    weight_bytes: int,
    bandwidth: float | None,
    peak: float | None,
    audio_seconds: float,
) -> dict[str, Any]:
    calls = run["dit_forwards"]
    dit_s = run["phases"]["dit_s"]
    weight_bound = weight_bytes * calls / (bandwidth * 1e9) if bandwidth else None
    flop_bound = flops_per_call * calls / (peak * 1e12) if peak else None
    bound = max(b for b in (weight_bound, flop_bound, 0.0) if b is not None)
    return {
        **run,
        "weight_read_bound_s": round(weight_bound, 3) if weight_bound else None,
        "flop_bound_s": round(flop_bound, 3) if flop_bound else None,
        "dit_share_of_bound": round(bound / dit_s, 4) if bound and dit_s else None,
        "real_time_factor": round(run["seconds"] / (audio_seconds * run["songs"]), 5),
        "seconds_per_minute_of_audio": round(run["seconds"] * 60.0 / (audio_seconds * run["songs"]), 3),
        "songs_per_minute": round(60.0 * run["songs"] / run["seconds"], 3),
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="full-size model (configs/model/dit.yaml) and CLAP")
    add_common_args(p, device="auto")
    p.add_argument("--precision", default=None, help="fp32 | bf16 | fp16 (default: bf16 on cuda, else fp32)")
    p.add_argument("--seconds", type=float, default=30.0, help="length of each mix to separate")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--sampler", default="ddim", choices=SAMPLERS)
    p.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="SAMPLER:STEPS",
        help="measure again with this sampler and step count (repeatable)",
    )
    p.add_argument("--cfg-scale", type=float, default=10.0)
    p.add_argument("--overlap", type=float, default=3.0)
    p.add_argument("--prompts", type=int, default=1, help="prompts separated in one batch")
    p.add_argument("--songs", type=int, default=1, help="songs extracted together in shared DiT batches")
    p.add_argument("--sequential", action="store_true", help="with --songs > 1, also time one song at a time")
    p.add_argument(
        "--clap",
        choices=["none", "small", "full"],
        default=None,
        help="CLAP model for the prompts (default: full with --full, else small)",
    )
    p.add_argument("--bandwidth-gbs", type=float, default=None, help="peak memory bandwidth for the bound")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compile", action="store_true", help="torch.compile the DiT (CUDA graphs on CUDA)")
    p.add_argument("--no-count-syncs", action="store_true", help="CUDA: do not count host syncs")
    return p


def build_models(
    args: argparse.Namespace, cfg: dict, device: torch.device, dtype: torch.dtype | None
) -> tuple[torch.nn.Module, str, Any, float]:
    """The model (seed ``--seed``, random weights built on ``device``), the CLAP size and model (None for
    'none') and the seconds it took to build them."""
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    with torch.device(device):  # random weights initialised where they run: no 1.2 B-parameter copy
        model = build_mgeldm(cfg).eval().requires_grad_(False)
    if dtype is not None:
        model.model_dit.to(dtype)  # as the API does: weights in the compute dtype, half the bytes per forward
    clap_size = args.clap or ("full" if args.full else "small")
    clap = None if clap_size == "none" else build_clap(clap_size, int(cfg["MGELDM"]["global_cond_dim"]), device, dtype)
    sync(device)
    return model, clap_size, clap, time.perf_counter() - t0


def warm_up(
    runner: tasks.TaskRunner,
    conditions: Conditions,
    wave: torch.Tensor,
    runs: list[tuple[str, int]],
    args: argparse.Namespace,
) -> None:
    """Warm-up (kernel selection, allocator, compilation / CUDA graph capture) on one window of every batch
    shape the timed runs use, with every sampler; not timed."""
    window = wave[: runner.facts.window * runner.facts.ratio]
    shapes = [args.songs] + ([1] if args.sequential and args.songs > 1 else [])
    for name, _ in runs:
        for songs in shapes:
            measure(
                runner,
                conditions,
                [window] * songs,
                tasks.SamplingSettings(3, args.cfg_scale, 0.0, sampler=name),
                args.seed,
                False,
            )


def dit_costs(
    dit: torch.nn.Module, device: torch.device, dtype: torch.dtype | None, bandwidth_gbs: float | None
) -> dict[str, Any]:
    """The DiT's parameters and weight bytes, and the device's bandwidth and dense peak (the bounds' inputs)."""
    dit_params = sum(x.numel() for x in dit.parameters())
    weight_bytes = sum(x.numel() * x.element_size() for x in dit.parameters())
    name, peak = device_peak(device, dtype or torch.float32)
    bandwidth = bandwidth_gbs or next((v for k, v in KNOWN_BANDWIDTH.items() if k in name), None)
    return {"dit_params": dit_params, "dit_weight_bytes": weight_bytes, "bandwidth_gbs": bandwidth, "peak_tflops": peak}


def windows_per_song(runner: tasks.TaskRunner, samples: int, overlap_s: float) -> int:
    frames = math.ceil(samples / runner.facts.ratio)
    overlap = overlap_frames(overlap_s, runner.facts.frame_rate, runner.facts.window)
    return len(plan_windows(frames, runner.facts.window, overlap))


def time_runs(
    runner: tasks.TaskRunner,
    dit: torch.nn.Module,
    conditions: Conditions,
    waves: list[torch.Tensor],
    runs: list[tuple[str, int]],
    args: argparse.Namespace,
    costs: dict[str, Any],
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Every (sampler, steps) run on all the songs together, then (``--sequential``) one song at a time."""
    cfg_factor = 2 if args.cfg_scale != 1.0 else 1

    def run(sampler: str, steps: int, songs: list[torch.Tensor]) -> dict[str, Any]:
        settings = tasks.SamplingSettings(steps, args.cfg_scale, args.overlap, 1, sampler=sampler)
        flops = forward_flops(dit, cfg_factor * args.prompts * len(songs), runner.facts.window)
        result = measure(runner, conditions, songs, settings, args.seed, not args.no_count_syncs)
        return with_bounds(
            result, flops, costs["dit_weight_bytes"], costs["bandwidth_gbs"], costs["peak_tflops"], args.seconds
        )

    results = [run(sampler, steps, waves) for sampler, steps in runs]
    sequential = None
    if args.sequential and args.songs > 1:
        one = [run(args.sampler, args.steps, [w]) for w in waves]
        total = sum(r["seconds"] for r in one)
        sequential = {
            "seconds": round(total, 3),
            "songs_per_minute": round(60.0 * len(one) / total, 3),
            "dit_forwards": sum(r["dit_forwards"] for r in one),
        }
    return results, sequential


def song_waves(samples: int, songs: int, seed: int) -> list[torch.Tensor]:
    """``songs`` random mono waves of ``samples`` samples (amplitude 0.1), drawn from one generator seeded ``seed``."""
    g = torch.Generator().manual_seed(seed)
    return [0.1 * torch.randn(samples, generator=g) for _ in range(songs)]


def peak_memory_bytes(device: torch.device) -> int:
    """CUDA: the peak allocated bytes since the reset; CPU: the process's peak resident set size."""
    peak_mem = (
        torch.cuda.max_memory_allocated(device)
        if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    return int(peak_mem)


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)

    apply_threads(args.threads)
    also = parse_also(args.also)
    device = resolve_device(args.device)
    precision = args.precision or ("bf16" if device.type == "cuda" else "fp32")
    dtype = compute_dtype(precision)
    cfg = full_config() if args.full else small_config()
    model, clap_size, clap, build_s = build_models(args, cfg, device, dtype)

    runner = tasks.TaskRunner(model, device=device, autocast_dtype=dtype, compile=args.compile)
    conditions = Conditions(clap, args.prompts, runner.model.cond_dim, device, args.seed)
    samples = int(args.seconds * runner.facts.sample_rate)
    waves = song_waves(samples, args.songs, args.seed)
    runs = [(args.sampler, args.steps)] + also
    warm_up(runner, conditions, waves[0], runs, args)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    costs = dit_costs(model.model_dit, device, dtype, args.bandwidth_gbs)
    windows = windows_per_song(runner, samples, args.overlap)
    results, sequential = time_runs(runner, model.model_dit, conditions, waves, runs, args, costs)
    peak_mem = peak_memory_bytes(device)
    return emit(
        "infer_source_extract",
        {
            "model": "full" if args.full else "small",
            "weights": "random",
            "clap": clap_size if clap else "none",
            "compile": args.compile,
            "precision": precision,
            "audio_seconds": args.seconds,
            "prompts": args.prompts,
            "songs": args.songs,
            "cfg_scale": args.cfg_scale,
            "overlap_s": args.overlap,
            "windows_per_song": windows,
            **costs,
            "bound_formulas": dict(BOUND_FORMULAS),
            "runs": results,
            "sequential": sequential,
            "peak_memory_bytes": peak_mem,
            "peak_memory_kind": "cuda_max_allocated" if device.type == "cuda" else "max_rss",
            "build_s": round(build_s, 2),
        },
        device,
    )


if __name__ == "__main__":
    main()
