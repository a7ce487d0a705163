"""Building the audio embedder: a plug-in ``module:callable`` or a conditioner node."""

from __future__ import annotations

import importlib
from collections.abc import Mapping


def build_audio_embedder(node: Mapping, device: str = "cpu"):
    """The audio embedder: ``{target: "module:callable", config: {...}}`` for a plug-in, else a conditioner node."""
    node = dict(node)
    target = node.get("target")
    if target:
        module_name, _, attr = str(target).partition(":")
        factory = getattr(importlib.import_module(module_name), attr)
        return factory(**dict(node.get("config") or {}))
    from mgeldm.models.conditioners import build_conditioner

    return build_conditioner(node, device=device)
