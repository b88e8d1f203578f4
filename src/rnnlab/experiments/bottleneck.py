"""Shortfall 4, the fixed memory bottleneck: the final hidden state keeps what came last.

    rnnlab shortfall bottleneck --data ../shared/data/imdb [--quick]

Varies: the hidden size (e.g. 8 ... 512), how the classifier reads the RNN (its final state, or
the mean or max over all hidden states), and, in a retention probe, the distance between a
planted sentence and the end of the sequence. Held fixed: every model reads each review's last
`max_len` tokens; embedding 100, batch 64, Adam 1e-3, clipping at 1.0, the same epochs and seeds.
Measured: test accuracy by hidden size, split by review-length bucket; and the retention probe: a
short, strongly polar sentence taken from a real review is planted at a controlled distance from
the end of a filler of fixed total length, the filler being either neutral sentences or reviews
of the opposite polarity (all from the test split), and we count how often the prediction follows
the planted sentence. Fixed total length means only the sentence's position changes.
Claim: what the final hidden state retains fades with distance from the end (the prediction
follows the sentence when it is near the end, much less when it is far), and reading all hidden
states (mean or max pooling) relieves it.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import with_overrides
from ..data import DataError, Dataset
from ..evaluate import length_buckets
from ..text import UNK, tokenize
from ..train import resolve_device
from .common import (BASE, Log, accuracy, conclude, fit, mean_sd, predict, prepare_untruncated, subsample,
                     tagged, title, truncated)

NAME = "bottleneck"
COLUMNS = ("part", "pool", "hidden_dim", "seed", "bucket", "filler", "distance", "metric", "value")
FILLERS = ("neutral", "opposite")
FADE = 0.2  # "fades": the follow rate drops by >= 0.2 from the nearest to the farthest distance
RELIEF = 0.5  # "relieves": the best pooled model's drop is at most half the final-state model's
MIN_COUNT = 20  # words seen fewer times in train get no polarity (their log-odds is noise)
PREFIX = 8  # filler tokens always before the planted sentence
SENTENCE_LEN = (4, 12)  # planted sentences have 4-12 tokens


@dataclass(frozen=True)
class Sweep:
    """What one run of the experiment sweeps; FULL gives the real numbers, QUICK a smoke test."""

    hidden_sizes: tuple[int, ...] = (8, 16, 32, 64, 128, 256, 512)
    pools: tuple[str, ...] = ("mean", "max")  # the same RNN reading all hidden states ...
    pooled_hidden: int = 128  # ... at this size (compared with the final-state model of this size)
    max_len: int = 200  # every model reads each review's last max_len tokens
    seeds: tuple[int, ...] = (0, 1)
    epochs: int = 2
    distances: tuple[int, ...] = (0, 5, 10, 25, 50, 100, 200)  # filler tokens after the planted sentence
    probes: int = 100  # per polarity, filler and distance
    sentences: int = 20  # planted sentences per polarity (the most polar found)
    n_train: int = 0  # reviews per split (class-balanced, seeded); 0 = all
    n_test: int = 0
    embed_dim: int = 100


FULL = Sweep()
QUICK = Sweep(hidden_sizes=(8, 32, 128), seeds=(0,), epochs=1, distances=(0, 10, 50, 200), probes=50,
              n_train=2000, n_test=1000)


def run(ds: Dataset, out_dir: Path, quick: bool = False, device: str = "auto", log: Log = print,
        sweep: Sweep | None = None) -> list[dict]:
    """Varies hidden size, how the RNN is read (final state, mean or max over all states) and the
    planted sentence's distance from the end; holds fixed the tail length read, sizes, training and
    the probe sequences. Tests: the final state's memory of the sentence fades with distance and
    pooling all hidden states relieves it (plus accuracy by hidden size and review length)."""
    started = time.perf_counter()
    sw = sweep or (QUICK if quick else FULL)
    log = tagged(log, NAME)
    dev = resolve_device(device)
    ds = subsample(ds, sw.n_train, sw.n_test)
    base = with_overrides(BASE, {"epochs": sw.epochs, "embed_dim": sw.embed_dim, "device": device,
                                 "max_len": sw.max_len, "truncate": "tail"})
    full = prepare_untruncated(base, ds, log)
    prep = truncated(full, sw.max_len, "tail")
    probes = build_probes(ds, full, sw)
    rows = [{"part": "probe_setup", "metric": "probe_length", "value": float(probes["tokens"].shape[1])},
            {"part": "probe_setup", "metric": "planted_sentences", "value": float(len(probes["sentences"]))}]
    log(f"probe: {len(probes['polarity'])} sequences of {probes['tokens'].shape[1]} tokens; planted e.g. "
        f"{probes['examples'][1][0]!r} / {probes['examples'][0][0]!r}")
    variants = [("last", h) for h in sw.hidden_sizes] + [(p, sw.pooled_hidden) for p in sw.pools]
    jobs = [(pool, h, seed) for pool, h in variants for seed in sw.seeds]
    for i, (pool, h, seed) in enumerate(jobs, 1):
        cfg = with_overrides(base, {"hidden_dim": h, "pool": pool, "seed": seed})
        label = f"{i}/{len(jobs)} hidden {h} pool {pool} seed {seed}"
        model = fit(cfg, prep, lambda s, label=label: log(f"{label}: {s}")).model
        probs = predict(model, prep.test, dev)
        key = {"pool": pool, "hidden_dim": h, "seed": seed}
        acc = accuracy(probs, prep.test.labels)
        rows.append({**key, "part": "accuracy", "bucket": "all", "metric": "test_acc", "value": acc})
        for bucket, idx in length_buckets(full.test.lengths):  # by the review's own, untruncated length
            if len(idx):
                rows += [{**key, "part": "accuracy", "bucket": bucket, "metric": "test_acc",
                          "value": accuracy(probs[idx], prep.test.labels[idx])},
                         {**key, "part": "accuracy", "bucket": bucket, "metric": "n", "value": float(len(idx))}]
        follows = follow_rates(model, probes, dev)
        rows += [{**key, "part": "probe", "filler": f, "distance": d, "metric": "follow_rate", "value": v}
                 for (f, d), v in follows.items()]
        near, far = min(sw.distances), max(sw.distances)
        log(f"{label}: test acc {acc:.4f}; follows the planted sentence "
            + ", ".join(f"{f} {follows[(f, near)]:.2f}@{near} -> {follows[(f, far)]:.2f}@{far}" for f in FILLERS))
    judged = verdict(rows)
    examples = {"positive": probes["examples"][1][:3], "negative": probes["examples"][0][:3]}
    return conclude(NAME, rows, COLUMNS, judged, figure(rows, judged), out_dir, log,
                    extra={"planted_sentence_examples": examples},
                    quick=quick, ds=ds, device=dev, settings=sw, started=started)


# --- the retention probe ------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|<br\s*/?>", re.IGNORECASE)


def word_polarity(prep) -> np.ndarray:
    """Per vocabulary id: smoothed log-odds of appearing in a positive vs a negative train review
    (0 for <pad>, <unk> and words seen fewer than MIN_COUNT times)."""
    enc, V = prep.train, len(prep.vocab)
    review = np.repeat(np.arange(len(enc)), enc.lengths)
    ids = enc.ids[np.concatenate([np.arange(s, s + n) for s, n in zip(enc.starts, enc.lengths)])]
    pos = np.bincount(ids[enc.labels[review] == 1], minlength=V)[:V].astype(np.float64)
    neg = np.bincount(ids[enc.labels[review] == 0], minlength=V)[:V].astype(np.float64)
    lo = np.log((pos + 1) / (pos.sum() + V)) - np.log((neg + 1) / (neg.sum() + V))
    lo[(pos + neg) < MIN_COUNT] = 0.0
    lo[:2] = 0.0
    return lo


def build_probes(ds: Dataset, full, sw: Sweep, seed: int = 0) -> dict:
    """Probe sequences of one fixed length: filler, a planted polar sentence, `d` filler tokens.

    Planted sentences: the most polar 4-12-token sentences of test reviews of that polarity (mean
    word log-odds from train). Neutral filler: the test sentences whose most polar word is least
    polar, joined. Opposite filler: test reviews of the other polarity, joined, a random window.
    """
    rng = np.random.default_rng(seed)
    lo, vocab = word_polarity(full), full.vocab
    texts, labels = ds.test.texts, ds.test.labels
    pick = rng.permutation(len(texts))[:5000]  # enough sentences; the rest would only cost time
    polar: dict[int, list] = {0: [], 1: []}
    neutral = []
    for i in pick:
        for s in _SENTENCE_END.split(texts[i]):
            ids = [vocab.stoi.get(w, UNK) for w in tokenize(s, vocab.strip_html)]
            if len(ids) < 3:
                continue
            w = lo[ids]
            if SENTENCE_LEN[0] <= len(ids) <= SENTENCE_LEN[1]:
                polar[int(labels[i])].append((float(w.mean()), s.strip(), ids))
            if len(ids) <= 40:
                neutral.append((float(np.abs(w).max()), ids))
    sentences = {1: sorted((p for p in polar[1] if p[0] > 0), key=lambda p: -p[0])[:sw.sentences],
                 0: sorted((p for p in polar[0] if p[0] < 0), key=lambda p: p[0])[:sw.sentences]}
    if not sentences[0] or not sentences[1]:
        raise DataError(f"{ds.test.source}: the retention probe found no short polar sentence of each polarity in the test reviews")
    neutral = [ids for _, ids in sorted(neutral, key=lambda p: p[0])[:300]]
    N = max(sw.distances) + SENTENCE_LEN[1] + PREFIX
    stream = {"neutral": _tiled(np.concatenate([neutral[j] for j in rng.permutation(len(neutral))]), N)}
    for y in (0, 1):  # filler opposite to a sentence of polarity y: the joined reviews of label 1 - y
        sel = np.flatnonzero(full.test.labels == 1 - y)
        stream[("opposite", y)] = _tiled(np.concatenate(
            [full.test.ids[full.test.starts[j]:full.test.starts[j] + full.test.lengths[j]] for j in sel]), N)
    tokens, filler, distance, polarity, where = [], [], [], [], []
    for f in FILLERS:
        for d in sw.distances:
            for y in (1, 0):
                src = stream["neutral"] if f == "neutral" else stream[("opposite", y)]
                for _ in range(sw.probes):
                    sent = np.asarray(sentences[y][rng.integers(len(sentences[y]))][2])
                    m = N - len(sent)  # filler tokens in this probe
                    start = rng.integers(0, len(src) - m + 1)
                    fill = src[start:start + m]
                    tokens.append(np.concatenate([fill[:m - d], sent, fill[m - d:]]))
                    filler.append(f); distance.append(d); polarity.append(y); where.append(m - d)
    return {"tokens": torch.from_numpy(np.stack(tokens).astype(np.int64)), "filler": np.array(filler),
            "distance": np.array(distance), "polarity": np.array(polarity), "sentence_start": np.array(where),
            "sentences": sentences[0] + sentences[1],
            "examples": {y: [p[1] for p in sentences[y]] for y in (0, 1)}}


def _tiled(a: np.ndarray, n: int) -> np.ndarray:
    """`a` repeated until it holds at least 2n tokens (tiny data)."""
    return np.tile(a, int(np.ceil(2 * n / max(len(a), 1)))) if len(a) < 2 * n else a


@torch.no_grad()
def follow_rates(model, probes: dict, dev, batch: int = 256) -> dict[tuple[str, int], float]:
    """Share of probes whose predicted label is the planted sentence's, per (filler, distance)."""
    model.eval()
    tokens = probes["tokens"]
    lengths = torch.full((len(tokens),), tokens.shape[1], dtype=torch.int64)
    pred = np.concatenate([(model(tokens[i:i + batch].to(dev), lengths[i:i + batch].to(dev)) > 0).cpu().numpy()
                           for i in range(0, len(tokens), batch)])
    follow = pred.astype(np.int64) == probes["polarity"]
    return {(f, int(d)): float(follow[(probes["filler"] == f) & (probes["distance"] == d)].mean())
            for f in FILLERS for d in sorted(set(probes["distance"]))}


