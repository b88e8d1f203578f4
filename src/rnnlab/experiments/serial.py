"""Shortfall 3, serial computation: an RNN's step t waits for step t-1, so time is linear in length
and more parallel hardware does not help it, while a parallel-in-time model uses the hardware.

    rnnlab shortfall serial --data ../shared/data/imdb [--quick]

Varies: the sequence length (e.g. 64 ... 2048 tokens), the model (the vanilla RNN; the `cnn` and
`transformer` kinds, which process all positions at once) and the number of CPU threads (1, 2).
Held fixed: batch size, embedding 100, hidden 128, device; the batch itself (real test reviews cut
or joined to exactly T tokens). Measured: forward + backward seconds per batch (warm-up steps
dropped, median over repeats, torch.cuda.synchronize() before every clock read on a GPU); a linear
fit of time against length (slope, R^2); achieved FLOP/s (matmul FLOPs counted by formula, backward
= 2x forward) as a fraction of this device's measured float32 matmul throughput; the speed-up from
1 to 2 threads.
Claim: the RNN's time per batch is linear in length and it is not helped by more parallel hardware
(it gains little from a second thread and uses a small fraction of the matmul peak), while the
parallel models are.
"""
from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..config import with_overrides
from ..data import Dataset
from ..models import build_model, count_parameters
from ..train import resolve_device, set_seed
from .common import (BASE, Log, conclude, fixed_length_batch, linear_fit, one, prepare_untruncated, subsample,
                     sync, tagged, title)

NAME = "serial"
COLUMNS = ("part", "model", "threads", "seq_len", "repeat", "metric", "value")
LINEAR_R2 = 0.95  # time against length fits a straight line this well ...
PROPORTIONAL = 0.5  # ... and grows at least half as fast as the length (not a fixed cost with a tail)
HELPED = 1.25  # "helped" by a second thread: at least 25% faster (perfect scaling: 2x)


@dataclass(frozen=True)
class Sweep:
    """What one run of the experiment times; FULL gives the real numbers, QUICK a smoke test."""

    lengths: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)
    models: tuple[str, ...] = ("rnn", "cnn", "transformer")
    transformer_max_len: int = 1024  # attention is quadratic in T: 2048 alone would take minutes on a CPU
    batch: int = 32
    warmup: int = 2  # steps timed but dropped
    repeats: int = 5  # steps whose median is reported
    threads: tuple[int, ...] = (1, 2)
    matmul_n: int = 2048  # square float32 matmul measuring the device's peak
    n_train: int = 0  # reviews per split used to build the batches (class-balanced, seeded); 0 = all
    n_test: int = 0
    embed_dim: int = 100
    hidden_dim: int = 128


FULL = Sweep()
QUICK = Sweep(lengths=(64, 256, 1024), transformer_max_len=256, warmup=1, repeats=3, matmul_n=1024,
              n_train=2000, n_test=1000)


