#!/bin/bash
# Sourced by the scripts that pass paths and prompts to Hydra: `hydra_quote VALUE` prints VALUE as a
# single-quoted Hydra override value that reads back unchanged, whatever it holds (spaces, apostrophes,
# commas, brackets, non-ASCII letters). Inside quotes Hydra reads \' as a quote and keeps every other
# backslash as it is, so quotes are escaped and backslashes are doubled only before a quote or at the end
# (the rule of mgeldm.cli.hydra_args.hydra_quote). Use it inside double quotes:
#   python infer.py "+given_wav_path=$(hydra_quote "$GIVEN_WAV_PATH")"
hydra_quote() {
  local s=$1 out="" run="" c i
  for ((i = 0; i < ${#s}; i++)); do
    c=${s:i:1}
    if [[ $c == "\\" ]]; then
      run+="\\"
      continue
    fi
    if [[ $c == "'" ]]; then
      out+="$run$run\\'"
    else
      out+="$run$c"
    fi
    run=""
  done
  printf "'%s'" "$out$run$run"
}
