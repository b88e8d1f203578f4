"""One rnnlab command from two source trees, alternating, on the same machine: wall time and the result line.

    git worktree add /tmp/old COMMIT
    python benchmarks/before_after.py --before /tmp/old/src --rounds 3 --threads 1 \\
        --out benchmarks/results/NAME.json -- train --preset rnn --data ../shared/data/imdb --out {out}

Each round runs `python -m rnnlab ARGS` once from --before's source and once from this checkout's
(`src/`), in alternating order, each in a fresh process with --threads torch threads and `{out}`
replaced by a fresh temporary directory. Reports the median wall time of each side, its range, the
ratio of the medians, and each run's last output line that parses as JSON (the command's summary),
so a speed change can be read next to any change in the numbers it produced.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import publish

HERE = Path(__file__).resolve().parent


def run(src: str, args: list[str], threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        argv = [a.replace("{out}", str(Path(tmp) / "out")) for a in args]
        env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        t = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "rnnlab", *argv], env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t
    if r.returncode:
        raise SystemExit(f"{src}: exit {r.returncode}: {(r.stderr.strip().splitlines() or ['no output'])[-1]}")
    summary = None
    for line in reversed(r.stdout.splitlines()):
        try:
            summary = json.loads(line)
            break
        except ValueError:
            continue
    return {"seconds": round(seconds, 1), "summary": summary}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="the other checkout's src/ directory")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- then the rnnlab arguments ({out}: a fresh directory)")
    args = ap.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    sides = {"before": str(Path(args.before).resolve()), "after": str(HERE.parent / "src")}
    runs = {k: [] for k in sides}
    for r in range(args.rounds):
        for side in (("before", "after") if r % 2 == 0 else ("after", "before")):
            runs[side].append(run(sides[side], command, args.threads))
            print(json.dumps({"round": r, "side": side, **runs[side][-1]}), flush=True)
    med = {k: statistics.median(x["seconds"] for x in v) for k, v in runs.items()}
    result = {"command": ["rnnlab", *command], "sources": sides, "threads": args.threads, "rounds": args.rounds,
              "load_avg_after": [round(v, 2) for v in os.getloadavg()],
              "median_seconds": med, "range_seconds": {k: [min(x["seconds"] for x in v), max(x["seconds"] for x in v)]
                                                        for k, v in runs.items()},
              "speedup_of_medians": round(med["before"] / med["after"], 3), "runs": runs}
    publish(result, args.out)


if __name__ == "__main__":
    main()
