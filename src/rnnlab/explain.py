"""One review through trained models, word by word: what each model thinks after every token, and why.

    rnnlab explain runs/seed --text "A slow start, but the ending is wonderful."
    rnnlab explain runs/seed runs/tuned --review 17 --data ../shared/data/imdb --html r17.html --png r17.png
    echo "Awful. Just awful." | rnnlab explain runs/seed --json

    from rnnlab.explain import explain_runs, write_html, write_png, pick_reviews
    exps = explain_runs(["runs/seed", "runs/lstm"], text)      # one Explanation per run
    write_html(exps, "review.html"); write_png(exps, "review.png")

For every token of the review *as the model reads it* (the run's own tokenisation, vocabulary and
cut: max_len, truncate, strip_html) an `Explanation` holds:

- `opinion`: P(positive) if the review ended at this token, sigmoid of `forward_steps`' step logit.
  What that means depends on the model (`Explanation.reading`): for a recurrent model reading its final
  state, the classifier on h_t; for a pooled model, the classifier on the pooled prefix; for the
  Transformer and the CNN, the model run again on the review cut after this token. The last value is
  the model's answer, computed as `rnnlab predict` computes it (forward_steps' own last step agrees with
  it to float rounding; a gap over 1e-4 is an error).
- `attribution`: Integrated Gradients (Captum's IntegratedGradients on the output of `model.embedding`) of the
  final logit, summed over the embedding dimensions. Baseline: the same number of <pad> tokens, read
  with the review's length. The <pad> row of every embedding is zero (padding_idx=0), so this is also
  the zero-embedding baseline: "a review of the same length with no words". Completeness: the
  attributions sum to f(x) - f(baseline) up to Captum's convergence delta (`attribution_delta`).
  Captum is optional (`pip install captum`): without it `attribution` is None and
  `attribution_note` says why; `rnnlab explain --attribution` then fails instead.
- `grad_norm`: ||dL/dx_t|| at the embedding output, L = BCE of the final logit against the predicted
  label: on a log axis, the vanishing gradient on one real review.
- `state_change`: ||h_t - h_{t-1}|| of the top recurrent layer (h_{-1} = 0; the LSTM's h, not its cell),
  how far each token moves the state; None for models without a recurrent state.

Several runs on one review are aligned by token (`align`): by each token's position in the review (a run
that read only the tail lines up with the tail of one that read everything; a run that strips <br /> tags
leaves their rows blank). Renderings: `render_terminal` (ANSI colours on a
terminal, a plain table otherwise), `write_html` (one self-contained page, nothing loaded from anywhere),
`write_png` (matplotlib). `pick_reviews` chooses real test reviews worth explaining by stated rules.

torch, captum and matplotlib are imported where they are used: the CLI imports this module, and
`rnnlab --help` must stay fast.
"""
from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import click
import numpy as np

from .config import CHOICES, RECURRENT_KINDS
from .data import DataError
from .io import (JOB_KEY, RUN_FILES, RunError, echo_whole, file_in_the_way, in_the_way, is_run_dir, jsonable, no_such,
                 one_line, owner, pid_alive, printable, shorten)

IG_STEPS = 50  # Integrated Gradients' steps, every model but the Transformer (more seldom help a recurrent one)
IG_STEPS_TRANSFORMER = 200  # its answer bends smoothly along the path: completeness held on 35% of 100 test
# reviews at 50 steps, 85% at 200 (docs/USAGE.md, "Attributions"; benchmarks/results/ig_completeness_*.json)
IG_STEPS_MAX = 1000  # Captum's Gauss-Legendre nodes solve an n x n eigenproblem: cubic time, in C that ignores Ctrl-C
IG_BUDGET = 400_000  # per Captum internal batch: tokens of the path's points (the LSTM's backward keeps ~5.4 KB a token:
# ~2.2 GB; a batch of 50 points up to 8,000 tokens, every IMDB review; a longer review takes more, smaller batches)
IG_BUDGET_TRANSFORMER = 4_000_000  # its attention scores instead (T^2 a point): ~0.4 GB
LAST_STEP_TOLERANCE = 1e-4  # forward_steps' last step vs the model's answer, in probability
NO_CAPTUM = "attribution unavailable: Captum is not installed (pip install captum)"


# --- what one run makes of one review --------------------------------------------------------------

@dataclass
class Run:
    """A trained model with what it needs to read text: a run directory loaded, or one held in memory."""

    name: str
    cfg: Any  # TrainConfig
    vocab: Any  # text.Vocab
    model: Any  # models.Classifier, eval mode
    trained: str = ""  # how long it trained and how well it scored (`how_trained`), "" where not known


def load_run(path: str | os.PathLike, device="cpu") -> Run:
    """A run directory -> Run (RunError when it is missing or broken)."""
    from .runs import RunDir

    cfg, vocab, model = RunDir(path).load_model(device)
    name = Path(path).resolve().name
    trained = how_trained(Path(path).resolve())
    if JOB_KEY.fullmatch(name):  # a lab's job store names its runs by a hash: say which model, and which job
        name = f"{cfg.model} {name[:8]}"
    return Run(name, cfg, vocab, model, trained)


def how_trained(path: Path) -> str:
    """"trained 3 epochs (kept: epoch 2, the best on validation): validation accuracy 0.781, test accuracy 0.779" from
    a finished run's summary.json (one moved or copied too: its run_dir names the old place, its epochs are still the
    checkpoint's), or from the record beside a lab's job-store run (KEY.json), so a learner sees how far to trust the
    explanation; "" where neither is there or readable (an unfinished run, a damaged record): the explanation needs
    neither."""
    import math

    from .io import read_json
    from .runs import RunDir

    try:
        s = None
        if (path / "summary.json").is_file():  # not finished_summary: a moved or copied run's names its old folder
            s = read_json(path / "summary.json")
            s = s if isinstance(s, dict) and s.get("epochs") == RunDir(path).completed_epochs() else None
        if s is None and JOB_KEY.fullmatch(path.name) and (path.parent / f"{path.name}.json").is_file():
            rows = read_json(path.parent / f"{path.name}.json")["rows"]
            s = {r["metric"]: r["value"] for r in rows if isinstance(r, dict) and r.get("part") == "accuracy"}
    except (RunError, OSError, ValueError, TypeError, KeyError, AttributeError):
        return ""
    def ok(k: str, top: float = math.inf) -> bool:  # a number from 0 to `top` (an int of 400 digits: no float)
        v = (s or {}).get(k)
        return type(v) in (int, float) and (abs(v) <= 1e15 or type(v) is float) and math.isfinite(v) and 0 <= v <= top

    if not ok("epochs"):
        return ""
    n = int(s["epochs"])
    out = f"trained {n} epoch{'' if n == 1 else 's'}"
    if ok("best_epoch", s["epochs"]) and s["best_epoch"] != s["epochs"]:
        out += f" (kept: epoch {int(s['best_epoch'])}, the best on validation)"
    scores = [f"{name} accuracy {s[k]:.3f}" for k, name in (("val_acc", "validation"), ("test_acc", "test")) if ok(k, 1)]
    return out + (": " + ", ".join(scores) if scores else "")


