"""The training loop.

    from rnnlab.config import preset
    from rnnlab.data import load_imdb
    from rnnlab.prepare import prepare
    from rnnlab.runs import RunDir
    from rnnlab.train import train
    cfg = preset("seed")
    ds = load_imdb("../shared/data/imdb")
    data = prepare(cfg, ds)
    trained = train(cfg, data, RunDir.create("runs/seed", cfg, data.vocab, ds))
    trained.model, trained.metrics, trained.summary   # selected weights, one row per epoch, test accuracy

Adam + BCE-with-logits as in the notebook. Each step records the unclipped gradient norm, then
clips (if asked) and steps. Validation runs `val_checks` times per epoch; the weights of the best
pass of the run are kept (earliest on a tie; the last epoch's when there is no validation split)
and the test split, if any, is scored once with them at the end. With a run directory every epoch
is saved with the optimizer and RNG state, so an interrupted run resumes exactly; without one
(`run_dir=None`, as the experiments train) nothing is written.
"""
from __future__ import annotations

import contextlib
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

from .batching import batch_indices
from .config import TrainConfig
from .io import STOPS, RunError
from .memory import is_out_of_memory, memory_available, require, size, token_bytes
from .models import build_model, count_parameters, mask, shapes_only
from .prepare import Prepared
from .scoring import NonFiniteAnswer, score


class Divergence(RuntimeError):
    """The loss or gradient became non-finite."""


class Interrupted(RuntimeError):
    """SIGINT, SIGTERM or SIGHUP arrived during training."""


class OutOfMemory(RuntimeError):
    """A batch did not fit in the device's memory."""


class TooLarge(OutOfMemory):
    """A model whose training state exceeds the memory available, refused before it is built."""

    def __init__(self, facts: str):
        super().__init__(f"{facts}; use smaller sizes")
        self.facts = facts


class Unbuildable(TooLarge):
    """Sizes no machine can hold: a weight's size in bytes overflows 64 bits."""


class CannotResume(RunError):
    """The run directory's saved state cannot be loaded: resuming it again would fail the same way."""


@dataclass
class Trained:
    """A finished run: the model with its selected weights (eval mode), per-epoch metrics, the summary."""

    model: torch.nn.Module
    metrics: list[dict]
    summary: dict


def train(cfg: TrainConfig, data: Prepared, run_dir=None, log: Callable[[str], None] = print,
          progress: bool | None = None, on_step: Callable | None = None, on_epoch: Callable | None = None) -> Trained:
    """Train (or resume `run_dir`) to cfg.epochs; `on_step(model, row)` and `on_epoch(row)` observe it."""
    device = resolve_device(cfg.device)
    set_seed(cfg.seed)
    model = _built(cfg, len(data.vocab), device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, **({"fused": True} if device.type in ("cpu", "cuda") else {}))
    try:
        metrics, best = run_dir.restore(model, opt) if run_dir else ([], BestWeights())
    except RunError as e:
        raise CannotResume(str(e)) from None
    epochs = range(len(metrics) + 1, cfg.epochs + 1)  # a resumed run starts after its saved epochs
    if device.type == "cpu" and epochs:  # (a finished run only scores its test split again)
        _check_memory(cfg, data, model)
    if run_dir:
        run_dir.resumed_as(cfg)
    n_steps = math.ceil(len(data.train.lengths) / cfg.batch_size)  # every epoch's, in either batching
    checks = validation_steps(n_steps, cfg.val_checks) if data.val is not None else set()
    if epochs:
        for note in _notes(cfg, n_steps, checks, metrics):
            log(f"note: {note}")
    show = (sys.stderr is not None and sys.stderr.isatty()) if progress is None else progress  # None: 2>&-
    with StopOnSignal() as stop:
        for epoch in epochs:
            row = _epoch(cfg, data, model, opt, epoch, n_steps, checks, best, stop, on_step, show)
            if "val_acc" not in row:
                best.take(epoch, model)  # no validation split: the last epoch is kept
            if cfg.test_every_epoch and data.test is not None:
                row["test_acc"] = _score(model, data.test, device, f"epoch {epoch}")["acc"]
            metrics.append(row)
            if run_dir is not None:
                run_dir.save_epoch(model, opt, metrics, best)
            if on_epoch is not None:
                on_epoch(row)
            log(_epoch_line(row))
            if stop.signal:  # it came during validation or the checkpoint: the epoch is saved, stop here
                raise Interrupted(f"{stop.signal} after epoch {epoch}")
    return _finish(cfg, data, model, metrics, best, device, run_dir)


