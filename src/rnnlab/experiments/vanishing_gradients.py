"""Shortfall 2, vanishing (and exploding) gradients: early tokens get almost no gradient.

    rnnlab shortfall vanishing-gradients --data ../shared/data/imdb [--quick]

Varies: the sequence length (e.g. 25 ... 800 tokens) and the distance of a hidden state from the
final step; the model kind (vanilla RNN, LSTM, GRU) and its stage (at initialisation, after
training). Held fixed: one batch per length, real test reviews cut to exactly that length and
shared by every model; the notebook's sizes (embedding 100, hidden 128); every trained model gets
the same training (last 200 tokens, clipping at 1.0, the seed's tokenizer and vocabulary).
Measured: the batch-mean ||dL/dh_t|| of the vanilla RNN written out as a loop over time
(`RecurrentClassifier.unrolled`), its fitted per-step decay, g_first/g_last and the steps until it
has fallen 1000x; for all three kinds the gradient at the embedding output aligned by distance from
each review's last token; the notebook's own measure (the embedding weight's gradient norm) against
length; and the exploding side: the unclipped gradient norm at every step and the spectral radius
of W_hh over a seed-preset training run, with and without clipping.
Claim: in the vanilla RNN the gradient reaching h_t falls exponentially with distance from the
final step, so on long sequences the first steps get >= 1000x less gradient than the last, both
at initialisation and after training.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..batching import batch_indices
from ..config import preset, with_overrides
from ..data import Dataset
from ..models import build_model
from ..train import resolve_device, set_seed
from .common import (Log, UNDERFLOW, accuracy, conclude, fit, fixed_length_batch, linear_fit, one, predict,
                     prepare_untruncated, subsample, tagged, title, truncated)

NAME = "vanishing-gradients"
COLUMNS = ("part", "model", "stage", "clip", "seq_len", "distance", "step", "metric", "value")
KINDS = ("rnn", "lstm", "gru")
VANISHED = 1e-3  # "vanished": the first step gets at most 1/1000 of the last step's gradient
GATED_MARGIN = 1.0  # gated models keep >= 10x (one decade) more of the far gradient than the RNN
NOTEBOOK_DROP = 0.5  # the notebook's measure "shrinks" if it halves from the shortest to the longest length
SPIKE = 10.0  # exploding: the largest unclipped norm of a run is >= 10x its median


@dataclass(frozen=True)
class Sweep:
    """What one run of the experiment measures; FULL gives the real numbers, QUICK a smoke test."""

    lengths: tuple[int, ...] = (25, 50, 100, 200, 400, 800)
    batch: int = 32  # reviews in the measured batch
    trace_epochs: int = 5  # the seed preset's own 5 epochs (whole reviews), with and without clipping
    radius_every: int = 10  # steps between spectral-radius readings
    train_len: int = 200  # the trained RNN/LSTM/GRU read each review's last train_len tokens
    train_epochs: int = 1
    n_train: int = 0  # reviews per split (class-balanced, seeded); 0 = all
    n_test: int = 0
    embed_dim: int = 100
    hidden_dim: int = 128


FULL = Sweep()
QUICK = Sweep(lengths=(25, 100, 400), batch=16, trace_epochs=1, n_train=2000, n_test=1000)


def run(ds: Dataset, out_dir: Path, quick: bool = False, device: str = "auto", log: Log = print,
        sweep: Sweep | None = None) -> list[dict]:
    """Varies sequence length, distance from the final step, model kind and stage (init, trained);
    holds fixed one real batch per length shared by every model, sizes and training. Tests: the
    RNN's gradient at the first step of long sequences is >= 1000x below the last step's, at init
    and after training (plus the LSTM/GRU contrast, the notebook's measure, the exploding side)."""
    started = time.perf_counter()
    sw = sweep or (QUICK if quick else FULL)
    log = tagged(log, NAME)
    dev = resolve_device(device)
    ds = subsample(ds, sw.n_train, sw.n_test)
    # the seed's tokenizer and vocabulary for every model, so each reads the very same token ids
    seed_cfg = with_overrides(preset("seed"), {"test_every_epoch": False, "embed_dim": sw.embed_dim,
                                               "hidden_dim": sw.hidden_dim, "device": device})
    prep = prepare_untruncated(seed_cfg, ds, log)
    batches = {n: tuple(t.to(dev) for t in fixed_length_batch(prep.test, n, sw.batch)) for n in sw.lengths}
    rows: list[dict] = []

    # 1. the exploding side: every step's unclipped gradient norm, W_hh's spectral radius
    for clip in (0.0, 1.0):
        cfg = with_overrides(seed_cfg, {"clip": clip, "epochs": sw.trace_epochs})
        trace, model = trace_training(cfg, prep.train, len(prep.vocab), sw.radius_every, dev, log)
        rows += trace
        acc = accuracy(predict(model, prep.test, dev), prep.test.labels)
        rows.append({"part": "trace_acc", "model": "rnn", "clip": clip, "metric": "test_acc", "value": acc})
        log(f"seed preset, clip {clip or 'off'}: test acc {acc:.4f}")

    # 2. the same batches through each kind, at initialisation and after identical training
    train_cfg = with_overrides(seed_cfg, {"clip": 1.0, "max_len": sw.train_len, "truncate": "tail",
                                          "epochs": sw.train_epochs})
    short = truncated(prep, sw.train_len, "tail")
    for kind in KINDS:
        cfg = with_overrides(train_cfg, {"model": kind})
        set_seed(cfg.seed)
        models = {"init": build_model(cfg, len(prep.vocab)).to(dev)}
        log(f"training {kind} ({sw.train_epochs} epoch(s), last {sw.train_len} tokens, clip 1.0)")
        fitted = fit(cfg, short, lambda s, kind=kind: log(f"{kind}: {s}"))
        models["trained"] = fitted.model
        acc = accuracy(predict(fitted.model, short.test, dev), short.test.labels)
        rows.append({"part": "trained_acc", "model": kind, "clip": 1.0, "metric": "test_acc", "value": acc})
        for stage, model in models.items():
            model.train()  # dropout is 0: train mode only makes cuDNN keep what backward needs
            for n, batch in batches.items():
                key = {"model": kind, "stage": stage, "seq_len": n}
                g, w = embedding_output_grads(model, *batch)
                rows += _profile_rows({**key, "part": "emb_out"}, g)
                rows.append({**key, "part": "emb_weight", "metric": "embedding_grad_norm", "value": w})
                if kind == "rnn":
                    rows += _profile_rows({**key, "part": "dh"}, hidden_grads(model, *batch))
            model.eval()
            far = one(rows, part="dh_fit" if kind == "rnn" else "emb_out_fit", model=kind, stage=stage,
                      seq_len=max(sw.lengths), metric="g_first_over_g_last")
            log(f"{kind} {stage}: g_first/g_last at length {max(sw.lengths)} = {far:.3g}")

    judged = verdict(rows)
    return conclude(NAME, rows, COLUMNS, judged, figure(rows, judged), out_dir, log,
                    quick=quick, ds=ds, device=dev, settings=sw, started=started)


# --- measurements -------------------------------------------------------------------------------

def hidden_grads(model, tokens, lengths, labels) -> np.ndarray:
    """Batch-mean ||dL/dh_t|| of the vanilla RNN, indexed by distance from the final step."""
    model.zero_grad(set_to_none=True)
    logits, hs = model.unrolled(tokens, lengths)
    F.binary_cross_entropy_with_logits(logits, labels).backward()
    g = torch.stack([h.grad for h in hs], 1).norm(dim=-1)  # (B, T)
    model.zero_grad(set_to_none=True)
    return _by_distance(g, lengths)


def embedding_output_grads(model, tokens, lengths, labels) -> tuple[np.ndarray, float]:
    """Batch-mean ||dL/dx_t|| at the embedding output (any model kind), indexed by distance from
    each review's last real token; and the embedding weight's gradient norm (the notebook's measure)."""
    kept = {}

    def keep(module, inputs, out):
        out.retain_grad()
        kept["x"] = out

    hook = model.embedding.register_forward_hook(keep)
    try:
        model.zero_grad(set_to_none=True)
        F.binary_cross_entropy_with_logits(model(tokens, lengths), labels).backward()
    finally:
        hook.remove()
    weight = float(model.embedding.weight.grad.norm())
    g = kept["x"].grad.norm(dim=-1)  # (B, T)
    model.zero_grad(set_to_none=True)
    return _by_distance(g, lengths), weight


def _by_distance(g: torch.Tensor, lengths: torch.Tensor) -> np.ndarray:
    """(B, T) per-position norms -> (T,) batch means by distance d from each row's last real token."""
    B, T = g.shape
    pos = lengths.to(g.device)[:, None] - 1 - torch.arange(T, device=g.device)[None, :]  # position at distance d
    valid = pos >= 0
    vals = g.gather(1, pos.clamp(min=0)) * valid
    return (vals.sum(0) / valid.sum(0).clamp(min=1)).detach().double().cpu().numpy()


def decay_fit(g: np.ndarray) -> dict:
    """Per-step decay (exp of the slope of log g against distance), g_first/g_last and the steps
    until the gradient has fallen 1000x (observed: NaN if it never does; fit: from the slope)."""
    k = np.arange(len(g))
    ok = np.isfinite(g) & (g > UNDERFLOW)
    f = linear_fit(k[ok], np.log(g[ok]))
    last, first = g[0], g[-1]  # distance 0 is the final step; the largest distance the first step
    below = np.flatnonzero(g <= last / 1000)
    slope = f["slope"]
    return {"decay_per_step": math.exp(slope) if math.isfinite(slope) else float("nan"),
            "g_first_over_g_last": float(first / last) if last > 0 else float("nan"),
            "steps_to_1000x": float(below[0]) if len(below) else float("nan"),
            "steps_to_1000x_fit": math.log(1000) / -slope if slope < 0 else float("inf")}


def _profile_rows(key: dict, g: np.ndarray) -> list[dict]:
    rows = [{**key, "distance": d, "metric": "grad_norm", "value": float(v)} for d, v in enumerate(g)]
    fit_key = {**key, "part": key["part"] + "_fit"}
    return rows + [{**fit_key, "metric": m, "value": v} for m, v in decay_fit(g).items()]


def spectral_radius(W: torch.Tensor) -> float:
    return float(torch.linalg.eigvals(W.detach().double().cpu()).abs().max())


def trace_training(cfg, enc, vocab_size: int, radius_every: int, dev, log: Log):
    """rnnlab.train.train's steps (batch, forward, zero_grad, backward, unclipped norm, clip, step),
    recording every step's unclipped gradient norm and loss, and W_hh's spectral radius.
    A non-finite loss or gradient ends the run (recorded as metric `diverged`)."""
    set_seed(cfg.seed)
    model = build_model(cfg, vocab_size).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                           **({"fused": True} if dev.type in ("cpu", "cuda") else {}))
    params = [p for p in model.parameters() if p.requires_grad]
    max_norm = cfg.clip if cfg.clip > 0 else float("inf")  # inf: measure the norm, never clip
    W = model.rnn.weight_hh_l0
    key = {"part": "trace", "model": "rnn", "clip": cfg.clip}
    rows = [{**key, "step": 0, "metric": "spectral_radius", "value": spectral_radius(W)}]
    step = 0
    for epoch in range(1, cfg.epochs + 1):
        batches = batch_indices(enc.lengths, cfg.batch_size, cfg.batching, cfg.seed, epoch)
        norms = []
        for i, idx in enumerate(batches, 1):
            tokens, lengths, labels = (t.to(dev) for t in enc.collate(idx))
            loss = F.binary_cross_entropy_with_logits(model(tokens, lengths), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))  # the unclipped norm
            step += 1
            rows += [{**key, "step": step, "metric": "grad_norm_unclipped", "value": norm},
                     {**key, "step": step, "metric": "loss", "value": loss.item()}]
            if not (math.isfinite(norm) and math.isfinite(loss.item())):
                rows.append({**key, "step": step, "metric": "diverged", "value": 1.0})
                log(f"clip {cfg.clip or 'off'}: non-finite gradient at step {step}; run ends here")
                return rows, model.eval()
            opt.step()
            norms.append(norm)
            if step % radius_every == 0:
                rows.append({**key, "step": step, "metric": "spectral_radius", "value": spectral_radius(W)})
            if i % 100 == 0:
                log(f"seed preset, clip {cfg.clip or 'off'}: epoch {epoch}/{cfg.epochs} step {i}/{len(batches)}")
        log(f"seed preset, clip {cfg.clip or 'off'}: epoch {epoch}/{cfg.epochs} done; unclipped grad norm "
            f"median {np.median(norms):.3g}, max {np.max(norms):.3g}; spectral radius {spectral_radius(W):.3f}")
    rows.append({**key, "step": step, "metric": "spectral_radius", "value": spectral_radius(W)})
    return rows, model.eval()


