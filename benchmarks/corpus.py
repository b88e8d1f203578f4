"""Review lengths in tokens, as the notebook's tokenizer reads them (no <br /> stripping), per split.

    python benchmarks/corpus.py --data ../shared/data/imdb --out benchmarks/results/corpus.json

The lengths behind PERFORMANCE.md's description of the notebook's padded batches: mean, median,
percentiles and the longest review, and how many reviews exceed the lab's 400 tokens.
"""
from __future__ import annotations

import argparse

import numpy as np

from common import publish
from rnnlab.data import load_imdb
from rnnlab.text import tokenize


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    ds = load_imdb(args.data)
    result = {"tokenizer": "rnnlab.text.tokenize (the notebook's), <br /> kept", "splits": {}}
    for name, split in (("train", ds.train), ("test", ds.test)):
        n = np.array([len(tokenize(t)) for t in split.texts])
        result["splits"][name] = {"reviews": int(len(n)), "mean": round(float(n.mean()), 2),
                                  "median": float(np.median(n)), "p90": round(float(np.percentile(n, 90)), 1),
                                  "longest": int(n.max()), "over_400": int((n > 400).sum())}
    publish(result, args.out)


if __name__ == "__main__":
    main()
