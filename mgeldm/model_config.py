"""Which model config a checkpoint is built with, the facts inference reads from it, and the files loading needs.

A model config is the ``model`` node of a Hydra config (``configs/model/dit.yaml``: ``pretransform``, ``MGELDM``,
``conditioner``, ``sample_rate``, ``segment_length``, ``track_norm``) as plain containers. An unwrapped checkpoint
written by ``unwrap_model.py`` carries the one it was trained with (:func:`mgeldm.checkpoints.read_model_config`);
the released checkpoints carry none and are built with ``configs/dit.yaml``'s.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mgeldm.errors import UserError
from mgeldm.models.mgeldm import ModelFacts, model_facts
from mgeldm.weights import CLAP_FILE, DIT_FILE, Missing, file_problem, raise_if_missing

__all__ = [
    "ModelFacts",
    "model_facts",
    "default_model_config",
    "plain_model_config",
    "conditioner_node",
    "conditioner_ckpt",
    "takes_clap_ckpt",
    "with_conditioner_ckpt",
    "checkpoint_model_config",
    "missing_inference_files",
    "inference_model_config",
]


def default_model_config(config_name: str = "dit", overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The ``model`` node of ``configs/<config_name>.yaml`` (Hydra-composed) as a plain dict."""
    from mgeldm.config import compose_config

    return compose_config(config_name, overrides)["model"]


def plain_model_config(cfg: Any) -> dict[str, Any]:
    """A Mapping / OmegaConf node / yaml path -> plain dict."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, (str, os.PathLike)):
        path = Path(cfg)
        if not path.is_file():
            raise UserError(f"model config {path}: no such file")
        cfg = OmegaConf.load(path)
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)
    return dict(cfg)


def conditioner_node(model_cfg: Mapping[str, Any]) -> dict[str, Any] | None:
    """The conditioner node (``model.conditioner.clap_text``), or None when the config has none."""
    node = model_cfg.get("conditioner") or {}
    node = node.get("clap_text", node) if isinstance(node, Mapping) else None
    return dict(node) if node else None


def conditioner_ckpt(model_cfg: Mapping[str, Any]) -> str | None:
    node = conditioner_node(model_cfg) or {}
    return (node.get("config") or {}).get("clap_ckpt_path")


def takes_clap_ckpt(model_cfg: Mapping[str, Any]) -> bool:
    """Whether the config's conditioner reads a checkpoint file (LAION-CLAP does; the quickstart's MiniLM not)."""
    node = conditioner_node(model_cfg)
    return node is not None and "clap_ckpt_path" in (node.get("config") or {})


def with_conditioner_ckpt(model_cfg: Mapping[str, Any], clap_ckpt: str | os.PathLike | None) -> dict[str, Any]:
    """A copy of ``model_cfg`` whose conditioner reads ``clap_ckpt`` (when given, and when the conditioner
    reads a checkpoint at all: a config without one keeps running without it)."""
    cfg = dict(model_cfg)
    node = conditioner_node(cfg)
    if clap_ckpt is None or not takes_clap_ckpt(cfg):
        return cfg
    node["config"] = {**(node.get("config") or {}), "clap_ckpt_path": str(clap_ckpt)}
    cfg["conditioner"] = {**(cfg.get("conditioner") or {}), "clap_text": node}
    return cfg


def checkpoint_model_config(ckpt: str | os.PathLike, fallback: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The model config to build ``ckpt`` with: the one it carries, else ``fallback``, else ``configs/dit.yaml``'s.

    A carried config describes the weights (sizes, per-track statistics), so it wins; only the conditioner
    checkpoint path of ``fallback`` (e.g. ``clap_ckpt_path=`` on the command line) is applied to it.
    """
    from mgeldm.checkpoints import read_model_config

    carried = read_model_config(ckpt)
    if carried is None:
        return dict(fallback) if fallback is not None else default_model_config()
    clap = conditioner_ckpt(fallback) if fallback is not None else None
    return with_conditioner_ckpt(carried, clap) if clap else carried


def missing_inference_files(
    ckpt: str | os.PathLike | None, model_cfg: Mapping[str, Any], *, text: bool = False, conditioner: bool = True
) -> list[Missing]:
    """Every file that loading ``ckpt`` with ``model_cfg`` needs and that is not there (see :mod:`mgeldm.weights`).

    The checkpoint always; with ``conditioner`` (it is built from the config) and a CLAP conditioner, its
    checkpoint and the RoBERTa tokenizer files when the checkpoint is set (the conditioner is then built) or
    ``text`` says prompts need it.
    """
    from mgeldm.models.clap.tokenizer import tokenizer_problem

    missing = []
    problem = file_problem(ckpt)
    if problem:
        missing.append(Missing("ckpt", ckpt, problem, f"an unwrapped MGE-LDM checkpoint such as {DIT_FILE}"))
    clap = conditioner_ckpt(model_cfg)
    if conditioner and takes_clap_ckpt(model_cfg) and (text or clap is not None):
        problem = file_problem(clap)
        if problem:
            missing.append(Missing("clap_ckpt", clap, problem, f"LAION's music CLAP checkpoint {CLAP_FILE}"))
        tokenizer = (conditioner_node(model_cfg).get("config") or {}).get("tokenizer_path")
        problem = tokenizer_problem(tokenizer)
        if problem:
            missing.append(Missing(None, None, problem, what="RoBERTa tokenizer"))
    return missing


def inference_model_config(
    ckpt: str | os.PathLike | None,
    fallback: Mapping[str, Any] | None,
    clap_ckpt: str | os.PathLike | None = None,
    *,
    text: bool = False,
    conditioner: bool = True,
) -> dict[str, Any]:
    """The model config to load ``ckpt`` with (:func:`checkpoint_model_config`, with ``clap_ckpt`` applied),
    after checking that every file it needs is there (:func:`missing_inference_files`): one UserError names
    all missing ones, before any weights are read."""
    readable = file_problem(ckpt) is None
    cfg = checkpoint_model_config(ckpt, fallback) if readable else dict(fallback or default_model_config())
    cfg = with_conditioner_ckpt(cfg, clap_ckpt)
    raise_if_missing(missing_inference_files(ckpt, cfg, text=text, conditioner=conditioner))
    return cfg
