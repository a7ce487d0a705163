#!/usr/bin/env bash
# Install everything MGE-LDM needs into the current Python environment.
# tinysoundfont is installed without its pyaudio dependency: pyaudio only serves live playback
# (and needs PortAudio), while we only render MIDI to arrays.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -r requirements.txt
python -m pip install -q --no-deps "tinysoundfont>=0.3.6"
