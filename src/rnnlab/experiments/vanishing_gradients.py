"""Shortfall 2, vanishing (and exploding) gradients: the first words of a long review get almost no gradient.

    rnnlab shortfall vanishing-gradients --data ../shared/data/imdb [--quick]

Varies: the length of the measured sequence (50 ... 800 tokens), the distance of a position from the
end, the model (vanilla RNN, LSTM, GRU, and the Transformer for contrast), its stage (at
initialisation, after training) and, for the exploding side, gradient clipping (1.0 or off).
Held fixed: the lab's budget (rnnlab.config.BUDGET: the last 400 tokens, clipping at 1.0, the same
epochs and data); one batch of real test reviews per length, cut to exactly that length and shared
by every model; 3 seeds. Measured, in float64 (a norm computed as the root of its summed squares, so a gradient
below ~1e-154, whose squares underflow, has norm 0 and its ratio is NaN: the vanilla RNN, LSTM and GRU at
initialisation reach it within 800 tokens): the batch-mean ||dL/dh_t|| of
the vanilla RNN written out as a loop over time (`RecurrentClassifier.unrolled`) and, for every
model, ||dL/dx_t|| at the embedding output, against the distance from the last token; their ratio
first/last. During training (rnnlab.train's on_step hook): every step's loss, unclipped gradient
norm, size of the applied W_hh update and, every 10 steps, W_hh's spectral radius.

Claim: in the vanilla RNN the gradient reaching the first of 400 tokens is at least 1000x smaller
than at the last, after training and at initialisation. Questions beside it, not part of it: do the
gated recurrences (LSTM, GRU) keep more than that, and does clipping help training?
One threshold throughout: a ratio below 1e-3 has vanished. Values below float32's smallest normal
number (1.2e-38) are ones float32 training cannot represent: figures draw them as "below float32".
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..config import GRU, LSTM, RNN, TRANSFORMER, with_overrides
from .common import (SEEDS, as_trained, by_seed, fit, fixed_length_batch, is_lab_preset, matching, mean_sd, paired, title,
                     values)
from .stats import UNLESS_CONTROL, combine, judge, needs_control, part_of

NAME = "vanishing-gradients"
PARTS = ("accuracy", "dh", "dx", "ratio", "trace")
VANISHED = -3.0  # log10 of the first/last gradient ratio: below 1e-3 the first step has lost the signal
FLOAT32_TINY = float(np.finfo(np.float32).tiny)  # 1.2e-38
LENGTHS = {"full": (100, 200, 400, 800), "quick": (25, 50, 100)}
BATCH = {"full": 32, "quick": 8}
AT = 400  # the length the claim is judged at: the lab models' training length
RADIUS_EVERY = 10
MODELS = {"rnn": RNN, "lstm": LSTM, "gru": GRU, "transformer": TRANSFORMER}


def settings(mode: str) -> dict:
    return {"lengths": LENGTHS[mode], "batch": BATCH[mode], "judged_at": _at(mode), "seeds": SEEDS[mode],
            "models": {k: as_trained(v, mode).to_dict() for k, v in MODELS.items()}}


def _at(mode: str) -> int:
    return AT if mode == "full" else max(LENGTHS[mode])


def jobs(mode: str):
    out = []
    for seed in SEEDS[mode]:
        for name, cfg in MODELS.items():
            out.append(({"model": name, "clip": cfg.clip, "seed": seed}, fit(with_overrides(cfg, {"seed": seed}), mode)))
        out.append(({"model": "rnn", "clip": 0.0, "seed": seed}, fit(with_overrides(RNN, {"seed": seed, "clip": 0.0}), mode)))
    return out


# --- measurements (run for every trained model: rnnlab.experiments.common.fit_job) -------------------

class Trace:
    """on_step hook: each step's loss, unclipped gradient norm and applied W_hh update; W_hh's spectral radius."""

    def __init__(self):
        self.rows: list[dict] = []
        self.prev = None
        self.n = 0

    def __call__(self, model, row: dict) -> None:
        W = model.rnn.weight_hh_l0.detach()
        self.n += 1
        self.rows += [{"part": "trace", "step": self.n, "metric": "loss", "value": row["loss"]},
                      {"part": "trace", "step": self.n, "metric": "grad_norm_unclipped", "value": row["grad_norm"]}]
        if self.prev is not None:
            self.rows.append({"part": "trace", "step": self.n, "metric": "whh_update_norm",
                              "value": float((W - self.prev).norm())})
        if self.n % RADIUS_EVERY == 1:
            self.rows.append({"part": "trace", "step": self.n, "metric": "spectral_radius", "value": spectral_radius(W)})
        self.prev = W.clone()


def spectral_radius(W: torch.Tensor) -> float:
    return float(torch.linalg.eigvals(W.double().cpu()).abs().max())


def measure(f) -> list[dict]:
    """Gradient profiles of the trained model and of its initialisation (same seed), and the trace."""
    from ..models import build_model
    from ..train import set_seed

    if f.cfg.model == "bow" or not is_lab_preset(f.cfg, "clip"):
        return []  # bow: no order; other variants: no experiment reads their gradients
    set_seed(f.cfg.seed)
    models = {"trained": f.model, "init": build_model(f.cfg, len(f.data.vocab))}
    test = f.data.test.untruncated()
    rows = []
    for stage, model in models.items():
        model = _float64(model)
        for n in LENGTHS[f.mode]:
            if f.cfg.model == "transformer" and n > AT:
                continue  # attention at 800 tokens in float64 costs gigabytes; 400 is its training length
            tokens, lengths, labels = fixed_length_batch(test, n, BATCH[f.mode])
            key = {"stage": stage, "seq_len": n}
            g = embedding_output_grads(model, tokens, lengths, labels.double())
            rows += _profile(key, "dx", g)
            if f.cfg.model == "rnn" and f.cfg.layers == 1:
                rows += _profile(key, "dh", hidden_grads(model, tokens, lengths, labels.double()))
    if f.trace is not None:
        rows += f.trace.rows
    return rows


def _float64(model):
    import copy

    return copy.deepcopy(model).cpu().double().eval()  # measured on the CPU, dropout off


def hidden_grads(model, tokens, lengths, labels) -> np.ndarray:
    """Batch-mean ||dL/dh_t|| of the vanilla RNN, indexed by distance from the final step."""
    logits, hs = model.unrolled(tokens, lengths)
    F.binary_cross_entropy_with_logits(logits, labels).backward()
    g = torch.stack([h.grad for h in hs], 1).norm(dim=-1)  # (B, T)
    model.zero_grad(set_to_none=True)
    return g.flip(1).mean(0).numpy()  # every row has exactly T tokens: distance d is position T-1-d


def embedding_output_grads(model, tokens, lengths, labels) -> np.ndarray:
    """Batch-mean ||dL/dx_t|| at the embedding output (any model), indexed by distance from the end."""
    kept = {}

    def keep(module, inputs, out):
        out.retain_grad()
        kept["x"] = out

    hook = model.embedding.register_forward_hook(keep)
    try:
        F.binary_cross_entropy_with_logits(model(tokens, lengths), labels).backward()
    finally:
        hook.remove()
    g = kept["x"].grad.norm(dim=-1)  # (B, T)
    model.zero_grad(set_to_none=True)
    return g.flip(1).mean(0).detach().numpy()


def _profile(key: dict, part: str, g: np.ndarray) -> list[dict]:
    """The profile at distances 0..50 and log-spaced beyond, plus the first/last ratio and the decay."""
    keep = sorted(set(range(min(len(g), 51))) | set(np.unique(np.geomspace(1, len(g) - 1, 40).astype(int))))
    rows = [{**key, "part": part, "distance": int(d), "metric": "grad_norm", "value": float(g[d])} for d in keep]
    ok = g > 0
    slope = np.polyfit(np.arange(len(g))[ok], np.log(g[ok]), 1)[0] if ok.sum() > 1 else math.nan
    rows += [{**key, "part": "ratio", "metric": f"{part}_log10_first_over_last",
              "value": float(np.log10(g[-1] / g[0])) if g[-1] > 0 and g[0] > 0 else math.nan},  # underflowed: no ratio
             {**key, "part": "ratio", "metric": f"{part}_decay_per_step", "value": float(math.exp(slope))}]
    return rows


# --- verdict -------------------------------------------------------------------------------------

def _ratio(rows, model, stage, n, part="dx") -> dict[int, float]:
    """The first-over-last gradient ratio by seed, of the runs trained as the lab trains (clipping at 1.0)."""
    return by_seed(rows, part="ratio", model=model, clip=1.0, stage=stage, seq_len=n,
                   metric=f"{part}_log10_first_over_last")


def judged_length(rows) -> int:
    """The length the gradient ratio is judged at: the longest measured up to AT (400 in full, 100 quick)."""
    return max((r["seq_len"] for r in rows if r["part"] == "ratio" and r["seq_len"] <= AT), default=AT)


def verdict(rows: list[dict]) -> dict:
    """Judge the claim from the rows alone (pure: tests feed it hand-made rows)."""
    n = judged_length(rows)
    rnn = {s: _ratio(rows, "rnn", s, n, "dh") for s in ("trained", "init")}
    crit = (f"log10 of the batch-mean ||dL/dh_t|| (computed in float64) at the first of {n} tokens over that at the "
            "last, vanilla RNN; "
            f"holds if the 95% interval over seeds lies below {VANISHED:g} (1000x smaller), does not hold if above")
    main = judge("In the vanilla RNN the gradient reaching the first of the review's tokens is at least 1000x "
                 "smaller than at the last, after training", crit, list(rnn["trained"].values()), VANISHED, "below",
                 effect="log10(dL/dh first/last), trained RNN", transform="on log10 ratios")
    at_init = judge("... and at initialisation", crit.replace("vanilla RNN", "vanilla RNN at initialisation"),
                    list(rnn["init"].values()), VANISHED, "below", effect="log10(dL/dh first/last), RNN at init",
                    transform="on log10 ratios")
    gated = {k: judge(f"The {k.upper()} keeps the gradient at the first of {n} tokens: its first/last ratio at the "
                      "embedding output stays above 1e-3, after training",
                      f"log10 first/last of ||dL/dx_t|| at the embedding output, trained {k}; holds if the 95% "
                      f"interval lies above {VANISHED:g}", list(_ratio(rows, k, "trained", n).values()), VANISHED,
                      "above", effect=f"log10(dL/dx first/last), trained {k}", transform="on log10 ratios")
             for k in ("lstm", "gru")}
    gated_init = {k: judge(f"At initialisation the {k.upper()}'s gradient has vanished too",
                           f"log10 first/last at the embedding output, {k} at initialisation, below {VANISHED:g}",
                           list(_ratio(rows, k, "init", n).values()), VANISHED, "below",
                           effect=f"log10(dL/dx first/last), {k} at init", transform="on log10 ratios")
                  for k in ("lstm", "gru")}
    control = judge("Negative control: the Transformer's gradient vanishes with distance too (expected: does not "
                    "hold, attention reaches every position directly)",
                    f"log10 first/last at the embedding output, trained transformer, below {VANISHED:g}",
                    list(_ratio(rows, "transformer", "trained", n).values()), VANISHED, "below",
                    effect="log10(dL/dx first/last), trained transformer", transform="on log10 ratios")
    clip_gain = paired(by_seed(rows, part="accuracy", model="rnn", clip=1.0, metric="test_acc"),
                       by_seed(rows, part="accuracy", model="rnn", clip=0.0, metric="test_acc"))
    exploding = judge("Clipping helps training: the same RNN is more accurate with its gradient norm clipped at 1.0 "
                      "than without (how large the unclipped norms grew: the training trace, not judged)",
                      "test accuracy with clipping minus without, paired by seed; holds if the 95% interval is above 0",
                      clip_gain, 0.0, "above", effect="test acc(clip 1.0) - test acc(no clipping)",
                      numbers=_trace_numbers(rows))
    main["criterion"] += UNLESS_CONTROL
    needs_control(main, control["outcome"],
                  "the negative control did not show the Transformer's gradient reaching the first token")
    main["outcome"] = combine([main["outcome"], at_init["outcome"]])
    main["parts"] = [part_of(at_init, "at initialisation (the claim's second part)")]
    main["claim"] = (f"In the vanilla RNN the gradient reaching the first of {n} tokens is at least 1000x smaller "
                     "than at the last, after training and at initialisation")
    main["numbers"] = {"at_init": at_init["effect"], "judged_at_length": n,
                       "log10_ratio_by_length": {f"{m} {s}": {str(L): mean_sd(values(rows, part="ratio", model=m,
                                                                                    clip=1.0, stage=s, seq_len=L,
                                                                                    metric=f"{p}_log10_first_over_last"))[0]
                                                             for L in sorted({r["seq_len"] for r in rows if r["part"] == "ratio"})}
                                                 for m, p in (("rnn", "dh"), ("lstm", "dx"), ("gru", "dx"),
                                                              ("transformer", "dx")) for s in ("trained", "init")}}
    main["questions"] = [*gated.values(), *gated_init.values(), exploding]
    main["controls"] = [control]
    return main


def _trace_numbers(rows: list[dict]) -> dict:
    out = {}
    for clip in (1.0, 0.0):
        per_seed = []
        for seed in sorted({r["seed"] for r in rows if r["part"] == "trace" and r["clip"] == clip}):
            m = lambda metric: np.array(values(rows, part="trace", clip=clip, seed=seed, metric=metric))  # noqa: E731
            g, u, rad = m("grad_norm_unclipped"), m("whh_update_norm"), m("spectral_radius")
            per_seed.append({"grad_norm_max_over_median": g.max() / np.median(g) if len(g) else math.nan,
                             "steps_above_clip_1": float((g > 1.0).mean()) if len(g) else math.nan,
                             "whh_update_max_over_median": u.max() / np.median(u) if len(u) else math.nan,
                             "spectral_radius_end": rad[-1] if len(rad) else math.nan})
        out[f"clip {clip or 'off'}"] = {k: mean_sd([p[k] for p in per_seed])[0] for k in per_seed[0]} if per_seed else {}
    return out


# --- figure --------------------------------------------------------------------------------------

COLORS = {"rnn": "tab:red", "lstm": "tab:blue", "gru": "tab:green", "transformer": "tab:purple"}


def figure(rows: list[dict], judged: dict):
    """dL/dh_t of the RNN by length; dL/dx_t of each model; the exploding side over training."""
    import matplotlib.pyplot as plt

    from ..plots import tight

    fig, (a, b, c) = plt.subplots(1, 3, figsize=(17, 4.8))
    seeds = sorted({r["seed"] for r in rows})
    lengths = sorted({r["seq_len"] for r in rows if r["part"] == "dh"})
    shades = plt.cm.Reds(np.linspace(0.35, 0.95, max(len(lengths), 1)))

    def curve(ax, part, color, label, ls="-", **m):
        pts = {}
        for r in matching(rows, part=part, **m):
            pts.setdefault(r["distance"], []).append(r["value"])
        d = np.array(sorted(pts))
        y = np.array([np.exp(np.mean(np.log(np.maximum(pts[k], 1e-300)))) for k in d])  # geometric mean over seeds
        ax.plot(d, y, ls, color=color, lw=1.3, label=label)

    for n, col in zip(lengths, shades):
        curve(a, "dh", col, f"T = {n}", model="rnn", clip=1.0, stage="trained", seq_len=n)
        curve(a, "dh", col, None, "--", model="rnn", clip=1.0, stage="init", seq_len=n)
    b_len = max((n for n in lengths if n <= AT), default=None) or max({r["seq_len"] for r in rows if r["part"] == "dx"}, default=0)
    for k, col in COLORS.items():
        curve(b, "dx", col, f"{k} trained", model=k, clip=1.0, stage="trained", seq_len=b_len)
        curve(b, "dx", col, f"{k} at init", "--", model=k, clip=1.0, stage="init", seq_len=b_len)
    for ax, what in ((a, "||dL/dh_t||, vanilla RNN (solid trained, dashed init)"),
                     (b, f"||dL/dx_t|| at the embedding output, T = {b_len}")):
        ax.set_yscale("log")  # distance on a linear axis: exponential decay is a straight line
        ax.axhspan(1e-300, FLOAT32_TINY, color="0.85", zorder=0)
        lo, hi = ax.get_ylim()
        ax.set_ylim(max(lo, 1e-150), hi)  # a curve below is cut: at initialisation in float64 down to 1e-300
        ax.text(0.02, 0.03, "below float32 (1.2e-38): zero in float32 training", transform=ax.transAxes, fontsize=7)
        ax.set_xlabel("distance from the last token (steps)"); ax.set_ylabel("batch mean, geometric mean over seeds")
        ax.set_title(what, fontsize=10); ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, ncol=2, loc="lower left", bbox_to_anchor=(0.0, 0.07))  # where no curve goes
    for clip, col in ((1.0, "tab:blue"), (0.0, "tab:red")):
        pts = sorted((r["step"], r["value"]) for r in rows if r["part"] == "trace" and r["clip"] == clip
                     and r.get("seed") == seeds[0] and r["metric"] == "grad_norm_unclipped")
        if pts:
            c.plot(*zip(*pts), color=col, lw=0.6, alpha=0.8, label=f"unclipped gradient norm, clip {clip or 'off'}")
    c.axhline(1.0, color="k", lw=0.8, ls=":", label="clip threshold 1.0")
    c.set_yscale("log"); c.set_xlabel(f"training step (vanilla RNN, seed {seeds[0] if seeds else ''})")
    c.set_ylabel("gradient norm before clipping"); c.grid(alpha=0.3, which="both"); c.legend(fontsize=7)
    ex = next((q for q in judged.get("questions", []) if "clipping" in q["claim"].lower()), None)
    c.set_title(f"exploding side: clipping {ex['outcome'] if ex else ''}", fontsize=10)
    fig.suptitle(title("Vanishing gradients", judged, f"the lab's vanilla RNN, LSTM, GRU and Transformer "
                       f"(preset rnn/lstm/gru/transformer), {len(seeds)} seed{'' if len(seeds) == 1 else 's'}; "
                       "gradients in float64"))
    tight(fig)
    return fig
