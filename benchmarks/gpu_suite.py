"""The GPU measurements of the speed issue in one run of at most five minutes on one H100/H200-class GPU,
in priority order, each its own process (a crash or a timeout costs that measurement only):

1. ``infer``: source extraction of a 3-minute song with the released-size model (random weights), 200 DDIM
   steps, CFG 10, 3 s overlap, bf16, CUDA graphs (``--compile``), timed from the loaded model to decoded
   audio with the phases (CLAP, encode, DiT, decode) and the DiT's weight-read and FLOP bounds; then the same
   song with DPM-Solver++(2M) at ``--fast-steps`` on the same loaded model;
2. ``train``: training throughput and MFU at paper size (bf16, compiled), with a per-op profile;
3. ``samplers``: the solver error of every sampler against 1,000 DDIM steps with the released DiT;
4. ``throughput``: four 3-minute songs extracted in shared batches, songs per minute.

After every measurement the JSON file (``--out``) is rewritten whole (atomically), so a run cut short keeps
what it measured. Nothing is downloaded and nothing outside the repository is read: the models are built
from configs/ with random weights. A failed compiled run is retried eagerly when time allows.

    python benchmarks/gpu_suite.py --out gpu_suite.json           # on the GPU host
    python benchmarks/gpu_suite.py --smoke --out suite_smoke.json  # the same steps at tiny sizes on a CPU
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from benchlib import hardware  # noqa: E402
from mgeldm.files import write_text_atomic  # noqa: E402

# DPM-Solver++(2M) steps whose solver error matched DDIM-200's in the CPU run of bench_samplers.py
# (docs/benchmarks.md#fast-samplers).
FAST_STEPS = 30
PACKAGES = ("torch", "yaml", "numpy", "tqdm", "safetensors", "transformers", "pytorch_lightning", "triton")


def plan(smoke: bool, device: str, fast_steps: int) -> list[dict[str, Any]]:
    """The measurements in priority order: name, script, arguments, time cap (s), eager fallback arguments."""
    return smoke_plan(device) if smoke else full_plan(device, fast_steps)


def smoke_plan(device: str) -> list[dict[str, Any]]:
    """The four steps at tiny sizes (a CPU can run them all within the smoke budget); no eager fallbacks."""
    infer = ["--device", device, "--seconds", "14", "--steps", "3", "--also", "dpmpp_2m:2", "--clap", "small"]
    return [
        {"name": "infer", "script": "bench_infer.py", "args": infer, "cap": 120},
        {
            "name": "train",
            "script": "bench_train.py",
            "cap": 120,
            "args": ["--device", device, "--batch", "2", "--warmup", "0", "--steps", "1", "--profile", "1"],
        },
        {
            "name": "samplers",
            "script": "bench_samplers.py",
            "cap": 120,
            "args": ["--device", device, "--windows", "1", "--steps", "2,4", "--reference-steps", "8"],
        },
        {
            "name": "throughput",
            "script": "bench_infer.py",
            "cap": 120,
            "args": ["--device", device, "--seconds", "14", "--steps", "2", "--songs", "2", "--clap", "none"],
        },
    ]


def full_song_args(device: str, *extra: str) -> list[str]:
    """bench_infer.py's arguments for 3-minute songs with the full-size model, bf16, 200 DDIM steps, then ``extra``."""
    return ["--full", "--device", device, "--precision", "bf16", "--seconds", "180", "--steps", "200", *extra]


def full_plan(device: str, fast_steps: int) -> list[dict[str, Any]]:
    """The four steps at paper size, compiled first, each compiled run with its eager fallback where it has one."""
    infer = full_song_args(device, "--also", f"dpmpp_2m:{fast_steps}")
    songs = full_song_args(device, "--songs", "4", "--clap", "none")
    train = ["--config", "full", "--device", device, "--dtype", "bf16", "--profile", "3"]
    return [
        {"name": "infer", "script": "bench_infer.py", "args": infer + ["--compile"], "fallback": infer, "cap": 120},
        {"name": "train", "script": "bench_train.py", "args": train + ["--compile"], "fallback": train, "cap": 120},
        {
            "name": "samplers",
            "script": "bench_samplers.py",
            "cap": 90,
            "args": ["--full", "--device", device, "--windows", "4"],
        },
        {
            "name": "throughput",
            "script": "bench_infer.py",
            "args": songs + ["--compile"],
            "fallback": songs,
            "cap": 150,
        },
    ]


