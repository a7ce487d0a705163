"""The recipes live beside the package (``recipes/``): the repository root on sys.path imports them."""

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
