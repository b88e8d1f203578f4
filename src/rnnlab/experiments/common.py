"""What the experiments share: the one training job, the lab's data budget, and the artifacts.

    from rnnlab.experiments.common import fit, run_experiment
    job = fit(with_overrides(RNN, {"seed": 1}), "full")   # train one config and measure it
    verdict = run_experiment(long_reviews, ds, Path("results"), quick=False, runner=runner)

A training job (`fit_job`) trains one config on the lab's data budget with `rnnlab.train.train`,
then hands the trained model to every experiment's `measure` function (test accuracy by review
length, gradient profiles, the retention probe, ...), so a model that several experiments need
(the vanilla RNN at the lab's budget serves four) is trained once. Jobs are keyed by their
arguments: the same config asked by two experiments is one job (rnnlab.jobs).

Each experiment module provides `jobs(mode)` ([(tag, Job)]), `verdict(rows)` and `figure(rows,
verdict)`; `run_experiment` runs the jobs, keeps the rows the experiment reads, and writes
OUT/<name>/results.csv (tidy: one measurement per row), <name>.png/.svg and verdict.json. All are
written atomically, so a killed experiment never leaves a truncated file.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import importlib
import io
import json
import math
import shlex
import sys
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..config import DATA, QUICK_EPOCHS, SEEDS, TrainConfig, from_dict, with_overrides  # the lab's budget: config
from ..data import Dataset
from ..io import json_text, text_sha256, write_files
from ..jobs import Job, Runner
from ..plots import figure_bytes
from ..runs import environment
from .stats import UNDECIDED, finite

Log = Callable[[str], None]

MEASURES = ("vanishing_gradients", "bottleneck")  # modules whose measure() sees every trained model
TIMING = {"train_seconds", "train_seconds_per_epoch", "tokens_per_second", "seconds", "median_seconds", "flops_per_second",
          "fraction_of_matmul_peak", "matmul_flops_per_second", "job_seconds",
          "others_cpu_share"}  # depend on the machine's load


@contextlib.contextmanager
def seeds_used(mode: str, seeds: tuple[int, ...] | None):
    """Within the block, every job and protocol of `mode` uses `seeds` (None: the lab's own): the CLI's
    --seeds, to rerun the evidence on seeds it has not seen. The first seed keeps the lab presets' models."""
    if not seeds:
        yield
        return
    before = SEEDS[mode]
    SEEDS[mode] = tuple(seeds)
    try:
        yield
    finally:
        SEEDS[mode] = before


def as_trained(cfg: TrainConfig, mode: str) -> TrainConfig:
    """The configuration a lab job trains in this mode: quick mode trains QUICK_EPOCHS."""
    return with_overrides(cfg, {"epochs": QUICK_EPOCHS}) if mode == "quick" else cfg


def fit(cfg: TrainConfig, mode: str) -> Job:
    """The job that trains `cfg` on the lab's data budget and measures it for every experiment.

    The first seed (SEEDS) of each lab preset (rnn, lstm, gru, bow, transformer) also keeps its trained model
    (in the job's store directory, as a run directory) for `rnnlab explain` in the lab and the report.
    """
    keep = cfg.seed == SEEDS[mode][0] and is_lab_preset(cfg)
    cfg = as_trained(cfg, mode)
    # about the job's seconds on one thread of a 2-core machine (the vanilla RNN: ~15 s per epoch)
    cost = 15 * cfg.epochs * ((1 + cfg.hidden_dim / 128) / 2) ** 2 * {"rnn": 1, "lstm": 2.6, "gru": 2, "bow": 0.2,
                                                                     "transformer": 8, "cnn": 1}[cfg.model]
    cost *= (cfg.max_len or 600) / 400
    label = f"{cfg.model} h{cfg.hidden_dim} {cfg.pool} len {cfg.max_len or 'all'} {cfg.truncate} clip {cfg.clip} seed {cfg.seed}"
    return Job("rnnlab.experiments.common:fit_job", {"cfg": cfg.to_dict(), "mode": mode, **DATA[mode],
                                                     **({"keep": True} if keep else {})}, label=label, cost=cost)


def is_lab_preset(cfg: TrainConfig, *besides: str) -> bool:
    """Whether `cfg` is one of the lab's presets (rnn, lstm, gru, bow, transformer) but for its seed, device,
    epochs (quick mode) and the fields named in `besides`."""
    from ..config import BOW, GRU, LSTM, RNN, TRANSFORMER

    return any(dataclasses.replace(cfg, seed=p.seed, device=p.device, epochs=p.epochs,
                                   **{k: getattr(p, k) for k in besides}) == p for p in (RNN, LSTM, GRU, BOW, TRANSFORMER))


def fit_job(ds: Dataset, cfg: dict, mode: str, n_train: int, n_test: int, keep: bool = False):
    """Train `cfg` on the subset, then every experiment's measurements of the trained model; with `keep`,
    also the model's files (config.json, vocab.json, model.safetensors: a run directory's)."""
    from ..prepare import prepare, subsample
    from ..scoring import predict_proba
    from ..train import resolve_device, train

    cfg = from_dict(cfg)
    ds = subsample(ds, n_train, n_test)
    data = prepare(cfg, ds)
    device = resolve_device(cfg.device)
    t0 = time.perf_counter()
    from .vanishing_gradients import Trace

    trace = Trace() if cfg.model == "rnn" else None
    trained = train(cfg, dataclasses.replace(data, test=None), log=lambda s: None, progress=False, on_step=trace)
    probs = predict_proba(trained.model, data.test, device)
    fitted = Fitted(cfg, trained.model, trained.metrics, trained.summary, data, ds, probs, device, mode,
                    trace, time.perf_counter() - t0)
    rows = accuracy_rows(fitted)
    for name in MEASURES:
        rows += importlib.import_module(f"rnnlab.experiments.{name}").measure(fitted)
    if not keep:
        return rows
    from safetensors.torch import save

    files = {"config.json": json.dumps(cfg.to_dict(), indent=2).encode(),
             "vocab.json": json.dumps(data.vocab.to_json()).encode(),
             "model.safetensors": save({k: v.detach().cpu().contiguous() for k, v in trained.model.state_dict().items()})}
    return {"rows": rows, "files": files}


def accuracy_rows(f: "Fitted") -> list[dict]:
    """Test accuracy (overall and by the review's own, untruncated length), selection, speed, size."""
    from ..models import count_parameters
    from ..scoring import accuracy

    test = f.data.test
    rows = [{"part": "accuracy", "metric": m, "value": float(v)} for m, v in (
        ("test_acc", accuracy(f.probs, test.labels)), ("val_acc", f.summary["val_acc"]), ("epochs", f.cfg.epochs),
        ("best_epoch", f.summary["best_epoch"]), ("train_seconds_per_epoch", f.summary["train_seconds_per_epoch"]),
        ("tokens_per_second", f.summary["tokens_per_second"]), ("parameters", count_parameters(f.model)),
        ("mean_tokens_per_review", test.lengths.mean()), ("job_seconds", f.seconds))]
    rows += by_length_rows(f.probs, test.labels, test.untruncated().lengths)
    for r in f.metrics:
        rows += [{"part": "epoch", "epoch": r["epoch"], "metric": k, "value": float(r[k])}
                 for k in ("train_loss", "val_acc") if r.get(k) is not None]
    return rows


@dataclasses.dataclass
class Fitted:
    """A trained model and everything a `measure` function may read about it."""

    cfg: TrainConfig
    model: object  # the trained torch module
    metrics: list  # metrics.jsonl's rows, one per epoch
    summary: dict
    data: object  # rnnlab.prepare.Prepared: the encoded splits and the vocabulary
    ds: Dataset  # the lab's subset, as loaded
    probs: np.ndarray  # P(positive) of every test review
    device: object
    mode: str  # "full" or "quick"
    trace: object  # vanishing_gradients.Trace of the training, or None
    seconds: float  # the job's training and scoring time


# --- running an experiment ----------------------------------------------------------------------

def run_experiment(module, ds: Dataset, out_dir: Path, quick: bool = False, device: str = "auto",
                   runner: Runner | None = None, log: Log = print, data_arg: str | None = None,
                   command: str | None = None, env: dict | None = None) -> dict:
    """Run one experiment module's jobs (finished ones are kept), write its artifacts; returns the verdict.
    `env`: the environment to record (the lab's, read before it wrote anything); None: read it now."""
    started = time.perf_counter()
    mode = "quick" if quick else "full"
    name = module.NAME
    tagged_jobs = [(tag, _on_device(job, device)) for tag, job in module.jobs(mode)]
    runner = runner or Runner(workers=1)
    results = runner.run([job for _, job in tagged_jobs], ds, data_arg, Path(out_dir) / "jobs")
    rows = [measured({**tag, **r}) for tag, job in tagged_jobs for r in results[job.key] if r["part"] in module.PARTS]
    judged = module.verdict(rows)
    csv_text = rows_to_csv(rows)
    record = {"experiment": name, **rounded(judged), "mode": mode, "data": ds.source,
              "data_fingerprint": ds.fingerprint(), "device": device,
              "hardware": env or environment(), "threads_per_job": runner.threads, "workers": runner.workers,
              "jobs": len(tagged_jobs), "results_sha256": text_sha256(csv_text),
              "seconds": round(time.perf_counter() - started, 1),
              "command": command or shlex.join(["rnnlab", *sys.argv[1:]]),
              "settings": {k: (asdict(v) if is_dataclass(v) else v) for k, v in module.settings(mode).items()}}
    d = Path(out_dir) / name
    d.mkdir(parents=True, exist_ok=True)
    fig = module.figure(rows, judged)
    table = judged.get("numbers", {}).get("table")
    # one set: an interrupt or a full disk while it is written leaves the previous set whole (its verdict vouches
    # for its rows by their digest); verdict.json renamed into place last
    write_files([(d / "results.csv", csv_text), (d / f"{name}.svg", figure_bytes(fig, "svg")),
                 (d / f"{name}.png", figure_bytes(fig, "png", dpi=120)),
                 *([(d / "table.csv", rows_to_csv(table))] if table else []),
                 (d / "verdict.json", json_text(record))])
    smoke = " (--quick: a smoke test on little data, not evidence)" if quick else ""  # as the lab says it
    log(f"[{name}] {judged['outcome'].upper()}{why_undecided(judged)}{smoke}: {judged['claim']} -> {d}")
    return record


def why_undecided(judged: dict) -> str:
    """Why a claim came out inconclusive, in brackets, where its effect says (" (...)"; else "")."""
    effect = judged.get("effect") or {}
    if judged["outcome"] != UNDECIDED:
        return ""
    if effect.get("undecided"):
        return f" ({effect['undecided']})"
    if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in effect.get("ci95") or [0]):  # None or NaN
        n = effect.get("n")
        return f" (no 95% interval from {n} value{'s' * (n != 1)})" if isinstance(n, int) else " (no 95% interval)"
    return ""


