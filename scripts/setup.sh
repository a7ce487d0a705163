#!/usr/bin/env bash
# Install everything MGE-LDM needs into the current Python environment.
#
#   bash scripts/setup.sh              # requirements.txt, torch pinned to the CPU build it names
#   bash scripts/setup.sh --keep-torch # keep the torch already installed (e.g. a GPU machine's own CUDA build)
#
# tinysoundfont is installed without its pyaudio dependency: pyaudio only serves live playback
# (and needs PortAudio), while we only render MIDI to arrays.
set -euo pipefail
cd "$(dirname "$0")/.."
KEEP_TORCH=0
for arg in "$@"; do
  case "$arg" in
    --keep-torch) KEEP_TORCH=1 ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup.sh: error: $arg: unknown option (expected --keep-torch)" >&2; exit 2 ;;
  esac
done
if [ "$KEEP_TORCH" = 1 ]; then
  if ! python -c 'import torch' 2> /dev/null; then
    echo "setup.sh: error: --keep-torch: no torch is installed in this environment" >&2; exit 2
  fi
  # every requirement but the torch pin; pip keeps the installed torch (any version satisfies the others)
  python -m pip install -q -r <(grep -v '^torch==' requirements.txt)
else
  python -m pip install -q -r requirements.txt
fi
python -m pip install -q --no-deps "tinysoundfont>=0.3.6"
