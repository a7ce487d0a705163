"""Benchmark the three-track DiT: forward (inference) and forward+backward (training) throughput.

Prints ONE JSON object. Default: a small config on CPU, float32. ``--config full`` is the paper size
(configs/model/dit.yaml MGELDM node, B=64, T=100). Mixed precision (``--dtype bf16|fp16``) runs under
autocast with float32 weights, as training does. No optimizer step is timed.

FLOPs counted (per step, N = T + 1 tokens per sample, D = width, L = depth):
  forward  = 2 * P_tok * B * N + 4 * L * B * N^2 * D      (matmuls of per-token weights + QK^T and AV)
  training = 3 * forward                                     (backward = 2 x forward)
P_tok = weights applied to every token (qkv, out, FF, project_in/out, pre/post conv); the per-sample
modulation / timestep / CLAP MLPs are excluded (they act on B vectors, not B*N tokens).
MFU = training TFLOP/s / dense peak of the device for the dtype (null on CPU or unknown devices).

``condition_mlps_forward_backward_s`` times the per-sample part alone (timestep and CLAP grouped MLPs and
every block's modulation), forward + backward.

    python benchmarks/bench_dit.py --threads 1
    python benchmarks/bench_dit.py --config full --device cuda --dtype bf16 --compile
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from benchlib import add_common_args, apply_threads, device_name, emit  # noqa: E402
from mgeldm.models.dit import MGEDiT, _run_grouped_mlp, build_dit  # noqa: E402

SMALL = {  # CPU-friendly: same structure and head dim (32), narrower and shallower
    "io_channels": 64,
    "num_tracks": 3,
    "embed_dim": 128,
    "global_cond_dim": 512,
    "timestep_features_dim": 256,
    "depth": 4,
    "num_heads": 12,
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Dense tensor-core peaks in TFLOP/s for bf16/fp16 (no sparsity).
PEAKS = [
    ("H100 PCIe", 756.0),
    ("H100", 989.0),
    ("H200", 989.0),
    ("H800", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("A10G", 70.0),
    ("4090", 165.0),
]


def load_config(name: str) -> dict:
    if name == "small":
        return dict(SMALL)
    from omegaconf import OmegaConf

    node = OmegaConf.load(ROOT / "configs" / "model" / "dit.yaml").MGELDM
    return dict(OmegaConf.to_container(node, resolve=True))


def per_token_params(model: MGEDiT) -> int:
    n = model.transformer.project_in.weight.numel() + model.transformer.project_out.weight.numel()
    n += model.preprocess_conv.weight.numel() + model.postprocess_conv.weight.numel()
    for layer in model.transformer.layers:
        n += layer.self_attn.to_qkv.weight.numel() + layer.self_attn.to_out.weight.numel()
        n += layer.ff.ff[0].proj.weight.numel() + layer.ff.ff[2].weight.numel()
    return n


def forward_flops(model: MGEDiT, batch: int, frames: int) -> int:
    """Matmul FLOPs of one forward of ``batch`` windows of ``frames`` frames (N = frames + 1 tokens)."""
    n = frames + 1
    return 2 * per_token_params(model) * batch * n + 4 * model.depth * batch * n * n * model.dim


def device_peak(device: torch.device, dtype: torch.dtype) -> tuple[str, float | None]:
    """(device name, dense bf16/fp16 peak TFLOP/s or None)."""
    name = device_name(device)
    if device.type != "cuda" or dtype not in (torch.bfloat16, torch.float16):
        return name, None
    for key, peak in PEAKS:
        if key in name and (key != "H100" or "PCIe" not in name):
            return name, peak
    return name, None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, warmup: int, steps: int) -> float:
    """Mean seconds per call of ``fn`` after ``warmup`` calls; CUDA peak memory counts from after the warm-up."""
    for _ in range(warmup):
        fn()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return (time.perf_counter() - start) / steps


def condition_mlps(model: MGEDiT, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """The per-sample condition path: timestep and CLAP grouped MLPs, then every block's modulation."""
    b = t.shape[0]
    temb = _run_grouped_mlp(model.to_timestep_embed, model.timestep_features(t).reshape(b, -1))
    c = _run_grouped_mlp(model.to_global_embed, cond.reshape(b, -1))
    return temb.sum() + sum(layer.modulation(c).sum() for layer in model.transformer.layers)


def add_dit_args(parser: argparse.ArgumentParser) -> None:
    """The options of the DiT benchmarks (this one and bench_train.py): the model, the batch and the timing."""
    parser.add_argument("--config", choices=["small", "full"], default="small")
    add_common_args(parser)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="default: fp32 on CPU, bf16 on CUDA")
    parser.add_argument("--batch", type=int, default=None, help="default: 4 (small), 64 (full)")
    parser.add_argument("--frames", type=int, default=100, help="latent frames T")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--checkpointing", action="store_true", help="activation checkpointing in training")
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)


def run_settings(args: argparse.Namespace) -> tuple[torch.device, torch.dtype, int, int, int]:
    """The device, dtype, batch, warm-up and timed steps of ``args`` with their defaults (TF32 on CUDA)."""
    apply_threads(args.threads)
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype or ("bf16" if device.type == "cuda" else "fp32")]
    batch = args.batch or (4 if args.config == "small" else 64)
    warmup = args.warmup if args.warmup is not None else (5 if args.compile else 2)
    steps = args.steps or (10 if device.type == "cuda" else 3)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device, dtype, batch, warmup, steps


