"""Score stems against references: ``python evaluate.py +pred_dir=… +ref_dir=… +metrics=[…] +output=…``.

See mgeldm/cli/evaluate.py for pairing, alignment and the baseline rows.
"""

import hydra
from omegaconf import DictConfig

from mgeldm.cli.hydra_args import run_app, run_cli


@hydra.main(config_path="configs", config_name="evaluate", version_base=None)
def main(cfg: DictConfig) -> None:
    from mgeldm.cli.evaluate import run

    run_cli("evaluate.py", run, cfg)


if __name__ == "__main__":
    from mgeldm.cli.evaluate import OPTIONS, usage

    run_app(main, "evaluate.py", options=OPTIONS, usage=usage)