# --- verdict ------------------------------------------------------------------------------------

def _follow(rows, pool, h, filler, d) -> float:
    return mean_sd(r["value"] for r in rows if r["part"] == "probe" and r["pool"] == pool and r["hidden_dim"] == h
                   and r["filler"] == filler and r["distance"] == d)[0]


def verdict(rows: list[dict]) -> dict:
    """Judge the claim from the rows alone (pure: tests feed it hand-made rows)."""
    probe = [r for r in rows if r["part"] == "probe"]
    dists = sorted({r["distance"] for r in probe})
    near, far = (dists[0], dists[-1]) if dists else (None, None)
    last_h = sorted({r["hidden_dim"] for r in probe if r["pool"] == "last"})
    pooled = sorted({r["pool"] for r in probe if r["pool"] != "last"})
    ref = next(iter({r["hidden_dim"] for r in probe if r["pool"] != "last"}), 128 if 128 in last_h else max(last_h))

    def fade(pool, h):  # mean over fillers of follow(nearest) - follow(farthest)
        return float(np.mean([_follow(rows, pool, h, f, near) - _follow(rows, pool, h, f, far) for f in FILLERS]))

    last_fade = fade("last", ref)
    pooled_fade = {p: fade(p, ref) for p in pooled}
    best = min(pooled_fade, key=pooled_fade.get) if pooled_fade else None
    fades = bool(last_fade >= FADE)
    relieved = bool(best is not None and pooled_fade[best] <= RELIEF * last_fade)
    widest = max(last_h)
    acc = {r["pool"]: {} for r in rows if r["part"] == "accuracy"}
    for pool, h in sorted({(r["pool"], r["hidden_dim"]) for r in rows if r["part"] == "accuracy"}):
        buckets = list(dict.fromkeys(r["bucket"] for r in rows if r["part"] == "accuracy" and r["pool"] == pool
                                     and r["hidden_dim"] == h and r["metric"] == "test_acc"))
        acc[pool][str(h)] = {b: mean_sd(r["value"] for r in rows if r["part"] == "accuracy" and r["pool"] == pool
                                        and r["hidden_dim"] == h and r["bucket"] == b and r["metric"] == "test_acc")
                             for b in buckets}
    gaps = {}
    for h, by in acc.get("last", {}).items():
        bk = [b for b in by if b != "all"]
        if len(bk) >= 2:
            gaps[h] = by[bk[-1]][0] - by[bk[0]][0]  # longest bucket minus shortest
    return {
        "claim": "What the final hidden state retains fades with distance from the end: the prediction follows a "
                 "planted polar sentence near the end far more often than far from it, and reading all hidden "
                 "states (mean or max pooling) relieves this",
        "holds": fades and relieved,
        "criterion": f"fades: the final-state model (hidden {ref}) follows the sentence at distance {near} at least "
                     f"{FADE} more often than at distance {far} (mean over neutral and opposite filler and seeds); "
                     f"relieves: the better pooled model's drop is at most {RELIEF} x the final-state model's",
        "numbers": {
            "reference_hidden": ref, "nearest_distance": near, "farthest_distance": far,
            "final_state_drop": last_fade, "pooled_drop": pooled_fade, "fades": fades, "relieved": relieved,
            "follow_rate": {f"{p} {h}": {f: {str(d): _follow(rows, p, h, f, d) for d in dists} for f in FILLERS}
                            for p, h in [("last", x) for x in last_h] + [(p, ref) for p in pooled]},
            "test_acc_mean_sd": acc,
        },
        "questions": [
            {"claim": "A wider final state still forgets: the widest final-state model's follow rate also fades",
             "holds": bool(fade("last", widest) >= FADE),
             "criterion": f"hidden {widest}, final state: follow(distance {near}) - follow(distance {far}) >= {FADE}",
             "numbers": {"drop_by_hidden": {str(h): fade("last", h) for h in last_h}}},
            {"claim": "At every hidden size the final-state model classifies the longest reviews less accurately "
                      "than the shortest",
             "holds": bool(gaps) and all(g < 0 for g in gaps.values()),
             "criterion": "test accuracy in the longest length bucket minus the shortest bucket < 0 for each size",
             "numbers": {"longest_minus_shortest_bucket": gaps}},
        ],
    }


