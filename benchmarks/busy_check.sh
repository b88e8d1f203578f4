#!/bin/bash
# The busy-machine check of the serial experiment, end to end: `rnnlab shortfall serial` (the full timings: a
# --quick one's windows are too short to tell) twice, once on an idle machine and once beside one process that keeps
# a CPU busy, each timing job's `others_cpu_share` row and the verdict kept under OUT/idle and OUT/beside_busy.
#     bash benchmarks/busy_check.sh ../shared/data/imdb benchmarks/results/busy_check_s60
set -euo pipefail
data=$1 out=$2
tmp=$(mktemp -d)
busy=
trap 'rm -rf "$tmp"; [ -n "$busy" ] && kill "$busy" 2>/dev/null' EXIT
for case in idle beside_busy; do
  if [ $case = beside_busy ]; then
    python -c "import time
t = time.time() + 600
while time.time() < t: pass" & busy=$!
    sleep 1
  fi
  OMP_NUM_THREADS=1 rnnlab shortfall serial --data "$data" --out "$tmp/$case" > /dev/null
  [ $case = beside_busy ] && kill $busy && busy=
  mkdir -p "$out/$case"
  cp "$tmp/$case/serial/results.csv" "$tmp/$case/serial/verdict.json" "$out/$case/"
  grep others_cpu_share "$out/$case/results.csv"
done
