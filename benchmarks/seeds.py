"""Train one preset over several seeds and report test accuracy: median, mean, spread.

    python benchmarks/seeds.py --preset tuned --seeds 0 1 2 --data ../shared/data/imdb \\
        --out benchmarks/results/tuned_seeds.json

Each seed is a full `rnnlab train` run (model selection on its own validation split where the
preset has one; test accuracy measured once, for the selected epoch).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from rnnlab.runs import environment


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", default=None)
    ap.add_argument("--keep", default=None, help="keep the run directories under this folder")
    ap.add_argument("flags", nargs=argparse.REMAINDER, help="extra rnnlab train flags after --")
    args = ap.parse_args()
    extra = [f for f in args.flags if f != "--"]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(args.keep or tmp)
        for seed in args.seeds:
            out = base / f"{args.preset}-seed{seed}"
            r = subprocess.run([sys.executable, "-m", "rnnlab.cli", "train", "--preset", args.preset, "--data",
                                args.data, "--seed", str(seed), "--out", str(out), *extra],
                               capture_output=True, text=True, check=True)
            s = json.loads(r.stdout.strip().splitlines()[-1])
            metrics = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
            row = {"seed": seed, "test_acc": s["test_acc"], "val_acc": s["val_acc"], "best_epoch": s["best_epoch"],
                   "test_acc_by_epoch": [m.get("test_acc") for m in metrics],
                   "val_acc_by_epoch": [m.get("val_acc") for m in metrics],
                   "train_seconds_per_epoch": s["train_seconds_per_epoch"]}
            print(json.dumps(row), flush=True)
            runs.append(row)
    accs = [r["test_acc"] for r in runs]
    env = environment()
    result = {"preset": args.preset, "extra_flags": extra, "seeds": args.seeds, "runs": runs,
              "test_acc_median": statistics.median(accs), "test_acc_mean": round(statistics.mean(accs), 4),
              "test_acc_min": min(accs), "test_acc_max": max(accs),
              "test_acc_std": round(statistics.stdev(accs), 4) if len(accs) > 1 else 0.0,
              "machine": f"{env['processor']}, {env['cpu_count']} cores, torch {env['torch']}"}
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