def figure(rows: list[dict], judged: dict):
    """Accuracy against hidden size by length bucket; follow rate against distance, per filler."""
    import matplotlib.pyplot as plt

    fig, (a, b, c) = plt.subplots(1, 3, figsize=(16, 4.6))
    accs = [r for r in rows if r["part"] == "accuracy" and r["metric"] == "test_acc"]
    last = sorted({r["hidden_dim"] for r in accs if r["pool"] == "last"})
    buckets = list(dict.fromkeys(r["bucket"] for r in accs))
    colors = plt.cm.plasma(np.linspace(0, 0.85, max(len(buckets) - 1, 1)))
    for j, bk in enumerate(buckets):
        m = [mean_sd(r["value"] for r in accs if r["pool"] == "last" and r["hidden_dim"] == h and r["bucket"] == bk)
             for h in last]
        a.errorbar(last, [v for v, _ in m], yerr=[s for _, s in m], capsize=3,
                   fmt="k-o" if bk == "all" else "o--", lw=2.2 if bk == "all" else 1,
                   color=None if bk == "all" else colors[(j - 1) % len(colors)],
                   label="all reviews" if bk == "all" else f"{bk} tokens")
    for p, mk, col in (("mean", "^", "tab:green"), ("max", "v", "tab:red")):
        pts = [r for r in accs if r["pool"] == p and r["bucket"] == "all"]
        if pts:
            v, s = mean_sd(r["value"] for r in pts)
            a.errorbar([pts[0]["hidden_dim"]], [v], yerr=[s], fmt=mk, ms=10, color=col, capsize=3,
                       label=f"{p} over all states (all reviews)")
    a.set_xscale("log", base=2); a.set_xlabel("hidden size (final state)"); a.set_ylabel("test accuracy (mean ± sd)")
    a.set_title("accuracy against hidden size, by review length"); a.legend(fontsize=7); a.grid(alpha=0.3)
    probe = [r for r in rows if r["part"] == "probe"]
    hs = sorted({r["hidden_dim"] for r in probe if r["pool"] == "last"})
    hcol = plt.cm.viridis(np.linspace(0, 0.9, max(len(hs), 1)))
    for ax, f in ((b, "neutral"), (c, "opposite")):
        dists = sorted({r["distance"] for r in probe})
        xs = [max(d, 0.5) for d in dists]  # distance 0 drawn at 0.5 on the log axis
        for h, col in zip(hs, hcol):
            ax.plot(xs, [_follow(rows, "last", h, f, d) for d in dists], "o-", color=col, label=f"final state, hidden {h}")
        for p, st in (("mean", "^--"), ("max", "v--")):
            ph = {r["hidden_dim"] for r in probe if r["pool"] == p}
            for h in ph:
                ax.plot(xs, [_follow(rows, p, h, f, d) for d in dists], st, color="tab:green" if p == "mean" else "tab:red",
                        lw=2, label=f"{p} over all states, hidden {h}")
        ax.axhline(0.5, color="k", lw=0.8, ls=":")
        ax.set_xscale("log"); ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("filler tokens after the planted sentence (0 drawn at 0.5)")
        ax.set_ylabel("share of predictions that follow the planted sentence")
        ax.set_title(f"retention probe, {f} filler" + (" (0 = follows the filler)" if f == "opposite" else ""))
        ax.grid(alpha=0.3, which="both"); ax.legend(fontsize=7)
    fig.suptitle(title("Fixed memory bottleneck", "the final state forgets a planted sentence as it moves away "
                       "from the end; pooling all states relieves it", judged))
    fig.tight_layout()
    return fig
