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
- `attribution`: Integrated Gradients (Captum's LayerIntegratedGradients on `model.embedding`) of the
  final logit, summed over the embedding dimensions. Baseline: the same number of <pad> tokens, read
  with the review's length. The <pad> row of every embedding is zero (padding_idx=0), so this is also
  the zero-embedding baseline: "a review of the same length with no words". Completeness: the
  attributions sum to f(x) - f(baseline) up to Captum's convergence delta (`attribution_delta`).
  Captum is an optional extra (`pip install rnnlab[explain]`): without it `attribution` is None and
  `attribution_note` says why; `rnnlab explain --attribution` then fails instead.
- `grad_norm`: ||dL/dx_t|| at the embedding output, L = BCE of the final logit against the predicted
  label: on a log axis, the vanishing gradient on one real review.
- `state_change`: ||h_t - h_{t-1}|| of the top recurrent layer (h_{-1} = 0; the LSTM's h, not its cell),
  how far each token moves the state; None for models without a recurrent state.

Several runs on one review are aligned by token (`align`): by position in the review when they tokenise
alike (a run that read only the tail lines up with the tail of one that read everything), by matching
words when their tokenisers differ (strip_html). Renderings: `render_terminal` (ANSI colours on a
terminal, a plain table otherwise), `write_html` (one self-contained page, nothing loaded from anywhere),
`write_png` (matplotlib). `pick_reviews` chooses real test reviews worth explaining by stated rules.

torch, captum and matplotlib are imported where they are used: the CLI imports this module, and
`rnnlab --help` must stay fast.
"""
from __future__ import annotations

import contextlib
import dataclasses
import difflib
import html
import json
import math
import os
import shutil
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import click
import numpy as np

from .config import CHOICES, RECURRENT_KINDS
from .data import DataError
from .io import RunError, write_text

IG_STEPS = 50
IG_BUDGET = 4_000_000  # per Captum internal batch: tokens, or for the Transformer attention scores (T^2 a path)
LAST_STEP_TOLERANCE = 1e-4  # forward_steps' last step vs the model's answer, in probability
NO_CAPTUM = "attribution unavailable: Captum is not installed (pip install 'rnnlab[explain]')"


# --- what one run makes of one review --------------------------------------------------------------

@dataclass
class Run:
    """A trained model with what it needs to read text: a run directory loaded, or one held in memory."""

    name: str
    cfg: Any  # TrainConfig
    vocab: Any  # text.Vocab
    model: Any  # models.Classifier, eval mode


def load_run(path: str | os.PathLike, device="cpu") -> Run:
    """A run directory -> Run (RunError when it is missing or broken)."""
    from .runs import RunDir

    cfg, vocab, model = RunDir(path).load_model(device)
    return Run(Path(path).resolve().name, cfg, vocab, model)


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

    def __len__(self) -> int:
        return len(self.words)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

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
    return (f"completeness fails: the attributions add up to {sum(e.attribution):+.3f}, the logit moved {gap:+.3f} "
            "from the blank review. The model's answer jumps somewhere on the straight path between them and the "
            "integration steps miss it: read these attributions as rough (more --ig-steps may help)")


def vanished(e: Explanation) -> int:
    """How many tokens' gradient is exactly 0: below float32's smallest number (about 1e-45)."""
    return sum(g == 0 for g in e.grad_norm)


def reading(cfg) -> str:
    """What the running opinion at token t is, for this kind of model."""
    if cfg.model in RECURRENT_KINDS:
        if cfg.pool == "last":
            return "the classifier on the hidden state after this token (h_t)"
        return f"the classifier on the {cfg.pool} of the hidden states up to this token (the pooled prefix)"
    if cfg.model == "bow":
        return (f"the model on the prefix ending here (the {cfg.pool} of the word vectors so far: "
                "the pooled prefix)")
    return "the model on the prefix ending here (run again on the review cut after this token)"


def _device_of(model):
    return next(model.parameters()).device


def explain(run: Run, text: str, attribution: bool | None = None, ig_steps: int = IG_STEPS,
            source: str = "", true_label: int | None = None) -> Explanation:
    """Explain one review with one run (in eval mode; the model's mode is restored after)."""
    was_training = run.model.training
    try:
        return _explain(run, text, attribution, ig_steps, source, true_label)
    finally:
        run.model.train(was_training)


def _explain(run: Run, text: str, attribution: bool | None, ig_steps: int, source: str,
             true_label: int | None) -> Explanation:
    """attribution: None = if Captum is installed, True = required (ImportError without it), False = none."""
    import torch

    from .scoring import encode_texts, predict_proba
    from .text import tokenize

    if not text.strip():
        raise ValueError("empty review: there is nothing to explain")
    cfg, vocab, model = run.cfg, run.vocab, run.model
    device = _device_of(model)
    model.eval()
    enc, full_len = encode_texts(vocab, [text], None, cfg.max_len, cfg.truncate)  # exactly as predict cuts
    start, L, n_full = int(enc.starts[0]), int(enc.lengths[0]), int(full_len[0])
    words = (tokenize(text, vocab.strip_html) or ["<unk>"])[start:start + L]  # an empty review reads as <unk>
    ids = [int(i) for i in enc.ids[start:start + L]]
    tokens, lengths, _ = (t.to(device) for t in enc.collate(np.array([0])))  # (1, L), (1,)

    p = float(predict_proba(model, enc, device)[0])  # the number `rnnlab predict` prints
    with torch.no_grad():
        logit = float(model(tokens, lengths)[0])  # the logit behind it (sigmoid(logit) == p)
        _, steps = model.forward_steps(tokens, lengths)
    opinion = torch.sigmoid(steps[0, :L]).float().cpu().numpy().astype(np.float64)
    if abs(opinion[-1] - p) > LAST_STEP_TOLERANCE:
        raise RuntimeError(f"{run.name}: forward_steps' last step ({opinion[-1]:.6f}) is not the model's "
                           f"answer ({p:.6f})")
    opinion[-1] = p  # the model's answer itself, not a second computation of it

    attr, note, delta, base = None, NO_CAPTUM, None, None
    if attribution is not False and ig_steps > 0:
        try:
            attr, delta, base = integrated_gradients(model, tokens, lengths, ig_steps)
            note = (f"Integrated Gradients ({ig_steps} steps) of the final logit; baseline: {L} <pad> tokens "
                    "(zero embeddings), i.e. the same length with no words")
        except ImportError:
            if attribution:
                raise
    else:
        note = "attribution not computed (switched off)"

    grad = embedding_grad_norm(model, tokens, lengths, float(p > 0.5))
    change = None
    if cfg.model in RECURRENT_KINDS:
        with torch.no_grad():
            h = model.states(tokens, lengths)[0, :L]  # (L, H)
        change = (h - torch.cat([torch.zeros_like(h[:1]), h[:-1]])).norm(dim=-1).cpu().double().numpy().tolist()

    cut = ""
    if L < n_full:
        part = "first" if start == 0 else "last"
        cut = (f"read the {part} {L} of the review's {n_full} tokens (max_len {cfg.max_len}, "
               f"truncate {cfg.truncate}): {n_full - L} tokens were cut")
    return Explanation(run.name, cfg.model, cfg.pool, reading(cfg), words, ids, start, n_full, cut,
                       opinion.tolist(), attr, note, delta, base, grad, change, logit, p,
                       "positive" if p > 0.5 else "negative", vocab.strip_html, source, true_label)


def integrated_gradients(model, tokens, lengths, n_steps: int = IG_STEPS):
    """(per-token attribution list, convergence delta, baseline logit) of the logit of a (1, T) review.

    Raises ImportError without Captum.
    """
    import torch
    from captum.attr import LayerIntegratedGradients

    from .models import TransformerClassifier

    baseline = torch.zeros_like(tokens)  # <pad>: its embedding row is zero (padding_idx=0)
    T = tokens.shape[1]
    per_path = T * T if isinstance(model, TransformerClassifier) else T
    lig = LayerIntegratedGradients(lambda t, n: model(t, n), model.embedding)
    with _no_cudnn(tokens):
        attr, delta = lig.attribute(tokens, baselines=baseline, additional_forward_args=(lengths,),
                                    n_steps=n_steps, return_convergence_delta=True,
                                    internal_batch_size=max(1, min(n_steps, IG_BUDGET // per_path)))
    with torch.no_grad():
        base = float(model(baseline, lengths)[0])
    per_token = attr[0].sum(-1).detach().cpu().double().numpy()  # (T,): summed over embedding dimensions
    return per_token.tolist(), float(delta.reshape(-1)[0]), base


def embedding_grad_norm(model, tokens, lengths, label: float) -> list[float]:
    """||dL/dx_t|| for each token, x_t the embedding output, L = BCE(final logit, label)."""
    import torch
    import torch.nn.functional as F

    seen = {}
    hook = model.embedding.register_forward_hook(lambda mod, inp, out: seen.setdefault("x", out))
    try:
        with torch.enable_grad(), _no_cudnn(tokens):
            logit = model(tokens, lengths)
            loss = F.binary_cross_entropy_with_logits(logit, torch.full_like(logit, label))
            (g,) = torch.autograd.grad(loss, seen["x"])
    finally:
        hook.remove()
    return g[0].norm(dim=-1).cpu().double().numpy().tolist()  # (T,)


def _no_cudnn(tokens):
    """cuDNN runs RNN backward only in training mode; the gradients here are taken in eval mode."""
    import torch

    return torch.backends.cudnn.flags(enabled=False) if tokens.device.type == "cuda" else contextlib.nullcontext()


def explain_runs(runs: Sequence, text: str, device="cpu", attribution: bool | None = None,
                 ig_steps: int = IG_STEPS, source: str = "", true_label: int | None = None,
                 threads: int | None = 1) -> list[Explanation]:
    """Explain one review with each run (a run directory path, or a `Run` held in memory), in order.

    Raises ValueError for an empty review, RunError for a missing or broken run directory, and
    ImportError when `attribution=True` and Captum is not installed (None: attribution if available).
    `threads`: torch threads while explaining (None: as set). One review is a chain of small
    sequential steps, where a second thread only adds a synchronisation per step, and on a busy
    machine a wait for a time slice: Integrated Gradients of a 1,000-token review took 0.6-1.9 s
    with one thread and 3-35 s with two on 2 loaded cores.
    """
    loaded = [r if isinstance(r, Run) else load_run(r, device) for r in runs]
    if not loaded:
        raise ValueError("no run to explain with")
    names = [r.name for r in loaded]
    for i, r in enumerate(loaded):  # two runs with one name (a/run, b/run): tell them apart
        if names.count(r.name) > 1:
            loaded[i] = dataclasses.replace(r, name=f"{r.name} ({i + 1})")
    with torch_threads(threads):
        return [explain(r, text, attribution, ig_steps, source, true_label) for r in loaded]


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run the block with `n` torch threads (None: unchanged), then restore the setting."""
    import torch

    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


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
    """Line the runs up token by token (one run: its own tokens)."""
    n = len(exps)
    if n == 1:
        return Alignment([(w, [j]) for j, w in enumerate(exps[0].words)], "")
    names = ", ".join(e.run for e in exps)
    if len({(e.strip_html, e.n_review_tokens) for e in exps}) == 1:  # one tokenisation: by position
        lo, hi = min(e.start for e in exps), max(e.start + len(e) for e in exps)
        rows = []
        for pos in range(lo, hi):
            idx = [pos - e.start if e.start <= pos < e.start + len(e) else None for e in exps]
            word = next(e.words[j] for e, j in zip(exps, idx) if j is not None) if any(
                j is not None for j in idx) else ""
            rows.append((word, idx))
        rows = [r for r in rows if r[0] != "" or any(j is not None for j in r[1])]
        s_lo, s_hi = max(e.start for e in exps), min(e.start + len(e) for e in exps)
        if all(e.start == lo and len(e) == hi - lo for e in exps):
            return Alignment(rows, f"{names}: the same {hi - lo} tokens, aligned one to one")
        shared = (f"tokens {s_lo + 1}-{s_hi} of {exps[0].n_review_tokens}" if s_hi > s_lo else "no tokens")
        where = "tail" if s_hi == hi else "head" if s_lo == lo else "middle"
        parts = "; ".join(f"{e.run} read tokens {e.start + 1}-{e.start + len(e)}" for e in exps)
        return Alignment(rows, f"the runs cut the review differently ({parts}): aligned by position, "
                               f"all read {shared} (the shared {where}); a token a run did not read is left blank")
    # different tokenisers (strip_html): match words, keeping every token of every run
    rows: list[tuple[str, list[int | None]]] = [(w, [j] + [None] * (n - 1)) for j, w in enumerate(exps[0].words)]
    for i in range(1, n):
        merged = [w for w, _ in rows]
        out: list[tuple[str, list[int | None]]] = []
        ops = difflib.SequenceMatcher(None, merged, exps[i].words, autojunk=False).get_opcodes()
        for tag, a0, a1, b0, b1 in ops:
            if tag == "equal":
                for a, b in zip(range(a0, a1), range(b0, b1)):
                    out.append((rows[a][0], rows[a][1][:i] + [b] + rows[a][1][i + 1:]))
            else:
                out += rows[a0:a1]
                out += [(exps[i].words[b], [None] * i + [b] + [None] * (n - 1 - i)) for b in range(b0, b1)]
        rows = out
    shared = sum(all(j is not None for j in idx) for _, idx in rows)
    how = ", ".join(f"{e.run} {'strips' if e.strip_html else 'keeps'} <br /> tags" for e in exps)
    cuts = [e.run for e in exps if e.truncation]
    cut_note = f"; {', '.join(cuts)} read only part of the review" if cuts else ""
    return Alignment(rows, f"the runs tokenise differently ({how}): aligned by matching words, {shared} tokens "
                           f"read by all{cut_note}; a token a run did not read is left blank")


# --- colours ------------------------------------------------------------------------------------------

NEG_RGB, MID_RGB, POS_RGB = (202, 0, 32), (247, 247, 247), (5, 113, 176)  # ColorBrewer RdBu ends, grey middle


def _rgb(x: float) -> tuple[int, int, int]:
    """x in [-1, 1] -> red (-1), light grey (0), blue (+1)."""
    x = max(-1.0, min(1.0, x))
    end = POS_RGB if x > 0 else NEG_RGB
    a = abs(x)
    return tuple(round(m + (e - m) * a) for m, e in zip(MID_RGB, end))


def opinion_colour(p: float) -> tuple[int, int, int]:
    return _rgb(2 * p - 1)


def attribution_colours(attr: list[float] | None) -> list[tuple[int, int, int]]:
    """Each token's attribution relative to the run's largest |attribution| ([] without attribution)."""
    if attr is None:
        return []
    top = max((abs(a) for a in attr), default=0.0) or 1.0
    return [_rgb(a / top) for a in attr]


def _hex(rgb) -> str:
    return "#%02x%02x%02x" % rgb


def _dark(rgb) -> bool:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] < 140


# --- the terminal -----------------------------------------------------------------------------------

def _ansi256(rgb) -> int:
    levels = (0, 95, 135, 175, 215, 255)
    return 16 + sum(min(range(6), key=lambda k: abs(levels[k] - c)) * m for c, m in zip(rgb, (36, 6, 1)))


def _bg(rgb, s: str) -> str:
    fg = 15 if _dark(rgb) else 16
    return f"\x1b[48;5;{_ansi256(rgb)}m\x1b[38;5;{fg}m{s}\x1b[0m"


def _fmt(x: float | None, spec: str) -> str:
    return "" if x is None else format(x, spec)


def header_lines(e: Explanation) -> list[str]:
    """What a reader needs before the tokens: the run, its answer, what the numbers mean, any cut."""
    truth = "" if e.true_label is None else f" (true label: {'positive' if e.true_label else 'negative'})"
    out = [f"{e.run} ({e.model}, pool {e.pool}): {e.label}, P(positive) = {e.p_positive:.4f}{truth}",
           f"  running opinion = P(positive) from {e.reading}",
           f"  {e.truncation}" if e.truncation else f"  read all {len(e)} tokens of the review"]
    if e.attribution is not None:
        out.append(f"  attribution: {e.attribution_note}. Sum {sum(e.attribution):+.4f}; logit {e.logit:+.4f} "
                   f"- baseline {e.baseline_logit:+.4f} = {e.logit - e.baseline_logit:+.4f} "
                   f"(convergence delta {e.attribution_delta:+.2e})")
        pos, neg = top_words(e)
        out.append("  pushed towards positive: " + (", ".join(f"{w} {a:+.3f}" for w, a in pos) or "-"))
        out.append("  pushed towards negative: " + (", ".join(f"{w} {a:+.3f}" for w, a in neg) or "-"))
        if attribution_warning(e):
            out.append(f"  warning: {attribution_warning(e)}")
    else:
        out.append(f"  {e.attribution_note}")
    if vanished(e):
        out.append(f"  ||dL/dx_t|| is exactly 0 in float32 at {vanished(e)} of {len(e)} tokens: no learning signal "
                   "reaches them at all")
    return out


def top_words(e: Explanation, k: int = 5) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """The k tokens with the largest positive and the k with the most negative attribution."""
    if e.attribution is None:
        return [], []
    order = np.argsort(e.attribution)
    pos = [(e.words[j], e.attribution[j]) for j in order[::-1][:k] if e.attribution[j] > 0]
    neg = [(e.words[j], e.attribution[j]) for j in order[:k] if e.attribution[j] < 0]
    return pos, neg


def render_terminal(exps: list[Explanation], colour: bool, width: int | None = None) -> str:
    """Colour: the words on their running-opinion colour (one run) or one bar per run under each word.
    Plain: a table, one row per aligned token, with every number of every run."""
    al = align(exps)
    lines = []
    for e in exps:
        lines += header_lines(e)
    if len(exps) > 1:
        lines.append(f"aligned: {al.note}")
    lines.append("")
    if not colour:
        return "\n".join(lines + _table(exps, al)) + "\n"
    width = width or shutil.get_terminal_size((100, 24)).columns
    legend = ("colour: running opinion " + _bg(_rgb(-1), " 0 negative ") + _bg(_rgb(-0.5), " 0.25 ")
              + _bg(_rgb(0), " 0.5 ") + _bg(_rgb(0.5), " 0.75 ") + _bg(_rgb(1), " 1 positive ")
              + "; underlined: not in the vocabulary (<unk>)")
    if len(exps) == 1:
        e, row, used = exps[0], [], 0
        for j, w in enumerate(e.words):
            cell = ("\x1b[4m" if e.ids[j] == 1 else "") + _bg(opinion_colour(e.opinion[j]), w)
            if used + len(w) + 1 > width and row:
                lines.append(" ".join(row))
                row, used = [], 0
            row.append(cell)
            used += len(w) + 1
        lines.append(" ".join(row))
        return "\n".join(lines + ["", legend]) + "\n"
    label_w = max(len(e.run) for e in exps) + 2
    words, bars, used = [], [[] for _ in exps], 0
    blocks = []
    for word, idx in al.rows:
        w = max(len(word), 1)
        if used + w + 1 > width - label_w and words:
            blocks.append((words, bars))
            words, bars, used = [], [[] for _ in exps], 0
        words.append(word.ljust(w))
        for i, e in enumerate(exps):
            bars[i].append(" " * w if idx[i] is None else _bg(opinion_colour(e.opinion[idx[i]]), " " * w))
        used += w + 1
    blocks.append((words, bars))
    for ws, bs in blocks:
        lines.append(" " * label_w + " ".join(ws))
        for e, b in zip(exps, bs):
            lines.append(e.run[:label_w - 2].ljust(label_w) + " ".join(b))
        lines.append("")
    return "\n".join(lines + [legend]) + "\n"


def _table(exps: list[Explanation], al: Alignment) -> list[str]:
    cols = [("p_pos", "opinion", ".4f"), ("attr", "attribution", "+.4f"), ("|dL/dx|", "grad_norm", ".2e"),
            ("|dh|", "state_change", ".4f")]
    multi = len(exps) > 1
    head = ["t", "token"] + [f"{name}:{e.run}" if multi else name for e in exps for name, _, _ in cols]
    rows = []
    for k, (word, idx) in enumerate(al.rows):
        unk = any(j is not None and e.ids[j] == 1 for e, j in zip(exps, idx))
        cells = [str(k + 1), word + (" (unk)" if unk else "")]
        for i, e in enumerate(exps):
            for _, field, spec in cols:
                arr = getattr(e, field)
                cells.append("" if idx[i] is None or arr is None else _fmt(arr[idx[i]], spec))
        rows.append(cells)
    widths = [max(len(c) for c in col) for col in zip(head, *rows)]

    def fmt(cells):  # the token left-aligned, numbers right-aligned
        return "  ".join(c.ljust(w) if i == 1 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return [fmt(head)] + [fmt(r) for r in rows]


# --- HTML: one self-contained page ------------------------------------------------------------------

CSS = """
:root{color-scheme:light}
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#222;
  max-width:1100px;margin:0 auto;padding:18px 22px 40px;background:#fff;overflow-wrap:anywhere}
h1{font-size:1.45em;margin:.2em 0 .1em}h2{font-size:1.15em;margin:1.6em 0 .4em;border-bottom:1px solid #ddd}
.sub{color:#555;margin:.1em 0 .8em}.note{color:#555;font-size:.9em}.warn{color:#a04000}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{flex:1 1 300px;border:1px solid #ddd;border-radius:8px;padding:10px 14px;background:#fafafa}
.card h3{margin:0 0 4px;font-size:1.05em}.card p{margin:3px 0;font-size:.92em}
.verdict{font-weight:600}.pos{color:rgb(5,113,176)}.neg{color:rgb(202,0,32)}
.flow{line-height:2.05;font-size:15px}
.t{padding:2px 3px;border-radius:3px;white-space:pre-wrap}
.unk{text-decoration:underline dotted 1.5px}
.c{display:inline-flex;flex-direction:column;vertical-align:top;margin:0 3px 7px 0;max-width:100%}
.c .w{padding:0 1px;line-height:1.3}.c i{display:block;height:6px;margin-top:1px;border-radius:1px}
.c i.x{background:repeating-linear-gradient(45deg,#fff 0 2px,#ccc 2px 4px)}
.legend{display:flex;align-items:center;gap:8px;font-size:.85em;color:#444;margin:4px 0 8px;flex-wrap:wrap}
.scale{display:inline-block;width:180px;height:12px;border-radius:2px;
  background:linear-gradient(90deg,rgb(202,0,32),rgb(247,247,247),rgb(5,113,176))}
svg{width:100%;height:auto;display:block}
svg text{font:11px system-ui,sans-serif;fill:#444}
table{border-collapse:collapse;font-size:.9em}td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:left}
"""
LINE_COLOURS = ("#222222", "#7b3294", "#1b9e77", "#d95f02", "#666666", "#e7298a")


def _esc(s) -> str:
    return html.escape(str(s), quote=True)


def _num(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _tip(word: str, exps: list[Explanation], idx: list[int | None], pos: int) -> str:
    """The numbers behind one token, for its title attribute."""
    parts = [f"token {pos}: {word}"]
    for e, j in zip(exps, idx):
        who = f"{e.run}: " if len(exps) > 1 else ""
        if j is None:
            parts.append(f"{who}not read")
            continue
        s = (f"{who}P(positive) {e.opinion[j]:.3f}, attribution {_num(e.attribution and e.attribution[j], '+.4f')}"
             f", |dL/dx| {e.grad_norm[j]:.2e}")
        if e.state_change is not None:
            s += f", |h_t - h_t-1| {e.state_change[j]:.3f}"
        if e.ids[j] == 1:
            s += " (<unk>: not in the vocabulary)"
        parts.append(s)
    return "\n".join(parts)


def _flow(exps: list[Explanation], al: Alignment, colours: list[list]) -> str:
    """Tokens in reading order; one run: each word on its colour; several: one bar per run under each word."""
    out = []
    for k, (word, idx) in enumerate(al.rows):
        tip = _esc(_tip(word, exps, idx, k + 1))
        unk = any(j is not None and e.ids[j] == 1 for e, j in zip(exps, idx))
        if len(exps) == 1:
            rgb = colours[0][idx[0]]
            style = f"background:{_hex(rgb)}" + (";color:#fff" if _dark(rgb) else "")
            out.append(f'<span class="t w{" unk" if unk else ""}" style="{style}" title="{tip}">{_esc(word)}</span>')
        else:
            bars = "".join('<i class="x"></i>' if j is None or not colours[i] else
                           f'<i style="background:{_hex(colours[i][j])}"></i>' for i, j in enumerate(idx))
            out.append(f'<span class="c" title="{tip}"><span class="w{" unk" if unk else ""}">{_esc(word)}'
                       f"</span>{bars}</span>")
    return f'<div class="flow">{" ".join(out)}</div>'


def _nice(span: float, target: int) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving about `target` ticks over `span`."""
    raw = max(span, 1e-12) / target
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)


def _svg_chart(al: Alignment, series: list[tuple[str, str, list[float | None]]], title: str, log: bool = False,
               y_range: tuple[float, float] | None = None, ref: float | None = None, shade: bool = False,
               tips: list[str] | None = None) -> str:
    """A line per series over the aligned tokens (continued across tokens a run did not read; on a log axis a
    0 is a triangle at the bottom); hovering a token's column shows `tips`."""
    W, H, L, R, T, B = 1000, 190, 52, 12, 22, 26
    n = len(al.rows)
    vals = [v for _, _, ys in series for v in ys if v is not None and (v > 0 or not log)]
    if not vals:
        return ""
    if y_range:
        lo, hi = y_range
    elif log:
        lo, hi = math.floor(math.log10(min(vals))), math.ceil(math.log10(max(vals)))
        hi = hi if hi > lo else lo + 1
    else:
        lo, hi = min(0.0, min(vals)), max(vals)
        hi = hi if hi > lo else lo + 1
    tf = (lambda v: math.log10(v)) if log else (lambda v: v)
    X = lambda k: L + (W - L - R) * (k + 0.5) / n  # noqa: E731
    Y = lambda v: T + (H - T - B) * (1 - (tf(v) - lo) / (hi - lo))  # noqa: E731
    g = [f'<svg viewBox="0 0 {W} {H}" role="img" aria-label="{_esc(title)}"><title>{_esc(title)}</title>',
         f'<text x="{L}" y="14" style="font-weight:600">{_esc(title)}</text>']
    if shade and ref is not None:
        g.append(f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{Y(ref) - T:.1f}" fill="rgb(5,113,176)" '
                 'fill-opacity=".07"/>')
        g.append(f'<rect x="{L}" y="{Y(ref):.1f}" width="{W - L - R}" height="{H - B - Y(ref):.1f}" '
                 'fill="rgb(202,0,32)" fill-opacity=".07"/>')
    g.append(f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - T - B}" fill="none" stroke="#bbb"/>')
    if log:
        step = max(1, math.ceil((hi - lo) / 6))
        ticks = [(10.0 ** e, f"1e{e}") for e in range(int(hi), int(lo) - 1, -step)]
    else:
        step = _nice(hi - lo, 4)
        lo, hi = math.floor(lo / step) * step, math.ceil(hi / step) * step  # the axis ends on ticks
        ticks = [(v, f"{v:g}") for v in np.arange(lo, hi + step / 2, step)]
    for v, lab in ticks:
        g.append(f'<text x="{L - 5}" y="{Y(v) + 4:.1f}" text-anchor="end">{lab}</text>')
        g.append(f'<line x1="{L}" x2="{W - R}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" stroke="#eee"/>')
    if ref is not None:
        g.append(f'<line x1="{L}" x2="{W - R}" y1="{Y(ref):.1f}" y2="{Y(ref):.1f}" stroke="#888" '
                 'stroke-dasharray="4 3"/>')
    step = int(_nice(n, 10)) if n > 10 else 1
    for k in [0] + list(range(step - 1, n, step)):
        g.append(f'<text x="{X(k):.1f}" y="{H - 8}" text-anchor="middle">{k + 1}</text>')
    for name, colour, ys in series:
        segs, seg = [], []
        for k, v in enumerate(ys):
            if v is None:
                continue  # a token this run did not read: the line goes on
            if log and v <= 0:
                segs.append(seg)
                seg = []
                g.append(f'<path d="M{X(k) - 3:.1f},{H - B - 6} h6 l-3,5 z" fill="{colour}" fill-opacity=".6"/>')
            else:
                seg.append(f"{X(k):.1f},{Y(v):.1f}")
        segs.append(seg)
        for sg in segs:
            if len(sg) == 1:
                x, y = sg[0].split(",")
                g.append(f'<circle cx="{x}" cy="{y}" r="2.5" fill="{colour}"/>')
            elif sg:
                g.append(f'<polyline points="{" ".join(sg)}" fill="none" stroke="{colour}" stroke-width="1.6" '
                         'stroke-linejoin="round"/>')
    if tips:
        w = (W - L - R) / n
        for k, tip in enumerate(tips):
            g.append(f'<rect x="{L + k * w:.2f}" y="{T}" width="{w:.2f}" height="{H - T - B}" fill="#000" '
                     f'fill-opacity="0"><title>{_esc(tip)}</title></rect>')
    g.append("</svg>")
    return "".join(g)


def _chart_legend(exps: list[Explanation]) -> str:
    if len(exps) == 1:
        return ""
    return '<div class="legend">' + " ".join(
        f'<span><svg width="22" height="10" style="display:inline;width:22px"><line x1="0" x2="22" y1="5" y2="5" '
        f'stroke="{LINE_COLOURS[i % len(LINE_COLOURS)]}" stroke-width="3"/></svg> {_esc(e.run)}</span>'
        for i, e in enumerate(exps)) + "</div>"


def _card(e: Explanation) -> str:
    cls = "pos" if e.label == "positive" else "neg"
    truth = ""
    if e.true_label is not None:
        ok = (e.true_label == 1) == (e.label == "positive")
        truth = f" · true label {'positive' if e.true_label else 'negative'} ({'right' if ok else 'wrong'})"
    lines = [f'<h3>{_esc(e.run)} <span class="note">({_esc(e.model)}, pool {_esc(e.pool)})</span></h3>',
             f'<p class="verdict {cls}">{e.label}: P(positive) = {e.p_positive:.4f}{_esc(truth)}</p>',
             f"<p>{_esc(e.truncation[0].upper() + e.truncation[1:]) if e.truncation else f'Read all {len(e)} tokens.'}"
             f" Running opinion: {_esc(e.reading)}.</p>"]
    if e.attribution is not None:
        pos, neg = top_words(e)
        fmt = lambda ws: ", ".join(f"<b>{_esc(w)}</b> {a:+.2f}" for w, a in ws) or "none"  # noqa: E731
        lines.append(f'<p><span class="pos">Towards positive:</span> {fmt(pos)}. '
                     f'<span class="neg">Towards negative:</span> {fmt(neg)}.</p>')
        warn = attribution_warning(e)
        lines.append(f"<p>The attributions add up to {sum(e.attribution):+.3f}; the logit moved "
                     f"{e.logit - e.baseline_logit:+.3f} from the blank review ({e.baseline_logit:+.3f} to "
                     f"{e.logit:+.3f}; convergence delta {e.attribution_delta:+.1e})."
                     + (' <span class="warn">Completeness fails: read them as rough.</span>' if warn else "") + "</p>")
    else:
        lines.append(f'<p class="warn">{_esc(e.attribution_note[0].upper() + e.attribution_note[1:])}.</p>')
    if vanished(e):
        lines.append(f"<p>The gradient is exactly 0 in float32 at {vanished(e)} of {len(e)} tokens: no learning "
                     "signal reaches them.</p>")
    return '<div class="card">' + "".join(lines) + "</div>"


def render_html(exps: list[Explanation], title: str | None = None) -> str:
    """The page: a card per run, the running opinion as lines and as coloured words, the attribution
    as coloured words, the gradient norm (log) and the state change; every number on hover."""
    al = align(exps)
    multi = len(exps) > 1
    src = next((e.source for e in exps if e.source), "")
    title = title or ("How " + ("these models read" if multi else f"{exps[0].run} reads") + " one review, word by word")
    tips = [_tip(w, exps, idx, k + 1) for k, (w, idx) in enumerate(al.rows)]
    colour = lambda i: LINE_COLOURS[i % len(LINE_COLOURS)]  # noqa: E731
    op = [(e.run, colour(i), al.values(exps, "opinion", i)) for i, e in enumerate(exps)]
    gn = [(e.run, colour(i), al.values(exps, "grad_norm", i)) for i, e in enumerate(exps)]
    dh = [(e.run, colour(i), al.values(exps, "state_change", i)) for i, e in enumerate(exps) if e.state_change]
    bars = ("" if not multi else '<p class="note">Under each word, one bar per run, top to bottom: '
            + ", ".join(_esc(e.run) for e in exps) + "; a hatched bar: that run did not read the word.</p>")
    scale = lambda left, right: (f'<div class="legend">{left} <span class="scale"></span> {right}'  # noqa: E731
                                 '<span>· dotted underline: not in the vocabulary (&lt;unk&gt;) · hover a word '
                                 'for its numbers</span></div>')
    has_attr = [e.attribution is not None for e in exps]
    body = [f"<h1>{_esc(title)}</h1>",
            f'<p class="sub">{_esc(src) + " · " if src else ""}{len(al.rows)} tokens'
            + (f" · {_esc(al.note)}" if multi else "") + "</p>",
            '<div class="cards">' + "".join(_card(e) for e in exps) + "</div>",
            "<h2>Running opinion</h2>",
            '<p class="note">P(positive) if the review ended after each token. Above the dashed line the model '
            "would say positive, below it negative.</p>",
            _chart_legend(exps),
            _svg_chart(al, op, "P(positive) after each token", y_range=(0.0, 1.0), ref=0.5, shade=True, tips=tips),
            scale("negative (0)", "(1) positive"), bars,
            _flow(exps, al, [[opinion_colour(p) for p in e.opinion] for e in exps]),
            "<h2>Which words decided it (attribution)</h2>"]
    if any(has_attr):
        ok = next(e for e in exps if e.attribution is not None)
        body += ['<p class="note">How much each word moved the final logit away from a review of the same length '
                 f"with no words: {_esc(ok.attribution_note)}. Blue pushed towards positive, red towards negative; "
                 "colours are relative to each run's strongest word. By completeness the attributions add up to "
                 "the logit's change; Captum's convergence delta is how far they miss it.</p>"]
        body += [f'<p class="warn">{_esc(e.run)}: {_esc(attribution_warning(e))}.</p>'
                 for e in exps if attribution_warning(e)]
        body += [scale("towards negative", "towards positive"), bars,
                 _flow(exps, al, [attribution_colours(e.attribution) if e.attribution is not None else []
                                  for e in exps])]
    else:
        body.append(f'<p class="warn">{_esc(exps[0].attribution_note)}.</p>')
    zeros = "; ".join(f"{_esc(e.run)}: {vanished(e)} of {len(e)}" for e in exps if vanished(e))
    body += ["<h2>Gradient reaching each word (log scale)</h2>",
             '<p class="note">||dL/dx_t||: how strongly the loss of the final answer (against the predicted '
             "label) reacts to each word's embedding. For a vanilla RNN it fades by orders of magnitude towards "
             "the start of a long review: the vanishing gradient, on one review."
             + (f" A triangle at the bottom: exactly 0 in float32, below its smallest number ({zeros} tokens)."
                if zeros else "") + "</p>",
             _chart_legend(exps), _svg_chart(al, gn, "||dL/dx_t|| at the embedding output", log=True, tips=tips)]
    if dh:
        body += ["<h2>How far each word moves the hidden state</h2>",
                 '<p class="note">||h_t - h_{t-1}|| of the top recurrent layer (h_{-1} = 0).</p>',
                 _chart_legend([e for e in exps if e.state_change]),
                 _svg_chart(al, dh, "||h_t - h_(t-1)||", tips=tips)]
    body.append('<p class="note">Made by rnnlab explain. Self-contained: nothing on this page is loaded from '
                "anywhere.</p>")
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_esc(title)}</title><style>{CSS}</style></head><body>\n" + "\n".join(body)
            + "\n</body></html>\n")


def write_html(explanations: list[Explanation], path: str | os.PathLike, title: str | None = None) -> Path:
    """Write the explanations of one review (one run or several, aligned) as one self-contained HTML page."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, render_html(explanations, title))
    return path


# --- PNG ----------------------------------------------------------------------------------------------

def write_png(explanations: list[Explanation], path: str | os.PathLike, max_labels: int = 60) -> Path:
    """A figure: the running opinion of every run; each run's attribution as bars; the gradient norm on a
    log axis (and ||h_t - h_{t-1}|| for recurrent runs). Token labels under every k-th token."""
    from .plots import plt, save_figure

    exps, path = explanations, Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    al = align(exps)
    n = len(al.rows)
    x = np.arange(n)
    with_attr = [i for i, e in enumerate(exps) if e.attribution is not None]
    recurrent = [i for i, e in enumerate(exps) if e.state_change is not None]
    heights = [2.6] + [1.5] * len(with_attr) + [2.2] + ([1.6] if recurrent else [])
    fig, axes = plt.subplots(len(heights), 1, figsize=(max(9.0, min(18.0, 6 + n / 40)), sum(heights) + 1.2),
                             sharex=True, gridspec_kw={"height_ratios": heights})
    axes = list(np.atleast_1d(axes))
    colour = lambda i: LINE_COLOURS[i % len(LINE_COLOURS)]  # noqa: E731
    def line(a, i, field, **kw):  # a run's values at the rows it read; across the others the line goes on
        v = al.values(exps, field, i)
        k = np.array([j for j, y in enumerate(v) if y is not None])
        y = np.array([y for y in v if y is not None], dtype=float)
        if field == "grad_norm":
            a.semilogy(k[y > 0], y[y > 0], color=colour(i), **kw)
            return k[y == 0]
        a.plot(k, y, color=colour(i), **kw)
        return None

    ax = axes[0]
    ax.axhspan(0.5, 1, color=_hex(POS_RGB), alpha=0.06)
    ax.axhspan(0, 0.5, color=_hex(NEG_RGB), alpha=0.06)
    ax.axhline(0.5, color="#888", lw=0.8, ls="--")
    for i, e in enumerate(exps):
        line(ax, i, "opinion", lw=1.3, label=f"{e.run} ({e.model}): {e.label} {e.p_positive:.3f}")
    ax.set_ylim(0, 1)
    ax.set_ylabel("P(positive)\nafter token")
    ax.legend(fontsize=8, loc="best")
    ax.set_title("running opinion: P(positive) had the review ended after this token"
                 + ("\n" + textwrap.fill(al.note, int(fig.get_figwidth() * 14)) if len(exps) > 1 else ""),
                 fontsize=8, loc="left")
    for a, i in zip(axes[1:], with_attr):
        e = exps[i]
        v = np.array([np.nan if y is None else y for y in al.values(exps, "attribution", i)], dtype=float)
        a.bar(x, np.nan_to_num(v), width=1.0, color=np.where(v >= 0, _hex(POS_RGB), _hex(NEG_RGB)))
        a.axhline(0, color="#888", lw=0.6)
        a.set_ylabel("attribution", fontsize=8)
        warn = " - completeness fails: rough" if attribution_warning(e) else ""
        a.set_title(f"{e.run}: Integrated Gradients of the final logit (sum {sum(e.attribution):+.3f}, "
                    f"logit - baseline {e.logit - e.baseline_logit:+.3f}, delta {e.attribution_delta:+.1e}{warn})",
                    fontsize=8, loc="left")
    a = axes[1 + len(with_attr)]
    zeros = [(i, line(a, i, "grad_norm", lw=1.1, label=e.run)) for i, e in enumerate(exps)]
    bottom = a.get_ylim()[0]
    for i, k in zeros:
        if len(k):
            a.scatter(k, np.full(len(k), bottom), marker="v", s=10, color=colour(i), alpha=0.6, clip_on=False,
                      label=f"{exps[i].run}: exactly 0 ({len(k)} tokens)")
    a.set_ylim(bottom=bottom)
    a.set_ylabel("||dL/dx_t||\n(log)")
    a.set_title("gradient of the loss at each word's embedding (triangles: exactly 0 in float32)"
                if any(len(k) for _, k in zeros) else "gradient of the loss at each word's embedding",
                fontsize=8, loc="left")
    if len(exps) > 1 or any(len(k) for _, k in zeros):
        a.legend(fontsize=7, loc="upper left")
    if recurrent:
        a = axes[-1]
        for i in recurrent:
            line(a, i, "state_change", lw=1.1, label=exps[i].run)
        a.set_ylabel("||h_t - h_t-1||")
        a.set_title("how far each word moves the hidden state", fontsize=8, loc="left")
    k = max(1, math.ceil(n / max_labels))
    axes[-1].set_xticks(x[::k])
    axes[-1].set_xticklabels([f"{al.rows[j][0][:14]} {j + 1}" for j in x[::k]], rotation=90, fontsize=7)
    axes[-1].set_xlim(-0.5, n - 0.5)
    axes[-1].set_xlabel(f"token (one in {k} labelled)" if k > 1 else "token")
    for a in axes:
        a.grid(alpha=0.25)
    src = next((e.source for e in exps if e.source), "")
    fig.suptitle(f"rnnlab explain: {src or 'one review'}, {n} tokens", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    return path


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

def _read_review(text, review, data_path, split_name, runs) -> tuple[str, str, int | None]:
    """(text, where it came from, true label or None), from --text, --review N or stdin."""
    if text is not None and review is not None:
        raise ValueError("give one review: --text or --review N, not both")
    if review is not None:
        from .data import load_imdb
        from .runs import RunDir, run_data_path

        data_path = data_path or run_data_path(RunDir(runs[0]))
        ds = load_imdb(data_path)
        split = ds.test if split_name == "test" else ds.train
        if review >= len(split):
            raise ValueError(f"--review {review}: the {split_name} split of {ds.source} has {len(split)} reviews "
                             f"(0..{len(split) - 1})")
        return split.texts[review], f"{split_name} review {review} of {ds.source}", int(split.labels[review])
    if data_path is not None:
        raise ValueError("--data is read only with --review N")
    if text is None:
        if sys.stdin is None or sys.stdin.isatty():
            raise ValueError("no review given: pass --text TEXT, --review N [--data PATH], or the review on stdin")
        text = sys.stdin.buffer.read().decode("utf-8", errors="replace")
        source = "stdin"
    else:
        source = "--text"
    if not text.strip():
        raise ValueError("empty review: give some text (--text, --review N or stdin)")
    return text, source, None


def _check_out(path: Path | None, flag: str) -> None:
    if path is None:
        return
    if path.is_dir():
        raise ValueError(f"{flag} {path}: is a directory; give a file name")
    if not path.parent.is_dir():
        raise ValueError(f"{flag} {path}: no such directory {path.parent}")


@click.command("explain")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="RUN_DIR...")
@click.option("--text", default=None, help="The review. Without --text or --review: read from stdin.")
@click.option("--review", type=click.IntRange(min=0), default=None, help="Explain review N (0-based) of --data.")
@click.option("--data", "data_path", default=None,
              help="With --review: parquet dir, aclImdb dir or tarball. Default: the first run's own data.")
@click.option("--split", "split_name", type=click.Choice(["test", "train"]), default="test", show_default=True,
              help="With --review: which split N counts in.")
@click.option("--html", "html_path", type=click.Path(path_type=Path), default=None,
              help="Write a self-contained HTML page here.")
@click.option("--png", "png_path", type=click.Path(path_type=Path), default=None, help="Write a PNG figure here.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: the alignment and one explanation per run.")
@click.option("--plain", is_flag=True, help="A plain table even on a terminal (no colours).")
@click.option("--attribution/--no-attribution", default=None,
              help="Integrated Gradients (needs Captum: pip install 'rnnlab[explain]'). Default: if installed.")
@click.option("--ig-steps", type=click.IntRange(min=1), default=IG_STEPS, show_default=True,
              help="Integration steps of Integrated Gradients.")
@click.option("--device", type=click.Choice(CHOICES["device"]), default="auto", show_default=True)
def command(run_dirs, text, review, data_path, split_name, html_path, png_path, as_json, plain, attribution,
            ig_steps, device):
    """Show how trained models read one review, word by word.

    For every token as each run reads it: the running opinion (P(positive) had the review ended
    there), its Integrated Gradients attribution, the gradient norm at its embedding and, for
    recurrent models, how far it moves the hidden state. Several RUN_DIRs are aligned token by token.

    The Transformer and the CNN are run once per prefix: a 1,000-token review through the lab's
    Transformer took about 70 s on 2 busy CPU cores (400 tokens, its cut: 7 s; a vanilla RNN: under 1 s).
    """
    from .cli import InputError  # here, not above: cli imports this module

    try:
        _check_out(html_path, "--html")
        _check_out(png_path, "--png")
        from .train import resolve_device

        dev = resolve_device(device)
        runs = [load_run(r, dev) for r in run_dirs]
        text, source, truth = _read_review(text, review, data_path, split_name, run_dirs)
        exps = explain_runs(runs, text, attribution=attribution, ig_steps=ig_steps, source=source,
                            true_label=truth)
    except ImportError as e:
        raise InputError(f"--attribution needs Captum: pip install 'rnnlab[explain]' ({e})") from None
    except (RunError, DataError, ValueError) as e:
        raise InputError(str(e)) from None
    if attribution is None and exps[0].attribution is None:
        click.echo(f"note: {NO_CAPTUM}", err=True)
    try:
        if html_path:
            write_html(exps, html_path)
            click.echo(f"wrote {html_path}", err=True)
        if png_path:
            write_png(exps, png_path)
            click.echo(f"wrote {png_path}", err=True)
    except RunError as e:
        raise InputError(str(e)) from None
    if as_json:
        al = align(exps)
        click.echo(json.dumps({"source": source, "alignment": {"note": al.note, "rows": [
            {"word": w, "index": idx} for w, idx in al.rows]}, "runs": [e.to_dict() for e in exps]}))
        return
    colour = not plain and sys.stdout.isatty() and os.environ.get("NO_COLOR") is None
    click.echo(render_terminal(exps, colour), nl=False)
