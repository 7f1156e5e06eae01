#!/usr/bin/env bash
# Checkpoint, resume, resharding, preemption and fault tests of trident-train.
# usage: checkpoint.sh MODE WORKDIR TRAIN COMPARE
#   resume50  one process stopped at step 50 and resumed: bitwise the uninterrupted losses
#   resume_data  the same with an HDF5 token file read shuffled over several epochs (dp 2)
#   reshard   save under dp2 x tp2 x pp2, resume under the same layout (bitwise), 1x1x1 and
#             dp4 x pp2 (within 1e-5 of the uninterrupted run)
#   zero      save under dp2 x tp2 with ZeRO-1, resume under dp4 without it and 1x1x1
#   preempt   SIGUSR1 to mpirun and SIGTERM to every rank: checkpoint, exit 0, resume bitwise
#   kill      SIGKILL one rank of a 4-rank job: the job ends within 60 s; resuming from the last
#             checkpoint reproduces the uninterrupted losses bit for bit
#   nan       --nan-policy stop ends the job with one message; skip drops the update
#   corrupt   a flipped byte or a truncated checkpoint is named on resume, never loaded
#   parallel  the parallel writer at dp2 x tp2 x pp2 with ZeRO-1: every rank writes only its own
#             share (bytes counted by the writer: they add up to the file's tensors, none above
#             1.5x an even share), the file equals the rank-0 writer's (h5diff), h5dump verifies
#             it and its Fletcher-32 checksums catch a flipped byte, resume is bitwise and every
#             rank reads less than half the tensors
#   write_error  an unwritable checkpoint directory and a full disk: one message, non-zero exit
#             on every rank, no hang, no checkpoint left behind
set -uo pipefail
mode=$1 work=$2 train=$3 compare=$4
# shellcheck source=tests/mpi/train_runs.sh
source "$(dirname "${BASH_SOURCE[0]}")/train_runs.sh"
model=(--layers 4 --width 32 --heads 4 --block 16 --seq 16 --warmup 2 --lr 1e-3 --min-lr 1e-4
       --eps 1e-5 --threads 1 --log-interval 50)
rm -rf "$work"
mkdir -p "$work"

# same NAME REF FROM RTOL: the losses of NAME from step FROM and its final weights match REF.
same() {
  "$compare" "$work/$1" "$work/$2" --from-step "$3" --rtol "$4" || fail "$1 differs from $2"
}

# background NAME NP ARGS...: starts a run in the background; sets $bg_pid (mpirun's pid).
background() {
  local name=$1 np=$2
  shift 2
  "${mpirun_cmd[@]}" -np "$np" "$train" "${model[@]}" --out-dir "$work/$name" "$@" \
    >"$work/$name.log" 2>&1 &
  bg_pid=$!
}

# wait_for SECONDS TEST...: polls until the test command succeeds.
wait_for() {
  local limit=$1
  shift
  for ((i = 0; i < limit * 10; ++i)); do
    "$@" && return 0
    sleep 0.1
  done
  return 1
}

metrics_steps() {
  local n
  n=$(grep -c '"loss"' "$work/$1/metrics.jsonl" 2>/dev/null) || true
  echo "${n:-0}"
}
has_steps() { (( $(metrics_steps "$1") >= $2 )); }
last_checkpoint_step() {
  find "$1" -maxdepth 1 -name 'step_*.h5' -printf '%f\n' |
    sed -n 's/^step_0*\([0-9][0-9]*\)\.h5$/\1/p' | sort -n | tail -1
}

case $mode in
resume50)
  # One process stopped at step 50 and resumed: the same losses, bit for bit.
  run ref 1 --batch 4 --steps 60 --checkpoint-dir "$work/ck" --checkpoint-every 50
  run resumed 1 --batch 4 --steps 60 --resume-from "$work/ck/step_00000050.h5"
  grep -q "^resumed from .*step_00000050.h5 at step 50 " "$work/resumed.log" || fail "did not resume at 50"
  same resumed ref 51 0
  ;;
