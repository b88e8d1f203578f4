"""Shortfall 1, long reviews: reading more of each review costs time linearly and stops paying.

    rnnlab shortfall long-reviews --data ../shared/data/imdb [--quick]

Varies: the maximum review length (tokens kept per review, e.g. 50 ... 800 and the whole review)
and which part is kept (head: the first tokens, tail: the last). Held fixed: the notebook's
model and optimiser (vanilla tanh RNN reading its final state, embedding 100, hidden 128, batch 64,
Adam 1e-3) with <br /> stripped and clipping at 1.0; the same epochs, reviews and seeds for every
length. Claim (the notebook's "long reviews hurt"): training time per epoch grows about linearly
with the tokens read, while test accuracy plateaus or falls; and keeping the end of a review beats
keeping its start. Also measured: accuracy of the longest-input model by review-length bucket.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import with_overrides
from ..data import Dataset
from ..evaluate import length_buckets
from ..train import resolve_device
from .common import (BASE, Log, accuracy, conclude, fit, linear_fit, mean_sd, predict, prepare_untruncated,
                     subsample, tagged, title, truncated)

NAME = "long-reviews"
COLUMNS = ("part", "max_len", "truncate", "seed", "bucket", "metric", "value")
TIME_R2 = 0.9  # "about linear": a straight line explains >= 90% of the variance of s/epoch
PLATEAU_GAIN = 0.01  # "plateaus": the longest input beats the best shorter one by < 1 point


@dataclass(frozen=True)
class Sweep:
    """What one run of the experiment sweeps; FULL gives the real numbers, QUICK a smoke test."""

    lengths: tuple[int, ...] = (50, 100, 200, 400, 800, 0)  # 0 = the whole review
    truncations: tuple[str, ...] = ("head", "tail")
    seeds: tuple[int, ...] = (0, 1)
    epochs: int = 2
    n_train: int = 0  # reviews per split (class-balanced, seeded); 0 = all
    n_test: int = 0
    embed_dim: int = 100
    hidden_dim: int = 128


FULL = Sweep()
QUICK = Sweep(lengths=(50, 200, 0), seeds=(0,), epochs=1, n_train=2000, n_test=1000)


def run(ds: Dataset, out_dir: Path, quick: bool = False, device: str = "auto", log: Log = print,
        sweep: Sweep | None = None) -> list[dict]:
    """Varies the maximum review length and head/tail truncation; holds fixed the model, optimiser,
    epochs, reviews and seeds. Tests: time per epoch grows about linearly with the tokens read while
    test accuracy plateaus or falls (and tail beats head). Writes rows, figure and verdict."""
    started = time.perf_counter()
    sw = sweep or (QUICK if quick else FULL)
    log = tagged(log, NAME)
    dev = resolve_device(device)
    ds = subsample(ds, sw.n_train, sw.n_test)
    base = with_overrides(BASE, {"epochs": sw.epochs, "embed_dim": sw.embed_dim, "hidden_dim": sw.hidden_dim,
                                 "device": device})
    full = prepare_untruncated(base, ds, log)
    rows = [{"part": "data", "metric": "median_review_tokens", "value": float(np.median(full.train.lengths))},
            {"part": "data", "metric": "mean_review_tokens", "value": float(full.train.lengths.mean())},
            {"part": "data", "metric": "train_reviews", "value": float(len(full.train))},
            {"part": "data", "metric": "test_reviews", "value": float(len(full.test))}]
    settings = [(n, t) for n in sw.lengths if n > 0 for t in sw.truncations]
    if 0 in sw.lengths:
        settings.append((0, "none"))  # the whole review: nothing to truncate
    longest = max(settings, key=lambda s: s[0] or float("inf"))
    jobs = [(n, t, seed) for n, t in settings for seed in sw.seeds]
    log(f"{len(jobs)} training runs ({len(settings)} settings x {len(sw.seeds)} seeds), "
        f"{len(full.train)} train / {len(full.test)} test reviews, {sw.epochs} epoch(s) each")
    for i, (n, trunc, seed) in enumerate(jobs, 1):
        cfg = with_overrides(base, {"max_len": n, "truncate": "head" if trunc == "none" else trunc, "seed": seed})
        prep = truncated(full, n, cfg.truncate)
        label = f"{i}/{len(jobs)} max_len {n or 'full'} {trunc} seed {seed}"
        fitted = fit(cfg, prep, lambda s, label=label: log(f"{label}: {s}"))
        probs = predict(fitted.model, prep.test, dev)
        acc = accuracy(probs, prep.test.labels)
        key = {"part": "sweep", "max_len": n, "truncate": trunc, "seed": seed}
        rows += [{**key, "metric": "test_acc", "value": acc},
                 {**key, "metric": "train_seconds_per_epoch", "value": fitted.seconds_per_epoch},
                 {**key, "metric": "tokens_per_second", "value": fitted.tokens_per_second},
                 {**key, "metric": "mean_tokens_per_review", "value": float(prep.train.lengths.mean())}]
        if (n, trunc) == longest:  # accuracy by the review's own (untruncated) length
            for bucket, idx in length_buckets(full.test.lengths):
                if len(idx):
                    b = {**key, "part": "by_length", "bucket": bucket}
                    rows += [{**b, "metric": "test_acc", "value": accuracy(probs[idx], prep.test.labels[idx])},
                             {**b, "metric": "n", "value": float(len(idx))}]
        log(f"{label}: test acc {acc:.4f}, {fitted.seconds_per_epoch:.1f} s/epoch, "
            f"{fitted.tokens_per_second / 1e3:.0f}k tok/s")
    judged = verdict(rows)
    return conclude(NAME, rows, COLUMNS, judged, figure(rows, judged), out_dir, log,
                    quick=quick, ds=ds, device=dev, settings=sw, started=started)


def _settings(rows: list[dict]) -> list[tuple[int, str]]:
    return sorted({(r["max_len"], r["truncate"]) for r in rows if r["part"] == "sweep"},
                  key=lambda s: (s[0] or float("inf"), s[1]))


def _by_setting(rows: list[dict], metric: str) -> dict[tuple[int, str], tuple[float, float]]:
    """(mean, sd over seeds) of `metric` for each (max_len, truncate)."""
    return {s: mean_sd(r["value"] for r in rows if r["part"] == "sweep" and r["metric"] == metric
                       and (r["max_len"], r["truncate"]) == s) for s in _settings(rows)}


def verdict(rows: list[dict]) -> dict:
    """Judge the claim from the rows alone (pure: tests feed it hand-made rows)."""
    acc = _by_setting(rows, "test_acc")
    secs = _by_setting(rows, "train_seconds_per_epoch")
    toks = _by_setting(rows, "mean_tokens_per_review")
    settings = _settings(rows)
    fit_ = linear_fit([toks[s][0] for s in settings], [secs[s][0] for s in settings])
    time_linear = bool(fit_["slope"] > 0 and fit_["r2"] >= TIME_R2)
    longest = max(settings, key=lambda s: toks[s][0])
    shorter = [s for s in settings if toks[s][0] < toks[longest][0]] or [s for s in settings if s != longest]
    best_short = max(shorter, key=lambda s: acc[s][0]) if shorter else None
    gain = acc[longest][0] - acc[best_short][0] if shorter else float("nan")
    plateau = bool(gain < PLATEAU_GAIN)
    lengths = sorted({n for n, t in settings if t == "head"} & {n for n, t in settings if t == "tail"})
    diffs = {n: acc[(n, "tail")][0] - acc[(n, "head")][0] for n in lengths}
    tail_wins = bool(diffs and float(np.mean(list(diffs.values()))) > 0)
    name = lambda s: f"{s[0] or 'full'} {s[1]}"  # noqa: E731
    return {
        "claim": "Training time per epoch grows about linearly with the tokens read, while test accuracy "
                 "plateaus or falls as more of each review is read",
        "holds": time_linear and plateau,
        "criterion": f"time linear: s/epoch against mean tokens read per review fits a line with slope > 0 and "
                     f"R^2 >= {TIME_R2}; plateaus or falls: the longest input's mean test accuracy beats the best "
                     f"shorter setting (either truncation) by less than {PLATEAU_GAIN:.2f}",
        "numbers": {
            "time_fit_seconds_per_token_per_review": fit_["slope"], "time_fit_r2": fit_["r2"],
            "time_linear": time_linear,
            "seconds_per_epoch": {name(s): secs[s][0] for s in settings},
            "mean_tokens_per_review": {name(s): toks[s][0] for s in settings},
            "test_acc_mean": {name(s): acc[s][0] for s in settings},
            "test_acc_sd": {name(s): acc[s][1] for s in settings},
            "longest_setting": name(longest), "best_shorter_setting": name(best_short) if shorter else None,
            "accuracy_gain_of_longest_over_best_shorter": gain, "plateaus_or_falls": plateau,
        },
        "questions": [{
            "claim": "Keeping the end of a review (tail) beats keeping its start (head)",
            "holds": tail_wins,
            "criterion": "mean over truncated lengths of (tail - head) mean test accuracy > 0",
            "numbers": {"tail_minus_head": {str(n): d for n, d in diffs.items()},
                        "mean_tail_minus_head": float(np.mean(list(diffs.values()))) if diffs else float("nan")},
        }],
    }


def figure(rows: list[dict], judged: dict):
    """Accuracy by length kept (head/tail), s/epoch against tokens read, accuracy by review length."""
    import matplotlib.pyplot as plt

    acc, secs, toks = (_by_setting(rows, m) for m in ("test_acc", "train_seconds_per_epoch", "mean_tokens_per_review"))
    settings = _settings(rows)
    lengths = sorted({n for n, _ in settings}, key=lambda n: n or float("inf"))
    xpos = {n: i for i, n in enumerate(lengths)}
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 4.3))
    for trunc, style in (("head", "o-"), ("tail", "s-"), ("none", "*")):
        pts = [s for s in settings if s[1] == trunc]
        if pts:
            a.errorbar([xpos[n] for n, _ in pts], [acc[s][0] for s in pts], yerr=[acc[s][1] for s in pts],
                       fmt=style, ms=11 if trunc == "none" else 6, capsize=3,
                       label={"head": "head: keep the first N tokens", "tail": "tail: keep the last N tokens",
                              "none": "whole review"}[trunc])
    a.set_xticks(range(len(lengths)), [str(n) if n else "full" for n in lengths])
    a.set_xlabel("maximum review length N (tokens)"); a.set_ylabel("test accuracy (mean ± sd over seeds)")
    a.set_title("accuracy against length kept"); a.grid(alpha=0.3); a.legend(fontsize=8)

    x = np.array([toks[s][0] for s in settings]); y = np.array([secs[s][0] for s in settings])
    for trunc, m in (("head", "o"), ("tail", "s"), ("none", "*")):
        sel = [i for i, s in enumerate(settings) if s[1] == trunc]
        if sel:
            b.plot(x[sel], y[sel], m, ms=10 if trunc == "none" else 6, label=trunc if trunc != "none" else "whole review")
    n = judged["numbers"]
    if np.isfinite(n["time_fit_r2"]):
        fit_ = linear_fit(x, y)
        xs = np.linspace(0, x.max() * 1.05, 50)
        b.plot(xs, fit_["slope"] * xs + fit_["intercept"], "k--", lw=1,
               label=f"linear fit, R² = {fit_['r2']:.3f}")
    b.set_xlabel("mean tokens read per review"); b.set_ylabel("training seconds per epoch")
    b.set_title("time per epoch against tokens read"); b.grid(alpha=0.3); b.legend(fontsize=8)

    by = [r for r in rows if r["part"] == "by_length" and r["metric"] == "test_acc"]
    buckets = list(dict.fromkeys(r["bucket"] for r in by))
    if buckets:
        m = [mean_sd(r["value"] for r in by if r["bucket"] == bk) for bk in buckets]
        cnt = [np.mean([r["value"] for r in rows if r["part"] == "by_length" and r["metric"] == "n"
                        and r["bucket"] == bk]) for bk in buckets]
        bars = c.bar(range(len(buckets)), [v for v, _ in m], yerr=[s for _, s in m], capsize=3, color="tab:gray")
        for bar, k in zip(bars, cnt):
            c.annotate(f"n={int(k)}", (bar.get_x() + bar.get_width() / 2, 0.02), ha="center", fontsize=8, color="white")
        c.set_xticks(range(len(buckets)), buckets)
        c.set_ylim(0, 1)
        c.axhline(0.5, color="k", lw=0.8, ls=":")
    c.set_xlabel("review length (tokens, before truncation)"); c.set_ylabel("test accuracy")
    src = next((r for r in by), None)
    c.set_title(f"model reading {'whole reviews' if src and not src['max_len'] else 'the longest input'}, "
                "by review length"); c.grid(alpha=0.3, axis="y")
    fig.suptitle(title("Long reviews", "time per epoch grows linearly with the tokens read while accuracy "
                       "plateaus or falls", judged))
    fig.tight_layout()
    return fig
