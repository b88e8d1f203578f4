"""The LSTM / GRU kernels' forward without grad (evaluation), against an older checkout's, side by side.

    git worktree add /tmp/old ba25167
    PYTHONPATH=src python benchmarks/nograd.py --before /tmp/old/src --out benchmarks/results/nograd.json

Each round runs one `torch.no_grad()` forward of `lstm_layer` and of `gru_layer` (B 256, T 400, 100 -> 128,
one thread: an evaluation batch of the lab's shapes) with this checkout's kernels and with --before's
`rnnlab/kernels.py` (loaded on its own, under another module name), in alternating order. Reports each
side's median and range over the rounds, the median of the per-round ratios, and whether both gave the
same states bit for bit.
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from pathlib import Path

import torch

from common import publish
from rnnlab import kernels


def load_before(src: str):
    spec = importlib.util.spec_from_file_location("kernels_before", Path(src) / "rnnlab" / "kernels.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", required=True, help="an older checkout's src/ directory")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    before = load_before(args.before)
    torch.manual_seed(0)
    x = torch.randn(args.batch, args.steps, 100)
    res = {}
    for kind in ("lstm", "gru"):
        m = getattr(torch.nn, kind.upper())(100, 128)
        w = (m.weight_ih_l0, m.weight_hh_l0, m.bias_ih_l0, m.bias_hh_l0)
        sides = {"before": getattr(before, f"{kind}_layer"), "after": getattr(kernels, f"{kind}_layer")}
        times, same = {k: [] for k in sides}, True
        for r in range(args.rounds + 1):  # round 0 warms up
            outs = {}
            for name in (list(sides) if r % 2 else list(sides)[::-1]):
                with torch.no_grad():
                    t0 = time.perf_counter()
                    outs[name] = sides[name](x, *w)
                    if r:
                        times[name].append(time.perf_counter() - t0)
            same &= torch.equal(outs["before"], outs["after"])
        ratios = [b / a for b, a in zip(times["before"], times["after"])]
        res[kind] = {**{f"{k}_ms_median": round(1e3 * statistics.median(v), 1) for k, v in times.items()},
                     **{f"{k}_ms": [round(1e3 * t, 1) for t in v] for k, v in times.items()},
                     "speedup_median": round(statistics.median(ratios), 2),
                     "speedup_range": [round(min(ratios), 2), round(max(ratios), 2)], "identical_states": same}
        print(f"{kind}: before {res[kind]['before_ms_median']} ms, after {res[kind]['after_ms_median']} ms, "
              f"{res[kind]['speedup_median']}x [{min(ratios):.2f}-{max(ratios):.2f}], identical: {same}")
    publish({"batch": args.batch, "steps": args.steps, "threads": 1, "before": args.before, "kernels": res},
            args.out)


if __name__ == "__main__":
    main()
