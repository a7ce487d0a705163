"""LAION's music CLAP (HTSAT-base + RoBERTa, no fusion) without the laion_clap package."""

from mgeldm.models.clap.config import ClapSizes
from mgeldm.models.clap.embedder import LaionClap
from mgeldm.models.clap.loader import IGNORED, build_clap_model, export_safetensors, load_clap, map_laion_key
from mgeldm.models.clap.model import ClapModel

__all__ = [
    "IGNORED",
    "ClapModel",
    "ClapSizes",
    "LaionClap",
    "build_clap_model",
    "export_safetensors",
    "load_clap",
    "map_laion_key",
]
