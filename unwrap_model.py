"""Unwrapping: ``python unwrap_model.py --config-name dit +type=mgeldm ckpt_path=... +output_name=...``.

All logic lives in :mod:`mgeldm.cli.unwrap_model` over :mod:`mgeldm.training.unwrap`.
"""

from mgeldm.cli.unwrap_model import main

if __name__ == "__main__":
    raise SystemExit(main())
