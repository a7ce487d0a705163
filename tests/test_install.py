"""A non-editable install works on its own: a wheel of this tree, installed into a fresh virtual environment,
loads a model with ``MGELDM.from_pretrained``, runs a task and ``infer.py``'s command line from a folder outside
the repository, with the package and every config it reads inside that environment (the configs ship in the
package). Its console scripts (``[project.scripts]``: ``mgeldm-infer``, ``mgeldm-train-dit``, ... one per root
script) print the root scripts' ``--help`` and ``mgeldm-infer`` writes what ``python infer.py`` writes. Nothing is
downloaded: the wheel is built once per module without build isolation and installed without dependencies into an
environment that sees this interpreter's packages."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path
from typing import NamedTuple

import pytest

REPO = Path(__file__).resolve().parents[1]
ENTRY_SCRIPTS = (
    "infer.py",
    "train_ae.py",
    "train_dit.py",
    "pre_encode.py",
    "unwrap_model.py",
    "evaluate.py",
    "diagnose.py",
)
INFER_ARGS = [
    "--config-name",
    "default_dit_tiny",
    "+task=total_gen",
    "+gen_audio_dur=0.2",
    "+num_steps=1",
    "+save_png=false",
    "++seed=0",
]

SCRIPT = r"""
import json, runpy, sys
from pathlib import Path

opened = []


def audit(event, args):
    if event == "open" and isinstance(args[0], str) and args[0].endswith(".yaml"):
        opened.append(str(Path(args[0]).resolve()))


sys.addaudithook(audit)
import mgeldm
import mgeldm.config
from mgeldm.api import MGELDM
from mgeldm.model_config import default_model_config

ckpt, out = sys.argv[1], sys.argv[2]
model = MGELDM.from_pretrained(ckpt, model_config=default_model_config("default_dit_tiny"), device="cpu")
song = model.generate(None, 0.2, steps=1, seed=0)["gen_mix"]
sys.argv = ["infer.py", "--config-name", "default_dit_tiny", f"ckpt_path={ckpt}", "+task=total_gen",
            "+gen_audio_dur=0.2", "+num_steps=1", f"+output_dir={out}", "+save_png=false", "++seed=0"]
try:
    runpy.run_module("mgeldm.cli.infer", run_name="__main__")
except SystemExit as exc:
    assert exc.code in (0, None), exc.code
print(json.dumps({"package": mgeldm.__file__, "config_dir": str(mgeldm.config.CONFIG_DIR), "opened": opened,
                  "samples": int(song.shape[-1])}))
"""

# Runs each file named on the command line (a console script in the environment's bin/, or a root script of the
# repository) as ``<file> --help``, in this one process (one import of torch for all), and prints, as JSON, each
# one's exit code and what it wrote.
HELP_SCRIPT = r"""
import contextlib, io, json, runpy, sys

pages = {}
for path in sys.argv[1:]:
    out, err, code = io.StringIO(), io.StringIO(), 0
    sys.argv = [path, "--help"]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_path(path, run_name="__main__")
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    pages[path] = {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}
print(json.dumps(pages))
"""


def console_script(root_script: str) -> str:
    """The console script of a root script: ``train_dit.py`` -> ``mgeldm-train-dit``."""
    return "mgeldm-" + root_script.removesuffix(".py").replace("_", "-")


class Installed(NamedTuple):
    env_dir: Path
    python: Path
    elsewhere: Path  # a folder outside the repository holding the tiny checkpoint
    ckpt: Path
    env: dict[str, str]  # this environment without PYTHONPATH/PYTHONHOME


def _wheel(tmp_path: Path) -> Path:
    """A wheel of this working tree (the package, configs/, setup.py, pyproject.toml), built offline."""
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("mgeldm", "configs"):
        shutil.copytree(REPO / folder, src / folder, ignore=ignore)
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-build-isolation",
            "--no-deps",
            "--no-index",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("mgeldm-*.whl")
    return wheel


def _checkpoint(path: Path) -> Path:
    """An unwrapped checkpoint of default_dit_tiny's model that carries no config (as the released one)."""
    from mgeldm.checkpoints import write_state_dict
    from mgeldm.config import compose_config
    from mgeldm.models.mgeldm import build_mgeldm

    return write_state_dict(build_mgeldm(compose_config("default_dit_tiny")["model"]).state_dict(), path)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    """A wheel of this tree installed (no dependencies, no index) into a fresh venv that sees this interpreter's
    packages, and a tiny checkpoint in a folder outside the repository; built once for the module."""
    tmp_path = tmp_path_factory.mktemp("install")
    env_dir = tmp_path / "env"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(_wheel(tmp_path))],
        check=True,
        capture_output=True,
        timeout=300,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ckpt = _checkpoint(elsewhere / "tiny.ckpt")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return Installed(env_dir, python, elsewhere, ckpt, env)


