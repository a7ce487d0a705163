"""metrics layer of mgeldm."""
