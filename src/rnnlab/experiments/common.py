"""What the four shortfall experiments share: data subsets, training one config, fits, the artifacts.

    from rnnlab.experiments.common import BASE, fit, prepare_untruncated, write_artifacts

Every experiment writes `DIR/<name>/results.csv` (tidy: one measurement per row, a `metric` and a
`value` column), `DIR/<name>/<name>.png` and `.svg` (one figure) and `DIR/<name>/verdict.json` (the
claim in words, `holds`, the criterion with its thresholds, and the numbers that decided it).
All three are written atomically, so a killed experiment never leaves a truncated file.
"""
from __future__ import annotations

import csv
import io
import math
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from ..batching import Encoded
from ..config import TrainConfig, with_overrides
from ..data import Dataset, Split
from ..io import write_json, write_text
from ..models import build_model
from ..plots import save_figure
from ..runs import Run, environment
from ..train import Prepared, predict_proba, prepare, resolve_device, train

Log = Callable[[str], None]

# Held fixed by every experiment unless it is the thing studied: the notebook's model and optimiser
# (embedding 100, hidden 128, 20k words, vanilla tanh RNN on its final state, batch 64, Adam 1e-3)
# plus the tuned preset's two fixes that touch neither length nor memory: <br /> tags stripped and
# gradients clipped at norm 1.0. No validation split: each run trains its epochs and is scored once
# on the test split.
BASE = with_overrides(TrainConfig(), {"val_fraction": 0.0, "test_every_epoch": False,
                                      "strip_html": True, "clip": 1.0})

UNDERFLOW = 1e-30  # float32 gradients below this are underflow, not a measurement


def tagged(log: Log, name: str) -> Log:
    """`log` with every line prefixed by the experiment's name."""
    return lambda s: log(f"[{name}] {s}")


# --- data --------------------------------------------------------------------------------------