def packages() -> dict[str, str | None]:
    """Which of the packages the benchmarks use are importable here (and their versions)."""
    out = {}
    for name in PACKAGES:
        if importlib.util.find_spec(name) is None:
            out[name] = None
            continue
        try:
            out[name] = str(getattr(__import__(name), "__version__", "present"))
        except Exception as exc:  # a broken install is a finding, not a crash
            out[name] = f"import fails: {type(exc).__name__}"
    return out


def last_json(text: str) -> dict[str, Any] | None:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


def run_step(script: str, args: list[str], timeout: float) -> dict[str, Any]:
    """Run one benchmark in its own process group (killed whole at the timeout); its JSON, or why there is none."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / script), *args]
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
        status = None
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # compile workers and data loaders go with it
        stdout, stderr = proc.communicate()
        status = "timeout"
    result = last_json(stdout)
    if status is None:
        status = "ok" if proc.returncode == 0 and result is not None else "failed"
    out = {
        "command": " ".join(cmd[1:]),
        "status": status,
        "wall_s": round(time.perf_counter() - start, 1),
        "result": result,
    }
    if status != "ok":
        out.update(returncode=proc.returncode, stderr_tail=stderr[-2000:])
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="gpu_suite.json", help="the JSON file, rewritten after every measurement")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, on the CPU unless --device says otherwise")
    p.add_argument("--device", default=None, help="default: cuda, or cpu with --smoke")
    p.add_argument("--budget-s", type=float, default=None, help="total seconds (default 290; smoke 110)")
    p.add_argument("--fast-steps", type=int, default=FAST_STEPS, help="DPM-Solver++(2M) steps of the fast run")
    p.add_argument("--only", default=None, help="comma-separated step names to run (default: all)")
    return p


def run_plan(
    steps: list[dict[str, Any]], report: dict[str, Any], budget: float, start: float, save: Callable[[], None]
) -> None:
    """Run each step (then its fallback if it failed) while the budget allows, saving the report after each run."""
    for step in steps:
        attempts = [step["args"]] + ([step["fallback"]] if "fallback" in step else [])
        for args_ in attempts:
            left = budget - (time.perf_counter() - start)
            if left < 10:
                report["steps"].setdefault(step["name"], {"status": "skipped", "reason": "time budget spent"})
                break
            done = run_step(step["script"], args_, min(step["cap"], left))
            previous = report["steps"].get(step["name"])
            report["steps"][step["name"]] = {**done, **({"first_attempt": previous} if previous else {})}
            save()
            if done["status"] == "ok":
                break


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)

    device = args.device or ("cpu" if args.smoke else "cuda")
    budget = args.budget_s or (110.0 if args.smoke else 290.0)
    steps = plan(args.smoke, device, args.fast_steps)
    if args.only:
        wanted = {s.strip() for s in args.only.split(",")}
        steps = [s for s in steps if s["name"] in wanted]
    start = time.perf_counter()
    report: dict[str, Any] = {
        "benchmark": "gpu_suite",
        "smoke": args.smoke,
        "budget_s": budget,
        "packages": packages(),
        "hardware": hardware(device),
        "steps": {},
    }
    out = Path(args.out)

    def save() -> None:
        report["elapsed_s"] = round(time.perf_counter() - start, 1)
        write_text_atomic(out, json.dumps(report, indent=1) + "\n")

    save()
    run_plan(steps, report, budget, start, save)
    save()
    print(
        json.dumps(
            {
                "benchmark": "gpu_suite",
                "out": str(out),
                "steps": {k: v.get("status") for k, v in report["steps"].items()},
            }
        ),
        flush=True,
    )
    return report


if __name__ == "__main__":
    main()
