"""DiT training: ``python train_dit.py --config-name default_dit ... [ckpt_path=last]`` (``--help``).

All logic lives in :mod:`mgeldm.cli.train_dit`.
"""

from mgeldm.cli.train_dit import main

if __name__ == "__main__":
    raise SystemExit(main())
