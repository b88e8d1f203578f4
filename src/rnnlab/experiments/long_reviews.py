"""Shortfall 1, long reviews: reading more of a review stops paying off for the vanilla RNN.

    rnnlab shortfall long-reviews --data ../shared/data/imdb [--quick]

Varies: the maximum review length (tokens kept per review: 50 ... 400 and the whole review), which
part is kept (head: the first tokens, tail: the last) and the model: the vanilla RNN, and the
neural bag of embeddings as the negative control (it has no memory to overflow). Held fixed: the
lab's budget (rnnlab.config.BUDGET: the same epochs, data, selection on validation and 3 seeds).
Measured: test accuracy for each setting, and by the review's own length.

Claim (comparator declared in advance: the last 200 tokens): reading whole reviews is no more
accurate for the vanilla RNN than reading their last 200 tokens (a gain below one point). The bag of
embeddings, run the same way, should gain from the extra words: if the test cannot tell the two
apart, it cannot see the shortfall, so the claim holds only where that negative control does not hold
(otherwise a "holds" becomes inconclusive; a "does not hold" stands: the RNN gained, whatever the bag did). Also: the end of a review carries more
than its start (tail beats head), and the RNN reading whole reviews loses more accuracy on long reviews
than the bag does.
"""
from __future__ import annotations

import numpy as np

from ..config import BOW, RNN, with_overrides
from .common import SEEDS, by_seed, diff, fit, mean_over, mean_sd, paired, title, values
from .stats import UNLESS_CONTROL, judge, needs_control

NAME = "long-reviews"
PARTS = ("accuracy", "by_length")
GAIN = 0.01  # "pays off": whole reviews beat the comparator by at least one point
COMPARATOR = 200  # the last 200 tokens
RNN_LENGTHS = {"full": ((50, "tail"), (100, "tail"), (200, "tail"), (400, "tail"), (0, "tail"), (100, "head"),
                        (400, "head")),
               "quick": ((50, "tail"), (200, "tail"), (0, "tail"), (50, "head"))}
BOW_LENGTHS = {"full": ((200, "tail"), (400, "tail"), (0, "tail")), "quick": ((200, "tail"), (0, "tail"))}
SHORT, LONG = ("0-100",), ("400-800", "800+")  # review-length buckets compared


def settings(mode: str) -> dict:
    return {"rnn": RNN_LENGTHS[mode], "bow": BOW_LENGTHS[mode], "comparator": f"tail {COMPARATOR}",
            "gain_threshold": GAIN, "seeds": SEEDS[mode]}


def jobs(mode: str):
    out = []
    for model, base, lengths in (("rnn", RNN, RNN_LENGTHS[mode]), ("bow", BOW, BOW_LENGTHS[mode])):
        for n, trunc in lengths:
            for s in SEEDS[mode]:
                cfg = with_overrides(base, {"max_len": n, "truncate": trunc, "seed": s})
                out.append(({"model": model, "max_len": n, "truncate": trunc if n else "whole", "seed": s},
                            fit(cfg, mode)))
    return out


# --- verdict ------------------------------------------------------------------------------------

def _acc(rows, model, n, trunc) -> dict[int, float]:
    return by_seed(rows, part="accuracy", metric="test_acc", model=model, max_len=n, truncate=trunc)


def _bucket_acc(rows, model, buckets) -> dict[int, float]:
    """Per seed: test accuracy over the reviews in `buckets` (count-weighted), whole-review model."""
    out = {}
    for s in sorted({r["seed"] for r in rows}):
        m = dict(part="by_length", model=model, max_len=0, seed=s)
        acc = [(values(rows, metric="test_acc", bucket=b, **m), values(rows, metric="reviews", bucket=b, **m))
               for b in buckets]
        n = sum(c[0] for _, c in acc if c)
        if n:
            out[s] = sum(a[0] * c[0] for a, c in acc if a and c) / n
    return out