# --- verdict ------------------------------------------------------------------------------------

def _log10(x: float) -> float:
    return math.log10(max(x, UNDERFLOW)) if math.isfinite(x) else float("nan")


def verdict(rows: list[dict]) -> dict:
    """Judge the claim from the rows alone (pure: tests feed it hand-made rows)."""
    lengths = sorted({r["seq_len"] for r in rows if r["part"] == "dh_fit"})
    longest, shortest = (max(lengths), min(lengths)) if lengths else (None, None)
    fits = {stage: {m: one(rows, part="dh_fit", model="rnn", stage=stage, seq_len=longest, metric=m)
                    for m in ("decay_per_step", "g_first_over_g_last", "steps_to_1000x", "steps_to_1000x_fit")}
            for stage in ("init", "trained")}
    vanished = {s: bool(f["g_first_over_g_last"] <= VANISHED and f["decay_per_step"] < 1) for s, f in fits.items()}
    per_length = {stage: {str(n): one(rows, part="dh_fit", model="rnn", stage=stage, seq_len=n,
                                      metric="g_first_over_g_last") for n in lengths} for stage in fits}

    far = {k: one(rows, part="emb_out_fit", model=k, stage="trained", seq_len=longest, metric="g_first_over_g_last")
           for k in KINDS}
    gated = {k: bool(_log10(far[k]) >= _log10(far["rnn"]) + GATED_MARGIN) for k in ("lstm", "gru")}
    emb = {f"{k} {s}": {str(n): one(rows, part="emb_weight", model=k, stage=s, seq_len=n) for n in lengths}
           for k in KINDS for s in ("init", "trained")}
    nb = {s: one(rows, part="emb_weight", model="rnn", stage=s, seq_len=longest)
          / one(rows, part="emb_weight", model="rnn", stage=s, seq_len=shortest) for s in ("init", "trained")}

    spikes = {}
    for clip in sorted({r["clip"] for r in rows if r["part"] == "trace"}):
        norms = [r["value"] for r in rows if r["part"] == "trace" and r["clip"] == clip
                 and r["metric"] == "grad_norm_unclipped" and math.isfinite(r["value"])]
        radius = [r["value"] for r in sorted((r for r in rows if r["part"] == "trace" and r["clip"] == clip
                                              and r["metric"] == "spectral_radius"), key=lambda r: r["step"])]
        spikes[f"clip {clip or 'off'}"] = {
            "steps": len(norms), "grad_norm_median": float(np.median(norms)) if norms else float("nan"),
            "grad_norm_max": max(norms, default=float("nan")),
            "steps_clipped": sum(x > clip for x in norms) if clip > 0 else 0,
            "max_over_median": max(norms) / float(np.median(norms)) if norms else float("nan"),
            "diverged": any(r["part"] == "trace" and r["clip"] == clip and r["metric"] == "diverged" for r in rows),
            "spectral_radius_start": radius[0] if radius else float("nan"),
            "spectral_radius_end": radius[-1] if radius else float("nan"),
            "spectral_radius_max": max(radius, default=float("nan")),
            "test_acc": one(rows, part="trace_acc", clip=clip)}
    unclipped = spikes.get("clip off", {})
    exploded = bool(unclipped.get("diverged") or unclipped.get("max_over_median", 0) >= SPIKE)
    return {
        "claim": "In the vanilla RNN the gradient reaching h_t falls exponentially with its distance from the "
                 f"final step: on the longest sequences ({longest} tokens) the first step gets at least 1000x less "
                 "gradient than the last, at initialisation and after training",
        "holds": all(vanished.values()),
        "criterion": f"for the RNN at init and trained, at the longest length: g_first/g_last <= {VANISHED:g} "
                     "(batch-mean ||dL/dh_t|| at the first step over that at the last; 0 = below float32's range) and a fitted per-step decay "
                     "< 1 (exp of the least-squares slope of log ||dL/dh_t|| against distance; values below "
                     f"{UNDERFLOW:g} are float32 underflow and left out)",
        "numbers": {"longest_length": longest, "rnn_at_longest": fits, "vanished": vanished,
                    "rnn_g_first_over_g_last_by_length": per_length},
        "questions": [
            {"claim": "Gated recurrences (LSTM, GRU), trained the same way, keep far more of the gradient at the "
                      "start of long sequences than the vanilla RNN",
             "holds": all(gated.values()),
             "criterion": f"at the longest length, trained: g_first/g_last at the embedding output of LSTM and of GRU "
                          f">= {10 ** GATED_MARGIN:g}x the RNN's",
             "numbers": {"g_first_over_g_last_embedding_output": far, "gated_keeps_more": gated}},
            {"claim": "The notebook's measure (the embedding weight's gradient norm) shrinks as sequences get longer",
             "holds": bool(nb["trained"] <= NOTEBOOK_DROP),
             "criterion": f"trained RNN: norm at the longest length / norm at the shortest <= {NOTEBOOK_DROP}; "
                          "it sums every token's share, and the last tokens dominate, so it hides the vanishing",
             "numbers": {"longest_over_shortest": nb, "embedding_grad_norm": emb}},
            {"claim": "Without clipping the gradient explodes now and then: the unclipped norm spikes far above its "
                      "typical value (or becomes non-finite)",
             "holds": exploded,
             "criterion": f"seed-preset run without clipping: max unclipped norm >= {SPIKE:g}x its median, or a "
                          "non-finite gradient",
             "numbers": spikes},
        ],
    }


