"""Where the Hydra configs live and how library code reads one (entry points use ``@hydra.main``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mgeldm.errors import UserError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


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
