"""Evaluate a saved run on a labelled split, and predict on raw text.

    rnnlab evaluate runs/seed --data reviews.csv --json
    echo "A wonderful, moving film." | rnnlab predict runs/seed
"""
from __future__ import annotations

import numpy as np

from .batching import Encoded
from .train import predict_proba

LENGTH_EDGES = (0, 100, 200, 400, 800)  # review-length buckets in tokens (before truncation)


def bucket_name(lo: int, hi: int | None) -> str:
    return f"{lo}-{hi}" if hi else f"{lo}+"


def length_buckets(lengths: np.ndarray, edges=LENGTH_EDGES) -> list[tuple[str, np.ndarray]]:
    """[(name, index array)] of reviews whose length falls in each bucket."""
    out = []
    for i, lo in enumerate(edges):
        hi = edges[i + 1] if i + 1 < len(edges) else None
        sel = (lengths > lo if lo else lengths >= 0) & ((lengths <= hi) if hi else True)
        out.append((bucket_name(lo, hi), np.flatnonzero(sel)))
    return out


def encode_texts(vocab, texts: list[str], labels=None, max_len: int = 0, truncate: str = "head"):
    """Encode raw texts with a run's vocabulary; returns (Encoded, untruncated lengths)."""
    seqs = [vocab.encode(t) for t in texts]
    labels = np.zeros(len(seqs), dtype=np.int64) if labels is None else np.asarray(labels)
    full = Encoded.from_lists(seqs, labels)
    return full.truncated(max_len, truncate), full.lengths


def report(probs: np.ndarray, labels: np.ndarray, lengths: np.ndarray) -> dict:
    """Accuracy, confusion matrix and accuracy by review-length bucket."""
    pred = (probs > 0.5).astype(np.int64)
    y = np.asarray(labels)
    cm = [[int(((y == a) & (pred == b)).sum()) for b in (0, 1)] for a in (0, 1)]
    by_len = []
    for name, idx in length_buckets(lengths):
        if len(idx):
            by_len.append({"bucket": name, "n": int(len(idx)), "acc": round(float((pred[idx] == y[idx]).mean()), 4)})
    return {"n": int(len(y)), "acc": round(float((pred == y).mean()), 4),
            "confusion": {"rows": "true neg, true pos", "cols": "pred neg, pred pos", "matrix": cm},
            "by_length": by_len}


def evaluate_run(cfg, vocab, model, split, device="cpu") -> dict:
    enc, full_len = encode_texts(vocab, split.texts, split.labels, cfg.max_len, cfg.truncate)
    probs = predict_proba(model, enc, cfg.eval_batch_size, device)
    return report(probs, split.labels, full_len)


def predict_texts(cfg, vocab, model, texts: list[str], device="cpu") -> np.ndarray:
    enc, _ = encode_texts(vocab, texts, None, cfg.max_len, cfg.truncate)
    return predict_proba(model, enc, cfg.eval_batch_size, device)
