"""Shortfall 4, the fixed memory bottleneck: the final hidden state keeps what came last.

    rnnlab shortfall bottleneck --data ../shared/data/imdb [--quick]

Varies: the hidden size of the vanilla RNN (32 ... 256), how its classifier reads it (the final
state, or the mean or max over all states) and, in a retention probe, the distance between a
planted passage and the end of the sequence. Held fixed: the lab's budget (rnnlab.config.BUDGET:
the last 400 tokens, the same epochs, data and seeds); embedding 100. Measured: test accuracy by
hidden size and review length, and the retention probe: two strongly polar sentences from a real
test review (the "passage") are planted in neutral filler (test sentences without polar words) of
fixed total length, `d` filler tokens before the end, and we count how often the prediction follows
the passage. Only the passage's position changes, so a model with a perfect memory follows it at
every distance; a model that ignores it follows it half of the time.

Claim: what the final hidden state retains fades with distance from the end (the prediction follows
the passage near the end far more often than far from it), a wider state still forgets, and reading
all hidden states (mean pooling) relieves it: far from the end, the mean-pooled RNN follows the passage
more often than the final-state RNN and more often than chance; where that is not shown, it does not hold if the
mean-pooled RNN's own follow rate fades as the final state's does (judged as the final state's fade, so only where
it follows the passage near the end and the negative control keeps it: one that never follows it leaves the question
open). Max pooling is judged the same way
as a question beside the claim, not part of it. Negative control: the Transformer, whose attention reads every
position directly, should not fade.
"""
from __future__ import annotations

import re

import numpy as np
import torch

from ..config import GRU, LSTM, RNN, TRANSFORMER, with_overrides
from ..data import DataError
from ..text import UNK, tokenize
from .common import SEEDS, by_seed, fit, mean_sd, paired, title, values
from .stats import FAILS, UNLESS_CONTROL, HOLDS, UNDECIDED, combine, demote, judge, needs_control, part_of

NAME = "bottleneck"
PARTS = ("accuracy", "by_length", "probe")
FADE = 0.2  # "fades": the follow rate drops by at least 0.2 from the nearest to the farthest distance
HIDDEN = {"full": (32, 64, 128, 256), "quick": (16, 32)}
REF = {"full": 128, "quick": 16}  # the size the pooled models and the claim are judged at (a wider one is trained)
DISTANCES = {"full": (0, 10, 25, 50, 100, 200, 350), "quick": (0, 25, 100)}
PROBES = 60  # per polarity and distance
STEP = 1 / (2 * PROBES)  # a follow rate's resolution: identical rates decide only beyond it (stats.judge)
SENTENCES = 20  # planted passages per polarity (the most polar found)
MIN_COUNT = 20  # words seen fewer times in train get no polarity (their log-odds is noise)
KEPT = "the negative control did not show the Transformer keeping the passage"  # why a gated part is undecided
PREFIX = 8  # filler tokens always before the passage
SENTENCE_LEN = (4, 12)  # each planted sentence has 4-12 tokens; a passage is two of them


def settings(mode: str) -> dict:
    return {"hidden_sizes": HIDDEN[mode], "pooled_at": REF[mode], "distances": DISTANCES[mode],
            "probes_per_cell": PROBES, "seeds": SEEDS[mode], "fade_threshold": FADE}


def variants(mode: str) -> list[tuple[dict, object]]:
    """(tag, config) of every model the experiment reads."""
    out = [({"model": "rnn", "hidden_dim": h, "pool": "last"}, with_overrides(RNN, {"hidden_dim": h}))
           for h in HIDDEN[mode]]
    out += [({"model": "rnn", "hidden_dim": REF[mode], "pool": p}, with_overrides(RNN, {"hidden_dim": REF[mode], "pool": p}))
            for p in ("mean", "max")]
    out += [({"model": k, "hidden_dim": c.hidden_dim, "pool": c.pool}, c)
            for k, c in (("lstm", LSTM), ("gru", GRU), ("transformer", TRANSFORMER))]
    return out


def jobs(mode: str):
    return [({**tag, "seed": s}, fit(with_overrides(cfg, {"seed": s}), mode)) for tag, cfg in variants(mode)
            for s in SEEDS[mode]]


# --- the retention probe (run for every trained model: rnnlab.experiments.common.fit_job) ------------

