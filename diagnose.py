"""Does a DiT recipe learn? ``python diagnose.py overfit|latents --help`` (see mgeldm/cli/diagnose.py)."""

from mgeldm.cli.diagnose import main

if __name__ == "__main__":
    raise SystemExit(main())
