"""The DiT's grouped 1x1 convolutions (the CLAP projection ``to_global_embed`` and a block's modulation) in
training (forward + backward) and in inference (forward), computed four ways and interleaved in one process
so that a busy machine slows them alike: ``mgeldm`` (mgeldm.models.dit.grouped_conv1x1: the grouped conv
when autograd records, one bmm when not), ``einsum`` (the formulation it replaced, whose backward cloned the
weight gradient into the parameter's layout), ``conv1d`` (the original's grouped Conv1d) and ``bmm`` (one
batched matmul over a view of the weight). Median milliseconds per call over ``--repeats`` rounds and each
one's ratio to the einsum's. Prints one JSON object.

    python benchmarks/bench_grouped_conv.py --threads 1
    python benchmarks/bench_grouped_conv.py --config full --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_dit import SMALL, load_config, sync  # noqa: E402
from benchlib import add_common_args, apply_threads, emit  # noqa: E402
from mgeldm.models.dit import grouped_conv1x1  # noqa: E402


def einsum_conv1x1(x: torch.Tensor, conv: torch.nn.Conv1d) -> torch.Tensor:
    k = conv.groups
    w = conv.weight.view(k, conv.out_channels // k, conv.in_channels // k)
    y = torch.einsum("bki,koi->bko", x.reshape(x.shape[0], k, -1), w).reshape(x.shape[0], -1)
    return y if conv.bias is None else y + conv.bias


def conv1d_conv1x1(x: torch.Tensor, conv: torch.nn.Conv1d) -> torch.Tensor:
    return F.conv1d(x[:, :, None], conv.weight, conv.bias, groups=conv.groups)[:, :, 0]


def bmm_conv1x1(x: torch.Tensor, conv: torch.nn.Conv1d) -> torch.Tensor:
    k, b = conv.groups, x.shape[0]
    w = conv.weight.view(k, conv.out_channels // k, conv.in_channels // k)
    y = torch.bmm(w, x.reshape(b, k, -1).permute(1, 2, 0)).permute(2, 0, 1).reshape(b, -1)
    return y if conv.bias is None else y + conv.bias


FORMULATIONS = {"mgeldm": grouped_conv1x1, "einsum": einsum_conv1x1, "conv1d": conv1d_conv1x1, "bmm": bmm_conv1x1}


def layers(cfg: dict, device: torch.device) -> dict[str, torch.nn.Conv1d]:
    """The grouped convs of the config: the two CLAP projection layers and one block's modulation."""
    k, g, e = cfg["num_tracks"], cfg["global_cond_dim"], cfg["embed_dim"]
    with torch.device(device):
        return {
            "to_global_embed.1": torch.nn.Conv1d(k * g, k * g, 1, groups=k, bias=False),
            "to_global_embed.3": torch.nn.Conv1d(k * g, k * e, 1, groups=k, bias=False),
            "modulation": torch.nn.Conv1d(k * e, 6 * k * e, 1, groups=k, bias=False),
        }


def time_layer(conv: torch.nn.Conv1d, batch: int, device: torch.device, repeats: int, mode: str) -> dict[str, float]:
    """Median ms per formulation, interleaved, of: ``forward`` (no autograd), ``train`` (forward + backward to
    the weight, the input a constant as the CLAP vectors are) or ``train_input`` (the input's gradient too)."""
    x = torch.randn(batch, conv.in_channels, device=device, requires_grad=mode == "train_input")
    grad = torch.randn(batch, conv.out_channels, device=device)
    times: dict[str, list[float]] = {name: [] for name in FORMULATIONS}
    for i in range(repeats + 3):
        order = list(FORMULATIONS) if i % 2 else list(FORMULATIONS)[::-1]
        for name in order:
            sync(device)
            start = time.perf_counter()
            if mode == "forward":
                with torch.no_grad():
                    FORMULATIONS[name](x, conv)
            else:
                FORMULATIONS[name](x, conv).backward(grad)
            sync(device)
            if i >= 3:  # the first rounds warm up
                times[name].append(time.perf_counter() - start)
            conv.weight.grad = x.grad = None
    return {name: round(1e3 * statistics.median(v), 4) for name, v in times.items()}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", choices=["small", "full"], default="small", help="bench_dit.py's configs")
    add_common_args(p)
    p.add_argument("--batch", default="2,8", help="comma-separated batch sizes")
    p.add_argument("--repeats", type=int, default=100)
    args = p.parse_args(argv)

    apply_threads(args.threads)
    device = torch.device(args.device)
    cfg = load_config(args.config)
    torch.manual_seed(0)
    convs = layers(cfg, device)
    # How each layer runs in training: the CLAP vectors are data (no input gradient), the rest are not.
    training = {"to_global_embed.1": "train", "to_global_embed.3": "train_input", "modulation": "train_input"}
    results = {}
    for batch in (int(b) for b in args.batch.split(",")):
        for phase in ("training", "inference"):
            per_layer = {
                name: time_layer(
                    conv, batch, device, args.repeats, training[name] if phase == "training" else "forward"
                )
                for name, conv in convs.items()
            }
            total = {f: round(sum(r[f] for r in per_layer.values()), 4) for f in FORMULATIONS}
            results[f"{phase}_batch_{batch}"] = {
                "ms": per_layer,
                "total_ms": total,
                "ratio_to_einsum": {f: round(total[f] / total["einsum"], 3) for f in total},
            }
    return emit(
        "grouped_conv",
        {"config": args.config, "model": {k: cfg[k] for k in SMALL}, "repeats": args.repeats, "results": results},
        device,
    )


if __name__ == "__main__":
    main()
