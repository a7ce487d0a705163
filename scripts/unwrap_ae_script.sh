#!/usr/bin/env bash
# Lightning AE checkpoint -> unwrapped EMA autoencoder (<output>.ckpt), as the original's script.
#   scripts/unwrap_ae_script.sh [runs/autoencoder/checkpoints/last.ckpt] [unwrapped_AE]
set -euo pipefail
cd "$(dirname "$0")/.."
CKPT="${1:-runs/autoencoder/checkpoints/last.ckpt}"
OUT="${2:-unwrapped_AE}"
python unwrap_model.py --config-name default_ae +type=autoencoder ckpt_path="${CKPT}" \
    +use_safetensors=false +output_name="${OUT}"
