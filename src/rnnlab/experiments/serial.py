"""Shortfall 3, serial computation: an RNN's step t waits for step t-1, so its time is linear in length and
more parallel hardware helps it little, while a parallel-in-time model uses the hardware.

    rnnlab shortfall serial --data ../shared/data/imdb [--quick]

Varies: the sequence length (64 ... 1024 tokens), the model (the vanilla RNN, LSTM and GRU; the `cnn`
and the Transformer, which process all positions at once) and the number of CPU threads (1, 2; on a GPU
only 1, since CPU threads do not run the model there: its thread questions stay inconclusive).
Held fixed: each model's lab preset (sizes), batch size, device, and the batch itself (real test
reviews cut to exactly T tokens). Measured, with nothing else running (checked: on Linux each timing job records
the share of its CPUs' time, those it may run on, that other processes or the VM's host used meanwhile, from
/proc/stat; above BUSY, 10%, every timing verdict here and in the comparison is inconclusive, as a loaded machine
turned this claim once; not told, NaN, under a CPU quota or for a window under 2 s, as --quick's mostly are; Ray's
own processes count as others, and so does work on CPUs the timing's threads do not use, so on a machine with many
more CPUs than threads the check errs towards inconclusive; a GPU's other users are not seen): forward + backward
seconds per batch (warm-up steps dropped, the thread counts interleaved step by step, 7 repeats, medians and
spread; torch.cuda.synchronize() before every clock read on a GPU); achieved matmul FLOP/s (counted
by formula, backward = 2x forward) as a fraction of this machine's measured float32 matmul rate.

Claim: the vanilla RNN's time per batch grows linearly with the sequence length (time ~ T^k with the
exponent k within log2(1.1) of 1: each doubling of the length doubles the time, within 10%), and a
second thread speeds up each parallel model more than it speeds up the RNN (the difference of speed-ups,
over all lengths, above 0). Negative control: the Transformer's time, whose attention grows with the
square of the length, must not pass the same linearity test; where it does, the test cannot tell linear
from faster growth at these lengths and the linearity part is inconclusive: it holds only beside a control
whose k lies above 1. Where the Transformer's k has its interval wholly below 1 (its time grew more slowly than
linearly: seen in quick labs, whose short lengths time mostly fixed costs, and on a GPU), a refuted linearity
is inconclusive too, unless the RNN's k lies wholly above 1 (fixed costs pull k towards 0, so they cannot
explain that). (Until session 39 the test
was "a line explains at least 95% of the time": on doubling lengths 64-1024 a line explains more than
that of sqrt(T) and T^1.5 too. docs/REVIEW.md has the history.)
"""
from __future__ import annotations

import contextlib
import math
import os
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from ..config import GRU, LSTM, RNN, TRANSFORMER, from_dict, with_overrides
from ..jobs import Job, affinity, cpu_quota, usable_cpus
from ..runs import torch_threads
from .common import fixed_length_batch, linear_fit, mean_sd, paired, title, values
from .stats import FAILS, HOLDS, UNDECIDED, combine, decide, demote, judge, part_of, t_interval

NAME = "serial"
PARTS = ("timing", "peak", "flops", "busy")
BUSY = 0.1  # the share of the timed CPUs' time other processes may use while a model is timed
LINEAR_DEV = math.log2(1.1)  # |k - 1| below this, for time ~ T^k: each doubling of T doubles the time, within 10%
CNN = with_overrides(RNN, {"model": "cnn", "pool": "max"})
CONFIGS = {"rnn": RNN, "lstm": LSTM, "gru": GRU, "cnn": CNN, "transformer": TRANSFORMER}
SWEEP = {"full": {"lengths": (64, 128, 256, 512, 1024), "batch": 32, "warmup": 2, "repeats": 7, "matmul_n": 2048,
                  "models": ("rnn", "lstm", "gru", "cnn", "transformer")},
         "quick": {"lengths": (32, 64, 128), "batch": 8, "warmup": 1, "repeats": 3, "matmul_n": 512,
                   "models": ("rnn", "cnn", "transformer")}}
PARALLEL = ("cnn", "transformer")
BUSY_RULE = (f"; inconclusive wherever other processes (or the VM's host) used more than {BUSY:.0%} of the timed CPUs' "
             "time while a model was timed")
NOT_TIMED = "not measured: timed at one thread count (one CPU core, or a GPU, where CPU threads do not run the model)"


