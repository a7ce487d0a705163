"""Packaging: the ``mgeldm`` package, with the repository's ``configs/`` shipped inside it as ``mgeldm/configs``.

In a checkout the yaml files stay where the README names them (``configs/...``) and ``mgeldm.config`` reads them
there; an installed package (``pip install .``, a wheel) carries the same files and reads its own copy. The
metadata is in ``pyproject.toml``.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["mgeldm", "mgeldm.*"]), "mgeldm.configs"],
    package_dir={"mgeldm.configs": "configs"},
    package_data={"mgeldm.configs": ["*.yaml", "*/*.yaml", "*/*/*.yaml"]},
)
