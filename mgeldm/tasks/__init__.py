"""tasks layer of mgeldm."""