def settings(mode: str) -> dict:
    return {**SWEEP[mode], "threads": _threads(), "linear_exponent_tolerance": LINEAR_DEV}


def _threads() -> tuple[int, ...]:
    return tuple(n for n in (1, 2) if n <= usable_cpus())  # a second thread on no second core times nothing


def timing_job_for(model: str, mode: str) -> Job:
    """The timing of one model (exclusive: it runs with nothing else on the machine; its device: `_on_device`)."""
    sw = SWEEP[mode]
    return Job("rnnlab.experiments.serial:timing_job",
               {"cfg": CONFIGS[model].to_dict(), "threads": list(_threads()),
                **{k: sw[k] for k in ("lengths", "batch", "warmup", "repeats", "matmul_n")}},
               label=f"timing {model}", exclusive=True)


def jobs(mode: str):
    return [({"model": m}, timing_job_for(m, mode)) for m in SWEEP[mode]["models"]]


def timing_job(ds, cfg: dict, threads: list[int], lengths: list[int], batch: int, warmup: int, repeats: int,
               matmul_n: int) -> list[dict]:
    """Forward + backward seconds per batch at each length and thread count, and the matmul rate."""
    from ..models import build_model
    from ..prepare import prepare
    from ..train import resolve_device, set_seed

    cfg = from_dict(cfg)
    dev = resolve_device(cfg.device)
    if dev.type != "cpu":  # CPU threads do not run the model on a GPU: one count, the thread questions left open
        threads = threads[:1]
    prep = prepare(with_overrides(cfg, {"max_len": 0, "val_fraction": 0.0}), ds)
    set_seed(0)
    model = build_model(cfg, len(prep.vocab)).to(dev).train()
    rows, others = [], []
    with others_share(others):
        rows += [{"part": "peak", "threads": n, "repeat": i, "metric": "matmul_flops_per_second", "value": v}
                 for n in threads for i, v in enumerate(_with_threads(n, lambda: matmul_flops(matmul_n, dev)))]
        for T in lengths:
            b = tuple(t.to(dev) for t in fixed_length_batch(prep.test.untruncated(), T, batch))
            for _ in range(warmup):
                for n in threads:
                    _with_threads(n, lambda: step_seconds(model, *b, dev))
            for i in range(repeats):  # thread counts interleaved: a slow moment of the machine hits both
                for n in threads:
                    rows.append({"part": "timing", "threads": n, "seq_len": T, "repeat": i, "metric": "seconds",
                                 "value": _with_threads(n, lambda: step_seconds(model, *b, dev))})
            rows.append({"part": "flops", "seq_len": T, "metric": "train_flops",
                         "value": float(train_flops(cfg.model, batch, T, cfg.embed_dim, cfg.hidden_dim, cfg.layers))})
    return rows + [{"part": "busy", "metric": "others_cpu_share", "value": others[0]}]


MIN_TICKS = 200  # clock ticks per timed CPU (2 s at 100 Hz): a shorter window is within their rounding
PROC_STAT = "/proc/stat"


def cpu_jiffies(cpus) -> tuple[int, int] | None:
    """(busy, total) clock ticks since boot of the CPUs `cpus`, from their /proc/stat lines; None where there are none
    (not Linux). Busy is everything but idle and iowait, steal included (the VM's host taking its CPUs)."""
    try:
        with open(PROC_STAT) as f:
            lines = {w[0]: w[1:9] for w in (line.split() for line in f) if w and w[0][3:].isdigit()}
        ticks = [[int(x) for x in lines[f"cpu{c}"]] for c in cpus]  # user nice system idle iowait irq softirq steal
    except (OSError, ValueError, KeyError):
        return None
    if not ticks or any(len(t) < 5 for t in ticks):
        return None
    total = sum(map(sum, ticks))  # guest time is counted in user already
    return total - sum(t[3] + t[4] for t in ticks), total


def timed_cpus() -> list[int] | None:
    """The CPUs this process may run on (taskset, a container's cpuset), whose /proc/stat lines say who used them;
    None where they cannot say what this process competes with: a cgroup CPU quota (a container's --cpus) shares
    CPUs that others may use without slowing it, and throttles it without their use."""
    return None if cpu_quota() is not None else affinity()


