"""How often Integrated Gradients' completeness holds on real test reviews, by number of steps, and why not.

    python benchmarks/ig_completeness.py RUN_DIR [RUN_DIR ...] --data ../shared/data/imdb \\
        --reviews 100 --steps 25,50,100,200 --out benchmarks/results/ig_completeness.json

For each run, the same --reviews test reviews (a seeded sample of the data's test split), cut as the run reads
them, get explain's Integrated Gradients (`integrated_gradients`, weights frozen as `explain` freezes them)
once per number of steps. Completeness: the
attributions add up to logit - baseline logit within explain's tolerance (5% of that change, or 0.01;
`attribution_warning`). Per number of steps: the share of reviews where it holds and the median relative
gap |delta| / |logit - baseline logit|. Then, once per review, the model's logit along the straight path
from the blank review to the review at --grid evenly spaced points: the largest change between two
neighbouring points as a share of the whole change. A share near 1 is a jump: the answer moves at once,
between two points 1/grid apart, which no integration with a few hundred steps resolves.
"""
from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch

from common import publish
from rnnlab.data import load_imdb
from types import SimpleNamespace

from rnnlab.explain import attribution_warning, integrated_gradients, load_run
from rnnlab.scoring import encode_texts


def encoded(run, text: str):
    """(1, T) tokens and (1,) lengths of the review as the run reads it (explain's and predict's cut)."""
    enc, _ = encode_texts(run.vocab, [text], None, run.cfg.max_len, run.cfg.truncate)
    tokens, lengths, _ = enc.collate(np.array([0]))
    return tokens, lengths


def path_logits(model, tokens, lengths, grid: int) -> np.ndarray:
    """The logit with the embedding output scaled by alpha = 0, 1/grid, ..., 1 (as the IG path runs it)."""
    alphas = torch.linspace(0, 1, grid + 1)
    out = []
    with torch.no_grad():
        x = model.embedding(tokens)  # the <pad> baseline's embedding is zero: the path is alpha * x
        for part in alphas.split(64):
            xs = part.view(-1, 1, 1) * x
            hook = model.embedding.register_forward_hook(lambda mod, inp, o: xs)
            try:
                out.append(model(tokens.expand(len(part), -1), lengths.expand(len(part))))
            finally:
                hook.remove()
    return torch.cat(out).double().numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--data", required=True)
    ap.add_argument("--reviews", type=int, default=100)
    ap.add_argument("--steps", default="25,50,100,200")
    ap.add_argument("--grid", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    steps = [int(s) for s in args.steps.split(",")]
    test = load_imdb(args.data).test
    picked = np.random.default_rng(args.seed).choice(len(test.texts), args.reviews, replace=False)
    result = {"reviews": f"{args.reviews} test reviews (numpy default_rng({args.seed}).choice)", "steps": steps,
              "grid": args.grid, "runs": {}}
    for path in args.runs:
        run = load_run(path)
        model = run.model
        for p in model.parameters():
            p.requires_grad_(False)
        per = {n: {"holds": [], "relative_gap": []} for n in steps}
        jumps = []
        for i in picked:
            tokens, lengths = encoded(run, test.texts[int(i)])
            with torch.no_grad():
                logit = float(model(tokens, lengths)[0])
            for n in steps:
                attr, delta, base = integrated_gradients(model, tokens, lengths, n)
                e = SimpleNamespace(model=run.cfg.model, attribution=attr, attribution_delta=delta, logit=logit,
                                    baseline_logit=base)
                per[n]["holds"].append(not attribution_warning(e))
                per[n]["relative_gap"].append(abs(delta) / max(abs(logit - base), 1e-12))
            f = path_logits(model, tokens, lengths, args.grid)
            jumps.append(float(np.abs(np.diff(f)).max() / max(abs(f[-1] - f[0]), 1e-12)))
        row = {"model": run.cfg.model, "max_len": run.cfg.max_len, "by_steps": {}}
        for n in steps:
            row["by_steps"][str(n)] = {
                "completeness_holds": round(float(np.mean(per[n]["holds"])), 3),
                "relative_gap_median": round(float(statistics.median(per[n]["relative_gap"])), 3),
                "relative_gap_quartiles": [round(float(q), 3) for q in np.quantile(per[n]["relative_gap"], [0.25, 0.75])]}
        row["largest_step_share_median"] = round(float(statistics.median(jumps)), 3)
        row["reviews_with_a_jump_over_half"] = round(float(np.mean(np.array(jumps) > 0.5)), 3)
        holds = np.array(per[steps[-1]]["holds"])
        row["largest_step_share_median_where_it_holds"] = (round(float(np.median(np.array(jumps)[holds])), 3)
                                                            if holds.any() else None)
        row["largest_step_share_median_where_it_fails"] = (round(float(np.median(np.array(jumps)[~holds])), 3)
                                                            if (~holds).any() else None)
        result["runs"][path] = row
        print(path, row, flush=True)
    publish(result, args.out)


if __name__ == "__main__":
    main()
