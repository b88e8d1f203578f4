"""The whole lab in one command: the seed exercise, the four shortfalls, the comparison, the report.

    rnnlab lab --data ../shared/data/imdb --out results/lab [--quick] [--markdown docs/RESULTS.md]
    from rnnlab.lab import run_lab
    run_lab(ds, Path("results/lab"), quick=True, device="cpu", log=print, data_arg="../shared/data/imdb")

OUT/seed is an `rnnlab train --preset seed` run, OUT/shortfalls/<name>/ the four experiments,
OUT/compare/ the comparison, OUT/report.html and OUT/report.md the report. A step whose results
already exist for the same mode and data is skipped, and an interrupted step picks up where it
stopped (finished epochs of the seed run, finished experiments, finished compare jobs), so rerunning
an interrupted lab resumes it. `--quick` runs every step on a subset with short schedules (about
10 minutes on 2 CPU cores): a smoke test of the whole pipeline, not evidence.
"""
from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Callable

from . import compare
from .config import SEED, with_overrides
from .data import Dataset
from .experiments import EXPERIMENTS
from .experiments.common import subsample
from .io import RunError, read_json
from .runs import Run
from .train import prepare, train

Log = Callable[[str], None]

QUICK_SEED = {"n_train": 2000, "n_test": 1000, "epochs": 2}  # the seed exercise in --quick mode
STEPS = ("seed", "shortfalls", "compare", "report")


def run_lab(ds: Dataset, out: Path, quick: bool = False, device: str = "auto", log: Log = print,
            data_arg: str | None = None, seeds: int | None = None, markdown: Path | None = None) -> dict:
    """Run (or resume) every step; returns {step: 'ran' | 'kept'} and where the report is.

    `markdown`: write the report's Markdown twin there instead of OUT/report.md, with its figures
    copied into `figures/` next to it (how docs/RESULTS.md is made).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunError(f"{out}: output path is a file, not a directory")
    out.mkdir(parents=True, exist_ok=True)
    mode = "quick" if quick else "full"
    data_flag = ["--data", data_arg] if data_arg else []
    quick_flag = ["--quick"] if quick else []
    status: dict[str, str] = {}
    started = time.perf_counter()

    # 1. the seed exercise
    log(f"[lab] 1/4 the seed exercise -> {out / 'seed'}")
    status["seed"] = _seed_exercise(ds, out / "seed", quick, device, log)

    # 2. the four shortfalls
    for i, (name, experiment) in enumerate(EXPERIMENTS.items(), 1):
        d = out / "shortfalls" / name
        if _finished(d / "verdict.json", mode, ds):
            log(f"[lab] 2/4 shortfall {i}/4 {name}: results exist ({mode}, same data), kept")
            status[name] = "kept"
            continue
        log(f"[lab] 2/4 shortfall {i}/4 {name} -> {d}")
        experiment(ds, out / "shortfalls", quick=quick, device=device, log=log)
        status[name] = "ran"

    # 3. the comparison (resumes job by job)
    log(f"[lab] 3/4 compare -> {out / 'compare'}")
    kept = _finished(out / "compare" / "verdict.json", mode, ds)
    cmd = shlex.join(["rnnlab", "compare", *data_flag, *quick_flag, *(["--seeds", str(seeds)] if seeds else []),
                      "--out", str(out / "compare")])
    compare.run(ds, out / "compare", quick=quick, seeds=seeds, device=device, log=log, command=cmd)
    status["compare"] = "kept" if kept else "ran"

    # 4. the report
    log(f"[lab] 4/4 report -> {out / 'report.html'}")
    from .report import write_report

    written = write_report(out, out / "report.html", markdown=markdown)
    status["report"] = "ran"
    log(f"[lab] done in {time.perf_counter() - started:.0f} s: {written['hold']} of {written['claims']} claims "
        f"hold; open {written['html']} (Markdown twin: {written['markdown']})")
    return {"steps": status, "report": written["html"], "markdown": written["markdown"], "mode": mode,
            "claims": written["claims"], "hold": written["hold"]}


def _finished(verdict: Path, mode: str, ds: Dataset) -> bool:
    """Whether an experiment's verdict exists, is readable, and was made in `mode` on this data."""
    if not verdict.exists():
        return False
    try:
        v = read_json(verdict)
    except RunError:
        return False
    return isinstance(v, dict) and v.get("mode") == mode and str(v.get("data", "")).startswith(ds.source)


def _seed_exercise(ds: Dataset, run_dir: Path, quick: bool, device: str, log: Log) -> str:
    """The notebook's run (seed preset); in quick mode on a subset for 2 epochs."""
    cfg = with_overrides(SEED, {"device": device})
    if quick:
        ds = subsample(ds, QUICK_SEED["n_train"], QUICK_SEED["n_test"])
        cfg = with_overrides(cfg, {"epochs": QUICK_SEED["epochs"]})
    run = Run(run_dir)
    if (run_dir / "config.json").exists():
        try:
            same = run.config() == cfg and read_json(run_dir / "meta.json").get("data") == ds.source
        except (RunError, ValueError):
            same = False
        if same and (run_dir / "summary.json").exists():
            log("[lab] the seed exercise: finished earlier with the same config and data, kept")
            return "kept"
        if not same:
            raise RunError(f"{run_dir}: holds a run with another config or data; "
                           "choose another --out or remove it")
        log("[lab] the seed exercise: resuming the interrupted run")
    data = prepare(cfg, ds, log)
    if not (run_dir / "config.json").exists():
        run = Run.create(run_dir, cfg, data.vocab, data.source)
    summary = train(cfg, data, run, log=log)
    log(f"[lab] the seed exercise: test acc {summary['test_acc']:.4f} after {summary['epochs']} epochs")
    return "ran"