_PROBES: dict = {}  # built once per process and data


def measure(f) -> list[dict]:
    """The share of probes whose prediction follows the planted passage, per distance."""
    probes = _probes(f)
    follows = follow_rates(f.model, probes, f.device)
    return [{"part": "probe", "distance": d, "metric": "follow_rate", "value": v} for d, v in follows.items()]


def _probes(f) -> dict:
    from ..prepare import prepare

    key = (f.ds.fingerprint(), f.cfg.vocab_size, f.cfg.strip_html, f.mode)
    if key not in _PROBES:
        full = prepare(with_overrides(f.cfg, {"val_fraction": 0.0, "max_len": 0}), f.ds)
        _PROBES.clear()
        _PROBES[key] = build_probes(f.ds, full, DISTANCES[f.mode])
    return _PROBES[key]


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


def build_probes(ds, full, distances) -> dict:
    """Probe sequences of one fixed length: neutral filler, a planted passage, then `d` filler tokens.

    Passages: the two most polar 4-12-token sentences of a test review (mean word log-odds from train),
    from the reviews whose passages are most polar for their label. Filler: test sentences whose most polar word is least
    polar, joined. PROBES (passage, filler) pairs are drawn per polarity, and each is planted at every distance: the
    probes of two distances differ only in where the passage sits, so a fade compares the same probes.
    """
    rng = np.random.default_rng(0)  # the same probes for every model, seed and run
    lo, vocab = word_polarity(full), full.vocab
    texts, labels = ds.test.texts, ds.test.labels
    polar: dict[int, list] = {0: [], 1: []}
    neutral = []
    for i in rng.permutation(len(texts))[:5000]:  # enough sentences; the rest would only cost time
        found = []
        for s in _SENTENCE_END.split(texts[i]):
            ids = [vocab.stoi.get(w, UNK) for w in tokenize(s, vocab.strip_html)]
            if len(ids) < 3:
                continue
            w = lo[ids]
            if SENTENCE_LEN[0] <= len(ids) <= SENTENCE_LEN[1]:
                found.append((float(w.mean()), s.strip(), ids))
            if len(ids) <= 40:
                neutral.append((float(np.abs(w).max()), ids))
        sign = 1 if labels[i] == 1 else -1
        found = sorted((p for p in found if sign * p[0] > 0), key=lambda p: -sign * p[0])[:2]
        if found:  # a passage: the review's two most polar short sentences (one if it has only one)
            polar[int(labels[i])].append((sign * float(np.mean([p[0] for p in found])), " ".join(p[1] for p in found),
                                          [t for p in found for t in p[2]]))
    passages = {y: sorted(polar[y], key=lambda p: -p[0])[:SENTENCES] for y in (0, 1)}
    if not passages[0] or not passages[1]:
        raise DataError(f"{ds.test.source}: the retention probe found no polar passage of each polarity in the test reviews")
    neutral = [ids for _, ids in sorted(neutral, key=lambda p: p[0])[:300]]
    N = max(distances) + 2 * SENTENCE_LEN[1] + PREFIX
    stream = np.concatenate([neutral[j] for j in rng.permutation(len(neutral))])
    stream = np.tile(stream, int(np.ceil(2 * N / max(len(stream), 1)))) if len(stream) < 2 * N else stream
    drawn = []  # (polarity, passage, filler): each planted at every distance, so only its position changes
    for y in (1, 0):
        for _ in range(PROBES):
            passage = np.asarray(passages[y][rng.integers(len(passages[y]))][2])
            m = N - len(passage)  # filler tokens in this probe
            start = rng.integers(0, len(stream) - m + 1)
            drawn.append((y, passage, stream[start:start + m]))
    tokens, distance, polarity = [], [], []
    for d in distances:
        for y, passage, fill in drawn:
            tokens.append(np.concatenate([fill[:len(fill) - d], passage, fill[len(fill) - d:]]))
            distance.append(d)
            polarity.append(y)
    return {"tokens": torch.from_numpy(np.stack(tokens).astype(np.int64)), "distance": np.array(distance),
            "polarity": np.array(polarity), "examples": {y: [p[1] for p in passages[y][:3]] for y in (0, 1)}}


PROBE_BATCH = 256  # probes scored at once


