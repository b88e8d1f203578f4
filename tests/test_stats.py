"""rnnlab.experiments.stats: the 95% t interval against scipy and a hand computation, the three
outcomes on either side of a threshold (boundaries and NaN bounds included), combine() and judge().

    pytest tests/test_stats.py
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from rnnlab.experiments.stats import FAILS, HOLDS, UNDECIDED, combine, distance, judge, outcome, t_interval

T_975_DF2 = 4.302652729749464  # Student t, 97.5% quantile, 2 degrees of freedom (from tables)


def test_t_interval_of_one_two_three_by_hand():
    """[1, 2, 3]: mean 2, sd 1, so the half-width is t(0.975, 2) * 1 / sqrt(3) = 2.484."""
    est, lo, hi = t_interval([1.0, 2.0, 3.0])
    half = T_975_DF2 / math.sqrt(3)
    assert est == 2.0
    assert lo == pytest.approx(2.0 - half, abs=1e-9) and hi == pytest.approx(2.0 + half, abs=1e-9)
    assert hi - 2.0 == pytest.approx(2.4841, abs=1e-4)


@pytest.mark.parametrize("values", [[0.012, 0.020, 0.009], [-5.1, -4.2, -6.0, -5.5], [0.3, 0.31]])
def test_t_interval_agrees_with_scipy(values):
    """Against scipy.stats.t.interval with the standard error of the mean, for 2, 3 and 4 values."""
    v = np.asarray(values)
    ref_lo, ref_hi = sps.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=sps.sem(v))
    est, lo, hi = t_interval(values)
    assert est == pytest.approx(v.mean(), rel=1e-12)
    assert lo == pytest.approx(ref_lo, rel=1e-9) and hi == pytest.approx(ref_hi, rel=1e-9)


def test_t_interval_level_is_honoured():
    """A 90% interval is scipy's 90% interval, narrower than the 95% one."""
    v = [1.0, 2.0, 4.0]
    ref_lo, ref_hi = sps.t.interval(0.90, 2, loc=np.mean(v), scale=sps.sem(v))
    _, lo90, hi90 = t_interval(v, level=0.90)
    _, lo95, hi95 = t_interval(v)
    assert (lo90, hi90) == pytest.approx((ref_lo, ref_hi), rel=1e-9)
    assert hi90 - lo90 < hi95 - lo95


def test_t_interval_drops_missing_and_non_finite_values():
    """None, NaN and inf are not seeds: [1, NaN, 2, None, 3, inf] is judged as [1, 2, 3]."""
    assert t_interval([1.0, math.nan, 2.0, None, 3.0, math.inf]) == pytest.approx(t_interval([1.0, 2.0, 3.0]))


def test_t_interval_with_fewer_than_two_values_has_no_bounds():
    """One value: the mean and NaN bounds; none: all NaN."""
    est, lo, hi = t_interval([0.7])
    assert est == 0.7 and math.isnan(lo) and math.isnan(hi)
    assert all(math.isnan(x) for x in t_interval([]))
    assert all(math.isnan(x) for x in t_interval([math.nan, None]))


def test_t_interval_of_identical_values_is_a_point():
    """Zero spread: the interval collapses onto the mean."""
    assert t_interval([0.5, 0.5, 0.5]) == (0.5, 0.5, 0.5)


