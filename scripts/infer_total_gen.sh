#!/bin/bash
## total_gen with the original script's settings (docs/compatibility.md#sampling-and-the-five-tasks). Every variable
## can be set from the environment, e.g. CKPT_PATH=... CLAP_CKPT_PATH=... bash scripts/infer_total_gen.sh
## (the others, and the command line, in scripts/infer_common.sh).
TASK="total_gen"
GEN_AUDIO_DUR=${GEN_AUDIO_DUR:-30.0}   # seconds to generate (exact)
TEXT_PROMPT=${TEXT_PROMPT:-"Lo-fi hip hop beat with mellow jazzy chords and a smooth bassline"}
NUM_STEPS=${NUM_STEPS:-250}
CFG_SCALE=${CFG_SCALE:-10.0}
OVERLAP_DUR=${OVERLAP_DUR:-7.0}
REPAINT_N=${REPAINT_N:-1}

source "$(dirname "$0")/infer_common.sh"
run_infer "$@"
