"""The shared command-line boundary (mgeldm/cli/hydra_args.py) as a unit: argv order, override syntax,
option spellings, and quoting; no model, no Hydra run."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from mgeldm.cli.hydra_args import HYDRA_FLAGS, hydra_quote, prepare_argv, quoting_hint, run_app
from mgeldm.errors import UserError

REPO = Path(__file__).resolve().parents[2]
OPTIONS = ("seed", "ckpt_path", "data_dirs", "text_prompt", "given_wav_path")
# Lightning re-executes sys.argv for DDP ranks > 0 with these appended (lightning_fabric _hydra_subprocess_cmd).
LIGHTNING_TAIL = ['hydra.run.dir="."', "hydra.job.name=train_ddp_process_1", "hydra.output_subdir=null"]


def _hydra_parser():
    """Hydra's own argv parser: private (``hydra._internal``), so only these tests read it, to check that
    :data:`HYDRA_FLAGS` and the argv that ``prepare_argv`` writes still match what ``hydra.main`` parses."""
    from hydra._internal.utils import get_args_parser

    return get_args_parser()


def _hydra_parse(argv: list[str]):
    return _hydra_parser().parse_args(argv)


def test_hydra_flags_are_hydras():
    """The module's copy of Hydra's flags (and how many values each takes) is Hydra's: an upgrade of Hydra that
    adds, drops or changes a flag fails here rather than on a user's command line."""

    def takes(action):
        return tuple(action.choices) if action.nargs == "?" else int(action.nargs != 0)

    actions = _hydra_parser()._option_string_actions
    assert {name: takes(action) for name, action in actions.items()} == HYDRA_FLAGS


def test_run_app_hands_hydra_the_prepared_argv_and_restores_it(monkeypatch):
    """``hydra.main`` (and Lightning's relaunch of the other DDP ranks) read ``sys.argv``: it holds the prepared
    argv while the app runs, with HYDRA_FULL_ERROR set; both are as they were afterwards."""
    seen = {}

    def app():
        seen.update(argv=sys.argv[1:], full_error=os.environ.get("HYDRA_FULL_ERROR"))

    given = ["tool.py", "seed=1", "--config-dir", "/x/conf", "a.b=2"]
    monkeypatch.setattr(sys, "argv", list(given))
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    run_app(app, "tool.py", options=["seed"])
    assert seen == {"argv": ["--config-dir", "/x/conf", "++seed=1", "a.b=2"], "full_error": "1"}
    assert sys.argv == given and "HYDRA_FULL_ERROR" not in os.environ


def _value(override: str):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides([override])[0].value()


@pytest.mark.parametrize(
    "argv",
    [
        ["a.b=1", "--config-dir", "/x/conf", "c=2"],
        ["a.b=1", "--config-dir=/x/conf", "c=2"],
        ["a.b=1", "-cd", "/x/conf", "c=2", "--config-name", "dit"],
        ["--config-name=dit", "a.b=1", "c=2", "-cd", "/x/conf"],
        ["a.b=1", "--cfg", "job", "c=2", "--config-dir", "/x/conf"],
    ],
)
def test_flags_anywhere_parse_and_survive_the_ddp_relaunch(argv):
    """`--config-dir X` after overrides parses, also once Lightning has appended its own overrides for rank 1."""
    first = prepare_argv(argv)
    args = _hydra_parse(first)
    assert args.config_dir == "/x/conf" and args.overrides == ["a.b=1", "c=2"]
    relaunched = prepare_argv(first + LIGHTNING_TAIL)  # rank 1 runs the same entry point on the rewritten argv
    args = _hydra_parse(relaunched)
    assert args.config_dir == "/x/conf" and args.overrides == ["a.b=1", "c=2", *LIGHTNING_TAIL]
    assert prepare_argv(relaunched) == relaunched  # idempotent


