"""Score stems against references: ``python evaluate.py +pred_dir=... +ref_dir=... +metrics=[...] +output=...``.

All logic lives in :mod:`mgeldm.cli.evaluate` over :mod:`mgeldm.evaluation`.
"""

from mgeldm.cli.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