@contextlib.contextmanager
def others_share(out: list):
    """Appends to `out` the share of the timed CPUs' time that went elsewhere meanwhile (other processes, or the VM's
    host: their busy ticks less this process's CPU time, over all their ticks), or NaN where it cannot be told: no
    /proc/stat, a CPU quota (`timed_cpus`), or a window under MIN_TICKS per CPU (a --quick timing, mostly)."""
    cpus = timed_cpus()
    before, own = cpu_jiffies(cpus) if cpus else None, time.process_time()  # every thread of this process
    yield
    after, own = cpu_jiffies(cpus) if cpus else None, time.process_time() - own
    if before is None or after is None or after[1] - before[1] < MIN_TICKS * len(cpus):
        out.append(math.nan)
        return
    others = after[0] - before[0] - own * os.sysconf("SC_CLK_TCK")
    out.append(min(1.0, max(0.0, others / (after[1] - before[1]))))


def _recorded(rows) -> dict:
    """{model: the CPU share other processes took while it was timed}, as recorded (NaN where not told)."""
    return {r.get("model", "?"): r["value"] for r in rows if r["part"] == "busy"}


def _told(recorded: dict) -> dict[str, float]:
    """The recorded shares that are numbers (finite): a damaged or untold one is left out."""
    return {m: float(v) for m, v in recorded.items() if isinstance(v, (int, float)) and math.isfinite(v)}


def busy_rule(rows) -> str:
    """The criterion's clause on other processes' CPU use: BUSY_RULE, naming the timings with no share recorded (labs
    before session 60, no /proc/stat, a CPU quota, --quick's short timings)."""
    timed = sorted({r.get("model", "?") for r in rows if r["part"] == "timing"})
    untold = [m for m in timed if m not in _told(_recorded(rows))]
    return BUSY_RULE + ("" if not untold else " (not recorded for these timings: not checked)" if len(untold) == len(timed)
                        else f" (not recorded for the {', '.join(untold)} timing{'s' * (len(untold) > 1)}: not checked)")


def busy_machine(rows) -> str:
    """Why the timings in `rows` are not this machine's own, or "": other processes used more than BUSY of its CPU
    time while a model was timed (rows made before this was recorded, or where it cannot be: not checked)."""
    shares = _told(_recorded(rows))
    if not shares or max(shares.values()) <= BUSY:
        return ""
    model = max(shares, key=shares.get)
    return (f"other processes (or the VM's host) used {shares[model]:.0%} of the timed CPUs' time while the {model} was "
            f"timed (more than {BUSY:.0%}): these timings are not this machine's own")


def _with_threads(n: int, fn):
    with torch_threads(n):
        return fn()


def step_seconds(model, tokens, lengths, labels, dev) -> float:
    """Seconds for one forward + backward (no optimiser step), clocked around synchronised work."""
    _sync(dev)
    t0 = time.perf_counter()
    F.binary_cross_entropy_with_logits(model(tokens, lengths), labels).backward()
    _sync(dev)
    seconds = time.perf_counter() - t0
    model.zero_grad(set_to_none=True)
    return seconds


def _sync(dev) -> None:
    if torch.device(dev).type == "cuda":
        torch.cuda.synchronize()


MATMUL_REPEATS = 5  # the matmul's throughput, per thread count


def matmul_flops(n: int, dev) -> list[float]:
    """float32 (n x n) @ (n x n) throughput of this device at the current thread count, per repeat."""
    if torch.device(dev).type == "cuda":
        n = max(n, 8192)  # a GPU finishes 2048^3 in microseconds: too short to clock
    a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
    a @ b  # warm-up
    out = []
    for _ in range(MATMUL_REPEATS):
        _sync(dev)
        t0 = time.perf_counter()
        a @ b
        _sync(dev)
        out.append(2 * n ** 3 / (time.perf_counter() - t0))
    return out


def train_flops(kind: str, B: int, T: int, E: int, H: int, layers: int = 1) -> int:
    """Matmul FLOPs of one forward + backward (2 per multiply-add; backward = 2x forward).

    rnn/lstm/gru: input projection and recurrence, per gate (1, 4, 3), per token. cnn: Conv1d kernel 5,
    E -> H. transformer (per layer, feed-forward 2H): Q, K, V and output projections 4*E*E, feed-forward
    2*E*2H, attention scores and mixing 2*T*E. tests/test_experiments.py checks them against
    torch.utils.flop_counter.
    """
    gates = {"rnn": 1, "lstm": 4, "gru": 3}
    if kind in gates:
        per_token = gates[kind] * (E * H + H * H)
    elif kind == "cnn":
        per_token = 5 * E * H
    else:
        per_token = layers * (4 * E * E + 2 * E * 2 * H + 2 * T * E)
    return 3 * 2 * B * T * per_token