@pytest.mark.parametrize("low, high, threshold, direction, expected", [
    (0.1, 0.2, 0.0, "above", HOLDS),          # wholly above
    (-0.2, -0.1, 0.0, "above", FAILS),        # wholly below
    (-0.1, 0.1, 0.0, "above", UNDECIDED),     # straddles
    (0.0, 0.1, 0.0, "above", UNDECIDED),      # touches the threshold from above: not wholly beyond
    (-0.1, 0.0, 0.0, "above", UNDECIDED),     # touches it from below: not wholly on the other side
    (-0.2, -0.1, 0.0, "below", HOLDS),
    (0.1, 0.2, 0.0, "below", FAILS),
    (-0.1, 0.1, 0.0, "below", UNDECIDED),
    (-0.1, 0.0, 0.0, "below", UNDECIDED),
    (0.0, 0.1, 0.0, "below", UNDECIDED),
    (-5.0, -4.0, -3.0, "below", HOLDS),       # a non-zero threshold: log10 ratio below -3
    (-2.9, -1.0, -3.0, "below", FAILS),
    (-3.5, -2.5, -3.0, "below", UNDECIDED),
    (0.25, 0.4, 0.2, "above", HOLDS),
    (0.05, 0.15, 0.2, "above", FAILS),
    (0.01, 0.011, 0.01, "above", UNDECIDED),  # low == threshold
])
def test_outcome_table(low, high, threshold, direction, expected):
    """holds only when the interval lies strictly beyond the threshold on the claimed side, does not hold
    when strictly on the other side, inconclusive otherwise (including touching the threshold)."""
    assert outcome(low, high, threshold, direction) == expected


@pytest.mark.parametrize("low, high", [(math.nan, 0.5), (0.5, math.nan), (math.nan, math.nan)])
@pytest.mark.parametrize("direction", ["above", "below"])
def test_outcome_with_a_nan_bound_is_inconclusive(low, high, direction):
    """No interval (one seed, no data): never holds, never fails, even if the known bound is far away."""
    assert outcome(low, high, 0.0, direction) == UNDECIDED


@pytest.mark.parametrize("parts, expected", [
    ([HOLDS, HOLDS, HOLDS], HOLDS),
    ([HOLDS], HOLDS),
    ([HOLDS, FAILS], FAILS),
    ([FAILS, UNDECIDED], FAILS),
    ([UNDECIDED, FAILS, HOLDS], FAILS),
    ([HOLDS, UNDECIDED], UNDECIDED),
    ([UNDECIDED, UNDECIDED], UNDECIDED),
    ([], UNDECIDED),  # nothing judged: nothing holds
])
def test_combine(parts, expected):
    """All hold -> holds; any fails -> does not hold; else (or nothing to combine) inconclusive."""
    assert combine(parts) == expected


def test_judge_reports_the_interval_it_judged():
    """Three seeds wholly above the threshold: holds, with scipy's interval, n, and the inputs as per_seed."""
    v = [0.012, 0.015, 0.010]
    j = judge("claim", "crit", v, threshold=0.0, direction="above", effect="acc gain", numbers={"k": 1},
              transform="on log10 ratios")
    ref_lo, ref_hi = sps.t.interval(0.95, 2, loc=np.mean(v), scale=sps.sem(v))
    assert j["outcome"] == HOLDS and j["claim"] == "claim" and j["criterion"] == "crit" and j["numbers"] == {"k": 1}
    e = j["effect"]
    assert e["name"] == "acc gain" and e["threshold"] == 0.0 and e["direction"] == "above" and e["n"] == 3
    assert e["per_seed"] == v
    assert e["estimate"] == pytest.approx(np.mean(v)) and e["ci95"] == pytest.approx([ref_lo, ref_hi])
    assert "on log10 ratios" in e["interval"]


def test_judge_the_same_values_against_the_other_side():
    """The same seeds judged for the opposite claim: does not hold (the interval is wholly above 0);
    the docstring's example seeds, whose interval reaches below 0, are inconclusive either way."""
    assert judge("c", "k", [0.012, 0.015, 0.010], 0.0, "below")["outcome"] == FAILS
    assert judge("c", "k", [0.012, 0.020, 0.009], 0.0, "above")["outcome"] == UNDECIDED
    assert judge("c", "k", [0.012, 0.020, 0.009], 0.0, "below")["outcome"] == UNDECIDED


