"""Intervals and verdicts: every claim is a test that the data could fail, or leave undecided.

    from rnnlab.experiments.stats import t_interval, judge
    est, lo, hi = t_interval([0.012, 0.020, 0.009])            # 95% t interval of the mean over seeds
    v = judge("Tail beats head", "mean over seeds of acc(tail) - acc(head) > 0", [0.012, 0.020, 0.009],
              threshold=0.0, direction="above")
    v["outcome"]   # "holds" if the whole interval clears the threshold, "does not hold" if it lies
                   # wholly on the other side, "inconclusive" if it straddles it

The criterion is declared in code before the lab runs; the effect size, its interval and the
threshold go into verdict.json with the outcome, so a reader can see how far the data was from
deciding the other way.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

HOLDS, FAILS, UNDECIDED = "holds", "does not hold", "inconclusive"


def finite(values: Iterable) -> np.ndarray:
    return np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)


def t_interval(values: Iterable[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student's t interval of the mean of the finite values (NaN bounds for n < 2)."""
    from scipy import stats

    v = finite(values)
    if len(v) == 0:
        return math.nan, math.nan, math.nan
    m = float(v.mean())
    if len(v) < 2:
        return m, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return m, m - half, m + half


DIRECTIONS = ("above", "below")


def outcome(low: float, high: float, threshold: float, direction: str) -> str:
    """`direction` "above": the claim is effect > threshold; "below": effect < threshold."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction {direction!r}: not one of {DIRECTIONS}")
    if not (math.isfinite(low) and math.isfinite(high)):
        return UNDECIDED
    if direction == "below":
        low, high, threshold = -high, -low, -threshold
    if low > threshold:
        return HOLDS
    if high < threshold:
        return FAILS
    return UNDECIDED


def judge(claim: str, criterion: str, per_seed: Sequence[float], threshold: float, direction: str,
          effect: str = "", numbers: dict | None = None, transform: str = "", over: str = "seeds",
          step: float = 0.0) -> dict:
    """A verdict from per-seed effect sizes (or per `over`: what the values are replicates of): their mean, its 95%
    t interval and the outcome.

    Undecided whatever the interval says: when a value is not finite (a failed or missing measurement:
    the others alone would decide on fewer seeds than the claim was declared with), or when every seed gives
    exactly the same value (a zero-width interval is not certainty: the seed did not vary what it should).
    Except, for the last, where `step` > 0 is the measurement's resolution (a follow rate over 120 probes moves in
    steps of 1/120): then the interval is the common value +- the half-width of the narrowest t interval values one
    step apart could give (n - 1 of them equal, one a step off: +-1.43 steps for 3), and it decides as any interval.
    Callers pass it where identical values are what the design expects: a negative control blind by construction
    (the same follow rate at every distance), a model that follows every probe."""
    est, lo, hi = t_interval(per_seed)
    n, kept = len(per_seed), finite(per_seed)
    why, how = "", f"95% Student t interval of the mean over {over}" + (f" ({transform})" if transform else "")
    if len(kept) < n:
        why = f"{n - len(kept)} of {n} values missing or not finite"
    elif len(kept) < 2:  # outcome() reads the NaN interval as undecided; this says why, in verdict.json too
        why = f"no 95% interval from {len(kept)} value{'s' * (len(kept) != 1)}"
    elif np.ptp(kept) == 0 and step > 0:
        _, a, b = t_interval([0.0] * (len(kept) - 1) + [step])
        lo, hi = est - (b - a) / 2, est + (b - a) / 2
        how = (f"all {n} values identical: the value +- the narrowest 95% t interval's half-width values one "
               f"measurement step ({step:.4g}) apart could give")
    elif np.ptp(kept) == 0:
        why = f"all {n} values identical: no spread to judge"
    return decide(claim, criterion, (est, lo, hi), threshold, direction, effect or criterion, how,
                  per_seed, int(len(kept)), numbers, why)


def decide(claim: str, criterion: str, interval: tuple[float, float, float], threshold: float, direction: str,
           effect: str, how: str, per_seed: Sequence[float], n: int, numbers: dict | None = None, why: str = "") -> dict:
    """A verdict from an estimate and its 95% interval (`how` it was made); `why`: undecided whatever it says."""
    est, lo, hi = interval
    result = outcome(lo, hi, threshold, direction)  # refuses an unknown direction whatever `why` says
    return {"claim": claim, "criterion": criterion, "outcome": UNDECIDED if why else result,
            "effect": {"name": effect, "estimate": est, "ci95": [lo, hi], "threshold": threshold,
                       "direction": direction, "n": n, "interval": how,
                       "per_seed": [None if v is None else float(v) for v in per_seed], **({"undecided": why} if why else {})},
            "numbers": numbers or {}}


def demote(v: dict, why: str) -> dict:
    """`v` made undecided, with the reason, unless it already is."""
    if v["outcome"] != UNDECIDED:
        v["outcome"] = UNDECIDED
        v["effect"]["undecided"] = why
    return v


UNLESS_CONTROL = "; and only if the negative control does not hold, else inconclusive"  # how a claim that needs its control ends


def needs_control(v: dict, control: str, why: str) -> dict:
    """`v` made undecided, with `why`, where it holds but its negative control (outcome `control`) did not come out
    "does not hold": a measurement that finds the effect where it should not be cannot tell it where it should."""
    return demote(v, why) if v["outcome"] == HOLDS and control != FAILS else v


def part_of(q: dict, name: str = "") -> dict:
    """A part of a claim that its outcome combines, for the record (verdict.json's "parts"): the report names the
    parts that decided a claim its own effect alone would not have. `name`: the question's claim up to a colon."""
    return {"part": name or q["claim"].split(":")[0], "outcome": q["outcome"]}


def combine(parts: Sequence[str]) -> str:
    """All parts hold -> holds; any part does not hold -> does not hold; else inconclusive."""
    if parts and all(p == HOLDS for p in parts):
        return HOLDS
    if any(p == FAILS for p in parts):
        return FAILS
    return UNDECIDED


def distance(v: dict) -> str:
    """How far the interval is from the threshold, in words (for figures and the report)."""
    e = v.get("effect") or {}
    lo, hi = (e.get("ci95") or [math.nan, math.nan])
    if not e or lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return ""
    t = e["threshold"]
    return f"{e['estimate']:.3g} [{lo:.3g}, {hi:.3g}] vs threshold {t:.3g}"
