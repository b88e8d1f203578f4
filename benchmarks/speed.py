"""Seed-preset speed and accuracy, side by side with the notebook's pipeline, in one run.

    python benchmarks/speed.py --data ../shared/data/imdb --epochs 5 [--out benchmarks/results/speed.json]

Runs `rnnlab train --preset seed` and ../shared/bench/seed_baseline.py (the notebook as a script)
for the same number of epochs on the same machine, one after the other, and prints:
per-epoch training seconds (median over epochs, first epoch included and also shown apart),
tokens/s, the speed-up ratio, test accuracy after the last epoch for both, the achieved
FLOP/s as a fraction of this machine's measured matmul throughput, and a dense-vs-packed
micro-benchmark on real length buckets, and the peak memory (RSS) of the rnnlab training run. Timings are medians; the hardware is printed with them.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from common import sgemm_gflops

HERE = Path(__file__).resolve().parent
BASELINE = HERE.parents[1] / "shared" / "bench" / "seed_baseline.py"


def rnn_train_flops_per_token(E: int = 100, H: int = 128) -> int:
    """Forward 2(EH + H^2) per token (input projection + recurrence), backward about twice that."""
    return 3 * 2 * (E * H + H * H)


def run_baseline(data: str, epochs: int, seed: int) -> list[dict]:
    out = subprocess.run([sys.executable, str(BASELINE), data, str(epochs), str(seed)],
                         capture_output=True, text=True, check=True).stdout
    return [r for r in map(json.loads, out.splitlines()) if "epoch" in r]


def run_rnnlab(data: str, epochs: int, seed: int) -> tuple[list[dict], dict]:
    with tempfile.TemporaryDirectory() as d:
        out = subprocess.run([sys.executable, "-m", "rnnlab.cli", "train", "--preset", "seed", "--data", data,
                              "--epochs", str(epochs), "--seed", str(seed), "--out", f"{d}/run"],
                             capture_output=True, text=True, check=True).stdout
        metrics = [json.loads(l) for l in Path(f"{d}/run/metrics.jsonl").read_text().splitlines()]
    return metrics, json.loads(out.splitlines()[-1])


def dense_vs_packed(data: str, n_batches: int = 40) -> dict:
    """ms per training step on real bucketed batches: dense (rnnlab) vs packed nn.RNN (the seed)."""
    import torch.nn.functional as F

    from rnnlab.batching import batch_indices
    from rnnlab.config import preset
    from rnnlab.data import load_imdb
    from rnnlab.models import build_model
    from rnnlab.prepare import prepare

    cfg = preset("seed")
    prep = prepare(cfg, load_imdb(data))
    batches = batch_indices(prep.train.lengths, 64, "bucket", 0, 1)[:n_batches]
    torch.manual_seed(0)
    model = build_model(cfg, 20000)

    def packed_forward(tokens, lengths):
        x = model.embedding(tokens)
        p = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        return model.fc(model.rnn(p)[1].squeeze(0)).squeeze(-1)

    res = {}
    for name, fwd in (("dense_ms_per_step", model), ("packed_ms_per_step", packed_forward)):
        times = []
        for idx in batches:
            tokens, lengths, y = prep.train.collate(idx)
            t = time.perf_counter()
            F.binary_cross_entropy_with_logits(fwd(tokens, lengths), y).backward()
            times.append(time.perf_counter() - t)
        res[name] = round(1000 * statistics.median(times[3:]), 2)
    res["packed_over_dense"] = round(res["packed_ms_per_step"] / res["dense_ms_per_step"], 2)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="also write the JSON result here")
    args = ap.parse_args()
    from rnnlab.runs import environment

    env = environment()
    print(json.dumps({"machine": env}), flush=True)
    gemm = sgemm_gflops()
    print(json.dumps({"matmul_gflops": round(gemm, 1)}), flush=True)
    ours, summary = run_rnnlab(args.data, args.epochs, args.seed)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux: KiB; only child so far
    base = run_baseline(args.data, args.epochs, args.seed)
    print(json.dumps({"baseline": base}), flush=True)
    print(json.dumps({"rnnlab": [{k: r[k] for k in ("epoch", "train_loss", "test_acc", "train_seconds",
                                                   "tokens_per_second")} for r in ours]}), flush=True)
    micro = dense_vs_packed(args.data)
    b_s = statistics.median(r["train_s"] for r in base)
    o_s = statistics.median(r["train_seconds"] for r in ours)
    tok_s = statistics.median(r["tokens_per_second"] for r in ours)
    n_tokens = round(tok_s * o_s)
    achieved = tok_s * rnn_train_flops_per_token() / 1e9
    result = {
        "epochs": args.epochs, "seed": args.seed,
        "baseline_train_s_per_epoch_median": round(b_s, 1),
        "rnnlab_train_s_per_epoch_median": round(o_s, 1),
        "speedup": round(b_s / o_s, 2),
        "baseline_tokens_per_s": round(n_tokens / b_s),
        "rnnlab_tokens_per_s": tok_s,
        "baseline_test_acc_last": base[-1]["test_acc"], "rnnlab_test_acc_last": ours[-1]["test_acc"],
        "baseline_test_acc_by_epoch": [r["test_acc"] for r in base],
        "rnnlab_test_acc_by_epoch": [r["test_acc"] for r in ours],
        "rnnlab_achieved_gflops": round(achieved, 1), "matmul_gflops": round(gemm, 1),
        "fraction_of_matmul_throughput": round(achieved / gemm, 3),
        "rnnlab_train_peak_rss_mb": round(peak_mb), **micro, "machine": f"{env['processor']}, {env['cpu_count']} cores, torch {env['torch']}",
    }
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
