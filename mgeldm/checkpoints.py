"""The unwrapped checkpoint formats, and key checks that fail with one readable message.

Two formats, as the original writes them (docs/compatibility.md#checkpoints):

* ``.ckpt`` (any other suffix): ``torch.save({"state_dict": {...}})``, read with
  ``torch.load(weights_only=True)``, so no arbitrary code is unpickled;
* ``.safetensors``: a flat ``{name: tensor}`` file.

Files this package writes may also carry the model config they were trained with, as plain JSON outside
the state dict: a top-level ``"model_config"`` entry of the ``.ckpt`` dict (plain containers, so
``weights_only`` loading still works and ``torch.load(f)["state_dict"]`` is unchanged), or the
``model_config`` metadata string of a ``.safetensors`` file. The released checkpoints have none.

Key prefixes (one owner, here): an unwrapped MGE-LDM holds ``model_dit.*`` (the DiT) and ``pretransform.model.*``
(the VAE); an unwrapped AE has none. A Lightning training checkpoint (this package's and the original's) holds
``diffusion.*`` with the EMA DiT under ``diffusion_ema.ema_model.*``, or ``autoencoder.*`` with the EMA AE under
``autoencoder_ema.ema_model.*``: the attribute names of the two training modules.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from mgeldm.errors import UserError

_SHOW = 4  # how many key names a mismatch message lists per kind

DIT_PREFIX = "model_dit."  # an unwrapped MGE-LDM: the DiT ...
AE_PREFIX = "pretransform.model."  # ... and the VAE it works in
AE_ONLINE, AE_EMA = "autoencoder.", "autoencoder_ema.ema_model."  # AE training checkpoints
DIT_ONLINE, DIT_EMA = "diffusion.", "diffusion_ema.ema_model."  # DiT training checkpoints
STEP_NAME = "step{step:08d}"  # a periodic training checkpoint: step00001400.ckpt
BEST_NAME = "best-step{step:08d}"  # a best-scoring one (trainer.monitor): best-step00001400.ckpt
BEST_JSON = "best.json"  # beside them: which one is the best (path, step, metric, value)


class _Safetensors:
    """``.safetensors``: flat tensors, the model config in the ``model_config`` metadata string."""

    @staticmethod
    def read(path: Path) -> object:
        from safetensors.torch import load_file

        return load_file(str(path))

    @staticmethod
    def model_config(path: Path) -> dict | None:
        import json

        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            text = (f.metadata() or {}).get(MODEL_CONFIG_KEY)
        return json.loads(text) if text else None

    @staticmethod
    def write(tensors: dict[str, torch.Tensor], model_config: Mapping | None, tmp: Path) -> None:
        import json

        from safetensors.torch import save_file

        meta = {MODEL_CONFIG_KEY: json.dumps(model_config)} if model_config is not None else None
        save_file(_unshare(tensors), str(tmp), metadata=meta)


class _TorchCkpt:
    """Any other suffix: ``torch.save({"state_dict": ..., "model_config": ...})``, read weights-only."""

    @staticmethod
    def read(path: Path) -> object:
        import warnings

        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below says it all
            warnings.simplefilter("ignore")
            return torch.load(str(path), map_location="cpu", weights_only=True, mmap=_can_mmap(path))

    @staticmethod
    def model_config(path: Path) -> dict | None:
        obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=_can_mmap(path))
        config = obj.get(MODEL_CONFIG_KEY) if isinstance(obj, Mapping) else None
        return dict(config) if isinstance(config, Mapping) else None

    @staticmethod
    def write(tensors: dict[str, torch.Tensor], model_config: Mapping | None, tmp: Path) -> None:
        import json

        extra = {MODEL_CONFIG_KEY: json.loads(json.dumps(model_config))} if model_config is not None else {}
        torch.save({"state_dict": tensors, **extra}, tmp)


def _format(path: Path) -> type[_Safetensors] | type[_TorchCkpt]:
    """The one place a checkpoint's format is chosen: by its suffix."""
    return _Safetensors if path.suffix == ".safetensors" else _TorchCkpt


