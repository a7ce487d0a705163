"""Lightning training checkpoint → unwrapped AE or MGE-LDM weights (docs/compatibility.md#checkpoints), EMA by default.

Reads checkpoints of this package and of the original code alike (both use the prefixes
``autoencoder.* / autoencoder_ema.ema_model.*`` and ``diffusion.* / diffusion_ema.ema_model.*``).
The original stores its ``model_config`` as an OmegaConf object; it is read with
``torch.load(weights_only=True)`` and an explicit allow-list of OmegaConf classes, never a plain unpickle.
"""

from __future__ import annotations

import collections
import os
import pickle
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from mgeldm.checkpoints import AE_EMA, AE_ONLINE, AE_PREFIX, DIT_EMA, DIT_ONLINE, DIT_PREFIX, add_prefix, strip_prefix
from mgeldm.errors import UserError

KINDS = ("autoencoder", "mgeldm")


def _omegaconf_allow_list() -> list:
    """The classes a pickled DictConfig/ListConfig is made of; nothing else is let through."""
    from omegaconf import DictConfig, ListConfig
    from omegaconf.base import ContainerMetadata, Metadata
    from omegaconf.nodes import AnyNode, BooleanNode, BytesNode, FloatNode, IntegerNode, PathNode, StringNode

    return [
        DictConfig,
        ListConfig,
        ContainerMetadata,
        Metadata,
        AnyNode,
        BooleanNode,
        BytesNode,
        FloatNode,
        IntegerNode,
        PathNode,
        StringNode,
        typing.Any,
        dict,
        list,
        int,
        (_resolver_cache, "collections.defaultdict"),
    ]


def _resolver_cache(factory: Any = None) -> dict:
    """Stands in for ``collections.defaultdict`` while a checkpoint is unpickled.

    The one defaultdict in a pickled OmegaConf config is its resolver cache, ``defaultdict(dict)``, which a
    ``@hydra.main`` run fills with the values of ``${now:...}``. torch's weights-only unpickler only fills plain
    dicts, so a plain dict is built here (and turned back into ``defaultdict(dict)`` after loading); any
    other factory would be a call the allow-list does not permit, and is refused.
    """
    if factory not in (None, dict):
        raise pickle.UnpicklingError(f"collections.defaultdict with factory {factory!r} is not allowed")
    return {}


def _restore_resolver_caches(obj: Any, seen: set[int] | None = None) -> None:
    """Give every loaded OmegaConf container its ``defaultdict(dict)`` resolver cache back (see above)."""
    from omegaconf.basecontainer import BaseContainer

    seen = set() if seen is None else seen
    if id(obj) in seen or isinstance(obj, torch.Tensor):
        return
    seen.add(id(obj))
    if isinstance(obj, BaseContainer):
        meta = obj.__dict__.get("_metadata")
        if type(getattr(meta, "resolver_cache", None)) is dict:
            meta.resolver_cache = collections.defaultdict(dict, meta.resolver_cache)
        content = obj.__dict__.get("_content")
        children = (
            list(content.values()) if isinstance(content, dict) else list(content) if isinstance(content, list) else []
        )
        for child in [*children, obj.__dict__.get("_parent")]:
            _restore_resolver_caches(child, seen)
    elif isinstance(obj, Mapping):
        for value in obj.values():
            _restore_resolver_caches(value, seen)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            _restore_resolver_caches(value, seen)