@torch.no_grad()
def follow_rates(model, probes: dict, device) -> dict[int, float]:
    """Share of probes whose predicted label is the planted passage's, per distance."""
    was = model.training
    model.eval()
    tokens = probes["tokens"]
    lengths = torch.full((len(tokens),), tokens.shape[1], dtype=torch.int64)
    b = PROBE_BATCH
    pred = np.concatenate([(model(tokens[i:i + b].to(device), lengths[i:i + b].to(device)) > 0).cpu().numpy()
                           for i in range(0, len(tokens), b)])
    model.train(was)
    follow = pred.astype(np.int64) == probes["polarity"]
    return {int(d): float(follow[probes["distance"] == d].mean()) for d in sorted(set(probes["distance"]))}


# --- verdict ------------------------------------------------------------------------------------

def _follow(rows, d, **m) -> dict[int, float]:
    return by_seed(rows, part="probe", distance=d, **m)


def _fade(rows, near, far, **m) -> list[float]:
    return paired(_follow(rows, near, **m), _follow(rows, far, **m))


def _heard(rows, near: int, **m) -> tuple[bool, dict]:
    """Whether the model follows the passage at `near` above chance (95% interval), and that effect."""
    rates = list(_follow(rows, near, **m).values())  # every seed at 0.9, or every probe followed: no doubt either
    heard = judge("", "", [r - 0.5 for r in rates], 0.0, "above", effect=f"follow({near}) - 0.5", step=STEP)
    return heard["outcome"] == HOLDS, heard["effect"]


def judge_fade(claim: str, criterion: str, rows, near: int, far: int, effect: str, resolution: float = 0.0,
               **m) -> dict:
    """A fade (follow rate at `near` minus at `far`, paired by seed) judged above FADE; decided only where the model
    follows the passage at `near` above chance: one at chance there has nothing to lose, and a fade of 0 would
    read as a memory that keeps it. `resolution`: STEP for a negative control, whose fade may be 0 at every seed by
    design (stats.judge's step); 0 for a claim, where identical values stay undecided. (`m` filters the rows.)"""
    v = judge(claim, criterion, _fade(rows, near, far, **m), FADE, "above", effect=effect, step=resolution)
    heard, near_effect = _heard(rows, near, **m)
    v["numbers"] = {**v["numbers"], "near_above_chance": near_effect}
    if not heard:
        demote(v, f"not shown to follow the passage above chance even at distance {near}: nothing to fade from")
    return v


def _relieves(rows, p: str, near: int, far: int, ref: int, final: dict, control: str) -> dict:
    """Pooling relieves the bottleneck: far from the end the pooled RNN follows the passage more often than the
    final-state RNN, and more often than chance (beating a final state that sits at chance is not reading it).
    Where that is not shown, it does not hold if the pooled RNN forgets too: its own follow rate fades by more than
    FADE, judged as the final state's fade (so only where it follows the passage near the end, else the probe cannot
    tell) and, as that fade is, only where the negative control (`control`: its outcome) shows attention keeping it."""
    pooled = {"model": "rnn", "hidden_dim": ref, "pool": p}
    far_p = _follow(rows, far, **pooled)
    v = judge(f"Reading all hidden states ({p} pooling) relieves it: far from the end, the {p}-pooled RNN follows the "
              "passage more often than the final-state RNN, and more often than chance",
              f"follow rate at distance {far}, {p}-pooled minus final-state (hidden {ref}), paired by seed, 95% interval "
              f"above 0; and the {p}-pooled RNN's own follow rate there above chance (0.5; 95% interval above); where "
              f"that is not shown, does not hold if the {p}-pooled RNN's own follow rate fades (distance {near} -> "
              f"{far}, 95% interval above {FADE}, decided only where it follows the passage above chance at distance "
              f"{near}, and only if the negative control does not hold)",
              paired(far_p, _follow(rows, far, **final)), 0.0, "above", effect=f"follow({far}) {p}-pooled - final state")
    chance = judge("", "", [r - 0.5 for r in far_p.values()], 0.0, "above", effect=f"follow({far}) {p}-pooled - 0.5",
                   step=STEP)
    fades = judge_fade("", "", rows, near, far, f"drop in follow rate, {p}-pooled", **pooled)
    v["outcome"] = combine([v["outcome"], chance["outcome"]])
    if v["outcome"] != HOLDS and fades["outcome"] == HOLDS:
        v["outcome"] = FAILS
        if control != FAILS:  # a probe that shows attention fading too cannot tell a memory's fade
            demote(v, KEPT)
    elif v["outcome"] == UNDECIDED and "undecided" not in v["effect"] and not _heard(rows, near, **pooled)[0]:
        v["effect"]["undecided"] = (f"the {p}-pooled RNN is not shown to follow the passage above chance even at "
                                    f"distance {near}: the probe cannot tell whether {p} pooling relieves it")
    v["numbers"] = {"above_chance": chance["effect"], "own_drop": fades["effect"]}
    v["parts"] = [part_of(chance, f"the {p}-pooled RNN above chance"),  # the report names the one that decided
                  {"part": f"the {p}-pooled RNN's own fade",
                   "outcome": FAILS if fades["outcome"] == HOLDS else UNDECIDED}]
    return v


