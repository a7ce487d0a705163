"""Benchmark the full DiT training step of the training module: data loading, Sobol/dropout/noise, the
docs/compatibility.md#dit-training loss, backward, the finite-loss check (one host sync), clipping, AdamW +
InverseLR and the EMA.
By default the step is driven by a plain loop doing what ``DiTTrainingModule.training_step`` does;
``--lightning`` runs the real Lightning loop (train_dit.py's) with its precision plugin instead.

Prints ONE JSON object. Default: the small config of bench_dit.py on CPU, fp32. ``--config full`` is
the paper size (B=64 per device, T=100); ``--dtype bf16`` is Lightning's ``bf16-mixed``. FLOPs and
MFU use bench_dit.py's formula (imported, not copied): training = 3 x forward matmul FLOPs; the loss,
optimizer and EMA are extra work on top, so they count against MFU.

``--profile N`` adds a per-op profile of N more steps (torch.profiler; top ops by self time on the device).

    python benchmarks/bench_train.py --threads 1
    python benchmarks/bench_train.py --config full --device cuda --dtype bf16 [--compile] [--profile 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pytorch_lightning as pl
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_dit import (
    SMALL,
    add_dit_args,
    device_peak,
    forward_flops,
    peak_memory_mb,
    run_settings,  # noqa: E402
    sync,
    timed,
)
from benchlib import emit  # noqa: E402
from mgeldm.training.dit_module import DiTTrainingModule  # noqa: E402
from mgeldm.training.fake_data import FakeLatentDataset  # noqa: E402


def load_config(name: str) -> dict:
    """bench_dit's configs, read with plain YAML (no OmegaConf needed on the GPU machine)."""
    if name == "small":
        return dict(SMALL)
    import yaml

    return dict(yaml.safe_load((ROOT / "configs" / "model" / "dit.yaml").read_text())["MGELDM"])


class _Holder(torch.nn.Module):
    def __init__(self, cfg: dict) -> None:
        super().__init__()
        from mgeldm.models.dit import build_dit

        self.model_dit = build_dit(cfg)


class _StepTimer(pl.Callback):
    """Lightning callback: wall time of the optimizer steps after ``warmup`` (device synced)."""

    def __init__(self, warmup: int, device: torch.device) -> None:
        self.warmup, self.device, self.t0, self.t1, self.s0, self.s1 = warmup, device, None, None, 0, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.t0 is None and trainer.global_step >= self.warmup:
            sync(self.device)
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.device)
            self.t0, self.s0 = time.perf_counter(), trainer.global_step

    def on_train_end(self, trainer, pl_module) -> None:
        sync(self.device)
        self.t1, self.s1 = time.perf_counter(), trainer.global_step


def _plain_loop(
    module: DiTTrainingModule,
    loader,
    device: torch.device,
    dtype: torch.dtype,
    warmup: int,
    steps: int,
    profile_steps: int = 0,
) -> tuple[float, list[dict] | None]:
    """Seconds per step of what ``training_step`` does, without Lightning (bf16/fp32 autocast, no scaler),
    and the per-op profile of ``profile_steps`` more steps (None when 0)."""
    import itertools

    module.to(device)
    module.setup_rng(device)
    opt, sch = (lambda o, s: (o[0], s[0]["scheduler"]))(*module.configure_optimizers())
    dit = module.diffusion.model_dit
    clip = float(module.recipe["grad_clip_norm"])
    batches = itertools.cycle(loader)
    amp = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    module.train()

    def step() -> None:
        b = {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in next(batches).items()}
        with amp:
            loss = module.compute_loss(b)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if not torch.isfinite(loss).item():  # the module's finite check: one host sync per step
            opt.zero_grad(set_to_none=True)
            return
        torch.nn.utils.clip_grad_norm_(dit.parameters(), clip)
        opt.step()
        sch.step()
        module.diffusion_ema.update()

    seconds = timed(step, device, warmup, steps)
    return seconds, (profile_ops(step, device, profile_steps) if profile_steps else None)


