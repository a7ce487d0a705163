"""Fixtures of the data tests; puts this folder on sys.path for ``_data_helpers``."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
