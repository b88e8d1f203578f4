"""How much of the kernels' lead over nn.LSTM / nn.GRU / nn.RNN is the memory allocator, and what it does to training.

    PYTHONPATH=src python benchmarks/allocator.py --data ../shared/data/imdb [--rounds 3] [--train-reviews 6000]
        [--out benchmarks/results/allocator.json]

glibc's malloc serves a block above its mmap threshold (128 KB, rising to at most 32 MB as such blocks
are freed) with a fresh mapping and unmaps it when it is freed, and it gives the top of its heap back
to the system past a trim threshold: every 4 KB page of that memory costs a page fault at its first
touch, every time. rnnlab's kernels take their large buffers from a pool of their own; PyTorch's
modules allocate theirs per step. Two settings, as environment variables of a fresh process:

- "glibc": glibc's defaults, what rnnlab and PyTorch run with;
- "keep": GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=4294967295,
  every block from the heap and freed memory kept for the next allocation (jemalloc and tcmalloc keep
  freed memory by design; neither is measured here).

Kernels: per round, benchmarks/kernels.py (one thread, --no-floor, the tokens of real reviews) in a fresh
process under each setting, the order alternating; per setting, each variant's median ms and minor page
faults a step and each paired speed-up, as medians over rounds (kernels.py's own medians of 7 steps).

Training (skip with --train-reviews 0): `rnnlab train --preset P --epochs 1` for the notebook, lstm, gru
and transformer presets on N training reviews (a seeded sample of train.parquet; --data must be a parquet
folder) and 1,000 test reviews, and "lstm via nn.LSTM": the lstm preset with `models.run_recurrent`
patched to call the nn.LSTM module itself, as rnnlab does on a GPU. The two settings side by side, one per
core, one thread each, the cores swapped each round; per setting and preset the epoch time (the run's
train_seconds_per_epoch) and the process's peak resident memory. Then, under each setting, the lstm preset
through the kernel and through nn.LSTM side by side the same way: the module's epoch time over the kernel's,
per round and its median.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import publish

KEEP = "glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=4294967295"
SETTINGS = {"glibc": None, "keep": KEEP}
PRESETS = ("notebook", "lstm", "lstm via nn.LSTM", "gru", "transformer")
MODULE_LSTM = """import runpy, sys
import rnnlab.models as m
kernels = m.run_recurrent
m.run_recurrent = lambda mod, x, index=None: (mod(x if index is None else x[index])[0] if isinstance(mod, m.nn.LSTM)
                                              else kernels(mod, x, index))
