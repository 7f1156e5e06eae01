#!/usr/bin/env bash
# ctest package.out_of_tree_example: Trident as another project sees it.
#   1. `cmake --install` of this build into an empty temporary prefix;
#   2. examples/out_of_tree configured with only that prefix (find_package(Trident)) and built;
#      it must compile against the installed headers, not this source tree;
#   3. run data-parallel on 2 ranks: the loss must fall to under a fifth of its first value and
#      both ranks must end with the same weights.
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
  include/trident/trace/trace.hpp include/trident/planner/layout_planner.hpp; do
  [[ -f $prefix/$f ]] || fail "$f was not installed"
done
for l in trident_kernels trident_core trident_io trident_trace trident_parallel trident_planner \
  trident_models; do
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
