#!/usr/bin/env bash
# The whole MGE-LDM pipeline on a built-in synthetic corpus, offline, in 20-25 minutes on a 2-core CPU:
#   corpus -> train a small AE -> unwrap -> pre-encode -> train a small DiT (held-out monitor) -> unwrap its best
#   checkpoint -> the conv regressor bar -> infer.py (source_extract, partial_gen, total_gen on held-out songs)
#   -> evaluate.py -> <out>/quickstart_report.{md,json} and <out>/extraction_examples.png
#
#   bash scripts/quickstart.sh [--out DIR] [--smoke] [--size small|medium] [--gpu] [--text-table]
#                              [--timbre plain|varied] [--eval-split test|valid] [--print-plan]
#
# Every training stage is budgeted in optimizer steps (configs/quickstart_ae.yaml, configs/quickstart_dit.yaml;
# the options below scale them), never in minutes: the same command and seed train the same steps over the same
# data order on any machine, so a slower machine takes longer but trains the same model. After the AE's first
# progress line the script says how long the whole run should take on this machine.
#
# --smoke     a 2-3 minute run of every stage with tiny settings (CI); its numbers mean nothing
# --size      small (default: the 20-minute CPU recipe) | medium (CPU: 192 songs, the 8 x 3 x 128 DiT, about an
#             hour on 2 cores; with --gpu: the GPU recipe below)
# --gpu       run training and inference on the GPU (cuda) with larger batches; implies --text-table.
#             `--size medium --gpu` is the GPU recipe, sized for at most 5 minutes end to end on one H100/H200
#             (AE 1,200 and DiT 1,500 steps at batches 32 and 128 in bf16). The step counts are estimates: the
#             recipe has not been run on a GPU yet (the report's stage times and steps/s will tell).
#             Install with `bash scripts/setup.sh --keep-torch` to keep the machine's own CUDA build of torch.
# --text-table  read every text embedding from the table committed in the repository
#             (recipes/quickstart/text_embeddings.npz, MiniLM's vectors of every text the quickstart embeds)
#             instead of running MiniLM: no MiniLM package and no network needed
# --timbre    plain (default): the SoundFont's presets as they are; varied: every program of each class's family,
#             octave shifts, velocities, detuning, EQ, drive and room (recipes/quickstart/synth/timbre.py)
# --eval-split  test (default): score the held-out test songs; valid: the validation songs (tune recipes on
#             these, and score the test songs only with the final recipe)
# --print-plan  print the settings and every stage's commands, and stop: nothing runs, nothing is written,
#             no GPU is needed
# Every number of the recipe is in configs/quickstart_ae.yaml, configs/quickstart_dit.yaml and
# configs/model/quickstart_autoencoder.yaml; the overrides below only scale it. Jobs that do not depend on each
# other run two at a time (one thread each): the AE barely uses a second core, the DiT does.
set -euo pipefail

OUT=./quickstart_out
SMOKE=0
SIZE=small
GPU=0
TEXT_TABLE=0
PLAN=0
EVAL_SPLIT=test
TIMBRE=plain
die() { echo "quickstart.sh: error: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --out) [ $# -ge 2 ] && [ -n "$2" ] || die "--out: expects a folder (--out DIR)"; OUT="$2"; shift 2 ;;
    --out=*) OUT="${1#*=}"; [ -n "$OUT" ] || die "--out: expects a folder (--out DIR)"; shift ;;
    --smoke) SMOKE=1; shift ;;
    --size) [ $# -ge 2 ] || die "--size: expects small or medium"; SIZE="$2"; shift 2 ;;
    --size=*) SIZE="${1#*=}"; shift ;;
    --gpu) GPU=1; shift ;;
    --text-table) TEXT_TABLE=1; shift ;;
    --print-plan) PLAN=1; shift ;;
    --eval-split) [ $# -ge 2 ] || die "--eval-split: expects test or valid"; EVAL_SPLIT="$2"; shift 2 ;;
    --eval-split=*) EVAL_SPLIT="${1#*=}"; shift ;;
    --timbre) [ $# -ge 2 ] || die "--timbre: expects plain or varied"; TIMBRE="$2"; shift 2 ;;
    --timbre=*) TIMBRE="${1#*=}"; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) die "$1: unknown argument (expected --out DIR, --smoke, --size small|medium, --gpu, --text-table, --timbre plain|varied, --eval-split test|valid, --print-plan)" ;;
  esac
