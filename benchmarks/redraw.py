"""Draw every figure of a lab again from its committed files, with this checkout's code.

    python benchmarks/redraw.py docs/lab [--out DIR]

The lab draws each figure from the rows it saves (results.csv; the explained reviews from picks.json), so
the same code on the same files gives the same bytes (the explained reviews' pages too): without --out the figures are written over the lab's
own (after a change to how figures are drawn; then `rnnlab report docs/lab --markdown docs/RESULTS.md`
puts them into the report and docs/RESULTS_figures), with --out next to each other for a comparison.
Prints one line per figure: the path and whether it changed. An SVG whose numbers differ only past their fifth
decimal is the same drawing: another CPU's float rounding (on an AMD Zen 3 VM the Intel-drawn serial figure's
log axis came out 0.000001 pt apart), not another figure.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from rejudge import read_rows

from rnnlab.experiments import EXPERIMENTS
from rnnlab.explain import Explanation
from rnnlab.explain_views import write_html, write_png
from rnnlab.plots import exercise_figure, save_figure


NUMBER = re.compile(rb"(-?\d+(?:\.\d+)?)")
SVG_TOLERANCE = 1e-5  # SVG coordinates carry 6 decimals: a CPU's rounding moves the last one


def same_drawing(path: Path, a: bytes, b: bytes) -> bool:
    """Whether two drawings of `path` are the same: equal bytes, or for an SVG equal but for numbers within
    SVG_TOLERANCE of each other."""
    if a == b or path.suffix != ".svg":
        return a == b
    pa, pb = NUMBER.split(a), NUMBER.split(b)  # text, number, text, ...: the numbers at odd places
    return len(pa) == len(pb) and all(x == y or i % 2 and abs(float(x) - float(y)) <= SVG_TOLERANCE
                                      for i, (x, y) in enumerate(zip(pa, pb)))


def redraw(lab: Path, out: Path) -> list[tuple[Path, Path]]:
    """(the lab's figure, the one drawn now) for each figure the lab holds."""
    drawn = []
    for name, e in EXPERIMENTS.items():
        if not (lab / name / "results.csv").exists():
            print(f"{lab / name}: no results.csv, nothing to draw")
            continue
        rows = read_rows(lab / name / "results.csv")
        fig = e.module().figure(rows, e.module().verdict(rows))
        for suffix, kw in ((".svg", {}), (".png", {"dpi": 120})):  # as experiments.common.run_experiment
            target = out / name / f"{name}{suffix}"
            target.parent.mkdir(parents=True, exist_ok=True)
            save_figure(fig, target, **kw)
            drawn.append((lab / name / target.name, target))
    if (lab / "seed" / "results.csv").exists():
        fig = exercise_figure(read_rows(lab / "seed" / "results.csv"))
        for suffix, kw in ((".svg", {}), (".png", {"dpi": 120})):  # as lab.write_exercise
            (out / "seed").mkdir(parents=True, exist_ok=True)
            save_figure(fig, out / "seed" / f"seed{suffix}", **kw)
            drawn.append((lab / "seed" / f"seed{suffix}", out / "seed" / f"seed{suffix}"))
    picks = json.loads((lab / "explain" / "picks.json").read_text()) if (lab / "explain" / "picks.json").exists() \
        else {"picks": []}  # no kept models: the lab skipped its explain step
    for p in (p for p in picks["picks"] if p.get("explanations")):
        (out / "explain").mkdir(parents=True, exist_ok=True)
        exps = [Explanation.from_dict(d) for d in p["explanations"]]
        target = out / "explain" / p["files"]["png"]
        write_png(exps, target)  # as lab.explain_reviews
        page = out / "explain" / p["files"]["html"]
        write_html(exps, page, title=f"{p['rule']}: test review {p['data_index']}")
        drawn += [(lab / "explain" / target.name, target), (lab / "explain" / page.name, page)]
    return drawn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("lab")
    ap.add_argument("--out", default=None, help="draw here instead of over the lab's figures")
    args = ap.parse_args()
    lab = Path(args.lab)
    before = {p: p.read_bytes() for p in [*lab.glob("*/*.png"), *lab.glob("*/*.svg"), *lab.glob("explain/*.html")]}
    for old, new in redraw(lab, Path(args.out) if args.out else lab):
        now = new.read_bytes()
        same = "same bytes" if before.get(old) == now else "same drawing" if old in before and same_drawing(
            old, before[old], now) else "changed"
        print(f"{old}: {same}")


if __name__ == "__main__":
    main()