@pytest.mark.slow
def test_a_wheel_runs_from_pretrained_and_infer_outside_the_repository(installed):
    env_dir, python, elsewhere, ckpt, env = installed
    proc = subprocess.run(
        [str(python), "-c", SCRIPT, str(ckpt), str(elsewhere / "out")],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    inside = str(env_dir.resolve())
    assert info["package"].startswith(inside) and info["config_dir"].startswith(inside), info
    ours = [p for p in info["opened"] if "/hydra/conf/" not in p]  # besides Hydra's own defaults
    assert ours and [p for p in ours if not p.startswith(inside)] == []
    assert any(p.endswith("mgeldm/configs/default_dit_tiny.yaml") for p in ours)
    assert info["samples"] == round(0.2 * 16000)
    assert [p.name for p in (elsewhere / "out" / "total_gen").iterdir()] == ["output_0000"]
    shipped = {
        p.relative_to(env_dir).as_posix().split("mgeldm/configs/", 1)[1]
        for p in env_dir.rglob("mgeldm/configs/**/*.yaml")
    }
    assert shipped == {p.relative_to(REPO / "configs").as_posix() for p in (REPO / "configs").rglob("*.yaml")}


def _help_pages(python: Path | str, scripts: list[Path], cwd: Path, env: dict[str, str]) -> dict[str, dict]:
    proc = subprocess.run(
        [str(python), "-c", HELP_SCRIPT, *map(str, scripts)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_every_console_script_is_installed_and_prints_its_root_scripts_help(installed):
    """Each root script has its console script in the environment's bin/ (a real ``mgeldm-infer --help`` runs
    through its shebang); every one prints the same ``--help`` page as ``python <root script> --help``, with the
    program name the only allowed difference, and exits 0."""
    bin_dir = installed.env_dir / "bin"
    scripts = [bin_dir / console_script(name) for name in ENTRY_SCRIPTS]
    assert [s.name for s in scripts if not os.access(s, os.X_OK)] == []
    cli = _help_pages(installed.python, scripts, installed.elsewhere, installed.env)
    root = _help_pages(sys.executable, [REPO / name for name in ENTRY_SCRIPTS], REPO, installed.env)
    for name, script in zip(ENTRY_SCRIPTS, scripts):
        ours, theirs = cli[str(script)], root[str(REPO / name)]
        assert (ours["code"], theirs["code"]) == (0, 0), (name, ours["stderr"][-2000:], theirs["stderr"][-2000:])
        assert _prog_neutral(ours["stdout"], name) == _prog_neutral(theirs["stdout"], name), name
        assert ours["stdout"].strip(), name
    real = subprocess.run(
        [str(scripts[0]), "--help"],
        cwd=installed.elsewhere,
        env=installed.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert real.returncode == 0, real.stderr[-2000:]
    assert real.stdout == cli[str(scripts[0])]["stdout"]


def _prog_neutral(text: str, root_script: str) -> str:
    """``text`` with the program's own name (``mgeldm-infer``, ``python infer.py`` or ``infer.py``) as ``PROG``."""
    for spelling in (console_script(root_script), f"python {root_script}", root_script):
        text = text.replace(spelling, "PROG")
    return text


def _outputs(folder: Path) -> dict[str, bytes | dict]:
    """The files of an infer output folder: run.json parsed (less what differs between two runs of one command:
    timings, the argv and the output folder), every other file as bytes."""
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        key = path.relative_to(folder).as_posix()
        if path.name == "run.json":
            info = json.loads(path.read_text())
            for name in ("timings", "real_time_factor", "command"):
                info.pop(name)
            info["settings"].pop("output_dir")
            files[key] = info
        else:
            files[key] = path.read_bytes()
    return files


@pytest.mark.slow
def test_mgeldm_infer_writes_what_infer_py_writes(installed):
    """``mgeldm-infer`` (the installed console script, run from outside the repository) and ``python infer.py``
    (the root script of this checkout) on the same tiny model and command line write the same files and print
    the same report (both run at once)."""
    args = [*INFER_ARGS, f"ckpt_path={installed.ckpt}"]
    outs = {"cli": installed.elsewhere / "cli_out", "root": installed.elsewhere / "root_out"}
    commands = {
        "cli": [str(installed.env_dir / "bin" / "mgeldm-infer")],
        "root": [sys.executable, str(REPO / "infer.py")],
    }
    procs = {
        k: subprocess.Popen(
            [*commands[k], *args, f"+output_dir={outs[k]}"],
            cwd=installed.elsewhere,
            env=installed.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in commands
    }
    done = {k: (proc.communicate(timeout=600), proc.returncode) for k, proc in procs.items()}
    for k, ((_, stderr), code) in done.items():
        assert code == 0, (k, stderr[-3000:])
    ours, theirs = _outputs(outs["cli"]), _outputs(outs["root"])
    assert list(ours) == list(theirs) and any(k.endswith(".wav") for k in ours), (list(ours), list(theirs))
    assert ours == theirs
    printed = {k: _numbers_out(done[k][0][0].replace(str(outs[k]), "OUT")) for k in done}
    assert printed["cli"] == printed["root"]


def _numbers_out(text: str) -> str:
    return re.sub(r"\d+(\.\d+)?", "#", text)


def _project_scripts() -> dict[str, str]:
    try:
        import tomllib
    except ImportError:  # Python 3.10: pip's own copy of the same parser
        try:
            from pip._vendor import tomli as tomllib
        except ImportError:
            tomllib = pytest.importorskip("tomli", reason="reading pyproject.toml on Python 3.10 needs tomli")
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


def test_pyproject_names_one_console_script_per_root_script():
    """``[project.scripts]`` maps ``mgeldm-<name>`` to ``mgeldm.cli.<name>:main`` for every root script (a new
    entry point adds its line) and names nothing else; a root script is ``from mgeldm.cli.<name> import main``."""
    roots = sorted(p.name for p in REPO.glob("*.py") if p.name != "setup.py")
    assert roots == sorted(ENTRY_SCRIPTS)
    for name in roots:
        assert f"from mgeldm.cli.{name[:-3]} import main" in (REPO / name).read_text(), name
    assert _project_scripts() == {console_script(name): f"mgeldm.cli.{name[:-3]}:main" for name in ENTRY_SCRIPTS}
