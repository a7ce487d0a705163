"""cli layer of mgeldm."""
