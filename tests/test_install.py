"""A non-editable install works on its own: a wheel of this tree, installed into a fresh virtual environment,
loads a model with ``MGELDM.from_pretrained``, runs a task and ``infer.py``'s command line from a folder outside
the repository, with the package and every config it reads inside that environment (the configs ship in the
package). Nothing is downloaded: the wheel is built without build isolation and installed without dependencies
into an environment that sees this interpreter's packages."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SCRIPT = r'''
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
'''


def _wheel(tmp_path: Path) -> Path:
    """A wheel of this working tree (the package, configs/, setup.py, pyproject.toml), built offline."""
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("mgeldm", "configs"):
        shutil.copytree(REPO / folder, src / folder, ignore=ignore)
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "--no-index", "-q",
                    "-w", str(tmp_path / "dist"), str(src)], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("mgeldm-*.whl")
    return wheel


def _checkpoint(path: Path) -> Path:
    """An unwrapped checkpoint of default_dit_tiny's model that carries no config (as the released one)."""
    from mgeldm.checkpoints import write_state_dict
    from mgeldm.config import compose_config
    from mgeldm.models.mgeldm import build_mgeldm

    return write_state_dict(build_mgeldm(compose_config("default_dit_tiny")["model"]).state_dict(), path)


@pytest.mark.slow
def test_a_wheel_runs_from_pretrained_and_infer_outside_the_repository(tmp_path):
    env_dir = tmp_path / "env"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(_wheel(tmp_path))],
                   check=True, capture_output=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ckpt = _checkpoint(elsewhere / "tiny.ckpt")
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    proc = subprocess.run([str(python), "-c", SCRIPT, str(ckpt), str(elsewhere / "out")], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    inside = str(env_dir.resolve())
    assert info["package"].startswith(inside) and info["config_dir"].startswith(inside), info
    ours = [p for p in info["opened"] if "/hydra/conf/" not in p]  # besides Hydra's own defaults
    assert ours and [p for p in ours if not p.startswith(inside)] == []
    assert any(p.endswith("mgeldm/configs/default_dit_tiny.yaml") for p in ours)
    assert info["samples"] == round(0.2 * 16000)
    assert [p.name for p in (elsewhere / "out" / "total_gen").iterdir()] == ["output_0000"]
    shipped = {p.relative_to(env_dir).as_posix().split("mgeldm/configs/", 1)[1]
               for p in env_dir.rglob("mgeldm/configs/**/*.yaml")}
    assert shipped == {p.relative_to(REPO / "configs").as_posix() for p in (REPO / "configs").rglob("*.yaml")}
