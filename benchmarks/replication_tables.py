"""The tables of docs/REPLICATION.md, from labs judged by this checkout's code (benchmarks/rejudge.py --out).

    python benchmarks/replication_tables.py benchmarks/results/rejudge_docs_lab.json \\
        benchmarks/results/rejudge_lab_intel_head.json benchmarks/results/rejudge_lab_seeds345.json \\
        benchmarks/results/rejudge_lab_zen4_seeds678.json \\
        --names "published (AMD Zen 4), seeds 0-2" "Intel, seeds 0-2" "Intel, seeds 3-5" "AMD Zen 4, seeds 6-8"

Prints two Markdown tables: the five claims (outcome, estimate and 95% interval in each lab), and every
claim, question and control whose outcome is not the same in all the labs, with the count of those that are.
"""
from __future__ import annotations

import argparse
import json

from rnnlab.experiments import EXPERIMENTS


def cell(j: dict | None) -> str:
    if not j:
        return "-"
    est, ci = j["estimate"], j["ci95"]
    num = "" if est is None else f", {est:.3g}" + (f" [{ci[0]:.3g}, {ci[1]:.3g}]" if ci and None not in ci else "")
    return f"{j['outcome']}{num}"


def tables(labs: list[dict], names: list[str]) -> str:
    head = "| | " + " | ".join(names) + " |\n|---|" + "---|" * len(names)
    claims = [f"| {EXPERIMENTS[e].title} | " + " | ".join(cell(lab["experiments"][e]["claim"]["now"]) for lab in labs) + " |"
              for e in EXPERIMENTS]
    keys = [(e, k) for e in EXPERIMENTS for k in labs[0]["experiments"][e]]
    timing = {"serial"}  # the timing outcomes measure the machine; counted apart
    moved, same, n = [], 0, 0
    for e, k in keys:
        js = [lab["experiments"][e].get(k, {}).get("now") for lab in labs]
        if e in timing or k.endswith("thread speeds up") or "serial computation" in k:
            continue
        n += 1
        if len({(j or {}).get("outcome") for j in js}) == 1:
            same += 1
        else:
            name = k.split(": ", 1)[1] if ": " in k else EXPERIMENTS[e].title
            moved.append(f"| {name}{'...' if len(name) >= 70 else ''} | " + " | ".join(cell(j) for j in js) + " |")
    return "\n".join([head, *claims, "", f"{same} of the {n} outcomes that do not time the machine are the same in "
                      f"all {len(labs)} labs; the others:", "", head, *moved])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rejudged", nargs="+")
    ap.add_argument("--names", nargs="+", required=True)
    args = ap.parse_args()
    print(tables([json.load(open(f)) for f in args.rejudged], args.names))


if __name__ == "__main__":
    main()
