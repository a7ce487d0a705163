"""Pre-encode multitrack corpora into AE latents + CLAP embeddings (see mgeldm/cli/pre_encode.py)."""

from mgeldm.cli.pre_encode import main

if __name__ == "__main__":
    main()