def subsample(ds: Dataset, n_train: int, n_test: int, seed: int = 0) -> Dataset:
    """A seeded, class-balanced subset: n/2 reviews of each class (n <= 0: the whole split)."""

    def pick(split: Split, n: int) -> Split:
        if n <= 0 or n >= len(split):
            return split
        rng = np.random.default_rng(seed)
        idx = [rng.choice(c, min(len(c), n // 2), replace=False)
               for c in (np.flatnonzero(split.labels == y) for y in (0, 1))]
        return split.subset(np.sort(np.concatenate(idx)))

    if n_train <= 0 and n_test <= 0:
        return ds
    return Dataset(pick(ds.train, n_train), pick(ds.test, n_test),
                   f"{ds.source} (subset: {n_train or 'all'} train / {n_test or 'all'} test, seed {seed})")


def prepare_untruncated(cfg: TrainConfig, ds: Dataset, log: Log) -> Prepared:
    """Tokenised (cached) train and test splits at full length, no validation split."""
    prep = prepare(with_overrides(cfg, {"max_len": 0, "val_fraction": 0.0}), ds, log)
    return Prepared(prep.train, None, prep.test, prep.vocab, prep.source)


def truncated(prep: Prepared, max_len: int, truncate: str) -> Prepared:
    """The same reviews, each cut to `max_len` tokens (head: its start; tail: its end; 0: whole)."""
    return Prepared(prep.train.truncated(max_len, truncate), None,
                    prep.test.truncated(max_len, truncate), prep.vocab, prep.source)


def fixed_length_batch(enc: Encoded, length: int, size: int, seed: int = 0):
    """(tokens (B, T), lengths (B,), labels (B,)) of `size` reviews, exactly `length` tokens each.

    Half of each class. Each row is the last `length` tokens of a real review at least that long;
    where no review is that long (small synthetic data), earlier reviews of the same class are
    prepended, so every row still ends on a review's real ending.
    """
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


# --- training and scoring ---------------------------------------------------------------------

@dataclass
class Fitted:
    """A trained model (weights of the last epoch, in eval mode) and train()'s per-epoch metrics."""

    model: torch.nn.Module
    metrics: list[dict]

    @property
    def seconds_per_epoch(self) -> float:
        return float(np.median([m["train_seconds"] for m in self.metrics]))

    @property
    def tokens_per_second(self) -> float:
        return float(np.median([m["tokens_per_second"] for m in self.metrics]))


def fit(cfg: TrainConfig, prep: Prepared, log: Log) -> Fitted:
    """Train `cfg` on `prep.train` with rnnlab.train.train, in a throwaway run directory.

    The caller scores the test split itself (one pass, keeping per-review predictions for the
    by-length and probe measurements), so train() is handed a one-review placeholder test split
    and the accuracy in its summary is not used.
    """
    data = Prepared(prep.train, None, prep.train.subset(np.arange(1)), prep.vocab, prep.source)
    with tempfile.TemporaryDirectory(prefix="rnnlab-shortfall-") as d:
        run = Run.create(Path(d) / "run", cfg, prep.vocab, prep.source)
        train(cfg, data, run, log=log)
        model = build_model(cfg, len(prep.vocab))
        run.load_weights(model)  # the last epoch's weights (no validation split)
        metrics = run.metrics()
    return Fitted(model.to(resolve_device(cfg.device)).eval(), metrics)


def predict(model, enc: Encoded, device) -> np.ndarray:
    """P(positive) per review of `enc`, in its order."""
    return predict_proba(model, enc, 256, device)


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean((probs > 0.5) == (np.asarray(labels) == 1))) if len(labels) else float("nan")


def sync(device) -> None:
    """Wait for queued GPU work, so the clock reads the work and not its launch."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


# --- numbers ------------------------------------------------------------------------------------

def linear_fit(x: Sequence[float], y: Sequence[float]) -> dict:
    """Least-squares y = slope * x + intercept, and R^2 (NaN with fewer than 2 distinct x)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 2 or np.ptp(x) == 0:
        return {"slope": float("nan"), "intercept": float("nan"), "r2": float("nan"), "n": int(len(x))}
    slope, intercept = np.polyfit(x, y, 1)
    ss_res = float(np.sum((y - (slope * x + intercept)) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return {"slope": float(slope), "intercept": float(intercept), "r2": float(r2), "n": int(len(x))}


def mean_sd(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value) of the finite values."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if len(v) == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def values(rows: list[dict], **match) -> list[float]:
    """The `value` of every row whose fields equal `match`."""
    return [r["value"] for r in rows if all(r.get(k) == v for k, v in match.items())]


def one(rows: list[dict], **match) -> float:
    """The mean value of the rows matching `match` (NaN if none)."""
    return mean_sd(values(rows, **match))[0]


def rounded(x, digits: int = 4):
    """Numbers for verdict.json: floats to `digits` significant figures, recursively."""
    if isinstance(x, dict):
        return {k: rounded(v, digits) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [rounded(v, digits) for v in x]
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if not math.isfinite(x) or x == 0 else float(f"{x:.{digits}g}")
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


# --- artifacts ----------------------------------------------------------------------------------

def rows_to_csv(rows: list[dict], columns: Sequence[str]) -> str:
    """Rows as CSV with exactly `columns` (None -> empty cell); a row with another key raises."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="raise", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def write_artifacts(out_dir: str | Path, name: str, rows: list[dict], columns: Sequence[str], fig,
                    verdict: dict) -> Path:
    """results.csv, <name>.png, <name>.svg and verdict.json under out_dir/name; returns that dir."""
    d = Path(out_dir) / name
    d.mkdir(parents=True, exist_ok=True)
    write_text(d / "results.csv", rows_to_csv(rows, columns))
    save_figure(fig, d / f"{name}.svg")
    save_figure(fig, d / f"{name}.png", dpi=120)
    write_json(d / "verdict.json", verdict)
    return d


def verdict_record(name: str, judged: dict, *, quick: bool, ds: Dataset, device, settings,
                   started: float) -> dict:
    """The verdict as judged from the rows, plus where, on what and how it was measured."""
    return {"experiment": name, **rounded(judged), "mode": "quick" if quick else "full",
            "settings": asdict(settings), "data": ds.source, "device": str(device),
            "hardware": environment(), "seconds": round(time.perf_counter() - started, 1)}


def conclude(name: str, rows: list[dict], columns: Sequence[str], judged: dict, fig, out_dir: str | Path,
             log: Log, extra: dict | None = None, **record) -> list[dict]:
    """Write a finished experiment's rows, figure and verdict, log the verdict; returns the rows."""
    out = write_artifacts(out_dir, name, rows, columns, fig, {**verdict_record(name, judged, **record), **(extra or {})})
    log(f"{verdict_line(judged['holds'])}: {judged['claim']} -> {out}")
    return rows


def verdict_line(holds: bool) -> str:
    return "holds" if holds else "does not hold"


def title(topic: str, claim: str, judged: dict) -> str:
    """A figure's headline: the topic, the claim tested and the verdict, readable without the text."""
    return f"{topic}. Claim: {claim}. Verdict: {verdict_line(judged['holds']).upper()}"