def _notes(cfg: TrainConfig, n_steps: int, checks: set[int], metrics: list[dict]) -> list[str]:
    """What the user asked for that does not do what it seems to (said before the first epoch)."""
    notes = []
    if cfg.val_checks > len(checks) > 0:
        notes.append(f"--val-checks {cfg.val_checks} is more than the {n_steps} steps of an epoch: validation runs "
                     "after every step")
    if cfg.val_checks > 1 and not checks:
        notes.append(f"--val-checks {cfg.val_checks} does nothing without a validation split (val_fraction 0)")
    if cfg.lr_hold and cfg.lr_schedule != "cosine":
        notes.append(f"--lr-hold {cfg.lr_hold} does nothing with the {cfg.lr_schedule} schedule (cosine only)")
    last = metrics[-1].get("lr") if metrics else None  # a run resumed with more epochs: its cosine is stretched
    after = lr_at(cfg, len(metrics) * n_steps, cfg.epochs * n_steps)
    if cfg.lr_schedule == "cosine" and type(last) is float and after > last * 1.001:
        notes.append(f"the cosine schedule now spans {cfg.epochs} epochs: the learning rate rises from {last:.3g} "
                     f"(epoch {len(metrics)}'s last step) to {after:.3g}, then falls again (a run of {cfg.epochs} epochs "
                     "from the start would not)")
    return notes


def _epoch(cfg, data, model, opt, epoch, n_steps, checks, best, stop, on_step, show) -> dict:
    """One epoch's steps, a validation pass after each step in `checks`; returns its row of metrics.jsonl."""
    device = next(model.parameters()).device
    batches = batch_indices(data.train.lengths, cfg.batch_size, cfg.batching, cfg.seed, epoch)
    model.train()
    losses, norms, passes, n_tokens, eval_seconds = [], [], [], 0, 0.0
    t0 = time.perf_counter()
    for step, idx in enumerate(_bar(batches, f"epoch {epoch}/{cfg.epochs}", show), 1):
        global_step = (epoch - 1) * n_steps + step
        lr = lr_at(cfg, global_step - 1, cfg.epochs * n_steps)
        tokens, lengths, labels = (t.to(device) for t in data.train.collate(idx))
        loss, norm = _step(cfg, model, opt, lr, tokens, lengths, labels, f"epoch {epoch}, step {step}")
        losses.append(loss)
        norms.append(norm)
        n_tokens += int(lengths.sum())
        if on_step is not None:
            on_step(model, {"epoch": epoch, "step": step, "global_step": global_step, "loss": loss, "grad_norm": norm,
                            "lr": lr})
        if stop.signal:
            raise Interrupted(f"{stop.signal} at epoch {epoch}, step {step}")
        if step in checks:  # a validation pass; its time is not training time
            te = time.perf_counter()
            passes.append({"step": step, **_score(model, data.val, device, f"epoch {epoch}, step {step}")})
            best.offer(passes[-1]["acc"], epoch, step, model)
            eval_seconds += time.perf_counter() - te
    return _epoch_row(epoch, losses, norms, n_tokens, time.perf_counter() - t0 - eval_seconds, lr, passes,
                      cfg.val_checks)


def _step(cfg, model, opt, lr, tokens, lengths, labels, where: str) -> tuple[float, float]:
    """One optimiser step at learning rate `lr`; returns the loss and the unclipped gradient norm."""
    for group in opt.param_groups:
        group["lr"] = lr
    with _memory_guard(cfg, where, tokens.shape):
        loss = objective(model, tokens, lengths, labels, cfg.step_loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
    norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip or math.inf))  # unclipped; inf: no clip
    loss = loss.item()
    if not (math.isfinite(loss) and math.isfinite(norm)):
        raise Divergence(f"non-finite {'loss' if not math.isfinite(loss) else 'gradient'} at {where}")
    opt.step()
    return loss, norm


@contextlib.contextmanager
def _out_of_memory_as(message: Callable[[], str]):
    """An allocation failure in the block -> OutOfMemory(message()); any other error passes through."""
    try:
        yield
    except (torch.OutOfMemoryError, MemoryError, RuntimeError) as e:
        if not is_out_of_memory(e):
            raise
        raise OutOfMemory(message()) from None


def _built(cfg: TrainConfig, vocab_size: int, device):
    """The model on `device`; one that does not fit in memory -> OutOfMemory naming its sizes.

    Its weights are counted first (built on the meta device: no memory; Unbuildable where a weight's bytes overflow 64
    bits). On the CPU, with their gradients and Adam's two moments they need 16 bytes each, and a model whose need
    exceeds the memory available is refused before any is taken. Linux grants more than it has and kills the process
    that touches it (no message), so torch's own failed allocation only covers the sizes beyond what can be granted
    at all."""
    sizes = (f"{cfg.model} (vocab_size {vocab_size}, embed_dim {cfg.embed_dim}, hidden_dim {cfg.hidden_dim}, "
             f"layers {cfg.layers})")
    try:
        n = count_parameters(shapes_only(cfg, vocab_size))
    except MemoryError as e:  # on any device: sizes no memory can hold
        raise Unbuildable(f"out of memory building the {sizes}: {e}") from None
    if torch.device(device).type == "cpu":
        need, have = 16 * n, memory_available()
        if have is not None and need > have:
            raise TooLarge(f"out of memory building the {sizes}: its {n:,} weights, with their gradients and Adam's "
                           f"two moments, need {size(need)}, and {size(have)} is available")
    with _out_of_memory_as(lambda: f"out of memory building the {sizes}; use smaller sizes"):
        return build_model(cfg, vocab_size).to(device)


