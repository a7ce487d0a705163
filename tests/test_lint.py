"""The tree is formatted and lint-clean: ``ruff format --check .`` and ``ruff check .`` from the repository root,
with the settings of ``[tool.ruff]`` in pyproject.toml (line length 120). ruff comes from requirements.txt; where
it is not installed these tests skip with the reason."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _ruff(*args: str) -> subprocess.CompletedProcess:
    if importlib.util.find_spec("ruff") is None:
        pytest.skip("ruff is not installed (requirements.txt installs it: python -m pip install -r requirements.txt)")
    return subprocess.run([sys.executable, "-m", "ruff", *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def _report(proc: subprocess.CompletedProcess, lines: int = 60) -> str:
    """The first ``lines`` lines ruff printed, and its last two (the counts)."""
    out = (proc.stdout + proc.stderr).strip().splitlines()
    return "\n".join(out if len(out) <= lines + 2 else [*out[:lines], "...", *out[-2:]])


def test_ruff_check_is_clean():
    proc = _ruff("check", "--no-cache", "--output-format", "concise", ".")
    assert proc.returncode == 0, "ruff check . (ruff check --fix . fixes those marked [*]):\n" + _report(proc)


def test_ruff_format_is_clean():
    proc = _ruff("format", "--check", "--no-cache", "--output-format", "concise", ".")
    assert proc.returncode == 0, "ruff format . would reformat:\n" + _report(proc)