done
case "$SIZE" in small|medium) ;; *) die "--size $SIZE: expected small or medium" ;; esac
case "$EVAL_SPLIT" in test|valid) ;; *) die "--eval-split $EVAL_SPLIT: expected test or valid" ;; esac
case "$TIMBRE" in plain|varied) ;; *) die "--timbre $TIMBRE: expected plain or varied" ;; esac
[ "$GPU" = 0 ] || TEXT_TABLE=1  # a GPU machine needs neither MiniLM nor a network
# --gpu needs CUDA: refused now, before any stage runs, rather than with a traceback in the training stage
# (the plan alone runs nothing and needs none).
if [ "$GPU" = 1 ] && [ "$PLAN" = 0 ] && ! "${PYTHON:-python3}" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2> /dev/null; then
  die "--gpu: no CUDA GPU is visible to PyTorch here; run without --gpu (CPU)"
fi

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
if [ "$PLAN" = 1 ]; then
  case "$OUT" in /*) ;; *) OUT="$REPO/${OUT#./}" ;; esac
else
  mkdir -p "$OUT"
  OUT="$(cd "$OUT" && pwd)"
fi
PY="${PYTHON:-python3}"

# Offline, and no busy-waiting OpenMP threads: on a CPU shared with other jobs, spinning threads slow
# PyTorch down by an order of magnitude.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore}"

CLASSES="Drums,Bass,Piano,Guitar,Synth Lead"  # (their texts are in the table: recipes/quickstart/texts.py)
SR=16000
DEVICE=cpu
# ---- the recipe, scaled by the options. Budgets are steps, never minutes: the same command and seed train the same
# steps over the same data order on every machine (the small recipe's are configs/quickstart_{ae,dit}.yaml's).
DIT_MEDIUM=(model.MGELDM.depth=8 model.MGELDM.embed_dim=128)
if [ "$SMOKE" = 1 ]; then
  N_TRAIN=4; N_VALID=1; N_TEST=2; PARA_SONGS=2; SECONDS_MIN=3; SECONDS_MAX=4
  AE_ARGS=(trainer.pl_trainer.max_steps=6 trainer.batch_size=2)
  DIT_ARGS=(trainer.pl_trainer.max_steps=6 trainer.batch_size=4 trainer.monitor.every_n_steps=3)
  GEN_STEPS=2; EVAL_SECONDS=3; MODE="smoke"
elif [ "$SIZE" = medium ] && [ "$GPU" = 1 ]; then  # the GPU recipe: at most 5 minutes end to end (header)
  N_TRAIN=192; N_VALID=16; N_TEST=16; PARA_SONGS=16; SECONDS_MIN=8; SECONDS_MAX=14
  AE_ARGS=(trainer.pl_trainer.max_steps=1200)
  DIT_ARGS=(trainer.pl_trainer.max_steps=1500 trainer.monitor.every_n_steps=250 "${DIT_MEDIUM[@]}")
  GEN_STEPS=25; EVAL_SECONDS=8; MODE="medium"
elif [ "$SIZE" = medium ]; then  # about an hour on 2 CPU cores
  N_TRAIN=192; N_VALID=16; N_TEST=16; PARA_SONGS=16; SECONDS_MIN=8; SECONDS_MAX=14
  AE_ARGS=(trainer.pl_trainer.max_steps=2400)
  DIT_ARGS=(trainer.pl_trainer.max_steps=1600 trainer.monitor.every_n_steps=400 "${DIT_MEDIUM[@]}")
  GEN_STEPS=25; EVAL_SECONDS=8; MODE="medium"
else
  N_TRAIN=56; N_VALID=8; N_TEST=8; PARA_SONGS=8; SECONDS_MIN=6; SECONDS_MAX=10
  AE_ARGS=(); DIT_ARGS=()
  GEN_STEPS=8; EVAL_SECONDS=3; MODE="small"  # GEN_STEPS: the partial_gen / total_gen demos
fi
[ "$TIMBRE" = plain ] || MODE="$MODE, $TIMBRE timbre"
WORKERS=2  # corpus rendering processes
if [ "$GPU" = 1 ]; then
  DEVICE=cuda
  AE_ARGS+=(trainer.pl_trainer.accelerator=gpu)
  DIT_ARGS+=(trainer.pl_trainer.accelerator=gpu)
  if [ "$SMOKE" = 0 ]; then  # the smoke run keeps its tiny batches
    CORES="$(getconf _NPROCESSORS_ONLN 2> /dev/null || echo 1)"
    WORKERS=$(( CORES < 8 ? CORES : 8 ))
    GPU_TRAIN=(trainer.num_workers=4 trainer.pin_memory=true trainer.pl_trainer.precision=bf16-mixed)
    AE_ARGS+=(trainer.batch_size=32 "${GPU_TRAIN[@]}")
    DIT_ARGS+=(trainer.batch_size=128 "${GPU_TRAIN[@]}")
  fi
  MODE="$MODE, gpu"
else
  AE_ARGS+=(trainer.pl_trainer.accelerator=cpu)
  DIT_ARGS+=(trainer.pl_trainer.accelerator=cpu)
  MODE="$MODE, cpu"
fi
PRE_ARGS=()
if [ "$TEXT_TABLE" = 1 ]; then  # MiniLM's vectors from the committed table (configs/model/conditioner/quickstart_table.yaml)
  PRE_ARGS+=(model/conditioner@embedder=quickstart_table)
  DIT_ARGS+=(model/conditioner@model.conditioner.clap_text=quickstart_table)
  MODE="$MODE, text table"
fi
[ "$EVAL_SPLIT" = test ] || MODE="$MODE, scored on the $EVAL_SPLIT songs"
DIT_MODEL_ARGS=()  # the model overrides of the DiT recipe: unwrapping and inference must see them too
for a in "${DIT_ARGS[@]}"; do case "$a" in model.*|model/*) DIT_MODEL_ARGS+=("$a") ;; esac; done
# The extraction sampler of every score (the monitor's, in configs/quickstart_dit.yaml: one owner) and the demos'.
read -r STEPS CFG_SCALE OVERLAP <<< "$("$PY" -m recipes.quickstart.report extraction-settings "${DIT_ARGS[@]}")"
GEN_CFG=2.0
# A measured run of the small CPU recipe (docs/extraction.md): a 2-core AMD EPYC (this project's CI machine kind),
# its AE's training rate and the whole run's seconds. The estimate after the AE's first progress line scales them.
SIZED_AE_RATE=1.58; SIZED_SECONDS=1510

words() {  # the arguments as one line that a shell reads back as the same words
  local a out=()
  for a in "$@"; do
    if [[ "$a" =~ ^[A-Za-z0-9_./:=@+,%-]+$ ]]; then out+=("$a")
    elif [[ "$a" != *[\"\$\`\\]* ]]; then out+=("\"$a\"")
    else out+=("$(printf '%q' "$a")"); fi
  done
  echo "${out[*]}"
}
run() {  # run COMMAND...: run it; with --print-plan print it instead
  if [ "$PLAN" = 1 ]; then echo "  $(words "$@")"; else "$@"; fi
}

START=$(date +%s.%N)  # (now() is defined below; the same clock)
STAGES="$OUT/stage_seconds.tsv"
[ "$PLAN" = 1 ] || : > "$STAGES"
N_STAGES=8
STAGE_NO=0
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
stage() {  # stage NAME COMMAND...: run with progress and timing; stop the quickstart on failure
  local name="$1"; shift
  STAGE_NO=$((STAGE_NO + 1))
  local t0; t0=$(now)
  if [ "$PLAN" = 1 ]; then
    printf '==== [%d/%d] %s\n' "$STAGE_NO" "$N_STAGES" "$name"
    "$@"
    return
  fi
  printf '\n==== [%d/%d] %s  (%s s elapsed)\n' "$STAGE_NO" "$N_STAGES" "$name" "$(elapsed "$START" "$t0")"
  if ! "$@"; then
    echo "quickstart.sh: stage '$name' failed; its log is above. Output so far: $OUT" >&2
    exit 1
  fi
  local t1; t1=$(now)
  printf '%s\t%s\n' "$name" "$(elapsed "$t0" "$t1")" >> "$STAGES"
  printf '==== %s done in %s s\n' "$name" "$(elapsed "$t0" "$t1")"
}

CORPUS="$OUT/corpus"
LATENTS="$OUT/latents"
CKPTS="$OUT/checkpoints"
EVAL="$OUT/eval"
INFER="$OUT/infer"
QS=("$PY" -m recipes.quickstart.report)
# the prompts of the runs (recipes/quickstart): canonical, paraphrases, the partial_gen and total_gen demos
ALL_PROMPTS="$("${QS[@]}" prompts all --classes "$CLASSES")"
{ read -r PROMPTS; read -r PARAPHRASES; read -r PARTIAL_PROMPT; read -r TOTAL_PROMPT; } <<< "$ALL_PROMPTS"
echo "MGE-LDM quickstart ($MODE) -> $OUT"
if [ "$PLAN" = 1 ]; then
  echo "plan only: nothing runs. classes: $CLASSES; device: $DEVICE; text table: $([ "$TEXT_TABLE" = 1 ] && echo yes || echo no)"
else
  mkdir -p "$CKPTS"
  # for scripts/quickstart_curve.sh: the prompted stem classes in prompt order, and the DiT's model overrides
  echo "$CLASSES" > "$OUT/classes.txt"
  printf '%s\n' "${DIT_MODEL_ARGS[@]}" > "$OUT/dit_model_overrides.txt"
fi
if [ "$TEXT_TABLE" = 1 ] && [ "$PLAN" = 1 ]; then
  echo "==== check the text table"
  run "${QS[@]}" table --check --classes "$CLASSES"
elif [ "$TEXT_TABLE" = 1 ]; then  # every text of the run in the table: one line now rather than mid-run
  "${QS[@]}" table --check --classes "$CLASSES" > /dev/null || exit 2
fi

corpus() {
  run "$PY" -m recipes.quickstart.synth --out "$CORPUS" --seed 0 --n-train "$N_TRAIN" --n-valid "$N_VALID" \
    --n-test "$N_TEST" --seconds "$SECONDS_MIN" "$SECONDS_MAX" --classes "$CLASSES" --workers "$WORKERS" \
    --timbre "$TIMBRE" --overwrite --quiet
}
one_thread() {  # one_thread COMMAND...: run it with one OpenMP thread (a lane beside another job)
  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 "$@"
}
lanes() {  # lanes FN_A FN_B: run two independent functions side by side, one thread each; fail if either fails
  if [ "$PLAN" = 1 ] || [ "$GPU" = 1 ]; then "$1" && "$2"; return; fi
  local a b rc=0
  one_thread "$1" & a=$!
  one_thread "$2" & b=$!
  wait "$a" || rc=$?
  wait "$b" || rc=$?
  return "$rc"
}
estimate() {  # pass training lines through; after the first one with a rate, say how long the whole run should take
  local line said=0
  while IFS= read -r line; do
    printf '%s\n' "$line"
    if [ "$said" = 0 ] && [ "$SIZE" = small ] && [ "$SMOKE" = 0 ] && [ "$GPU" = 0 ] &&
       [[ "$line" =~ \|\ ([0-9.]+)\ steps/s ]]; then
      said=1
      awk -v r="${BASH_REMATCH[1]}" -v ref="$SIZED_AE_RATE" -v s="$SIZED_SECONDS" 'BEGIN {
        printf "quickstart.sh: the AE trains at %.2f steps/s here (%.2f on the machine this recipe was sized on): ", r, ref
        printf "the whole run should take about %.0f minutes\n", s * ref / r / 60 }'
    fi
  done
}
train_ae() {
  run rm -rf "$OUT/runs/ae"
  run "$PY" train_ae.py --config-name quickstart_ae save_dir="$OUT/runs/ae" \
    data.train.slakh2100.data_dir="$CORPUS" "${AE_ARGS[@]}" | estimate
}
unwrap_ae() {
  run "$PY" unwrap_model.py --config-name quickstart_ae +type=autoencoder ckpt_path="$OUT/runs/ae/checkpoints/last.ckpt" \
    +output_name="$CKPTS/autoencoder"
}
encode_shard() {  # encode_shard I N: pre-encoding's shard I of N (the last to finish writes the manifest)
  run "$PY" pre_encode.py --config-name quickstart_ae ckpt_path="$CKPTS/autoencoder.ckpt" +save_root_dir="$LATENTS" \
    "+extract_dataset=[slakh2100]" +data_dirs.slakh2100="$CORPUS" +device="$DEVICE" +num_shards="$2" +shard_id="$1" \
    "${PRE_ARGS[@]}"
}
shard0() { encode_shard 0 2; }
shard1() { encode_shard 1 2; }
pre_encode() {
  run rm -rf "$LATENTS"
  if [ "$GPU" = 1 ]; then encode_shard 0 1; else lanes shard0 shard1; fi
}
train_dit() {
  run rm -rf "$OUT/runs/dit"
  run "$PY" train_dit.py --config-name quickstart_dit save_dir="$OUT/runs/dit" autoencoder_ckpt_path="$CKPTS/autoencoder.ckpt" \
    data.data_dir="$LATENTS" "${DIT_ARGS[@]}"
}
unwrap_dit() {  # the checkpoint the monitor scored best on the validation songs (runs/dit/checkpoints/best.json)
  local best="<the checkpoint runs/dit/checkpoints/best.json names>"
  [ "$PLAN" = 1 ] || best="$("${QS[@]}" best-checkpoint "$OUT/runs/dit/checkpoints")" || return 1
  run "$PY" unwrap_model.py --config-name quickstart_dit +type=mgeldm ckpt_path="$best" +output_name="$CKPTS/mgeldm" \
    "${DIT_MODEL_ARGS[@]}" &&
  run "${QS[@]}" init-dit --config-name quickstart_dit --ae "$CKPTS/autoencoder.ckpt" --out "$CKPTS/mgeldm_untrained.ckpt" \
    --like "$CKPTS/mgeldm.ckpt" \
    "${DIT_MODEL_ARGS[@]}"
}
regressor() {  # the bar: the conv regressor on the very batches the DiT trained on (same config, overrides, seed)
  run "$PY" diagnose.py regressor --config-name quickstart_dit --latents "$LATENTS" --out "$CKPTS/regressor.pt" \
    --device "$DEVICE" -- "${DIT_ARGS[@]}"
}
prepare_eval() {
  run rm -rf "$EVAL"
  run "${QS[@]}" prepare --corpus "$CORPUS" --eval-dir "$EVAL" --n-songs "$N_TEST" --sample-rate "$SR" \
    --seconds "$EVAL_SECONDS" --para-songs "$PARA_SONGS" --split "$EVAL_SPLIT" &&
  run "${QS[@]}" oracle --config-name quickstart_ae --ae "$CKPTS/autoencoder.ckpt" --eval-dir "$EVAL" --sample-rate "$SR"
}
infer() {  # infer CKPT OUTDIR ARGS...: the report's extraction sampler unless ARGS override it
  local ckpt="$1" dir="$2"; shift 2
  run "$PY" infer.py --config-name quickstart_dit ckpt_path="$ckpt" +output_dir="$dir" +device="$DEVICE" ++seed=0 \
    +num_steps="$STEPS" +cfg_scale="$CFG_SCALE" +overlap_dur="$OVERLAP" "${DIT_MODEL_ARGS[@]}" "$@"
}
infer_extract() {
  echo "-- source_extract, trained DiT, one prompt per stem class (batched): $PROMPTS"
  infer "$CKPTS/mgeldm.ckpt" "$INFER/extract" +task=source_extract +given_wav_path="$EVAL/mix" "+text_prompt=$PROMPTS" &&
  echo "-- source_extract, trained DiT, unseen paraphrases: $PARAPHRASES" &&
  infer "$CKPTS/mgeldm.ckpt" "$INFER/paraphrase" +task=source_extract +given_wav_path="$EVAL/mix_para" "+text_prompt=$PARAPHRASES" \
    +save_png=false &&
  echo "-- source_extract, DiT at initialisation (baseline)" &&
  infer "$CKPTS/mgeldm_untrained.ckpt" "$INFER/extract_untrained" +task=source_extract +given_wav_path="$EVAL/mix" "+text_prompt=$PROMPTS" \
    +save_png=false
}
infer_generate() {
  echo "-- partial_gen: add the drums (or the song's last stem) to the rest" &&
  infer "$CKPTS/mgeldm.ckpt" "$INFER/partial_gen" +task=partial_gen +given_wav_path="$EVAL/submix" "+text_prompt=$PARTIAL_PROMPT" \
    ++num_steps="$GEN_STEPS" ++cfg_scale="$GEN_CFG" &&
  echo "-- total_gen: a whole mix from text" &&
  infer "$CKPTS/mgeldm.ckpt" "$INFER/total_gen" +task=total_gen +gen_audio_dur=4 "+text_prompt=$TOTAL_PROMPT" \
    ++num_steps="$GEN_STEPS" ++cfg_scale="$GEN_CFG"
}
infer_all() {  # the extraction runs, then the generation demos
  run rm -rf "$INFER"
  infer_extract && infer_generate
}
evaluate_runs() {  # evaluate.py on the trained and the untrained extraction
  run "${QS[@]}" collect --run-dir "$INFER/extract" --eval-dir "$EVAL" --dest "$EVAL/pred" --classes "$CLASSES" &&
  run "$PY" evaluate.py +pred_dir="$EVAL/pred" +ref_dir="$EVAL/ref" +mix_dir="$EVAL/mix" +oracle_dir="$EVAL/oracle" \
    "+metrics=[si_sdr,si_sdri,logmel_l1,logmel_l1_ratio_vs_mix]" +output="$EVAL/evaluation.json" +sample_rate="$SR" progress=false &&
  run "${QS[@]}" collect --run-dir "$INFER/extract_untrained" --eval-dir "$EVAL" --dest "$EVAL/pred_untrained" --classes "$CLASSES" &&
  run "$PY" evaluate.py +pred_dir="$EVAL/pred_untrained" +ref_dir="$EVAL/ref" +mix_dir="$EVAL/mix" \
    "+metrics=[si_sdr,si_sdri,logmel_l1,logmel_l1_ratio_vs_mix]" +output="$EVAL/evaluation_untrained.json" +sample_rate="$SR" progress=false
}
latent_scores() {  # the DiT's and the regressor's latent scores on the evaluation songs (after both lanes' inputs)
  run "${QS[@]}" latent --ckpt "$CKPTS/mgeldm.ckpt" --eval-dir "$EVAL" --output "$EVAL/latent_scores.json" \
    --steps "$STEPS" --cfg-scale "$CFG_SCALE" --overlap "$OVERLAP" --device "$DEVICE" --regressor "$CKPTS/regressor.pt"
}
audio_lane() { prepare_eval && infer_all && evaluate_runs; }
evaluate() {  # the regressor beside the evaluation songs, their oracle, every infer.py run and evaluate.py
  lanes regressor audio_lane && latent_scores
}
report() {
  run "${QS[@]}" report --out "$OUT" --eval-dir "$EVAL" --evaluation "$EVAL/evaluation.json" \
    --untrained-evaluation "$EVAL/evaluation_untrained.json" --extract-run "$INFER/extract" \
    --untrained-run "$INFER/extract_untrained" --paraphrase-run "$INFER/paraphrase" --classes "$CLASSES" --stages "$STAGES" \
    --start-time "$START" --mode "$MODE" --latent-scores "$EVAL/latent_scores.json" --runs "$OUT/runs" \
    --unwrapped "$CKPTS/mgeldm.ckpt" --sampler "$STEPS" "$CFG_SCALE" "$OVERLAP"
}

stage corpus corpus
stage train_ae train_ae
stage unwrap_ae unwrap_ae
stage pre_encode pre_encode
stage train_dit train_dit
stage unwrap_dit unwrap_dit
stage evaluate evaluate
stage report report
[ "$PLAN" = 0 ] || exit 0
echo
echo "quickstart done in $(elapsed "$START" "$(now)") s: $OUT/quickstart_report.md, $OUT/quickstart_report.json"