@dataclass
class Explanation:
    """One run's reading of one review, token by token; `to_dict`/`from_dict` round-trip through JSON."""

    run: str
    model: str  # rnn | lstm | gru | bow | transformer | cnn
    pool: str
    reading: str  # what `opinion` means for this model
    words: list[str]  # the tokens read, after tokenising and cutting as the run was trained
    ids: list[int]  # their vocabulary ids (1 = <unk>)
    start: int  # position of words[0] among the review's tokens (> 0: the head was cut)
    positions: list[int]  # each token's index among the review's tokens, <br /> tags kept (`align`); [-1]: none read
    n_review_tokens: int  # tokens of the whole review before the cut
    truncation: str  # "" or what was cut, in words
    opinion: list[float]  # P(positive) if the review ended here
    attribution: list[float] | None  # Integrated Gradients of the final logit, per token
    attribution_note: str  # method and baseline, or why there is none
    attribution_delta: float | None  # Captum's convergence delta: sum(attribution) - (logit - baseline_logit)
    baseline_logit: float | None
    grad_norm: list[float]  # ||dL/dx_t|| at the embedding output
    state_change: list[float] | None  # ||h_t - h_{t-1}||, recurrent models only
    logit: float
    p_positive: float
    label: str  # positive | negative
    strip_html: bool
    source: str = ""  # where the review came from
    true_label: int | None = None  # 0/1 when known
    trained: str = ""  # the run's training and scores (`how_trained`), "" where not known

    def __len__(self) -> int:
        return len(self.words)

    def to_dict(self) -> dict:
        """Its fields, and `attribution_warning`: "" where the attributions pass completeness, else why not."""
        return dataclasses.asdict(self) | {"attribution_warning": attribution_warning(self)}

    def to_json(self) -> str:
        return json.dumps(jsonable(self.to_dict()), allow_nan=False)  # NaN (an attribution of 0/0) as null

    @classmethod
    def from_dict(cls, d: dict) -> "Explanation":
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


def attribution_warning(e: Explanation) -> str:
    """"" when the attributions add up to the logit change (within 5%, or 0.01); else what went wrong."""
    if e.attribution is None:
        return ""
    gap = e.logit - e.baseline_logit
    if abs(e.attribution_delta) <= max(0.05 * abs(gap), 0.01):
        return ""
    why = ("On real reviews this usually means that the recurrent model's answer jumps somewhere on the straight "
           "path between them, more steeply than the integration steps can follow; more --ig-steps seldom help"
           if e.model in RECURRENT_KINDS else
           "The integration steps are too few to follow the model's answer along the straight path between them; "
           "more --ig-steps may help")
    return (f"completeness fails: the attributions add up to {sum(e.attribution):+.3f}, the logit moved {gap:+.3f} "
            f"from the blank review. {why} (docs/USAGE.md, 'Attributions'): read these attributions as rough")


def token_count(n: int) -> str:
    """"1 token", "400 tokens"."""
    return f"{n:,} token{'' if n == 1 else 's'}"


def vanished(e: Explanation) -> int:
    """How many tokens' gradient is exactly 0: every entry below float32's smallest normal number (1.2e-38; rnnlab
    flushes smaller ones to 0, kernels.py)."""
    return sum(g == 0 for g in e.grad_norm)


def reading(cfg, start: int = 0) -> str:
    """What the running opinion at token t is, for this kind of model; `start`: the first token the run kept."""
    if cfg.model in RECURRENT_KINDS:
        if cfg.pool == "last":
            what = "the classifier on the hidden state after this token (h_t)"
        else:
            what = f"the classifier on the {cfg.pool} of the hidden states up to this token (the pooled prefix)"
    elif cfg.model == "bow":
        what = (f"the model on the prefix ending here (the {cfg.pool} of the word vectors so far: "
                "the pooled prefix)")
    elif start:
        what = "the model run again on the tokens it kept, up to this one"
    else:
        what = "the model on the prefix ending here (run again on the review cut after this token)"
    if start:  # the review cut after token t would be read as its own last tokens: another window
        what += (f", from token {start + 1}, the first it kept (a review that really ended at this token would be "
                 "read from an earlier one: the run keeps a review's last tokens)")
    return what


def _device_of(model):
    return next(model.parameters()).device


def ig_steps_for(model: str) -> int:
    """The default number of integration steps for a kind of model (`TrainConfig.model`)."""
    return IG_STEPS_TRANSFORMER if model == "transformer" else IG_STEPS


def explain(run: Run, text: str, attribution: bool | None = None, ig_steps: int | None = None,
            source: str = "", true_label: int | None = None) -> Explanation:
    """Explain one review with one run (in eval mode; the model's mode is restored after). `ig_steps`: None for
    the model's default (`ig_steps_for`).

    The weights are frozen meanwhile (requires_grad off, restored after): attributions and gradient norms need
    only dL/dx at the embedding output, and the recurrent kernels then skip the weight gradients (a third of
    an LSTM's backward).
    """
    was_training = run.model.training
    trainable = [p for p in run.model.parameters() if p.requires_grad]
    try:
        for p in trainable:
            p.requires_grad_(False)
        steps = ig_steps_for(run.cfg.model) if ig_steps is None else ig_steps
        return _explain(run, text, attribution, steps, source, true_label)
    finally:
        run.model.train(was_training)
        for p in trainable:
            p.requires_grad_(True)