def test_judge_with_one_seed_is_inconclusive():
    """n = 1, however large the effect: no interval, so inconclusive; the estimate is that value."""
    j = judge("c", "k", [0.9], 0.0, "above")
    assert j["outcome"] == UNDECIDED
    assert j["effect"]["estimate"] == 0.9 and j["effect"]["n"] == 1
    assert all(math.isnan(b) for b in j["effect"]["ci95"])
    assert j["effect"]["undecided"] == "no 95% interval from 1 value"  # verdict.json says why (a quick lab's one seed)


def test_judge_with_no_seeds_is_inconclusive():
    """No data at all: inconclusive, n = 0, an empty per_seed."""
    j = judge("c", "k", [], 0.0, "below")
    assert j["outcome"] == UNDECIDED and j["effect"]["n"] == 0 and j["effect"]["per_seed"] == []
    assert j["effect"]["undecided"] == "no 95% interval from 0 values"


def test_judge_counts_only_finite_seeds_but_lists_them_all():
    """A NaN seed is listed (a reader sees it) but not counted; the interval is that of the other two (and the
    outcome undecided: see below)."""
    j = judge("c", "k", [0.1, math.nan, 0.3], 0.0, "above")
    assert j["effect"]["n"] == 2 and len(j["effect"]["per_seed"]) == 3 and math.isnan(j["effect"]["per_seed"][1])
    ref_lo, ref_hi = sps.t.interval(0.95, 1, loc=0.2, scale=sps.sem([0.1, 0.3]))
    assert j["effect"]["ci95"] == pytest.approx([ref_lo, ref_hi])


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, None])
def test_judge_with_a_seed_that_has_no_finite_value_is_inconclusive(bad):
    """A failed or missing measurement of one seed: the other two would clear the threshold by far, but the
    claim was declared on three seeds, so it is undecided and says why (no crash on None)."""
    j = judge("c", "k", [0.5, bad, 0.52], 0.0, "above")
    assert j["outcome"] == UNDECIDED and j["effect"]["undecided"] == "1 of 3 values missing or not finite"
    assert j["effect"]["n"] == 2
    assert judge("c", "k", [0.5, 0.51, 0.52], 0.0, "above")["outcome"] == HOLDS  # the same, measured: holds


@pytest.mark.parametrize("direction", ["above", "below"])
def test_judge_with_identical_values_is_inconclusive(direction):
    """Zero spread over seeds (a seed that changed nothing): the zero-width interval would decide at any
    distance from the threshold; the verdict is undecided and says why."""
    j = judge("c", "k", [0.3, 0.3, 0.3], 0.0, direction)
    assert j["outcome"] == UNDECIDED and "identical" in j["effect"]["undecided"]
    assert j["effect"]["ci95"] == [0.3, 0.3]  # the numbers themselves are still reported
    assert judge("c", "k", [0.3, 0.3, 0.30001], 0.0, "above")["outcome"] == HOLDS
    assert "undecided" not in judge("c", "k", [0.3, 0.31], 0.0, "above")["effect"]


@pytest.mark.parametrize("direction", ["above", "below"])
def test_judge_decides_identical_values_beyond_the_measurements_step(direction):
    """A negative control blind by construction gives exactly 0 on every seed; with `step`, the measurement's
    resolution, identical values decide where they lie more than one step from the threshold, on the interval value
    +- step, and stay undecided within it (the statistics audit of session 60: a perfect control came out
    inconclusive and demoted the claims it guards). (Mutants: step ignored; the distance test dropped.)"""
    j = judge("c", "k", [0.0, 0.0, 0.0], 0.2, direction, step=1 / 120)
    assert j["outcome"] == (FAILS if direction == "above" else HOLDS) and "undecided" not in j["effect"]
    half = 4.302653 * (1 / 120) / 3  # t(0.975, 2) x sd of (0, 0, step) / sqrt(3): the narrowest interval one step allows
    assert j["effect"]["ci95"] == pytest.approx([-half, half], rel=1e-5)
    assert j["effect"]["interval"] == ("all 3 values identical: the value +- the narrowest 95% t interval's "
                                       "half-width values one measurement step (0.008333) apart could give")
    near = judge("c", "k", [0.19, 0.19, 0.19], 0.2, direction, step=1 / 120)  # 1.2 steps away: within 1.43
    assert near["outcome"] == UNDECIDED and near["effect"]["ci95"][1] > 0.2
    assert judge("c", "k", [0.0, 0.0, 0.0], 0.2, direction)["outcome"] == UNDECIDED  # no step: as before
    assert judge("c", "k", [0.0, math.nan, 0.0], 0.2, direction, step=1 / 120)["outcome"] == UNDECIDED


