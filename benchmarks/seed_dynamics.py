"""Does batching by length change what a learner of the notebook sees? Per-epoch test accuracy over seeds.

    python benchmarks/seed_dynamics.py --data ../shared/data/imdb --seeds 0 1 2 --jobs 2 \\
        --out benchmarks/results/seed_dynamics.json [--pipelines seed notebook]

Three pipelines, 5 epochs each, test accuracy after every epoch, on the same seeds:
  seed      `rnnlab train --preset seed`: the notebook's recipe with length-bucketed batches (fast)
  notebook  `rnnlab train --preset notebook`: the same with shuffled batches, as the notebook's DataLoader
  baseline  ../shared/bench/seed_baseline.py: the notebook's own code as a script
Each run uses one torch thread (`--jobs` runs side by side). Reports the per-epoch mean and sd over seeds
and, at epochs 1 and 5, the differences seed - notebook and baseline - notebook (paired by seed) with their
95% t intervals. A run whose output exists
under --keep is read, not rerun (only if made on the same --data); it names the machine it ran on, and the summary names each pipeline's
(`machine` at the top is where the summary was written).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from common import machine, publish
from rnnlab.experiments.stats import t_interval

BASELINE = Path(__file__).resolve().parents[2] / "shared" / "bench" / "seed_baseline.py"


PIPELINES = ("baseline", "notebook", "seed")  # the longest first


def run(pipeline: str, seed: int, args) -> dict:
    """Test accuracy after each of 5 epochs, and the machine that trained them."""
    out = Path(args.keep) / f"{pipeline}-seed{seed}"
    done = out.with_suffix(".json")
    data = str(Path(args.data).resolve())
    if done.exists():
        kept = json.loads(done.read_text())
        if kept.get("data") != data:  # a trial run on other data must not stand in for this one
            sys.exit(f"{done}: made on {kept.get('data', 'unrecorded data')}, not {data}: remove it or give another --keep")
        return kept
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if pipeline == "baseline":
        r = subprocess.run([sys.executable, str(BASELINE), args.data, "5", str(seed)], capture_output=True, text=True,
                           env=env)
        accs = [json.loads(line)["test_acc"] for line in r.stdout.splitlines() if line.startswith('{"epoch"')]
    else:
        r = subprocess.run([sys.executable, "-m", "rnnlab", "train", "--preset", pipeline, "--seed", str(seed),
                            "--data", args.data, "--out", str(out)], capture_output=True, text=True, env=env)
        accs = [json.loads(line)["test_acc"] for line in (out / "metrics.jsonl").read_text().splitlines()] \
            if r.returncode == 0 else []
    if r.returncode or len(accs) != 5:
        sys.exit(f"{pipeline} seed {seed} failed: {(r.stderr.strip().splitlines() or ['no output'])[-1]}")
    kept = {"test_acc": accs, "machine": machine(), "data": data}
    done.write_text(json.dumps(kept))
    print(f"{pipeline} seed {seed}: {accs}", flush=True)
    return kept


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--keep", default="benchmarks/runs/seed_dynamics")
    ap.add_argument("--out", default=None)
    ap.add_argument("--pipelines", nargs="+", choices=PIPELINES, default=list(PIPELINES))
    args = ap.parse_args()
    Path(args.keep).mkdir(parents=True, exist_ok=True)
    pipelines = [p for p in PIPELINES if p in args.pipelines]
    tasks = [(p, s) for s in args.seeds for p in pipelines]  # the longest first
    with ThreadPoolExecutor(args.jobs) as pool:
        kept = dict(zip(tasks, pool.map(lambda t: run(*t, args), tasks)))
    accs = {t: k["test_acc"] for t, k in kept.items()}
    result = {"seeds": args.seeds, "threads_per_run": 1, "epochs": 5, "by_pipeline": {}}
    for p in reversed(pipelines):
        a = np.array([accs[(p, s)] for s in args.seeds])
        result["by_pipeline"][p] = {"test_acc_by_seed": a.tolist(), "mean_by_epoch": a.mean(0).round(4).tolist(),
                                    "sd_by_epoch": a.std(0, ddof=1).round(4).tolist() if len(a) > 1 else None,
                                    "ran_on": sorted({kept[(p, s)]["machine"] for s in args.seeds})}
    for a, b in (("seed", "notebook"), ("baseline", "notebook")):
        for epoch in (1, 5) if {a, b} <= set(pipelines) else ():
            d = [accs[(a, s)][epoch - 1] - accs[(b, s)][epoch - 1] for s in args.seeds]
            m, lo, hi = t_interval(d)
            result.setdefault(f"{a}_minus_{b}", {})[f"epoch {epoch}"] = {"per_seed": d, "mean": m, "ci95": [lo, hi]}
    publish(result, args.out)


if __name__ == "__main__":
    main()