resume_data)
  # An HDF5 token file read in a shuffled order over several epochs: the resumed run (dp 2)
  # continues the data order, epochs included, bit for bit.
  tokenize="$(dirname "$train")/../tools/trident-tokenize"
  for ((i = 0; i < 60; ++i)); do echo "line $i: the quick brown fox $((i * i % 97)) jumps"; done \
    >"$work/corpus.txt"
  "$tokenize" "$work/corpus.txt" -o "$work/tokens.h5" >"$work/tokenize.log" 2>&1 \
    || { cat "$work/tokenize.log"; fail "trident-tokenize"; }
  data=(--data "$work/tokens.h5" --vocab 257 --batch 4 --steps 60 --dp 2)
  run ref 2 "${data[@]}" --checkpoint-dir "$work/ck" --checkpoint-every 50
  run resumed 2 "${data[@]}" --resume-from "$work/ck/step_00000050.h5"
  same resumed ref 51 0
  ;;
reshard)
  layout=(--dp 2 --tp 2 --pp 2 --micro-batches 2 --batch 2 --steps 10)
  run ref 8 "${layout[@]}" --checkpoint-dir "$work/ck" --checkpoint-every 5
  ckpt=$work/ck/step_00000005.h5
  [[ -f $ckpt ]] || fail "no checkpoint at step 5"
  run same 8 "${layout[@]}" --resume-from "$ckpt"
  same same ref 6 0
  run r111 1 --micro-batches 4 --batch 2 --steps 10 --resume-from "$ckpt"
  same r111 ref 6 1e-5
  run r412 8 --dp 4 --pp 2 --micro-batches 1 --batch 2 --steps 10 --resume-from "$ckpt"
  same r412 ref 6 1e-5
  grep -q "resharded" "$work/r412.log" || fail "r412 did not report resharding"
  ;;
zero)
  run ref 4 --dp 2 --tp 2 --zero 1 --micro-batches 2 --batch 2 --steps 10 \
    --checkpoint-dir "$work/ck" --checkpoint-every 5
  ckpt=$work/ck/step_00000005.h5
  run dp4 4 --dp 4 --batch 2 --steps 10 --resume-from "$ckpt"
  same dp4 ref 6 1e-5
  run r111 1 --micro-batches 4 --batch 2 --steps 10 --resume-from "$ckpt"
  same r111 ref 6 1e-5
  ;;
