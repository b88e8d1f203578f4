"""Throughput of the lab's jobs: N worker processes x 1 thread against 1 process x N threads.

    python benchmarks/jobs.py --data ../shared/data/imdb --out benchmarks/results/jobs.json [--seeds 0]

Runs the comparison's training jobs (every model of `rnnlab compare` at the lab's budget, the seeds
given; the timing jobs are left out: they run alone either way) twice from empty stores, once as
`--jobs 2 --threads 1` and once as `--jobs 1 --threads 2`, and reports the wall time of each and
their ratio. The two settings give different numbers (a job's path depends on its thread count:
summation order), so only the seconds are compared.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import publish
from rnnlab.data import load_imdb
from rnnlab.experiments import compare
from rnnlab.jobs import Runner


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    ds = load_imdb(args.data)
    jobs = [job for tag, job in compare.jobs("full") if tag.get("seed") in args.seeds and not job.exclusive]
    result = {"jobs": [j.label for j in jobs], "settings": {}}
    for workers, threads in ((args.cores, 1), (1, args.cores)):
        with tempfile.TemporaryDirectory() as store, Runner(workers=workers, threads=threads, log=lambda s: None) as runner:
            t0 = time.perf_counter()
            runner.run(jobs, ds, args.data, Path(store))
            seconds = time.perf_counter() - t0
        name = f"--jobs {workers} --threads {threads}"
        result["settings"][name] = round(seconds, 1)
        print(f"{name}: {seconds:.0f} s", flush=True)
    a, b = result["settings"].values()
    result["speedup_of_jobs_over_threads"] = round(b / a, 3)
    publish(result, args.out)


if __name__ == "__main__":
    main()
