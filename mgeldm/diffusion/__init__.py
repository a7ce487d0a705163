"""diffusion layer of mgeldm."""
