"""Reviews too long for the memory available: evaluation's batches bounded in padded tokens, and a review that
cannot fit refused in one line before it is read (Linux would grant the memory, then kill the process unannounced).

Measured on the 2-core, 24 GB Zen 4 VM (session 44): the first two rows by `benchmarks/long_reviews.py`, the third
by hand (`rnnlab explain` and `rnnlab train` under /usr/bin/time):

| input                                                           | before                        | now                 |
|-----------------------------------------------------------------|-------------------------------|---------------------|
| `evaluate`, a 1.2 MB CSV: 100 reviews of 300 tokens and one of 200,000 (vanilla RNN on whole reviews) | 13.7 GB, 45 s: 36 reviews padded to 200,000 | 0.6 GB, 2.6 s |
| `predict`, one review of 15,000,000 tokens (vanilla RNN)        | ~2 KB a token: more than 24 GB | one line, exit 2   |
| `explain` (LSTM) or `train --max-len 0`, a review of 4,000,000 tokens | ~6 KB a token: 24 GB    | one line, exit 2, 4 s |

Where memory is short but each review fits, evaluation runs smaller batches and explain fewer of Integrated
Gradients' points at once, instead of refusing.
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
    model, enc = _lstm_and_reviews()
    shapes = []
    model.register_forward_hook(lambda mod, inp, out: shapes.append(tuple(inp[0].shape)))
    monkeypatch.setattr("rnnlab.scoring.EVAL_TOKENS", 64 * 100)
    together = predict_proba(model, enc)
    assert max(b * t for b, t in shapes if b > 1) <= 64 * 100 and (1, 9_000) in shapes
    alone = np.array([predict_proba(model, enc.subset(np.array([i])))[0] for i in range(len(enc))])
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-6)


def _lstm_and_reviews():
    from rnnlab.models import RecurrentClassifier

    torch.manual_seed(0)
    model = RecurrentClassifier("lstm", 50, 8, 8).eval()
    rng = np.random.default_rng(1)
    seqs = [list(rng.integers(2, 50, n)) for n in [*rng.integers(1, 60, 40), 9_000]]
    return model, Encoded.from_lists(seqs, np.zeros(len(seqs)))


def test_where_memory_is_short_evaluation_halves_its_batches_and_refuses_only_a_review_that_cannot_fit_alone(
        monkeypatch):
    """Read once, before any batch: the answers of smaller batches, the same to float rounding."""
    model, enc = _lstm_and_reviews()
    free = predict_proba(model, enc)
    per = memory_mod.token_bytes(model)
    batches = sorted_batches(enc.lengths, 64)  # 40 short reviews, then the long one with 23 of them
    monkeypatch.setattr(memory_mod, "CHECK_FROM", 0)
    reads = []
    room = memory_mod.WORKSPACE
    monkeypatch.setattr(memory_mod, "memory_available", lambda: reads.append(1) or 9_000 * per + room)
    fit = memory_mod.fitting(batches, enc.lengths, per)
    assert len(reads) == 1 and np.array_equal(np.concatenate(fit), np.concatenate(batches))  # the same order
    assert all(len(b) * enc.lengths[b].max() <= 9_000 for b in fit) and fit[-1].tolist() == [40]
    shapes = []
    model.register_forward_hook(lambda mod, inp, out: shapes.append(tuple(inp[0].shape)))
    np.testing.assert_allclose(predict_proba(model, enc), free, rtol=0, atol=1e-6)
    assert (1, 9_000) in shapes
    shapes.clear()
    monkeypatch.setattr(memory_mod, "memory_available", lambda: 8_999 * per + room)
    with pytest.raises(memory_mod.TooLong, match=r"^review number 41 has 9,000 tokens: reading it needs about"):
        predict_proba(model, enc)
    assert shapes == []  # refused before any batch was read


_PEAK = """
import dataclasses, json, resource, sys, torch
import torch.nn.functional as F
from rnnlab.config import preset
from rnnlab.memory import token_bytes
from rnnlab.models import build_model
kind, E, H, layers, B, T, mode, dropout = sys.argv[1], *map(int, sys.argv[2:7]), sys.argv[7], float(sys.argv[8])
cfg = dataclasses.replace(preset("lstm"), model=kind, embed_dim=E, hidden_dim=H, layers=layers, dropout=dropout,
                          pool="last" if kind in ("rnn", "lstm", "gru") else "max")
