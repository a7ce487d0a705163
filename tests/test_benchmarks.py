"""The benchmarks' shared contract (``--threads``, ``--device``, one JSON object with the hardware under one
name key) and the GPU suite, run at tiny sizes on the CPU."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted(p.name for p in (REPO / "benchmarks").glob("bench_*.py"))


def _load(name: str):
    if str(REPO / "benchmarks") not in sys.path:
        sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location(f"benchmark_{Path(name).stem}", REPO / "benchmarks" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def _check_report(report: dict, name: str, threads: int | None = 1) -> None:
    assert report["benchmark"] == name
    hw = report["hardware"]
    assert {"device", "device_name", "cpu", "cpu_count", "threads", "torch", "cuda"} <= set(hw)
    assert hw["cpu"] and hw["device_name"] and hw["torch"]
    if threads is not None:
        assert hw["threads"] == threads


def test_benchmarks_are_the_known_set():
    assert BENCHMARKS == [
        "bench_ae.py",
        "bench_clap.py",
        "bench_dit.py",
        "bench_grouped_conv.py",
        "bench_infer.py",
        "bench_pre_encode.py",
        "bench_samplers.py",
        "bench_train.py",
    ]


@pytest.mark.parametrize("name", BENCHMARKS)
def test_every_benchmark_takes_threads_and_device(name):
    module = _load(name)
    help_text = io.StringIO()
    with contextlib.redirect_stdout(help_text), pytest.raises(SystemExit) as done:
        module.main(["--help"])
    assert done.value.code == 0
    assert "--threads" in help_text.getvalue() and "--device" in help_text.getvalue()


TINY_RUNS = {
    "bench_ae.py": ("ae", ["--seconds", "0.5", "--repeats", "1", "--warmup", "0", "--no-train"]),
    "bench_grouped_conv.py": ("grouped_conv", ["--batch", "2", "--repeats", "2"]),
    "bench_clap.py": ("clap", ["--prompts", "2", "--clips", "1"]),
    "bench_dit.py": ("dit", ["--batch", "1", "--frames", "20", "--steps", "1", "--warmup", "0"]),
    "bench_pre_encode.py": ("pre_encode", ["--songs", "1", "--stems", "1", "--seconds", "2"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TINY_RUNS))
def test_benchmark_prints_one_json_object_with_the_hardware(name):
    key, args = TINY_RUNS[name]
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / name), "--threads", "1", "--device", "cpu", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    reports = _json_lines(proc.stdout)
    assert len(reports) == 1, proc.stdout
    _check_report(reports[0], key)


def test_bench_infer_full_config_is_what_hydra_composes():
    """bench_infer reads the full model from the YAML files alone (no Hydra on a bare GPU host)."""
    from mgeldm.model_config import default_model_config

    composed = default_model_config()
    composed.pop("conditioner")
    assert _load("bench_infer.py").full_config() == composed


def test_matching_steps_is_the_fewest_steps_at_ddim_200s_error():
    table = {
        "ddim": [
            {"steps": 100, "dit_calls": 100, "relative_rms_error": 0.02},
            {"steps": 200, "dit_calls": 200, "relative_rms_error": 0.01},
        ],
        "heun": [
            {"steps": 20, "dit_calls": 39, "relative_rms_error": 0.02},
            {"steps": 50, "dit_calls": 99, "relative_rms_error": 0.009},
            {"steps": 100, "dit_calls": 199, "relative_rms_error": 0.001},
        ],
        "dpmpp_2m": [{"steps": 200, "dit_calls": 200, "relative_rms_error": 0.011}],
    }
    match = _load("bench_samplers.py").matching_steps(table)
    assert match["ddim_steps"] == 200 and match["ddim"] == {"steps": 200, "dit_calls": 200}
    assert match["heun"] == {"steps": 50, "dit_calls": 99}
    assert match["dpmpp_2m"] is None


def test_gpu_suite_rewrites_its_json_after_every_step(tmp_path, monkeypatch):
    """In priority order; the file holds every finished step while the next runs; a failed compiled run is
    retried eagerly; a step is skipped once the time budget is spent (a fake clock: nothing here is timed)."""
    suite = _load("gpu_suite.py")
    out = tmp_path / "suite.json"
    clock = [0.0]
    seen: list[tuple[str, list[str], dict]] = []

    def fake_step(script, args, timeout):
        seen.append((script, args, json.loads(out.read_text())))
        clock[0] += 100.0
        name = "compiled" if "--compile" in args else "eager"
        if script == "bench_infer.py" and name == "compiled" and "--songs" not in args:
            return {"status": "failed", "returncode": 1, "stderr_tail": "no triton"}
        return {"status": "ok", "result": {"benchmark": script, "mode": name}, "timeout": timeout}

    monkeypatch.setattr(suite, "run_step", fake_step)
    monkeypatch.setattr(suite.time, "perf_counter", lambda: clock[0])
    report = suite.main(["--out", str(out), "--budget-s", "390", "--device", "cpu"])
    scripts = [s for s, _, _ in seen]
    assert scripts == ["bench_infer.py", "bench_infer.py", "bench_train.py", "bench_samplers.py"]
    assert seen[1][1] == [a for a in seen[0][1] if a != "--compile"]  # the eager retry
    assert set(seen[2][2]["steps"]) == {"infer"} and set(seen[3][2]["steps"]) == {"infer", "train"}
    final = json.loads(out.read_text())
    assert final == json.loads(json.dumps(report))
    assert final["steps"]["infer"]["result"]["mode"] == "eager"
    assert final["steps"]["infer"]["first_attempt"]["status"] == "failed"
    assert final["steps"]["throughput"] == {"status": "skipped", "reason": "time budget spent"}
    assert "--fast-steps" not in seen[0][1] and f"dpmpp_2m:{suite.FAST_STEPS}" in seen[0][1]


@pytest.mark.parametrize("smoke", [False, True])
def test_gpu_suite_command_lines_parse(smoke):
    """Every planned command line (and its eager fallback) is valid for its script: no option misspelt."""
    suite = _load("gpu_suite.py")
    for step in suite.plan(smoke, "cuda", suite.FAST_STEPS):
        parser = _load(step["script"]).build_parser()
        for args in [step["args"]] + ([step["fallback"]] if "fallback" in step else []):
            parsed = parser.parse_args(args)
            assert parsed.device == "cuda"


@pytest.mark.slow
def test_gpu_suite_smoke_runs_every_step_on_the_cpu(tmp_path):
    out = tmp_path / "suite.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_suite.py"), "--smoke", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["smoke"] and list(report["steps"]) == ["infer", "train", "samplers", "throughput"]
    for name, step in report["steps"].items():
        assert step["status"] == "ok", (name, step.get("stderr_tail"))
    _check_report(report["steps"]["samplers"]["result"], "samplers", threads=None)
    _check_report(report["steps"]["train"]["result"], "train_dit", threads=None)
    infer = report["steps"]["infer"]["result"]
    _check_report(infer, "infer_source_extract", threads=None)
    assert [(r["sampler"], r["steps"]) for r in infer["runs"]] == [("ddim", 3), ("dpmpp_2m", 2)]
    assert set(infer["runs"][0]["phases"]) == {"clap_s", "encode_s", "dit_s", "decode_s"}
    assert infer["runs"][0]["phases"]["clap_s"] > 0  # the small CLAP really ran
    assert report["steps"]["train"]["result"]["profile"]
    songs = report["steps"]["throughput"]["result"]["runs"][0]
    assert songs["songs"] == 2 and songs["songs_per_minute"] > 0
    errors = report["steps"]["samplers"]["result"]["errors"]
    assert set(errors) == {"ddim", "dpmpp_2m", "heun"} and all(len(v) == 2 for v in errors.values())
