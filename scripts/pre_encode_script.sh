#!/bin/bash
# Pre-encode multitrack corpora into AE latents + per-second CLAP embeddings (docs/compatibility.md#pre-encoding).
#   bash scripts/pre_encode_script.sh all 0                       # every corpus whose root is set below, GPU 0
#   bash scripts/pre_encode_script.sh slakh2100,musdb18hq 0
#   NUM_SHARDS=4 SHARD_ID=2 bash scripts/pre_encode_script.sh all 2   # one of 4 parallel workers
#   DRY_RUN=true bash scripts/pre_encode_script.sh all 0              # list what would be done
#   bash scripts/pre_encode_script.sh all 0 pre_encode.reencode=true   # more overrides after the GPU, passed as given
# Reruns skip finished tracks; a killed run loses only the track in progress.
set -euo pipefail

DATASET=${1:-all}   # comma-separated keys, or "all"
GPU=${2:-0}
shift $(( $# < 2 ? $# : 2 ))   # what remains: extra overrides for pre_encode.py

CKPT_PATH=${CKPT_PATH:-"/path/to/unwrapped_AE.ckpt"}
CLAP_CKPT_PATH=${CLAP_CKPT_PATH:-"/path/to/music_audioset_epoch_15_esc_90.14.pt"}
SAVE_ROOT_DIR=${SAVE_ROOT_DIR:-"/path/to/pre_extracted_latents"}
NUM_SHARDS=${NUM_SHARDS:-1}
SHARD_ID=${SHARD_ID:-0}
DRY_RUN=${DRY_RUN:-false}

# Corpus roots (leave empty the ones you do not have).
declare -A DATA_DIRS=(
  [slakh2100]=${SLAKH_DIR:-""}        # slakh2100_flac_redux: train/validation/test/TrackNNNNN
  [musdb18hq]=${MUSDB_DIR:-""}        # MUSDB18-HQ: train/test/<song>/*.wav
  [moisesdb]=${MOISES_DIR:-""}        # moisesdb_v0.1: <track id>/<stem>/*.wav
  [medleydbV2]=${MEDLEY_DIR:-""}      # MedleyDB v2: <track>/<track>_METADATA.yaml + stems
  [mtgjamendo]=${MTG_DIR:-""}         # MTG-Jamendo audio: 00..99/<id>.mp3
  [other_tracks]=${OTHER_DIR:-""}     # a folder per song of stem wavs
)

if [ "$DATASET" = "all" ]; then
  DATASET_LIST=()
  for key in slakh2100 musdb18hq moisesdb medleydbV2 mtgjamendo other_tracks; do
    [ -n "${DATA_DIRS[$key]}" ] && DATASET_LIST+=("$key")
  done
else
  IFS=',' read -r -a DATASET_LIST <<< "$DATASET"
fi
if [ ${#DATASET_LIST[@]} -eq 0 ]; then
  echo "pre_encode_script.sh: error: no corpus root set: export SLAKH_DIR=... (see the top of $0)" >&2
  exit 2
fi
echo "Encoding: ${DATASET_LIST[*]}"

ROOT_ARGS=()
for key in "${DATASET_LIST[@]}"; do
  ROOT_ARGS+=("+data_dirs.${key}=${DATA_DIRS[$key]}")
done
JOINED=$(IFS=,; echo "${DATASET_LIST[*]}")

CUDA_VISIBLE_DEVICES=$GPU \
python pre_encode.py \
  --config-name default_ae \
  +clap_ckpt_path="${CLAP_CKPT_PATH}" \
  ckpt_path="${CKPT_PATH}" \
  +save_root_dir="${SAVE_ROOT_DIR}" \
  "+extract_dataset=[${JOINED}]" \
  "${ROOT_ARGS[@]}" \
  +num_shards="${NUM_SHARDS}" +shard_id="${SHARD_ID}" +dry_run="${DRY_RUN}" \
  "$@"
