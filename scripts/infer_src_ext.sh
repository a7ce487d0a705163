#!/bin/bash
## source_extract with the original script's settings (docs/compatibility.md#sampling-and-the-five-tasks). Every variable
## can be set from the environment, e.g. CKPT_PATH=... CLAP_CKPT_PATH=... bash scripts/infer_src_ext.sh
## (the others, and the command line, in scripts/infer_common.sh).
TASK="source_extract"
GIVEN_WAV_PATH=${GIVEN_WAV_PATH:-"data_sample/bruno_24kmagic_seg.wav"}   # a file or a folder of them
TEXT_PROMPT=${TEXT_PROMPT:-"The sound of vocals"}
NUM_STEPS=${NUM_STEPS:-250}
CFG_SCALE=${CFG_SCALE:-10.0}
OVERLAP_DUR=${OVERLAP_DUR:-3.0}
REPAINT_N=${REPAINT_N:-1}

source "$(dirname "$0")/infer_common.sh"
run_infer "$@"
