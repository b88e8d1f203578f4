"""How long `rnnlab explain` takes to render one real 1,000-token review to HTML, per model, on CPU.

    python benchmarks/explain.py RUN_DIR [RUN_DIR ...] --data ../shared/data/imdb \\
        --out benchmarks/results/explain.json [--before OTHER_CHECKOUT/src]

The review: the first test review with at least 1,000 tokens, cut to its first 1,000 words. Per run:
the library call (`explain_runs` + `write_html`, model loaded once, Integrated Gradients included),
median of --repeats after a warm-up, and the command end to end (`rnnlab explain RUN --text ... --html`,
process start-up and model loading included), median of --repeats. With --before, the same command
from another checkout's source (e.g. `git worktree add /tmp/old COMMIT`, then `--before /tmp/old/src`)
runs in the same rounds, alternating with this one, and the ratio of the medians is reported.
The floor of any command on the machine, `python -c "import torch"`, is timed as often, for scale.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import publish
from rnnlab.data import load_imdb
from rnnlab.explain import explain_runs, load_run
from rnnlab.explain_views import write_html
from rnnlab.text import tokenize


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--data", required=True)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None)
    ap.add_argument("--before", default=None, help="another checkout's src/ to time the command from, alternately")
    args = ap.parse_args()
    ds = load_imdb(args.data)
    index = next(i for i, t in enumerate(ds.test.texts) if len(tokenize(t)) >= 1000)
    text = " ".join(tokenize(ds.test.texts[index])[:1000])
    result = {"review": f"test review {index}, first 1,000 tokens", "tokens": 1000, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "review.html"
        for path in args.runs:
            run = load_run(path)
            timings = []
            for k in range(args.repeats + 1):  # the first is a warm-up
                t0 = time.perf_counter()
                write_html(explain_runs([run], text), page)
                timings.append(time.perf_counter() - t0)
            sources = {"cli": None, **({"cli_before": args.before} if args.before else {})}
            cli = {name: [] for name in sources}
            for _ in range(args.repeats):
                for name, src in sources.items():
                    env = {**os.environ, **({"PYTHONPATH": src} if src else {})}
                    t0 = time.perf_counter()
                    r = subprocess.run([sys.executable, "-m", "rnnlab", "explain", path, "--text", text, "--html",
                                        str(page)], capture_output=True, text=True, env=env)
                    cli[name].append(time.perf_counter() - t0)
                    if r.returncode:
                        sys.exit(f"{path}: {r.stderr.strip().splitlines()[-1]}")
            row = {"run": path, "max_len": run.cfg.max_len,
                   "library_seconds_median": round(statistics.median(timings[1:]), 3),
                   "library_seconds": [round(t, 3) for t in timings[1:]]}
            for name, times in cli.items():
                row[f"{name}_seconds_median"] = round(statistics.median(times), 3)
                row[f"{name}_seconds"] = [round(t, 3) for t in times]
            if args.before:
                row["before"] = args.before
                row["cli_before_over_cli"] = round(row["cli_before_seconds_median"] / row["cli_seconds_median"], 2)
            result["runs"][run.cfg.model] = row
            print(run.cfg.model, result["runs"][run.cfg.model], flush=True)
    floor = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch"], check=True)
        floor.append(time.perf_counter() - t0)
    result["import_torch_seconds_median"] = round(statistics.median(floor), 3)
    result["import_torch_seconds"] = [round(t, 3) for t in floor]
    print("import torch", result["import_torch_seconds"], flush=True)
    publish(result, args.out)


if __name__ == "__main__":
    main()