sys.argv[0] = "rnnlab"
runpy.run_module("rnnlab", run_name="__main__")
"""
HERE = Path(__file__).resolve().parent


def env_for(setting: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    if SETTINGS[setting]:
        env["GLIBC_TUNABLES"] = SETTINGS[setting]
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{HERE.parent / 'src'}{os.pathsep}{HERE}"}


def kernels_round(setting: str, data: str, tmp: Path) -> dict:
    out = tmp / f"kernels_{setting}.json"
    r = subprocess.run([sys.executable, str(HERE / "kernels.py"), "--threads", "1", "--no-floor", "--repeats", "7",
                        "--data", data, "--out", str(out)], env=env_for(setting), capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"kernels.py ({setting}) exited {r.returncode}: {(r.stderr.strip().splitlines() or [''])[-1]}")
    return json.loads(out.read_text())["runs"][0]


def start_training(setting: str, preset: str, core: int, data: Path, out: Path) -> subprocess.Popen:
    command = ["-c", MODULE_LSTM] if preset == "lstm via nn.LSTM" else ["-m", "rnnlab"]
    return subprocess.Popen([sys.executable, *command, "train", "--preset", preset.split()[0], "--epochs", "1",
                             "--data", str(data), "--out", str(out)], env=env_for(setting),
                            stdout=subprocess.PIPE, stderr=out.with_name(out.name + ".log").open("w"), text=True,
                            preexec_fn=lambda: os.sched_setaffinity(0, {core}))


def finish(proc: subprocess.Popen) -> dict:
    """The run's epoch time and the process's peak resident memory (wait4's ru_maxrss, KB on Linux)."""
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        log = Path(proc.args[proc.args.index("--out") + 1] + ".log").read_text().strip().splitlines() or [""]
        raise SystemExit(f"rnnlab train exited {proc.returncode}: {log[-1]}")
    summary = json.loads(stdout.strip().splitlines()[-1])
    return {"seconds_per_epoch": summary["train_seconds_per_epoch"], "peak_rss_mb": round(usage.ru_maxrss / 1024)}


def subset(data: str, n: int, tmp: Path) -> Path:
    import pandas as pd

    folder = tmp / "subset"
    folder.mkdir()
    pd.read_parquet(Path(data) / "train.parquet").sample(n, random_state=0).to_parquet(folder / "train.parquet")
    pd.read_parquet(Path(data) / "test.parquet").sample(1000, random_state=0).to_parquet(folder / "test.parquet")
    return folder


def median_of(rounds: list[dict], path) -> float:
    return statistics.median(path(r) for r in rounds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--train-reviews", type=int, default=6000)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    result = {"settings": SETTINGS, "rounds": args.rounds, "kernels": {}, "training": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runs = {s: [] for s in SETTINGS}
        for r in range(args.rounds):
            for s in (list(SETTINGS) if r % 2 == 0 else list(SETTINGS)[::-1]):
                runs[s].append(kernels_round(s, args.data, tmp))
                print(f"kernels round {r + 1}, {s}", file=sys.stderr, flush=True)
        for s, rounds in runs.items():
            variants = rounds[0]["variants"]
            result["kernels"][s] = {
                "median_ms": {v: median_of(rounds, lambda x: x["variants"][v]["median_ms"]) for v in variants},
                "minor_page_faults": {v: median_of(rounds, lambda x: x["variants"][v]["minor_page_faults_median"])
                                      for v in variants},
                "speedups": {k: median_of(rounds, lambda x: x["speedups"][k]["median"]) for k in rounds[0]["speedups"]},
                "per_round": rounds}
        if args.train_reviews:
            data = subset(args.data, args.train_reviews, tmp)
            times = {s: {p: [] for p in PRESETS} for s in SETTINGS}
            for r in range(args.rounds):
                for p in PRESETS:
                    procs = {s: start_training(s, p, (k + r) % 2, data, tmp / f"{s}-{PRESETS.index(p)}-{r}")
                             for k, s in enumerate(SETTINGS)}
                    try:
                        for s, proc in procs.items():
                            times[s][p].append(finish(proc))
                    finally:  # one failed: its partner is not left running
                        for proc in procs.values():
                            if proc.poll() is None:
                                proc.kill()
                    print(f"training round {r + 1}, {p}", file=sys.stderr, flush=True)
            result["training"] = {"train_reviews": args.train_reviews, "per_setting": {
                s: {p: {"seconds_per_epoch_median": statistics.median(x["seconds_per_epoch"] for x in rs),
                        "peak_rss_mb_median": statistics.median(x["peak_rss_mb"] for x in rs), "rounds": rs}
                    for p, rs in per.items()} for s, per in times.items()}}
            result["training"]["lstm_kernel_vs_module"] = kernel_vs_module(data, tmp, args.rounds)
    publish(result, args.out)


def kernel_vs_module(data: Path, tmp: Path, rounds: int) -> dict:
    """The lstm preset through rnnlab's kernel and through nn.LSTM side by side, one core each, under each setting:
    per round the module's epoch time over the kernel's (above 1: the kernel is faster)."""
    out = {}
    for s in SETTINGS:
        ratios, pairs = [], []
        for r in range(rounds):
            procs = {p: start_training(s, p, (k + r) % 2, data, tmp / f"pair-{s}-{k}-{r}")
                     for k, p in enumerate(("lstm", "lstm via nn.LSTM"))}
            try:
                got = {p: finish(proc)["seconds_per_epoch"] for p, proc in procs.items()}
            finally:
                for proc in procs.values():
                    if proc.poll() is None:
                        proc.kill()
            pairs.append(got)
            ratios.append(got["lstm via nn.LSTM"] / got["lstm"])
            print(f"kernel against module, {s}, round {r + 1}", file=sys.stderr, flush=True)
        out[s] = {"module_over_kernel": ratios, "median": statistics.median(ratios), "rounds": pairs}
    return out


if __name__ == "__main__":
    main()
