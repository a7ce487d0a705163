"""Pre-encoding: corpus folders -> the latent + CLAP ``.npy`` layout that training reads
(docs/compatibility.md#pre-encoding).

For every song: the mix (sum of the stems, padded to the longest), each source and each submix (the
mix minus that source) are encoded separately with the VAE mean, and embedded per second over 10 s
windows by the audio embedder (CLAP at 48 kHz by default)::

    <root>/zero_latent.npy
    <root>/encoding.json            (the autoencoder and embedder every latent of the root comes from)
    <root>/<corpus>/<split>/trackNNNNN/{mix.npy, mix_clap.npy, combK/{src,submix}{,_clap}.npy, combK/comb_info.json}
    <root>/<corpus>/manifest.json

What the original lacked: a track folder is written under a temporary name and renamed when complete, so a
killed run loses only the track in progress and a rerun skips complete tracks; ``num_shards``/``shard_id``
split the work (the last shard to finish merges the manifest); songs shorter than the 11 s the original
needed get one CLAP column of the padded clip; long songs can be encoded in chunks; broken songs are skipped
with one warning line and counted. Nothing written depends on the clock or on where the corpus lies, so reruns
give identical bytes. Everything is checked before the first file is written: the settings, every corpus root
(an empty or wrong-layout root is refused) and the save root, whose latents must all come from one autoencoder
and embedder (a rerun with another one is refused unless ``reencode`` asks to start the run's corpora over).

One job per module: ``settings`` (the numbers and their checks), ``hashing`` (weights and files), ``records`` (what
the manifests say made the latents), ``embedders`` (building the audio embedder), ``encoder`` (waveforms -> latents
and embeddings), ``tracks`` (one song -> its track folder's files), ``layout`` (names and folders of a root),
``manifest`` (merging the shards' reports), ``shards`` (each shard's share), ``reencode`` (one encoder per root)
and ``run`` (the whole run).
"""

from mgeldm.data.pre_encode.encoder import TrackEncoder
from mgeldm.data.pre_encode.layout import ZERO_LATENT_NAME, write_track_folder
from mgeldm.data.pre_encode.records import RunInfo
from mgeldm.data.pre_encode.run import pre_encode
from mgeldm.data.pre_encode.settings import EncodeSettings

__all__ = ["EncodeSettings", "RunInfo", "TrackEncoder", "ZERO_LATENT_NAME", "pre_encode", "write_track_folder"]