def verdict(rows: list[dict]) -> dict:
    """Judge the claim from the rows alone (pure: tests feed it hand-made rows)."""
    dists = sorted({r["distance"] for r in rows if r["part"] == "probe"}) or [0]
    near, far = dists[0], dists[-1]
    last_h = sorted({r["hidden_dim"] for r in rows if r["part"] == "probe" and r["model"] == "rnn" and r["pool"] == "last"})
    pooled_h = sorted({r["hidden_dim"] for r in rows if r["part"] == "probe" and r["model"] == "rnn" and r["pool"] != "last"})
    ref = pooled_h[0] if pooled_h else (128 if 128 in last_h or not last_h else last_h[0])  # REF: the pooled RNNs' size
    widest = max(last_h, default=ref)
    final = {"model": "rnn", "hidden_dim": ref, "pool": "last"}
    fade_crit = (f"follow rate at distance {near} minus at distance {far}, paired by seed; holds if the 95% interval "
                 f"lies above {FADE}, does not hold if below; decided only where the model's follow rate at distance "
                 f"{near} is above chance (0.5; 95% interval above)")
    control = judge_fade("Negative control: the Transformer's follow rate fades with distance too (expected: does not "
                         "hold, attention reads every position directly)", fade_crit, rows, near, far,
                         "drop in follow rate, transformer", resolution=STEP, model="transformer")
    forgets = judge_fade(f"The final hidden state forgets: the vanilla RNN (hidden {ref}) follows a passage planted "
                         f"{near} tokens before the end far more often than one planted {far} tokens before it",
                         fade_crit + UNLESS_CONTROL, rows, near, far, "drop in follow rate, near - far", **final)
    wider_than = f"hidden {widest}" if widest > ref else f"a state wider than {ref}"
    wide_claim = f"A wider state still forgets: the same at {wider_than}"
    wide_effect = f"drop in follow rate, {wider_than}"
    wider = (judge_fade(wide_claim, fade_crit + UNLESS_CONTROL, rows, near, far, wide_effect, model="rnn", hidden_dim=widest,
                        pool="last") if widest > ref
             else judge(wide_claim, fade_crit + UNLESS_CONTROL, [], FADE, "above", effect=wide_effect))  # nothing wider: undecided
    if widest <= ref:
        wider["effect"]["undecided"] = f"no state wider than hidden {ref} was trained"
    for v in (forgets, wider):  # a probe that shows attention fading too cannot tell a memory's fade
        needs_control(v, control["outcome"], KEPT)
    pooled = {p: _relieves(rows, p, near, far, ref, final, control["outcome"]) for p in ("mean", "max")}
    models = sorted({(r["model"], r["hidden_dim"], r["pool"]) for r in rows if r["part"] == "probe"})
    return {
        "claim": "What the final hidden state retains fades with distance from the end, a wider state still forgets, "
                 "and reading all hidden states (mean pooling) relieves it",
        "criterion": f"all three: the final-state RNN's drop in follow rate (distance {near} -> {far}) above {FADE} at "
                     f"hidden {ref} and at {f'hidden {widest}' if widest > ref else 'a wider state (none trained)'}, "
                     f"and the mean-pooled RNN's follow rate at distance {far} above the final-state RNN's and above "
                     "chance (95% intervals over seeds); where that is not shown, the mean-pooled part does not hold if "
                     f"its own follow rate fades as the final state's does (drop above {FADE})",
        "outcome": combine([forgets["outcome"], wider["outcome"], pooled["mean"]["outcome"]]),
        "effect": forgets["effect"],
        "numbers": {
            "follow_rate_mean_over_seeds": {f"{m} h{h} {p}": {str(d): mean_sd(list(_follow(
                rows, d, model=m, hidden_dim=h, pool=p).values()))[0] for d in dists} for m, h, p in models},
            "test_acc_mean_sd": {f"{m} h{h} {p}": mean_sd(values(rows, part="accuracy", metric="test_acc", model=m,
                                                                 hidden_dim=h, pool=p)) for m, h, p in models}},
        "parts": [part_of(wider), part_of(pooled["mean"])],  # with `forgets`, whose effect the claim shows
        "questions": [forgets, wider, pooled["mean"], pooled["max"]],
        "controls": [control],
    }