# --- figure -------------------------------------------------------------------------------------

def figure(rows: list[dict], judged: dict):
    """dL/dh_t against distance; embedding-output gradient by kind; the notebook's measure; the trace."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    (a, b), (c, d) = axes
    lengths = sorted({r["seq_len"] for r in rows if r["part"] == "dh"})
    colors = plt.cm.viridis(np.linspace(0, 0.9, max(len(lengths), 1)))

    def profile(part, **m):
        pts = sorted(((r["distance"], r["value"]) for r in rows if r["part"] == part
                      and all(r.get(k) == v for k, v in m.items())))
        x = np.array([p[0] for p in pts]); y = np.array([p[1] for p in pts])
        ok = y > UNDERFLOW
        return x[ok], y[ok]

    for n, col in zip(lengths, colors):
        for stage, ls in (("trained", "-"), ("init", "--")):
            x, y = profile("dh", model="rnn", stage=stage, seq_len=n)
            a.plot(x, y, ls, color=col, lw=1.2, label=f"T={n}" if stage == "trained" else None)
    a.plot([], [], "k-", label="trained"); a.plot([], [], "k--", label="at init")
    a.set_yscale("log"); a.set_xlabel("distance from the final step (steps)")
    a.set_ylabel("batch-mean ||dL/dh_t||"); a.set_title("vanilla RNN: gradient reaching each hidden state")
    a.legend(fontsize=7, ncol=2); a.grid(alpha=0.3, which="both")

    longest = max(lengths) if lengths else None
    for kind, col in zip(KINDS, ("tab:red", "tab:blue", "tab:green")):
        for stage, ls in (("trained", "-"), ("init", "--")):
            x, y = profile("emb_out", model=kind, stage=stage, seq_len=longest)
            b.plot(x, y, ls, color=col, lw=1.2, label=f"{kind} {stage}")
    b.set_yscale("log"); b.set_xlabel("distance from the review's last token (steps)")
    b.set_ylabel("batch-mean ||dL/dx_t|| at the embedding output")
    b.set_title(f"the same batch (T={longest}) through RNN, LSTM, GRU"); b.legend(fontsize=7); b.grid(alpha=0.3, which="both")

    for kind, col in zip(KINDS, ("tab:red", "tab:blue", "tab:green")):
        for stage, ls in (("trained", "o-"), ("init", "s--")):
            pts = sorted((r["seq_len"], r["value"]) for r in rows if r["part"] == "emb_weight"
                         and r["model"] == kind and r["stage"] == stage)
            if pts:
                c.plot(*zip(*pts), ls, color=col, ms=4, label=f"{kind} {stage}")
    c.set_xscale("log"); c.set_yscale("log"); c.set_xlabel("sequence length T (tokens)")
    c.set_xticks(lengths, [str(n) for n in lengths]); c.xaxis.set_minor_locator(plt.NullLocator())
    c.set_ylabel("||dL/d embedding weight||"); c.set_title("the notebook's measure against length")
    c.legend(fontsize=7); c.grid(alpha=0.3, which="both")

    d2 = d.twinx()
    for clip, col in ((0.0, "tab:red"), (1.0, "tab:blue")):
        pts = sorted((r["step"], r["value"]) for r in rows if r["part"] == "trace" and r["clip"] == clip
                     and r["metric"] == "grad_norm_unclipped")
        if pts:
            d.plot(*zip(*pts), color=col, lw=0.6, alpha=0.8, label=f"grad norm, clip {clip or 'off'}")
        rad = sorted((r["step"], r["value"]) for r in rows if r["part"] == "trace" and r["clip"] == clip
                     and r["metric"] == "spectral_radius")
        if rad:
            d2.plot(*zip(*rad), "--", color=col, lw=1.5, label=f"spectral radius of W_hh, clip {clip or 'off'}")
    d.set_yscale("log"); d.set_xlabel("training step (seed preset)"); d.set_ylabel("unclipped gradient norm")
    d2.set_ylabel("spectral radius of W_hh (dashed)")
    d.set_title("exploding side: unclipped norm and W_hh over training")
    h1, l1 = d.get_legend_handles_labels(); h2, l2 = d2.get_legend_handles_labels()
    d.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper left"); d.grid(alpha=0.3, which="both")
    fig.suptitle(title("Vanishing gradients", "on long sequences the RNN's first steps get >= 1000x less "
                       "gradient than its last", judged))
    fig.tight_layout()
    return fig
