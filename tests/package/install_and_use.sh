#!/usr/bin/env bash
# ctest package.out_of_tree_example: Trident as another project sees it.
#   1. `cmake --install` of this build into an empty temporary prefix;
#   2. examples/out_of_tree configured with only that prefix (find_package(Trident)) and built;
#      it must compile against the installed headers, not this source tree;
#   3. run data-parallel on 2 ranks: the loss must fall to under a fifth of its first value and
#      both ranks must end with the same weights;
#   4. trident_3d_lm, the user's own model under the library trainer, at dp 2 x tp 2 x pp 2 on 8
#      ranks with checkpoints and a trace: its losses must equal one process's (4 decimals), the
#      validation loss must end under 0.3 x the first loss, the checkpoints and every rank's trace must be written,
#      and a resume must continue from the last checkpoint.
#
#   bash tests/package/install_and_use.sh BUILD_DIR SOURCE_DIR MPIEXEC [cmake options...]
# TRIDENT_PACKAGE_TEST_KEEP=1 keeps the temporary folder.
set -uo pipefail
build=$(realpath "${1:?usage: install_and_use.sh BUILD_DIR SOURCE_DIR MPIEXEC [cmake options]}")
src=$(realpath "${2:?missing SOURCE_DIR}")
mpiexec=${3:?missing MPIEXEC}
shift 3
cmake_opts=("$@")

work=$(mktemp -d /tmp/trident-package-test.XXXXXX)
cleanup() {
  if [[ ${TRIDENT_PACKAGE_TEST_KEEP:-0} == 1 ]]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  exit 1
}
say() { echo "[$SECONDS s] $*"; }

prefix=$work/prefix
timeout 120 cmake --install "$build" --prefix "$prefix" >"$work/install.log" 2>&1 ||
  { tail -n 20 "$work/install.log"; fail "cmake --install failed"; }
say "installed into $prefix: $(find "$prefix" -type f | wc -l) files"
for f in lib/cmake/Trident/TridentConfig.cmake lib/cmake/Trident/TridentConfigVersion.cmake \
  lib/cmake/Trident/TridentTargets.cmake include/trident/core/tensor.hpp \
  include/trident/kernels/cpu/gemm.hpp include/trident/parallel/data_parallel.hpp \
  include/trident/models/gpt.hpp include/trident/io/checkpoint.hpp \
  include/trident/trace/trace.hpp include/trident/planner/layout_planner.hpp \
  include/trident/train/trainer.hpp include/trident/train/trainable_model.hpp; do
  [[ -f $prefix/$f ]] || fail "$f was not installed"
done
for l in trident_kernels trident_core trident_io trident_trace trident_parallel trident_planner \
  trident_train trident_models; do
  compgen -G "$prefix/lib*/lib$l.a" >/dev/null || fail "lib$l.a was not installed"
done

# Configure with the prefix only: no package registry, no path back into this tree.
timeout 300 cmake -S "$src/examples/out_of_tree" -B "$work/build" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_EXPORT_COMPILE_COMMANDS=ON "${cmake_opts[@]}" \
  >"$work/configure.log" 2>&1 || { tail -n 30 "$work/configure.log"; fail "configuring the example failed"; }
