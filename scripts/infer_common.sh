# Sourced by every scripts/infer_*.sh: the variables all tasks take (each can be set from the environment) and the
# infer.py command line. A script sets TASK and its task's defaults, sources this file and calls run_infer "$@"
# (arguments after the script's name reach infer.py as further overrides).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/hydra_quote.sh   # paths and prompts reach Hydra quoted, whatever they hold

GPU=${GPU:-0}
CONFIG_NAME=${CONFIG_NAME:-"dit"}
CKPT_PATH=${CKPT_PATH:-"checkpoints/unwrapped_DiT.ckpt"}                       # the unwrapped DiT (DiT + AE)
CLAP_CKPT_PATH=${CLAP_CKPT_PATH:-"checkpoints/music_audioset_epoch_15_esc_90.14.pt"}  # LAION music CLAP
OUTPUT_DIR=${OUTPUT_DIR:-"./outputs_infer/"}
SEED=${SEED:-}                 # empty: a fresh random seed (recorded in run.json)
# OVERLAP_DUR: seconds shared by consecutive 12.8 s windows (any value < 12.8)

run_infer() {
  local given
  if [ "$TASK" = total_gen ]; then
    given=(+gen_audio_dur="${GEN_AUDIO_DUR}" +given_wav_path=null)
  else
    given=("+given_wav_path=$(hydra_quote "$GIVEN_WAV_PATH")")
  fi
  CUDA_VISIBLE_DEVICES=$GPU \
  python infer.py \
      --config-name "$CONFIG_NAME" \
      +task="$TASK" \
      "ckpt_path=$(hydra_quote "$CKPT_PATH")" \
      "clap_ckpt_path=$(hydra_quote "$CLAP_CKPT_PATH")" \
      "${given[@]}" \
      "+text_prompt=$(hydra_quote "$TEXT_PROMPT")" \
      +num_steps="${NUM_STEPS}" \
      +cfg_scale="${CFG_SCALE}" \
      +overlap_dur="${OVERLAP_DUR}" \
      +repaint_n="${REPAINT_N}" \
      ${SEED:+"++seed=$SEED"} \
      "+output_dir=$(hydra_quote "$OUTPUT_DIR")" \
      "$@"
}
