"""Inference: ``python infer.py --config-name dit +task=source_extract ckpt_path=... ...`` (``--help``).

All logic lives in :mod:`mgeldm.cli.infer` over :mod:`mgeldm.api`.
"""

from mgeldm.cli.infer import main

if __name__ == "__main__":
    raise SystemExit(main())
