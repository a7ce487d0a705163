"""data layer of mgeldm."""
