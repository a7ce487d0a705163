"""The reference ``.tsv`` files are found like the fixture sets: through ``MGELDM_REFERENCE_DIR``, skipped when
absent, failed when absent under ``MGELDM_REQUIRE_FIXTURES=1``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Every test that reads a .tsv of the reference folder.
TSV_TESTS = [
    "tests/models/test_dit.py::test_full_size_layout_matches_released_checkpoint",
    "tests/models/test_autoencoder.py::test_full_size_layout_matches_released_checkpoint",
    "tests/models/test_clap.py::test_full_size_keys_match_released_layout",
    "tests/core/test_mgeldm.py::test_full_size_model_matches_the_released_layout",
]


def test_reference_file_follows_the_variable(reference_file, monkeypatch, tmp_path):
    (tmp_path / "present.tsv").write_text("x\n")
    monkeypatch.setenv("MGELDM_REFERENCE_DIR", str(tmp_path))
    assert reference_file("present.tsv") == tmp_path / "present.tsv"
    monkeypatch.setenv("MGELDM_REQUIRE_FIXTURES", "1")
    with pytest.raises(pytest.fail.Exception, match="MGELDM_REFERENCE_DIR"):
        reference_file("absent.tsv")
    monkeypatch.delenv("MGELDM_REQUIRE_FIXTURES")
    with pytest.raises(pytest.skip.Exception, match="absent.tsv"):
        reference_file("absent.tsv")


@pytest.mark.slow
def test_every_tsv_test_fails_when_required_and_absent(tmp_path):
    """Every .tsv test goes through the helper (whose skip without the variable is checked above)."""
    env = {**os.environ, "MGELDM_REFERENCE_DIR": str(tmp_path), "OMP_NUM_THREADS": "1", "MGELDM_REQUIRE_FIXTURES": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TSV_TESTS]
    failed = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert failed.returncode == 1 and f"{len(TSV_TESTS)} failed" in failed.stdout, failed.stdout[-2000:]
    assert failed.stdout.count("MGELDM_REQUIRE_FIXTURES=1 makes this an error") >= len(TSV_TESTS)