found=$(sed -n 's/^Trident_DIR:PATH=//p' "$work/build/CMakeCache.txt")
[[ $found == "$prefix"/* ]] || fail "find_package(Trident) found '$found', not the installed package"
say "find_package(Trident) found $found"
timeout 600 cmake --build "$work/build" >"$work/build.log" 2>&1 ||
  { tail -n 30 "$work/build.log"; fail "building the example failed"; }
if grep -q -- "-I$src/" "$work/build/compile_commands.json"; then
  fail "the example was compiled with include paths into the source tree $src"
fi
grep -q -- "$prefix/include" "$work/build/compile_commands.json" ||
  fail "the example was not compiled against $prefix/include"
say "built $work/build/trident_dp_mlp against the installed headers and libraries"

out=$work/run.log
OMP_NUM_THREADS=1 timeout 300 "$mpiexec" --oversubscribe --bind-to none \
  --mca btl_vader_single_copy_mechanism none -np 2 "$work/build/trident_dp_mlp" --steps 300 \
  >"$out" 2>&1
rc=$?
cat "$out"
((rc == 0)) || fail "mpirun -np 2 trident_dp_mlp exited with $rc"
grep -q "2 data-parallel ranks" "$out" || fail "the example did not run on 2 ranks"
first=$(sed -nE 's/^step +1 \| loss ([0-9.]+)$/\1/p' "$out")
last=$(sed -nE 's/^step +300 \| loss ([0-9.]+)$/\1/p' "$out")
[[ -n $first && -n $last ]] || fail "no loss at step 1 or step 300"
awk -v a="$last" -v b="$first" 'BEGIN { exit !(a < 0.2 * b) }' ||
  fail "the loss did not fall enough: $first at step 1, $last at step 300 (want < 1/5)"
say "ok: loss $first at step 1 -> $last at step 300"
c0=$(sed -nE 's/^rank 0: weight checksum (.*)$/\1/p' "$out")
c1=$(sed -nE 's/^rank 1: weight checksum (.*)$/\1/p' "$out")
[[ -n $c0 && $c0 == "$c1" ]] || fail "ranks disagree: weight checksum '$c0' on rank 0, '$c1' on rank 1"
grep -q "^replicas agree" "$out" || fail "the example's own replica check failed"
say "ok: both ranks end with the same weights (checksum $c0)"

# 4. The library trainer on the user's own model, 3D-parallel.
run3d() {
  (cd "$work" && OMP_NUM_THREADS=1 timeout 300 "$@")
}
mpi8=("$mpiexec" --oversubscribe --bind-to none --mca btl_vader_single_copy_mechanism none -np 8)
# One process with the same global batch: 4 micro-batches of 4 sequences (dp 2 x 2 x 4 at 8 ranks).
run3d "$work/build/trident_3d_lm" --steps 60 --micro-batches 4 >"$work/lm1.log" 2>&1 ||
  { cat "$work/lm1.log"; fail "trident_3d_lm on one process failed"; }
run3d "${mpi8[@]}" "$work/build/trident_3d_lm" --dp 2 --tp 2 --pp 2 --steps 60 \
  --checkpoint-dir "$work/ckpt" --checkpoint-every 30 --trace "$work/trace.json" >"$work/lm8.log" 2>&1 ||
  { cat "$work/lm8.log"; fail "mpirun -np 8 trident_3d_lm failed"; }
cat "$work/lm8.log"
grep -q "^layout: dp 2 x pp 2 x tp 2 on 8 ranks" "$work/lm8.log" || fail "trident_3d_lm did not run dp 2 x pp 2 x tp 2"
losses() { sed -nE 's/^step +([0-9]+)\/60 \| loss ([0-9.]+) .*/\1 \2/p' "$1"; }
[[ $(losses "$work/lm8.log" | wc -l) == 7 ]] || fail "expected 7 log lines at 8 ranks"
[[ "$(losses "$work/lm8.log")" == "$(losses "$work/lm1.log")" ]] ||
  fail "8 ranks and one process log different losses: $(losses "$work/lm8.log" | tr '\n' ' ') vs $(losses "$work/lm1.log" | tr '\n' ' ')"
first=$(losses "$work/lm8.log" | awk '$1 == 1 {print $2}')
val() { sed -nE 's/^done in .* \| val loss ([0-9.]+)$/\1/p' "$1"; }
last=$(val "$work/lm8.log")
[[ -n $last && $last == "$(val "$work/lm1.log")" ]] ||
  fail "validation loss '$last' at 8 ranks, '$(val "$work/lm1.log")' on one process"
awk -v a="$last" -v b="$first" 'BEGIN { exit !(a < 0.3 * b) }' ||
  fail "trident_3d_lm's validation loss is not under 0.3 x its first loss: $first -> $last"
for f in ckpt/step_00000030.h5 ckpt/step_00000060.h5 trace.json trace.rank7.json; do
  [[ -s $work/$f ]] || fail "trident_3d_lm did not write $f"
done
say "ok: trident_3d_lm at dp 2 x tp 2 x pp 2 logs one process's losses ($first -> validation $last), wrote checkpoints and 8 traces"
run3d "${mpi8[@]}" "$work/build/trident_3d_lm" --dp 2 --tp 2 --pp 2 --steps 70 \
  --checkpoint-dir "$work/ckpt" --resume 1 >"$work/resume.log" 2>&1 ||
  { cat "$work/resume.log"; fail "resuming trident_3d_lm failed"; }
grep -q "^resumed from $work/ckpt/step_00000060.h5 at step 60" "$work/resume.log" ||
  { cat "$work/resume.log"; fail "trident_3d_lm did not resume from step 60"; }
grep -qE "^step +70/70 \| loss" "$work/resume.log" || fail "the resumed run did not reach step 70"
say "ok: trident_3d_lm resumed from its step-60 checkpoint and trained to step 70"
