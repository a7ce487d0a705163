"""Shared test helpers: locating the fixture sets in ../shared and loading their cases.

Fixture directories come from environment variables (``MGELDM_REFERENCE_FIXTURES``,
``MGELDM_CLAP_FIXTURES``), defaulting to ``../shared/fixtures/...`` beside the repository; the ``.tsv``
key listings of the original's full-size models come from ``MGELDM_REFERENCE_DIR`` (default
``../shared/reference``). Every size and setting is read from the set's ``README.json``. When a set or
file is absent the tests that need it skip with the reason, unless ``MGELDM_REQUIRE_FIXTURES=1`` (as in
CI), where they fail.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class FixtureSet:
    """One fixture folder: its path, its README.json and its cases (tensors, loaded lazily)."""

    root: Path
    readme: dict[str, Any]
    _cases: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    @property
    def cases(self) -> dict[str, torch.Tensor]:
        if self._cases is None:
            from safetensors.torch import load_file

            self._cases = load_file(str(self.root / "cases.safetensors"))
        return self._cases

    def path(self, name: str) -> Path:
        return self.root / name

    def clap_config(self, **overrides: Any) -> dict[str, Any]:
        """The laion_clap conditioner config of the tiny CLAP set (every size, the checkpoint and the tokenizer
        from its README.json); ``overrides`` replace keys."""
        r = self.readme
        return {
            "clap_ckpt_path": str(self.path(r["checkpoint"]["file"])),
            "tokenizer_path": str(self.path(r["tokenizer"]["dir"])),
            "audio": r["audio_cfg"],
            "htsat": r["htsat_tiny_used"],
            "text": r["text_config_tiny_used"],
            "audio_embed_dim": r["clap_embed_dim_config"]["tiny_used"],
            "joint_embed_dim": r["joint_embed_shape"],
            "max_text_length": int(re.search(r"max_length=(\d+)", r["tokenizer"]["call"]).group(1)),
            **overrides,
        }


def _missing(reason: str) -> NoReturn:
    """Skip the calling test with ``reason``, or fail it under ``MGELDM_REQUIRE_FIXTURES=1``."""
    if os.environ.get("MGELDM_REQUIRE_FIXTURES") == "1":
        pytest.fail(reason + "; MGELDM_REQUIRE_FIXTURES=1 makes this an error")
    pytest.skip(reason)


def _fixture_root(env_var: str, default_name: str) -> Path:
    return Path(os.environ.get(env_var, REPO_ROOT.parent / "shared" / "fixtures" / default_name))


def _fixture_set(env_var: str, default_name: str) -> FixtureSet:
    root = _fixture_root(env_var, default_name)
    if not (root / "README.json").is_file():
        _missing(f"fixture set not found at {root} (set {env_var} to its folder)")
    return FixtureSet(root=root, readme=json.loads((root / "README.json").read_text()))


def find_reference_file(name: str) -> Path:
    """``name`` in ``MGELDM_REFERENCE_DIR`` (default ``../shared/reference``); skips or fails when absent."""
    folder = Path(os.environ.get("MGELDM_REFERENCE_DIR", REPO_ROOT.parent / "shared" / "reference"))
    path = folder / name
    if not path.is_file():
        _missing(f"reference file not found at {path} (set MGELDM_REFERENCE_DIR to its folder)")
    return path


@pytest.fixture(scope="session")
def reference_fixtures() -> FixtureSet:
    """The tiny VAE + DiT saved by the original MGE-LDM code, with inputs and outputs."""
    return _fixture_set("MGELDM_REFERENCE_FIXTURES", "reference_tiny")


@pytest.fixture(scope="session")
def reference_readme_if_present() -> dict[str, Any] | None:
    """The reference set's README.json, or None when the set is absent (for tests with built-in tiny sizes);
    under ``MGELDM_REQUIRE_FIXTURES=1`` an absent set fails as everywhere else."""
    root = _fixture_root("MGELDM_REFERENCE_FIXTURES", "reference_tiny")
    if (root / "README.json").is_file():
        return json.loads((root / "README.json").read_text())
    if os.environ.get("MGELDM_REQUIRE_FIXTURES") == "1":
        _missing(f"fixture set not found at {root} (set MGELDM_REFERENCE_FIXTURES to its folder)")
    return None


@pytest.fixture(scope="session")
def reference_file():
    """The function ``find_reference_file(name)``: a ``.tsv`` of the reference folder, or skip/fail."""
    return find_reference_file


@pytest.fixture(scope="session")
def clap_fixtures() -> FixtureSet:
    """The tiny LAION-CLAP saved by laion_clap itself, with inputs and outputs."""
    return _fixture_set("MGELDM_CLAP_FIXTURES", "laion_clap_tiny")


def assert_close_to_reference(out: torch.Tensor, ref: torch.Tensor, name: str) -> None:
    """The core tolerance: max|out - ref| <= 1e-4 * max(1, max|ref|)."""
    assert out.shape == ref.shape, f"{name}: shape {tuple(out.shape)} != {tuple(ref.shape)}"
    err = (out.double() - ref.double()).abs().max().item()
    tol = 1e-4 * max(1.0, ref.abs().max().item())
    assert err <= tol, f"{name}: max abs error {err:.3e} > tolerance {tol:.3e}"


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def ref_close():
    """The function ``assert_close_to_reference(out, ref, name)``, for tests to call."""
    return assert_close_to_reference


def _killed_writer(target: Path) -> int:
    """Run a process that starts an atomic write of ``target`` (``mgeldm.files.atomic_path``) and is
    SIGKILLed in the middle of it, leaving the temporary behind; returns the dead writer's pid."""
    import signal
    import subprocess
    import sys

    code = (
        "import os, signal, sys\n"
        "from mgeldm.files import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n"
        "    tmp.write_bytes(b'half a checkpoint')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(target)],
        cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
        stderr=subprocess.PIPE,
        text=True,
    )
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err[-2000:]
    return proc.pid


@pytest.fixture(scope="session")
def killed_writer():
    """The function ``killed_writer(target) -> pid``: the temporary of a write killed mid-way, as a crash leaves it."""
    return _killed_writer


@pytest.fixture
def warnings_on_stderr():
    """Warnings print as they do from a command-line tool: one plain line each on stderr."""
    from mgeldm.cli.boundary import logging_configured

    with logging_configured():
        yield


@pytest.fixture(scope="module")
def warnings_on_stderr_module():
    """:func:`warnings_on_stderr` for the fixtures of a whole module."""
    from mgeldm.cli.boundary import logging_configured

    with logging_configured():
        yield