def test_judge_refuses_an_unknown_direction():
    with pytest.raises(ValueError, match="abov"):
        judge("c", "k", [0.1, 0.2, 0.3], 0.0, "abov")


def test_distance_in_words():
    """The estimate, its interval and the threshold in words; nothing without an interval."""
    j = judge("c", "k", [1.0, 2.0, 3.0], 0.0, "above")
    assert distance(j) == f"2 [{2 - 2.4841:.3g}, {2 + 2.4841:.3g}] vs threshold 0"
    assert distance(judge("c", "k", [1.0], 0.0, "above")) == ""
    assert distance({}) == ""


def test_a_seed_missing_on_one_side_of_a_pair_leaves_the_judgement_undecided():
    """paired() kept only the seeds both sides had: with seed 0's rows gone from one side, a long-reviews judgement
    decided on 2 seeds where 3 were declared (a second statistical review found it turn 'does not hold')."""
    from rnnlab.experiments.common import diff, mean_over, paired

    a, b = {0: 0.80, 1: 0.81, 2: 0.79}, {1: 0.70, 2: 0.72}
    d = paired(a, b)
    assert math.isnan(d[0]) and d[1:] == pytest.approx([0.11, 0.07])
    assert list(diff(b, a)) == [0, 1, 2] and math.isnan(mean_over([a, b])[0])
    j = judge("c", "k", d, 0.0, "above")
    assert j["outcome"] == UNDECIDED and j["effect"]["undecided"] == "1 of 3 values missing or not finite"
    assert paired(a, a) == [0.0, 0.0, 0.0] and mean_over([a, a]) == pytest.approx([0.80, 0.81, 0.79])


def test_demote_keeps_the_reason_a_verdict_was_already_undecided_for():
    """demote() leaves an undecided verdict's first reason (a missing seed) in place; it makes a decided one
    undecided with its own reason. (Mutant: the reason overwritten whatever the outcome.)"""
    from rnnlab.experiments.stats import demote

    missing = demote(judge("c", "k", [0.5, math.nan, 0.6], 0.0, "above"), "the control")
    assert missing["outcome"] == UNDECIDED and missing["effect"]["undecided"] == "1 of 3 values missing or not finite"
    held = demote(judge("c", "k", [0.5, 0.55, 0.6], 0.0, "above"), "the control")
    assert held["outcome"] == UNDECIDED and held["effect"]["undecided"] == "the control"


def test_judge_refuses_an_unknown_direction_even_where_it_would_be_undecided():
    """decide() calls outcome() whatever `why` says, so a misspelt direction is refused even where a missing
    or a constant value would leave the verdict undecided. (Mutant: outcome() skipped when `why` is set.)"""
    for vals in ([0.1, math.nan, 0.3], [0.3, 0.3, 0.3]):
        with pytest.raises(ValueError, match="abov"):
            judge("c", "k", vals, 0.0, "abov")


def test_a_seed_missing_on_the_first_side_of_a_pair_is_nan_too():
    """The existing test drops a seed from the second side only; dropping it from the first must give NaN too,
    not 0 - b. (Mutant: a.get(s, 0.0).)"""
    from rnnlab.experiments.common import paired

    a, b = {1: 0.70, 2: 0.72}, {0: 0.80, 1: 0.81, 2: 0.79}
    d = paired(a, b)
    assert math.isnan(d[0]) and d[1:] == pytest.approx([-0.11, -0.07])
    assert judge("c", "k", d, 0.0, "below")["outcome"] == UNDECIDED

