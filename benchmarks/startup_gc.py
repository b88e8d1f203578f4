"""What Python's cycle collector costs a command that imports torch: `python -c "import torch"` three ways.

    python benchmarks/startup_gc.py --rounds 10 --out benchmarks/results/startup_gc.json

- plain: as any script runs it;
- collector off: `gc.disable()` first, so no pass runs while torch's ~170,000 tracked objects are created;
- off, frozen at exit: also `gc.freeze()` last, so the passes Python makes when it exits skip them
  (what `rnnlab explain` and `rnnlab predict` do since ab8fd72; every rnnlab command freezes at exit).

The three run alternately, round by round, each in a fresh process; medians and ranges are reported.
"""
from __future__ import annotations

import argparse
import gc
import statistics
import subprocess
import sys
import time

from common import publish

VARIANTS = {
    "plain": "import torch",
    "collector_off": "import gc; gc.disable(); import torch",
    "collector_off_frozen_at_exit": "import gc; gc.disable(); import torch; gc.freeze()",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    times = {k: [] for k in VARIANTS}
    for _ in range(args.rounds):
        for name, code in VARIANTS.items():
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            times[name].append(time.perf_counter() - t0)
    code = "import gc, torch; print(sum(len(gc.get_objects(g)) for g in range(3)))"
    tracked = int(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    result = {"command": "python -c 'import torch'", "rounds": args.rounds,
              "objects_tracked_after_import_torch": tracked, "python": sys.version.split()[0],
              "gc_thresholds": list(gc.get_threshold())}
    for name, ts in times.items():
        result[name] = {"median_seconds": round(statistics.median(ts), 3), "seconds": [round(t, 3) for t in ts]}
    result["plain_over_frozen"] = round(result["plain"]["median_seconds"]
                                        / result["collector_off_frozen_at_exit"]["median_seconds"], 2)
    publish(result, args.out)


if __name__ == "__main__":
    main()
