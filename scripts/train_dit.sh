#!/usr/bin/env bash
# Full MGE-LDM training (docs/compatibility.md#dit-training; the original's `--config-name dit`, 2 GPUs with DDP).
#   AE_CKPT:   unwrapped AE that encoded the latents    CLAP_CKPT: music_audioset_epoch_15_esc_90.14.pt
#   DATA_ROOT: pre_encode.py output                      PRETRAINED: optional unwrapped mix-pretrained MGE-LDM
# Resume after a crash / requeue with the same command (ckpt_path=last).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${AE_CKPT:?set AE_CKPT=/path/to/unwrapped_ae.ckpt}"
: "${CLAP_CKPT:?set CLAP_CKPT=/path/to/music_audioset_epoch_15_esc_90.14.pt}"
: "${DATA_ROOT:?set DATA_ROOT=/path/to/pre_extracted_latents}"
extra=()
if [[ -n "${PRETRAINED:-}" ]]; then extra+=("pretrained_ckpt_path=${PRETRAINED}"); fi
python train_dit.py --config-name dit \
    autoencoder_ckpt_path="${AE_CKPT}" clap_ckpt_path="${CLAP_CKPT}" data.data_dir="${DATA_ROOT}" \
    save_dir=runs/dit ckpt_path=last \
    "${extra[@]}" "$@"
