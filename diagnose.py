"""Does a DiT recipe learn? ``python diagnose.py overfit|latents --help``.

All logic lives in :mod:`mgeldm.cli.diagnose`.
"""

from mgeldm.cli.diagnose import main

if __name__ == "__main__":
    raise SystemExit(main())
