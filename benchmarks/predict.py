"""Prediction throughput of a saved run on CPU: reviews per second.

    python benchmarks/predict.py RUN_DIR --data ../shared/data/imdb

Times `predict_texts` (tokenise + encode + batched forward) on every test review, median of
3 repeats after a warm-up, and the CLI end to end (`rnnlab predict RUN_DIR` reading all test
reviews on stdin, process start-up included).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch

from rnnlab.data import load_imdb
from rnnlab.scoring import predict_texts
from rnnlab.runs import RunDir, environment


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--data", required=True)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    texts = [t.replace("\n", " ") for t in load_imdb(args.data).test.texts]
    cfg, vocab, model = RunDir(args.run_dir).load_model("cpu")
    predict_texts(cfg, vocab, model, texts[:500])  # warm-up
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        predict_texts(cfg, vocab, model, texts)
        times.append(time.perf_counter() - t)
    lib = len(texts) / statistics.median(times)
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "rnnlab.cli", "predict", args.run_dir], input="\n".join(texts),
                         capture_output=True, text=True, check=True).stdout
    cli_s = time.perf_counter() - t
    assert len(out.splitlines()) == len(texts)
    env = environment()
    print(json.dumps({"reviews": len(texts), "library_reviews_per_s": round(lib),
                      "cli_reviews_per_s_incl_startup": round(len(texts) / cli_s),
                      "model": cfg.model, "max_len": cfg.max_len, "threads": torch.get_num_threads(),
                      "machine": f"{env['processor']}, {env['cpu_count']} cores"}, indent=2))


if __name__ == "__main__":
    main()
