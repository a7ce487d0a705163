#!/bin/bash
## partial_gen_iter with the original script's settings (docs/compatibility.md#sampling-and-the-five-tasks). Every variable can be set from the environment,
## e.g. CKPT_PATH=... CLAP_CKPT_PATH=... bash scripts/infer_partial_gen_iter.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/hydra_quote.sh   # paths and prompts reach Hydra quoted, whatever they hold

GPU=${GPU:-0}
CONFIG_NAME=${CONFIG_NAME:-"default_dit_scratch"}
CKPT_PATH=${CKPT_PATH:-"checkpoints/unwrapped_DiT.ckpt"}                       # the unwrapped DiT (DiT + AE)
CLAP_CKPT_PATH=${CLAP_CKPT_PATH:-"checkpoints/music_audioset_epoch_15_esc_90.14.pt"}  # LAION music CLAP
OUTPUT_DIR=${OUTPUT_DIR:-"./outputs_infer/"}

TASK="partial_gen_iter"
GIVEN_WAV_PATH=${GIVEN_WAV_PATH:-"data_sample/bruno_24kmagic_seg.wav"}   # the starting submix
TEXT_PROMPT=${TEXT_PROMPT:-"The sound of drums; The sound of the bass; Jazz piano"}

NUM_STEPS=${NUM_STEPS:-20}
CFG_SCALE=${CFG_SCALE:-2.0}
OVERLAP_DUR=${OVERLAP_DUR:-3.0}   # seconds shared by consecutive 12.8 s windows (any value < 12.8)
REPAINT_N=${REPAINT_N:-2}
SEED=${SEED:-}                 # empty: a fresh random seed (recorded in run.json)

CUDA_VISIBLE_DEVICES=$GPU \
python infer.py \
    --config-name "$CONFIG_NAME" \
    +task=$TASK \
    "ckpt_path=$(hydra_quote "$CKPT_PATH")" \
    "clap_ckpt_path=$(hydra_quote "$CLAP_CKPT_PATH")" \
    "+given_wav_path=$(hydra_quote "$GIVEN_WAV_PATH")" \
    "+text_prompt=$(hydra_quote "$TEXT_PROMPT")" \
    +num_steps=${NUM_STEPS} \
    +cfg_scale=${CFG_SCALE} \
    +overlap_dur=${OVERLAP_DUR} \
    +repaint_n=${REPAINT_N} \
    ${SEED:+"++seed=$SEED"} \
    "+output_dir=$(hydra_quote "$OUTPUT_DIR")" \
    "$@"
