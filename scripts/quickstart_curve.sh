#!/usr/bin/env bash
# How far does more training take the quickstart recipe? Train its DiT (or its AE) again from scratch for
# longer, keep a checkpoint every N steps, and score every checkpoint on the same held-out songs
# (recipes/quickstart/score.py: the report's Log-Mel L1 ratio and prompt accuracy, or the AE's oracle ratio).
#
#   bash scripts/quickstart_curve.sh --from QS_OUT [--model dit|ae] [--steps 4000] [--every 800]
#                                    [--out DIR] [--gpu] [-- HYDRA_OVERRIDES...]
#
# --from      the output folder of a finished scripts/quickstart.sh run (its corpus, AE, latents and eval/)
# --model     dit (default): the DiT on that run's latents and AE; ae: the AE on that run's corpus
# --steps     training steps (default 4000; a budget in steps, so the curve is the same on every machine)
# --every     steps between checkpoints (default 800, the small recipe's DiT budget)
# --out       default QS_OUT/curve_<model>; writes curve.json and curve.md there
# --gpu       train and score on the GPU (cuda)
# -- ...      more Hydra overrides for training; the model ones (model.*, model/*) also reach unwrapping and
#             scoring. The DiT's model overrides of the quickstart run (e.g. of --size medium, or its text table)
#             are read from QS_OUT/dit_model_overrides.txt.
set -euo pipefail

FROM=""; MODEL=dit; STEPS=4000; EVERY=800; OUT=""; GPU=0; EXTRA=()
die() { echo "quickstart_curve.sh: error: $*" >&2; exit 2; }
value() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1: expects a value (see --help)"; }  # value OPTION "$2"
while [ $# -gt 0 ]; do
  case "$1" in
    --from) value "$@"; FROM="$2"; shift 2 ;;
    --model) value "$@"; MODEL="$2"; shift 2 ;;
    --steps|--max-steps) value "$@"; STEPS="$2"; shift 2 ;;
    --minutes) die "--minutes: budgets are steps now (the same curve on every machine); use --steps N" ;;
    --every) value "$@"; EVERY="$2"; shift 2 ;;
    --out) value "$@"; OUT="$2"; shift 2 ;;
    --gpu) GPU=1; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) die "$1: unknown argument (see --help)" ;;
  esac
done
[ -n "$FROM" ] || die "--from QS_OUT: missing (the output folder of scripts/quickstart.sh)"
case "$MODEL" in dit|ae) ;; *) die "--model $MODEL: expected dit or ae" ;; esac
[[ "$STEPS" =~ ^[0-9]+$ && "$STEPS" -ge 1 ]] || die "--steps $STEPS: expected a positive number of steps"
[[ "$EVERY" =~ ^[0-9]+$ && "$EVERY" -ge 1 ]] || die "--every $EVERY: expected a positive number of steps"
for need in eval/songs.json checkpoints/autoencoder.ckpt corpus latents classes.txt; do
  [ -e "$FROM/$need" ] || die "$FROM/$need: missing (expected a finished scripts/quickstart.sh output folder)"
done

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FROM="$(cd "$FROM" && pwd)"
OUT="${OUT:-$FROM/curve_$MODEL}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
cd "$REPO"
PY="${PYTHON:-python3}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}" PYTHONWARNINGS="${PYTHONWARNINGS:-ignore}"

if [ "$GPU" = 1 ]; then ACCEL=gpu; DEVICE=cuda; else ACCEL=cpu; DEVICE=cpu; fi
TRAIN_ARGS=(save_dir="$OUT/run" trainer.pl_trainer.accelerator="$ACCEL" trainer.pl_trainer.max_time=null
            trainer.pl_trainer.max_steps="$STEPS" trainer.checkpoint_every_n_steps="$EVERY" trainer.save_top_k=-1)
if [ "$MODEL" = dit ] && [ -s "$FROM/dit_model_overrides.txt" ]; then
  while IFS= read -r line; do [ -n "$line" ] && EXTRA=("$line" "${EXTRA[@]}"); done < "$FROM/dit_model_overrides.txt"
fi
TRAIN_ARGS+=("${EXTRA[@]}")
MODEL_ARGS=(); SCORE_ARGS=()
for a in "${EXTRA[@]}"; do case "$a" in model.*|model/*) MODEL_ARGS+=("$a"); SCORE_ARGS+=(--override "$a") ;; esac; done
rm -rf "$OUT/run" "$OUT/unwrapped"
mkdir -p "$OUT/unwrapped"
echo "==== training the $MODEL for $STEPS steps, a checkpoint every $EVERY steps -> $OUT/run"
if [ "$MODEL" = dit ]; then
  CONFIG=quickstart_dit
  "$PY" train_dit.py --config-name "$CONFIG" autoencoder_ckpt_path="$FROM/checkpoints/autoencoder.ckpt" \
    data.data_dir="$FROM/latents" "${TRAIN_ARGS[@]}"
  TYPE=mgeldm
else
  CONFIG=quickstart_ae
  "$PY" train_ae.py --config-name "$CONFIG" data.train.slakh2100.data_dir="$FROM/corpus" "${TRAIN_ARGS[@]}"
  TYPE=autoencoder
fi

echo "==== unwrapping every checkpoint"
RUN_CKPTS="$OUT/run/checkpoints"
SOURCES=("$RUN_CKPTS"/step*.ckpt)
if [ -f "$RUN_CKPTS/last.ckpt" ]; then  # the end of training, unless a periodic save already holds its step
  LAST_STEP="$("$PY" -c 'import sys, torch; print(int(torch.load(sys.argv[1], map_location="cpu", weights_only=True)["global_step"]))' \
    "$RUN_CKPTS/last.ckpt")"
  [ -f "$RUN_CKPTS/$(printf 'step%08d.ckpt' "$LAST_STEP")" ] || SOURCES+=("$RUN_CKPTS/last.ckpt")
fi
CKPTS=()
for c in "${SOURCES[@]}"; do
  [ -f "$c" ] || continue
  if [ "$(basename "$c")" = last.ckpt ]; then name="$(printf 'step%08d' "$LAST_STEP")"; else name="$(basename "$c" .ckpt)"; fi
  "$PY" unwrap_model.py --config-name "$CONFIG" +type="$TYPE" ckpt_path="$c" +output_name="$OUT/unwrapped/$name" \
    "${MODEL_ARGS[@]}" > /dev/null
  CKPTS+=("$OUT/unwrapped/$name.ckpt")
done
[ "${#CKPTS[@]}" -gt 0 ] || die "$OUT/run/checkpoints: training wrote no checkpoint"

echo "==== scoring ${#CKPTS[@]} checkpoints on $FROM/eval"
read -r STEPS_X CFG_X OVERLAP_X <<< "$("$PY" -m recipes.quickstart.report extraction-settings "${MODEL_ARGS[@]}")"
"$PY" -m recipes.quickstart.score "$MODEL" "${CKPTS[@]}" --eval-dir "$FROM/eval" --output "$OUT/curve.json" \
  --classes "$(cat "$FROM/classes.txt")" --device "$DEVICE" --steps "$STEPS_X" --cfg-scale "$CFG_X" \
  --overlap "$OVERLAP_X" "${SCORE_ARGS[@]}"
echo "quickstart_curve done: $OUT/curve.json, $OUT/curve.md"