model = build_model(cfg, 20000)
def peak():  # this process's high-water mark (getrusage's ru_maxrss would start from pytest's size at the fork)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
with open("/proc/self/statm") as f:
    base = int(f.read().split()[1]) * resource.getpagesize()  # resident now, before the tokens (the bound counts them)
tokens, lengths = torch.randint(2, 20000, (B, T)), torch.full((B,), T)
out = {"bound": B * T * token_bytes(model), "grad_bound": B * T * token_bytes(model, backward=True)}
if mode == "train":  # as train steps: weights learning, the BCE's backward
    F.binary_cross_entropy_with_logits(model.train()(tokens, lengths), torch.ones(B)).backward()
    out["gradients"] = peak() - base
else:  # as predict, then as explain: weights frozen, a backward to the embeddings' output
    model.eval().requires_grad_(False)
    with torch.no_grad():
        model(tokens, lengths)
    out["forward"] = peak() - base
    x = model.embedding(tokens).requires_grad_()
    model.embedding.register_forward_hook(lambda mod, inp, out: x)
    torch.autograd.grad(model(tokens, lengths).sum(), x)
    out["gradients"] = peak() - base
print(json.dumps(out))
"""
SIZES = [  # kind, embed_dim, hidden_dim, layers, B, T, mode, dropout: sizes where each term of the bound dominates
    ("rnn", 100, 128, 1, 4, 50_000, "read", 0), ("rnn", 8, 512, 1, 1, 50_000, "read", 0),
    ("rnn", 8, 512, 1, 1, 50_000, "train", 0), ("lstm", 100, 128, 1, 4, 50_000, "read", 0),
    ("lstm", 8, 512, 1, 1, 50_000, "train", 0), ("lstm", 512, 8, 1, 1, 150_000, "read", 0),
    ("lstm", 512, 16, 1, 16, 5_000, "train", 0), ("gru", 8, 512, 3, 16, 3_000, "read", 0),
    ("gru", 8, 512, 1, 1, 50_000, "train", 0), ("gru", 512, 8, 1, 16, 8_000, "train", 0.5),
    ("bow", 300, 16, 1, 4, 50_000, "read", 0), ("cnn", 512, 8, 1, 16, 10_000, "read", 0),
    ("cnn", 100, 128, 1, 4, 50_000, "train", 0), ("transformer", 64, 64, 2, 1, 20_000, "read", 0),
    ("transformer", 64, 64, 2, 1, 20_000, "train", 0), ("transformer", 8, 512, 1, 1, 15_000, "read", 0),
]


@pytest.mark.parametrize("size", SIZES, ids=["-".join(map(str, s)) for s in SIZES])
def test_token_bytes_bounds_what_a_pass_takes(size):
    """Measured, not assumed: the peak resident memory of a pass (the Transformer's over 20,000 tokens: its
    attention's time grows with T^2) against the bound, without and with a backward, each check's WORKSPACE added."""
    r = subprocess.run([sys.executable, "-c", _PEAK, *map(str, size)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads(r.stdout)
    room = memory_mod.WORKSPACE
    assert m.get("forward", 1) <= m["bound"] + room and m["gradients"] <= m["grad_bound"] + room, m
    assert m["gradients"] > m["grad_bound"] / 8 and m.get("forward", m["bound"]) > m["bound"] / 8, m  # it ran


def test_a_need_is_checked_against_the_memory_available_only_from_64_mb(monkeypatch):
    monkeypatch.setattr(memory_mod, "memory_available", lambda: 1 << 20)
    memory_mod.require(memory_mod.CHECK_FROM - 1, "reading it")  # not checked
    with pytest.raises(memory_mod.TooLong, match=r"^reading it needs about 128 MB and 1.0 MB is available; give "):
        memory_mod.require(memory_mod.CHECK_FROM, "reading it")
    assert memory_mod.most(10, memory_mod.CHECK_FROM // 10 - 1) == 10  # not checked either
    assert memory_mod.most(10, memory_mod.CHECK_FROM) == 1  # at least one: whether it fits is require's to say
    monkeypatch.setattr(memory_mod, "memory_available", lambda: 300 << 20)
    assert memory_mod.most(10, 100 << 20) == 2  # 300 MB less WORKSPACE
    monkeypatch.setattr(memory_mod, "memory_available", lambda: None)  # unknown (not Linux): not refused
    memory_mod.require(1 << 50, "reading it")
    assert memory_mod.most(10, 1 << 50) == 10


@pytest.fixture(scope="module")
def whole_review_run(tmp_path_factory, tiny_data):
    out = tmp_path_factory.mktemp("memory") / "run"
    res = CliRunner().invoke(main, ["train", "--data", str(tiny_data), "--out", str(out), "--model", "lstm", *SMALL])
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture
def available(monkeypatch):
    """Set the memory available; every need checked."""
    monkeypatch.setattr(memory_mod, "CHECK_FROM", 0)
    return lambda n: monkeypatch.setattr(memory_mod, "memory_available", lambda: n)


def _refused(res, *parts):
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    line = res.output.strip().splitlines()[-1]
    assert line.startswith("Error: ") and all(p in line for p in parts), line


def test_predict_and_evaluate_refuse_only_a_review_that_cannot_fit_alone(whole_review_run, tmp_path, available,
                                                                          monkeypatch):
    from rnnlab.explain import load_run

    review = " ".join(["great film"] * 2_000)  # 4,000 tokens
    alone = 4_000 * memory_mod.token_bytes(load_run(whole_review_run).model)
    run = str(whole_review_run)
    available(alone * 3 // 2 + memory_mod.WORKSPACE)  # two of them do not fit together: read one at a time
    real, batches = memory_mod.fitting, []
    monkeypatch.setattr("rnnlab.scoring.fitting", lambda *a: batches.extend(real(*a)) or batches)
    res = CliRunner().invoke(main, ["predict", run, "fine", review, review])
    assert res.exit_code == 0 and len(res.output.strip().splitlines()) == 3, res.output
    assert [b.tolist() for b in batches] == [[0], [1], [2]]  # halved, then halved again
    alone += memory_mod.WORKSPACE
    available(alone - 1)
    _refused(CliRunner().invoke(main, ["predict", run, "fine", review]),
             f"review number 2 has 4,000 tokens: reading it needs about {memory_mod.size(alone)} and "
             f"{memory_mod.size(alone - 1)} is available; give shorter reviews, or use a run trained with a --max-len")
    csv = tmp_path / "r.csv"
    csv.write_text(f"text,label\nfine,1\n{review},0\n")
    _refused(CliRunner().invoke(main, ["evaluate", run, "--data", str(csv)]), "review number 2 has 4,000 tokens")


def test_explain_takes_fewer_points_of_the_path_at_once_where_memory_is_short_and_refuses_one_that_cannot_fit(
        whole_review_run, tmp_path, available):
    from rnnlab.explain import explain, load_run

    review = " ".join(["great film"] * 2_000)
    run = load_run(whole_review_run)
    each = 4_000 * memory_mod.token_bytes(run.model, backward=True)  # a backward through the review
    free = explain(run, review)
    batches = []
    real = run.model.forward
    run.model.forward = lambda tokens, lengths: batches.append(tokens.shape[0]) or real(tokens, lengths)
    available(3 * each + each // 2 + memory_mod.WORKSPACE)
    short = explain(run, review)
    assert max(batches) == 3  # 3 of the path's 50 points a pass instead of 50
    np.testing.assert_allclose(short.attribution, free.attribution, rtol=0, atol=1e-6)
    assert short.opinion == free.opinion and short.grad_norm == free.grad_norm
    each += memory_mod.WORKSPACE
    available(each - 1)
    page = tmp_path / "e.html"
    _refused(CliRunner().invoke(main, ["explain", str(whole_review_run), review, "--html", str(page)]),
             f"the review has 4,000 tokens: explaining it needs about {memory_mod.size(each)} and "
             f"{memory_mod.size(each - 1)} is available; give a shorter review, or use a run trained with a --max-len")
    assert not page.exists()


def test_explain_refuses_before_any_runs_work_and_before_its_long_wait_note(whole_review_run, tmp_path_factory,
                                                                            tiny_data, available, monkeypatch):
    """A run that cannot explain the review is refused before the runs listed before it explain anything, and
    without the Transformer's note announcing a long wait first."""
    import rnnlab.explain as E

    tf = tmp_path_factory.mktemp("memory") / "tf"
    res = CliRunner().invoke(main, ["train", "--data", str(tiny_data), "--out", str(tf), "--model", "transformer",
                                    *SMALL, "--pool", "mean"])
    assert res.exit_code == 0, res.output
    review = " ".join(["great film"] * 300)  # 600 tokens
    monkeypatch.setattr(E, "PER_PREFIX_NOTE_TOKENS", 10)
    need = 64 * 600 * memory_mod.token_bytes(E.load_run(tf).model) + memory_mod.WORKSPACE  # 64 prefixes a pass
    lstm_need = 600 * memory_mod.token_bytes(E.load_run(whole_review_run).model, backward=True)
    assert lstm_need + memory_mod.WORKSPACE < need - 1
    calls = []
    real = E.explain
    monkeypatch.setattr(E, "explain", lambda *a, **k: calls.append(a[0].name) or real(*a, **k))
    available(need - 1)
    res = CliRunner().invoke(main, ["explain", str(whole_review_run), str(tf), review, "--no-attribution"])
    _refused(res, f"the review has 600 tokens: explaining it needs about {memory_mod.size(need)}")
    assert calls == [] and "prefixes anew" not in res.output
    available(need)
    res = CliRunner().invoke(main, ["explain", str(whole_review_run), str(tf), review, "--no-attribution"])
    assert res.exit_code == 0 and calls == ["run", "tf"] and "note: tf (transformer) reads each" in res.stderr


def test_train_refuses_data_whose_longest_reviews_cannot_fit_a_batch_and_leaves_no_run(tmp_path, tiny_splits,
                                                                                        available):
    from conftest import write_parquet_dir

    (texts, labels), test = tiny_splits
    data = write_parquet_dir(tmp_path / "data", ([*texts, " ".join(["dull"] * 4_000)], [*labels, 0]), test)
    from rnnlab.models import RecurrentClassifier

    need = 4_000 * memory_mod.token_bytes(RecurrentClassifier("lstm", 60, 16, 16), backward=True)  # with gradients
    need += memory_mod.WORKSPACE
    available(need - 1)
    res = CliRunner().invoke(main, ["train", "--data", str(data), "--out", str(tmp_path / "r"), *SMALL,
                                    "--model", "lstm", "--val-fraction", "0", "--batch-size", "1"])
    _refused(res, f"training on the longest reviews (1 x 4,000 tokens a batch) needs about {memory_mod.size(need)} "
                  f"and {memory_mod.size(need - 1)} is available; use a --max-len or a smaller --batch-size")
    assert not (tmp_path / "r").exists()
    res = CliRunner().invoke(main, ["train", "--data", str(data), "--out", str(tmp_path / "r"), *SMALL,
                                    "--model", "lstm", "--val-fraction", "0", "--batch-size", "1", "--max-len", "100"])
    assert res.exit_code == 0, res.output


def test_most_checks_the_whole_need_of_its_parts_not_each_part(monkeypatch):
    """50 points of 12 MB each are 600 MB: checked though each part is under CHECK_FROM."""
    monkeypatch.setattr(memory_mod, "memory_available", lambda: 1 << 20)
    assert memory_mod.most(10, memory_mod.CHECK_FROM // 10 + 1) == 1


def test_fitting_checks_all_batches_where_one_large_batch_stands_among_small_ones(monkeypatch):
    """With the real CHECK_FROM: a short review's batch below it does not switch the check off for the others."""
    monkeypatch.setattr(memory_mod, "memory_available", lambda: 200 << 20)
    lengths = np.array([10, 10, 1_000_000])
    out = memory_mod.fitting([np.array([0]), np.array([1, 2])], lengths, 80 * 2**20 // 1_000_000 + 1)
    assert [b.tolist() for b in out] == [[0], [1], [2]]


def test_the_hosts_memory_available_caps_a_larger_cgroup_limit(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemAvailable:    1000000 kB\nSwapFree:         0 kB\n")
    (tmp_path / "memory.max").write_text(f"{8 << 30}\n")
    (tmp_path / "memory.current").write_text(f"{1 << 30}\n")
    (tmp_path / "memory.stat").write_text("inactive_file 0\n")
    assert memory_mod.memory_available(str(meminfo), str(tmp_path)) == 1_000_000 * 1024


def test_integrated_gradients_points_a_batch_count_a_transformers_attention():
    from rnnlab.explain import ig_points
    from rnnlab.models import RecurrentClassifier, TransformerClassifier

    assert ig_points(TransformerClassifier(60, 16, 16), 1000, 200) == 4  # T^2 attention scores a point
    assert ig_points(RecurrentClassifier("lstm", 60, 8, 8), 9000, 50) == 44  # T tokens a point
    assert ig_points(RecurrentClassifier("lstm", 60, 8, 8), 10, 50) == 50  # never more than the steps


def test_sizes_in_messages_are_binary_units():
    assert memory_mod.size(2**30) == "1.0 GB" and memory_mod.size(1_500_000_000) == "1.4 GB"
    assert memory_mod.size(67 << 20) == "67 MB" and memory_mod.size(3 << 19) == "1.5 MB"


def test_two_reviews_each_at_most_max_tokens_but_over_it_together_are_two_batches():
    assert [b.tolist() for b in sorted_batches(np.array([200_000, 200_000]), 64, EVAL_TOKENS)] == [[0], [1]]


def test_train_counts_a_batch_of_at_most_its_training_reviews(tmp_path, available):
    """3 training reviews and --batch-size 64: a batch holds 3 of them, not 64."""
    from conftest import make_reviews, write_parquet_dir
    from rnnlab.models import RecurrentClassifier

    texts, labels = make_reviews(2, seed=3)
    data = write_parquet_dir(tmp_path / "data", ([*texts, " ".join(["dull"] * 4_000)], [*labels, 0]),
                             make_reviews(4, seed=4))
    per = memory_mod.token_bytes(RecurrentClassifier("lstm", 60, 16, 16), backward=True)
    available(3 * 4_000 * per + memory_mod.WORKSPACE - 1)
    cmd = ["train", "--data", str(data), "--out", str(tmp_path / "r"), *SMALL, "--model", "lstm", "--val-fraction",
           "0", "--batch-size", "64"]
    _refused(CliRunner().invoke(main, cmd), "training on the longest reviews (3 x 4,000 tokens a batch)")
    available(3 * 4_000 * per + memory_mod.WORKSPACE)
    res = CliRunner().invoke(main, cmd)
    assert res.exit_code == 0, res.output


def test_train_refuses_up_front_a_test_review_longer_than_it_can_score(tmp_path, tiny_splits, available):
    """The test split's longest review, longer than every training review, is checked before the first step (it
    would fail after every epoch had trained); no run is left."""
    from conftest import write_parquet_dir
    from rnnlab.models import RecurrentClassifier

    train, (texts, labels) = tiny_splits
    data = write_parquet_dir(tmp_path / "data", train, ([*texts, " ".join(["dull"] * 40_000)], [*labels, 0]))
    need = 40_000 * memory_mod.token_bytes(RecurrentClassifier("lstm", 60, 16, 16)) + memory_mod.WORKSPACE
    available(need - 1)
    res = CliRunner().invoke(main, ["train", "--data", str(data), "--out", str(tmp_path / "r"), *SMALL,
                                    "--model", "lstm"])
    _refused(res, f"a review to score has 40,000 tokens: reading it needs about {memory_mod.size(need)}",
             "use a --max-len")
    assert not (tmp_path / "r").exists()


def test_a_resumed_run_whose_reviews_no_longer_fit_is_told_it_cannot_be_resumed_here(tmp_path, tiny_splits,
                                                                                      available):
    from conftest import write_parquet_dir

    (texts, labels), test = tiny_splits
    data = write_parquet_dir(tmp_path / "data", ([*texts, " ".join(["dull"] * 4_000)], [*labels, 0]), test)
    cmd = ["train", "--data", str(data), "--out", str(tmp_path / "r"), *SMALL, "--model", "lstm", "--val-fraction",
           "0", "--batch-size", "1"]
    assert CliRunner().invoke(main, cmd).exit_code == 0
    available(1 << 20)
    res = CliRunner().invoke(main, ["train", "--resume", str(tmp_path / "r"), "--epochs", "2"])
    _refused(res, "training on the longest reviews (1 x 4,000 tokens a batch) needs about")
    last = res.output.strip().splitlines()[-1]
    assert last.endswith("this run cannot be resumed here; free memory, or resume it on a machine with more")
    assert "--resume" not in last and "--max-len" not in last


@pytest.mark.parametrize("error,oom", [
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
    (MemoryError(), True),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried to "
                  "allocate 40000000000 bytes"), True),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough memory: you tried to "
                  "allocate 40000000000 bytes"), True),
    (RuntimeError("CUDA error: an illegal memory access was encountered"), False),
    (RuntimeError("shared memory segment could not be mapped"), False),
    (RuntimeError("some other failure"), False)])
def test_one_reading_of_out_of_memory_for_training_scoring_and_the_commands(error, oom):
    """train and scoring called any RuntimeError naming "memory" out of memory (a CUDA illegal access became "use a
    smaller --batch-size"), the commands only two phrases (the CPU allocator's "not enough memory" was a traceback
    there): a reviewer's reading. One predicate now, for all three."""
    import rnnlab.cli as cli
    import rnnlab.train as train

    assert memory_mod.is_out_of_memory(error) is oom
    assert train.is_out_of_memory is cli.is_out_of_memory is memory_mod.is_out_of_memory