def _on_device(job: Job, device: str) -> Job:
    """The job with the device the user chose written into its config (part of the job's key)."""
    if "cfg" not in job.args or device == "auto":
        return job
    return Job(job.fn, {**job.args, "cfg": {**job.args["cfg"], "device": device}}, job.label, job.cost, job.exclusive)


# --- rows and numbers ----------------------------------------------------------------------------

COLUMN_ORDER = ("model", "setting", "hidden_dim", "pool", "max_len", "truncate", "clip", "seed", "part", "stage",
                "bucket", "filler", "threads", "seq_len", "distance", "epoch", "step", "repeat", "metric", "value")


def measured(row: dict) -> dict:
    """The row with a `value` of None (a measurement that failed: NaN, which JSON stores as null) as NaN, which every
    verdict counts as missing."""
    return {**row, "value": math.nan} if "value" in row and row["value"] is None else row


def rows_to_csv(rows: list[dict]) -> str:
    """Rows as CSV, columns in a fixed order (None or missing -> empty cell; a NaN value too, as the job store keeps
    it). Floats in full: the shortest text that reads back as the same float, so a verdict recomputed from results.csv
    gives its numbers to the last digit."""
    keys = {k for r in rows for k in r}
    columns = [c for c in COLUMN_ORDER if c in keys] + sorted(keys - set(COLUMN_ORDER))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None or (k == "value" and isinstance(v, float) and math.isnan(v)) else
                        repr(float(v)) if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def by_length_rows(probs, labels, lengths) -> list[dict]:
    """Test accuracy and the number of reviews per review-length bucket (lengths: the reviews' own, untruncated)."""
    from ..scoring import by_length

    return [{"part": "by_length", "bucket": b["bucket"], "metric": m, "value": v} for b in by_length(probs, labels, lengths)
            for m, v in (("test_acc", b["acc"]), ("reviews", float(b["n"])))]