# --- verdict ------------------------------------------------------------------------------------

def medians(rows, model, threads) -> dict[int, float]:
    """{T: median seconds} of one model at one thread count."""
    by_T: dict[int, list] = {}
    for r in rows:
        if r["part"] == "timing" and r["model"] == model and r["threads"] == threads:
            by_T.setdefault(r["seq_len"], []).append(r["value"])
    return {T: math.nan if any(math.isnan(x) for x in v) else statistics.median(v) for T, v in sorted(by_T.items())}


def speedups(rows, model) -> dict[int, float]:
    """{T: median seconds at the fewest threads / at the most}; none when timed at one thread count. NaN at a length
    timed at one of the two only (a failed or missing timing, which the questions count)."""
    ts = sorted({r["threads"] for r in rows if r["part"] == "timing"})
    if len(ts) < 2:
        return {}
    lo, hi = medians(rows, model, ts[0]), medians(rows, model, ts[-1])
    return {T: lo.get(T, math.nan) / hi.get(T, math.nan) for T in sorted(set(lo) | set(hi))}


def exponent(lengths, seconds) -> float:
    """k of time ~ T^k: the least-squares slope of log seconds against log length (NaN where a time is not
    positive)."""
    T, s = np.asarray(lengths, dtype=np.float64), np.asarray(seconds, dtype=np.float64)
    return linear_fit(np.log(T), np.log(s))["slope"] if (s > 0).all() else math.nan


DRAWS = 2000  # bootstrap resamples of k's interval


def exponent_interval(rows, model, threads) -> tuple[float, float, float]:
    """k fitted to the model's median time per length, and its 95% bootstrap interval: the repeats resampled
    within each length (each length is timed in a block of its own, so repeat i at one length has nothing to do
    with repeat i at another), DRAWS times, seeded: the same rows give the same interval."""
    times = {}
    for r in rows:
        if r["part"] == "timing" and r["model"] == model and r["threads"] == threads:
            times.setdefault(r["seq_len"], []).append(r["value"])
    T = sorted(times)
    if len(T) < 2 or not all(v > 0 for t in T for v in times[t]):
        return math.nan, math.nan, math.nan
    est = exponent(T, [np.median(times[t]) for t in T])
    rng = np.random.default_rng(0)
    med = np.stack([np.median(rng.choice(times[t], (DRAWS, len(times[t]))), axis=1) for t in T], axis=1)
    x = np.log(np.asarray(T, dtype=np.float64))
    x -= x.mean()
    slopes = (np.log(med) - np.log(med).mean(axis=1, keepdims=True)) @ x / (x @ x)  # least squares, every draw at once
    lo, hi = np.percentile(slopes, [2.5, 97.5])
    return est, float(lo), float(hi)


def linearity(claim: str, criterion: str, rows, model, threads, effect: str) -> dict:
    """|k - 1| judged below LINEAR_DEV: its interval from k's, so it holds where k's interval lies within
    1 +- LINEAR_DEV and does not hold where it lies wholly outside (an equivalence test)."""
    k, lo, hi = exponent_interval(rows, model, threads)
    far, near = max(abs(lo - 1), abs(hi - 1)), (0.0 if lo <= 1 <= hi else min(abs(lo - 1), abs(hi - 1)))
    mine = [r for r in rows if r["part"] == "timing" and r["model"] == model and r["threads"] == threads]
    reps = sorted({r["repeat"] for r in mine})
    lengths = {r["seq_len"] for r in rows if r["part"] == "timing"}  # every length any model was timed at
    lost = len(lengths - {r["seq_len"] for r in mine}) + len({r["seq_len"] for r in mine if not math.isfinite(r["value"])})
    why = (f"{lost} of {len(lengths)} lengths missing, or with a time not finite" if lost else
           "no exponent: fewer than two lengths timed, or a time not positive" if not math.isfinite(k) else
           "the repeats did not vary (one per length, or all equal): no interval to judge" if lo == hi else "")
    return decide(claim, criterion, (abs(k - 1), near, far), LINEAR_DEV, "below", effect,
                  "95% bootstrap interval over the repeats at each length (one timing run; |k - 1|'s from k's)",
                  [], len(reps), {"k": [k, lo, hi]}, why)


