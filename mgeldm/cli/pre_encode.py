"""``python pre_encode.py --config-name default_ae ckpt_path=<AE> +clap_ckpt_path=… +save_root_dir=…
+extract_dataset=[slakh2100,…] +data_dirs.slakh2100=/path …``: corpora -> latents + CLAP
(docs/compatibility.md#pre-encoding)."""

from __future__ import annotations

from collections.abc import Mapping

from mgeldm.cli.boundary import Messages
from mgeldm.cli.hydra_args import hydra_cli
from mgeldm.cli.schema import boolean, check_config, integer, number, optional, prefixed, text
from mgeldm.errors import UserError
from mgeldm.files import check_readable_file, check_writable_dir

PROG = "pre_encode.py"
# Top-level keys this CLI reads: `key=`, `+key=` and `++key=` all set them.
OPTIONS = (
    "ckpt_path",
    "clap_ckpt_path",
    "save_root_dir",
    "extract_dataset",
    "data_dirs",
    "num_shards",
    "shard_id",
    "device",
    "dry_run",
)

RULES = {
    "ckpt_path": optional(text()),
    "clap_ckpt_path": optional(text()),
    "save_root_dir": optional(text()),
    "num_shards": integer(1),
    "shard_id": integer(0),
    "device": optional(text()),
    "dry_run": boolean(),
    "data_dirs.*": optional(text()),
    **prefixed(
        "pre_encode",
        {
            "batch_size": integer(1),
            "clap_batch_size": integer(1),
            "clap_window_seconds": number(above=0),
            "chunk_min_seconds": number(above=0),
            "chunk_size": integer(1),
            "chunk_overlap": integer(0),
            "progress": boolean(),
            "label_template": text(),
        },
    ),
}


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


def check_options(cfg: Mapping) -> None:
    """Every option, before a corpus is read or a file written."""
    check_config(cfg, RULES)
    shards, shard = int(cfg.get("num_shards", 1)), int(cfg.get("shard_id", 0))
    if shard >= shards:
        raise UserError(f"shard_id={shard}: expected an integer < num_shards ({shards})")
    if cfg.get("save_root_dir"):
        check_writable_dir(cfg["save_root_dir"], "save_root_dir")
    if cfg.get("dry_run", False):
        return
    if cfg.get("ckpt_path"):
        check_readable_file(cfg["ckpt_path"], "ckpt_path", "an unwrapped AE (.ckpt or .safetensors)")
    if cfg.get("clap_ckpt_path"):
        check_readable_file(cfg["clap_ckpt_path"], "clap_ckpt_path", "the CLAP checkpoint")
    if cfg.get("device"):
        from mgeldm.inputs import resolve_device

        resolve_device(str(cfg["device"]))


def run(cfg: Mapping) -> None:
    """Build readers, AE and embedder from the composed config, then pre-encode."""
    from mgeldm.data.corpora.registry import build_reader
    from mgeldm.data.pre_encode.embedders import build_audio_embedder
    from mgeldm.data.pre_encode.encoder import TrackEncoder
    from mgeldm.data.pre_encode.records import RunInfo, autoencoder_info, embedder_info
    from mgeldm.data.pre_encode.run import pre_encode
    from mgeldm.data.pre_encode.settings import EncodeSettings

    check_options(cfg)
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
    embedder = build_audio_embedder(node, device=device)
    encoder = TrackEncoder(ae, embedder, settings, device=device)
    info = RunInfo(autoencoder_info(ae), embedder_info(node, embedder))
    pre_encode(readers, save_root, encoder=encoder, info=info, **shards)


def usage() -> str:
    """The text of ``python pre_encode.py --help``."""
    from mgeldm.cli.hydra_args import usage_text

    options = [
        ("--config-name NAME", "default_ae (the released AE's sizes, default) | quickstart_ae"),
        ("ckpt_path=FILE", "the unwrapped AE (.ckpt or .safetensors)"),
        ("+clap_ckpt_path=FILE", "LAION's music CLAP (per-second audio embeddings)"),
        ("+save_root_dir=DIR", "where the latents go (required)"),
        (
            "+extract_dataset=[a,b]",
            "corpus keys: slakh2100, musdb18hq, moisesdb, medleydbV2, mtgjamendo, mixtures, other_tracks",
        ),
        ("+data_dirs.<key>=DIR", "the root of each corpus"),
        ("+num_shards=N +shard_id=I", "split the work over processes or machines (default 1, 0)"),
        ("+device=DEV", "cuda:0 when available, else cpu (default)"),
        ("+dry_run=true", "list what would be encoded, write nothing"),
        ("pre_encode.<key>=V", "batch sizes, chunking, progress: the pre_encode node of configs/default_ae.yaml"),
    ]
    examples = [
        "python pre_encode.py --config-name default_ae ckpt_path=unwrapped_AE.ckpt "
        "+clap_ckpt_path=music_audioset_epoch_15_esc_90.14.pt +save_root_dir=pre_extracted_latents "
        "+extract_dataset=[slakh2100] +data_dirs.slakh2100=/data/slakh2100_flac_redux",
        "python pre_encode.py ... +num_shards=4 +shard_id=0   # one of 4 processes; reruns skip finished tracks",
    ]
    return usage_text(
        "python pre_encode.py [--config-name NAME] ckpt_path=AE +save_root_dir=DIR "
        "+extract_dataset=[...] +data_dirs.<key>=DIR [key=value ...]",
        "Encodes multitrack corpora into AE latents and per-second CLAP embeddings for train_dit.py (resumable).",
        options,
        examples,
    )


MESSAGES = Messages(
    {"device": "+device"},
    interrupted="; the tracks written are kept: rerun to finish",
    out_of_memory="try a smaller pre_encode.batch_size or pre_encode.clap_batch_size, or +device=cpu",
)
CLI = hydra_cli(PROG, run, config_name="default_ae", options=OPTIONS, usage=usage, messages=MESSAGES)
main, run_config = CLI.main, CLI.run_config

if __name__ == "__main__":
    raise SystemExit(main())
