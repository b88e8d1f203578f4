"""The vanilla RNN's training step on the notebook's shuffled batches, dense against packed, side by side.

    PYTHONPATH=src python benchmarks/packed.py --data ../shared/data/imdb --out benchmarks/results/packed.json

The `notebook` preset (the notebook's exercise) shuffles whole reviews into batches of 64, each padded
to its longest review (~4x the real tokens on IMDB). `kernels.tanh_rnn_layer` runs such a batch packed:
step t computes only the reviews still running. This script takes the first --batches batches of the
preset's first epoch (seed 0) and times one training step (forward, BCE loss, backward; the weights
fixed, as in benchmarks/kernels.py) on each, packed and dense (packing switched off), in alternating
order, one thread. Reports both sides' summed time per round (median and range over the rounds), the
median of the per-round ratios, the share of dense rows packing computes, and the largest difference
between the two sides' losses and gradients.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from common import publish
from rnnlab import kernels
from rnnlab.batching import batch_indices
from rnnlab.config import PRESETS
from rnnlab.data import load_imdb
from rnnlab.models import build_model
from rnnlab.prepare import prepare


def step(model, batch):
    """One forward and backward; returns the loss and the gradients."""
    tokens, lengths, labels = batch
    model.zero_grad()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(tokens, lengths), labels)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = PRESETS["notebook"]
    data = prepare(cfg, load_imdb(args.data))
    idx = batch_indices(data.train.lengths, cfg.batch_size, cfg.batching, cfg.seed, 1)[:args.batches]
    batches = [data.train.collate(i) for i in idx]
    torch.manual_seed(0)
    model = build_model(cfg, cfg.vocab_size).train()
    dense_rows = sum(b[0].numel() for b in batches)
    packed_rows = 0
    for tokens, lengths, _ in batches:
        p = kernels._packed(lengths, tokens.shape[1])
        packed_rows += sum(p[1]) if p else tokens.numel()
    below = kernels.PACK_BELOW
    times = {"packed": [], "dense": []}
    diff = {"loss": 0.0, "grad": 0.0}
    for r in range(args.rounds + 1):  # round 0 warms up
        for side in (("packed", "dense") if r % 2 else ("dense", "packed")):
            kernels.PACK_BELOW = below if side == "packed" else -1.0  # -1: no batch is packed
            t0 = time.perf_counter()
            results = [step(model, b) for b in batches]
            if r:
                times[side].append(time.perf_counter() - t0)
            if r == 0:
                diff[side] = results
    kernels.PACK_BELOW = below
    for (la, ga), (lb, gb) in zip(diff.pop("packed"), diff.pop("dense")):
        diff["loss"] = max(diff["loss"], abs(float(la - lb)))
        diff["grad"] = max(diff["grad"], max(float(((a - b).abs().max() / b.abs().max().clamp(min=1e-30)))
                                             for a, b in zip(ga, gb)))
    ratios = [d / p for d, p in zip(times["dense"], times["packed"])]
    publish({
        "what": f"training step (forward + backward) of the notebook preset's vanilla RNN on the first "
                f"{args.batches} shuffled batches of epoch 1 (seed 0), one thread; seconds per round",
        "dense_tokens": dense_rows, "real_tokens": int(sum(int(b[1].sum()) for b in batches)),
        "packed_rows_fraction": round(packed_rows / dense_rows, 3),
        **{side: {"median_s": round(statistics.median(t), 3), "min_s": round(min(t), 3), "max_s": round(max(t), 3)}
           for side, t in times.items()},
        "speedup_median": round(statistics.median(ratios), 2),
        "speedup_range": [round(min(ratios), 2), round(max(ratios), 2)],
        "max_abs_loss_difference": diff["loss"], "max_relative_gradient_difference": diff["grad"],
    }, args.out)


if __name__ == "__main__":
    main()
