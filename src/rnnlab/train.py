"""The training loop, evaluation and data preparation for one run.

    from rnnlab.config import preset
    from rnnlab.data import load_imdb
    from rnnlab.train import prepare, train
    data = prepare(preset("seed"), load_imdb("../shared/data/imdb"))
    summary = train(preset("seed"), data, "runs/seed")

Adam + BCE-with-logits as in the notebook. Each step records the unclipped gradient norm,
then clips (if asked) and steps, or skips the step when its norm is a spike (`skip_spikes`, if
asked). Each epoch is saved with the optimizer and RNG state, so an interrupted run resumes
exactly; the selected weights (the best validation pass: one at each epoch's end, or
`val_checks` evenly spaced ones; the last epoch when there is no validation split) are
`model.safetensors`.
"""
from __future__ import annotations

import math
import random
import signal
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from .batching import Encoded, batch_indices
from .config import TrainConfig
from .data import Dataset
from .models import build_model, mask, orthogonality_penalty
from .pretrain import init_embedding, word2vec_embeddings
from .runs import Run
from .text import Vocab, encode_corpus


class Divergence(RuntimeError):
    """The loss or gradient became non-finite."""


class Interrupted(RuntimeError):
    """SIGINT or SIGTERM arrived during training."""


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA GPU is available")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("--device mps: Apple MPS is not available")
    return torch.device(name)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, val_idx): `fraction` of each class to validation, seeded."""
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        val.append(rng.permutation(idx)[: int(round(len(idx) * fraction))])
    val_idx = np.sort(np.concatenate(val))
    train_idx = np.setdiff1d(np.arange(len(labels)), val_idx)
    return train_idx, val_idx


@dataclass
class Prepared:
    """Encoded train/val/test splits and the vocabulary of one configuration."""

    train: Encoded
    val: Encoded | None
    test: Encoded
    vocab: Vocab
    source: str


def prepare(cfg: TrainConfig, ds: Dataset, log: Callable[[str], None] = lambda s: None) -> Prepared:
    """Tokenise (cached), build the vocabulary, truncate, carve the validation split."""
    corpus = encode_corpus(ds, cfg.strip_html, progress=log)
    vocab = corpus.vocab(cfg.vocab_size)
    full = Encoded.from_corpus(corpus, "train", ds.train.labels, cfg.vocab_size, cfg.max_len, cfg.truncate)
    test = Encoded.from_corpus(corpus, "test", ds.test.labels, cfg.vocab_size, cfg.max_len, cfg.truncate)
    val = None
    if cfg.val_fraction > 0:
        tr_idx, val_idx = stratified_split(full.labels, cfg.val_fraction, cfg.seed)
        full, val = full.subset(tr_idx), full.subset(val_idx)
    return Prepared(full, val, test, vocab, ds.source)


@torch.no_grad()
def predict_proba(model, enc: Encoded, batch_size: int = 256, device="cpu") -> np.ndarray:
    """P(positive) for every review of `enc`, in its order. Puts the model back in train mode."""
    was_training = model.training
    model.eval()
    probs = np.empty(len(enc), dtype=np.float32)
    for idx in batch_indices(enc.lengths, batch_size, shuffle=False):
        tokens, lengths, _ = enc.collate(idx)
        probs[idx] = torch.sigmoid(model(tokens.to(device), lengths.to(device))).float().cpu().numpy()
    model.train(was_training)
    return probs


def evaluate(model, enc: Encoded, batch_size: int = 256, device="cpu") -> dict:
    """Accuracy and mean BCE loss on `enc`."""
    p = predict_proba(model, enc, batch_size, device).astype(np.float64)
    y = enc.labels
    eps = 1e-7
    loss = -np.mean(y * np.log(np.clip(p, eps, 1)) + (1 - y) * np.log(np.clip(1 - p, eps, 1)))
    return {"acc": float(np.mean((p > 0.5) == (y == 1))), "loss": float(loss)}


class _StopFlag:
    """Turns SIGINT/SIGTERM into a flag the loop checks after each step."""

    def __init__(self):
        self.signal = None

    def __enter__(self):
        self._old = {}
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        self.signal = signal.Signals(signum).name

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


def train(cfg: TrainConfig, data: Prepared, run: Run, log: Callable[[str], None] = print,
          progress: bool | None = None) -> dict:
    """Train (or resume) `run` to cfg.epochs; returns the summary dict."""
    device = resolve_device(cfg.device)
    set_seed(cfg.seed)
    model = build_model(cfg, len(data.vocab)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                           **({"fused": True} if device.type in ("cpu", "cuda") else {}))
    metrics, start_epoch = run.restore(model, opt)  # ([], 1) for a fresh run
    if cfg.embed_init == "word2vec" and start_epoch == 1:
        t0 = time.perf_counter()
        vectors, found = word2vec_embeddings(data.train, len(data.vocab), cfg.embed_dim, cfg.seed)
        init_embedding(model.embedding, vectors, found)
        log(f"word2vec embeddings for {int(found.sum()):,} of {len(data.vocab):,} words from "
            f"{len(data.train):,} training reviews in {time.perf_counter() - t0:.0f} s")
    if cfg.freeze_embedding:
        model.embedding.weight.requires_grad_(False)
    average = None
    if cfg.weight_average > 0:  # a copy of the model whose weights trail the live ones
        average = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.weight_average), use_buffers=True)
        if start_epoch > 1:
            run.restore_average(average)
    scored = model if average is None else average.module  # what validation, test and the files see
    if progress is None:
        progress = sys.stderr.isatty()
    best = max(metrics, key=lambda r: (r.get("val_acc") or 0.0, r["epoch"]), default=None)
    max_norm = cfg.clip if cfg.clip > 0 else float("inf")  # inf: measure the norm, never clip
    params = [p for p in model.parameters() if p.requires_grad]
    with _StopFlag() as stop:
        for epoch in range(start_epoch, cfg.epochs + 1):
            batches = batch_indices(data.train.lengths, cfg.batch_size, cfg.batching, cfg.seed, epoch)
            bar = _bar(len(batches), f"epoch {epoch}/{cfg.epochs}", progress)
            model.train()
            losses, norms, n_tokens, skipped = [], [], 0, 0
            # resumes exactly: the previous epoch's median is in the saved metrics
            limit = cfg.skip_spikes * metrics[-1]["grad_norm_median"] if cfg.skip_spikes and metrics else math.inf
            # validation passes at evenly spaced steps, the last at the epoch's end
            checks = {math.ceil(k * len(batches) / cfg.val_checks) for k in range(1, cfg.val_checks + 1)}
            passes, held = [], None  # held: the best mid-epoch weights that beat the run's best so far
            floor = best["val_acc"] if best is not None and data.val is not None else -math.inf
            t0 = time.perf_counter()
            eval_seconds = 0.0
            for step, idx in enumerate(batches, 1):
                if cfg.lr_schedule == "cosine":  # a pure function of the global step: resumes exactly
                    done = ((epoch - 1) * len(batches) + step - 1) / (cfg.epochs * len(batches))
                    done = max(0.0, (done - cfg.lr_hold) / (1.0 - cfg.lr_hold))  # 0 while held
                    for group in opt.param_groups:
                        group["lr"] = cfg.lr * 0.5 * (1.0 + math.cos(math.pi * done))
                tokens, lengths, labels = (t.to(device) for t in data.train.collate(idx))
                loss = _loss(model, tokens, lengths, labels, cfg.step_loss)
                if cfg.orthogonal_penalty:
                    loss = loss + cfg.orthogonal_penalty * orthogonality_penalty(model)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))  # unclipped norm
                if not (math.isfinite(loss.item()) and math.isfinite(norm)):
                    raise Divergence(f"non-finite {'loss' if not math.isfinite(loss.item()) else 'gradient'} "
                                     f"at epoch {epoch}, step {step}")
                if norm > limit:
                    skipped += 1
                else:
                    opt.step()
                    if average is not None:
                        average.update_parameters(model)
                losses.append(loss.item())
                norms.append(norm)
                n_tokens += int(lengths.sum())
                if bar is not None:
                    bar.update(1)
                    if step % 20 == 0:
                        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
                if stop.signal:
                    if bar is not None:
                        bar.close()
                    raise Interrupted(f"{stop.signal} at epoch {epoch}, step {step}")
                if data.val is not None and step in checks:
                    te = time.perf_counter()
                    v = evaluate(scored, data.val, cfg.eval_batch_size, device)
                    passes.append({"step": step, "acc": v["acc"], "loss": v["loss"]})
                    if step < len(batches) and v["acc"] > floor:
                        held, floor = {k: t.detach().clone() for k, t in scored.state_dict().items()}, v["acc"]
                    eval_seconds += time.perf_counter() - te
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - t0 - eval_seconds
            if bar is not None:
                bar.close()
            row = {"epoch": epoch, "train_loss": float(np.mean(losses)), "train_seconds": round(seconds, 6),
                   "tokens_per_second": round(n_tokens / seconds), "grad_norm_max": float(np.max(norms)),
                   "grad_norm_median": float(np.median(norms)), "steps": len(batches),
                   "lr": opt.param_groups[0]["lr"]}  # at the epoch's last step
            if cfg.skip_spikes:
                row["skipped_steps"] = skipped
            top = None
            if data.val is not None:
                top = max(passes, key=lambda c: c["acc"])  # the first of equals: the earliest pass
                row.update(val_acc=top["acc"], val_loss=top["loss"])
                if cfg.val_checks > 1:
                    row.update(val_step=top["step"], val_passes=[[c["step"], round(c["acc"], 6)] for c in passes])
            if cfg.test_every_epoch:
                row["test_acc"] = evaluate(scored, data.test, cfg.eval_batch_size, device)["acc"]
            metrics.append(row)
            improved = best is None or data.val is None or row["val_acc"] > best["val_acc"]
            if improved:
                best = row
            # a mid-epoch pass won: its weights (held) are the best ones, not the epoch's last
            mid = improved and top is not None and top["step"] < len(batches)
            run.save_epoch(model, opt, metrics, improved, average, best_state=held if mid else None)
            log(_epoch_line(row))
    return finish(cfg, data, run, model, metrics, device)


def _loss(model, tokens, lengths, labels, step_weight: float) -> torch.Tensor:
    """BCE on the prediction; with a step weight, mixed with the mean BCE of every real step."""
    if step_weight == 0:
        return F.binary_cross_entropy_with_logits(model(tokens, lengths), labels)
    logits, steps = model(tokens, lengths, every_step=True)  # (B,), (B, T)
    real = mask(lengths, steps.shape[1]).to(steps.dtype)
    per_step = F.binary_cross_entropy_with_logits(steps, labels[:, None].expand_as(steps), reduction="none")
    step_loss = (per_step * real).sum() / real.sum()
    final = F.binary_cross_entropy_with_logits(logits, labels)
    return (1.0 - step_weight) * final + step_weight * step_loss


def finish(cfg, data: Prepared, run: Run, model, metrics: list[dict], device) -> dict:
    """Load the selected epoch's weights, measure test accuracy once, write the summary."""
    best = max(metrics, key=lambda r: (r.get("val_acc") or 0.0, r["epoch"])) if data.val is not None else metrics[-1]
    run.load_weights(model)
    test = evaluate(model, data.test, cfg.eval_batch_size, device)
    summary = {"test_acc": round(test["acc"], 4), "test_loss": round(test["loss"], 4),
               "best_epoch": best["epoch"], "val_acc": best.get("val_acc"),
               **({"best_step": best["val_step"]} if "val_step" in best else {}),
               "epochs": len(metrics), "train_seconds_per_epoch": round(float(np.median(
                   [r["train_seconds"] for r in metrics])), 2),
               "tokens_per_second": int(np.median([r["tokens_per_second"] for r in metrics])),
               "device": str(device), "run_dir": str(run.path)}
    run.save_summary(summary)
    return summary


def _epoch_line(r: dict) -> str:
    s = f"epoch {r['epoch']} | loss {r['train_loss']:.4f}"
    if "val_acc" in r:
        s += f" | val acc {r['val_acc']:.4f}"
    if "test_acc" in r:
        s += f" | test acc {r['test_acc']:.4f}"
    return s + f" | {r['train_seconds']:.1f}s ({r['tokens_per_second'] / 1e3:.0f}k tok/s) | grad max {r['grad_norm_max']:.2f}"


def _bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="batch", leave=False, file=sys.stderr, dynamic_ncols=True)
