#!/usr/bin/env bash
# test_gpu_or_skip.sh WRAPPER: gpu_or_skip.sh with fake probes. A probe that finds a GPU runs
# the command; one that finds none (77) skips, or fails under TRIDENT_REQUIRE_GPU=1; any other
# probe result (an error, a crash) fails with a message and never runs the command.
set -u
wrapper=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
failures=0
probe() {  # probe NAME STATUS: a fake probe exiting with STATUS (a signal when "segv")
  if [[ $2 == segv ]]; then
    printf '#!/usr/bin/env bash\nkill -SEGV $$\n' >"$dir/$1"
  else
    printf '#!/usr/bin/env bash\nexit %s\n' "$2" >"$dir/$1"
  fi
  chmod +x "$dir/$1"
}
expect() {  # expect WANT_STATUS RAN(yes|no) DESCRIPTION -- ENV... : runs the wrapper
  local want=$1 ran_want=$2 what=$3
  shift 4
  rm -f "$dir/ran"
  env "$@" bash "$wrapper" "$probe_path" -- touch "$dir/ran" >/dev/null 2>"$dir/err"
  local rc=$? ran=no
  [[ -e $dir/ran ]] && ran=yes
  if [[ $rc -ne $want || $ran != "$ran_want" ]]; then
    echo "FAIL: $what: exit $rc (want $want), command ran: $ran (want $ran_want)"
    cat "$dir/err"
    failures=$((failures + 1))
  else
    echo "ok: $what: exit $rc"
  fi
}
probe gpu 0
probe none 77
probe error 1
probe crash segv
probe_path=$dir/gpu
expect 0 yes "a GPU runs the command" --
probe_path=$dir/none
expect 77 no "no GPU skips" --
expect 1 no "no GPU with TRIDENT_REQUIRE_GPU=1 fails" -- TRIDENT_REQUIRE_GPU=1
expect 77 no "TRIDENT_REQUIRE_GPU=0 still skips" -- TRIDENT_REQUIRE_GPU=0
probe_path=$dir/error
expect 1 no "a probe error fails" --
probe_path=$dir/crash
expect 139 no "a crashing probe fails" --
probe_path=$dir/missing
expect 127 no "a missing probe fails" --
if ((failures > 0)); then
  echo "$failures case(s) failed"
  exit 1
fi
