#!/bin/bash
## partial_gen with the original script's settings (docs/compatibility.md#sampling-and-the-five-tasks). Every variable
## can be set from the environment, e.g. CKPT_PATH=... CLAP_CKPT_PATH=... bash scripts/infer_partial_gen.sh
## (the others, and the command line, in scripts/infer_common.sh).
TASK="partial_gen"
GIVEN_WAV_PATH=${GIVEN_WAV_PATH:-"data_sample/bruno_24kmagic_seg.wav"}   # the submix to add a part to
TEXT_PROMPT=${TEXT_PROMPT:-"The sound of the distorted guitar"}
NUM_STEPS=${NUM_STEPS:-100}
CFG_SCALE=${CFG_SCALE:-10.0}
OVERLAP_DUR=${OVERLAP_DUR:-6.0}
REPAINT_N=${REPAINT_N:-1}

source "$(dirname "$0")/infer_common.sh"
run_infer "$@"