def profile_ops(step, device: torch.device, steps: int, top: int = 25) -> list[dict]:
    """The ``top`` ops by self time (device time on CUDA, CPU time otherwise) over ``steps`` calls of ``step``."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        sync(device)
    events = prof.key_averages()
    names = ("self_device_time_total", "self_cuda_time_total") if device.type == "cuda" else ("self_cpu_time_total",)
    key = next((k for k in names if events and hasattr(events[0], k)), "self_cpu_time_total")  # older torch: cuda
    rows = sorted(events, key=lambda e: getattr(e, key, 0.0), reverse=True)[:top]
    total = sum(getattr(e, key, 0.0) for e in events) or 1.0
    return [
        {
            "op": e.key,
            "calls": e.count,
            "self_ms_per_step": round(getattr(e, key, 0.0) / 1e3 / steps, 4),
            "share": round(getattr(e, key, 0.0) / total, 4),
        }
        for e in rows
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_dit_args(parser)
    parser.add_argument("--workers", type=int, default=None, help="data loader workers (default 4 on CUDA, 0 on CPU)")
    parser.add_argument("--lightning", action="store_true", help="time the Lightning loop instead of the plain one")
    parser.add_argument("--profile", type=int, default=0, help="per-op profile of this many extra steps (plain loop)")
    return parser


def build_module(
    cfg: dict, args: argparse.Namespace, batch: int, workers: int, device: torch.device
) -> tuple[DiTTrainingModule, torch.utils.data.DataLoader]:
    """The training module (seed 0) and a loader of fake latents the size of ``args``."""
    torch.manual_seed(0)
    module = DiTTrainingModule(_Holder(cfg), {"compile": args.compile, "activation_checkpointing": args.checkpointing})
    dit = module.diffusion.model_dit
    data = FakeLatentDataset(
        max(batch * 8, 64), channels=dit.io_channels, frames=args.frames, clap_dim=dit.global_cond_dim
    )
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=batch,
        drop_last=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
    )
    return module, loader


def _lightning_loop(
    module: DiTTrainingModule, loader, device: torch.device, dtype: torch.dtype, warmup: int, steps: int
) -> float:
    """Seconds per optimizer step of train_dit.py's Lightning loop (its precision plugin), after ``warmup``."""
    timer = _StepTimer(warmup, device)
    precision = {torch.float32: "32-true", torch.bfloat16: "bf16-mixed", torch.float16: "16-mixed"}[dtype]
    trainer = pl.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        precision=precision,
        max_steps=warmup + steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
        log_every_n_steps=50,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, loader)
    return (timer.t1 - timer.t0) / max(1, timer.s1 - timer.s0)


def report(
    args: argparse.Namespace,
    cfg: dict,
    dit,
    device: torch.device,
    dtype: torch.dtype,
    batch: int,
    workers: int,
    t_step: float,
    ops: list[dict] | None,
    peak_mb: float,
) -> dict:
    """The JSON object's numbers: the settings, the step time, the throughput, TFLOP/s, MFU and the memory."""
    train_flops = 3 * forward_flops(dit, batch, args.frames)
    _, peak = device_peak(device, dtype)
    tflops = train_flops / t_step / 1e12
    return {
        "dtype": str(dtype).replace("torch.", ""),
        "config": args.config,
        "model": {k: cfg[k] for k in SMALL},
        "params": sum(p.numel() for p in dit.parameters()),
        "batch": batch,
        "frames": args.frames,
        "compile": args.compile,
        "activation_checkpointing": args.checkpointing,
        "data_workers": workers,
        "loop": "lightning" if args.lightning else "plain",
        "step_includes": [
            "data",
            "sobol+dropout+noise",
            "loss",
            "backward",
            "finite check",
            "clip",
            "adamw",
            "inverse_lr",
            "ema",
        ],
        "step_s": round(t_step, 6),
        "samples_per_s": round(batch / t_step, 3),
        "train_flops_per_sample": train_flops / batch,
        "train_tflops": round(tflops, 4),
        "mfu": round(tflops / peak, 4) if peak else None,
        "peak_tflops": peak,
        "flop_formula": "train = 3 * (2*P_tok*B*N + 4*L*B*N^2*D); P_tok = per-token matmul weights, N = T+1",
        "peak_memory_mb": round(peak_mb, 1),
        "peak_memory_kind": "cuda max_memory_allocated" if device.type == "cuda" else "process max RSS",
        "profile": ops,
    }


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)

    device, dtype, batch, warmup, steps = run_settings(args)
    workers = args.workers if args.workers is not None else (4 if device.type == "cuda" else 0)

    cfg = load_config(args.config)
    module, loader = build_module(cfg, args, batch, workers, device)
    dit = module.diffusion.model_dit
    if args.lightning:
        t_step, ops = _lightning_loop(module, loader, device, dtype, warmup, steps), None
    else:
        t_step, ops = _plain_loop(module, loader, device, dtype, warmup, steps, args.profile)
    peak_mb = peak_memory_mb(device)
    return emit("train_dit", report(args, cfg, dit, device, dtype, batch, workers, t_step, ops, peak_mb), device)


if __name__ == "__main__":
    main()