def verdict(rows: list[dict]) -> dict:
    """Judge the claim from the rows alone (pure: tests feed it hand-made rows)."""
    threads = sorted({r["threads"] for r in rows if r["part"] == "timing"})
    models = sorted({r["model"] for r in rows if r["part"] == "timing"})
    fast = threads[-1] if threads else None
    crit = (f"k of time ~ T^k (the slope of log median time against log length, at {fast} thread(s), with its 95% "
            "bootstrap interval over the repeats at each length); holds if that interval lies within 1 +- "
            f"{LINEAR_DEV:.4g} (each doubling of the length doubles the time, within 10%), does not hold if it lies "
            "wholly outside")
    linear = linearity("The vanilla RNN's time per batch grows linearly with the sequence length", crit, rows, "rnn",
                       fast, "|k - 1|, time ~ T^k")
    control = linearity("Negative control: the Transformer's time grows linearly too (expected: does not hold, its "
                        "attention grows with the square of the length)", crit, rows, "transformer", fast,
                        "|k - 1|, Transformer")
    linear["criterion"] += ("; holds only if the negative control does not hold with its k above 1 (the test then tells "
                            "linear from faster growth), else inconclusive; a refutation stands unless the control's k "
                            "lies wholly below 1 (fixed costs dominate) while the RNN's does not lie wholly above 1: "
                            "then inconclusive")
    k_control, k_rnn = control["numbers"]["k"], linear["numbers"]["k"]
    super_linear = control["outcome"] == FAILS and k_control[1] > 1
    fixed_costs = math.isfinite(k_control[2]) and k_control[2] < 1  # the quadratic model timed as sub-linear
    sub_linear = (f"the negative control's Transformer time grew more slowly than linearly (k {k_control[0]:.3g} "
                  f"[{k_control[1]:.3g}, {k_control[2]:.3g}]): fixed costs, not the length, dominate these timings")
    if linear["outcome"] == HOLDS and not super_linear:
        demote(linear, sub_linear if fixed_costs else "the negative control did not show the Transformer's time "
                                                      "growing otherwise")
    elif linear["outcome"] == FAILS and fixed_costs and not k_rnn[1] > 1:  # fixed costs pull k towards 0, not above 1
        demote(linear, sub_linear)
    rnn = speedups(rows, "rnn")
    helped = {}

    def helped_crit(k: str) -> str:
        return (f"speed-up from {threads[0]} to {fast} threads (ratio of medians), {k} minus the RNN, at each length; 95% t "
                "interval over lengths; holds if it lies above 0")

    for k in (m for m in PARALLEL if m in models):
        s = speedups(rows, k)
        diff = paired(s, rnn)  # per length, NaN where one side lacks it
        helped[k] = judge(f"A second thread speeds up the {k} more than the vanilla RNN", helped_crit(k), diff, 0.0,
                          "above", effect=f"speed-up({k}) - speed-up(rnn)", over="lengths (one timing run)")
        if len(threads) < 2:
            helped[k]["outcome"] = UNDECIDED
            helped[k]["criterion"] = NOT_TIMED
    combined = linear["criterion"] + (
        f"; and, for each parallel model timed ({', '.join(helped)}): " + helped_crit("the model") if helped
        and len(threads) > 1 else "; and the thread questions: " + NOT_TIMED if helped else "")
    busy, rule = busy_machine(rows), busy_rule(rows)
    for q in (linear, control, *helped.values()):
        q["criterion"] += rule
        if busy:  # the first reason to give, whatever else left it open
            q["outcome"] = UNDECIDED
            q["effect"]["undecided"] = busy
    peak = mean_sd(values(rows, part="peak", threads=fast, metric="matmul_flops_per_second"))[0]
    numbers = {"threads": threads, "matmul_flops_per_second": peak, "by_model": {},
               "others_cpu_share": _recorded(rows)}
    for m in models:
        med = medians(rows, m, fast)
        flops = {r["seq_len"]: r["value"] for r in rows if r["part"] == "flops" and r["model"] == m}
        fit_ = linear_fit(list(med), list(med.values()))
        numbers["by_model"][m] = {
            "ms_per_batch": {str(T): 1e3 * v for T, v in med.items()},
            "slope_ms_per_token": 1e3 * fit_["slope"], "r2": fit_["r2"],
            "k": exponent(list(med), list(med.values())),
            "speedup": {str(T): v for T, v in speedups(rows, m).items()},
            "speedup_mean_ci95": list(t_interval(speedups(rows, m).values())),
            "fraction_of_matmul_peak": {str(T): flops[T] / med[T] / peak for T in med if T in flops}}
    return {"claim": "The vanilla RNN's time per batch grows linearly with the sequence length, and a second thread "
                     "speeds up the parallel-in-time models more than it speeds up the RNN",
            "criterion": combined + rule,
            "outcome": combine([linear["outcome"], *(q["outcome"] for q in helped.values())]),
            "effect": linear["effect"], "numbers": numbers, "parts": [part_of(q) for q in helped.values()],
            "questions": [linear, *helped.values()], "controls": [control]}


