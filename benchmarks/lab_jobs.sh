#!/bin/bash
# The full lab twice, back to back: the published command (`--jobs 2 --threads 1`, into docs/lab), then the same
# lab at `--jobs 1 --threads 2` (issue #14: the throughput of jobs side by side against one job on both cores).
#
#     bash benchmarks/lab_jobs.sh RESULTS   # e.g. benchmarks/results/lab_jobs_<machine>
#
# Run it from a clean clone beside ../shared (the lab then times the seed baseline too), its virtual environment
# active, nothing else running: about an hour on 2 cores. Each lab starts from an empty corpus cache. RESULTS gets,
# per run (j2t1, j1t2): the log, /usr/bin/time's record, benchmarks/memwatch.py's peak memory, the lab.json, and
# `import torch` timed three times before it (and after the last), a gauge of how quick the machine was in that
# hour; then summary.json: the two wall times and their ratio. The second lab's other files go to RESULTS/out_j1t2/
# (not committed).
set -u
results=${1:?give a results folder}
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$results" && results=$(cd "$results" && pwd)
cd "$here"
export PYTHONPATH="$here/src"
gauge() { for i in 1 2 3; do /usr/bin/time -f "import torch %e s" python -c "import torch" 2>&1 | tail -1; done; }
for name in j2t1 j1t2; do
  if [ $name = j2t1 ]; then args="--out docs/lab --markdown docs/RESULTS.md --jobs 2 --threads 1" lab=docs/lab
  else args="--out $results/out_j1t2 --jobs 1 --threads 2" lab=$results/out_j1t2; fi
  cache=$results/cache_$name
  rm -rf "$cache" && mkdir -p "$cache"
  gauge > "$results/import_$name.txt"
  {
    echo "# rnnlab lab --data ../shared/data/imdb $args"
    echo "# commit $(git rev-parse --short HEAD) (tree: $(git status --porcelain | wc -l) changed paths), RNNLAB_CACHE" \
         "empty, started $(date -u) on $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
         "family $(grep -m1 'cpu family' /proc/cpuinfo | cut -d: -f2 | xargs) model" \
         "$(grep -m1 '^model\s' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
  } > "$results/log_$name.txt"
  # shellcheck disable=SC2086
  RNNLAB_CACHE=$cache /usr/bin/time -v -o "$results/time_$name.txt" \
    python -m rnnlab lab --data ../shared/data/imdb $args >> "$results/log_$name.txt" 2>&1 &
  pid=$!
  python benchmarks/memwatch.py $pid "$results/memory_$name.txt" &
  wait $pid
  echo "exit $?, finished $(date -u)" >> "$results/log_$name.txt"
  wait
  cp "$lab/lab.json" "$results/lab_$name.json"
  rm -rf "$cache"
done
gauge > "$results/import_after.txt"
python - "$results" <<'EOF'
import json, sys
r = sys.argv[1]
wall = {n: json.load(open(f"{r}/lab_{n}.json"))["wall_seconds"] for n in ("j2t1", "j1t2")}
json.dump({"wall_seconds": {"--jobs 2 --threads 1": wall["j2t1"], "--jobs 1 --threads 2": wall["j1t2"]},
           "speedup_of_jobs_over_threads": round(wall["j1t2"] / wall["j2t1"], 3)}, open(f"{r}/summary.json", "w"), indent=1)
EOF
