#!/bin/bash
## partial_gen_iter with the original script's settings (docs/compatibility.md#sampling-and-the-five-tasks). Every variable
## can be set from the environment, e.g. CKPT_PATH=... CLAP_CKPT_PATH=... bash scripts/infer_partial_gen_iter.sh
## (the others, and the command line, in scripts/infer_common.sh).
TASK="partial_gen_iter"
CONFIG_NAME=${CONFIG_NAME:-"default_dit_scratch"}
GIVEN_WAV_PATH=${GIVEN_WAV_PATH:-"data_sample/bruno_24kmagic_seg.wav"}   # the starting submix
TEXT_PROMPT=${TEXT_PROMPT:-"The sound of drums; The sound of the bass; Jazz piano"}
NUM_STEPS=${NUM_STEPS:-20}
CFG_SCALE=${CFG_SCALE:-2.0}
OVERLAP_DUR=${OVERLAP_DUR:-3.0}
REPAINT_N=${REPAINT_N:-2}

source "$(dirname "$0")/infer_common.sh"
run_infer "$@"