# --- figure --------------------------------------------------------------------------------------

def figure(rows: list[dict], judged: dict):
    """ms per batch against length; speed-up from threads against length; fraction of the matmul peak."""
    import matplotlib.pyplot as plt

    from ..plots import MODEL_COLORS, tight

    threads = sorted({r["threads"] for r in rows if r["part"] == "timing"})
    models = sorted({r["model"] for r in rows if r["part"] == "timing"})
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(16, 4.6))
    for m in models:
        for n in threads:
            by_T: dict = {}
            for r in rows:
                if r["part"] == "timing" and r["model"] == m and r["threads"] == n:
                    by_T.setdefault(r["seq_len"], []).append(r["value"] * 1e3)
            Ts = sorted(by_T)
            med = [np.median(by_T[T]) for T in Ts]
            err = [[med[i] - min(by_T[T]) for i, T in enumerate(Ts)], [max(by_T[T]) - med[i] for i, T in enumerate(Ts)]]
            a.errorbar(Ts, med, yerr=err, fmt="o-" if n == threads[-1] else "s:", color=MODEL_COLORS.get(m),
                       capsize=2, label=f"{m}, {n} thread{'s' if n > 1 else ''}")
        s = speedups(rows, m)
        b.plot(list(s), list(s.values()), "o-", color=MODEL_COLORS.get(m), label=m)
        fr = judged["numbers"]["by_model"].get(m, {}).get("fraction_of_matmul_peak", {})
        c.plot([int(T) for T in fr], [100 * v for v in fr.values()], "o-", color=MODEL_COLORS.get(m), label=m)
    a.set_xscale("log", base=2); a.set_yscale("log")
    a.set_xlabel("sequence length T (tokens)"); a.set_ylabel("ms per forward+backward batch (median, min-max)")
    a.set_title("time per batch", fontsize=10); a.grid(alpha=0.3, which="both")
    if len(threads) > 1:
        b.axhline(1, color="k", lw=0.8, ls=":")
        b.axhline(threads[-1] / threads[0], color="k", lw=0.8, ls="--", label="perfect scaling")
    else:  # one core, or a GPU: an empty panel said "speed-up from 1 to 1 threads"
        b.text(0.5, 0.5, NOT_TIMED.replace(": ", ":\n", 1).replace(" (", "\n(", 1), transform=b.transAxes,
               ha="center", va="center", fontsize=9, color="0.3", wrap=True)
    b.set_xscale("log", base=2); b.set_xlabel("sequence length T (tokens)")
    b.set_ylabel(f"speed-up from {threads[0]} to {threads[-1]} threads" if len(threads) > 1 else "speed-up")
    b.set_title("what a second thread buys", fontsize=10); b.grid(alpha=0.3)
    c.set_xscale("log", base=2); c.set_xlabel("sequence length T (tokens)")
    c.set_ylabel("% of this machine's float32 matmul rate"); c.set_title("hardware used", fontsize=10)
    c.grid(alpha=0.3)
    for ax, ncol in ((a, 3), (b, 3), (c, 3)):  # below each panel, where no line runs
        ax.legend(fontsize=7, ncol=ncol, loc="upper center", bbox_to_anchor=(0.5, -0.17))
    named = ", ".join(m for m in ("rnn", "lstm", "gru", "transformer") if m in models)  # those timed
    cnn = "; cnn at the rnn's sizes" if "cnn" in models else ""
    recorded = judged["numbers"].get("others_cpu_share", {})  # none: labs before session 60
    shares = list(_told(recorded).values())
    alone = ("nothing else running" if not recorded else "nothing else running (not checked)" if not shares else
             f"other processes used up to {max(shares):.0%} of the CPUs"
             + (" (not this machine's own timings)" if max(shares) > BUSY else ""))
    fig.suptitle(title("Serial computation", judged, f"lab presets ({named}{cnn}), forward + backward, median of "
                       f"the repeats, {alone}"))
    tight(fig)
    return fig