def verdict(rows: list[dict]) -> dict:
    """Judge the claim from the rows alone (pure: tests feed it hand-made rows)."""
    crit = (f"test accuracy reading whole reviews minus reading their last {COMPARATOR} tokens, paired by seed; "
            f"holds if the 95% interval lies below {GAIN} (less than one point gained), does not hold if above")
    main = judge(f"Reading whole reviews is no more accurate for the vanilla RNN than reading their last {COMPARATOR} "
                 "tokens", crit, paired(_acc(rows, "rnn", 0, "whole"), _acc(rows, "rnn", COMPARATOR, "tail")),
                 GAIN, "below", effect=f"acc(whole) - acc(last {COMPARATOR}), vanilla RNN")
    control = judge("Negative control: the same for the bag of embeddings (expected: does not hold, it gains from "
                    "the extra words)", crit, paired(_acc(rows, "bow", 0, "whole"), _acc(rows, "bow", COMPARATOR, "tail")),
                    GAIN, "below", effect=f"acc(whole) - acc(last {COMPARATOR}), bag of embeddings")
    main["criterion"] += UNLESS_CONTROL
    needs_control(main, control["outcome"], "the negative control did not show the bag of embeddings gaining either")
    both = sorted({r["max_len"] for r in rows if r.get("truncate") == "head"}
                  & {r["max_len"] for r in rows if r.get("truncate") == "tail"})
    tail_head = mean_over([diff(_acc(rows, "rnn", n, "tail"), _acc(rows, "rnn", n, "head")) for n in both])
    tail = judge(f"The end of a review carries more than its start: keeping the last N tokens beats keeping the "
                 f"first N (N = {', '.join(map(str, both))})",
                 "test accuracy tail minus head, averaged over N, paired by seed; holds if the 95% interval lies above 0",
                 tail_head, 0.0, "above", effect="acc(tail N) - acc(head N), mean over N")
    drop = {m: diff(_bucket_acc(rows, m, LONG), _bucket_acc(rows, m, SHORT)) for m in ("rnn", "bow")}
    deeper = judge("Long reviews hurt the RNN more than the bag of embeddings: reading whole reviews, its accuracy "
                   "on reviews over 400 tokens falls further below its accuracy on reviews of at most 100",
                   "per seed, (acc on > 400 tokens - acc on <= 100) of the RNN minus that of the bag of embeddings; "
                   "holds if the 95% interval lies below 0",
                   paired(drop["rnn"], drop["bow"]), 0.0, "below",
                   effect="RNN's long-short drop minus the bag's",
                   numbers={"long_minus_short": {m: list(d.values()) for m, d in drop.items()}})
    settings_ = sorted({(r["model"], r["max_len"], r["truncate"]) for r in rows if r["part"] == "accuracy"})
    main["numbers"] = {"test_acc_mean_sd": {f"{m} {n or ''} {t}".replace("  ", " "): mean_sd(list(_acc(rows, m, n, t).values()))
                                            for m, n, t in settings_}}
    main["questions"] = [tail, deeper]
    main["controls"] = [control]
    return main


# --- figure --------------------------------------------------------------------------------------

def figure(rows: list[dict], judged: dict):
    """Accuracy against tokens kept (RNN head/tail, bag of embeddings); accuracy by review length."""
    import matplotlib.pyplot as plt

    from ..plots import MODEL_COLORS, accuracy_floor, below_chance, tight

    fig, (a, b) = plt.subplots(1, 2, figsize=(14, 4.8))
    seeds = sorted({r["seed"] for r in rows})
    lengths = sorted({r["max_len"] for r in rows if r["part"] == "accuracy"}, key=lambda n: n or 10 ** 9)
    xpos = {n: i for i, n in enumerate(lengths)}
    lows = []
    for model, trunc, marker, ls in (("rnn", "tail", "o", "-"), ("rnn", "head", "s", "--"), ("bow", "tail", "D", "-")):
        pts = [n for n in lengths if _acc(rows, model, n, trunc if n else "whole")]
        ms = [mean_sd(list(_acc(rows, model, n, trunc if n else "whole").values())) for n in pts]
        lows += [v - s for v, s in ms]
        if pts:
            a.errorbar([xpos[n] + (0.06 if trunc == "head" else 0) for n in pts], [v for v, _ in ms],
                       yerr=[s for _, s in ms], marker=marker, ls=ls, capsize=3, color=MODEL_COLORS[model],
                       alpha=1.0 if trunc == "tail" else 0.6,
                       label={"rnn": "vanilla RNN", "bow": "bag of embeddings"}[model] + f", {trunc} (whole = all)")
    a.set_xticks(range(len(lengths)), [str(n) if n else "whole" for n in lengths])
    a.set_ylim(accuracy_floor(lows), 1.0); a.set_xlabel("tokens kept per review")
    a.set_ylabel("test accuracy (mean ± sd over seeds)")
    a.set_title(f"accuracy against the tokens read (comparator: last {COMPARATOR})", fontsize=10)
    a.grid(alpha=0.3); a.legend(fontsize=7)
    buckets = list(dict.fromkeys(r["bucket"] for r in rows if r["part"] == "by_length" and r["max_len"] == 0))
    lows = []
    for i, model in enumerate(("rnn", "bow")):
        ms = [mean_sd(values(rows, part="by_length", metric="test_acc", model=model, max_len=0, bucket=bk))
              for bk in buckets]
        lows += [v - s for v, s in ms]
        b.bar(np.arange(len(buckets)) + i * 0.4, [v - 0.5 for v, _ in ms], 0.4, bottom=0.5, yerr=[s for _, s in ms],
              capsize=3, color=MODEL_COLORS[model], label={"rnn": "vanilla RNN", "bow": "bag of embeddings"}[model])
    b.set_xticks(np.arange(len(buckets)) + 0.2, buckets)
    b.set_ylim(accuracy_floor(lows), 1.0); b.set_xlabel("review length (tokens)")
    b.set_ylabel("test accuracy (mean ± sd)")
    b.set_title("models reading whole reviews, by review length", fontsize=10); b.grid(alpha=0.3, axis="y")
    b.legend(fontsize=7)
    fig.suptitle(title("Long reviews", judged, f"presets rnn and bow at the lab's budget, tokens kept varied, "
                       f"{len(seeds)} seed{'' if len(seeds) == 1 else 's'}; accuracy axes from chance (0.5)"
                       + (" or below, where a model is" if below_chance(a, b) else "")))
    tight(fig)
    return fig
