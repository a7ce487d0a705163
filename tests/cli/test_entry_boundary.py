"""One boundary for every entry point: Ctrl-C, SIGTERM and running out of memory are one line each with their
exit codes (130, 143, 2) in every tool, not only infer.py; a bug keeps its traceback; the library's warnings
are logging records, printed by the tools as plain lines."""

from __future__ import annotations

import logging
import runpy
import sys
from pathlib import Path

import pytest
import torch

from mgeldm.cli.boundary import Terminated, run_tool

REPO = Path(__file__).resolve().parents[2]
HYDRA_SCRIPTS = ("infer.py", "train_ae.py", "train_dit.py", "pre_encode.py", "unwrap_model.py", "evaluate.py")
STOPS = {
    "ctrl-c": (KeyboardInterrupt(), 130, "interrupted"),
    "sigterm": (Terminated(15), 143, "terminated (SIGTERM)"),
    "gpu memory": (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), 2, "out of memory; try"),
    "host memory": (MemoryError(), 2, "out of memory; try"),
}


@pytest.mark.parametrize("stop", sorted(STOPS))
@pytest.mark.parametrize("script", HYDRA_SCRIPTS)
def test_every_hydra_tool_stops_in_one_line(script, stop, monkeypatch, capsys, tmp_path):
    import mgeldm.cli.hydra_args as hydra_args

    exc, code, words = STOPS[stop]

    def stopped(cfg):
        raise exc

    monkeypatch.setattr(hydra_args, "plain_config", stopped)  # the first thing every tool does with its config
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [script])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(REPO / script), run_name="__main__")
    assert exit_info.value.code == code
    captured = capsys.readouterr()
    lines = (captured.out + captured.err).splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{script}: error: {words}"), lines


@pytest.mark.parametrize("stop", sorted(STOPS))
@pytest.mark.parametrize(
    "module, target, argv, prog",
    [
        ("mgeldm.cli.diagnose", "_check", ["latents", "--latents", "x", "a.ckpt"], "diagnose.py"),
        (
            "recipes.quickstart.score",
            "score_checkpoints",
            ["dit", "a.ckpt", "--eval-dir", "x"],
            "python -m recipes.quickstart.score",
        ),
        ("recipes.quickstart.synth.__main__", "generate_corpus", ["--out", "x"], "python -m recipes.quickstart.synth"),
    ],
)
def test_every_argparse_tool_stops_in_one_line(module, target, argv, prog, stop, monkeypatch, capsys):
    import importlib

    exc, code, words = STOPS[stop]
    tool = importlib.import_module(module)

    def stopped(*args, **kwargs):
        raise exc

    monkeypatch.setattr(tool, target, stopped)
    assert tool.main(argv) == code
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: {words}"), lines


def test_a_bug_keeps_its_traceback():
    def bug():
        raise ZeroDivisionError("a bug, not a user mistake")

    with pytest.raises(ZeroDivisionError):
        run_tool("tool", bug)


def test_library_warnings_are_logging_records(tmp_path, caplog, capsys):
    """A warning of the library (here: a truncated audio file) is a record of the ``mgeldm`` logger, which a
    program using the API can filter or redirect; the command-line tools print it as one line."""
    import soundfile as sf

    from mgeldm.audio import load_audio

    sf.write(tmp_path / "full.wav", torch.zeros(16000).numpy() + 0.1, 16000, subtype="PCM_16")
    (tmp_path / "cut.wav").write_bytes((tmp_path / "full.wav").read_bytes()[: 44 + 4000])
    logging.getLogger("mgeldm.audio").disabled = False  # Hydra's quiet logging of the tools run above disabled it
    with caplog.at_level(logging.WARNING, logger="mgeldm"):
        load_audio(tmp_path / "cut.wav")
    (record,) = [r for r in caplog.records if "truncated" in r.getMessage()]
    assert record.name == "mgeldm.audio" and record.levelno == logging.WARNING
    capsys.readouterr()
    run_tool("tool", lambda: load_audio(tmp_path / "cut.wav"))
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: audio file ") and "truncated" in lines[0]