def test_optional_value_flag_and_multirun_flag():
    out = prepare_argv(["a=1", "--info", "b=2", "-m", "c=3,4"])
    assert out == ["--info", "-m", "a=1", "b=2", "c=3,4"]  # --info takes no value here; a sweep is fine with -m
    assert prepare_argv(["a=1", "--info", "defaults"]) == ["--info", "defaults", "a=1"]


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--bogus", "a=1"], "--bogus: unknown flag"),
        (["a=1", "--config-dir"], "--config-dir: expects a value"),
        (["x=/data/a,b.wav"], "a comma makes this a list of runs"),
        (["+not_an_option=3"], "+not_an_option: unknown option"),
        (["just_a_word"], "just_a_word: cannot be read as an override"),
    ],
)
def test_argv_mistakes_are_one_line(argv, needle):
    with pytest.raises(UserError) as err:
        prepare_argv(argv, options=OPTIONS)
    assert needle in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "override, intended",
    [
        ("+text_prompt='it's a jazz trio'", "it's a jazz trio"),
        ("+given_wav_path=/data/müsic/sång.wav", "/data/müsic/sång.wav"),
        ("+given_wav_path=/data/take (1).wav", "/data/take (1).wav"),
        ("ckpt_path=/a/b=c.ckpt", "/a/b=c.ckpt"),
    ],
)
def test_unreadable_value_is_one_line_whose_hint_works(override, intended):
    """The error shows the argument quoted for Hydra and for a shell; that argument reads back as meant."""
    with pytest.raises(UserError) as err:
        prepare_argv([override], options=OPTIONS)
    message = str(err.value)
    assert "\n" not in message and "quote it" in message
    hint = quoting_hint(override)
    assert hint in message
    (word,) = shlex.split(hint)
    assert _value(word) == intended
    assert prepare_argv([word], options=OPTIONS)  # accepted once quoted


VALUES = [
    "it's",
    'say "hi"',
    "both ' and \"",
    "a\\",
    "a\\'b",
    "C:\\dir\\",
    "/tmp/müsic/a b,c (1).wav",
    "[a,b]",
    "x=y",
    "${not_interpolated",
    "  padded  ",
]


@pytest.mark.parametrize("value", VALUES)
def test_hydra_quote_reads_back_unchanged(value):
    assert _value(f"k={hydra_quote(value)}") == value


def test_bash_hydra_quote_reads_back_unchanged():
    """scripts/hydra_quote.sh, which the infer scripts use, follows the same rule."""
    script = 'source scripts/hydra_quote.sh; for v in "$@"; do hydra_quote "$v"; printf "\\0"; done'
    out = subprocess.run(["bash", "-c", script, "bash", *VALUES], cwd=REPO, capture_output=True, check=True)
    quoted = out.stdout.decode().split("\0")[:-1]
    assert [_value(f"k={q}") for q in quoted] == VALUES


@pytest.mark.parametrize(
    "given, expected",
    [
        ("seed=0", "++seed=0"),
        ("+seed=0", "++seed=0"),
        ("++seed=0", "++seed=0"),
        ("+data_dirs.slakh2100=/d", "++data_dirs.slakh2100=/d"),
        ("trainer.batch_size=4", "trainer.batch_size=4"),  # a config key: Hydra checks it exists
        ("+data.fake.seed=3", "+data.fake.seed=3"),  # adding a nested key stays an add
        ("~seed", "~seed"),
        ("model=dit", "model=dit"),  # config groups are left alone
        ("+model/conditioner@embedder=minilm", "+model/conditioner@embedder=minilm"),
        ("model.pretransform.ae_config.latent_dim=8", "model.pretransform.autoencoder.latent_dim=8"),
        ("+model.pretransform.ae_config.x=1", "+model.pretransform.autoencoder.x=1"),
        ("model.pretransform.ae_config_other=1", "model.pretransform.ae_config_other=1"),
    ],
)
def test_option_spellings_and_the_ae_config_alias(given, expected):
    assert prepare_argv([given], options=OPTIONS) == [expected]