def load_training_checkpoint(path: str | os.PathLike, *, mmap: bool = False) -> dict[str, Any]:
    """A Lightning checkpoint as a dict, read with ``weights_only=True`` (+ the OmegaConf allow-list).

    ``mmap=True`` maps the tensors instead of reading them (a cheap look at a large file).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"ckpt_path: {path} does not exist")
    try:
        import zipfile

        with torch.serialization.safe_globals(_omegaconf_allow_list()):
            ckpt = torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap and zipfile.is_zipfile(path))
    except Exception as exc:  # noqa: BLE001 - any unreadable file becomes one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"ckpt_path: {path} is not a readable training checkpoint ({first[:200]})") from None
    if not isinstance(ckpt, Mapping) or not isinstance(ckpt.get("state_dict"), Mapping):
        raise UserError(
            f"ckpt_path: {path} has no `state_dict`; expected a Lightning training checkpoint "
            "(runs/<name>/checkpoints/last.ckpt)"
        )
    _restore_resolver_caches({k: v for k, v in ckpt.items() if k != "state_dict"})
    return dict(ckpt)


def check_resumable(path: str | os.PathLike, kind: str, model_cfg: Mapping[str, Any] | None = None) -> None:
    """Refuse, in one line, a file that is not a Lightning training checkpoint of ``kind`` (before fitting);
    with ``model_cfg``, also one whose weights do not have the configured model's names and shapes."""
    ckpt = load_training_checkpoint(path, mmap=True)
    found = checkpoint_kind(ckpt["state_dict"])
    if "loops" not in ckpt or found is None:
        raise UserError(
            f"ckpt_path: {path} is an unwrapped model, not a training checkpoint; to start from it pass "
            "pretrained_ckpt_path=... (ckpt_path resumes a run: `last` or runs/<name>/checkpoints/*.ckpt)"
        )
    if found != kind:
        raise UserError(f"ckpt_path: {path} is a training checkpoint of the {found} run, not of {kind} training")
    if model_cfg is not None:
        problem = _shape_mismatch(unwrap_state(ckpt, kind, path=path), kind, model_cfg)
        if problem:
            raise UserError(
                f"ckpt_path: {path} cannot be resumed with this config: it holds a model of another "
                f"size ({problem}){_config_changes(ckpt.get('model_config'), model_cfg)}"
            )


def checkpoint_kind(state: Mapping[str, Any]) -> str | None:
    """``autoencoder`` / ``mgeldm`` from the key prefixes, or None."""
    if any(k.startswith((DIT_ONLINE, DIT_EMA)) for k in state):
        return "mgeldm"
    if any(k.startswith((AE_ONLINE, AE_EMA)) for k in state):
        return "autoencoder"
    return None


def unwrap_state(
    ckpt: Mapping[str, Any], kind: str, *, use_ema: bool = True, path: Any = None
) -> dict[str, torch.Tensor]:
    """The unwrapped state dict: AE keys (``encoder.* / decoder.*``) or MGELDM keys (``model_dit.*`` +
    ``pretransform.model.*``)."""
    if kind not in KINDS:
        raise UserError(f"type: {kind!r} is not one of {list(KINDS)} (pass +type=autoencoder or +type=mgeldm)")
    state = ckpt["state_dict"]
    found = checkpoint_kind(state)
    if found is None:
        raise UserError(
            f"ckpt_path: {path} is neither an AE nor a DiT training checkpoint "
            f"(no {AE_ONLINE}* or {DIT_ONLINE}* keys); an already unwrapped file needs no unwrapping"
        )
    if found != kind:
        what = {"autoencoder": "an autoencoder", "mgeldm": "a DiT (mgeldm)"}
        raise UserError(
            f"ckpt_path: {path} is {what[found]} training checkpoint, not {what[kind].split(' ', 1)[1]}; "
            f"pass +type={found} with --config-name {'default_ae' if found == 'autoencoder' else 'dit'}"
        )
    if kind == "autoencoder":
        out = strip_prefix(state, AE_EMA) if use_ema else {}
        return out or strip_prefix(state, AE_ONLINE)
    dit = strip_prefix(state, DIT_EMA) if use_ema else {}
    if not dit:
        dit = strip_prefix(state, DIT_ONLINE + DIT_PREFIX)
    ae = strip_prefix(state, DIT_ONLINE + AE_PREFIX)
    if not ae:
        raise UserError(f"ckpt_path: {path} holds no {DIT_ONLINE}{AE_PREFIX}* weights (the AE)")
    return {**add_prefix(dit, DIT_PREFIX), **add_prefix(ae, AE_PREFIX)}


