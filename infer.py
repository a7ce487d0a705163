"""Inference entry point: ``python infer.py --config-name dit +task=source_extract ckpt_path=... ...``.

All logic lives in :mod:`mgeldm.cli.infer` (options, errors) over :mod:`mgeldm.api`.
"""

import hydra

from mgeldm.cli.hydra_args import run_app
from mgeldm.cli.infer import OPTIONS, usage
from mgeldm.cli.infer import main as run_infer


@hydra.main(config_path="configs", config_name="dit", version_base=None)
def main(cfg) -> None:
    run_infer(cfg)


if __name__ == "__main__":
    run_app(main, "infer.py", options=(*OPTIONS, "ckpt_path", "clap_ckpt_path"), usage=usage)