def peak_memory_mb(device: torch.device) -> float:
    """CUDA: the peak allocated memory since the last reset; CPU: the process's peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_model(cfg: dict, checkpointing: bool, device: torch.device) -> tuple[MGEDiT, torch.Generator]:
    """The DiT with every weight nudged (seed 0), so that the zero-initialised branches do real work, and the
    generator it drew from (the inputs come next from it)."""
    torch.manual_seed(0)
    model = build_dit(cfg).to(device)
    model.gradient_checkpointing = checkpointing
    gen = torch.Generator(device=device).manual_seed(0)
    # Randomise the zero-initialised branches so every path does real work.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=gen, device=device))
    return model, gen


def random_inputs(
    model: MGEDiT, batch: int, frames: int, gen: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Latents x, per-track times t and CLAP conditions, drawn in that order."""
    k, c = model.num_tracks, model.io_channels
    x = torch.randn(batch, k * c, frames, generator=gen, device=device)
    t = torch.rand(batch, k, generator=gen, device=device)
    cond = torch.randn(batch, k, model.global_cond_dim, generator=gen, device=device)
    return x, t, cond


def flash_usable(
    model: MGEDiT, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, amp, device: torch.device, dtype: torch.dtype
) -> bool | None:
    """Whether the flash kernel runs for our q/k/v layout (None on CPU or in float32)."""
    if device.type != "cuda" or dtype == torch.float32:
        return None
    from torch.nn.attention import SDPBackend, sdpa_kernel

    try:
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION), torch.no_grad(), amp:
            model(x[:2], t[:2], cond[:2])
        return True
    except RuntimeError:
        return False


def time_steps(
    model: MGEDiT, run, inputs: tuple[torch.Tensor, ...], amp, device: torch.device, warmup: int, steps: int
) -> tuple[float, float, float]:
    """Seconds per forward (inference), per forward + backward (training) and per condition-MLP step."""
    x, t, cond = inputs

    def forward() -> None:
        with torch.no_grad(), amp:
            run(x, t, cond)

    def train_step() -> None:
        with amp:
            out = run(x, t, cond, cfg_dropout_prob=0.4)
            loss = (out.float() - x).square().mean()
        loss.backward()
        for p in model.parameters():
            p.grad = None

    def condition_step() -> None:
        with amp:
            condition_mlps(model, t, cond).backward()
        for p in model.parameters():
            p.grad = None

    t_fwd = timed(forward, device, warmup, steps)
    model.train()
    t_train = timed(train_step, device, warmup, steps)
    t_cond = timed(condition_step, device, warmup, steps)
    return t_fwd, t_train, t_cond


def report(
    args: argparse.Namespace,
    cfg: dict,
    model: MGEDiT,
    device: torch.device,
    dtype: torch.dtype,
    batch: int,
    flash: bool | None,
    times: tuple[float, float, float],
    peak_mb: float,
) -> dict:
    """The JSON object's numbers: the settings, the times, the throughput, the memory, TFLOP/s and MFU."""
    t_fwd, t_train, t_cond = times
    fwd_flops = forward_flops(model, batch, args.frames)
    train_flops = 3 * fwd_flops
    _, peak = device_peak(device, dtype)
    train_tflops = train_flops / t_train / 1e12
    return {
        "dtype": str(dtype).replace("torch.", ""),
        "autocast": dtype != torch.float32,
        "config": args.config,
        "model": {k_: cfg[k_] for k_ in SMALL},
        "params": sum(p.numel() for p in model.parameters()),
        "params_per_token": per_token_params(model),
        "batch": batch,
        "frames": args.frames,
        "seq_len": args.frames + 1,
        "compile": args.compile,
        "flash_attention_usable": flash,
        "activation_checkpointing": args.checkpointing,
        "forward_s": round(t_fwd, 6),
        "forward_backward_s": round(t_train, 6),
        "condition_mlps_forward_backward_s": round(t_cond, 6),
        "samples_per_s_forward": round(batch / t_fwd, 3),
        "samples_per_s_train": round(batch / t_train, 3),
        "peak_memory_mb": round(peak_mb, 1),
        "peak_memory_kind": "cuda max_memory_allocated (train)" if device.type == "cuda" else "process max RSS",
        "forward_tflops": round(fwd_flops / t_fwd / 1e12, 4),
        "train_tflops": round(train_tflops, 4),
        "device_peak_tflops": peak,
        "mfu": round(train_tflops / peak, 4) if peak else None,
        "flop_formula": "train = 3 * (2*P_tok*B*N + 4*L*B*N^2*D); P_tok = per-token matmul weights, N = T+1",
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_dit_args(parser)
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    device, dtype, batch, warmup, steps = run_settings(args)
    cfg = load_config(args.config)
    model, gen = build_model(cfg, args.checkpointing, device)
    run = torch.compile(model) if args.compile else model
    inputs = random_inputs(model, batch, args.frames, gen, device)
    amp = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

    model.eval()
    flash = flash_usable(model, *inputs, amp, device, dtype)
    times = time_steps(model, run, inputs, amp, device, warmup, steps)
    peak_mb = peak_memory_mb(device)
    return emit("dit", report(args, cfg, model, device, dtype, batch, flash, times, peak_mb), device)


if __name__ == "__main__":
    main()
