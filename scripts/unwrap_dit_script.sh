#!/usr/bin/env bash
# Lightning DiT checkpoint -> unwrapped MGE-LDM (EMA DiT + AE, <output>.ckpt) for infer.py; no CLAP needed.
#   scripts/unwrap_dit_script.sh [runs/dit/checkpoints/last.ckpt] [unwrapped_DiT]
set -euo pipefail
cd "$(dirname "$0")/.."
CKPT="${1:-runs/dit/checkpoints/last.ckpt}"
OUT="${2:-unwrapped_DiT}"
python unwrap_model.py --config-name dit +type=mgeldm ckpt_path="${CKPT}" \
    +use_safetensors=false +output_name="${OUT}"
