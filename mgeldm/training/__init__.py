"""training layer of mgeldm."""
