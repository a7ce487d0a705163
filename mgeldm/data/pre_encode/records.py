"""What the manifests and ``encoding.json`` record about how the latents were made: the autoencoder, the embedder
(their hashes) and the versions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mgeldm.data.pre_encode.hashing import file_sha256, state_dict_sha256


@dataclass
class RunInfo:
    """What the manifest records about how the latents were made (no time stamps, no absolute paths)."""

    autoencoder: dict
    embedder: dict

    def versions(self) -> dict[str, str]:
        import mgeldm

        return {"mgeldm": mgeldm.__version__, "torch": torch.__version__.split("+")[0], "numpy": np.__version__}


def autoencoder_info(ae) -> dict:
    return {
        "sha256": state_dict_sha256(ae),
        "sample_rate": int(ae.sample_rate),
        "downsampling_ratio": int(ae.downsampling_ratio),
        "latent_dim": int(ae.latent_dim),
    }


def embedder_info(node: Mapping, embedder) -> dict:
    """Type, width, rate and the hash of every ``*ckpt_path`` file named in the node's config."""
    config = dict(node.get("config") or {})
    hashes = {
        k: file_sha256(v) for k, v in sorted(config.items()) if k.endswith("ckpt_path") and v and Path(str(v)).is_file()
    }
    return {
        "type": str(node.get("target") or node.get("type")),
        "dim": int(embedder.dim),
        "sample_rate": int(embedder.sample_rate) if getattr(embedder, "sample_rate", None) else None,
        "sha256": hashes,
    }
