#!/usr/bin/env bash
# Mixture-only pretraining (docs/compatibility.md#dit-training, with the fixes of differences 1, 2 of docs/compatibility.md: the source track's loss is masked).
# Afterwards: scripts/unwrap_dit_script.sh runs/dit_mix_pretrain/checkpoints/last.ckpt mix_pretrained
# and start full training with PRETRAINED=mix_pretrained.ckpt scripts/train_dit.sh
set -euo pipefail
cd "$(dirname "$0")/.."
: "${AE_CKPT:?set AE_CKPT=/path/to/unwrapped_ae.ckpt}"
: "${CLAP_CKPT:?set CLAP_CKPT=/path/to/music_audioset_epoch_15_esc_90.14.pt}"
: "${DATA_ROOT:?set DATA_ROOT=/path/to/pre_extracted_latents}"
python train_dit.py --config-name default_dit_mix_pretrain \
    autoencoder_ckpt_path="${AE_CKPT}" clap_ckpt_path="${CLAP_CKPT}" data.data_dir="${DATA_ROOT}" \
    save_dir=runs/dit_mix_pretrain ckpt_path=last \
    "$@"
