"""Why did the vanilla RNN at hidden 512 train unstably? The same training at 128 and 512, traced step by step.

    python benchmarks/wide_rnn.py --data ../shared/data/imdb --hidden 512 128 --seeds 0 1 2 --jobs 2 \\
        --out benchmarks/results/wide_rnn.json

The setting of the lab that reported hidden 512 at 0.577 +- 0.113 over 2 seeds (commit 80c3731): the lab's
`rnn` preset (Adam 1e-3, gradient clipping at 1.0, embedding 100, batch 64, length buckets) reading each
review's last 200 tokens for 2 epochs, on the full training split (10% held out for validation), one torch
thread per run. During training (rnnlab.train's on_step hook, the vanishing-gradients Trace): each step's
loss, unclipped gradient norm and the norm of the applied W_hh update, and every 10 steps W_hh's spectral
radius. After each epoch: validation accuracy; at the end: test accuracy of the selected epoch.
"""
from __future__ import annotations

import argparse
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from common import publish

EVERY = 10  # steps between the trace points kept in the output


def one(hidden: int, seed: int, args) -> dict:
    import torch

    torch.set_num_threads(1)
    from rnnlab.config import RNN, with_overrides
    from rnnlab.data import load_imdb
    from rnnlab.experiments.vanishing_gradients import Trace, spectral_radius
    from rnnlab.prepare import prepare
    from rnnlab.train import train

    cfg = with_overrides(RNN, {"hidden_dim": hidden, "seed": seed, "max_len": args.max_len, "epochs": args.epochs,
                               "device": "cpu"})
    data = prepare(cfg, load_imdb(args.data))
    trace = Trace()
    trained = train(cfg, data, log=lambda s: None, progress=False, on_step=trace)
    series = {m: [r["value"] for r in trace.rows if r["metric"] == m]
              for m in ("loss", "grad_norm_unclipped", "whh_update_norm", "spectral_radius")}
    steps_per_epoch = len(series["loss"]) // args.epochs

    def every(v, k=EVERY):  # the mean over each k steps
        v = np.asarray(v, dtype=np.float64)
        return np.round(v[: len(v) // k * k].reshape(-1, k).mean(1), 5).tolist()

    row = {"hidden": hidden, "seed": seed, "test_acc": trained.summary["test_acc"],
           "val_acc_by_epoch": [m.get("val_acc") for m in trained.metrics], "best_epoch": trained.summary["best_epoch"],
           "steps_per_epoch": steps_per_epoch,
           "spectral_radius_every_10_steps_from_step_1": [round(v, 4) for v in series["spectral_radius"]],
           "spectral_radius_final": round(spectral_radius(trained.model.rnn.weight_hh_l0.detach()), 4),
           "loss_mean_per_10_steps": every(series["loss"]),
           "grad_norm_mean_per_10_steps": every(series["grad_norm_unclipped"]),
           "whh_update_norm_mean_per_10_steps": every(series["whh_update_norm"]),
           "clipped_steps_fraction": round(float(np.mean(np.asarray(series["grad_norm_unclipped"]) > cfg.clip)), 4),
           "grad_norm_median": round(float(np.median(series["grad_norm_unclipped"])), 4),
           "train_loss_last_50_steps": round(float(np.mean(series["loss"][-50:])), 4)}
    print(f"hidden {hidden} seed {seed}: test {row['test_acc']}, val {row['val_acc_by_epoch']}, "
          f"radius {row['spectral_radius_final']}", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--hidden", type=int, nargs="+", default=[512, 128])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--max-len", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"
    tasks = [(h, s) for h in args.hidden for s in args.seeds]  # the widest first: the longest
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(one, *zip(*tasks), [args] * len(tasks)))
    summary = {}
    for h in args.hidden:
        mine = [r for r in rows if r["hidden"] == h]
        accs = [r["test_acc"] for r in mine]
        summary[str(h)] = {"test_acc": accs, "test_acc_mean": round(float(np.mean(accs)), 4),
                           "test_acc_sd": round(float(np.std(accs, ddof=1)), 4) if len(accs) > 1 else None,
                           "spectral_radius_final": [r["spectral_radius_final"] for r in mine],
                           "clipped_steps_fraction": [r["clipped_steps_fraction"] for r in mine]}
    publish({"setting": {"preset": "rnn", "max_len": args.max_len, "epochs": args.epochs, "threads_per_run": 1,
                         "trace_every": EVERY}, "summary": summary, "runs": rows}, args.out)


if __name__ == "__main__":
    main()
