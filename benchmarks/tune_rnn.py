"""Search for the `tuned` preset: vanilla tanh RNN, final hidden state, by validation accuracy.

    python benchmarks/tune_rnn.py --data ../shared/data/imdb --out benchmarks/results/tune.csv

Each candidate changes the seed preset in a few fields; every run trains on the 90% train
part and is scored on the 10% validation split carved from train (the test split is not
read for selection). Prints one line per run and writes a CSV (one row per candidate).
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import tempfile
import time
from pathlib import Path

from rnnlab.config import TrainConfig, with_overrides
from rnnlab.data import load_imdb
from rnnlab.runs import Run
from rnnlab.train import prepare, train

BASE = dict(val_fraction=0.1, test_every_epoch=False, epochs=6)
CANDIDATES = {  # the candidates actually run, in order (results: benchmarks/results/tune.csv)
    "seed+val": {},
    "clip1 html tail400": {"clip": 1.0, "strip_html": True, "max_len": 400, "truncate": "tail"},
    "clip1 html tail200": {"clip": 1.0, "strip_html": True, "max_len": 200, "truncate": "tail"},
    "clip1 html head400": {"clip": 1.0, "strip_html": True, "max_len": 400, "truncate": "head"},
    "clip1 html tail400 drop0.3": {"clip": 1.0, "strip_html": True, "max_len": 400, "truncate": "tail", "dropout": 0.3},
    "clip1 html tail400 lr5e-4 e8": {"clip": 1.0, "strip_html": True, "max_len": 400, "truncate": "tail", "lr": 5e-4, "epochs": 8},
    "clip1 html tail400 h256": {"clip": 1.0, "strip_html": True, "max_len": 400, "truncate": "tail", "hidden_dim": 256},
    "clip1 html tail200 orth e10": {"clip": 1.0, "strip_html": True, "max_len": 200, "truncate": "tail",
                                    "recurrent_init": "orthogonal", "epochs": 10},
    "clip1 html tail400 orth drop0.3 e10": {"clip": 1.0, "strip_html": True, "max_len": 400, "truncate": "tail",
                                            "recurrent_init": "orthogonal", "dropout": 0.3, "epochs": 10},
    "clip1 html tail200 drop0.3 lr2e-3 e10": {"clip": 1.0, "strip_html": True, "max_len": 200, "truncate": "tail",
                                              "dropout": 0.3, "lr": 2e-3, "epochs": 10},
    "small e32 h32 v10k tail500 orth e10": {"clip": 1.0, "strip_html": True, "max_len": 500, "truncate": "tail",
                                            "recurrent_init": "orthogonal", "embed_dim": 32, "hidden_dim": 32,
                                            "vocab_size": 10000, "epochs": 10},
    "tail400 orth drop0.5 e16": {"clip": 1.0, "strip_html": True, "max_len": 400, "truncate": "tail",
                                 "recurrent_init": "orthogonal", "dropout": 0.5, "epochs": 16},
    "tail400 orth drop0.5 cos e16": {"clip": 1.0, "strip_html": True, "max_len": 400, "truncate": "tail",
                                     "recurrent_init": "orthogonal", "dropout": 0.5, "lr_schedule": "cosine",
                                     "epochs": 16},
    # the tuned preset is "tail400 orth drop0.5 e16", measured over 3 seeds by
    # benchmarks/seeds.py --preset tuned (benchmarks/results/tuned_seeds.json)
}

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", default="benchmarks/results/tune.csv")
    ap.add_argument("--only", nargs="*", help="candidate names to run (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    ds = load_imdb(args.data)
    rows = []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for name, over in CANDIDATES.items():
        if args.only and name not in args.only:
            continue
        cfg = with_overrides(TrainConfig(), {**BASE, "seed": args.seed, **over})
        data = prepare(cfg, ds)
        tmp = Path(tempfile.mkdtemp(prefix="rnnlab-tune-"))
        t0 = time.time()
        try:
            train(cfg, data, Run.create(tmp / "run", cfg, data.vocab, data.source), log=lambda s: None)
            metrics = Run(tmp / "run").metrics()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        best = max(metrics, key=lambda r: r["val_acc"])
        row = {"candidate": name, "overrides": json.dumps(over), "seed": args.seed,
               "best_val_acc": round(best["val_acc"], 4), "best_epoch": best["epoch"],
               "val_acc_by_epoch": " ".join(f"{r['val_acc']:.3f}" for r in metrics),
               "sec_per_epoch": round(sum(r["train_seconds"] for r in metrics) / len(metrics), 1),
               "wall_s": round(time.time() - t0)}
        print(json.dumps(row), flush=True)
        rows.append(row)
        with open(out, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)


if __name__ == "__main__":
    main()
