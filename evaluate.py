"""Score stems against references: ``python evaluate.py +pred_dir=… +ref_dir=… +metrics=[…] +output=…``.

See mgeldm/cli/evaluate.py for pairing, alignment and the baseline rows.
"""

import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from mgeldm.errors import UserError


@hydra.main(config_path="configs", config_name="evaluate", version_base=None)
def main(cfg: DictConfig) -> None:
    from mgeldm.cli.evaluate import run

    try:
        run(OmegaConf.to_container(cfg, resolve=True))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
