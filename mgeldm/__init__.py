"""MGE-LDM: joint latent diffusion for music generation, source extraction and partial generation."""

__version__ = "0.1.0"