def build_on_meta(kind: str, model_cfg: Mapping[str, Any]) -> torch.nn.Module:
    """The configured AE or MGELDM on the meta device (no memory, no weights, no CLAP); a config that cannot
    build it is one UserError line."""
    from mgeldm.models.autoencoder import build_autoencoder
    from mgeldm.models.mgeldm import build_mgeldm

    try:
        with torch.device("meta"):
            return build_autoencoder(model_cfg) if kind == "autoencoder" else build_mgeldm(model_cfg)
    except UserError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, AssertionError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise UserError(f"model: the {kind} cannot be built from this config ({type(exc).__name__}: {first})") from None


def _shape_mismatch(state: Mapping[str, torch.Tensor], kind: str, model_cfg: Mapping[str, Any]) -> str | None:
    from mgeldm.checkpoints import describe_mismatch

    model = build_on_meta(kind, model_cfg)
    return describe_mismatch({k: v.shape for k, v in model.state_dict().items()}, state)


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, Mapping):
        return {k: v for key, sub in node.items() for k, v in _flatten(sub, f"{prefix}{key}.").items()}
    return {prefix[:-1]: node}


def _config_changes(saved: Any, current: Mapping[str, Any], limit: int = 4) -> str:
    """``; its model config differs at <key> (<saved> there, <current> here), ...`` or ``""``."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(saved, DictConfig):
        saved = OmegaConf.to_container(saved, resolve=False)
    if not isinstance(saved, Mapping):
        return ""
    old, new = _flatten(saved), _flatten(current)
    keys = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k) and not k.endswith("_path")]
    if not keys:
        return ""
    shown = ", ".join(f"model.{k} ({old.get(k)} there, {new.get(k)} here)" for k in keys[:limit])
    return f"; the checkpoint's model config differs at {shown}" + (", ..." if len(keys) > limit else "")


def check_against_config(state: Mapping[str, torch.Tensor], kind: str, model_cfg: Mapping[str, Any], path: Any) -> None:
    """Build the configured model on the meta device (no weights, no CLAP) and compare names and shapes."""
    problem = _shape_mismatch(state, kind, model_cfg)
    if problem:
        raise UserError(f"ckpt_path: {path}: its {kind} weights do not fit the configured model: {problem}")


def unwrap_checkpoint(
    training_ckpt: str | os.PathLike,
    kind: str,
    output_name: str | os.PathLike,
    *,
    model_cfg: Mapping[str, Any] | None = None,
    use_safetensors: bool = False,
    use_ema: bool = True,
) -> Path:
    """Write ``<output_name>.ckpt`` (``{"state_dict": ..., "model_config": ...}``) or ``.safetensors``.

    The model config written beside the weights is the one the training checkpoint carries (what the
    weights were trained with, e.g. measured per-track statistics), else ``model_cfg``; returns the path.
    """
    from mgeldm.checkpoints import write_state_dict

    ckpt = load_training_checkpoint(training_ckpt)
    state = unwrap_state(ckpt, kind, use_ema=use_ema, path=training_ckpt)
    carried = ckpt.get("model_config")
    if isinstance(carried, dict):  # ours (plain containers); the original's is an OmegaConf node: not used
        model_cfg = carried
    if model_cfg is not None:
        check_against_config(state, kind, model_cfg, training_ckpt)
    out = Path(str(output_name))
    if out.suffix in (".ckpt", ".safetensors"):
        out = out.with_suffix("")
    return write_state_dict(
        state,
        out.with_name(out.name + (".safetensors" if use_safetensors else ".ckpt")),
        model_config=plain_model_config(model_cfg),
    )


def plain_model_config(cfg: Any) -> dict | None:
    """A model config as plain JSON-able containers, or None."""
    if cfg is None:
        return None
    import json

    try:
        return json.loads(json.dumps(cfg))
    except (TypeError, ValueError):
        return None