def _explain(run: Run, text: str, attribution: bool | None, ig_steps: int, source: str,
             true_label: int | None) -> Explanation:
    """attribution: None = if Captum is installed, True = required (ImportError without it), False = none."""
    import torch

    from .scoring import encode_texts, predict_proba
    from .text import tag_kept_positions, tokenize

    if not text.strip():
        raise ValueError("empty review: there is nothing to explain")
    cfg, vocab, model = run.cfg, run.vocab, run.model
    device = _device_of(model)
    model.eval()
    enc, full_len = encode_texts(vocab, [text], None, cfg.max_len, cfg.truncate)  # exactly as predict cuts
    start, L, n_full = int(enc.starts[0]), int(enc.lengths[0]), int(full_len[0])
    read = tokenize(text, vocab.strip_html)
    words = (read or ["<unk>"])[start:start + L]  # an empty review reads as <unk>
    where = tag_kept_positions(text) if vocab.strip_html else range(n_full)
    positions = list(where[start:start + L]) if read else [-1]  # no word: its <unk> stand-in is at no place
    ids = [int(i) for i in enc.ids[start:start + L]]
    tokens, lengths, _ = (t.to(device) for t in enc.collate(np.array([0])))  # (1, L), (1,)
    points = memory_plan(model, L, ig_steps)

    p = float(predict_proba(model, enc, device)[0])  # the number `rnnlab predict` prints
    change = None  # ||h_t - h_{t-1}|| of a recurrent model's top layer
    with torch.no_grad():
        if cfg.model in RECURRENT_KINDS:
            h = model.states(tokens)  # one pass for the running opinion and the state change
            logits, steps = model.read_steps(h, lengths)
            h = h[0, :L]  # (L, H)
            change = (h - torch.cat([torch.zeros_like(h[:1]), h[:-1]])).norm(dim=-1).cpu().double().numpy().tolist()
        else:
            logits, steps = model.forward_steps(tokens, lengths)
    logit = float(logits[0])  # the logit behind it (sigmoid(logit) == p)
    opinion = torch.sigmoid(steps[0, :L]).float().cpu().numpy().astype(np.float64)
    if abs(opinion[-1] - p) > LAST_STEP_TOLERANCE:
        raise RuntimeError(f"{run.name}: forward_steps' last step ({opinion[-1]:.6f}) is not the model's "
                           f"answer ({p:.6f})")
    opinion[-1] = p  # the model's answer itself, not a second computation of it

    attr, note, delta, base = None, NO_CAPTUM, None, None
    if attribution is not False and ig_steps > 0:
        try:
            attr, delta, base = integrated_gradients(model, tokens, lengths, ig_steps, logits=logits, points=points)
            note = (f"Integrated Gradients ({ig_steps} steps) of the final logit; baseline: {L} <pad> "
                    f"token{'s' * (L != 1)} (zero embeddings), i.e. the same length with no words")
        except ImportError:
            if attribution:
                raise
    else:
        note = "attribution not computed (switched off)"

    grad = embedding_grad_norm(model, tokens, lengths, float(p > 0.5))

    cut = ""
    if L < n_full:
        part = "first" if start == 0 else "last"
        cut = (f"read the {part} {L} of the review's {n_full} tokens (max_len {cfg.max_len}, "
               f"truncate {cfg.truncate}): {token_count(n_full - L)} {'was' if n_full - L == 1 else 'were'} cut")
    return Explanation(run.name, cfg.model, cfg.pool, reading(cfg, start), words, ids, start, positions, n_full,
                       cut, opinion.tolist(), attr, note, delta, base, grad, change, logit, p,
                       "positive" if p > 0.5 else "negative", vocab.strip_html, source, true_label, run.trained)


def memory_plan(model, L: int, ig_steps: int) -> int | None:
    """Integrated Gradients' points a batch for a review of L tokens on CPU: `ig_points`, or fewer where the memory
    available is short; TooLong where not even a backward through the review (the gradient norms, each point of
    the path) or, for a model run once per prefix, PREFIX_CHUNK prefixes a pass can fit. None on a GPU."""
    from .memory import most, require, token_bytes
    from .models import PREFIX_CHUNK, per_prefix

    if _device_of(model).type != "cpu":
        return None
    each = L * token_bytes(model, backward=True)
    prefixes = min(PREFIX_CHUNK, L) * L * token_bytes(model) if per_prefix(model) else 0
    require(max(each, prefixes), f"the review has {L:,} tokens: explaining it",
            "give a shorter review, or use a run trained with a --max-len")
    return most(ig_points(model, L, ig_steps), each)


def integrated_gradients(model, tokens, lengths, n_steps: int = IG_STEPS, logits=None, points: int | None = None):
    """(per-token attribution list, convergence delta, baseline logit) of the logit of a (1, T) review.

    Captum's IntegratedGradients on the embedding's output: the model runs with that output replaced by the
    points of the path, as Captum's LayerIntegratedGradients runs it, without the two whole passes that class
    spends to read the embedding's output for the review and the baseline (here one lookup: the baseline's are
    zeros). The convergence delta is Captum's, attributions' sum minus (f(x) - f(baseline)), from `logits` (the
    model's (1,) logit of the review, when already computed on the CPU) instead of a pass of its own. `points`: of
    the path a batch (default `ig_points`).
    Raises ImportError without Captum.
    """
    import torch

    IntegratedGradients = _integrated_gradients()

    def forward(x, tokens, lengths):  # the model with its embedding's output replaced by x
        hook = model.embedding.register_forward_hook(lambda mod, inp, out: x)
        try:
            return model(tokens, lengths)
        finally:
            hook.remove()

    blank = torch.zeros_like(tokens)  # <pad> tokens, whose embeddings the baseline takes as zeros (their row is zero
    with torch.no_grad(), _no_cudnn(tokens):  # in a model rnnlab trained, but a file can hold anything)
        x = model.embedding(tokens)  # the ends through the same kernels as the path (cuDNN's TF32 is not)
        b = torch.zeros_like(x)
        base = forward(b, blank, lengths)
        if logits is None or tokens.device.type == "cuda":
            logits = model(tokens, lengths)
    with _no_cudnn(tokens):
        attr = IntegratedGradients(forward).attribute(
            x, baselines=b, additional_forward_args=(tokens, lengths), n_steps=n_steps,
            internal_batch_size=points or ig_points(model, tokens.shape[1], n_steps))
    with torch.no_grad():
        delta = attr.reshape(1, -1).sum(1) - (logits - base)  # as Captum's compute_convergence_delta
    per_token = attr[0].sum(-1).detach().cpu().double().numpy()  # (T,): summed over embedding dimensions
    return per_token.tolist(), float(delta[0]), float(base[0])


