"""The three tracks of MGE-LDM: their order, their names, and the keys of a training item.

The DiT's channels hold the tracks one after another (track k owns channels ``[k C, (k+1) C)``) and its
condition rows in the same order; every layer refers to a track by these numbers or names.
"""

MIX, SUBMIX, SRC = 0, 1, 2
TRACK_NAMES = ("mix", "submix", "src")
NUM_TRACKS = len(TRACK_NAMES)
LATENT_KEYS = tuple(f"{name}_latent" for name in TRACK_NAMES)  # a training item's latent windows (C, T)
CLAP_KEYS = tuple(f"{name}_clap" for name in TRACK_NAMES)  # its condition columns (G,)


def track_channels(z, track: int, channels: int):
    """The channels of ``track`` in latents (B, K*C, T) of all tracks: (B, C, T)."""
    return z[:, track * channels : (track + 1) * channels]
