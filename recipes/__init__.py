"""Recipes built on the public API of :mod:`mgeldm` (they are not part of the installed package)."""
