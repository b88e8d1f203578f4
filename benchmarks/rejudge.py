"""Judge a lab's saved results again with this checkout's verdict code, from its results.csv files alone.

    python benchmarks/rejudge.py docs/lab [--out benchmarks/results/rejudge_docs_lab.json]

Each experiment's verdict is a pure function of its rows (`module.verdict(rows)`), and results.csv holds
those rows (every value in full since session 40; to 6 significant figures in labs made before). So a lab made before a change to a criterion can be read under
the new one without training anything, and the published verdicts can be checked against their raw files:
for every claim, question and control, the outcome and estimate in the lab's verdict.json and those
recomputed here. Prints one line per outcome that differs; --out writes them all.

--write puts the recomputed judgement (claim, criterion, outcome, effect, numbers, questions, controls) into each
verdict.json in place, with a "rejudged" record (this checkout's commit): for a change to a criterion's code (its
wording, a column, a decision rule) that moves no outcome or estimate. It judges every part first and refuses,
writing nothing, where one moves or a results.csv is not the file its verdict was judged on. So the published
verdicts stay this code's without training anything again, as benchmarks/redraw.py does for the figures; a
verdict's table (the comparison's table.csv) is written again with it. The lab's rows, figures and other records
are left as they are.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import re
from pathlib import Path

from rnnlab.experiments import EXPERIMENTS
from rnnlab.experiments.common import measured

INT = re.compile(r"-?\d+")


def cell(s: str):
    """A CSV cell back to what the lab wrote: empty -> None, integers, floats (nan included), else text."""
    if s == "":
        return None
    if INT.fullmatch(s):
        return int(s)
    try:
        return float(s)
    except ValueError:
        return s


def read_rows(path: Path) -> list[dict]:
    """The rows as the lab judged them: an empty cell is a column the row lacks, or (value) a failed measurement, NaN."""
    with open(path, newline="", encoding="utf-8") as f:
        return [measured({k: v for k, v in ((k, cell(v)) for k, v in r.items()) if v is not None or k == "value"})
                for r in csv.DictReader(f)]


def _num(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def judgements(v: dict) -> dict[str, dict]:
    """{name: the judgement} of a verdict's claim, its questions and controls (named by their first 70 characters)."""
    out = {"claim": v}
    for kind in ("questions", "controls"):
        for q in v.get(kind) or []:
            out[f"{kind[:-1]}: {q['claim'][:70]}"] = q
    return out


def outcomes(v: dict) -> dict[str, tuple[str, float | None]]:
    """{name: (outcome, estimate)} of a verdict's claim, questions and controls (estimate None for several models)."""
    return {k: (q["outcome"], _num((q.get("effect") or {}).get("estimate"))) for k, q in judgements(v).items()}


def per_model(v: dict) -> dict:
    """{(judgement, model): (estimate, interval)} of the effects that are one per model (the comparison's questions),
    whose outcomes the verdict does not keep: `outcomes` cannot see them move."""
    return {(k, m): (e.get("estimate"), tuple(e.get("ci95") or ())) for k, q in judgements(v).items()
            if isinstance(q.get("effect"), dict) and "estimate" not in q["effect"]
            for m, e in q["effect"].items() if isinstance(e, dict)}


def brief(q: dict) -> dict:
    e = q.get("effect") or {}
    return {"outcome": q["outcome"], "estimate": _num(e.get("estimate")),
            "ci95": [_num(x) for x in e.get("ci95") or []], **({"undecided": e["undecided"]} if "undecided" in e else {})}


def judged_rows(d: Path, saved: dict) -> None:
    """SystemExit unless d/results.csv is the file `saved` (its verdict.json) was judged on."""
    from rnnlab.io import text_sha256

    if saved.get("results_sha256") != text_sha256((d / "results.csv").read_text(encoding="utf-8")):
        raise SystemExit(f"{d}/results.csv is not the file its verdict.json was judged on: nothing rewritten")


def rewritten(d: Path, saved: dict, judged: dict, env: dict) -> dict | None:
    """verdict.json in `d` with this code's judgement, where only its wording differs (None: nothing differs); else
    SystemExit: rows that are not the ones the verdict was judged on, or an outcome or estimate that moved."""
    from rnnlab.experiments.common import rounded
    from rnnlab.io import jsonable

    judged_rows(d, saved)
    now = json.loads(json.dumps(jsonable(rounded(judged))))  # as the lab writes it
    if outcomes(saved) != outcomes(now) or per_model(saved) != per_model(now):
        raise SystemExit(f"{d}: an outcome or estimate moves under this code (rejudge.py without --write lists "
                         "them): --write rewrites wording only, nothing rewritten")
    if all(saved.get(k) == v for k, v in now.items()):
        return None
    record = {"by": "benchmarks/rejudge.py --write", "commit": (env.get("git_commit") or "")[:7],
              "uncommitted_changes": bool(env.get("git_dirty"))}
    return {**saved, **now, "rejudged": record}


def write(d: Path, verdict: dict, judged: dict) -> None:
    from rnnlab.experiments.common import rows_to_csv
    from rnnlab.io import write_json, write_text

    write_json(d / "verdict.json", verdict)
    if (judged.get("numbers") or {}).get("table"):  # the comparison's table.csv, as the lab writes it
        write_text(d / "table.csv", rows_to_csv(judged["numbers"]["table"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("lab")
    ap.add_argument("--out", default=None)
    ap.add_argument("--write", action="store_true", help="rewrite each verdict.json's judgement with this code's")
    args = ap.parse_args()
    lab, report, to_write = Path(args.lab), {}, []
    from rnnlab.runs import environment

    env = environment() if args.write else {}  # before any file is written: the checkout as it was
    for name, e in EXPERIMENTS.items():
        d = lab / name
        if not (d / "results.csv").exists():
            continue
        saved = json.loads((d / "verdict.json").read_text())
        if args.write:  # before judging: rows damaged since are refused, not judged
            judged_rows(d, saved)
        judged = e.module().verdict(read_rows(d / "results.csv"))
        was, new = judgements(saved), judgements(judged)
        if args.write and (verdict := rewritten(d, saved, judged, env)) is not None:
            to_write.append((d, verdict, judged))  # written once every part is judged: all of them, or none
        report[name] = {k: {"saved": brief(was[k]) if k in was else None, "now": brief(new[k]) if k in new else None}
                        for k in {**was, **new}}
        for k, v in report[name].items():
            if (v["saved"] or {}).get("outcome") != (v["now"] or {}).get("outcome"):
                print(f"{name}: {k}: {v['saved']} -> {v['now']}")
    for d, verdict, judged in to_write:
        write(d, verdict, judged)
    if args.out:
        Path(args.out).write_text(json.dumps({"lab": str(lab), "experiments": report}, indent=1) + "\n")


if __name__ == "__main__":
    main()