def ig_points(model, T: int, n_steps: int) -> int:
    """Points of Integrated Gradients' path computed in one batch for a review of T tokens: within IG_BUDGET tokens
    (the Transformer: IG_BUDGET_TRANSFORMER attention scores, T^2 a point), at least one."""
    from .models import TransformerClassifier

    budget, per_point = (IG_BUDGET_TRANSFORMER, T * T) if isinstance(model, TransformerClassifier) else (IG_BUDGET, T)
    return max(1, min(n_steps, budget // per_point))


def _integrated_gradients():
    """Captum's IntegratedGradients, loaded without Captum's package `__init__`s when they have not run.

    `import captum` imports all of Captum and matplotlib (0.8 s of a 2.9 s `rnnlab explain` of a 1,000-token
    review, measured for benchmarks/results/explain.json), where the class's own module needs none of it. The
    two package modules are stood in for (same path, empty) while it loads; then every Captum module loaded this
    way leaves `sys.modules` (the class keeps its own), so a later `import captum` loads the real packages whole.
    Any failure falls back to the plain import.
    Raises ImportError without Captum.
    """
    import importlib
    import importlib.util
    import types

    if "captum" not in sys.modules and importlib.util.find_spec("captum") is not None:
        root = importlib.util.find_spec("captum").submodule_search_locations[0]
        for name, path in (("captum", root), ("captum.attr", os.path.join(root, "attr"))):
            sys.modules[name] = types.ModuleType(name)
            sys.modules[name].__path__ = [path]
        try:
            return importlib.import_module("captum.attr._core.integrated_gradients").IntegratedGradients
        except Exception:  # Captum's layout changed: the plain import below
            pass
        finally:
            for name in [m for m in sys.modules if m == "captum" or m.startswith("captum.")]:
                del sys.modules[name]
    from captum.attr import IntegratedGradients

    return IntegratedGradients


def embedding_grad_norm(model, tokens, lengths, label: float) -> list[float]:
    """||dL/dx_t|| for each token, x_t the embedding output, L = BCE(final logit, label)."""
    import torch
    import torch.nn.functional as F

    seen = {}  # the embedding output, made a leaf that requires grad (the weights may be frozen)
    hook = model.embedding.register_forward_hook(
        lambda mod, inp, out: seen.setdefault("x", out.detach().requires_grad_()))
    try:
        with torch.enable_grad(), _no_cudnn(tokens):
            logit = model(tokens, lengths)
            loss = F.binary_cross_entropy_with_logits(logit, torch.full_like(logit, label))
            (g,) = torch.autograd.grad(loss, seen["x"])
    finally:
        hook.remove()
    return g[0].cpu().double().norm(dim=-1).numpy().tolist()  # (T,); in float64 (on the CPU: MPS has none): a
    # float32 norm of entries below about 1e-19 squares them below float32's normal range, flushed to 0 (kernels.py)


def _no_cudnn(tokens):
    """cuDNN runs RNN backward only in training mode; the gradients here are taken in eval mode."""
    import torch

    return torch.backends.cudnn.flags(enabled=False) if tokens.device.type == "cuda" else contextlib.nullcontext()


def explain_runs(runs: Sequence, text: str, device="cpu", attribution: bool | None = None,
                 ig_steps: int | None = None, source: str = "", true_label: int | None = None,
                 threads: int | None = 1) -> list[Explanation]:
    """Explain one review with each run (a run directory path, or a `Run` held in memory), in order.

    Raises ValueError for an empty review, RunError for a missing or broken run directory, and
    ImportError when `attribution=True` and Captum is not installed (None: attribution if available).
    `threads`: torch threads while explaining (None: as set). One review is a chain of small
    sequential steps, where a second thread only adds a synchronisation per step, and on a busy
    machine a wait for a time slice: Integrated Gradients of a 1,000-token review took 0.6-1.9 s
    with one thread and 3-35 s with two on 2 loaded cores.
    """
    if isinstance(runs, (str, os.PathLike, Run)) or not isinstance(text, str):  # a path's characters read as runs
        raise TypeError("explain_runs(runs, text): runs a list of run directories or Runs, text one review (a str)")
    if ig_steps is not None and ig_steps < 1:
        raise ValueError(f"ig_steps must be at least 1, got {ig_steps}")
    loaded = [r if isinstance(r, Run) else load_run(r, device) for r in runs]
    if not loaded:
        raise ValueError("no run to explain with")
    names = [r.name for r in loaded]
    for i, r in enumerate(loaded):  # two runs with one name (a/run, b/run): tell them apart
        if names.count(r.name) > 1:
            loaded[i] = dataclasses.replace(r, name=f"{r.name} ({i + 1})")
    from .runs import torch_threads

    with torch_threads(threads):
        return [explain(r, text, attribution, ig_steps, source, true_label) for r in loaded]


# --- several runs on one review, token by token --------------------------------------------------

@dataclass
class Alignment:
    """Rows of aligned tokens: rows[k] = (word, [index into explanations[i]'s arrays, or None])."""

    rows: list[tuple[str, list[int | None]]]
    note: str  # how the runs were lined up, and what only some of them read

    def values(self, exps: list[Explanation], field: str, i: int) -> list[float | None]:
        """explanations[i].<field> spread over the rows (None where run i did not read the token)."""
        arr = getattr(exps[i], field)
        return [None if arr is None or idx[i] is None else arr[idx[i]] for _, idx in self.rows]


def align(exps: list[Explanation]) -> Alignment:
    """Line the runs up token by token (one run: its own tokens).

    Every token is placed by its position in the review (`Explanation.positions`: among the review's tokens
    with <br /> tags kept), so runs that cut the review differently share exactly the tokens they both read,
    and a run that strips the tags leaves those rows blank. A run that read no word of the review (nothing its
    tokenizer keeps, `positions` [-1]) gets its <unk> stand-in a row of its own, first. Linear in the review's length.
    """
    if len(exps) == 1:
        return Alignment([(w, [j]) for j, w in enumerate(exps[0].words)], "")
    at = [dict(zip(e.positions, range(len(e)))) for e in exps]
    rows = []
    for pos in sorted(set().union(*at)):
        idx = [a.get(pos) for a in at]
        k = next(i for i, j in enumerate(idx) if j is not None)
        rows.append((exps[k].words[idx[k]], idx))
    names = ", ".join(e.run for e in exps)
    if all(e.positions == [-1] for e in exps):
        return Alignment(rows, f"{names}: none read a word of the review (an empty review reads as one <unk>)")
    if len({e.n_review_tokens for e in exps}) > 1:  # a review with no tag reads the same whether they are stripped
        shared = sum(all(j is not None for j in idx) for _, idx in rows)
        how = ", ".join(f"{e.run} {'strips' if e.strip_html else 'keeps'} <br /> tags" for e in exps)
        cuts = [e.run for e in exps if e.truncation]
        cut_note = f"; {', '.join(cuts)} read only part of the review" if cuts else ""
        empty = [e.run for e in exps if e.positions == [-1]]
        cut_note += f"; {', '.join(empty)} read no word of it (an empty review reads as one <unk>)" if empty else ""
        return Alignment(rows, f"the runs tokenise differently ({how}): aligned by position in the review, "
                               f"{token_count(shared) if shared else 'no tokens'} read by all{cut_note}; a token a "
                               "run did not read "
                               "(a tag it stripped, a part it cut) is left blank")
    lo, hi = min(e.start for e in exps), max(e.start + len(e) for e in exps)
    if all(e.start == lo and len(e) == hi - lo for e in exps):
        return Alignment(rows, f"{names}: the same {token_count(hi - lo)}, aligned one to one")
    s_lo, s_hi = max(e.start for e in exps), min(e.start + len(e) for e in exps)
    where = "tail" if s_hi == hi else "head" if s_lo == lo else "middle"
    shared = (f"all read tokens {s_lo + 1}-{s_hi} of {exps[0].n_review_tokens} (the shared {where})" if s_hi > s_lo
              else "no tokens read by all")
    parts = "; ".join(f"{e.run} read tokens {e.start + 1}-{e.start + len(e)}" for e in exps)
    return Alignment(rows, f"the runs cut the review differently ({parts}): aligned by position, "
                           f"{shared}; a token a run did not read is left blank")


# --- choosing real reviews worth explaining ---------------------------------------------------------

def decided_at(opinion: Sequence[float]) -> int:
    """The first token from which the running opinion stays on its final side of 0.5 (0: it never crossed)."""
    o = np.asarray(opinion) > 0.5
    flips = np.flatnonzero(o != o[-1])
    return int(flips[-1]) + 1 if len(flips) else 0


def pick_reviews(split, rnn, lstm=None, device="cpu", long_min: int = 400, late: float = 0.1,
                 short: tuple[int, int] = (15, 40), seed: int = 0, batch_size: int = 32) -> list[dict]:
    """Pick test reviews worth explaining, by three stated rules; returns one dict per rule.

    `split` is a data.Split (e.g. `load_imdb(path).test`); `rnn` the final-state vanilla RNN and `lstm`
    an LSTM, each a run directory or a `Run`. Reviews are scanned in a seeded random order (so both
    labels turn up), and each rule takes the first review that meets it:

    - "long, decided late": at least `long_min` tokens as the RNN reads them, and the RNN's running
      opinion crosses 0.5 for the last time within the last `late` share of the tokens;
    - "short": between short[0] and short[1] tokens as the RNN reads them;
    - "RNN wrong, LSTM right" (only with `lstm`): the vanilla RNN's answer is wrong, the LSTM's right.

    A review picked by one rule is not picked again by a later one. Each dict: rule, criterion (the rule
    in words), index (into `split`, None if no review meets it), n_tokens, label, and the models'
    P(positive) (rnn_p, lstm_p; for the first rule also the token where it was decided).
    Then, for instance:  for p in picks: write_html(explain_runs([rnn, lstm], split.texts[p["index"]]), ...)
    """
    import torch

    from .scoring import encode_texts, predict_proba

    rnn = rnn if isinstance(rnn, Run) else load_run(rnn, device)
    lstm = lstm if lstm is None or isinstance(lstm, Run) else load_run(lstm, device)
    order = np.random.default_rng(seed).permutation(len(split))
    enc, _ = encode_texts(rnn.vocab, split.texts, split.labels, rnn.cfg.max_len, rnn.cfg.truncate)
    n_tok = enc.lengths
    labels = np.asarray(split.labels)
    picks = []
    taken = lambda idx: idx[~np.isin(idx, [p["index"] for p in picks if p["index"] is not None])]  # noqa: E731

    crit = (f"the first review (seeded order, seed {seed}) of at least {long_min} tokens whose running opinion "
            f"from {rnn.name} crosses 0.5 for the last time in its last {late:.0%} of tokens")
    found = {"rule": "long, decided late", "criterion": crit, "index": None}
    cands = taken(order[n_tok[order] >= long_min])
    dev = _device_of(rnn.model)
    for lo in range(0, len(cands), batch_size):
        idx = cands[lo:lo + batch_size]
        tokens, lengths, _ = enc.collate(idx)
        with torch.no_grad():
            _, steps = rnn.model.forward_steps(tokens.to(dev), lengths.to(dev))
        probs = torch.sigmoid(steps).cpu().numpy()
        hit = next(((i, d) for i, row, L in zip(idx, probs, lengths.tolist())
                    if (d := decided_at(row[:L])) > 0 and d >= (1 - late) * L), None)
        if hit:
            i, d = hit
            found.update(index=int(i), n_tokens=int(n_tok[i]), label=int(labels[i]), decided_at_token=d + 1,
                         rnn_p=float(probs[list(idx).index(i)][n_tok[i] - 1]))
            break
    picks.append(found)

    lo_, hi_ = short
    crit = (f"the first review (seeded order, seed {seed}) of {lo_} to {hi_} tokens as {rnn.name} reads it, "
            "not picked above")
    cands = taken(order[(n_tok[order] >= lo_) & (n_tok[order] <= hi_)])
    found = {"rule": "short", "criterion": crit, "index": None}
    if len(cands):
        i = int(cands[0])
        found.update(index=i, n_tokens=int(n_tok[i]), label=int(labels[i]),
                     rnn_p=float(predict_proba(rnn.model, enc.subset(np.array([i])), dev)[0]))
    picks.append(found)

    if lstm is not None:
        crit = (f"the first review (seeded order, seed {seed}) that {rnn.name} classifies wrongly "
                f"and {lstm.name} rightly, not picked above")
        found = {"rule": "RNN wrong, LSTM right", "criterion": crit, "index": None}
        enc_l, _ = encode_texts(lstm.vocab, split.texts, split.labels, lstm.cfg.max_len, lstm.cfg.truncate)
        step, rest = 256, taken(order)
        for lo in range(0, len(rest), step):
            idx = rest[lo:lo + step]
            p_r = predict_proba(rnn.model, enc.subset(idx), dev)
            p_l = predict_proba(lstm.model, enc_l.subset(idx), _device_of(lstm.model))
            ok_r, ok_l = (p_r > 0.5) == (labels[idx] == 1), (p_l > 0.5) == (labels[idx] == 1)
            hits = np.flatnonzero(~ok_r & ok_l)
            if len(hits):
                j = hits[0]
                i = int(idx[j])
                found.update(index=i, n_tokens=int(n_tok[i]), label=int(labels[i]), rnn_p=float(p_r[j]),
                             lstm_p=float(p_l[j]))
                break
        picks.append(found)
    return picks


# --- the command ----------------------------------------------------------------------------------

def _split_args(args) -> tuple[list[Path], list[str]]:
    """RUN_DIR... [TEXT]...: the first argument and those after it that are run directories (a directory with a
    config.json) are the runs, the rest the review's words. A lone word that looks like a path, or a first word
    that looks like a path into an existing folder, is taken for a mistyped run, not for a review."""
    if args and args[0] == "":  # Path("") is the current folder: an unset "$RUN" would read whatever run is there
        raise ValueError("RUN_DIR '': an empty path; give a folder (. for the current one)")
    k = 1 if args and _is_dir(args[0]) else 0
    while k and k < len(args) and args[k] and is_run_dir(args[k]):
        k += 1
    runs, words = [Path(a) for a in args[:k]], list(args[k:])
    lone_path = len(words) == 1 and _pathlike(words[0])
    if not runs or lone_path:
        hint = " (to explain it as a review: --text)" if runs else ""
        raise ValueError(f"{no_such(words[0], 'run directory')}{hint}")
    if words and _pathlike(words[0]) and _is_dir(str(Path(words[0]).parent)):  # a mistyped or broken run
        raise ValueError(f"{shorten(words[0])}: not a run directory (no readable config.json); to explain words "
                         "that look like a path: --text")
    return runs, words


def _pathlike(word: str) -> bool:
    return not any(c.isspace() for c in word) and (os.sep in word or "/" in word)


LAB_REPORTS = ("report.html", "report.md")  # a lab's own, beside its lab.json: `owner` leaves them to `report`
PER_PREFIX_NOTE_TOKENS = 1000  # above this, a model run once per prefix is told to take its time


def _before_the_wait(run: Run, text: str, ig_steps: int | None) -> None:
    """TooLong if the review cannot be explained in the memory available (`memory_plan`), before any run's work;
    else a note before a long wait: a model without a running state of its own (the Transformer, the CNN) is run
    once per prefix of the review it reads (`Classifier.forward_steps`)."""
    from .models import per_prefix
    from .scoring import encode_texts

    if not text.strip():
        return  # explain's own line: nothing to explain
    n = int(encode_texts(run.vocab, [text], None, run.cfg.max_len, run.cfg.truncate)[0].lengths[0])
    memory_plan(run.model, n, ig_steps_for(run.cfg.model) if ig_steps is None else ig_steps)
    if per_prefix(run.model) and n > PER_PREFIX_NOTE_TOKENS:
        click.echo(f"note: {one_line(run.name)} ({run.cfg.model}) reads each of the review's {n:,} prefixes anew "
                   "for its running opinion: time grows faster than the length squared (a Transformer: ~17 s at "
                   "1,000 tokens on a 2-core VM, docs/PERFORMANCE.md); Ctrl-C stops it", err=True)


def _is_dir(arg: str) -> bool:
    try:
        return Path(arg).is_dir()
    except (OSError, ValueError):  # a name too long for a path, or with a NUL: not a directory
        return False


def _one_split(arg: str) -> bool:
    """Whether --data names one CSV or parquet file, which data.load_split reads as a split of its own (a tarball
    holds both)."""
    try:
        return Path(arg).suffix.lower() in (".csv", ".parquet") and Path(arg).is_file()
    except (OSError, ValueError):  # a name too long for a path, or with a NUL: not a file
        return False


LONGEST_REVIEW = 64 * 2**20  # bytes of stdin, as predict's longest line (cli.LONGEST_LINE)


def _read_review(text, review, data_path, split_name, runs) -> tuple[str, str, int | None]:
    """(text, where it came from, true label or None), from --text, --review N or stdin."""
    if text is not None and review is not None:
        raise ValueError("give one review: --text or --review N, not both")
    if review is not None:
        from .data import load_split
        from .runs import RunDir, own_split

        if split_name is not None and data_path is not None and _one_split(data_path):
            raise ValueError(f"--split {split_name}: {data_path} is one file, a split of its own; leave --split out")
        split = (own_split(RunDir(runs[0]), split_name or "test") if data_path is None
                 else load_split(data_path, split_name or "test"))
        if review >= len(split):
            raise ValueError(f"--review {review}: {split.source} has {len(split)} review{'s' * (len(split) != 1)} "
                             f"(0..{len(split) - 1})")
        return split.texts[review], f"review {review} of {split.source}", int(split.labels[review])
    if data_path is not None:
        raise ValueError("--data is read only with --review N")
    if split_name is not None:
        raise ValueError("--split is read only with --review N")
    if text is None:
        if sys.stdin is None or sys.stdin.isatty():
            raise ValueError("no review given: pass TEXT (or --text TEXT), --review N [--data PATH], or the review on stdin")
        data = sys.stdin.buffer.read(LONGEST_REVIEW + 1)  # bounded: `< /dev/zero` or `yes |` has no end
        if len(data) > LONGEST_REVIEW:
            raise ValueError(f"the review on stdin is longer than {LONGEST_REVIEW:,} bytes (does it end?): "
                             "explain reads one review")
        text = data.decode("utf-8", errors="replace")
        source = "a review from standard input"
    else:
        source = "a review given with --text"
    if not text.strip():
        raise ValueError("empty review: give some text (TEXT, --text, --review N or stdin)")
    return text, source, None


def _check_out(path: Path | None, flag: str, run_dirs=(), data_path=None) -> None:
    if path is None:
        return
    for data in [data_path, *(_recorded_data(r) for r in run_dirs)]:
        if data is not None and _overwrites(path, Path(data)):
            raise ValueError(f"{flag} {path}: would overwrite the data {data}; write it elsewhere")
    for run in run_dirs:
        try:
            rel = path.resolve().relative_to(Path(run).resolve())
        except (ValueError, OSError, RuntimeError):  # RuntimeError: a link loop (3.11's resolve), named below
            continue
        if rel.parts and (rel.parts[0] in RUN_FILES or rel.parts[0].startswith("ckpt-")):
            raise ValueError(f"{flag} {path}: one of the run's own files ({run}); write it elsewhere")
    if path.is_dir():
        raise ValueError(f"{flag} {path}: is a directory; give a file name")
    if not path.parent.is_dir():
        blocked = file_in_the_way(path.parent)
        raise ValueError(f"{flag} {path}: " + (f"{blocked} is a file, not a directory" if blocked else
                                               in_the_way(path.parent) or f"no such directory {path.parent}"))
    whose = owner(path)  # another run's, a data set's, a lab's
    try:
        target = path.resolve()  # a link is written through: its target is what would be replaced
    except (OSError, RuntimeError):  # a link loop (3.11's resolve): refused below, as it cannot be written
        target = path
    if not whose and target.name in LAB_REPORTS and (target.parent / "lab.json").is_file():
        whose = f"the report of the lab {target.parent} (rnnlab report writes it)"
    if whose:
        raise ValueError(f"{flag} {path}: {whose}; write it elsewhere")
    if flag == "--png" and path.suffix.lower().lstrip(".") not in FIGURE_FORMATS:
        raise ValueError(f"--png {path}: not a figure file name; end it in .png (or .svg, .pdf)")
    folder = path.resolve().parent  # a link is written through, in its target's folder
    if not os.access(folder, os.W_OK | os.X_OK):  # before the work, and before the other file is written
        raise ValueError(f"{flag} {path}: cannot write in {folder} (permission denied or read-only)")


def _previous(path: Path) -> tuple[bool, Path | None]:
    """(was there a file at `path`, a hidden second name for it) before it is replaced. The second name is a hard
    link: it needs no space, which a full disk would not give; None where the file system has no hard links."""
    target = path.resolve()
    for stale in target.parent.glob(f".{glob.escape(target.name)}.*.previous"):  # a killed explain's (kill -9)
        pid = stale.name[len(target.name) + 2:-len(".previous")]
        if pid.isascii() and pid.isdigit() and not pid_alive(int(pid)):
            with contextlib.suppress(OSError):
                stale.unlink()
    if not target.is_file():
        return False, None
    keep = target.with_name(f".{target.name}.{os.getpid()}.previous")
    try:
        os.link(target, keep)
    except OSError:
        return True, None
    return True, keep


def _take_back(path: Path, previous: tuple[bool, Path | None]) -> None:
    """The first output back as it was before this command: its previous version, or no file (where its previous
    version could not be kept, the new one stays)."""
    existed, keep = previous
    with contextlib.suppress(OSError):
        if keep is not None:
            os.replace(keep, path.resolve())
        elif not existed:
            path.resolve().unlink(missing_ok=True)


def _recorded_data(run_dir) -> str | None:
    """The data a run records, where it names a path (None: the hub, none recorded, or unreadable: checked later)."""
    from .runs import RunDir, run_data_path

    try:
        return run_data_path(RunDir(run_dir))
    except (RunError, OSError, ValueError):
        return None


def _overwrites(path: Path, data: Path) -> bool:
    """Whether writing `path` replaces the data file `data`, or a file inside the data folder `data`."""
    try:
        out, data = path.resolve(), data.resolve()
        return out == data or (data.is_dir() and out.is_file() and out.is_relative_to(data))
    except (OSError, ValueError, RuntimeError):  # RuntimeError: a symbolic-link loop (reported later)
        return False


FIGURE_FORMATS = {"png", "svg", "svgz", "pdf", "eps", "ps", "jpg", "jpeg", "tif", "tiff", "webp"}  # matplotlib's


@click.command("explain")
@click.argument("args", nargs=-1, required=True, metavar="RUN_DIR... [TEXT]...")
@click.option("--text", default=None, help="The review, instead of TEXT. Without either or --review: read from stdin.")
@click.option("--review", type=click.IntRange(min=0), default=None, help="Explain review N (0-based) of --data.")
@click.option("--data", "data_path", default=None,
              help="With --review: parquet dir, aclImdb dir or tarball, or one CSV or parquet file (a split itself). "
                   "Default: the first run's own data.")
@click.option("--split", "split_name", type=click.Choice(["test", "train"]), default=None,
              help="With --review: which split N counts in.  [default: test]")
@click.option("--html", "html_path", type=click.Path(path_type=Path), default=None,
              help="Write a self-contained HTML page here (the terminal then shows each run's answer, not every word).")
@click.option("--png", "png_path", type=click.Path(path_type=Path), default=None, help="Write a PNG figure here.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: the alignment and one explanation per run.")
@click.option("--plain", is_flag=True, help="A plain table even on a terminal (no colours).")
@click.option("--attribution/--no-attribution", default=None,
              help="Integrated Gradients (needs Captum: pip install captum). Default: if installed.")
@click.option("--ig-steps", type=click.IntRange(min=1, max=IG_STEPS_MAX), default=None,
              help=f"Integration steps of Integrated Gradients. [default: {IG_STEPS}; the Transformer {IG_STEPS_TRANSFORMER}]")
@click.option("--device", type=click.Choice(CHOICES["device"]), default="auto", show_default=True)
def command(args, text, review, data_path, split_name, html_path, png_path, as_json, plain, attribution,
            ig_steps, device):
    """Show how trained models read one review, word by word.

    For every token as each run reads it: the running opinion (P(positive) had the review ended
    there), its Integrated Gradients attribution, the gradient norm at its embedding and, for
    recurrent models, how far it moves the hidden state. Several RUN_DIRs are aligned token by token.
    The first argument, and those after it that are run directories, are the runs; the words after them
    are the review (one that starts with "-" goes after --, or in --text). With --html or --png the words go
    to the file, and the terminal shows each run's answer and the words that pushed it.

    The Transformer and the CNN are run once per prefix, and the Transformer's attributions take 200 steps: on 2
    CPU cores a 1,000-token review takes about 4 s through the lab's transformer preset (it reads the last 400
    tokens) against 1.5 s through its vanilla RNN, and about 17 s through a Transformer that reads whole reviews
    (--ig-steps 50: about 11 s; docs/PERFORMANCE.md, "Explaining one review").
    """
    from .cli import InputError  # here, not above: cli imports this module
    from .text import unread_note, wordless_note

    try:
        run_dirs, words = _split_args(args)
        if attribution is False and ig_steps is not None:
            raise ValueError("--ig-steps is read only with attributions, not with --no-attribution")
        _check_out(html_path, "--html", run_dirs, data_path)
        _check_out(png_path, "--png", run_dirs, data_path)
        if html_path and png_path and html_path.resolve() == png_path.resolve():
            raise ValueError(f"--html and --png need different files ({html_path})")
        if words:
            if text is not None:
                raise ValueError("give the review once: as TEXT or with --text, not both")
            if review is not None:
                raise ValueError("give the review once: as TEXT or with --review N, not both")
            text = " ".join(words)
        from .runs import RunDir
        from .train import resolve_device

        dev = resolve_device(device)
        runs = [load_run(r, dev) for r in run_dirs]
        for note in filter(None, (RunDir(r).unfinished() for r in run_dirs)):  # as predict says, before the wait
            click.echo(one_line(f"note: {note}"), err=True)  # a run's name shown, its escape codes not obeyed
        text, source, truth = _read_review(text, review, data_path, split_name, run_dirs)
        source = "a review given on the command line" if words else source
        if not text.strip():  # a data file's empty review, refused before any note on what it reads
            raise ValueError(f"empty review ({source}): there is nothing to explain")
        wordless = {r.name: wordless_note([text], r.vocab.strip_html) for r in runs}
        if len(set(wordless.values())) > 1:  # runs that tokenise differently (<br /> tags): say which
            wordless = {name: f"{name}: {note}" for name, note in wordless.items() if note}
        for note in dict.fromkeys(filter(None, [unread_note([text]), *wordless.values()])):
            click.echo(one_line(f"note: {note}"), err=True)  # a run's name shown, its escape codes not obeyed
        for run in runs:
            _before_the_wait(run, text, ig_steps)
        exps = explain_runs(runs, text, attribution=attribution, ig_steps=ig_steps, source=source,
                            true_label=truth)
    except ImportError as e:
        raise InputError(f"--attribution needs Captum: pip install captum ({e})") from None
    except (RunError, DataError, ValueError) as e:
        raise InputError(str(e)) from None
    if attribution is None and exps[0].attribution is None:
        click.echo(f"note: {NO_CAPTUM}", err=True)
    previous = _previous(html_path) if html_path and png_path else (False, None)  # both or neither: _take_back
    try:
        if html_path:
            write_html(exps, html_path)
        if png_path:
            write_png(exps, png_path)
    except BaseException as e:  # a failure (a full disk) or Ctrl-C while the second file is written
        if html_path and png_path:
            _take_back(html_path, previous)
        if isinstance(e, RunError):
            raise InputError(str(e)) from None
        raise
    finally:
        if previous[1] is not None:
            previous[1].unlink(missing_ok=True)
    for path in (html_path, png_path):
        if path:
            click.echo(f"wrote {one_line(str(path))}", err=True)
    # the terminal shows a run's or a data file's name with its control characters escaped (a name holding a
    # terminal's escape codes would clear the screen or set the window's title), as error lines do
    shown = [dataclasses.replace(e, run=one_line(e.run), source=one_line(e.source)) for e in exps]
    if as_json:
        al = align(exps)
        echo_whole(json.dumps(jsonable({"source": source, "alignment": {"note": al.note, "rows": [
            {"word": w, "index": idx} for w, idx in al.rows]}, "runs": [e.to_dict() for e in exps]}), allow_nan=False))
        for e in shown:  # as the page and the terminal view say it (each run's "attribution_warning" in the JSON)
            if attribution_warning(e):
                click.echo(f"note: {e.run}: {attribution_warning(e).split('. ')[0]}", err=True)
        return
    if html_path or png_path:  # the words are in the file: here each run's answer, not a table of 1,000 rows
        runs = ["\n".join(header_lines(e)) for e in shown]
        echo_whole(printable("\n\n".join(runs + ([f"aligned: {align(shown).note}"] if len(shown) > 1 else []))))
        return
    colour = (not plain and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
              and os.environ.get("TERM", "") != "dumb")  # a dumb terminal shows escape codes as text
    echo_whole(printable(render_terminal(shown, colour)), nl=False)  # a name's bytes that are not UTF-8, escaped


from .explain_views import header_lines, render_terminal, write_html, write_png  # noqa: E402  (re-exported)
