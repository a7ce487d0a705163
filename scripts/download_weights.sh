#!/usr/bin/env bash
# Fetch the files that inference with the released MGE-LDM needs (opt-in; needs a network; nothing else in
# this repository downloads anything):
#
#   checkpoints/unwrapped_DiT.ckpt                    the released MGE-LDM, DiT + VAE (the authors' Google Drive)
#   checkpoints/music_audioset_epoch_15_esc_90.14.pt  LAION's music CLAP, 2.2 GB (Hugging Face, lukewys/laion_clap)
#   checkpoints/roberta-base/vocab.json, merges.txt   roberta-base's tokenizer files (Hugging Face)
#
#   bash scripts/download_weights.sh [--dir DIR] [--only dit|clap|tokenizer|ae] [--dry-run] [--force]
#
# --dir DIR   where to put them (default: checkpoints/ in the repository, where infer.py and the API look
#             when run from the repository)
# --only X    fetch only this piece (repeatable); ae = unwrapped_AE.ckpt, the VAE alone, for pre_encode.py and
#             training (inference needs only the DiT checkpoint, which holds the VAE); default: dit clap tokenizer
# --dry-run   print each URL and where it would go; download nothing
# --force     download again the files that are already there (default: keep them)
#
# Each file is downloaded to a hidden temporary name, checked (its SHA-256 where the publisher's is known: the
# CLAP checkpoint and the tokenizer files; otherwise that it is a PyTorch checkpoint and not an error page) and
# only then renamed into place, so an interrupted or failed download leaves nothing behind.
set -euo pipefail

PROG=download_weights.sh
die() { echo "$PROG: error: $*" >&2; exit 2; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$REPO/checkpoints"
DRY=0
FORCE=0
ONLY=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) [ $# -ge 2 ] && [ -n "$2" ] || die "--dir: expects a folder (--dir DIR)"; DIR="$2"; shift 2 ;;
    --dir=*) DIR="${1#*=}"; [ -n "$DIR" ] || die "--dir: expects a folder (--dir DIR)"; shift ;;
    --only) [ $# -ge 2 ] || die "--only: expects one of dit, clap, tokenizer, ae"; ONLY+=("$2"); shift 2 ;;
    --only=*) ONLY+=("${1#*=}"); shift ;;
    --dry-run) DRY=1; shift ;;
    --force) FORCE=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "$1: unknown argument (expected --dir DIR, --only dit|clap|tokenizer|ae, --dry-run, --force; see --help)" ;;
  esac
done
for piece in "${ONLY[@]}"; do
  case "$piece" in dit|clap|tokenizer|ae) ;; *) die "--only $piece: expected dit, clap, tokenizer or ae" ;; esac
done
[ "${#ONLY[@]}" -gt 0 ] || ONLY=(dit clap tokenizer)

# piece | file (relative to DIR) | URL | SHA-256 (empty: not published)
GDRIVE="https://drive.usercontent.google.com/download?export=download&confirm=t&id="
HF_CLAP="https://huggingface.co/lukewys/laion_clap/resolve/b3708341862f581175dba5c356a4ebf74a9b6651"
HF_ROBERTA="https://huggingface.co/FacebookAI/roberta-base/resolve/main"
FILES=(
  "dit|unwrapped_DiT.ckpt|${GDRIVE}1tyND8iI5Whs6_Oe-pBK2SpysGLKKa6sR|"
  "ae|unwrapped_AE.ckpt|${GDRIVE}1BmEUvakYYAPcQfn84Z9rioya08DzZqdp|"
  "clap|music_audioset_epoch_15_esc_90.14.pt|$HF_CLAP/music_audioset_epoch_15_esc_90.14.pt|fae3e9c087f2909c28a09dc31c8dfcdacbc42ba44c70e972b58c1bd1caf6dedd"
  "tokenizer|roberta-base/vocab.json|$HF_ROBERTA/vocab.json|9e7f63c2d15d666b52e21d250d2e513b87c9b713cfa6987a82ed89e5e6e50655"
  "tokenizer|roberta-base/merges.txt|$HF_ROBERTA/merges.txt|1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
)