def _existing(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path}: no such file")
    return path


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read an unwrapped checkpoint (``.safetensors`` or ``.ckpt``) as a flat dict of tensors."""
    path = _existing(path)
    try:
        state = _format(path).read(path)
    except UserError:
        raise
    except Exception as exc:  # unreadable, truncated, foreign pickle, ...
        raise UserError(
            f"checkpoint {path}: {load_failure(exc)}; expected an unwrapped .ckpt "
            "({'state_dict': tensors}, as unwrap_model.py writes) or .safetensors file"
        ) from None
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"checkpoint {path}: expected a state_dict of tensors (a dict, or {{'state_dict': dict}})")
    return dict(state)


MODEL_CONFIG_KEY = "model_config"


def read_model_config(path: str | os.PathLike) -> dict | None:
    """The model config an unwrapped checkpoint carries (see the module docstring), or None."""
    path = _existing(path)
    try:
        return _format(path).model_config(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable file becomes one line
        raise UserError(f"checkpoint {path}: {load_failure(exc)}") from None


def _first_sentence(text: str) -> str:
    import re

    return re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0].rstrip(".")


def load_failure(exc: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` or safetensors failed, in whole words on one line.

    torch's refusal of a pickled object is a page of advice (with terminal colour codes) about loading
    the file unsafely; only the name of the refused object is kept.
    """
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    if "Weights only load failed" in text:
        detail = text.split("WeightsUnpickler error:", 1)[-1].split("Check the documentation", 1)[0]
        found = re.search(r"GLOBAL (\S+)", detail)
        if found:
            return (
                f"refused: besides tensors it holds Python objects ({found.group(1)}), and unpickling those "
                "could run code (never done here)"
            )
        return f"not a checkpoint the safe (weights-only) loader can read ({_first_sentence(detail) or 'a pickle'})"
    return f"not a readable checkpoint ({_first_sentence(text.splitlines()[0]) if text else type(exc).__name__})"


def _can_mmap(path: Path) -> bool:
    """torch.load(mmap=True) needs the zip format; old-style pickles must be read without it."""
    import zipfile

    return zipfile.is_zipfile(path)


def write_state_dict(
    state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike, model_config: Mapping | None = None
) -> Path:
    """Write ``state_dict`` (and the ``model_config`` it belongs to, if given) atomically
    (``mgeldm.files.atomic_path``: temporary name beside ``path``, renamed)."""
    from mgeldm.files import atomic_path

    path = Path(path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    with atomic_path(path) as tmp:
        _format(path).write(tensors, model_config, tmp)
    return path


def _unshare(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors sharing storage; give each its own."""
    seen: set[int] = set()
    out = {}
    for k, v in tensors.items():
        ptr = v.untyped_storage().data_ptr() if v.numel() else -1
        out[k] = v.clone() if ptr in seen else v
        seen.add(ptr)
    return out


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries whose name starts with ``prefix``, with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}


def add_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in state_dict.items()}


def checkpoint_step(path: str | os.PathLike) -> int | None:
    """The training step in a checkpoint's name (``step00001400.ckpt`` -> 1400; see :data:`STEP_NAME`), or None."""
    import re

    found = re.search(r"step0*(\d+)", Path(path).name)
    return int(found.group(1)) if found else None


def unwrapped_kind(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """``mgeldm`` (DiT + VAE), ``autoencoder`` (the VAE alone) or None, from the key prefixes."""
    if any(k.startswith(DIT_PREFIX) for k in state_dict):
        return "mgeldm"
    if any(k.startswith(("encoder.", "decoder.")) for k in state_dict):
        return "autoencoder"
    return None


def describe_mismatch(expected: Mapping[str, torch.Size], found: Mapping[str, torch.Tensor]) -> str | None:
    """A short description of how ``found`` differs from ``expected`` names/shapes, or None if it fits."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    misshaped = [
        f"{k} {tuple(found[k].shape)} vs {tuple(expected[k])}"
        for k in expected
        if k in found and tuple(found[k].shape) != tuple(expected[k])
    ]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshaped)):
        if items:
            shown = ", ".join(items[:_SHOW]) + (", ..." if len(items) > _SHOW else "")
            parts.append(f"{len(items)} {label} ({shown})")
    return "; ".join(parts) if parts else None


def load_weights(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    what: str,
    path: str | os.PathLike | None = None,
) -> None:
    """Strictly load ``state_dict`` into ``module``; a mismatch is one ``UserError`` line.

    ``what`` names what the checkpoint should be (e.g. "an MGE-LDM DiT checkpoint"), so the
    message tells the user what was expected, not just which keys differ.
    """
    expected = {k: v.shape for k, v in module.state_dict().items()}
    problem = describe_mismatch(expected, state_dict)
    where = f"checkpoint {path}" if path is not None else "checkpoint"
    if problem:
        raise UserError(f"{where} does not fit {what}: {problem}")
    module.load_state_dict(dict(state_dict), strict=True)
