"""Solver error of each sampler against a 1,000-step DDIM solution from the same noise, as a function of
the step count, on a few windows of the released model's geometry (64 latent channels x 3 tracks x 100
frames, random weights: this measures how well each solver follows the ODE, nothing about audio quality).

The default task is source extraction (the mix track given and clean, text on the source track, CFG 10):
the error is taken over the generated tracks' x0 (submix and source), as an RMS relative to the
reference's RMS. ``matching_steps`` is, for each sampler, the fewest steps whose error is no larger than
DDIM's at 200 steps (or at the largest DDIM step count measured), with its number of DiT calls.

Default: the full geometry with a narrow, shallow DiT (see ``dit`` in the JSON) so that 1,000 steps run on
a CPU in about a minute; ``--full`` uses the released DiT (configs/model/dit.yaml), for a GPU:

    python benchmarks/bench_samplers.py --threads 2
    python benchmarks/bench_samplers.py --full --device cuda

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from benchlib import add_common_args, apply_threads, emit  # noqa: E402
from mgeldm.diffusion.samplers import SAMPLERS, Known, denoiser_calls  # noqa: E402
from mgeldm.diffusion.schedule import sampling_times  # noqa: E402
from mgeldm.inputs import compute_dtype  # noqa: E402
from mgeldm.models.dit import build_dit  # noqa: E402

# The released geometry (channels, tracks, condition width) with a narrow, shallow transformer.
REDUCED = {
    "io_channels": 64,
    "num_tracks": 3,
    "embed_dim": 64,
    "global_cond_dim": 512,
    "timestep_features_dim": 256,
    "depth": 2,
    "num_heads": 6,
}
STEPS = "5,10,20,30,40,50,100,200"
MATCH_DDIM_STEPS = 200


def dit_config(full: bool) -> dict:
    if not full:
        return dict(REDUCED)
    return dict(yaml.safe_load((ROOT / "configs" / "model" / "dit.yaml").read_text())["MGELDM"])


def random_dit(cfg: dict, device: torch.device, seed: int) -> torch.nn.Module:
    """The DiT with its initialisation plus N(0, 0.02^2) on every weight, so the zero-initialised branches
    (attention and FF outputs, the modulation) take part, as in bench_dit.py."""
    torch.manual_seed(seed)
    with torch.device(device):
        model = build_dit(cfg)
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=gen, device=device))
    return model.eval().requires_grad_(False)


def make_denoiser(model, embed: torch.Tensor, cfg_scale: float, dtype: torch.dtype | None, calls: list[int]):
    def denoiser(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        with torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None):
            return model(x, t, embed, cfg_scale=cfg_scale).float()

    return denoiser


def solve(denoiser, noise: torch.Tensor, given: torch.Tensor | None, sampler: str, steps: int, num_tracks: int):
    known = Known(num_tracks, given_track=None if given is None else 0, given_z=given)
    return SAMPLERS[sampler](denoiser, noise, sampling_times(steps), known)


def errors(x0: torch.Tensor, ref: torch.Tensor, rows: slice) -> dict[str, float]:
    diff = (x0[:, rows] - ref[:, rows]).double()
    rms = diff.square().mean().sqrt().item()
    return {
        "rms_error": rms,
        "relative_rms_error": rms / ref[:, rows].double().square().mean().sqrt().item(),
        "max_abs_error": diff.abs().max().item(),
    }


def matching_steps(table: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """For each sampler, the fewest steps whose error is at most DDIM's at MATCH_DDIM_STEPS (or its largest)."""
    ddim = {r["steps"]: r["relative_rms_error"] for r in table.get("ddim", [])}
    if not ddim:
        return {}
    target_steps = MATCH_DDIM_STEPS if MATCH_DDIM_STEPS in ddim else max(ddim)
    target = ddim[target_steps]
    out: dict[str, Any] = {"ddim_steps": target_steps, "ddim_relative_rms_error": target}
    for name, rows in table.items():
        ok = [r for r in rows if r["relative_rms_error"] <= target]
        best = min(ok, key=lambda r: r["steps"]) if ok else None
        out[name] = {"steps": best["steps"], "dit_calls": best["dit_calls"]} if best else None
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="the released DiT (configs/model/dit.yaml)")
    add_common_args(p)
    p.add_argument("--precision", default="fp32", help="fp32 (default) | bf16 | fp16 (autocast of the DiT)")
    p.add_argument("--windows", type=int, default=2, help="windows sampled together (one batch)")
    p.add_argument("--frames", type=int, default=100, help="latent frames per window")
    p.add_argument("--steps", default=STEPS, help="comma-separated step counts")
    p.add_argument("--reference-steps", type=int, default=1000)
    p.add_argument("--samplers", default=",".join(SAMPLERS))
    p.add_argument("--task", choices=["source_extract", "total_gen"], default="source_extract")
    p.add_argument("--cfg-scale", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--depth", type=int, default=None, help="override the DiT depth")
    p.add_argument("--embed-dim", type=int, default=None, help="override the DiT width per track")
    return p


def parse_lists(args: argparse.Namespace) -> tuple[list[int], list[str]]:
    """The step counts (sorted, unique) and the samplers of ``--steps`` and ``--samplers``, checked."""
    steps_list = sorted({int(s) for s in args.steps.split(",") if s.strip()})
    samplers = [s.strip() for s in args.samplers.split(",") if s.strip()]
    unknown = sorted(set(samplers) - set(SAMPLERS))
    if unknown or not steps_list or min(steps_list) < 2:
        raise SystemExit(f"--samplers from {', '.join(SAMPLERS)} (got {unknown}); --steps integers >= 2")
    return steps_list, samplers


def random_inputs(
    model, args: argparse.Namespace, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The noise, the text embedding (a unit vector on the conditioned track) and, for source extraction, the
    given mix track, drawn in that order from seed ``--seed`` + 1."""
    k, c = model.num_tracks, model.io_channels
    g = torch.Generator(device=device).manual_seed(args.seed + 1)
    b = args.windows
    noise = torch.randn(b, k * c, args.frames, generator=g, device=device)
    embed = torch.zeros(b, k, model.global_cond_dim, device=device)
    cond_track = 2 if args.task == "source_extract" else 0
    embed[:, cond_track] = torch.nn.functional.normalize(
        torch.randn(b, model.global_cond_dim, generator=g, device=device), dim=-1
    )
    given = torch.randn(b, c, args.frames, generator=g, device=device) if args.task == "source_extract" else None
    return noise, embed, given


def error_table(
    denoiser,
    calls: list[int],
    noise: torch.Tensor,
    given: torch.Tensor | None,
    rows: slice,
    samplers: list[str],
    steps_list: list[int],
    reference_steps: int,
    num_tracks: int,
) -> tuple[torch.Tensor, dict[str, list[dict[str, Any]]]]:
    """The DDIM reference solution and, per sampler, one row per step count: its DiT calls and its errors."""
    with torch.inference_mode():
        reference = solve(denoiser, noise, given, "ddim", reference_steps, num_tracks)
        table: dict[str, list[dict[str, Any]]] = {}
        for sampler in samplers:
            for steps in steps_list:
                calls[0] = 0
                x0 = solve(denoiser, noise, given, sampler, steps, num_tracks)
                assert calls[0] == denoiser_calls(sampler, steps)
                table.setdefault(sampler, []).append(
                    {
                        "steps": steps,
                        "dit_calls": calls[0],
                        **{n: float(f"{v:.4g}") for n, v in errors(x0, reference, rows).items()},
                    }
                )
    return reference, table


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)

    apply_threads(args.threads)
    device = torch.device(args.device)
    dtype = compute_dtype(args.precision)
    steps_list, samplers = parse_lists(args)
    cfg = dit_config(args.full)
    cfg.update({k: v for k, v in (("depth", args.depth), ("embed_dim", args.embed_dim)) if v is not None})
    model = random_dit(cfg, device, args.seed)
    k, c = model.num_tracks, model.io_channels
    noise, embed, given = random_inputs(model, args, device)
    rows = slice(c, k * c) if given is not None else slice(0, k * c)
    calls = [0]
    denoiser = make_denoiser(model, embed, args.cfg_scale, dtype, calls)

    start = time.perf_counter()
    reference, table = error_table(denoiser, calls, noise, given, rows, samplers, steps_list, args.reference_steps, k)
    elapsed = time.perf_counter() - start
    ref_rms = reference[:, rows].double().square().mean().sqrt().item()
    if not math.isfinite(ref_rms):
        raise SystemExit("the reference solution is not finite")
    return emit(
        "samplers",
        {
            "task": args.task,
            "cfg_scale": args.cfg_scale,
            "precision": args.precision,
            "dit": {
                **cfg,
                "weights": "random (initialisation + N(0, 0.02^2))",
                "size": "released"
                if args.full and args.depth is None and args.embed_dim is None
                else "reduced depth/width, released geometry",
            },
            "windows": args.windows,
            "frames": args.frames,
            "reference": f"ddim, {args.reference_steps} steps, same noise",
            "reference_rms": ref_rms,
            "error_over": "generated tracks' x0" if given is not None else "all tracks' x0",
            "errors": table,
            "matching_steps": matching_steps(table),
            "seconds": round(elapsed, 2),
        },
        device,
    )


if __name__ == "__main__":
    main()