def run(ds: Dataset, out_dir: Path, quick: bool = False, device: str = "auto", log: Log = print,
        sweep: Sweep | None = None) -> list[dict]:
    """Varies sequence length, model (rnn vs the parallel cnn/transformer) and CPU threads; holds
    fixed batch size, sizes, device and the batch. Tests: the RNN's time is linear in length and more
    parallel hardware does not help it, while it helps the parallel models."""
    started = time.perf_counter()
    sw = sweep or (QUICK if quick else FULL)
    log = tagged(log, NAME)
    dev = resolve_device(device)
    ds = subsample(ds, sw.n_train, sw.n_test)
    base = with_overrides(BASE, {"embed_dim": sw.embed_dim, "hidden_dim": sw.hidden_dim, "device": device})
    prep = prepare_untruncated(base, ds, log)
    threads = [n for n in sw.threads if n <= (os.cpu_count() or 1)]
    old_threads = torch.get_num_threads()
    rows: list[dict] = [{"part": "device", "metric": "gpu", "value": float(dev.type == "cuda")}]
    jobs = [(n, k, T) for n in threads for k in sw.models for T in sw.lengths
            if not (k == "transformer" and T > sw.transformer_max_len)]
    try:
        for n in threads:
            torch.set_num_threads(n)
            peak = matmul_flops(sw.matmul_n, dev)
            rows.append({"part": "device", "threads": n, "metric": "matmul_flops_per_second", "value": peak})
            log(f"{n} thread(s): float32 matmul {peak / 1e9:.1f} GFLOP/s")
        done = 0
        for kind in sw.models:
            cfg = with_overrides(base, {"model": kind})
            set_seed(0)
            model = build_model(cfg, len(prep.vocab)).to(dev).train()
            rows.append({"part": "model", "model": kind, "metric": "parameters_without_embedding",
                         "value": float(count_parameters(model) - model.embedding.weight.numel())})
            for n in threads:
                torch.set_num_threads(n)
                for T in sw.lengths:
                    if kind == "transformer" and T > sw.transformer_max_len:
                        continue
                    batch = tuple(t.to(dev) for t in fixed_length_batch(prep.test, T, sw.batch))
                    times = [step_seconds(model, *batch, dev) for _ in range(sw.warmup + sw.repeats)][sw.warmup:]
                    key = {"model": kind, "threads": n, "seq_len": T}
                    rows += [{**key, "part": "timing", "repeat": i, "metric": "seconds", "value": s}
                             for i, s in enumerate(times)]
                    med = statistics.median(times)
                    flops = train_flops(kind, sw.batch, T, sw.embed_dim, sw.hidden_dim)
                    peak = one(rows, part="device", threads=n, metric="matmul_flops_per_second")
                    rows += [{**key, "part": "summary", "metric": m, "value": v} for m, v in (
                        ("median_seconds", med), ("train_flops", float(flops)), ("flops_per_second", flops / med),
                        ("fraction_of_matmul_peak", flops / med / peak), ("tokens_per_second", sw.batch * T / med))]
                    done += 1
                    log(f"{done}/{len(jobs)} {kind} T={T} threads={n}: {med * 1e3:.1f} ms/batch, "
                        f"{flops / med / 1e9:.2f} GFLOP/s ({flops / med / peak:.1%} of matmul peak)")
    finally:
        torch.set_num_threads(old_threads)
    judged = verdict(rows)
    return conclude(NAME, rows, COLUMNS, judged, figure(rows, judged), out_dir, log,
                    quick=quick, ds=ds, device=dev, settings=sw, started=started)


def step_seconds(model, tokens, lengths, labels, dev) -> float:
    """Seconds for one forward + backward (no optimiser step), clocked around synchronised work."""
    sync(dev)
    t0 = time.perf_counter()
    F.binary_cross_entropy_with_logits(model(tokens, lengths), labels).backward()
    sync(dev)
    seconds = time.perf_counter() - t0
    model.zero_grad(set_to_none=True)
    return seconds


def matmul_flops(n: int, dev, repeats: int = 5) -> float:
    """Median float32 (n x n) @ (n x n) throughput of this device at the current thread count."""
    if torch.device(dev).type == "cuda":
        n = max(n, 8192)  # a GPU finishes 2048^3 in microseconds: too short to clock
    a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
    a @ b  # warm-up
    times = []
    for _ in range(repeats):
        sync(dev)
        t0 = time.perf_counter()
        a @ b
        sync(dev)
        times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / statistics.median(times)


def train_flops(kind: str, B: int, T: int, E: int, H: int) -> int:
    """Matmul FLOPs of one forward + backward (2 per multiply-add; backward = 2x forward).

    rnn: input projection E*H and recurrence H*H per token. cnn: Conv1d kernel 5, E -> H.
    transformer (1 layer, feed-forward 2H): Q, K, V and output projections 4*E*E, feed-forward
    2*E*2H, attention scores and mixing 2*T*E per token. tests/test_experiments.py checks these
    against torch.utils.flop_counter where it can count them.
    """
    per_token = {"rnn": E * H + H * H, "cnn": 5 * E * H,
                 "transformer": 4 * E * E + 2 * E * 2 * H + 2 * T * E}[kind]
    return 3 * 2 * B * T * per_token


