"""The bash scripts' argument handling: --help prints the header and nothing else, every mistake is one line
``<script>: error: ...`` with exit code 2 before anything is done. scripts/download_weights.sh is only ever run
with --dry-run or a wrong argument here: tests never download."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"


def _bash(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=120, env=env)


def _one_error_line(proc: subprocess.CompletedProcess, script: str) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{script}: error: "), lines
    return lines[0]


@pytest.mark.parametrize("script", ["quickstart.sh", "quickstart_curve.sh", "download_weights.sh", "setup.sh"])
def test_help_prints_the_header_only(script):
    proc = _bash(SCRIPTS / script, "--help")
    assert proc.returncode == 0 and proc.stderr == ""
    text = proc.stdout
    assert f"bash scripts/{script}" in text
    assert "set -euo" not in text and "#!/" not in text and not text.startswith("#")


@pytest.mark.parametrize(
    "script, args, needle",
    [
        ("quickstart.sh", ["--out"], "--out: expects a folder"),
        ("quickstart.sh", ["--out="], "--out: expects a folder"),
        ("quickstart.sh", ["--size"], "--size: expects small or medium"),
        ("quickstart.sh", ["--size", "big"], "--size big: expected small or medium"),
        ("quickstart.sh", ["--smok"], "--smok: unknown argument"),
        ("quickstart_curve.sh", ["--from"], "--from: expects a value"),
        ("quickstart_curve.sh", ["--from", "x", "--steps"], "--steps: expects a value"),
        ("quickstart_curve.sh", ["--from", "x", "--minutes", "30"], "--minutes: budgets are steps now"),
        ("quickstart.sh", ["--timbre", "loud"], "--timbre loud: expected plain or varied"),
        ("quickstart_curve.sh", ["--bogus"], "--bogus: unknown argument"),
        ("download_weights.sh", ["--dir"], "--dir: expects a folder"),
        ("download_weights.sh", ["--only", "vae"], "--only vae: expected dit, clap, tokenizer or ae"),
        ("download_weights.sh", ["--dryrun"], "--dryrun: unknown argument"),
        ("quickstart.sh", ["--eval-split", "train"], "--eval-split train: expected test or valid"),
        ("setup.sh", ["--keep"], "--keep: unknown option"),
    ],
)
def test_argument_mistakes_are_one_line(script, args, needle):
    assert needle in _one_error_line(_bash(SCRIPTS / script, *args), script)


def test_gpu_without_cuda_is_refused_before_any_stage(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible: --gpu is accepted here")
    out = tmp_path / "qs"
    line = _one_error_line(_bash(SCRIPTS / "quickstart.sh", "--smoke", "--gpu", "--out", out), "quickstart.sh")
    assert "--gpu: no CUDA GPU" in line
    assert not out.exists()  # no stage ran, nothing was written


def test_download_weights_dry_run_names_every_source_and_writes_nothing(tmp_path):
    target = tmp_path / "weights"
    proc = _bash(SCRIPTS / "download_weights.sh", "--dry-run", "--dir", target)
    assert proc.returncode == 0, proc.stderr
    plan = dict(line.split(" -> ") for line in proc.stdout.splitlines())
    assert sorted(plan.values()) == sorted(
        str(target / name)
        for name in (
            "unwrapped_DiT.ckpt",
            "music_audioset_epoch_15_esc_90.14.pt",
            "roberta-base/vocab.json",
            "roberta-base/merges.txt",
        )
    )
    by_file = {Path(v).name: k for k, v in plan.items()}
    assert by_file["music_audioset_epoch_15_esc_90.14.pt"].startswith("https://huggingface.co/lukewys/laion_clap/")
    assert by_file["vocab.json"].startswith("https://huggingface.co/") and "roberta-base" in by_file["vocab.json"]
    assert (
        "drive" in by_file["unwrapped_DiT.ckpt"]
        and "1tyND8iI5Whs6_Oe-pBK2SpysGLKKa6sR" in by_file["unwrapped_DiT.ckpt"]
    )
    assert not target.exists()
    only = _bash(SCRIPTS / "download_weights.sh", "--dry-run", "--dir", target, "--only", "ae")
    assert [line.split(" -> ")[1] for line in only.stdout.splitlines()] == [str(target / "unwrapped_AE.ckpt")]


def test_quickstart_forecasts_the_whole_run_from_the_ae_rate():
    """After the AE's first progress line with a rate, the small CPU run says how long it should take here: the
    measured run's seconds scaled by the ratio of AE rates (SIZED_* in the script); every line passes through."""
    import re

    text = (REPO / "scripts" / "quickstart.sh").read_text()
    rate, seconds = map(float, re.search(r"^SIZED_AE_RATE=([0-9.]+); SIZED_SECONDS=([0-9.]+)$", text, re.M).groups())
    function = re.search(r"^estimate\(\) \{.*?^\}$", text, re.M | re.S).group(0)
    lines = [
        "train_ae.py: step 1/600 | loss 3.3 | 0:00 elapsed",
        f"train_ae.py: step 25/600 | loss 2.8 | {rate / 2:.3f} steps/s | 0:18 elapsed",
        f"train_ae.py: step 50/600 | loss 2.7 | {rate:.3f} steps/s | 0:30 elapsed",
    ]
    for size, smoke, said in (("small", 0, True), ("medium", 0, False), ("small", 1, False)):
        script = f"SIZE={size} SMOKE={smoke} GPU=0 SIZED_AE_RATE={rate} SIZED_SECONDS={seconds}\n{function}\nestimate"
        out = subprocess.run(
            ["bash", "-c", script], input="\n".join(lines) + "\n", capture_output=True, text=True, check=True
        ).stdout.splitlines()
        assert [line for line in out if line.startswith("train_ae.py")] == lines
        forecasts = [line for line in out if "should take" in line]
        assert len(forecasts) == (1 if said else 0), out
        if said:  # half the rate: twice the measured run's time, said once, right after the first rate line
            assert out[2] == forecasts[0]
            assert forecasts[0].endswith(f"the whole run should take about {2 * seconds / 60:.0f} minutes")
