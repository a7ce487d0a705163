"""``python unwrap_model.py --config-name default_ae +type=autoencoder ckpt_path=… +use_safetensors=false
+output_name=…``
(or ``--config-name dit +type=mgeldm``): Lightning checkpoint → unwrapped EMA weights
(docs/compatibility.md#checkpoints).

No CLAP checkpoint is needed: only the model's names and shapes are checked, on the meta device.
"""

from __future__ import annotations

from pathlib import Path

from mgeldm.cli.hydra_args import hydra_cli
from mgeldm.cli.schema import check_config, choice, optional, text
from mgeldm.errors import UserError
from mgeldm.files import check_readable_file, check_writable_dir
from mgeldm.training.unwrap import KINDS

PROG = "unwrap_model.py"
# Top-level keys this CLI reads: `key=`, `+key=` and `++key=` all set them.
OPTIONS = ("type", "ckpt_path", "output_name", "use_safetensors", "use_ema")

RULES = {
    "type": optional(choice(*KINDS)),
    "ckpt_path": optional(text()),
    "output_name": optional(text()),
}


def _bool(value, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "1", "yes"):
        return True
    if str(value).lower() in ("false", "0", "no"):
        return False
    raise UserError(f"{name}: expected true or false, got {value!r}")


def check_options(cfg: dict) -> None:
    """Every option, before the checkpoint is read."""
    check_config(cfg, RULES)
    if cfg.get("ckpt_path"):
        check_readable_file(cfg["ckpt_path"], "ckpt_path", "a Lightning training checkpoint")
    if cfg.get("output_name"):
        folder = Path(str(cfg["output_name"])).expanduser().parent
        check_writable_dir(folder, "output_name", cfg["output_name"])


def run(cfg: dict) -> None:
    from mgeldm.training.unwrap import unwrap_checkpoint

    check_options(cfg)
    use_safetensors = _bool(cfg.get("use_safetensors", False), "use_safetensors")
    use_ema = _bool(cfg.get("use_ema", True), "use_ema")
    kind = cfg.get("type")
    if not kind:
        raise UserError(
            "type: missing; pass +type=autoencoder (with --config-name default_ae) or +type=mgeldm "
            "(with --config-name dit)"
        )
    if not cfg.get("ckpt_path"):
        raise UserError(
            "ckpt_path: missing; pass ckpt_path=<Lightning checkpoint, e.g. runs/dit/checkpoints/last.ckpt>"
        )
    if not cfg.get("output_name"):
        raise UserError("output_name: missing; pass +output_name=<path without extension>")
    model_cfg = cfg.get("model")
    if model_cfg is not None and kind == "mgeldm" and "MGELDM" not in model_cfg:
        raise UserError("type=mgeldm needs a DiT config: use --config-name dit (model: dit)")
    if model_cfg is not None and kind == "autoencoder" and "encoder" not in model_cfg:
        raise UserError("type=autoencoder needs an AE config: use --config-name default_ae (model: autoencoder)")
    out = unwrap_checkpoint(
        cfg["ckpt_path"],
        str(kind),
        cfg["output_name"],
        model_cfg=model_cfg,
        use_safetensors=use_safetensors,
        use_ema=use_ema,
    )
    print(f"wrote {out}")


def usage() -> str:
    """The text of ``python unwrap_model.py --help``."""
    from mgeldm.cli.hydra_args import usage_text

    options = [
        ("--config-name NAME", "the config the run was trained with (default_ae, dit, quickstart_dit, ...)"),
        ("+type=KIND", "autoencoder | mgeldm (required)"),
        ("ckpt_path=FILE", "the Lightning training checkpoint, e.g. runs/dit/checkpoints/last.ckpt (required)"),
        ("+output_name=PATH", "the output file without extension (required)"),
        ("+use_safetensors=BOOL", "false (default): .ckpt | true: .safetensors"),
        ("+use_ema=BOOL", "true (default): the EMA weights | false: the online weights"),
    ]
    examples = [
        "python unwrap_model.py --config-name dit +type=mgeldm ckpt_path=runs/dit/checkpoints/last.ckpt "
        "+output_name=unwrapped_DiT",
        "python unwrap_model.py --config-name default_ae +type=autoencoder "
        "ckpt_path=runs/autoencoder/checkpoints/last.ckpt +use_safetensors=true +output_name=unwrapped_AE",
    ]
    return usage_text(
        "python unwrap_model.py --config-name NAME +type=KIND ckpt_path=FILE +output_name=PATH",
        "Writes the (EMA) weights of a training checkpoint, with its model config, as an unwrapped "
        "checkpoint that infer.py, pre_encode.py and train_dit.py read (also the original code's "
        "checkpoints).",
        options,
        examples,
    )


CLI = hydra_cli(PROG, run, config_name="default_ae", options=OPTIONS, usage=usage)
main, run_config = CLI.main, CLI.run_config

if __name__ == "__main__":
    raise SystemExit(main())
