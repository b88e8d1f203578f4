"""Peak memory and time of `rnnlab evaluate` and `rnnlab predict` on reviews far longer than IMDB's.

    python benchmarks/long_reviews.py RUN_DIR [--before OTHER_CHECKOUT/src] --out benchmarks/results/long_reviews.json

RUN_DIR: a run trained on whole reviews (`rnnlab train --preset rnn --max-len 0 --epochs 1 --data ...`): its
weights do not matter here, its reading of whole reviews does. Cases, each a fresh process (peak resident memory:
its VmHWM):
- `evaluate` of a CSV of 100 reviews of 300 tokens and one of 200,000 (random words of the run's vocabulary);
- `predict` of one review of 1,000,000 tokens on standard input;
- `predict` of one review of 15,000,000 tokens, which needs more memory than a 24 GB machine has (refused).
With --before, the first two from another checkout's source (`git worktree add /tmp/old COMMIT`, then
`--before /tmp/old/src`), one after the other; not the third, which a checkout that does not refuse it would run
until the kernel's out-of-memory killer ends it (or another process).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import publish


def child(cmd: list[str], stdin: Path | None, src: str | None) -> dict:
    """Run `python -m rnnlab ...` in a fresh process: exit code, seconds, peak resident memory, its last line."""
    env = {**os.environ, **({"PYTHONPATH": src} if src else {})}
    code = ("import runpy, sys; sys.argv = ['rnnlab', *sys.argv[1:]]\n"  # VmHWM: ru_maxrss may start at the parent's
            "try:\n    runpy.run_module('rnnlab', run_name='__main__')\nfinally:\n"
            "    print('PEAK', open('/proc/self/status').read().split('VmHWM:')[1].split()[0], file=sys.stderr)")
    t0 = time.perf_counter()
    with open(stdin or os.devnull) as f:
        r = subprocess.run([sys.executable, "-c", code, *cmd], stdin=f, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    lines = r.stderr.splitlines()
    peak = next((int(x.split()[1]) for x in lines if x.startswith("PEAK ")), None)
    last = next((x for x in reversed(lines) if not x.startswith("PEAK ")), "")
    return {"exit": r.returncode, "seconds": round(seconds, 2), "peak_gb": round(peak / 2**20, 2) if peak else None,
            "stdout_tail": r.stdout.strip().splitlines()[-3:], "stderr_last": last}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--before", default=None, help="another checkout's src/ to run the same commands from")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    words = [w for w in json.loads((Path(args.run_dir) / "vocab.json").read_text())["itos"] if w.isalpha()]
    rng = np.random.default_rng(0)
    text = lambda n: " ".join(rng.choice(words, n))  # noqa: E731
    result = {"run": str(args.run_dir), "cases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        data, review = Path(tmp) / "reviews.csv", Path(tmp) / "review.txt"
        with open(data, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows([text(300), i % 2] for i in range(100))
            w.writerow([text(200_000), 1])
        review.write_text(text(1_000_000) + "\n")
        huge = Path(tmp) / "huge.txt"
        huge.write_text(" ".join([text(1_000_000)] * 15) + "\n")
        cases = {"evaluate: 100 reviews of 300 tokens and one of 200,000": (["evaluate", args.run_dir, "--data",
                                                                              str(data)], None),
                 "predict: one review of 1,000,000 tokens": (["predict", args.run_dir], review),
                 "predict: one review of 15,000,000 tokens": (["predict", args.run_dir], huge)}
        for name, (cmd, stdin) in cases.items():
            result["cases"][name] = {"now": child(cmd, stdin, None)}
            if args.before and stdin is not huge:
                result["cases"][name]["before"] = child(cmd, stdin, args.before)
    publish(result, args.out)


if __name__ == "__main__":
    main()
