"""Where the Hydra configs live and how library code reads one (entry points compose theirs with Hydra).

The configs are the yaml files of the repository's ``configs/`` folder. An installed package carries a copy
inside itself (``mgeldm/configs``, see ``setup.py``) and reads that one; a checkout (also an editable install)
reads ``configs/`` beside the package, where users edit them. ``--config-dir DIR`` adds a folder of one's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mgeldm.errors import UserError
from mgeldm.files import PACKAGE_PARENT


def _config_dir() -> Path:
    shipped = Path(__file__).resolve().parent / "configs"
    return shipped if shipped.is_dir() else PACKAGE_PARENT / "configs"


CONFIG_DIR = _config_dir()


def config_file(relative: str) -> dict[str, Any]:
    """One yaml file of the configs (``trainer/dit.yaml``) as plain containers, without Hydra's composition:
    for a node that is the one owner of some defaults (a recipe, the pre-encoding settings)."""
    from omegaconf import OmegaConf

    path = CONFIG_DIR / relative
    if not path.is_file():
        raise UserError(f"config file {relative}: not in {CONFIG_DIR}")
    node = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    node.pop("defaults", None)
    return node


def compose_config(config_name: str, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """``configs/<config_name>.yaml`` composed with ``overrides``, resolved to plain containers."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    if not (CONFIG_DIR / f"{config_name}.yaml").is_file():
        raise UserError(f"config {config_name!r}: no {config_name}.yaml in {CONFIG_DIR}")
    if GlobalHydra.instance().is_initialized():  # inside a Hydra app: its search path already holds ours
        cfg = compose(config_name=config_name, overrides=list(overrides))
    else:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
            cfg = compose(config_name=config_name, overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=True)