wanted() { local p; for p in "${ONLY[@]}"; do [ "$p" = "$1" ] && return 0; done; return 1; }

fetch() {  # fetch URL FILE: download with progress on a terminal, one line otherwise
  if command -v curl > /dev/null; then
    if [ -t 2 ]; then curl --fail --location --retry 3 --progress-bar -o "$2" "$1"
    else curl --fail --location --retry 3 --silent --show-error -o "$2" "$1"; fi
  elif command -v wget > /dev/null; then
    if [ -t 2 ]; then wget --tries=3 -q --show-progress -O "$2" "$1"
    else wget --tries=3 -q -O "$2" "$1"; fi
  else
    die "neither curl nor wget is installed"
  fi
}

sha256_of() {
  if command -v sha256sum > /dev/null; then sha256sum "$1" | cut -d' ' -f1
  elif command -v shasum > /dev/null; then shasum -a 256 "$1" | cut -d' ' -f1
  fi
}

check() {  # check FILE SHA256 URL NAME: the published checksum, or else the shape of a PyTorch checkpoint
  local file="$1" want="$2" url="$3" name="$4" got head
  [ -s "$file" ] || { echo "$PROG: error: $name: the download is empty ($url)" >&2; return 1; }
  if [ -n "$want" ]; then
    got="$(sha256_of "$file")"
    if [ -z "$got" ]; then
      echo "$PROG: warning: no sha256sum or shasum here; $name is not verified" >&2
    elif [ "$got" != "$want" ]; then
      echo "$PROG: error: $name: SHA-256 $got, expected $want ($url)" >&2; return 1
    fi
    return 0
  fi
  head="$(head -c 4 "$file" | od -An -tx1 | tr -d ' \n')"
  case "$head" in
    504b0304|80*) return 0 ;;  # torch.save's zip format, or its older pickle format
  esac
  echo "$PROG: error: $name: not a PyTorch checkpoint (an error or confirmation page? Google Drive refuses" \
       "automated downloads when a file's daily quota is used up); open $url in a browser and save it as" \
       "$DIR/$name" >&2
  return 1
}

TMPS=()
cleanup() { local t; for t in "${TMPS[@]}"; do rm -f "$t"; done; }
trap cleanup EXIT

FAILED=0
for entry in "${FILES[@]}"; do
  IFS='|' read -r piece name url sha <<< "$entry"
  wanted "$piece" || continue
  dest="$DIR/$name"
  if [ "$DRY" = 1 ]; then
    echo "$url -> $dest"
    continue
  fi
  if [ -s "$dest" ] && [ "$FORCE" = 0 ]; then
    echo "$dest: already there (--force downloads it again)"
    continue
  fi
  mkdir -p "$(dirname "$dest")"
  tmp="$(dirname "$dest")/.$(basename "$dest").download.$$"
  TMPS+=("$tmp")
  echo "downloading $name from $url"
  if fetch "$url" "$tmp" && check "$tmp" "$sha" "$url" "$name"; then
    mv -f "$tmp" "$dest"
    echo "$dest: done ($(du -h "$dest" | cut -f1))"
  else
    echo "$PROG: error: $name: download failed; nothing was written to $dest" >&2
    rm -f "$tmp"
    rmdir "$(dirname "$dest")" 2> /dev/null || true  # a folder made for it and left empty
    FAILED=1
  fi
done
[ "$DRY" = 1 ] && exit 0
[ "$FAILED" = 0 ] || exit 1

echo
if [ "$(cd "$DIR" 2> /dev/null && pwd)" = "$REPO/checkpoints" ]; then
  echo "From the repository: python infer.py ckpt_path=checkpoints/unwrapped_DiT.ckpt +task=... (CLAP and the" \
       "tokenizer are found in checkpoints/ by default)"
else
  echo "Pass ckpt_path=$DIR/unwrapped_DiT.ckpt clap_ckpt_path=$DIR/music_audioset_epoch_15_esc_90.14.pt" \
       "model.conditioner.clap_text.config.tokenizer_path=$DIR/roberta-base to infer.py"
fi
