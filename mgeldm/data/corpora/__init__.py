"""data/corpora layer of mgeldm."""
