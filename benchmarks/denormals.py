"""What flushing denormal floats to zero does to a training step, side by side, per model and thread count.

    python benchmarks/denormals.py [--models rnn lstm gru nn.RNN] [--threads 1 2] [--rounds 2] \\
        [--out benchmarks/results/denormals.json]
    python benchmarks/denormals.py --rounds 0 --train ../shared/data/imdb \
        --out benchmarks/results/denormals_training.json

A vanishing gradient passes through the denormal range (below 1.2e-38 in float32) on its way to 0;
on some CPUs (Intel's) each operation on a denormal takes a slow path. rnnlab sets
`torch.set_flush_denormal(True)` when `rnnlab.kernels` is imported (docs/PERFORMANCE.md). Here each
model's training step (B 64, T 400, random tokens, fresh initialisation: forward, BCE on the final
state, backward, Adam step) is timed in a fresh process with flushing on and off (the setting must
be made before torch starts its worker threads, which inherit it), alternating in each round; per
process the median of 3 steps after one warm-up, then the median over rounds. Models: the lab's
presets (`rnn`, `lstm`, `gru`: rnnlab's CPU kernels) and `nn.RNN`, the notebook's own layer.

With `--train DATA` (the parquet copy) it also trains each lab preset for 2 epochs on a fixed sample of
DATA (2,000 training and 500 test reviews drawn with seed 0; last 400 tokens; one thread) with flushing
on and off, and reports whether the saved weights are the same bytes, and the epoch times.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import publish


def child(model: str, flush: bool, threads: int) -> float:
    import time

    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    from rnnlab.config import preset
    from rnnlab.models import build_model

    torch.set_flush_denormal(flush)  # importing rnnlab set it; before any parallel work, so threads inherit this
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    tokens = torch.randint(2, 20000, (64, 400))
    lengths = torch.full((64,), 400)
    labels = torch.randint(0, 2, (64,)).float()
    if model == "nn.RNN":
        emb, rnn, head = nn.Embedding(20000, 100), nn.RNN(100, 128, batch_first=True), nn.Linear(128, 1)
        params = [*emb.parameters(), *rnn.parameters(), *head.parameters()]
        forward = lambda: head(rnn(emb(tokens))[0][:, -1]).squeeze(1)  # noqa: E731
    else:
        net = build_model(preset(model), 20000)
        params = list(net.parameters())
        forward = lambda: net(tokens, lengths)  # noqa: E731
    opt = torch.optim.Adam(params, lr=1e-3)
    times = []
    for _ in range(4):
        t0 = time.perf_counter()
        opt.zero_grad()
        F.binary_cross_entropy_with_logits(forward(), labels).backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def train_child(model: str, flush: bool, data: str, out: str) -> None:
    import importlib

    import torch

    from rnnlab.cli import main

    importlib.import_module("rnnlab.kernels")  # sets flushing on; the next line decides, before any parallel work
    torch.set_flush_denormal(flush)
    torch.set_num_threads(1)
    main(["train", "--preset", model, "--data", data, "--epochs", "2", "--max-len", "400", "--out", out],
         prog_name="rnnlab", standalone_mode=False)


def sample(data: str, to: Path) -> None:
    import numpy as np
    import pyarrow.parquet as pq

    for split, n in (("train", 2000), ("test", 500)):
        table = pq.read_table(Path(data) / f"{split}.parquet")
        pick = np.sort(np.random.default_rng(0).choice(table.num_rows, n, replace=False))
        pq.write_table(table.take(pick), to / f"{split}.parquet")


def same_weights(models: list[str], data: str) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sample(data, Path(tmp))
        data = tmp
        for model in models:
            row = {"model": model}
            for name, flag in (("flushed", "1"), ("denormals", "0")):
                out = Path(tmp) / f"{model}-{name}"
                r = subprocess.run([sys.executable, __file__, "--train-child", model, flag, data, str(out)],
                                   capture_output=True, text=True)
                if r.returncode:
                    sys.exit(f"{model}: {(r.stderr.strip().splitlines() or ['no output'])[-1]}")
                row[f"{name}_weights_sha256"] = hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()
                row[f"{name}_seconds_per_epoch"] = json.loads((out / "summary.json").read_text())["train_seconds_per_epoch"]
            row["same_weights"] = row["flushed_weights_sha256"] == row["denormals_weights_sha256"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["rnn", "lstm", "gru", "nn.RNN"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=None)
    ap.add_argument("--train", metavar="DATA", default=None)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--train-child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.train_child:
        model, flush, data, out = args.train_child
        train_child(model, flush == "1", data, out)
        return
    if args.child:
        model, flush, threads = args.child
        print(child(model, flush == "1", int(threads)))
        return
    result = {"step": "B 64, T 400, random tokens, fresh init; forward + BCE + backward + Adam", "rows": []}
    for threads in args.threads if args.rounds else []:  # --rounds 0: only the training check
        for model in args.models:
            times = {"flushed": [], "denormals": []}
            for _ in range(args.rounds):
                for name, flag in (("flushed", "1"), ("denormals", "0")):
                    r = subprocess.run([sys.executable, __file__, "--child", model, flag, str(threads)],
                                       capture_output=True, text=True)
                    if r.returncode:
                        sys.exit(f"{model}: {r.stderr.strip().splitlines()[-1]}")
                    times[name].append(float(r.stdout))
            row = {"model": model, "threads": threads,
                   **{f"{k}_seconds": [round(t, 4) for t in v] for k, v in times.items()},
                   **{f"{k}_seconds_median": round(statistics.median(v), 4) for k, v in times.items()}}
            row["denormals_over_flushed"] = round(row["denormals_seconds_median"] / row["flushed_seconds_median"], 2)
            result["rows"].append(row)
            print(json.dumps(row), flush=True)
    if args.train:
        result["training"] = {"data": f"{args.train}: 2,000 train / 500 test reviews, seed 0", "epochs": 2, "max_len": 400, "threads": 1,
                              "rows": same_weights([m for m in args.models if m != "nn.RNN"], args.train)}
    publish(result, args.out)


if __name__ == "__main__":
    main()