def _summary(rows, metric, **m) -> dict[int, float]:
    return {r["seq_len"]: r["value"] for r in rows if r["part"] == "summary" and r["metric"] == metric
            and all(r.get(k) == v for k, v in m.items())}


def verdict(rows: list[dict]) -> dict:
    """Judge the claim from the rows alone (pure: tests feed it hand-made rows)."""
    models = sorted({r["model"] for r in rows if r["part"] == "summary"})
    threads = sorted({r["threads"] for r in rows if r["part"] == "summary"})
    lo, hi = (threads[0], threads[-1]) if threads else (None, None)
    gpu = bool(one(rows, part="device", metric="gpu") == 1.0)
    t = _summary(rows, "median_seconds", model="rnn", threads=hi)
    Ts = sorted(t)
    f = linear_fit(Ts, [t[T] for T in Ts])
    growth = (t[Ts[-1]] / t[Ts[0]]) / (Ts[-1] / Ts[0]) if len(Ts) > 1 else float("nan")
    linear = bool(f["r2"] >= LINEAR_R2 and f["slope"] > 0 and growth >= PROPORTIONAL)
    per_model = {}
    for k in models:
        fast, slow = _summary(rows, "median_seconds", model=k, threads=hi), _summary(rows, "median_seconds", model=k, threads=lo)
        frac = _summary(rows, "fraction_of_matmul_peak", model=k, threads=hi)
        Tk = max(set(fast) & set(slow), default=None)
        fit_k = linear_fit(sorted(fast), [fast[T] for T in sorted(fast)])
        per_model[k] = {"longest_T": Tk, "speedup_1_to_max_threads": slow[Tk] / fast[Tk] if Tk else float("nan"),
                        "fraction_of_matmul_peak_at_longest": frac.get(Tk, float("nan")),
                        "seconds_at_longest": fast.get(Tk, float("nan")),
                        "time_fit_slope_s_per_token": fit_k["slope"], "time_fit_r2": fit_k["r2"]}
    nan = float("nan")
    rnn = per_model.get("rnn", {})
    rnn_speedup = rnn.get("speedup_1_to_max_threads", nan)
    rnn_frac = rnn.get("fraction_of_matmul_peak_at_longest", nan)
    parallel = [k for k in models if k != "rnn"]
    use_threads = not gpu and lo != hi  # a GPU's speed does not depend on CPU threads
    checks, helped_less = {}, {}
    for k in parallel:
        speedup, frac = per_model[k]["speedup_1_to_max_threads"], per_model[k]["fraction_of_matmul_peak_at_longest"]
        checks[k] = bool(frac > rnn_frac and (not use_threads or (speedup >= HELPED and speedup > rnn_speedup)))
        helped_less[k] = bool(rnn_speedup <= speedup and rnn_frac < frac)
    rnn_not_helped = bool(not use_threads or rnn_speedup < HELPED)
    holds = bool(linear and rnn_not_helped and parallel and all(checks.values()))
    less = bool(use_threads and parallel and all(helped_less.values()))
    threads_text = (f"on a CPU with 1 and {hi} threads: the RNN's speed-up from more threads at its longest length "
                    f"is < {HELPED} while each parallel model's is >= {HELPED} and larger than the RNN's; "
                    if use_threads else "(one thread count or a GPU: no thread comparison); ")
    return {
        "claim": "The vanilla RNN's time per batch grows linearly with sequence length and more parallel hardware "
                 "does not help it, while a parallel-in-time model of similar size is helped",
        "holds": holds,
        "criterion": f"RNN linear: median s/batch against T fits a line with slope > 0 and R^2 >= {LINEAR_R2}, and "
                     f"time(T_max)/time(T_min) >= {PROPORTIONAL} x T_max/T_min; " + threads_text +
                     "and each parallel model reaches a larger fraction of the measured matmul peak than the RNN",
        "numbers": {"rnn_time_fit": f, "rnn_growth_over_length_ratio": growth, "rnn_linear": linear,
                    "rnn_not_helped_by_threads": rnn_not_helped, "parallel_helped": checks,
                    "threads": threads, "gpu": gpu, "by_model": per_model,
                    "matmul_flops_per_second": {str(n): one(rows, part="device", threads=n,
                                                            metric="matmul_flops_per_second") for n in threads},
                    "parameters_without_embedding": {k: one(rows, part="model", model=k) for k in models}},
        "questions": [{
            "claim": "More threads help the RNN less than the parallel models, and it uses less of the hardware",
            "holds": less,
            "criterion": "on a CPU with two or more thread counts: at each model's longest length, the RNN's speed-up "
                         "from more threads is at most each parallel model's and its fraction of the matmul peak "
                         "is below each parallel model's",
            "numbers": {k: {"speedup": per_model[k]["speedup_1_to_max_threads"],
                            "fraction_of_matmul_peak": per_model[k]["fraction_of_matmul_peak_at_longest"]}
                        for k in models}}],
    }


