"""The whole lab in one command: the notebook's exercise, the four shortfalls, the comparison, the report.

    rnnlab lab --data ../shared/data/imdb --out results/lab [--quick] [--jobs 2] [--markdown docs/RESULTS.md]
    from rnnlab.lab import run_lab
    run_lab(ds, Path("results/lab"), quick=True, runner=Runner(workers=2), data_arg="../shared/data/imdb")

Every experiment's jobs (rnnlab.experiments) are gathered and run together, the longest first, so
the workers stay busy; a model several experiments need is trained once. Then each experiment writes
OUT/<name>/ from its jobs' rows, and the report renders OUT/report.html and OUT/report.md. Finished
jobs are kept in OUT/jobs/ (keyed by their arguments and the data's fingerprint), so rerunning an
interrupted lab resumes it, and a rerun on other data or in the other mode redoes what differs.
OUT/lab.json records the commit, the machine, the wall time of each phase and, in full mode, the
seed baseline's epoch time on this machine (../shared/bench/seed_baseline.py, for scale).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .config import NOTEBOOK, QUICK_SEED, from_dict, with_overrides
from .data import Dataset, data_source, load_imdb
from .experiments import EXPERIMENTS
from .experiments.common import SEEDS, _on_device, measured, rows_to_csv, run_experiment
from .io import (RunError, StorageError, exclusive, file_in_the_way, in_the_way, missing_folders, nearest_existing,
                 remove_empty, remove_leftovers, shorten, text_sha256, write_json)
from .jobs import Job, Runner
from .runs import environment

Log = Callable[[str], None]
BASELINE = Path(__file__).resolve().parents[3] / "shared" / "bench" / "seed_baseline.py"
OWN_FILES = ("lab.json", "report.html", "report.md")  # what a lab writes in OUT itself, beside its folders


def load_data(data_arg: str | None, log: Log) -> Dataset:
    """The data, its source logged first (DataError on bad input); `check_out` has vetted the output path."""
    log(f"loading data ({shorten(data_source(data_arg))})")
    return load_imdb(data_arg)


def check_out(out: Path, device: str) -> None:
    """RunError/StorageError/ValueError where the device or the output path cannot serve: before any work."""
    from .train import resolve_device

    resolve_device(device)
    blocked = file_in_the_way(out)
    if blocked is not None:
        raise RunError(f"{out}: output path is a file, not a directory" if blocked == out
                       else f"{out}: {blocked} is a file, not a directory")
    dangling(out)  # before the data is read (held() would find it after)
    if why := in_the_way(out):  # a link to nothing, or a loop, on the way to OUT
        raise RunError(f"{out}: {why}")
    for d in (out / "jobs", nearest_existing(out)):  # before any job trains: a read-only --out fails now
        if d.is_symlink() and not d.exists():  # mkdir would say only "file exists", after the data is read
            raise RunError(f"{out}: {d} is a symbolic link to nowhere, not the folder of the lab's jobs; move it")
        if d.exists() and not d.is_dir():
            raise RunError(f"{out}: {d} is a file, not the folder of the lab's jobs; move it")
        if d.exists() and not os.access(d, os.W_OK | os.X_OK):
            where = d if d in (out, out / "jobs") else f"{out} (in {d})"  # the folder it would be made in
            raise RunError(f"cannot write {where}: permission denied or read-only")


def dangling(out: Path) -> None:
    """Refuse an OUT that is a symbolic link to nowhere."""
    if out.is_symlink() and not out.exists():
        raise StorageError(f"cannot write {out}: a symbolic link to nowhere (a loop, or its target is gone)")


@contextlib.contextmanager
def held(out: Path):
    """OUT made and held by this process while a lab (or shortfall, compare) writes it: a second one into the same
    OUT fails at once instead of running every job again beside it; writes a killed run left half-done are
    deleted (they are never read)."""
    dangling(out)  # mkdir would say only "file exists"
    made = missing_folders(out)  # innermost first
    out.mkdir(parents=True, exist_ok=True)
    with exclusive(out, "another rnnlab lab, shortfall or compare is writing here; wait for it or stop it"):
        remove_leftovers(out, only=OWN_FILES)  # --out may be a folder of the user's own
        jobs = out / "jobs"
        remove_leftovers(jobs, *(d for d in jobs.glob("*") if d.is_dir() and not d.is_symlink()),
                         *(out / n for n in ("seed", "explain", *EXPERIMENTS)))
        made = ([] if os.path.lexists(jobs) else [jobs]) + made
        try:
            yield
        except BaseException:  # stopped before any job's result (no worker could start, Ctrl-C): no empty folders
            remove_empty(made)
            raise


def run_experiments(experiments, ds: Dataset, out: Path, quick: bool = False, device: str = "auto",
                    runner: Runner | None = None, log: Log = print, data_arg: str | None = None,
                    command: str | None = None) -> list[dict]:
    """Run the experiments' jobs together, then write each experiment's artifacts; returns their verdicts.
    `command`: what verdict.json records as the command that made them (default: this process's; the notebook
    passes the rnnlab command its cell stands for)."""
    runner = runner or Runner(workers=1, log=log)
    mode = "quick" if quick else "full"
    jobs = [_on_device(job, device) for e in experiments for _, job in e.module().jobs(mode)]
    runner.run(jobs, ds, data_arg, out / "jobs")
    return [run_experiment(e.module(), ds, out, quick=quick, device=device, runner=runner, log=log,
                           data_arg=data_arg, command=command) for e in experiments]


def run_lab(ds: Dataset, out: Path, quick: bool = False, device: str = "auto", runner: Runner | None = None,
            log: Log = print, data_arg: str | None = None, markdown: Path | None = None) -> dict:
    """Run (or resume) every step; returns the phases' wall times, the verdicts and where the report is."""
    from .report import write_report

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runner = runner or Runner(workers=1, log=log)
    mode = "quick" if quick else "full"
    started = time.perf_counter()
    env = environment()  # before the lab writes anything: git_dirty is the code's state, not its own outputs;
    # every part records this one (a part's own reading would see the parts written before it)
    phases = {}
    experiments = list(EXPERIMENTS.values())
    seed_jobs = exercise_jobs(mode, device)
    parquet = data_arg and (Path(data_arg) / "train.parquet").exists()
    extra = [baseline_job(data_arg)] if mode == "full" and BASELINE.exists() and parquet else []
    jobs = seed_jobs + extra + [_on_device(job, device) for e in experiments for _, job in e.module().jobs(mode)]
    log(f"[lab] {len({j.key for j in jobs})} jobs: the notebook's exercise, {len(experiments)} experiments"
        f"{' and the seed baseline' if extra else ''}; {runner.where}")
    t0, ran = time.perf_counter(), runner.ran
    results = runner.run(jobs, ds, data_arg, out / "jobs")
    phases["jobs"] = time.perf_counter() - t0
    ran = runner.ran - ran  # the rest were finished by an earlier run of this lab (rerun to resume)
    t0 = time.perf_counter()
    write_exercise(out / "seed", seed_jobs[0].args["cfg"], [r for j in seed_jobs for r in results[j.key]], mode,
                   _exercise_train_reviews(ds, seed_jobs[0].args["n_train"]), ds.fingerprint())
    verdicts = [run_experiment(e.module(), ds, out, quick=quick, device=device, runner=runner, log=log,
                               data_arg=data_arg, env=env) for e in experiments]
    phases["experiments"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    explain_reviews(out / "explain", ds, out / "jobs", mode, device, log)
    phases["explain"] = time.perf_counter() - t0
    record = {"mode": mode, "data": ds.source, "data_fingerprint": ds.fingerprint(), "command": shlex.join(["rnnlab", *sys.argv[1:]]),
              "environment": env, "seeds": list(SEEDS[mode]), "workers": runner.workers,
              **({"ray": runner.ray_address} if runner.ray_address else {}),
              "threads_per_job": runner.threads,
              "phases_seconds": phases, "jobs": len({j.key for j in jobs}), "jobs_run": ran,
              "job_seconds_by_experiment": _job_seconds(out / "jobs", experiments, mode, device),
              **({"seed_baseline_epoch_seconds": results[extra[0].key][0]["value"]} if extra else {})}
    record["phases_seconds"] = {k: round(v, 1) for k, v in phases.items()}
    record["wall_seconds"] = round(time.perf_counter() - started, 1)  # the report's rendering after it: under a second
    write_json(out / "lab.json", record)
    written = write_report(out, out / "report.html", markdown=markdown)
    smoke = " (--quick: a smoke test on little data, not evidence)" if quick else ""
    log(f"[lab] done in {record['wall_seconds']:.0f} s: {written['summary']}{smoke}; open {written['html']}")
    return {"report": written["html"], "markdown": written["markdown"], "mode": mode, "seeds": record["seeds"],
            "wall_seconds": record["wall_seconds"], "outcomes": {v["experiment"]: v["outcome"] for v in verdicts}}


# --- the notebook's exercise ------------------------------------------------------------------------

def exercise_jobs(mode: str, device: str = "auto") -> list[Job]:
    """The notebook's recipe (preset `notebook`: shuffled batches, whole reviews, 5 epochs, all 25,000
    training reviews, test accuracy after every epoch), one job per seed."""
    cfg = with_overrides(NOTEBOOK, {"device": device} if device != "auto" else {})
    data = {"n_train": 0, "n_test": 0}
    if mode == "quick":
        cfg = with_overrides(cfg, {"epochs": QUICK_SEED["epochs"]})
        data = {k: QUICK_SEED[k] for k in ("n_train", "n_test")}
    return [Job("rnnlab.lab:exercise_job", {"cfg": with_overrides(cfg, {"seed": s}).to_dict(), **data},
                label=f"the notebook's exercise, seed {s}", cost=cfg.epochs * 70.0) for s in SEEDS[mode]]


def _exercise_train_reviews(ds: Dataset, n_train: int) -> int:
    """How many training reviews the exercise's jobs read: the subset exercise_job draws, not the number asked."""
    from .prepare import subsample

    return len(subsample(ds, n_train, 0).train)


def exercise_job(ds: Dataset, cfg: dict, n_train: int, n_test: int) -> list[dict]:
    from .prepare import prepare, subsample
    from .train import train

    cfg = from_dict(cfg)
    ds = subsample(ds, n_train, n_test)
    trained = train(cfg, prepare(cfg, ds), log=lambda s: None, progress=False)
    return exercise_rows(trained.metrics, cfg.seed)


def exercise_rows(metrics: list[dict], seed: int) -> list[dict]:
    """The exercise's rows from a run's per-epoch metrics."""
    return [{"seed": seed, "part": "epoch", "epoch": r["epoch"], "metric": m, "value": float(r[m])}
            for r in metrics for m in ("test_acc", "train_loss", "train_seconds", "grad_norm_max")]


def write_exercise(d: Path, cfg: dict, rows: list[dict], mode: str, train_reviews: int, data_fingerprint: str) -> None:
    """OUT/seed/: results.csv (per seed and epoch), its learning-curve figure and summary.json, where
    `rnnlab report` reads the notebook's exercise (rows: exercise_rows of each seed's run)."""
    from .io import json_text, write_files
    from .plots import exercise_figure, figure_bytes

    d.mkdir(parents=True, exist_ok=True)
    csv_text = rows_to_csv(rows)
    fig = exercise_figure(rows)
    last = max(r["epoch"] for r in rows)
    final = [r for r in rows if r["metric"] == "test_acc" and r["epoch"] == last]
    summary = {"config": cfg, "epochs": last, "mode": mode, "train_reviews": train_reviews,
               "data_fingerprint": data_fingerprint, "results_sha256": text_sha256(csv_text),
               "seeds": [r["seed"] for r in final], "test_acc_by_seed": [r["value"] for r in final],
               "test_acc_mean": float(np.mean([measured(r)["value"] for r in final]))}
    # one set, summary.json (which vouches for the rows) renamed last: a full disk or a stop while it is written
    # leaves the previous set whole, as run_experiment's parts
    write_files([(d / "results.csv", csv_text), (d / "seed.svg", figure_bytes(fig, "svg")),
                 (d / "seed.png", figure_bytes(fig, "png", dpi=120)), (d / "summary.json", json_text(summary))])


# --- three real reviews, word by word -----------------------------------------------------------------

EXPLAINED = ("rnn", "lstm", "transformer")  # the comparison's models explained (their first seed's kept runs)


def explain_reviews(d: Path, ds: Dataset, store: Path, mode: str, device: str, log: Log) -> None:
    """Pick three test reviews by stated rules (rnnlab.explain.pick_reviews) and explain each with the
    comparison's vanilla RNN, LSTM and Transformer (their first seed): OUT/explain/picks.json (the rules, the picks,
    their explanations and the runs that explained them, as paths in OUT), review-<i>.html/.png."""
    from .config import PRESETS
    from .experiments.common import DATA, fit
    from .explain import explain_runs, load_run, pick_reviews, write_html, write_png
    from .prepare import balanced_indices

    runs, kept = [], {}
    for name in EXPLAINED:
        key = _on_device(fit(with_overrides(PRESETS[name], {"seed": SEEDS[mode][0]}), mode), device).key
        if not (store / key / "model.safetensors").exists():
            log(f"[lab] explain: no kept model for {name} in {store}; skipped")
            return
        runs.append(load_run(store / key))
        runs[-1].name, kept[name] = name, f"{store.name}/{key}"
    places = balanced_indices(ds.test.labels, DATA[mode]["n_test"])  # the lab's test subset, as places in the data
    test = ds.test if places is None else ds.test.subset(places)
    picks = pick_reviews(test, runs[0], runs[1])
    d.mkdir(parents=True, exist_ok=True)
    for p in (p for p in picks if p["index"] is not None):
        # data_index: the review's place in the data's test split, what `rnnlab explain --review N --data` reads
        n = p["data_index"] = p["index"] if places is None else int(places[p["index"]])
        exps = explain_runs(runs, test.texts[p["index"]], true_label=p["label"],
                            source=f"test review {n} of {ds.source} (review {p['index']} of the lab's test subset)")
        p["files"] = {"html": f"review-{n}.html", "png": f"review-{n}.png"}
        write_html(exps, d / p["files"]["html"], title=f"{p['rule']}: test review {n}")
        write_png(exps, d / p["files"]["png"])
        p["explanations"] = [e.to_dict() for e in exps]
        whole = next((e.n_review_tokens for e in exps), p["n_tokens"])  # n_tokens: as the RNN reads it (<= 400)
        log(f"[lab] explain: {p['rule']}: test review {n} ({p['n_tokens']} tokens read"
            + (f" of its {whole})" if whole != p["n_tokens"] else ")"))
    among = (f"the lab's test subset ({len(test):,} of the {len(ds.test):,} test reviews, half of each label, drawn "
             "with seed 0), which the comparison's models are scored on" if places is not None else "every test review")
    write_json(d / "picks.json", {"mode": mode, "models": list(EXPLAINED), "runs": kept, "seed": SEEDS[mode][0],
                                  "data_fingerprint": ds.fingerprint(), "among": among, "picks": picks})
    kept = {f for p in picks for f in p.get("files", {}).values()}
    for old in (*d.glob("review-*.html"), *d.glob("review-*.png")):  # an earlier run's picks
        if old.name not in kept:
            old.unlink()


def baseline_job(data_arg: str) -> Job:
    return Job("rnnlab.lab:baseline_epoch", {"data": str(Path(data_arg).resolve())},
               label="seed baseline, one epoch", cost=460.0)  # seconds, as fit's costs


def baseline_epoch(ds: Dataset, data: str) -> list[dict]:
    """Seconds of one training epoch of ../shared/bench/seed_baseline.py on this machine (for scale)."""
    import torch

    r = subprocess.run([sys.executable, str(BASELINE), data, "1"], capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())})
    epochs = [json.loads(line) for line in r.stdout.splitlines() if line.startswith('{"epoch"')]
    if r.returncode or not epochs:
        raise RunError(f"{BASELINE}: failed ({(r.stderr.strip().splitlines() or ['no output'])[-1]})")
    return [{"part": "baseline", "metric": "epoch_seconds", "value": float(epochs[0]["train_s"])}]


def _job_seconds(store: Path, experiments, mode: str, device: str) -> dict:
    """Seconds of the jobs each experiment reads (a job shared by several counts for each), on `device` (part of
    a job's key)."""
    from .io import read_json

    out = {}
    for e in experiments:
        total = 0.0
        for _, job in e.module().jobs(mode):
            f = store / f"{_on_device(job, device).key}.json"
            seconds = read_json(f).get("seconds") if f.exists() else None
            if type(seconds) in (int, float) and math.isfinite(seconds):  # a record edited by hand: not counted
                total += seconds
        out[e.name] = round(total, 1)
    return out
