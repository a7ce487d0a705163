#!/bin/bash
## accomp_gen with the original script's settings (docs/compatibility.md#sampling-and-the-five-tasks). Every variable
## can be set from the environment, e.g. CKPT_PATH=... CLAP_CKPT_PATH=... bash scripts/infer_accomp_gen.sh
## (the others, and the command line, in scripts/infer_common.sh).
TASK="accomp_gen"
GIVEN_WAV_PATH=${GIVEN_WAV_PATH:-"data_sample/vocals.wav"}   # a single source to accompany
TEXT_PROMPT=${TEXT_PROMPT:-"Jazz piano trio with upright bass and brushed drums"}
NUM_STEPS=${NUM_STEPS:-100}
CFG_SCALE=${CFG_SCALE:-4.0}
OVERLAP_DUR=${OVERLAP_DUR:-5.0}
REPAINT_N=${REPAINT_N:-2}

source "$(dirname "$0")/infer_common.sh"
run_infer "$@"
