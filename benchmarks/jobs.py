"""Throughput of the lab's jobs: N worker processes x 1 thread against 1 process x N threads.

    python benchmarks/jobs.py --data ../shared/data/imdb --out benchmarks/results/jobs.json [--seeds 0] [--repeats 3]

Runs the comparison's training jobs (every model of `rnnlab compare` at the lab's budget, the seeds
given; the timing jobs are left out: they run alone either way) from empty stores, once as
`--jobs 2 --threads 1` and once as `--jobs 1 --threads 2` per repeat (the order alternating between
repeats, so a machine that slows down or speeds up favours neither), and reports the wall time of each,
their medians and the ratio of the medians, with each repeat's own ratio for the spread. The two settings
give different numbers (a job's path depends on its thread count: summation order), so only the seconds
are compared.
"""
from __future__ import annotations

import argparse
import statistics
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
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    ds = load_imdb(args.data)
    jobs = [job for tag, job in compare.jobs("full") if tag.get("seed") in args.seeds and not job.exclusive]
    settings = [(args.cores, 1), (1, args.cores)]
    seconds = {f"--jobs {w} --threads {t}": [] for w, t in settings}
    for repeat in range(args.repeats):
        for workers, threads in settings if repeat % 2 == 0 else settings[::-1]:
            with tempfile.TemporaryDirectory() as store, Runner(workers=workers, threads=threads,
                                                                log=lambda s: None) as runner:
                t0 = time.perf_counter()
                runner.run(jobs, ds, args.data, Path(store))
                took = time.perf_counter() - t0
            name = f"--jobs {workers} --threads {threads}"
            seconds[name].append(round(took, 1))
            print(f"repeat {repeat + 1}, {name}: {took:.0f} s", flush=True)
    jobs_side_by_side, threaded = seconds.values()
    result = {"jobs": [j.label for j in jobs], "repeats": args.repeats,
              "settings": {name: statistics.median(s) for name, s in seconds.items()},  # median over the repeats
              "seconds": seconds,
              "speedup_of_jobs_over_threads": round(statistics.median(threaded)
                                                    / statistics.median(jobs_side_by_side), 3),
              "speedup_per_repeat": [round(b / a, 3) for a, b in zip(jobs_side_by_side, threaded)]}
    publish(result, args.out)


if __name__ == "__main__":
    main()
