"""Train one preset over several seeds and report test accuracy: median, mean, spread.

The interval is Student's t 95% interval of the mean over seeds (`test_acc_mean_t95`).

    python benchmarks/seeds.py --preset tuned --seeds 0 1 2 --data ../shared/data/imdb \\
        --out benchmarks/results/tuned_seeds.json [--jobs 3 --threads 1] [-- --val-checks 8]

Each seed is a full `rnnlab train` run (model selection on its own validation split where the
preset has one; test accuracy measured once, for the selected epoch). `--jobs` runs seeds side by
side, each with `--threads` torch threads (a run's path depends on its thread count: summation
order). With `--keep DIR`, a seed whose run directory already exists there is resumed (a finished
run is only re-scored), so an interrupted benchmark continues where it stopped.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rnnlab.experiments.stats import t_interval
from rnnlab.runs import environment


def run_seed(seed: int, out: Path, args, extra: list[str]) -> dict:
    cli = [sys.executable, "-m", "rnnlab.cli", "train", "--data", args.data]
    fresh = [*cli, "--preset", args.preset, "--seed", str(seed), "--out", str(out), *extra]
    if (out / "config.json").exists():  # a kept run: resumed only if it is the run asked for
        asked = subprocess.run([*fresh, "--show-config"], capture_output=True, text=True)
        if asked.returncode:
            sys.exit(f"seed {seed}: rnnlab train refused the flags: {asked.stderr.strip().splitlines()[-1:]}")
        want, kept = json.loads(asked.stdout), json.loads((out / "config.json").read_text())
        differ = sorted(k for k in want if k != "device" and want[k] != kept.get(k))
        if differ:
            sys.exit(f"seed {seed}: {out} holds a run with other settings ({', '.join(differ)}): remove it or give "
                     "another --keep")
        cmd = [*cli, "--resume", str(out)]
    else:
        cmd = fresh
    env = {**os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {})}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode:
        sys.exit(f"seed {seed}: rnnlab train failed: {r.stderr.strip().splitlines()[-1:]}")
    s = json.loads(r.stdout.strip().splitlines()[-1])
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    row = {"seed": seed, "test_acc": s["test_acc"], "val_acc": s["val_acc"], "best_epoch": s["best_epoch"],
           **({"best_step": s["best_step"]} if "best_step" in s else {}),
           "test_acc_by_epoch": [m.get("test_acc") for m in metrics],
           "val_acc_by_epoch": [m.get("val_acc") for m in metrics],
           "train_seconds_per_epoch": s["train_seconds_per_epoch"]}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", default=None)
    ap.add_argument("--keep", default=None, help="keep the run directories under this folder")
    ap.add_argument("--jobs", type=int, default=1, help="seeds trained at once")
    ap.add_argument("--threads", type=int, default=None, help="torch threads per run (default: torch's choice)")
    ap.add_argument("flags", nargs=argparse.REMAINDER, help="extra rnnlab train flags after --")
    args = ap.parse_args()
    extra = [f for f in args.flags if f != "--"]
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(args.keep or tmp)
        with ThreadPoolExecutor(args.jobs) as pool:
            runs = list(pool.map(lambda s: run_seed(s, base / f"{args.preset}-seed{s}", args, extra), args.seeds))
    accs = [r["test_acc"] for r in runs]
    mean, low, high = t_interval(accs)
    env = environment()
    result = {"preset": args.preset, "extra_flags": extra, "seeds": args.seeds, "jobs": args.jobs,
              "threads_per_run": args.threads, "runs": runs,
              "test_acc_median": statistics.median(accs), "test_acc_mean": round(statistics.mean(accs), 4),
              "test_acc_min": min(accs), "test_acc_max": max(accs),
              "test_acc_std": round(statistics.stdev(accs), 4) if len(accs) > 1 else 0.0,
              "test_acc_mean_t95": [round(low, 4), round(high, 4)] if len(accs) > 1 else None,
              "machine": f"{env['processor']}, {env['cpu_count']} cores, torch {env['torch']}"}
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
