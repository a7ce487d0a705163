"""Pre-encoding: corpora -> AE latents + per-second embeddings (``python pre_encode.py --help``).

All logic lives in :mod:`mgeldm.cli.pre_encode`.
"""

from mgeldm.cli.pre_encode import main

if __name__ == "__main__":
    raise SystemExit(main())
