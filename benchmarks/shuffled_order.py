"""Does each model of the comparison use word order? The same models trained and tested on shuffled words.

    PYTHONPATH=src:benchmarks python benchmarks/shuffled_order.py --data ../shared/data/imdb \
        --lab benchmarks/results/lab_zen3_37328bd --out benchmarks/results/shuffled_order_zen3.json [--jobs 2]
    ... --rows benchmarks/results/shuffled_order_zen3.json --lab OTHER_LAB   # judge the same runs again, no training

The lab's "order matters" compares the best order-aware model with the best bag of words; it does not ask
whether the order-aware models read order at all. Here each review's words are shuffled within the window the
models read (the last 400 tokens, <br /> tags stripped; a longer review's head, which no model reads, stays as it
was), by one fixed shuffle (SHUFFLE_SEED) for every model and training seed. So every model reads the same words
of each review as in the lab, in another order, from the same vocabulary (the same words in each review, so the
same counts). Each of the comparison's presets is trained exactly as the lab trains it (its budget, data subset
and seeds, one torch thread), then tested on the shuffled test reviews.

Effect, per model: acc(words in order) - acc(words shuffled), paired by training seed, the first from the rows of a
full lab (LAB/compare/results.csv) made with the same training code on the same kind of machine: training is exact to
the bit only there (the published lab, made on an Intel VM, and a Zen 3 VM's lab differ by up to 0.043 in a
model's accuracy at one seed at the comparison's settings). The check says whether LAB is such a lab: the first seed of the vanilla RNN
and of the Transformer is trained on the words in order too, and each must give LAB's accuracy exactly; where one
does not, the script says so and judges nothing (a pairing that fails it mixes machines or code).
Criterion, declared before any run: "M uses word order" holds if the 95% Student t interval over the 3 seeds lies
above 0.005 (half a point of accuracy lost by shuffling), does not hold if it lies below, else inconclusive
(rnnlab.experiments.stats.judge, as the lab's verdicts). Negative control: the bag of embeddings, a mean of word
vectors, blind to order by construction: expected exactly 0 at every seed, judged as the lab judges its controls, with
the measurement's step (one test review of the subset: 1/10,000) so that three identical values decide (the lab's
`stats.judge` `step`). Every interval is over training seeds only, on one test subset and one shuffle.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

SHUFFLE_SEED = 2024
THRESHOLD = 0.005
MODELS = ("rnn", "lstm", "gru", "transformer", "bow")  # the comparison's neural presets; bow: the control
CHECKED = ("rnn", "transformer")  # trained on the words in order too (seed 0): LAB's rows, exactly?


def shuffled(texts: list[str], max_len: int, rng: np.random.Generator) -> list[str]:
    """Each review's last `max_len` tokens (<br /> stripped) in a random order, the rest as it was, joined by spaces
    (which the tokenizer reads back as the same tokens)."""
    from rnnlab.text import tokenize

    out = []
    for text in texts:
        words = tokenize(text, strip_html=True)
        cut = max(0, len(words) - max_len)
        window = words[cut:]
        out.append(" ".join(words[:cut] + [window[i] for i in rng.permutation(len(window))]))
    return out


def train_one(data: str, model: str, seed: int, shuffle: bool) -> dict:
    """One lab job's training and test accuracy (compare's preset `model`, training seed `seed`)."""
    import torch

    torch.set_num_threads(1)
    from rnnlab.config import DATA, with_overrides
    from rnnlab.data import Dataset, Split, load_imdb
    from rnnlab.experiments.common import as_trained
    from rnnlab.experiments.compare import PRESETS
    from rnnlab.prepare import prepare, subsample
    from rnnlab.scoring import accuracy, predict_proba
    from rnnlab.train import train

    cfg = as_trained(with_overrides(PRESETS[model], {"seed": seed}), "full")
    ds = subsample(load_imdb(data), **DATA["full"])
    if shuffle:
        splits = [Split(shuffled(s.texts, cfg.max_len, np.random.default_rng([SHUFFLE_SEED, k])), s.labels, s.source)
                  for k, s in enumerate((ds.train, ds.test))]
        ds = Dataset(*splits, f"{ds.source}, words shuffled (seed {SHUFFLE_SEED})")
    prepared = prepare(cfg, ds)
    t0 = time.perf_counter()
    import dataclasses

    trained = train(cfg, dataclasses.replace(prepared, test=None), log=lambda s: None, progress=False)
    probs = predict_proba(trained.model, prepared.test, "cpu")
    return {"model": model, "seed": seed, "shuffled": shuffle, "test_acc": float(accuracy(probs, prepared.test.labels)),
            "val_acc": trained.summary["val_acc"], "best_epoch": trained.summary["best_epoch"],
            "seconds": round(time.perf_counter() - t0, 1)}


def lab_accuracy(lab: Path) -> dict[tuple[str, int], float]:
    with open(lab / "compare" / "results.csv", newline="") as f:
        return {(r["model"], int(r["seed"])): float(r["value"]) for r in csv.DictReader(f)
                if r["setting"] == "lab" and r["part"] == "accuracy" and r["metric"] == "test_acc"}


def main() -> None:
    from common import commit, publish
    from rnnlab.config import SEEDS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="the IMDB copy to train on (not with --rows)")
    ap.add_argument("--lab", required=True, help="a full lab whose rows give the accuracy with words in order")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--rows", default=None, help="an earlier output: judge its runs again against --lab, no training")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    in_order = lab_accuracy(Path(args.lab))
    seeds = SEEDS["full"]
    if args.rows:
        result = json.loads(Path(args.rows).read_text())
        rows = result["rows"]
    else:
        if not args.data:
            ap.error("--data is required to train (or give --rows)")
        tasks = [(m, s, True) for m in MODELS for s in seeds] + [(m, seeds[0], False) for m in CHECKED]
        tasks.sort(key=lambda t: t[0] != "transformer")  # the longest jobs first
        t0 = time.perf_counter()
        with ProcessPoolExecutor(args.jobs) as pool:
            rows = list(pool.map(train_one, [args.data] * len(tasks), *zip(*tasks)))
        result = {"data": os.path.basename(os.path.normpath(args.data)), "shuffle_seed": SHUFFLE_SEED,
                  "wall_seconds": round(time.perf_counter() - t0, 1), "jobs": args.jobs, "rows": rows}
        for r in rows:
            print(r, flush=True)
    result["lab"] = args.lab
    result["check"] = [{"model": r["model"], "seed": r["seed"], "test_acc": r["test_acc"],
                        "lab_test_acc": in_order[(r["model"], r["seed"])],
                        "equal": r["test_acc"] == in_order[(r["model"], r["seed"])]} for r in rows if not r["shuffled"]]
    failed = [c for c in result["check"] if not c["equal"]]
    result["verdicts"] = None if failed else {m: verdict(m, rows, in_order, seeds) for m in MODELS}
    if args.rows:  # the machine and commit of the runs; the commit of this judging beside them
        result["judged_at"] = commit()
        print(json.dumps(result, indent=2))
        if args.out and not failed:
            Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    else:
        publish(result, args.out)  # the runs kept, judged or not
    if failed:
        sys.exit(f"{args.lab}: not trained as these runs were (" + "; ".join(
            f"{c['model']} seed {c['seed']} in order: {c['test_acc']} here, {c['lab_test_acc']} there" for c in failed)
            + "): another CPU or other code; nothing judged: pair these runs with a lab made on this kind of machine")


def verdict(m: str, rows: list[dict], in_order: dict, seeds) -> dict:
    from rnnlab.config import DATA
    from rnnlab.experiments.stats import judge

    shuf = {r["seed"]: r["test_acc"] for r in rows if r["model"] == m and r["shuffled"]}
    drop = [in_order[(m, s)] - shuf[s] for s in seeds]
    control = " (negative control: order-blind by construction, expected exactly 0 at every seed)" if m == "bow" else ""
    return judge(f"{m} uses word order: shuffling the words it reads costs it more than half a point of accuracy{control}",
                 f"acc(words in order, the lab's) - acc(words shuffled), paired by seed; holds if the 95% interval lies "
                 f"above {THRESHOLD}, does not hold if below", drop, THRESHOLD, "above",
                 effect=f"acc(in order) - acc(shuffled), {m}",
                 numbers={"in_order": [in_order[(m, s)] for s in seeds], "shuffled": [shuf[s] for s in seeds]},
                 step=1 / DATA["full"]["n_test"] if m == "bow" else 0.0)

if __name__ == "__main__":
    main()