def figure(rows: list[dict], judged: dict):
    """s/batch against T, speed-up from threads against T, fraction of the matmul peak against T."""
    import matplotlib.pyplot as plt

    models = sorted({r["model"] for r in rows if r["part"] == "summary"})
    threads = sorted({r["threads"] for r in rows if r["part"] == "summary"})
    colors = dict(zip(("rnn", "cnn", "transformer"), ("tab:red", "tab:blue", "tab:green")))
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 4.3))
    for k in models:
        for n in threads:
            s = _summary(rows, "median_seconds", model=k, threads=n)
            Ts = sorted(s)
            a.plot(Ts, [s[T] * 1e3 for T in Ts], "o-" if n == threads[-1] else "s:", color=colors.get(k),
                   label=f"{k}, {n} thread{'s' if n > 1 else ''}")
        if len(threads) > 1:
            fast = _summary(rows, "median_seconds", model=k, threads=threads[-1])
            slow = _summary(rows, "median_seconds", model=k, threads=threads[0])
            Ts = sorted(set(fast) & set(slow))
            b.plot(Ts, [slow[T] / fast[T] for T in Ts], "o-", color=colors.get(k), label=k)
        fr = _summary(rows, "fraction_of_matmul_peak", model=k, threads=threads[-1])
        Ts = sorted(fr)
        c.plot(Ts, [fr[T] * 100 for T in Ts], "o-", color=colors.get(k), label=k)
    r = judged["numbers"]["rnn_time_fit"]
    a.set_xscale("log", base=2); a.set_yscale("log")
    a.set_xlabel("sequence length T (tokens)"); a.set_ylabel("forward + backward ms per batch (median)")
    a.set_title(f"time per batch (RNN linear fit R² = {r['r2']:.3f})"); a.legend(fontsize=7); a.grid(alpha=0.3, which="both")
    if len(threads) > 1:
        b.axhline(1, color="k", lw=0.8, ls=":"); b.axhline(threads[-1] / threads[0], color="k", lw=0.8, ls="--",
                                                           label="perfect scaling")
        b.axhline(HELPED, color="gray", lw=0.8, ls="-.", label=f"'helped' threshold {HELPED}")
    b.set_xscale("log", base=2); b.set_xlabel("sequence length T (tokens)")
    b.set_ylabel(f"speed-up from {threads[0]} to {threads[-1]} threads" if threads else "speed-up")
    b.set_title("what a second core buys"); b.legend(fontsize=7); b.grid(alpha=0.3)
    c.set_xscale("log", base=2); c.set_yscale("log"); c.set_xlabel("sequence length T (tokens)")
    c.set_ylabel("achieved FLOP/s, % of measured matmul peak")
    c.set_title(f"hardware used ({threads[-1] if threads else '?'} threads)"); c.legend(fontsize=7)
    c.grid(alpha=0.3, which="both")
    fig.suptitle(title("Serial computation", "RNN time is linear in length and more cores do not help it, "
                       "while they help the parallel models", judged))
    fig.tight_layout()
    return fig
