"""Reviews too long for the memory available: evaluation's batches bounded in padded tokens, and a review that
cannot fit refused in one line before it is read (Linux would grant the memory, then kill the process unannounced).

Measured on the 2-core, 24 GB Zen 4 VM (session 44): the first two rows by `benchmarks/long_reviews.py`, the third
by hand (`rnnlab explain` and `rnnlab train` under /usr/bin/time):

| input                                                           | before                        | now                 |
|-----------------------------------------------------------------|-------------------------------|---------------------|
| `evaluate`, a 1.2 MB CSV: 100 reviews of 300 tokens and one of 200,000 (vanilla RNN on whole reviews) | 13.7 GB, 55 s: 36 reviews padded to 200,000 | 0.6 GB, 2.7 s |
| `predict`, one review of 15,000,000 tokens (vanilla RNN)        | ~2 KB a token: more than 24 GB | one line, exit 2, 7.3 s |
| `explain` (LSTM) or `train --max-len 0`, a review of 4,000,000 tokens | ~6 KB a token: 24 GB    | one line, exit 2, 4 s |
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import rnnlab.memory as memory_mod
from rnnlab.batching import Encoded, sorted_batches
from rnnlab.cli import main
from rnnlab.config import MODEL_KINDS
from rnnlab.scoring import EVAL_BATCH, EVAL_TOKENS, predict_proba

SMALL = ["--preset", "default", "--epochs", "1", "--embed-dim", "16", "--hidden-dim", "16", "--vocab-size", "60",
         "--batch-size", "16", "--max-len", "0"]


def test_evaluation_batches_hold_at_most_max_tokens_padded_and_imdbs_stay_as_they_were():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 2526, 5000)  # IMDB's reviews: 1-2,525 tokens
    plain = sorted_batches(lengths, EVAL_BATCH)
    assert all((a == b).all() for a, b in zip(sorted_batches(lengths, EVAL_BATCH, EVAL_TOKENS), plain, strict=True))
    lengths = np.concatenate([rng.integers(1, 400, 300), [200_000, 50_000, 9_000, 5_000]])
    batches = sorted_batches(lengths, EVAL_BATCH, EVAL_TOKENS)
    assert np.array_equal(np.concatenate(batches), np.argsort(lengths, kind="stable"))  # each once, sorted
    for b in batches:
        assert len(b) <= EVAL_BATCH and (len(b) * lengths[b].max() <= EVAL_TOKENS or len(b) == 1)
    # the last 44 short ones with the 5,000 (45 x 5,000 fit in 262,144 tokens), the 9,000 with the 50,000, then alone
    assert [len(b) for b in batches[-4:]] == [64, 45, 2, 1]


def test_a_long_review_among_short_ones_is_scored_as_when_alone(monkeypatch):
    """The batches change with the budget, not the answers: every P(positive) as the review gets alone."""
    from rnnlab.models import RecurrentClassifier

    torch.manual_seed(0)
    model = RecurrentClassifier("lstm", 50, 8, 8).eval()
    rng = np.random.default_rng(1)
    seqs = [list(rng.integers(2, 50, n)) for n in [*rng.integers(1, 60, 40), 9_000]]
    enc = Encoded.from_lists(seqs, np.zeros(len(seqs)))
    shapes = []
    model.register_forward_hook(lambda mod, inp, out: shapes.append(tuple(inp[0].shape)))
    monkeypatch.setattr("rnnlab.scoring.EVAL_TOKENS", 64 * 100)
    together = predict_proba(model, enc)
    assert max(b * t for b, t in shapes if b > 1) <= 64 * 100 and (1, 9_000) in shapes
    alone = np.array([predict_proba(model, enc.subset(np.array([i])))[0] for i in range(len(seqs))])
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-6)


_PEAK = """
import dataclasses, json, resource, sys, torch
from rnnlab.config import preset
from rnnlab.memory import GRADIENTS, token_bytes
from rnnlab.models import build_model
kind, B, T = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cfg = dataclasses.replace(preset("lstm"), model=kind, pool="last" if kind in ("rnn", "lstm", "gru") else "max")
model = build_model(cfg, 20000).eval().requires_grad_(False)
tokens, lengths = torch.randint(2, 20000, (B, T)), torch.full((B,), T)
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
base = peak()
with torch.no_grad():
    model(tokens, lengths)
