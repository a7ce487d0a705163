"""AE training: ``python train_ae.py --config-name default_ae [ckpt_path=last]`` (``--help``).

All logic lives in :mod:`mgeldm.cli.train_ae`.
"""

from mgeldm.cli.train_ae import main

if __name__ == "__main__":
    raise SystemExit(main())
