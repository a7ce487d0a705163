"""What every benchmark shares: the ``--device`` and ``--threads`` options, the description of the hardware,
and the one JSON object each prints (its name under ``benchmark``, its numbers, the hardware under ``hardware``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]


def fixture_dir(env_var: str, name: str) -> Path:
    """A fixture set's folder: ``env_var`` or ../shared/fixtures/``name`` beside the repository (as the tests)."""
    return Path(os.environ.get(env_var, REPO.parent / "shared" / "fixtures" / name))


def tiny_clap_config(root: Path) -> dict[str, Any]:
    """The laion_clap conditioner config of the tiny CLAP fixture set at ``root``, from its README.json."""
    r = json.loads((root / "README.json").read_text())
    return {
        "clap_ckpt_path": str(root / r["checkpoint"]["file"]),
        "tokenizer_path": str(root / r["tokenizer"]["dir"]),
        "audio": r["audio_cfg"],
        "htsat": r["htsat_tiny_used"],
        "text": r["text_config_tiny_used"],
        "audio_embed_dim": r["clap_embed_dim_config"]["tiny_used"],
        "joint_embed_dim": r["joint_embed_shape"],
        "max_text_length": int(re.search(r"max_length=(\d+)", r["tokenizer"]["call"]).group(1)),
    }


def add_common_args(parser: argparse.ArgumentParser, device: str = "cpu") -> None:
    parser.add_argument("--device", default=device, help=f"torch device (default {device})")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")


def apply_threads(threads: int) -> None:
    if threads < 0:
        raise SystemExit(f"--threads={threads}: expected an integer >= 0")
    if threads:
        torch.set_num_threads(threads)


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model() if device.type == "cpu" else device.type


def hardware(device: torch.device | str) -> dict[str, Any]:
    """CPU model and cores, torch threads, torch / CUDA versions and the device the benchmark ran on."""
    return {
        "device": str(device),
        "device_name": device_name(device),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
    }


def emit(name: str, result: dict[str, Any], device: torch.device | str) -> dict[str, Any]:
    """Print ONE JSON object: ``{"benchmark": name, **result, "hardware": ...}``; returns it."""
    out = {"benchmark": name, **result, "hardware": hardware(device)}
    print(json.dumps(out), flush=True)
    return out
