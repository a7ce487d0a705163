"""models layer of mgeldm."""
