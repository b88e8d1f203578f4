"""Scoring a model: P(positive) per review, accuracy and loss, the confusion matrix, accuracy by length.

    from rnnlab.scoring import predict_proba, score, evaluation
    probs = predict_proba(model, data.test)           # (N,) in the split's order
    score(model, data.val)                            # {"acc": ..., "loss": ...}
    evaluation(probs, labels, lengths)                # what `rnnlab evaluate` prints
"""
from __future__ import annotations

import numpy as np
import torch

from .batching import Encoded, sorted_batches
from .io import RunError
from .memory import fitting, token_bytes


class NonFiniteAnswer(RunError):
    """The model answers NaN (finite weights whose arithmetic overflows; in training, a step that diverged)."""


EVAL_BATCH = 64  # the training batch; larger batches were slower on the CPU and held more memory
EVAL_TOKENS = EVAL_BATCH * 4096  # padded tokens a batch may hold: 64 of IMDB's longest reviews (2,525 tokens) fit,
# so its batches are EVAL_BATCH's; a much longer review runs with fewer beside it (one of 200,000 tokens padded 36
# others of 300 to its length: 14 GB)
LENGTH_EDGES = (0, 100, 200, 400, 800)  # review-length buckets in tokens (before truncation)


@torch.no_grad()
def predict_proba(model, enc: Encoded, device="cpu") -> np.ndarray:
    """P(positive) for every review of `enc`, in its order. Puts the model back in its mode."""
    was_training = model.training
    model.eval()
    probs = np.empty(len(enc), dtype=np.float32)
    batches = sorted_batches(enc.lengths, EVAL_BATCH, EVAL_TOKENS)
    if torch.device(device).type == "cpu":  # Linux would grant what it lacks, then kill the process without a word
        batches = fitting(batches, enc.lengths, token_bytes(model))
    for idx in batches:
        tokens, lengths, _ = enc.collate(idx)
        probs[idx] = torch.sigmoid(model(tokens.to(device), lengths.to(device))).float().cpu().numpy()
    model.train(was_training)
    nan = np.flatnonzero(np.isnan(probs))
    if len(nan):  # finite weights whose arithmetic overflows: no answer, rather than NaN read as "negative"
        raise NonFiniteAnswer(f"the model's answer is not a number (NaN) for {len(nan)} of {len(probs)} reviews (the "
                              f"first: number {nan[0] + 1}): its weights overflow float32 arithmetic there; it gives no answer")
    return probs


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Share of reviews whose P(positive) > 0.5 matches the label (NaN for no reviews)."""
    return float(np.mean((probs > 0.5) == (np.asarray(labels) == 1))) if len(labels) else float("nan")


def score(model, enc: Encoded, device="cpu") -> dict:
    """Accuracy and mean BCE loss on `enc`."""
    p = predict_proba(model, enc, device).astype(np.float64)
    y = enc.labels
    eps = 1e-7
    loss = -np.mean(y * np.log(np.clip(p, eps, 1)) + (1 - y) * np.log(np.clip(1 - p, eps, 1)))
    return {"acc": accuracy(p, y), "loss": float(loss)}


def length_buckets(lengths: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """[(name, index array)] of reviews whose length falls in each bucket: 0-100 holds 1..100 tokens."""
    out, edges = [], LENGTH_EDGES
    for i, lo in enumerate(edges):
        hi = edges[i + 1] if i + 1 < len(edges) else None
        sel = (lengths > lo) & ((lengths <= hi) if hi else True)
        out.append((f"{lo}-{hi}" if hi else f"{lo}+", np.flatnonzero(sel)))
    return out


def by_length(probs: np.ndarray, labels: np.ndarray, lengths: np.ndarray) -> list[dict]:
    """Accuracy and count per review-length bucket (non-empty buckets only)."""
    return [{"bucket": name, "n": int(len(idx)), "acc": accuracy(probs[idx], labels[idx])}
            for name, idx in length_buckets(lengths) if len(idx)]


def evaluation(probs: np.ndarray, labels: np.ndarray, lengths: np.ndarray) -> dict:
    """Accuracy, confusion matrix (rows: true neg, true pos; columns: predicted) and accuracy by length."""
    pred = (probs > 0.5).astype(np.int64)
    y = np.asarray(labels)
    cm = [[int(((y == a) & (pred == b)).sum()) for b in (0, 1)] for a in (0, 1)]
    return {"n": int(len(y)), "acc": round(accuracy(probs, y), 4),
            "confusion": {"rows": "true neg, true pos", "cols": "pred neg, pred pos", "matrix": cm},
            "by_length": [{**b, "acc": round(b["acc"], 4)} for b in by_length(probs, y, lengths)]}


def encode_texts(vocab, texts: list[str], labels=None, max_len: int = 0, truncate: str = "head"):
    """Encode raw texts with a run's vocabulary; returns (Encoded, untruncated lengths)."""
    seqs = [vocab.encode(t) for t in texts]
    labels = np.zeros(len(seqs), dtype=np.int64) if labels is None else np.asarray(labels)
    full = Encoded.from_lists(seqs, labels)
    return full.truncated(max_len, truncate), full.lengths


def evaluate_split(cfg, vocab, model, split, device="cpu") -> dict:
    """`evaluation` of a saved run on a labelled split of raw reviews, cut as the run was trained."""
    enc, full_len = encode_texts(vocab, split.texts, split.labels, cfg.max_len, cfg.truncate)
    return evaluation(predict_proba(model, enc, device), split.labels, full_len)


def score_texts(cfg, vocab, model, texts: list[str], device="cpu") -> tuple[np.ndarray, np.ndarray]:
    """P(positive) of raw reviews, tokenised and cut as the run was trained (what `rnnlab predict` prints), and
    each review's length in tokens before the cut."""
    if isinstance(texts, str):  # a string is a sequence too: each of its characters read as a review
        raise TypeError("texts: a list of reviews, not one string (one review: [text])")
    enc, full = encode_texts(vocab, texts, None, cfg.max_len, cfg.truncate)
    return predict_proba(model, enc, device), full


def predict_texts(cfg, vocab, model, texts: list[str], device="cpu") -> np.ndarray:
    """P(positive) of raw reviews, as `rnnlab predict` gives them (`score_texts`)."""
    return score_texts(cfg, vocab, model, texts, device)[0]
