"""How close `rnnlab.memory.token_bytes` is to what passes take: measured over bound, at tests/test_memory.py's sizes.

    python benchmarks/memory_bound.py --out benchmarks/results/memory_bound.json

Runs each of the test's SIZES in a fresh process (its peak resident memory above the memory before the tokens, as
the test measures it) and reports measured / (bound + WORKSPACE), the need every check states, without gradients
("read" sizes) and with a backward.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from common import publish
from rnnlab.memory import WORKSPACE

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_memory import _PEAK, SIZES  # noqa: E402  (the test's own measurement)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rows = []
    for size in SIZES:
        r = subprocess.run([sys.executable, "-c", _PEAK, *map(str, size)], capture_output=True, text=True, check=True)
        m = json.loads(r.stdout)
        row = {"size": "-".join(map(str, size)), "backward": round(m["gradients"] / (m["grad_bound"] + WORKSPACE), 3)}
        if "forward" in m:
            row["forward"] = round(m["forward"] / (m["bound"] + WORKSPACE), 3)
        rows.append(row)
    ratios = [v for r in rows for k, v in r.items() if k != "size"]
    publish({"sizes": rows, "lowest": min(ratios), "highest": max(ratios)}, args.out)


if __name__ == "__main__":
    main()
