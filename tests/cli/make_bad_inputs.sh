#!/usr/bin/env bash
# Writes malformed inputs for the command-line tests into $1.
set -euo pipefail
dir=$1 fixtures=$2
mkdir -p "$dir/hf_truncated" "$dir/hf_badjson"
# A token file with the wrong magic: llm.c header of 256 int32, magic 12345.
python3 - "$dir" <<'PY'
import struct, sys
d = sys.argv[1]
hdr = [0] * 256
hdr[0], hdr[1], hdr[2] = 12345, 1, 4
open(f"{d}/bad_magic.bin", "wb").write(struct.pack("<256i", *hdr) + struct.pack("<4H", 1, 2, 3, 4))
hdr[0] = 20240520
hdr[2] = 1000  # claims more tokens than it holds
open(f"{d}/truncated.bin", "wb").write(struct.pack("<256i", *hdr) + struct.pack("<4H", 1, 2, 3, 4))
PY
cp "$fixtures/hf_tiny/config.json" "$dir/hf_truncated/"
head -c 60000 "$fixtures/hf_tiny/model.safetensors" > "$dir/hf_truncated/model.safetensors"
echo '{"n_embd": 32, "n_layer": ' > "$dir/hf_badjson/config.json"
cp "$fixtures/hf_tiny/model.safetensors" "$dir/hf_badjson/"
