"""What every entry point says on the command line: a short --help with its options, their defaults and two
examples (not Hydra's dump of every config group), and errors in one style, ``<prog>: error: <message>``."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# entry script -> options its --help must name
HELP_MUST_NAME = {
    "infer.py": [
        "+task=",
        "+given_wav_path=",
        "+text_prompt=",
        "+output_dir=",
        "+num_steps=",
        "+overlap_dur=",
        "ckpt_path=",
        "clap_ckpt_path=",
        "source_extract    250 / 10 / 3 / 1",
    ],
    "train_ae.py": [
        "--config-name",
        "save_dir=",
        "ckpt_path=last",
        "trainer.pl_trainer.max_steps=",
        "data.train.<corpus>.data_dir=",
    ],
    "train_dit.py": ["--config-name", "autoencoder_ckpt_path=", "data.data_dir=", "trainer.progress=false"],
    "pre_encode.py": ["+save_root_dir=", "+extract_dataset=", "+data_dirs.<key>=", "+num_shards="],
    "unwrap_model.py": ["+type=", "ckpt_path=", "+output_name=", "+use_safetensors="],
    "evaluate.py": ["+pred_dir=", "+ref_dir=", "+mix_dir=", "+metrics=", "+output=", "default 16000"],
}


def _run_script(name: str, args: list[str], monkeypatch) -> int:
    """Run an entry script as ``python <name> <args>`` in this process; returns its exit code."""
    monkeypatch.setattr(sys, "argv", [str(REPO / name), *args])
    monkeypatch.chdir(REPO)
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(REPO / name), run_name="__main__")
    return exit_info.value.code


@pytest.mark.parametrize("name", sorted(HELP_MUST_NAME))
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_is_short_and_names_the_options(name, flag, monkeypatch, capsys):
    assert _run_script(name, [flag], monkeypatch) in (0, None)
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith(f"usage: python {name}") and len(lines) <= 60, lines[:3]
    assert [o for o in HELP_MUST_NAME[name] if o not in out] == []
    examples = lines[lines.index("examples:") + 1 :]
    assert len(examples) == 2 and all(e.startswith(f"  python {name}") for e in examples), examples
    assert "== Config ==" not in out and "Powered by Hydra" not in out  # not Hydra's page


@pytest.mark.parametrize("name, prog", [(n, n) for n in sorted(HELP_MUST_NAME)])
def test_option_errors_share_one_prefix(name, prog, monkeypatch, capsys):
    assert _run_script(name, ["+no_such_option=1"], monkeypatch) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: +no_such_option: unknown option"), lines


@pytest.mark.parametrize(
    "module, argv, prog",
    [
        (
            "recipes.quickstart.synth.__main__",
            ["--out", "x", "--seconds", "1", "2", "3"],
            "python -m recipes.quickstart.synth",
        ),
        ("mgeldm.cli.diagnose", ["latents", "--latents", "/nonexistent/latents", "x.ckpt"], "diagnose.py"),
        (
            "recipes.quickstart.score",
            ["dit", "/nonexistent/a.ckpt", "--eval-dir", "/nonexistent"],
            "python -m recipes.quickstart.score",
        ),
    ],
)
def test_argparse_tools_use_the_same_prefix_for_their_own_errors(module, argv, prog, capsys):
    import importlib

    assert importlib.import_module(module).main(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), lines