def _check_memory(cfg: TrainConfig, data: Prepared, model) -> None:
    """TooLong, before the first step, where a batch of the longest training reviews (with gradients), or the longest
    review to score, needs more than the memory available (validation and test batches are split to fit)."""
    batch, longest = min(cfg.batch_size, len(data.train)), int(data.train.lengths.max(initial=0))
    need = batch * longest * token_bytes(model, backward=True)
    scored = max((int(s.lengths.max(initial=0)) for s in (data.val, data.test) if s is not None), default=0)
    if scored * token_bytes(model) > need:  # the larger need decides: the smaller fits where it does
        require(scored * token_bytes(model), f"a review to score has {scored:,} tokens: reading it", "use a --max-len")
    else:
        require(need, f"training on the longest reviews ({batch} x {longest:,} tokens a batch)",
                "use a --max-len or a smaller --batch-size")


def _score(model, enc, device, when: str) -> dict:
    """`score`; NaN answers mean a step made the weights overflow: Divergence, as a non-finite loss is."""
    try:
        return score(model, enc, device)
    except NonFiniteAnswer:
        raise Divergence(f"non-finite answers at {when}") from None


def _epoch_row(epoch, losses, norms, n_tokens, seconds, lr, passes, val_checks) -> dict:
    """One line of metrics.jsonl; the epoch's val_acc is its best validation pass (the earliest of equals)."""
    row = {"epoch": epoch, "train_loss": float(np.mean(losses)), "train_seconds": round(seconds, 6),
           "tokens_per_second": round(n_tokens / seconds), "grad_norm_max": float(np.max(norms)),
           "grad_norm_median": float(np.median(norms)), "steps": len(losses), "lr": lr}
    if passes:
        top = max(passes, key=lambda p: p["acc"])
        row.update(val_acc=top["acc"], val_loss=top["loss"])
        if val_checks > 1:
            row.update(val_step=top["step"], val_passes=[[p["step"], round(p["acc"], 6)] for p in passes])
    return row


def _memory_guard(cfg: TrainConfig, where: str, shape):
    """Out of memory on a batch -> OutOfMemory naming the batch and what to change."""
    return _out_of_memory_as(lambda: f"out of memory on a batch of {shape[0]} reviews x {shape[1]} tokens ({where}, "
                                     f"--batch-size {cfg.batch_size}, --max-len {cfg.max_len or 'all'}): use a "
                                     "smaller --batch-size or a --max-len")


def objective(model, tokens, lengths, labels, step_weight: float) -> torch.Tensor:
    """BCE on the prediction; with a step weight, mixed with the mean BCE of every real step's logit.

    A batch of very unequal lengths (the notebook's shuffled batches) runs as length-sorted chunks, each
    cut to its own longest review: the same loss, without computing on the padding.
    """
    chunks = length_chunks(lengths)
    if chunks is None:
        final, step_loss = _losses(model, tokens, lengths, labels, step_weight)
    else:  # each chunk's means, weighted back into the batch's: by reviews, and (step loss) by real tokens
        final = step_loss = 0
        for i in chunks:
            f, s = _losses(model, tokens[i, : int(lengths[i].max())], lengths[i], labels[i], step_weight)
            final = final + len(i) / len(lengths) * f
            if step_weight:
                step_loss = step_loss + lengths[i].sum() / lengths.sum() * s
    return final if not step_weight else (1.0 - step_weight) * final + step_weight * step_loss


def _losses(model, tokens, lengths, labels, step_weight: float):
    """(mean BCE of the predictions, mean BCE of every real step's logit or None without a step weight)."""
    if step_weight == 0:
        return F.binary_cross_entropy_with_logits(model(tokens, lengths), labels), None
    logits, step_logits = model.forward_steps(tokens, lengths)  # (B,), (B, T)
    real = mask(lengths, step_logits.shape[1]).to(step_logits.dtype)
    per_step = F.binary_cross_entropy_with_logits(step_logits, labels[:, None].expand_as(step_logits),
                                                  reduction="none")
    return F.binary_cross_entropy_with_logits(logits, labels), (per_step * real).sum() / real.sum()


CHUNK_WASTE, CHUNK_SIZE = 1.5, 16


