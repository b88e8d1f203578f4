"""Do two full labs agree? Every results.csv row of lab A against lab B, timings left out, and each verdict.

    python benchmarks/same_rows.py docs/lab OTHER_LAB [--out benchmarks/results/same_rows.json] [--digits 6]

Rows are matched on every column but `value`; a metric that is a time or a speed (seconds,
tokens or FLOPs per second) is left out, since it measures the machine. Reports per experiment the rows
compared, the rows equal to the last bit, the rows that differ and the largest difference, and rows
found in only one lab; then each experiment's verdict (outcome and effect with its interval) in both, judgements
paired by their claim (one found in only one lab is listed as such).
Labs made before session 40 wrote each value to 6 significant figures, later ones in full: `--digits 6`
compares both at 6 (what the older lab holds).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from common import publish
from rnnlab.experiments.common import TIMING as LAB_TIMING  # the lab's own list, and any metric named as a time

TIMING = ("seconds", "per_second")


def compare(a: Path, b: Path, digits: int | None = None) -> dict:
    x, y = pd.read_csv(a), pd.read_csv(b)
    x, y = (d[~(d["metric"].str.contains("|".join(TIMING)) | d["metric"].isin(LAB_TIMING))] for d in (x, y))
    if digits:
        x, y = (d.assign(value=d["value"].map(lambda v: float(f"{v:.{digits}g}"))) for d in (x, y))
    keys = [c for c in x.columns if c != "value"]
    m = x.merge(y, on=keys, how="outer", suffixes=("_a", "_b"), indicator=True)
    both = m[m["_merge"] == "both"]
    diff = (both["value_a"] - both["value_b"]).abs()
    differ = both[~((both["value_a"] == both["value_b"]) | (both["value_a"].isna() & both["value_b"].isna()))]
    return {"rows": len(both), "equal": len(both) - len(differ), "differ": len(differ),
            "max_abs_difference": float(diff.max()) if len(differ) else 0.0,
            "metrics_that_differ": sorted(differ["metric"].unique()),
            "only_in_a": int((m["_merge"] == "left_only").sum()), "only_in_b": int((m["_merge"] == "right_only").sum())}


def effects(e: dict) -> dict:
    """An effect's estimate and interval, or each model's where the effect is one per model."""
    return {"estimate": e["estimate"], "ci95": e["ci95"]} if "estimate" in e else {k: effects(x) for k, x in e.items()}


def verdict(lab: Path, name: str) -> list[dict]:
    """The claim, then each of its questions and controls: outcome, effect, interval."""
    v = json.loads((lab / name / "verdict.json").read_text())
    return [{"claim": q["claim"][:80], "outcome": q["outcome"], "effect": effects(q["effect"])}
            for q in [v, *v.get("questions", []), *v.get("controls", [])]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--out", default=None)
    ap.add_argument("--digits", type=int, default=None,
                    help="compare values at this many significant figures (6: a lab made before session 40)")
    args = ap.parse_args()
    a, b = Path(args.a), Path(args.b)
    names = sorted(p.parent.name for p in a.glob("*/results.csv"))
    if not names:
        sys.exit(f"no */results.csv under {a}")
    missing = [str(b / n / "results.csv") for n in names if not (b / n / "results.csv").is_file()]
    if missing:
        sys.exit(f"not in {b}: {', '.join(missing)}")
    result = {"a": args.a, "b": args.b, "digits": args.digits,
              "experiments": {n: compare(a / n / "results.csv", b / n / "results.csv", args.digits) for n in names},
              "verdicts": {}}
    for n in names:
        if (a / n / "verdict.json").exists():
            va, vb = verdict(a, n), verdict(b, n)
            ca, cb = {x["claim"]: x for x in va}, {y["claim"]: y for y in vb}  # paired by claim: one may have more
            both = [c for c in ca if c in cb]
            result["verdicts"][n] = {"same_outcomes": sum(ca[c]["outcome"] == cb[c]["outcome"] for c in both),
                                     "of": len(both), "only_in_a": [c for c in ca if c not in cb],
                                     "only_in_b": [c for c in cb if c not in ca], "a": va, "b": vb}
    publish(result, args.out)


if __name__ == "__main__":
    main()