preempt | kill)
  layout=(--dp 2 --pp 2 --micro-batches 2 --batch 2 --steps 200)
  run ref 4 "${layout[@]}"
  if [[ $mode == preempt ]]; then
    # SIGUSR1 to mpirun, which forwards it to every rank (as scancel --signal=USR1 does).
    background usr1 4 "${layout[@]}" --checkpoint-dir "$work/ck_usr1"
    wait_for 120 has_steps usr1 5 || fail "usr1 run did not start"
    kill -USR1 "$bg_pid"
    timeout 120 tail --pid="$bg_pid" -f /dev/null
    wait "$bg_pid"
    status=$?
    cat "$work/usr1.log"
    [[ $status -eq 0 ]] || fail "preempted job exited $status"
    grep -q "^preempted by SIGUSR1 at step" "$work/usr1.log" || fail "no preemption message"
    k=$(last_checkpoint_step "$work/ck_usr1")
    [[ -n $k && $k -lt 200 ]] || fail "no checkpoint before the end (got '$k')"
    run usr1_resumed 4 "${layout[@]}" --checkpoint-dir "$work/ck_usr1" --resume
    grep -q "^resumed from .*step_0*$k.h5 at step $k " "$work/usr1_resumed.log" || fail "did not resume at $k"
    same usr1_resumed ref $((k + 1)) 0
    # SIGTERM straight to every rank (a cluster's preemption notice), default checkpoint dir.
    background term 4 "${layout[@]}"
    wait_for 120 has_steps term 5 || fail "term run did not start"
    pkill -TERM -P "$bg_pid" -f trident-train
    timeout 120 tail --pid="$bg_pid" -f /dev/null
    wait "$bg_pid"
    status=$?
    [[ $status -eq 0 ]] || { cat "$work/term.log"; fail "SIGTERM'd job exited $status"; }
    grep -q "^preempted by SIGTERM" "$work/term.log" || fail "no SIGTERM preemption message"
    k=$(last_checkpoint_step "$work/term/checkpoints")
    run term_resumed 4 "${layout[@]}" --checkpoint-dir "$work/term/checkpoints" --resume
    same term_resumed ref $((k + 1)) 0
  else
    background killed 4 "${layout[@]}" --checkpoint-dir "$work/ck_kill" --checkpoint-every 10
    wait_for 300 test -f "$work/ck_kill/step_00000020.h5" || fail "no checkpoint at step 20"
    victim=$(pgrep -P "$bg_pid" -f trident-train | tail -1)
    [[ -n $victim ]] || fail "no rank process found"
    start=$(date +%s)
    kill -KILL "$victim"
    timeout 90 tail --pid="$bg_pid" -f /dev/null
    wait "$bg_pid"
    status=$?
    elapsed=$(($(date +%s) - start))
    echo "job ended ${elapsed}s after SIGKILL of rank pid $victim, exit status $status"
    [[ $status -ne 0 ]] || fail "the job exited 0 after losing a rank"
    (( elapsed < 60 )) || fail "the job took ${elapsed}s to end"
    pgrep -f "$work/killed" >/dev/null && fail "ranks of the killed job are still running"
    k=$(last_checkpoint_step "$work/ck_kill")
    (( k >= 20 )) || fail "latest checkpoint is step $k"
    run resumed 4 "${layout[@]}" --checkpoint-dir "$work/ck_kill" --checkpoint-every 10 --resume
    grep -q "^resumed from .*step_0*$k.h5 at step $k " "$work/resumed.log" || fail "did not resume at $k"
    same resumed ref $((k + 1)) 0
  fi
  ;;
nan)
  # stop: every rank exits non-zero, the message appears once, within the time limit.
  timeout -k 10 120 "${mpirun_cmd[@]}" -np 2 "$train" "${model[@]}" --batch 2 --steps 6 \
    --fault-nan-step 3 --out-dir "$work/stop" >"$work/stop.log" 2>"$work/stop.err"
  status=$?
  cat "$work/stop.log" "$work/stop.err"
  [[ $status -ne 0 && $status -ne 124 ]] || fail "the stopped job exited $status"
  [[ $(grep -c "trident-train: error: step 3: the loss (nan) or gradient norm" "$work/stop.err") -eq 1 ]] \
    || fail "expected the NaN message exactly once"
  grep -q '"step": 3' "$work/stop/metrics.jsonl" && fail "the NaN step was recorded as done"
  run skip 2 --batch 2 --steps 6 --fault-nan-step 3 --nan-policy skip --log-interval 1
  grep -q "step     3 | loss nan, gradient norm .*: not finite, update skipped" "$work/skip.log" \
    || { cat "$work/skip.log"; fail "no skip message"; }
  grep -q "^step     6/6" "$work/skip.log" || fail "the skip run did not finish"
  ;;
corrupt)
  run ok 2 --batch 2 --steps 6 --checkpoint-dir "$work/ck" --checkpoint-every 3
  ckpt=$work/ck/step_00000006.h5
  # Flip one byte three quarters into the file: inside the parameter data.
  size=$(stat -c %s "$ckpt")
  off=$((size * 3 / 4))
  byte=$(od -An -tu1 -j "$off" -N1 "$ckpt" | tr -d ' ')
  # shellcheck disable=SC2059  # the format is the escaped byte itself
  printf "$(printf '\\%03o' $(((byte ^ 0x5a) & 255)))" |
    dd of="$ckpt" bs=1 seek="$off" conv=notrunc status=none
  bash "$(dirname "$0")/expect_job_failure.sh" 120 "step_00000006.h5" \
    "trident-train: error: .*(corrupted|truncated|cannot)" -- \
    "${mpirun_cmd[@]}" -np 2 "$train" "${model[@]}" --batch 2 --steps 9 \
    --checkpoint-dir "$work/ck" --resume --out-dir "$work/flip" || fail "flipped byte"
  truncate -s $((size / 2)) "$work/ck/step_00000003.h5"
  bash "$(dirname "$0")/expect_job_failure.sh" 120 "step_00000003.h5" -- \
    "${mpirun_cmd[@]}" -np 2 "$train" "${model[@]}" --batch 2 --steps 9 \
    --resume-from "$work/ck/step_00000003.h5" --out-dir "$work/trunc" || fail "truncated file"
  ;;
