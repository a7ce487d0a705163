"""``python pre_encode.py --config-name default_ae ckpt_path=<AE> +clap_ckpt_path=… +save_root_dir=…
+extract_dataset=[slakh2100,…] +data_dirs.slakh2100=/path …``: corpora -> latents + CLAP (SPEC F.1)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from mgeldm.errors import UserError

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "configs")


def _dataset_keys(value) -> list[str]:
    if value is None:
        raise UserError("extract_dataset: missing; pass +extract_dataset=[slakh2100,musdb18hq,...]")
    if isinstance(value, str):
        value = [v for v in value.strip("[]").split(",") if v.strip()]
    return [str(v).strip() for v in value]


def _device(value) -> str:
    import torch

    if value:
        return str(value)
    return "cuda:0" if torch.cuda.is_available() else "cpu"


def run(cfg: Mapping) -> None:
    """Build readers, AE and embedder from the composed config, then pre-encode."""
    from mgeldm.data.corpora.registry import build_reader
    from mgeldm.data.pre_encode import (EncodeSettings, RunInfo, TrackEncoder, autoencoder_info, build_embedder,
                                        embedder_info, pre_encode)

    save_root = cfg.get("save_root_dir")
    if not save_root:
        raise UserError("save_root_dir: missing; pass +save_root_dir=/path/to/pre_extracted_latents")
    data_dirs = dict(cfg.get("data_dirs") or {})
    readers = [build_reader(key, data_dirs.get(key)) for key in _dataset_keys(cfg.get("extract_dataset"))]
    settings = EncodeSettings.from_mapping(cfg.get("pre_encode"))
    shards = dict(num_shards=int(cfg.get("num_shards", 1)), shard_id=int(cfg.get("shard_id", 0)))
    if cfg.get("dry_run", False):
        pre_encode(readers, save_root, encoder=None, info=None, dry_run=True, **shards)
        return

    from mgeldm.checkpoints import load_weights, read_state_dict
    from mgeldm.models.autoencoder import build_autoencoder

    if not cfg.get("ckpt_path"):
        raise UserError("ckpt_path: missing; pass ckpt_path=<unwrapped AE .ckpt or .safetensors>")
    ae = build_autoencoder(cfg["model"])
    load_weights(ae, read_state_dict(cfg["ckpt_path"]), what="autoencoder", path=cfg["ckpt_path"])
    node = dict(cfg.get("embedder") or {})
    node["config"] = dict(node.get("config") or {})
    if cfg.get("clap_ckpt_path"):
        node["config"]["clap_ckpt_path"] = cfg["clap_ckpt_path"]
    device = _device(cfg.get("device"))
    embedder = build_embedder(node, device=device)
    encoder = TrackEncoder(ae, embedder, settings, device=device)
    info = RunInfo(autoencoder_info(ae), embedder_info(node, embedder))
    pre_encode(readers, save_root, encoder=encoder, info=info, **shards)


@hydra.main(version_base=None, config_path=CONFIG_DIR, config_name="default_ae")
def main(cfg: DictConfig) -> None:
    try:
        run(OmegaConf.to_container(cfg, resolve=True))
    except UserError as err:
        print(f"pre_encode.py: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
