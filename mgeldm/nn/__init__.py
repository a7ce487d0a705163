"""nn layer of mgeldm."""
