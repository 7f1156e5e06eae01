#!/usr/bin/env bash
# llama_reshard.sh WORK TRAIN COMPARE: a Llama checkpoint written under one layout resumes under
# others. llama-tiny trains 10 steps on one process with a checkpoint at step 5; resumed from it
# under tp 2 x pp 2 (q AND kv heads, the SwiGLU MLP, the embedding and the untied head resharded,
# the stages split) and under dp 2 x tp 2 x pp 2 with ZeRO-1, steps 6..10 and the final weights
# match the uninterrupted run within trident-compare_runs' 1e-5; resumed on one process, bit for
# bit. The global batch is 8 sequences of 4 per micro-batch in every run (resuming keeps the
# micro-batch size, so the data order continues).
set -uo pipefail
work=$1 train=$2 compare=$3
# shellcheck source=tests/mpi/train_runs.sh
source "$(dirname "${BASH_SOURCE[0]}")/train_runs.sh"
model=(--model llama-tiny --seq 16 --steps 10 --warmup 2 --lr 1e-3 --min-lr 1e-4 --eps 1e-5
       --threads 1 --log-interval 1 --eval-batches 1)
rm -rf "$work"
mkdir -p "$work"

# same NAME FROM RTOL: the losses of NAME from step FROM and its final weights match ref's.
same() {
  "$compare" "$work/$1" "$work/ref" --from-step "$2" --rtol "$3" || fail "$1 differs from ref"
}

run ref 1 --micro-batches 2 --batch 4 --checkpoint-dir "$work/ck" --checkpoint-every 5
ckpt=$work/ck/step_00000005.h5
[[ -f $ckpt ]] || fail "no checkpoint at step 5"
run r111 1 --micro-batches 2 --batch 4 --resume-from "$ckpt"
same r111 6 0
run tp2pp2 4 --tp 2 --pp 2 --micro-batches 2 --batch 4 --resume-from "$ckpt"
grep -q "resharded" "$work/tp2pp2.log" || fail "tp2pp2 did not report resharding"
same tp2pp2 6 1e-5
run dp2tp2pp2 8 --dp 2 --tp 2 --pp 2 --zero 1 --micro-batches 1 --batch 4 --resume-from "$ckpt"
same dp2tp2pp2 6 1e-5
echo "llama reshard: resumed at 1x1x1 (bitwise), tp2 x pp2 and dp2 x tp2 x pp2 ZeRO-1 (1e-5)"