# --- figure --------------------------------------------------------------------------------------

def figure(rows: list[dict], judged: dict):
    """Follow rate against distance; accuracy against hidden size by review length."""
    import matplotlib.pyplot as plt

    from ..plots import MODEL_COLORS, accuracy_floor, below_chance, tight

    fig, (a, b) = plt.subplots(1, 2, figsize=(14, 4.8))
    seeds = sorted({r["seed"] for r in rows})
    dists = sorted({r["distance"] for r in rows if r["part"] == "probe"})
    xs = [max(d, 3) for d in dists]
    models = sorted({(r["model"], r["hidden_dim"], r["pool"]) for r in rows if r["part"] == "probe"})
    hs = sorted({h for m, h, p in models if m == "rnn" and p == "last"})
    shades = dict(zip(hs, plt.cm.Reds(np.linspace(0.35, 0.95, max(len(hs), 1)))))
    for m, h, p in models:
        ms = [mean_sd(list(_follow(rows, d, model=m, hidden_dim=h, pool=p).values())) for d in dists]
        if m == "rnn" and p == "last":
            style = dict(color=shades[h], marker="o", ls="-", label=f"RNN final state, hidden {h}")
        elif m == "rnn":
            style = dict(color="tab:orange" if p == "mean" else "tab:brown", marker="^", ls="--",
                         label=f"RNN {p} over all states, hidden {h}")
        else:
            style = dict(color=MODEL_COLORS.get(m), marker="s", ls=":", label=f"{m} (preset {m})")
        a.errorbar(xs, [v for v, _ in ms], yerr=[s for _, s in ms], capsize=2, lw=1.3, **style)
    a.axhline(0.5, color="k", lw=0.8, ls=":")
    a.set_xscale("log"); a.set_ylim(0.4, 1.02)
    a.set_xticks(xs, [str(d) for d in dists])
    a.set_xlabel("filler tokens after the planted passage"); a.set_ylabel("share of predictions following it")
    a.set_title("retention probe (0.5 = ignores the passage)", fontsize=10); a.grid(alpha=0.3)
    a.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.2))  # below: off the curves
    buckets = list(dict.fromkeys(r["bucket"] for r in rows if r["part"] == "by_length" and r["metric"] == "test_acc"))
    width, lows = 0.8 / max(len(hs), 1), []
    for i, h in enumerate(hs):
        ms = [mean_sd(values(rows, part="by_length", metric="test_acc", model="rnn", hidden_dim=h, pool="last",
                             bucket=bk)) for bk in buckets]
        lows += [v - s for v, s in ms]
        b.bar(np.arange(len(buckets)) + i * width, [v - 0.5 for v, _ in ms], width, bottom=0.5, yerr=[s for _, s in ms],
              capsize=2, color=shades[h], label=f"hidden {h}")
    b.set_xticks(np.arange(len(buckets)) + width * (len(hs) - 1) / 2, buckets)
    b.set_ylim(accuracy_floor(lows), 1.0); b.set_xlabel("review length (tokens, before truncation)")
    b.set_ylabel("test accuracy (mean ± sd over seeds)")
    b.set_title("vanilla RNN, final state: accuracy by hidden size and length", fontsize=10)
    b.legend(fontsize=7); b.grid(alpha=0.3, axis="y")
    fig.suptitle(title("Fixed memory bottleneck", judged, f"preset rnn at the lab's budget (hidden size varied), "
                       f"{len(seeds)} seed{'' if len(seeds) == 1 else 's'}; bars from chance (0.5)"
                       + (", down where below it" if below_chance(b) else "")))
    tight(fig)
    return fig