def matching(rows: list[dict], **match) -> list[dict]:
    """The rows whose fields equal `match`."""
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


def values(rows: list[dict], **match) -> list[float]:
    """The `value` of every row whose fields equal `match`."""
    return [r["value"] for r in matching(rows, **match)]


def by_seed(rows: list[dict], **match) -> dict[int, float]:
    """{seed: value} of the rows matching `match` (one per seed; NaN for a seed with several: rows edited or joined
    twice, which no verdict should read as one of them)."""
    out: dict[int, float] = {}
    for r in matching(rows, **match):
        out[r["seed"]] = math.nan if r["seed"] in out else r["value"]
    return out


def diff(a: dict[int, float], b: dict[int, float]) -> dict[int, float]:
    """{seed: a[seed] - b[seed]} over the seeds either has: NaN where one lacks the seed (a missing measurement,
    which `judge` counts, instead of a difference over fewer seeds than the claim was declared with)."""
    return {s: a.get(s, math.nan) - b.get(s, math.nan) for s in sorted(set(a) | set(b))}


def paired(a: dict[int, float], b: dict[int, float]) -> list[float]:
    """a[k] - b[k] over the keys (seeds; serial: lengths) either has, in order (NaN where one lacks it)."""
    return list(diff(a, b).values())


def mean_over(parts: list[dict[int, float]]) -> list[float]:
    """Per seed, the mean of the parts, over the seeds any part has (NaN where one lacks it)."""
    seeds = sorted(set.union(*(set(p) for p in parts))) if parts else []
    return [float(np.mean([p.get(s, math.nan) for p in parts])) for s in seeds]


