#!/usr/bin/env bash
# cuda_graphs.sh TRAIN COMPARE NO_HOST_SYNC OUT [NP] -- ARGS...: trident-train --cuda-graphs on
# one emulated GPU (or NP ranks under mpirun: dp and tp over the NCCL shim, whose collectives,
# the step's norm and loss all-reduces among them, are captured into the graph) against the
# same run without graphs. The graph replays the eager step's kernels
# in the eager order, so losses, gradient norms and final weights must agree bitwise
# (compare_runs --rtol 0); the graph is captured once (step 3) and launched for every step after
# the two eager ones; no step waits for the device, and the capture and the replays (step 3 on)
# call no cudaMalloc (NO_HOST_SYNC checks metrics.jsonl). The second eager step may: the first
# creates the optimizer state from the private pool's blocks, and a steady step can then need
# one more block of a size that state shares (seen with attention's saved buffer at the size of
# wpe's AdamW moments, 2048 bytes), which the second warm-up makes for the capture. With NP > 1
# the eager run (norm and loss all-reduced on the device) must also equal bitwise the same run
# with --comm mpi (the host path: both reduced by host MPI), and --comm mpi with --cuda-graphs is
# refused. Then (NP 1) the layouts that cannot be captured must be refused, on every rank, with
# one error and a non-zero exit.
set -uo pipefail
train=$1 compare=$2 no_host_sync=$3 out=$4 np=1
if [[ $5 != -- ]]; then np=$5 && shift; fi
shift 5
steps=6
fail() { echo "FAIL: $*"; exit 1; }
# trident-train on np ranks
run() {
  if [[ $np == 1 ]]; then
    "$train" "$@"
  else
    mpirun --oversubscribe --bind-to none -np "$np" "$train" "$@"
  fi
}
rm -rf "$out" && mkdir -p "$out"
run "$@" --steps $steps --device cuda --out-dir "$out/eager" > "$out/eager.log" 2>&1 ||
  { cat "$out/eager.log"; fail "the eager run failed"; }
run "$@" --steps $steps --device cuda --cuda-graphs --out-dir "$out/graphs" \
  > "$out/graphs.log" 2>&1 || { cat "$out/graphs.log"; fail "the --cuda-graphs run failed"; }
grep -E "^step|^cuda graphs" "$out/graphs.log"
"$compare" --rtol 0 "$out/graphs" "$out/eager" || fail "--cuda-graphs differs from the eager run"
grep -qx "cuda graphs: 1 captured, $((steps - 2)) launches" "$out/graphs.log" ||
  fail "expected 1 capture and $((steps - 2)) graph launches"
bash "$no_host_sync" "$out/graphs/metrics.jsonl" $steps 3 || exit 1
if [[ $np != 1 ]]; then
  run "$@" --steps $steps --device cuda --comm mpi --out-dir "$out/eager_mpi" \
    > "$out/eager_mpi.log" 2>&1 || { cat "$out/eager_mpi.log"; fail "the --comm mpi run failed"; }
  "$compare" --rtol 0 "$out/eager" "$out/eager_mpi" ||
    fail "the device-side norm and loss reductions differ from the host's (--comm mpi)"
fi
# 2 micro-batches (the later flags win), SGD, a validation between replays.
more=(--steps 5 --micro-batches 2 --batch 4 --optimizer sgd --lr 0.1 --eval-interval 2)
run "$@" "${more[@]}" --device cuda --out-dir "$out/eager_m2" > "$out/eager_m2.log" 2>&1 ||
  { cat "$out/eager_m2.log"; fail "the eager run with 2 micro-batches failed"; }
run "$@" "${more[@]}" --device cuda --cuda-graphs --out-dir "$out/graphs_m2" \
  > "$out/graphs_m2.log" 2>&1 || { cat "$out/graphs_m2.log"; fail "--cuda-graphs, 2 micro-batches"; }
"$compare" --rtol 0 "$out/graphs_m2" "$out/eager_m2" || fail "2 micro-batches: graphs differ"
grep -qx "cuda graphs: 1 captured, 3 launches" "$out/graphs_m2.log" || fail "2 micro-batches: launches"

# name  ranks  extra arguments  expected message
refuse() {
  local name=$1 np=$2 args=$3 msg=$4 log="$out/refuse_$1.log" rc
  shift 4
  if [[ $np == 1 ]]; then
    # shellcheck disable=SC2086
    "$train" "$@" --steps 2 $args --cuda-graphs --out-dir "$out/$name" > "$log" 2>&1
  else
    # shellcheck disable=SC2086
    mpirun --oversubscribe --bind-to none -np "$np" "$train" "$@" --steps 2 $args --cuda-graphs \
      --out-dir "$out/$name" > "$log" 2>&1
  fi
  rc=$?
  [[ $rc != 0 ]] || { cat "$log"; fail "$name: --cuda-graphs was not refused (exit 0)"; }
  grep -q -- "$msg" "$log" || { cat "$log"; fail "$name: no error saying '$msg'"; }
  [[ $(grep -c -- "$msg" "$log") == 1 ]] || { cat "$log"; fail "$name: not exactly one error"; }
  ! grep -q "^step " "$log" || { cat "$log"; fail "$name: trained before refusing"; }
  echo "refused ($name, exit $rc): $(grep -m1 -- "$msg" "$log")"
}
if [[ $np != 1 ]]; then
  refuse mpi "$np" "--device cuda --comm mpi" "--cuda-graphs needs NCCL collectives over $np ranks" \
    "$@"
  echo "cuda_graphs ($np ranks): bitwise equal to the eager runs, 1 capture, $((steps - 2)) \
launches, the eager device-side reductions equal the host's, --comm mpi refused"
  exit 0
fi
refuse cpu 1 "--device cpu" "--cuda-graphs needs --device cuda" "$@"
refuse trace 1 "--device cuda --trace $out/t.json" "--cuda-graphs does not support --trace" "$@"
refuse pp2 2 "--device cuda --pp 2" "--cuda-graphs does not support --pp 2" "$@"
refuse dp2_mpi 2 "--device cuda --dp 2 --batch 4 --comm mpi" \
  "--cuda-graphs needs NCCL collectives over 2 ranks" "$@"
refuse zero 2 "--device cuda --dp 2 --batch 4 --zero 1" "--cuda-graphs does not support --zero 1" \
  "$@"
echo "cuda_graphs: bitwise equal to the eager runs, 1 capture, $((steps - 2)) launches, refusals ok"