forward = peak() - base
x = model.embedding(tokens).requires_grad_()
model.embedding.register_forward_hook(lambda mod, inp, out: x)
torch.autograd.grad(model(tokens, lengths).sum(), x)
print(json.dumps({"forward": forward, "gradients": peak() - base, "bound": B * T * token_bytes(model),
                  "grad_bound": B * T * GRADIENTS * token_bytes(model)}))
"""


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_token_bytes_bounds_what_a_forward_and_a_backward_take(kind):
    """Measured, not assumed: peak resident memory of a pass over 200,000 tokens (the Transformer 20,000: its
    attention's time grows with T^2) against the bound, with and without a backward to the embeddings."""
    B, T = (1, 20_000) if kind == "transformer" else (4, 50_000)
    r = subprocess.run([sys.executable, "-c", _PEAK, kind, str(B), str(T)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads(r.stdout)
    assert 0 < m["forward"] <= m["bound"] and m["gradients"] <= m["grad_bound"], m


def test_a_need_is_checked_against_the_memory_available_only_from_64_mb(monkeypatch):
    monkeypatch.setattr(memory_mod, "memory_available", lambda: 1 << 20)
    memory_mod.require(memory_mod.CHECK_FROM - 1, "reading it")  # not checked
    with pytest.raises(memory_mod.TooLong, match=r"^reading it needs about 64 MB and 1 MB is available; give shorter"):
        memory_mod.require(memory_mod.CHECK_FROM, "reading it")
    monkeypatch.setattr(memory_mod, "memory_available", lambda: None)  # unknown (not Linux): not refused
    memory_mod.require(1 << 50, "reading it")


@pytest.fixture(scope="module")
def whole_review_run(tmp_path_factory, tiny_data):
    out = tmp_path_factory.mktemp("memory") / "run"
    res = CliRunner().invoke(main, ["train", "--data", str(tiny_data), "--out", str(out), "--model", "lstm", *SMALL])
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture
def little_memory(monkeypatch):
    """1 MB available, and every need checked."""
    monkeypatch.setattr(memory_mod, "memory_available", lambda: 1 << 20)
    monkeypatch.setattr(memory_mod, "CHECK_FROM", 0)


def _refused(res, *parts):
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    line = res.output.strip().splitlines()[-1]
    assert line.startswith("Error: ") and all(p in line for p in parts), line


def test_predict_evaluate_and_explain_refuse_a_review_that_cannot_fit_in_one_line(whole_review_run, tmp_path,
                                                                                   little_memory):
    review = " ".join(["great film"] * 2_000)  # 4,000 tokens: 4,000 x 384 bytes = 1.5 MB needed
    _refused(CliRunner().invoke(main, ["predict", str(whole_review_run), "fine", review]),
             "review number 2 has 4,000 tokens: reading it needs about 3 MB and 1 MB is available; "
             "give shorter reviews, or use a run trained with a --max-len")
    csv = tmp_path / "r.csv"
    csv.write_text(f"text,label\nfine,1\n{review},0\n")
    _refused(CliRunner().invoke(main, ["evaluate", str(whole_review_run), "--data", str(csv)]),
             "review number 2 has 4,000 tokens: reading it")
    page = tmp_path / "e.html"
    _refused(CliRunner().invoke(main, ["explain", str(whole_review_run), review, "--html", str(page)]),
             "the review has 4,000 tokens: explaining it needs about")
    assert not page.exists()


def test_train_refuses_data_whose_longest_review_cannot_fit_and_leaves_no_run(tmp_path, tiny_splits, little_memory):
    from conftest import write_parquet_dir

    (texts, labels), test = tiny_splits
    data = write_parquet_dir(tmp_path / "data", ([*texts, " ".join(["dull"] * 4_000)], [*labels, 0]), test)
    res = CliRunner().invoke(main, ["train", "--data", str(data), "--out", str(tmp_path / "r"), *SMALL,
                                    "--val-fraction", "0"])
    _refused(res, "the longest training review has 4,00", "tokens: training on it needs about", "use a --max-len")
    assert not (tmp_path / "r").exists()