def length_chunks(lengths: torch.Tensor) -> list[torch.Tensor] | None:
    """Index chunks of CHUNK_SIZE reviews sorted by length, when the padded batch would compute over more
    than CHUNK_WASTE times its real tokens; None when it would not (length-bucketed batches)."""
    if len(lengths) * int(lengths.max()) <= CHUNK_WASTE * int(lengths.sum()):
        return None
    order = torch.argsort(lengths, descending=True, stable=True)
    return [order[i:i + CHUNK_SIZE] for i in range(0, len(order), CHUNK_SIZE)]


def lr_at(cfg: TrainConfig, step: int, total: int) -> float:
    """The learning rate of global step `step` (0-based) of `total`: a pure function, so resuming is exact."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    done = max(0.0, (step / total - cfg.lr_hold) / (1.0 - cfg.lr_hold))  # 0 while held at the full rate
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * done))


def validation_steps(n_steps: int, checks: int) -> set[int]:
    """The steps (1-based) after which validation runs: evenly spaced, the last at the epoch's end."""
    checks = min(checks, n_steps)  # more checks than steps: after every step (the same set, without the loop)
    return {math.ceil(k * n_steps / checks) for k in range(1, checks + 1)}


class BestWeights:
    """The weights of the best validation pass so far (one tie rule: the earliest pass wins)."""

    def __init__(self, acc: float = -math.inf, epoch: int = 0, step: int | None = None, state: dict | None = None):
        self.acc, self.epoch, self.step, self.state = acc, epoch, step, state

    def offer(self, acc: float, epoch: int, step: int, model) -> bool:
        """Keep a copy of `model`'s weights if `acc` beats the best so far."""
        if not acc > self.acc:
            return False
        self.take(epoch, model, step)
        self.acc = acc
        return True

    def take(self, epoch: int, model, step: int | None = None) -> None:
        self.epoch, self.step = epoch, step
        self.state = {k: t.detach().clone() for k, t in model.state_dict().items()}


def _finish(cfg, data: Prepared, model, metrics, best: BestWeights, device, run_dir) -> Trained:
    """Load the selected weights, score the test split once, write the summary."""
    model.load_state_dict(best.state)
    model.eval()
    summary = {}
    if data.test is not None:
        test = _score(model, data.test, device, "the final test")
        summary.update(test_acc=round(test["acc"], 4), test_loss=round(test["loss"], 4))
    summary.update(best_epoch=best.epoch, val_acc=metrics[best.epoch - 1].get("val_acc"))
    if cfg.val_checks > 1 and best.step is not None:
        summary["best_step"] = best.step
    summary.update(epochs=len(metrics),
                   train_seconds_per_epoch=round(float(np.median([r["train_seconds"] for r in metrics])), 2),
                   tokens_per_second=int(np.median([r["tokens_per_second"] for r in metrics])), device=str(device))
    if run_dir is not None:
        summary["run_dir"] = str(run_dir.path)
        run_dir.save_summary(summary)
    return Trained(model, metrics, summary)


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """"auto": a CUDA GPU where one exists, else the CPU. Apple's MPS only when asked for (`--device mps`): no
    machine rnnlab is tested on has it, and on a Mac the CPU runs rnnlab's own recurrent kernels."""
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA GPU is available (a run's config may say cuda: --device cpu or auto)")
    if name == "mps" and not mps:
        raise ValueError("--device mps: Apple MPS is not available (a run's config may say mps: --device cpu or auto)")
    return torch.device(name)


class StopOnSignal:
    """Turns SIGINT/SIGTERM/SIGHUP into a flag the loop checks after each step (not in the lab's worker
    processes, which leave signals to the parent: `enabled` False)."""

    enabled = True

    def __init__(self):
        self.signal = None

    def __enter__(self):
        self._old = {}
        for s in STOPS if self.enabled else ():
            if signal.getsignal(s) == signal.SIG_IGN:  # nohup, or a shell's background job (SIGINT): the run
                continue  # was started to outlive its terminal, or a Ctrl-C meant for another command
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


def _epoch_line(r: dict) -> str:
    s = f"epoch {r['epoch']} | loss {r['train_loss']:.4f}"
    if "val_acc" in r:
        s += f" | val acc {r['val_acc']:.4f}"
    if "test_acc" in r:
        s += f" | test acc {r['test_acc']:.4f}"
    return s + f" | {r['train_seconds']:.1f}s ({r['tokens_per_second'] / 1e3:.0f}k tok/s) | largest gradient norm {r['grad_norm_max']:.2f}"


def _bar(batches: list, desc: str, show: bool):
    if not show:
        return batches
    from tqdm import tqdm

    return tqdm(batches, desc=desc, unit="batch", leave=False, file=sys.stderr, dynamic_ncols=True)