parallel)
  for tool in h5dump h5diff; do
    command -v $tool >/dev/null || fail "$tool not found (apt-get install hdf5-tools)"
  done
  layout=(--dp 2 --tp 2 --pp 2 --zero 1 --micro-batches 2 --batch 2 --steps 10)
  run ref 8 "${layout[@]}" --checkpoint-dir "$work/ck" --checkpoint-every 5
  ckpt=$work/ck/step_00000005.h5
  line=$(grep "^checkpoint written to .*step_00000005.h5" "$work/ref.log")
  [[ $line == *"tensor bytes written by rank:"* ]] ||
    fail "not written by the parallel writer (a build with serial HDF5?): $line"
  read -ra written <<<"$(sed -n 's/.*tensor bytes written by rank: \([0-9 ]*\)).*/\1/p' <<<"$line")"
  # The tensors' bytes in the file, from h5dump's shapes ("DATASPACE  SIMPLE { ( 256, 32 ) ...").
  total=$(h5dump -H "$ckpt" | awk -F'[()]' '/DATASPACE  SIMPLE/ {
    n = split($2, d, ","); p = 1; for (i = 1; i <= n; ++i) p *= d[i]; s += p } END { print s * 4 }')
  sum=0 max=0
  for b in "${written[@]}"; do
    (( b > 0 )) || fail "a rank wrote nothing: ${written[*]}"
    (( sum += b, b > max && (max = b) ))
  done
  echo "bytes written by rank: ${written[*]} (sum $sum, file tensors $total)"
  (( ${#written[@]} == 8 )) || fail "expected 8 ranks' counts, got ${#written[@]}"
  (( sum == total )) || fail "the ranks wrote $sum bytes; the file's tensors hold $total"
  (( max * 8 * 2 <= total * 3 )) || fail "a rank wrote $max bytes, over 1.5x an even share of $total"
  # The same tensors as the rank-0 writer's file of the same run (names, shapes, values).
  TRIDENT_CHECKPOINT_WRITER=rank0 run rank0 8 "${layout[@]}" --checkpoint-dir "$work/ck0" \
    --checkpoint-every 5
  grep -q "tensor bytes written" "$work/rank0.log" && fail "TRIDENT_CHECKPOINT_WRITER=rank0 ignored"
  h5diff "$ckpt" "$work/ck0/step_00000005.h5" /params /params || fail "the files differ (h5diff)"
  # h5dump reads every chunk, verifying its Fletcher-32 checksum.
  h5dump "$ckpt" >/dev/null || fail "h5dump cannot read $ckpt"
  # Resume under the same layout: bitwise; each rank reads only its own share.
  run same 8 "${layout[@]}" --resume-from "$ckpt"
  same same ref 6 0
  read -ra read_bytes <<<"$(sed -n 's/^resumed from .*tensor bytes read by rank: \([0-9 ]*\)).*/\1/p' "$work/same.log")"
  echo "bytes read by rank: ${read_bytes[*]}"
  (( ${#read_bytes[@]} == 8 )) || fail "expected 8 ranks' read counts"
  for b in "${read_bytes[@]}"; do
    (( b > 0 && b * 2 < total )) || fail "a rank read $b bytes of $total: ${read_bytes[*]}"
  done
  run r111 1 --micro-batches 4 --batch 2 --steps 10 --resume-from "$ckpt"
  same r111 ref 6 1e-5
  # A flipped byte in the middle of a chunk of /params/wte.weight/value (found by its bytes).
  cp "$ckpt" "$work/flipped.h5"
  h5dump -d /params/wte.weight/value -b LE -o "$work/wte.bin" "$ckpt" >/dev/null
  python3 - "$work/wte.bin" "$work/flipped.h5" <<'PY' || fail "could not find the dataset's bytes"
import sys
raw = open(sys.argv[1], "rb").read()
data = bytearray(open(sys.argv[2], "rb").read())
needle = raw[len(raw) // 2:len(raw) // 2 + 32]
at = data.find(needle)
assert at >= 0 and data.count(needle) == 1
data[at + 5] ^= 0x10
open(sys.argv[2], "wb").write(data)
PY
  if h5dump --enable-error-stack -d /params/wte.weight/value -o /dev/null "$work/flipped.h5" \
      >"$work/h5dump_flipped.log" 2>&1; then
    fail "h5dump read the flipped byte without complaint"
  fi
  grep -q "Fletcher32 checksum" "$work/h5dump_flipped.log" || { cat "$work/h5dump_flipped.log"; fail "no Fletcher-32 error"; }
  h5dump -d /params/wpe.weight/value -o /dev/null "$work/flipped.h5" >/dev/null ||
    fail "an intact dataset of the flipped file did not read"
  bash "$(dirname "$0")/expect_job_failure.sh" 120 "flipped.h5" \
    "trident-train: error: .*wte.weight/value is corrupted" -- \
    "${mpirun_cmd[@]}" -np 8 "$train" "${model[@]}" "${layout[@]}" \
    --resume-from "$work/flipped.h5" --out-dir "$work/flip" || fail "flipped byte on resume"
  ;;
write_error)
  # one_error NAME DIR: a 4-rank job checkpointing into DIR fails within 120 s, non-zero, with
  # exactly one error line on stderr, and leaves no checkpoint behind.
  one_error() {
    local name=$1 dir=$2 start status n
    start=$(date +%s)
    timeout -k 10 120 "${mpirun_cmd[@]}" -np 4 "$train" "${model[@]}" --dp 2 --tp 2 --batch 2 \
      --steps 3 --checkpoint-dir "$dir" --out-dir "$work/$name" >"$work/$name.log" 2>"$work/$name.err"
    status=$?
    cut -c1-300 "$work/$name.err"
    echo "$name: exit status $status after $(($(date +%s) - start)) s"
    (( status != 0 && status != 124 )) || fail "$name: exit status $status"
    n=$(grep -cE "^(trident-train: error: checkpoint not written|trident: rank [0-9]+): " "$work/$name.err")
    (( n == 1 )) || fail "$name: $n error lines, expected one"
    [[ -z $(find "$dir" -maxdepth 1 -name 'step_*' 2>/dev/null) ]] || fail "$name: a file was left in $dir"
  }
  # A directory nobody can create a file in, not even root.
  one_error unwritable /proc/self
  grep -q "cannot create HDF5 file" "$work/unwritable.err" || fail "unwritable: not named"
  # A full disk: a 300 KiB tmpfs fails the free-space check (715 KiB of tensors); a 740 KiB one
  # passes it and fills up while HDF5 writes. Needs mount rights (root in a container).
  full=$work/full
  mkdir -p "$full"
  for size in 300k 740k; do
    if ! mount -t tmpfs -o size=$size tmpfs "$full" 2>/dev/null; then
      echo "full-disk cases not run: cannot mount a tmpfs here (not root?)"
      break
    fi
    (one_error "full_$size" "$full/ck")
    status=$?
    umount "$full"
    (( status == 0 )) || fail "full disk ($size)"
    grep -qE "not enough disk space|disk full|No space left" "$work/full_$size.err" ||
      fail "full_$size: the message does not say the disk is full"
  done
  ;;
*)
  fail "unknown mode $mode"
  ;;
esac
echo "PASS: $mode"
