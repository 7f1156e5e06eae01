# Sourced by the CPU benchmarks: how busy the machine is, and waiting until it is quiet enough
# to time something. QUIET_BUSY (percent of all cores) and QUIET_WAIT (seconds) are the caller's.
# shellcheck shell=bash

# Busy jiffies and all jiffies of the machine so far (/proc/stat's first line: busy is all but
# idle and iowait, steal included, as another virtual machine's load is load too; guest time is
# already inside user).
jiffies() {
  head -n 1 /proc/stat | awk '{t = 0; for (i = 2; i <= 9; ++i) t += $i; print t - $5 - $6, t}'
}

# Percent of all cores busy over the next second (the caller is idle meanwhile).
cpu_busy() {
  local b0 t0 b1 t1
  read -r b0 t0 < <(jiffies)
  sleep 1
  read -r b1 t1 < <(jiffies)
  echo $(((100 * (b1 - b0)) / (t1 - t0 > 0 ? t1 - t0 : 1)))
}

# Waits until fewer than QUIET_BUSY percent of the cores are busy, or QUIET_WAIT seconds have
# passed; prints the last busy percentage.
wait_quiet() {
  local start=$SECONDS busy
  busy=$(cpu_busy)
  while ((busy >= QUIET_BUSY && SECONDS - start < QUIET_WAIT)); do
    sleep 4
    busy=$(cpu_busy)
  done
  echo "$busy"
}