def mean_sd(vals: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation of the finite values (NaN, NaN for none; sd 0 for one)."""
    v = finite(vals)
    if len(v) == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def rounded(x, digits: int = 4):
    """Numbers for verdict.json: floats to `digits` significant figures, recursively."""
    if isinstance(x, dict):
        return {k: rounded(v, digits) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [rounded(v, digits) for v in x]
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if not np.isfinite(x) or x == 0 else float(f"{x:.{digits}g}")
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def linear_fit(x: Sequence[float], y: Sequence[float]) -> dict:
    """Least-squares y = slope * x + intercept, and R^2 (NaN with fewer than 2 distinct x)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 2 or np.ptp(x) == 0:
        return {"slope": float("nan"), "intercept": float("nan"), "r2": float("nan"), "n": int(len(x))}
    slope, intercept = np.polyfit(x, y, 1)
    ss_res = float(np.sum((y - (slope * x + intercept)) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return {"slope": float(slope), "intercept": float(intercept), "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0,
            "n": int(len(x))}


def fixed_length_batch(enc, length: int, size: int, seed: int = 0):
    """(tokens (B, T), lengths (B,), labels (B,)) of `size` reviews, exactly `length` tokens each.

    Half of each class. Each row is the last `length` tokens of a real review at least that long;
    where no review is that long (small synthetic data), earlier reviews of the same class are
    prepended, so every row still ends on a review's real ending.
    """
    import torch

    rng = np.random.default_rng([seed, length])
    labels = np.arange(size) % 2
    rows = []
    for y in labels:
        pool = np.flatnonzero(enc.labels == y)
        long = pool[enc.lengths[pool] >= length]
        i = rng.choice(long if len(long) else pool)
        toks = enc.ids[enc.starts[i]:enc.starts[i] + enc.lengths[i]]
        while len(toks) < length:
            j = rng.choice(pool)
            toks = np.concatenate([enc.ids[enc.starts[j]:enc.starts[j] + enc.lengths[j]], toks])
        rows.append(toks[-length:])
    return (torch.from_numpy(np.stack(rows).astype(np.int64)), torch.full((size,), length, dtype=torch.int64),
            torch.from_numpy(labels.astype(np.float32)))


def title(topic: str, judged: dict, note: str) -> str:
    """A figure's headline: the topic, the verdict and how it was measured."""
    return f"{topic}: {judged['outcome'].upper()}\n{note}"
