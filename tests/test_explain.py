"""`rnnlab explain` against references: the running opinion against one forward pass per prefix, its last
value against `predict`, Integrated Gradients' completeness, the gradient norm against the explicit loop,
runs aligned by token, the HTML page in headless Chromium (every token there, nothing loaded from
anywhere), the PNG, bad input, and the reviews `pick_reviews` chooses. Tiny runs on synthetic data.

    pytest tests/test_explain.py                          # needs chromium (RNNLAB_NO_BROWSER=1: skip that test)
    RNNLAB_ARTIFACTS=out pytest tests/test_explain.py     # keeps the screenshot in out/
"""
from __future__ import annotations

import contextlib
import dataclasses

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import rnnlab.memory as memory_mod
from rnnlab.cli import main
from rnnlab.config import preset, with_overrides
from rnnlab.data import load_imdb
from rnnlab.io import save_tensors
from rnnlab.explain import Explanation, Run, align, decided_at, explain, explain_runs, load_run, pick_reviews
from rnnlab.runs import torch_threads
from rnnlab.explain_views import header_lines, render_html, render_terminal, write_html, write_png
from rnnlab.prepare import prepare
from rnnlab.runs import RunDir
from rnnlab.scoring import predict_texts
from rnnlab.train import set_seed, train

from conftest import make_reviews, write_parquet_dir

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = dict(embed_dim=8, hidden_dim=8, vocab_size=50, epochs=1, device="cpu", val_fraction=0.0,
            test_every_epoch=False)
KINDS = {  # name -> overrides of the seed preset
    "rnn": {}, "lstm": {"model": "lstm"}, "gru": {"model": "gru"}, "bow": {"model": "bow", "pool": "mean"},
    "transformer": {"model": "transformer", "pool": "mean"}, "cnn": {"model": "cnn", "pool": "max"},
    "rnn-mean": {"pool": "mean"}, "rnn-tail": {"max_len": 12, "truncate": "tail"},
    "rnn-head": {"max_len": 12, "truncate": "head"}, "rnn-strip": {"strip_html": True},
    "rnn-strip-tail": {"strip_html": True, "max_len": 12, "truncate": "tail"},
}
REVIEW = "The film was <br /><br />great, the zzyzx plot dull but the ending was really wonderful and superb."


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_parquet_dir(tmp_path_factory.mktemp("explain") / "imdb", make_reviews(240, seed=1),
                             make_reviews(120, seed=2))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data) -> dict[str, Path]:
    """One tiny saved run per model kind (and a few cuts), trained one epoch: config, vocabulary, weights."""
    root = tmp_path_factory.mktemp("explain-runs")
    ds = load_imdb(data)
    out = {}
    with pytest.MonkeyPatch.context() as mp, torch_threads(1):  # tiny models: a second thread only waits
        mp.setenv("RNNLAB_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        for name, over in KINDS.items():
            cfg = with_overrides(preset("seed"), {**TINY, **over})
            set_seed(0)
            prepared = prepare(cfg, ds)
            trained = train(cfg, prepared, None, log=lambda s: None, progress=False)
            RunDir.create(root / name, cfg, prepared.vocab, ds)  # what load_model reads, without the
            save_tensors(root / name / "model.safetensors", trained.model.state_dict())  # per-epoch plots
            out[name] = root / name
    return out


@pytest.fixture(autouse=True)
def _one_thread():
    with torch_threads(1):  # tiny models on a shared machine: a second thread only waits
        yield


def _slow_reference(run: Run, text: str) -> np.ndarray:
    """P(positive) of the review cut after each token: one forward pass per prefix."""
    from rnnlab.scoring import encode_texts

    enc, _ = encode_texts(run.vocab, [text], None, run.cfg.max_len, run.cfg.truncate)
    tokens, lengths, _ = enc.collate(np.array([0]))
    with torch.no_grad():
        return np.array([torch.sigmoid(run.model(tokens[:, :t + 1], torch.tensor([t + 1]))).item()
                         for t in range(int(lengths[0]))])


# --- the numbers ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru", "bow", "transformer", "cnn", "rnn-mean", "rnn-tail"])
def test_running_opinion_is_the_model_on_each_prefix(runs, kind):
    run = load_run(runs[kind])
    (e,) = explain_runs([run], REVIEW, attribution=False)
    ref = _slow_reference(run, REVIEW)
    assert len(e.opinion) == len(ref) == len(e.words) == len(e.grad_norm)
    np.testing.assert_allclose(e.opinion, ref, atol=2e-6, rtol=0)
    # the last value is what `rnnlab predict` prints, exactly
    p = float(predict_texts(run.cfg, run.vocab, run.model, [REVIEW])[0])
    assert e.opinion[-1] == p == e.p_positive
    assert float(torch.sigmoid(torch.tensor(e.logit, dtype=torch.float32))) == p  # and the logit behind it
    assert e.label == ("positive" if p > 0.5 else "negative")
    assert (e.state_change is not None) == (kind.startswith(("rnn", "lstm", "gru")))


def test_a_running_opinion_whose_last_step_is_not_the_models_answer_is_an_error(runs, monkeypatch):
    """explain shows predict's probability as the last opinion; a forward_steps that disagrees with it (here the
    last step's logit off by 0.01) is a bug in the model's code, and explain says so instead of hiding it."""
    run = load_run(runs["rnn"])
    real = run.model.read_steps

    def off_at_the_end(out, lengths):
        logits, steps = real(out, lengths)
        return logits, torch.cat([steps[:, :-1], steps[:, -1:] + 0.01], 1)

    monkeypatch.setattr(run.model, "read_steps", off_at_the_end)
    with pytest.raises(RuntimeError, match="is not the model's answer"):
        explain_runs([run], "great fun", attribution=False)


def test_reading_says_what_the_opinion_is(runs):
    exps = explain_runs([runs[k] for k in ("rnn", "rnn-mean", "bow", "transformer")], REVIEW, attribution=False)
    assert "hidden state after this token" in exps[0].reading
    assert "pooled prefix" in exps[1].reading and "pooled prefix" in exps[2].reading
    assert "prefix ending here" in exps[3].reading and "prefix ending here" in exps[2].reading


@pytest.mark.parametrize("kind", ["rnn", "lstm", "transformer"])
def test_attribution_is_complete(runs, kind):
    """Integrated Gradients: the attributions add up to f(x) - f(baseline), up to the convergence delta."""
    pytest.importorskip("captum")
    run = load_run(runs[kind])
    (e,) = explain_runs([run], REVIEW, ig_steps=64)
    gap = e.logit - e.baseline_logit
    assert abs(sum(e.attribution) - gap) <= 1e-3 + 1e-2 * abs(gap), (sum(e.attribution), gap)
    assert abs((sum(e.attribution) - gap) - e.attribution_delta) < 1e-4  # Captum's delta is that residual
    # the baseline: <pad> tokens, whose embedding row is zero, read with the review's length
    assert torch.count_nonzero(run.model.embedding.weight[0]) == 0
    tokens = torch.zeros(1, len(e.words), dtype=torch.long)
    with torch.no_grad():
        assert e.baseline_logit == pytest.approx(float(run.model(tokens, torch.tensor([len(e.words)]))), abs=1e-6)


def test_integration_steps_by_model_and_the_warning_when_attributions_do_not_add_up(runs):
    """The Transformer integrates over 200 steps by default, the others 50 (--ig-steps overrides both); when the
    attributions miss the logit's change, the warning says what was measured for that kind of model."""
    pytest.importorskip("captum")
    import dataclasses

    from rnnlab.explain import attribution_warning

    rnn, tf = explain_runs([runs["rnn"], runs["transformer"]], REVIEW)
    assert "(50 steps)" in rnn.attribution_note and "(200 steps)" in tf.attribution_note
    (few,) = explain_runs([runs["transformer"]], REVIEW, ig_steps=8)
    assert "(8 steps)" in few.attribution_note
    assert attribution_warning(rnn) == attribution_warning(tf) == ""  # tiny smooth models: they add up
    for e, says in ((rnn, "more --ig-steps seldom help"), (tf, "more --ig-steps may help")):
        off = dataclasses.replace(e, attribution_delta=0.5 * abs(e.logit - e.baseline_logit) + 0.02)
        assert says in attribution_warning(off) and "completeness fails" in attribution_warning(off)


@pytest.mark.parametrize("kind,batch", [("lstm", None), ("transformer", None), ("bow", None), ("lstm", 7)])
def test_attribution_is_captums_layer_integrated_gradients(runs, kind, batch, monkeypatch):
    """The same attributions and convergence delta, to the last bit, as Captum's LayerIntegratedGradients on the
    embedding, with its own convergence delta (the reference explain avoids for its four extra passes); also when
    the path is run in internal batches (7 points at a time, as a long review's is)."""
    import rnnlab.explain as E
    from rnnlab.text import tokenize

    captum_attr = pytest.importorskip("captum.attr")
    run = load_run(runs[kind])
    if batch:
        monkeypatch.setattr(E, "IG_BUDGET", batch * len(tokenize(REVIEW, run.vocab.strip_html)))
    (e,) = explain_runs([run], REVIEW)
    tokens, lengths = torch.tensor([e.ids]), torch.tensor([len(e.ids)])
    lig = captum_attr.LayerIntegratedGradients(lambda t, n: run.model(t, n), run.model.embedding)
    params = list(run.model.parameters())
    try:
        for p in params:  # as explain runs it: only dL/dx is needed
            p.requires_grad_(False)
        attr, delta = lig.attribute(tokens, baselines=torch.zeros_like(tokens), additional_forward_args=(lengths,),
                                    n_steps=E.ig_steps_for(run.cfg.model), return_convergence_delta=True,
                                    internal_batch_size=batch)
    finally:
        for p in params:
            p.requires_grad_(True)
    assert e.attribution == attr[0].sum(-1).double().tolist()
    assert e.attribution_delta == float(delta[0])


def test_a_long_reviews_path_runs_in_batches_that_bound_its_memory(runs, monkeypatch):
    """Integrated Gradients runs at most 400,000 tokens of path points at once (an LSTM's backward keeps ~5.4 KB a
    token: ~2.2 GB): a 9,000-token review's 50 points go in batches of 44, with the attributions of one batch."""
    import rnnlab.explain as E

    run = load_run(runs["lstm"])
    text = " ".join(["great", "dull", "the", "plot"] * 2250)  # 9,000 tokens
    seen = []
    hook = run.model.embedding.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].numel()))
    try:
        (e,) = explain_runs([run], text)
    finally:
        hook.remove()
    assert E.IG_BUDGET == 400_000 and len(e.words) == 9000
    assert sorted(seen)[-2:] == [6 * 9000, 44 * 9000]  # the path: 44 points, then 6; the rest single passes
    monkeypatch.setattr(E, "IG_BUDGET", 50 * 9000)  # all 50 points at once
    (whole,) = explain_runs([run], text)
    np.testing.assert_allclose(e.attribution, whole.attribution, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_a_recurrent_run_passes_the_review_through_the_model_five_times(runs, kind):
    """predict's pass, the states (running opinion and state change), the blank baseline, Integrated Gradients'
    path (one batch) and the gradient norm, plus the lookup of the review's embeddings (the baseline's are zeros):
    nothing read twice. Before, ten passes: Captum's LayerIntegratedGradients added four (the embedding's output
    for the review and the baseline, and both ends again for the convergence delta), and forward_steps and
    states one each."""
    pytest.importorskip("captum")
    run = load_run(runs[kind])
    seen = []
    hook = run.model.embedding.register_forward_hook(lambda mod, inp, out: seen.append(tuple(inp[0].shape)))
    try:
        (e,) = explain_runs([run], REVIEW)
    finally:
        hook.remove()
    T = len(e.words)
    assert sorted(seen) == sorted([(1, T)] * 5 + [(50, T)]), seen

def test_captum_loads_without_its_package_init_and_leaves_no_trace():
    """The command loads Captum's one class without `import captum` (matplotlib and all); a later plain
    import still gets the whole package, and the two classes attribute alike."""
    pytest.importorskip("captum")
    code = """
import sys, torch
from rnnlab.explain import _integrated_gradients
Fast = _integrated_gradients()
assert "matplotlib" not in sys.modules, "matplotlib imported"
assert not [m for m in sys.modules if m.startswith("captum")], "captum modules left behind"
import captum, captum.attr
assert captum.attr._core.integrated_gradients and captum._utils.common and captum.__version__
torch.manual_seed(0)
head = torch.nn.Linear(4, 1)
f = lambda x: head(x.tanh().mean(1))[:, 0]
x = torch.randn(1, 5, 4)
a, b = (cls(f).attribute(x, baselines=torch.zeros_like(x), n_steps=16) for cls in (Fast, captum.attr.IntegratedGradients))
assert Fast is not captum.attr.IntegratedGradients and torch.equal(a, b)
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_loading_explaining_and_building_a_run_do_not_import_torch_dynamo(runs):
    """Comparing config.json's sizes with the weights on the meta device ran nn.init.normal_ there, through torch's
    Python references, which import torch._dynamo: 1.1 s more for every predict and explain on a 2-core VM (and for
    train's memory check, which counts the weights the same way)."""
    code = """
import sys
from rnnlab.config import PRESETS
from rnnlab.explain import explain, load_run
from rnnlab.scoring import predict_texts
from rnnlab.runs import RunDir
from rnnlab.train import _built
for path in sys.argv[1:]:
    explain(load_run(path), "a fine film, and a long one")
    predict_texts(*RunDir(path).load_model(), ["a fine film"])
for cfg in PRESETS.values():
    _built(cfg, 100, "cpu")
assert "torch._dynamo" not in sys.modules, "torch._dynamo imported"
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code, *map(str, runs.values())], capture_output=True, text=True,
                       cwd=REPO, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_gradient_norm_matches_the_explicit_loop(runs):
    """||dL/dx_t|| through the fused kernel equals the one through the vanilla RNN written out over time."""
    run = load_run(runs["rnn"])
    (e,) = explain_runs([run], REVIEW, attribution=False)
    ids = torch.tensor([e.ids])
    x = run.model.embedding(ids).detach().requires_grad_(True)
    logit, _ = run.model.unrolled(ids, torch.tensor([len(e.ids)]), embedded=x)
    target = torch.tensor([1.0 if e.p_positive > 0.5 else 0.0])
    torch.nn.functional.binary_cross_entropy_with_logits(logit, target).backward()
    np.testing.assert_allclose(e.grad_norm, x.grad[0].norm(dim=-1).numpy(), rtol=1e-4, atol=1e-9)
    h = run.model.states(ids)[0].detach()
    ref = [float(h[0].norm())] + [float((h[t] - h[t - 1]).norm()) for t in range(1, len(h))]
    np.testing.assert_allclose(e.state_change, ref, rtol=1e-5)


def test_a_tiny_gradient_is_not_reported_as_zero():
    """A float32 norm of entries near 1e-20 squares them below float32's normal range, which rnnlab flushes to 0
    (kernels.py): explain reported such tokens as "exactly 0" though their gradient was not (scientist's check)."""
    from rnnlab.explain import embedding_grad_norm
    import rnnlab.kernels  # noqa: F401  (what sets the flush, as in every rnnlab process)

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(4, 3)

        def forward(self, tokens, lengths):
            return (self.embedding(tokens) * 1e-20).sum(dim=(1, 2))  # a logit of about 0: dL/dlogit = -0.5

    norms = embedding_grad_norm(Tiny(), torch.tensor([[1, 2]]), torch.tensor([2]), 1.0)
    assert all(n > 0 for n in norms), norms  # each entry of dL/dx is -0.5e-20: the norm is about 8.7e-21
    np.testing.assert_allclose(norms, [0.5e-20 * 3 ** 0.5] * 2, rtol=1e-5)


def test_the_library_refuses_arguments_of_the_wrong_kind(runs):
    """From a notebook: one path for `runs` was read character by character ("/: not a run"), a list for `text`
    gave an AttributeError, ig_steps 0 silently switched attributions off, and predict_texts("great film") gave one
    probability per character (fault hunt)."""
    run = load_run(runs["rnn"])
    for bad in ((str(runs["rnn"]), "good"), (runs["rnn"], "good"), (run, "good"), ([run], ["good"]), ([run], None)):
        with pytest.raises(TypeError, match="runs a list of run directories or Runs, text one review"):
            explain_runs(*bad, attribution=False)
    with pytest.raises(ValueError, match="ig_steps must be at least 1, got 0"):
        explain_runs([run], "good", ig_steps=0)
    with pytest.raises(TypeError, match="not one string"):
        predict_texts(run.cfg, run.vocab, run.model, "great film")


def test_tokens_as_the_run_reads_them(runs):
    full, tail, head, strip = explain_runs([runs[k] for k in ("rnn", "rnn-tail", "rnn-head", "rnn-strip")], REVIEW,
                                           attribution=False)
    assert full.words[:4] == ["the", "film", "was", "br"] and "br" not in strip.words
    assert full.ids[full.words.index("zzyzx")] == 1  # unknown word, shown as itself
    assert tail.words == full.words[-12:] and tail.start == len(full) - 12 and head.words == full.words[:12]
    assert "last 12" in tail.truncation and "cut" in tail.truncation and full.truncation == ""
    assert "first 12" in head.truncation


def test_the_model_and_torch_are_left_as_they_were(runs):
    run = load_run(runs["lstm"])
    run.model.train()
    with torch_threads(2):
        explain_runs([run], REVIEW, threads=1)
        assert torch.get_num_threads() == 2
    assert run.model.training and all(p.grad is None for p in run.model.parameters())
    assert all(p.requires_grad for p in run.model.parameters())  # frozen while explaining, then restored
    run.model.embedding.weight.requires_grad_(False)  # a weight frozen before stays frozen, also on an error
    with pytest.raises(ValueError, match="empty review"):
        explain_runs([run], " ")
    frozen = [p.requires_grad for p in run.model.parameters()]
    assert frozen == [False] + [True] * (len(frozen) - 1)


def test_explain_and_predict_run_without_the_cycle_collector_and_restore_it(runs, monkeypatch):
    """The two short commands switch Python's cycle collector off while they run (docs/PERFORMANCE.md:
    its full passes over torch's objects cost a quarter of explain's time) and on again after."""
    import gc

    import rnnlab.explain as ex

    seen = []
    real = ex.explain_runs
    monkeypatch.setattr(ex, "explain_runs", lambda *a, **k: seen.append(gc.isenabled()) or real(*a, **k))
    assert gc.isenabled()
    r = CliRunner().invoke(main, ["explain", str(runs["rnn"]), "--text", REVIEW])
    assert r.exit_code == 0, r.output
    assert seen == [False] and gc.isenabled()
    r = CliRunner().invoke(main, ["predict", str(runs["rnn"]), "--text-that-is-not-an-option"])
    assert r.exit_code != 0 and gc.isenabled()  # also after a failure
    r = CliRunner().invoke(main, ["presets"])
    assert r.exit_code == 0 and gc.isenabled()


def test_explanation_round_trips_through_json(runs):
    (e,) = explain_runs([runs["lstm"]], REVIEW, source="a test")
    back = Explanation.from_dict(json.loads(e.to_json()))
    assert back == e and back.source == "a test"


def test_without_captum_attribution_is_reported_unavailable(runs, monkeypatch):
    monkeypatch.setitem(sys.modules, "captum", None)  # `import captum` now raises ImportError
    monkeypatch.setitem(sys.modules, "captum.attr", None)
    (e,) = explain_runs([runs["rnn"]], REVIEW)
    assert e.attribution is None and "pip install captum" in e.attribution_note
    assert e.opinion and e.grad_norm  # everything else still works
    with pytest.raises(ImportError):
        explain_runs([runs["rnn"]], REVIEW, attribution=True)
    res = CliRunner().invoke(main, ["explain", str(runs["rnn"]), "--text", REVIEW, "--plain"])
    assert res.exit_code == 0 and "note: attribution unavailable" in res.stderr and "pip install captum" in res.stderr
    res = CliRunner().invoke(main, ["explain", str(runs["rnn"]), "--text", REVIEW, "--attribution"])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1 and "Captum" in res.stderr


# --- side by side ---------------------------------------------------------------------------------

def test_alignment_by_position_on_the_shared_tail(runs):
    exps = explain_runs([runs["rnn"], runs["rnn-tail"], runs["lstm"]], REVIEW, attribution=False)
    al = align(exps)
    assert [w for w, _ in al.rows] == exps[0].words
    n = len(exps[0])
    assert [idx[1] for _, idx in al.rows] == [None] * (n - 12) + list(range(12))
    assert [idx[2] for _, idx in al.rows] == list(range(n))
    assert "shared tail" in al.note
    assert align([exps[0], exps[2]]).note.endswith("aligned one to one")
    head = explain_runs([runs["rnn-head"], runs["rnn"]], REVIEW, attribution=False)
    assert "shared head" in align(head).note


def test_runs_that_differ_in_stripping_tags_read_a_review_without_tags_alike(runs):
    """A run that strips <br /> tags beside one that keeps them, on a review with no tag: the note said the runs
    tokenise differently and a stripped tag was left blank, where both read the same tokens one to one (session
    60's check of the guarantees). (Mutant: strip_html compared again.)"""
    text = "A fine film. I liked it a lot, and the ending most of all."
    exps = explain_runs([runs["rnn-strip"], runs["rnn"]], text, attribution=False)
    assert exps[0].strip_html != exps[1].strip_html and exps[0].words == exps[1].words
    assert align(exps).note == f"{exps[0].run}, {exps[1].run}: the same {len(exps[0])} tokens, aligned one to one"


def test_alignment_of_different_tokenisers_keeps_every_token(runs):
    exps = explain_runs([runs["rnn-strip"], runs["rnn"], runs["rnn-tail"]], REVIEW, attribution=False)
    al = align(exps)
    assert "tokenise differently" in al.note
    for i, e in enumerate(exps):  # every token of every run, once, in order
        assert [idx[i] for _, idx in al.rows if idx[i] is not None] == list(range(len(e)))
        assert [w for w, idx in al.rows if idx[i] is not None] == e.words
    br = [idx for w, idx in al.rows if w == "br"]
    assert br and all(idx[0] is None and idx[1] is not None for idx in br)


def test_a_run_that_read_no_word_lines_up_with_no_token_of_another(runs):
    """A review of <br /> tags alone: the run that strips them reads one <unk> stand-in, which was lined up with the
    other run's first "br" (and said "1 token read by all"): session 59's fault hunt."""
    strip, keep = explain_runs([runs["rnn-strip"], runs["rnn"]], "<br /><br />", attribution=False)
    assert strip.words == ["<unk>"] and strip.positions == [-1] and keep.words == ["br", "br"]
    al = align([strip, keep])
    assert al.rows == [("<unk>", [0, None]), ("br", [None, 0]), ("br", [None, 1])]
    assert "no tokens read by all" in al.note and f"{strip.run} read no word of it" in al.note
    strip, keep = explain_runs([runs["rnn-strip"], runs["rnn"]], "!!! ???", attribution=False)  # neither reads a word
    assert strip.positions == keep.positions == [-1] and align([strip, keep]).rows == [("<unk>", [0, 0])]
    assert align([strip, keep]).note == (f"{strip.run}, {keep.run}: none read a word of the review (an empty review "
                                         "reads as one <unk>)")


def test_runs_that_read_different_parts_share_no_token_even_where_words_repeat(runs):
    """A run that read the head and one that read the tail of a review, tokenised differently, line up no word:
    the same words at both ends are two places in the review, not one."""
    words = "a film of great charm in a way".split()
    text = " ".join(words + ["filler"] * 60 + words)
    strip, tail = explain_runs([runs["rnn-strip"], runs["rnn-tail"]], text, attribution=False)
    n = len(words)
    head = dataclasses.replace(strip, words=strip.words[:n], ids=strip.ids[:n], opinion=strip.opinion[:n],
                               grad_norm=strip.grad_norm[:n], state_change=strip.state_change[:n],
                               positions=strip.positions[:n],
                               truncation=f"read the first {n} tokens")
    al = align([head, tail])
    assert not any(all(j is not None for j in idx) for _, idx in al.rows), al.rows
    assert "no tokens read by all" in al.note
    assert [idx[0] for _, idx in al.rows if idx[0] is not None] == list(range(n))  # each run's tokens, in order
    assert [idx[1] for _, idx in al.rows if idx[1] is not None] == list(range(len(tail)))
    whole = align([strip, tail])  # the whole review against its tail: the tail's words match the end only
    matched = [idx for _, idx in whole.rows if idx[1] is not None and idx[0] is not None]
    assert [i[0] for i in matched] == list(range(len(strip) - len(tail), len(strip)))


@pytest.mark.parametrize("whole, tail", [("rnn-strip", "rnn-tail"), ("rnn", "rnn-strip-tail")])
def test_a_run_that_kept_the_tail_lines_up_with_the_same_places_in_a_run_that_tokenises_differently(
        runs, whole, tail):
    """A long repetitive review with <br /> tags, read whole by one run and only its last 12 tokens by one
    that treats the tags the other way: each token of the tail sits in the row of its place in the review
    (matching words put the tail's first token near the review's start, real review 164 in session 36)."""
    rng = np.random.default_rng(0)
    kept = []  # the review's tokens with tags kept, as it is written
    for _ in range(1000):
        kept += ["br"] if rng.random() < 0.15 else [str(rng.choice(["good", "bad", "film", "the"]))]
    text = " ".join("<br />" if w == "br" else w for w in kept)
    exps = explain_runs([runs[whole], runs[tail]], text, attribution=False)
    place = {False: list(range(len(kept))), True: [k for k, w in enumerate(kept) if w != "br"]}  # token -> kept[k]
    at = [place[e.strip_html][e.start:e.start + len(e)] for e in exps]  # each run's tokens' places, by construction
    assert exps[1].start > 0 and all([kept[k] for k in a] == e.words for a, e in zip(at, exps))
    al = align(exps)
    for i, e in enumerate(exps):  # every token of each run, once, in order
        assert [idx[i] for _, idx in al.rows if idx[i] is not None] == list(range(len(e)))
    rows = [{at[i][j] for i, j in enumerate(idx) if j is not None} for _, idx in al.rows]
    assert all(len(r) == 1 for r in rows) and [r.pop() for r in rows] == sorted(set(at[0]) | set(at[1]))


def test_tag_kept_positions():
    from rnnlab.text import tag_kept_positions, tokenize

    rng = np.random.default_rng(1)
    pieces = ["<br />", "<BR>", "<br/>", "a", "b2", "don't", "x<br>y", ".", " ", "<b>", "br", "\n"]
    for _ in range(200):
        text = "".join(rng.choice(pieces, size=int(rng.integers(0, 30))))
        kept, stripped = tokenize(text), tokenize(text, strip_html=True)
        pos = tag_kept_positions(text)
        assert [kept[k] for k in pos] == stripped and pos == sorted(set(pos))
        assert len(kept) - len(stripped) == len(re.findall(r"<br\s*/?>", text, re.IGNORECASE))


# --- rendering ------------------------------------------------------------------------------------

def test_terminal_views(runs):
    exps = explain_runs([runs["rnn"]], REVIEW)
    plain = render_terminal(exps, colour=False)
    assert "\x1b[" not in plain and "hidden state after this token" in plain and "zzyzx (unk)" in plain
    assert "columns: t = the token's place among those read; p_pos = running opinion;" in plain  # what |dh| means
    table = plain.splitlines()[plain.splitlines().index("") + 1:]
    assert table[0].split() == ["t", "token", "p_pos", "attr", "|dL/dx|", "|dh|"] and len(table) == 1 + len(exps[0])
    assert f"{exps[0].opinion[-1]:.4f}" in table[-1]
    coloured = render_terminal(exps, colour=True, width=60)
    assert "\x1b[48;5;" in coloured and all(w in coloured for w in exps[0].words)
    both = explain_runs([runs["rnn"], runs["rnn-tail"]], REVIEW, attribution=False)
    assert "shared tail" in render_terminal(both, colour=False)
    assert render_terminal(both, colour=True, width=70).count("rnn-tail") >= 3  # a bar row per wrapped line


@pytest.mark.parametrize("width", [20, 40, 80])
def test_the_colour_legend_wraps_to_the_terminal(runs, width):
    """The legend was one line of ~105 characters: a narrow terminal cut it mid-swatch. Now no line is wider than
    the terminal, and every swatch and word is still there."""
    exps = explain_runs([runs["rnn"]], "a great film", attribution=False)
    legend = render_terminal(exps, colour=True, width=width).rstrip("\n").split("\n\n")[-1]
    visible = re.sub(r"\x1b\[[0-9;]*m", "", legend)
    assert max(len(line) for line in visible.splitlines()) <= width and len(visible.splitlines()) > 1
    assert " ".join(visible.split()) == ("colour: running opinion 0 negative 0.25 0.5 0.75 1 positive ; underlined: "
                                         "not in the vocabulary (<unk>)")
    assert legend.count("\x1b[48;5;") == 5  # the five swatches, each whole
    if width == 40:  # filled greedily: a piece goes to the next line only when it would not fit on this one
        assert visible.splitlines() == ["colour: running opinion  0 negative ", " 0.25  0.5  0.75  1 positive ;",
                                        "underlined: not in the vocabulary", "(<unk>)"], visible.splitlines()


class _Tokens(HTMLParser):
    """Collects the text of every element of class `w` (a token), per view."""

    def __init__(self):
        super().__init__()
        self.words, self._in = [], False

    def handle_starttag(self, tag, attrs):
        if "w" in (dict(attrs).get("class") or "").split():
            self._in = True
            self.words.append("")

    def handle_endtag(self, tag):
        self._in = False

    def handle_data(self, data):
        if self._in:
            self.words[-1] += data


EXTERNAL = re.compile(r"""(?:\b(?:src|href|action|poster|data)\s*=|url\(|@import|<script|<link|<iframe|<img|"""
                      r"""<object|<embed|https?:|//[a-z])""", re.IGNORECASE)
ICON = '<link rel="icon" href="data:,">'  # the one link a page has: an empty icon, so that nothing asks for /favicon.ico


def external(src: str):
    """The first thing in a page that could load from elsewhere, but its empty icon (exactly one), or None."""
    assert src.count(ICON) == 1
    return EXTERNAL.search(src.replace(ICON, ""))


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    if os.environ.get("RNNLAB_NO_BROWSER") == "1":
        pytest.skip("RNNLAB_NO_BROWSER=1")
    pytest.fail("no chromium on PATH (apt-get install chromium), needed to render the page; "
                "set RNNLAB_NO_BROWSER=1 to skip this test")


@pytest.mark.browser
def test_html_renders_in_headless_chromium(runs, tmp_path):
    if os.environ.get("RNNLAB_NO_BROWSER") == "1":
        pytest.skip("RNNLAB_NO_BROWSER=1")
    browser = _chromium()
    text = REVIEW + ' A "quoted" <b>bold</b> & <script>alert(1)</script> ending.'
    exps = explain_runs([runs["rnn"], runs["rnn-tail"], runs["transformer"]], text, source="a test review")
    page = tmp_path / "explain.html"
    write_html(exps, page)
    src = page.read_text(encoding="utf-8")
    assert not external(src), external(src)  # and its empty icon: served, a page without one is asked for a 404
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-extensions", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"]
    r = subprocess.run(flags + ["--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    parser = _Tokens()
    parser.feed(r.stdout)
    rows = [w for w, _ in align(exps).rows]
    assert parser.words == rows * 2  # the opinion view and the attribution view, every token in order
    assert "alert(1)" not in r.stdout.split("<body")[0] and "<script" not in r.stdout  # escaped, not run
    artifacts = Path(os.environ.get("RNNLAB_ARTIFACTS") or REPO / "artifacts")
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / "explain.png"
    r = subprocess.run(flags + ["--hide-scrollbars", f"--screenshot={shot}", "--window-size=900,2200",
                                page.as_uri()], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and shot.read_bytes()[:8] == PNG_MAGIC and shot.stat().st_size > 20_000


def test_html_single_run_and_without_attribution(runs, tmp_path):
    (e,) = explain_runs([runs["bow"]], REVIEW, attribution=False)
    src = render_html([e])
    assert src.count('class="t w') == len(e) and "attribution not computed" in src
    assert "How far each word moves" not in src  # no hidden state in a bag of words
    assert not external(src)


def test_html_says_what_the_attribution_is_measured_from_once(runs):
    """The attribution's lead-in and its note each said "the same length with no words" (session 64's walkthrough)."""
    src = render_html(explain_runs([runs["rnn"]], REVIEW))
    assert src.count("the same length with no words") == 1 and "away from a blank review: Integrated Gradients" in src


def test_the_page_and_terminal_say_how_far_the_run_was_trained(runs, data, tmp_path):
    """A learner reading an explanation should know how much to trust the model behind it (session 64's walkthrough:
    a barely trained run's "and", "is" as its most positive words, with nothing saying it scored 0.64): a finished
    run's summary.json, or a lab job's record beside its folder, gives the epochs and accuracies on the page, in the
    terminal's header and in --json; a run with neither (the fixture's, trained in memory) says nothing."""
    r = CliRunner().invoke(main, ["train", "--data", str(data), "--epochs", "2", "--embed-dim", "8", "--hidden-dim", "8",
                                  "--vocab-size", "50", "--val-fraction", "0.2", "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    (e,) = explain_runs([tmp_path / "run"], REVIEW, attribution=False)
    said = ("trained 2 epochs" + ("" if summary["best_epoch"] == 2 else " (kept: epoch 1, the best on validation)")
            + f": validation accuracy {summary['val_acc']:.3f}, test accuracy {summary['test_acc']:.3f}")
    assert e.trained == said
    assert f"This run: {said}." in render_html([e]) and f"  {said}" in header_lines(e)
    r = CliRunner().invoke(main, ["explain", str(tmp_path / "run"), "--text", REVIEW, "--json", "--no-attribution"])
    assert json.loads(r.stdout)["runs"][0]["trained"] == said
    shutil.copytree(tmp_path / "run", tmp_path / "copied")  # its summary names the old folder (the diff review)
    assert explain_runs([tmp_path / "copied"], REVIEW, attribution=False)[0].trained == said
    key = "0123456789abcdef0123"  # a lab's job store: the run in KEY/, its record in KEY.json
    shutil.copytree(runs["rnn"], tmp_path / "jobs" / key)
    rows = [{"part": "accuracy", "metric": m, "value": v} for m, v in
            (("test_acc", 0.51), ("val_acc", 0.46), ("epochs", 3.0), ("best_epoch", 3.0))]
    (tmp_path / "jobs" / f"{key}.json").write_text(json.dumps({"rows": [{"part": "by_length", "metric": "x"}, *rows]}))
    (e,) = explain_runs([tmp_path / "jobs" / key], REVIEW, attribution=False)
    assert e.run == "rnn 01234567" and e.trained == "trained 3 epochs: validation accuracy 0.460, test accuracy 0.510"
    (tmp_path / "jobs" / f"{key}.json").write_text('{"rows": [{"part": "accuracy", "metric": "epochs", "value": "x"}]}')
    (e,) = explain_runs([tmp_path / "jobs" / key], REVIEW, attribution=False)  # a damaged record: no line, no error
    assert e.trained == "" and "This run" not in render_html([e])
    (e,) = explain_runs([runs["rnn"]], REVIEW, attribution=False)
    assert e.trained == "" and not any("trained" in ln for ln in header_lines(e))


def test_a_summary_with_numbers_out_of_range_gives_no_trained_line_and_no_error(runs, data, tmp_path):
    """summary.json damaged with numbers no run gives: an accuracy of a 401-digit integer stopped explain with
    OverflowError's traceback (math.isfinite); an accuracy of 5 or a kept epoch after the last was shown as read."""
    r = CliRunner().invoke(main, ["train", "--data", str(data), "--epochs", "1", "--embed-dim", "8", "--hidden-dim", "8",
                                  "--vocab-size", "50", "--val-fraction", "0.2", "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    f = tmp_path / "run" / "summary.json"
    good = json.loads(f.read_text())
    for damage, said in (({"test_acc": 10 ** 400}, f"validation accuracy {good['val_acc']:.3f}"),
                         ({"val_acc": 5.0, "best_epoch": 7}, f"test accuracy {good['test_acc']:.3f}"),
                         ({"epochs": 10 ** 400}, None)):
        f.write_text(json.dumps(good | damage))  # a big int is written whole and read back as an int
        r = CliRunner().invoke(main, ["explain", str(tmp_path / "run"), "--text", REVIEW, "--json", "--no-attribution"])
        assert r.exit_code == 0 and "Traceback" not in r.output, r.output
        trained = json.loads(r.stdout)["runs"][0]["trained"]
        assert trained == ("" if said is None else f"trained 1 epoch: {said}"), trained


def test_png(runs, tmp_path):
    exps = explain_runs([runs["rnn"], runs["rnn-tail"], runs["bow"]], REVIEW)
    f = write_png(exps, tmp_path / "e.png")
    assert f.read_bytes()[:8] == PNG_MAGIC and f.stat().st_size > 20_000


def test_a_long_review_renders_quickly(runs, tmp_path):
    """1,000 tokens through a (tiny) vanilla RNN to HTML; the real-size timing is in the report."""
    words = " ".join(np.random.default_rng(0).choice(["great", "awful", "the", "film", "plot"], 1000))
    t0 = time.perf_counter()
    exps = explain_runs([runs["rnn"]], words)
    write_html(exps, tmp_path / "long.html")
    seconds = time.perf_counter() - t0
    assert len(exps[0]) == 1000 and seconds < 20, seconds  # generous: the machine may be busy


# --- the command ----------------------------------------------------------------------------------

def test_a_run_whose_path_is_not_utf8_explains_to_html_and_png(runs, tmp_path):
    """A folder name with bytes that are not UTF-8 (Python keeps them as lone surrogates): the page and the figure
    show them escaped (\\udcfe), as the JSON does; they were a traceback."""
    import shutil

    run = tmp_path / os.fsdecode(b"r\xfe b")
    shutil.copytree(runs["rnn"], run)
    r = CliRunner().invoke(main, ["explain", str(run), "--text", REVIEW, "--html", str(tmp_path / "e.html"),
                                  "--png", str(tmp_path / "e.png")])
    assert r.exit_code == 0, (r.output, r.exception)
    assert "r\\udcfe b" in (tmp_path / "e.html").read_text(encoding="utf-8") and "r\\udcfe b" in r.stdout
    r = CliRunner().invoke(main, ["explain", str(run), "--text", REVIEW, "--json"])
    assert json.loads(r.stdout)["runs"][0]["run"] == run.name  # JSON keeps the name itself (its bytes, escaped)
    assert (tmp_path / "e.png").read_bytes()[:4] == b"\x89PNG"


def test_a_killed_explains_hidden_copy_of_the_old_page_is_swept_by_the_next(runs, tmp_path):
    """`kill -9` of `explain --html A --png B` over an existing A left `.A.PID.previous` (a hard link to the old page,
    kept to put it back if B failed) for good (session 58's fault hunt). The next explain writing A deletes those
    of processes that are gone, and leaves a live one's."""
    import subprocess
    import sys

    page = tmp_path / "e.html"
    page.write_text("old")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale, live = tmp_path / f".e.html.{int(dead.stdout)}.previous", tmp_path / f".e.html.{os.getppid()}.previous"
    for f in (stale, live):
        os.link(page, f)
    r = CliRunner().invoke(main, ["explain", str(runs["rnn"]), "--text", REVIEW, "--html", str(page),
                                  "--png", str(tmp_path / "e.png")])
    assert r.exit_code == 0, r.output
    assert not stale.exists() and live.exists() and page.read_text() != "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "e.html", "e.png"])


def test_cli_text_stdin_json_html_png(runs, tmp_path):
    r = CliRunner().invoke(main, ["explain", str(runs["rnn"]), str(runs["lstm"]), "--text", REVIEW, "--json",
                                  "--html", str(tmp_path / "e.html"), "--png", str(tmp_path / "e.png")])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert [x["run"] for x in out["runs"]] == ["rnn", "lstm"] and out["source"] == "a review given with --text"
    assert len(out["alignment"]["rows"]) == len(out["runs"][0]["words"])
    assert (tmp_path / "e.html").stat().st_size > 0 and (tmp_path / "e.png").stat().st_size > 0
    p = float(predict_texts(*RunDir(runs["rnn"]).load_model(), [REVIEW])[0])
    assert out["runs"][0]["opinion"][-1] == out["runs"][0]["p_positive"] == p  # JSON keeps it exactly
    r = CliRunner().invoke(main, ["predict", str(runs["rnn"]), "--json", REVIEW])  # and so does predict's (it
    assert json.loads(r.stdout)["p_positive"] == p  # printed 4 decimals: 0.5 beside the label "positive")
    r = CliRunner().invoke(main, ["explain", str(runs["rnn"]), "--plain"], input=REVIEW)
    assert r.exit_code == 0 and "wonderful" in r.stdout and "\x1b[" not in r.stdout


def test_cli_json_says_where_completeness_fails(runs, monkeypatch):
    """--json printed the attributions with no word where they do not add up, as the page and the terminal give
    (scientist's check): each run's "attribution_warning", and one note per such run on stderr."""
    pytest.importorskip("captum")
    import rnnlab.explain

    r = CliRunner().invoke(main, ["explain", str(runs["rnn"]), "--text", REVIEW, "--json"])
    assert r.exit_code == 0 and r.stderr == "" and json.loads(r.stdout)["runs"][0]["attribution_warning"] == ""
    monkeypatch.setattr(rnnlab.explain, "attribution_warning", lambda e: "completeness fails: made up. Why")
    r = CliRunner().invoke(main, ["explain", str(runs["rnn"]), "--text", REVIEW, "--json"])
    assert r.exit_code == 0 and r.stderr == "note: rnn: completeness fails: made up\n", r.stderr
    assert json.loads(r.stdout)["runs"][0]["attribution_warning"] == "completeness fails: made up. Why"


def test_cli_notes_the_characters_the_tokenizer_reads_as_spaces(runs):
    """The notebook's tokenizer reads a-z and 0-9 only: a review's é or 😍 vanished without a word (a learner saw
    "café" explained as "caf", an emoji-only review as one <unk>); now a note names them. One token: singular."""
    r = CliRunner().invoke(main, ["explain", str(runs["rnn"]), "--plain", "--text", "Café 😍"])
    assert r.exit_code == 0, r.output
    assert r.stderr == ("note: the tokenizer (the notebook's) reads only a-z and 0-9; it reads these characters of "
                        "the review as spaces: é 😍\n")
    assert "read the review's one token" in r.stdout and "baseline: 1 <pad> token (zero" in r.stdout  # "caf"
    r = CliRunner().invoke(main, ["explain", str(runs["rnn"]), "--plain", "--text", REVIEW])
    assert r.exit_code == 0 and r.stderr == "" and re.search(r"read all \d+ tokens of the review", r.stdout)
    r = CliRunner().invoke(main, ["explain", str(runs["rnn"]), str(runs["lstm"]), "--plain", "--text", "😍 !!!"])
    assert r.exit_code == 0, r.output  # a review with no word: both notes, each once; no "one token" read
    assert r.stderr.splitlines()[1:] == ["note: the review has no word the tokenizer reads (a-z, 0-9): the model "
                                         "reads one <unk> token, as for an empty review"]
    assert r.stdout.count("read no word: an empty review reads as one <unk> token") == 2, r.stdout
    assert "one token" not in r.stdout.replace("one <unk> token", "")
    r = CliRunner().invoke(main, ["explain", str(runs["rnn"]), str(runs["rnn-strip"]), "--plain", "--text",
                                  "<br /><br />"])  # runs that disagree: the note names the one it is true of
    assert r.exit_code == 0 and r.stderr.splitlines() == [
        "note: rnn-strip: the review has no word the tokenizer reads once its <br /> tags are removed: the model "
        "reads one <unk> token, as for an empty review"], r.output
    from rnnlab.explain_views import _card

    (e,) = explain_runs([runs["rnn"]], "!!!", attribution=False)
    assert "Read no word: an empty review reads as one &lt;unk&gt; token." in _card(e)  # the page says so too


def test_a_lab_jobs_run_is_named_by_its_model_not_only_its_hash(runs, tmp_path):
    """The report's "read it again" command explains the lab's runs in OUT/jobs/KEY/: a column named by a 20-digit
    hash told a reader nothing."""
    import shutil

    job = tmp_path / "jobs" / "90a40148e1ae29c8ea87"
    shutil.copytree(runs["lstm"], job)
    r = CliRunner().invoke(main, ["explain", str(job), str(runs["rnn"]), "--text", "a wonderful ending", "--json"])
    assert r.exit_code == 0, r.output
    assert [x["run"] for x in json.loads(r.stdout)["runs"]] == ["lstm 90a40148", "rnn"]


def test_cli_text_as_arguments(runs):
    """RUN_DIR... [TEXT]...: the words after the run directories are the review, as with --text."""
    argv = ["explain", str(runs["rnn"]), str(runs["lstm"])]
    by_option = CliRunner().invoke(main, [*argv, "--text", "slow start but a wonderful ending", "--json"])
    by_words = CliRunner().invoke(main, [*argv, "slow start", "but", "a wonderful ending", "--json"])
    assert by_option.exit_code == 0 and by_words.exit_code == 0, by_words.output
    a, b = json.loads(by_option.stdout), json.loads(by_words.stdout)
    assert b["source"] == "a review given on the command line" and [r["run"] for r in b["runs"]] == ["rnn", "lstm"]
    assert [r["opinion"] for r in a["runs"]] == [r["opinion"] for r in b["runs"]]
    assert b["runs"][0]["words"] == ["slow", "start", "but", "a", "wonderful", "ending"]


def test_a_folder_named_like_a_word_after_the_run_is_part_of_the_review(runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "great").mkdir()  # not a run: no config.json
    r = CliRunner().invoke(main, ["explain", str(runs["rnn"]), "great", "film", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["runs"][0]["words"] == ["great", "film"]


def test_cli_review_from_a_dataset(runs, data):
    r = CliRunner().invoke(main, ["explain", str(runs["gru"]), "--review", "3", "--data", str(data), "--json"])
    assert r.exit_code == 0, r.output
    e = json.loads(r.stdout)["runs"][0]
    ds = load_imdb(data)
    assert e["true_label"] == int(ds.test.labels[3]) and e["source"].startswith("review 3 of")
    assert e["source"].endswith("test.parquet")
    r = CliRunner().invoke(main, ["explain", str(runs["gru"]), "--review", "3", "--split", "train", "--json"])
    assert r.exit_code == 0, r.output  # the run's own data by default
    assert json.loads(r.stdout)["runs"][0]["true_label"] == int(ds.train.labels[3])


def test_cli_review_from_a_csv_file(runs, tmp_path):
    f = tmp_path / "mine.csv"
    f.write_text("text,label\nawful film,0\na great film,1\n", encoding="utf-8")
    r = CliRunner().invoke(main, ["explain", str(runs["gru"]), "--review", "1", "--data", str(f), "--json"])
    assert r.exit_code == 0, r.output  # a CSV is one split: its rows, whatever --split says
    e = json.loads(r.stdout)["runs"][0]
    assert e["words"] == ["a", "great", "film"] and e["true_label"] == 1 and e["source"] == f"review 1 of {f}"
    r = CliRunner().invoke(main, ["explain", str(runs["gru"]), "--review", "2", "--data", str(f)])
    assert r.exit_code != 0 and "has 2 reviews (0..1)" in r.output
    r = CliRunner().invoke(main, ["explain", str(runs["gru"]), "--review", "1", "--data", str(f), "--split", "train"])
    assert r.exit_code == 2 and r.output.strip().splitlines()[-1].endswith(  # was: the file's review 1, silently
        f"--split train: {f} is one file, a split of its own; leave --split out")
    f.write_text("text,label\nawful film,0\n", encoding="utf-8")
    r = CliRunner().invoke(main, ["explain", str(runs["gru"]), "--review", "1", "--data", str(f)])
    assert r.exit_code != 0 and r.stderr.splitlines()[-1].endswith(f"{f} has 1 review (0..0)"), r.output
    f.write_text("A Fine Film,1\n", encoding="utf-8")  # no header: the row it read as one, as written
    r = CliRunner().invoke(main, ["explain", str(runs["gru"]), "--review", "0", "--data", str(f)])
    assert r.exit_code != 0 and r.stderr.splitlines()[-1].endswith("found A Fine Film,1"), r.output


BAD = {  # id -> (argv after `explain`, with {run} {data} {tmp}; a regex the error line must contain)
    "unknown-run": (["{tmp}/no-such-run", "--text", "good"], r"no-such-run: no such run directory"),
    "empty-text": (["{run}", "--text", "   "], r"empty review"),
    "empty-stdin": (["{run}"], r"empty review"),
    "index-out-of-range": (["{run}", "--review", "120", "--data", "{data}"], r"--review 120: .* 120 reviews"),
    "data-missing": (["{run}", "--review", "1", "--data", "{tmp}/nowhere"], r"nowhere: no such file"),
    "html-is-a-dir": (["{run}", "--text", "good", "--html", "{tmp}"], r"--html .*: is a directory"),
    "png-in-missing-dir": (["{run}", "--text", "good", "--png", "{tmp}/a/b.png"], r"--png .*: no such directory"),
    "png-under-a-file": (["{run}", "--text", "good", "--png", "{data}/train.parquet/b.png"],
                         r"--png .*b\.png: .*train\.parquet is a file, not a directory"),
    "html-through-a-link-to-nothing": (["{run}", "good", "--html", "{tmp}/gone/e.html"],  # said "no such directory"
                                       r"--html .*e\.html: .*gone is a symbolic link to nothing \(or a loop\)$"),
    "png-through-a-link-loop": (["{run}", "good", "--png", "{tmp}/loop/e.png"],  # named no flag (3.11's resolve)
                                r"--png .*e\.png: .*loop is a symbolic link to nothing \(or a loop\)$"),
    "png-unknown-format": (["{run}", "--text", "good", "--png", "{tmp}/why.xyz"], r"--png .*why.xyz: not a figure file"),
    "png-without-suffix": (["{run}", "--text", "good", "--png", "{tmp}/why"], r"--png .*why: not a figure file"),
    "text-and-review": (["{run}", "--text", "good", "--review", "1"], r"not both"),
    "data-without-review": (["{run}", "--text", "good", "--data", "{data}"], r"--data is read only with --review"),
    "split-without-review": (["{run}", "--text", "good", "--split", "train"], r"--split is read only with --review"),
    "negative-review": (["{run}", "--review", "-1"], r"-1"),
    "ig-steps-too-many": (["{run}", "--text", "good", "--ig-steps", "20000"], r"--ig-steps.*1000"),
    "ig-steps-without-attribution": (["{run}", "good", "--no-attribution", "--ig-steps", "5"],  # ignored silently
                                     r"--ig-steps is read only with attributions, not with --no-attribution$"),
    "html-over-the-runs-config": (["{run}", "good", "--html", "{run}/config.json"], r"one of the run's own files"),
    "png-into-a-checkpoint": (["{run}", "good", "--png", "{run}/ckpt-1/x.png"], r"one of the run's own files"),
    "html-over-another-runs-config": (["{run}", "good", "--html", "{other}/config.json"],  # broke that run (fault hunt)
                                      r"--html .*config.json: one of the training run .*'s own files; write it elsewhere"),
    "png-over-a-labs-figure": (["{run}", "good", "--png", "{tmp}/lab/compare/compare.png"],
                               r"--png .*compare.png: a file of the lab .*lab; write it elsewhere"),
    "html-over-a-labs-record": (["{run}", "good", "--html", "{tmp}/lab/lab.json"], r"a file of the lab"),
    "html-over-a-labs-report": (["{run}", "good", "--html", "{tmp}/lab/report.html"],  # replaced it (fault hunt)
                                r"--html .*report.html: the report of the lab .*lab \(rnnlab report writes it\); write it"),
    "html-over-a-labs-markdown": (["{run}", "good", "--html", "{tmp}/lab/report.md"], r"the report of the lab"),
    "html-through-a-link-to-a-labs-report": (["{run}", "good", "--html", "{tmp}/mine.html"], r"the report of the lab"),
    "html-and-png-one-file": (["{run}", "good", "--html", "{tmp}/a.png", "--png", "{tmp}/a.png"], r"different files"),
    "words-and-review": (["{run}", "film", "--review", "3", "--data", "{data}"], r"as TEXT or with --review N"),
    "text-without-run": (["a" * 5000], r"^Error: a{38}\.\.\.a{39}: no such run directory$"),  # cut, not echoed
    "mistyped-second-run": (["{run}", "{tmp}/no-such-run"], r"no-such-run: no such run directory .*--text"),
    "text-and-option": (["{run}", "good", "--text", "good"], r"once: as TEXT or with --text"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input(case, runs, data, tmp_path):
    argv, needle = BAD[case]
    argv = [a.format(run=runs["rnn"], data=data, tmp=tmp_path, other=runs["lstm"]) for a in argv]
    (tmp_path / "lab" / "compare").mkdir(parents=True)
    (tmp_path / "lab" / "lab.json").write_text("{}")
    (tmp_path / "lab" / "compare" / "compare.png").write_bytes(b"\x89PNG")
    (tmp_path / "mine.html").symlink_to(tmp_path / "lab" / "report.html")  # written through: the lab's report
    (tmp_path / "gone").symlink_to(tmp_path / "no-such-target")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    r = CliRunner().invoke(main, ["explain", *argv], input="" if case == "empty-stdin" else None)
    assert r.exit_code == 2, r.output
    assert not isinstance(r.exception, Exception) or isinstance(r.exception, SystemExit), r.exception
    assert "Traceback" not in r.output and r.stdout == ""
    err = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith(("Usage:", "Try "))]
    assert len(err) == 1 and re.search(needle, err[0]), r.stderr


def test_bad_input_in_a_real_process(runs, tmp_path):
    """As a shell runs it: one line on stderr, exit 2, no traceback."""
    r = subprocess.run([sys.executable, "-m", "rnnlab.cli", "explain", str(tmp_path / "nope"), "--text", "x"],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr


# --- picking reviews ------------------------------------------------------------------------------

def test_decided_at():
    assert decided_at([0.9, 0.8, 0.7]) == 0  # never crossed
    assert decided_at([0.9, 0.2, 0.3, 0.6, 0.7]) == 3
    assert decided_at([0.2, 0.7, 0.4]) == 2


def test_pick_reviews(runs, data):
    split = load_imdb(data).test
    picks = pick_reviews(split, runs["rnn"], runs["lstm"], long_min=40, late=0.5, short=(5, 15))
    assert [p["rule"] for p in picks] == ["long, decided late", "short", "RNN wrong, LSTM right"]
    rnn, lstm = load_run(runs["rnn"]), load_run(runs["lstm"])
    for p in picks:
        assert p["criterion"]
        if p["index"] is None:
            continue
        text, y = split.texts[p["index"]], int(split.labels[p["index"]])
        (e,) = explain_runs([rnn], text, attribution=False)
        if p["rule"] == "long, decided late":
            assert len(e) >= 40 and decided_at(e.opinion) >= 0.5 * len(e) and decided_at(e.opinion) > 0
        elif p["rule"] == "short":
            assert 5 <= len(e) <= 15
        else:
            (el,) = explain_runs([lstm], text, attribution=False)
            assert (e.p_positive > 0.5) != (y == 1) and (el.p_positive > 0.5) == (y == 1)
    assert picks[1]["index"] is not None  # the tiny test set has short reviews
    found = [p["index"] for p in picks if p["index"] is not None]
    assert len(found) == len(set(found))  # no review picked twice


@pytest.mark.parametrize("term,coloured", [("xterm-256color", True), ("dumb", False)])
def test_the_terminal_view_is_coloured_only_on_a_terminal_that_shows_colour(runs, term, coloured):
    import pty

    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | {"TERM": term}
    p = subprocess.run([sys.executable, "-m", "rnnlab", "explain", str(runs["rnn"]), "a", "great", "film"],
                       stdout=follower, stderr=subprocess.PIPE, env=env, timeout=120)
    os.close(follower)
    out = b""
    with contextlib.suppress(OSError):  # EIO once the terminal's other end is closed and read dry
        while chunk := os.read(leader, 65536):
            out += chunk
    os.close(leader)
    assert p.returncode == 0, p.stderr
    assert (b"\x1b[" in out) == coloured and b"great" in out, out[:300]


# --- from a black-box hunt (session 36): each failed on the code before -----------------------------

def test_names_with_dollar_signs_are_drawn_as_written(runs, tmp_path):
    """matplotlib read "$...$" in a run's name as a formula: --png raised and left the HTML behind."""
    run = tmp_path / "m$\\frac$"
    shutil.copytree(runs["rnn"], run)
    out = tmp_path / "out"
    out.mkdir()
    r = CliRunner().invoke(main, ["explain", str(run), "great film", "--no-attribution", "--html",
                                  str(out / "e.html"), "--png", str(out / "e.png")])
    assert r.exit_code == 0, r.output
    assert (out / "e.png").read_bytes()[:8] == PNG_MAGIC and (out / "e.html").stat().st_size > 0


@pytest.mark.parametrize("command", ["explain", "predict"])
def test_a_closed_stdout_is_one_line(runs, command):
    """explain raised AttributeError on sys.stdout None; predict printed into nothing and exited 0."""
    p = subprocess.run([sys.executable, "-m", "rnnlab", command, str(runs["rnn"]), "great film"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120,
                       preexec_fn=lambda: os.close(1))
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [
        "Error: standard output is closed; send it somewhere (e.g. > out.txt or > /dev/null)"], p.stderr


def test_outputs_never_overwrite_the_data(runs, data, tmp_path):
    """--html/--png onto the data being read (--data) or the run's own recorded data: refused, data intact."""
    mine = shutil.copytree(data, tmp_path / "data")
    run = shutil.copytree(runs["rnn"], tmp_path / "run")
    meta = json.loads((run / "meta.json").read_text())
    meta["data"]["path"] = str(mine)
    (run / "meta.json").write_text(json.dumps(meta))
    before = (mine / "test.parquet").read_bytes()
    for extra in (["--data", str(mine)], []):
        for flag in ("--html", "--png"):
            target = mine / ("test.parquet" if flag == "--html" else "train.parquet")
            r = CliRunner().invoke(main, ["explain", str(run), "--review", "0", *extra, "--no-attribution",
                                          flag, str(target)])
            assert r.exit_code == 2 and "would overwrite the data" in r.output, r.output
    assert (mine / "test.parquet").read_bytes() == before
    r = CliRunner().invoke(main, ["explain", str(run), "--review", "0", "--no-attribution", "--json"])
    assert r.exit_code == 0, r.output  # and the run still reads its data


def test_a_run_folder_whose_name_is_not_utf8_loads(runs, tmp_path):
    """safetensors opens UTF-8 names only: such a run was reported as a corrupt file."""
    run = Path(os.fsdecode(bytes(tmp_path) + b"/r\xffn"))
    shutil.copytree(runs["rnn"], run)
    r = CliRunner().invoke(main, ["predict", str(run), "great film"])
    assert r.exit_code == 0, r.output
    assert float(r.stdout.split()[-1]) == pytest.approx(float(predict_texts(*RunDir(runs["rnn"]).load_model(),
                                                                             ["great film"])[0]), abs=1e-4)


def test_a_mistyped_second_run_is_not_read_as_words(runs, tmp_path):
    r = CliRunner().invoke(main, ["explain", str(runs["rnn"]), str(tmp_path / "lstmm"), "great", "film"])
    assert r.exit_code == 2 and "not a run directory" in r.output, r.output
    r = CliRunner().invoke(main, ["explain", str(runs["rnn"]), "10/10", "great", "film", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["runs"][0]["words"][-2:] == ["great", "film"], r.output


def test_ctrl_c_while_the_png_is_written_takes_back_the_html(runs, tmp_path, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr("rnnlab.explain.write_png", interrupted)
    r = CliRunner().invoke(main, ["explain", str(runs["rnn"]), "great film", "--no-attribution",
                                  "--html", str(tmp_path / "e.html"), "--png", str(tmp_path / "e.png")])
    assert r.exit_code == 130 and not (tmp_path / "e.html").exists(), r.output


def test_a_failed_png_puts_back_the_page_it_replaced(runs, tmp_path, monkeypatch):
    """--html A --png B with A there from an earlier command: B fails (a full disk), A keeps its old page."""
    from rnnlab.io import StorageError

    page = tmp_path / "e.html"
    page.write_text("the earlier page")

    def full(*a, **k):
        raise StorageError(f"cannot write {tmp_path / 'e.png'}: no space left on device")
    monkeypatch.setattr("rnnlab.explain.write_png", full)
    r = CliRunner().invoke(main, ["explain", str(runs["rnn"]), "great film", "--no-attribution",
                                  "--html", str(page), "--png", str(tmp_path / "e.png")])
    assert r.exit_code == 2 and "no space left" in r.output, r.output
    assert page.read_text() == "the earlier page"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.html"]  # its hidden second name is gone too


def test_an_output_folder_that_cannot_be_written_is_refused_before_any_work(runs, tmp_path, monkeypatch):
    """A read-only folder for --png (as os.access reports it: root can write anywhere but on a read-only mount)."""
    import rnnlab.explain as E

    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(E.os, "access", lambda p, mode: False if Path(p) == locked else real(p, mode))
    r = CliRunner().invoke(main, ["explain", str(runs["rnn"]), "great film", "--html", str(tmp_path / "e.html"),
                                  "--png", str(locked / "e.png")])
    assert r.exit_code == 2 and "cannot write in" in r.output and not (tmp_path / "e.html").exists(), r.output


def test_side_by_side_views_underline_unknown_words_and_keep_runs_apart(runs):
    exps = explain_runs([runs["rnn"], runs["bow"], runs["lstm"]], REVIEW, attribution=False)
    unk = [e.words[j] for e in exps[:1] for j in range(len(e.words)) if e.ids[j] == 1]
    assert unk and "\x1b[4m" in render_terminal(exps, colour=True, width=200)
    page = render_html(exps)
    moves = page.split("How far each word moves")[1]  # its legend: the rnn and the lstm in their own colours
    assert 'stroke="#222222"' in moves and 'stroke="#1b9e77"' in moves and 'stroke="#7b3294"' not in moves
    seven = explain_runs([runs["rnn"]] * 7, REVIEW, attribution=False)
    assert render_html(seven).count('stroke-dasharray="6 3"') >= 2  # the 7th run's line and its swatch


def test_a_tail_cut_review_says_where_its_prefixes_start(runs):
    """A run that kept a review's last tokens scores prefixes of what it kept, not the review cut there."""
    long = " ".join(["great film"] * 20)
    e = explain_runs([runs["rnn-tail"]], long, attribution=False)[0]
    assert e.start > 0 and f"from token {e.start + 1}, the first it kept" in e.reading
    assert "the first it kept" not in explain_runs([runs["rnn-tail"]], "great film", attribution=False)[0].reading


def _made_up(opinion, attribution, grad=None, change=None) -> Explanation:
    """An explanation with chosen numbers, for the views alone (no model)."""
    n = len(opinion)
    words = [f"w{k}" for k in range(n)]
    return Explanation("run", "rnn", "last", "h_t", words, list(range(2, n + 2)), 0, list(range(n)), n, "",
                       list(opinion), attribution, "IG", 0.0, 0.0, grad or [1e-3 * (k + 1) for k in range(n)],
                       change, 0.0, opinion[-1], "positive" if opinion[-1] > 0.5 else "negative", False)


def test_colours_blue_for_positive_red_for_negative_attribution_scaled_by_the_largest():
    from rnnlab.explain_views import MID_RGB, NEG_RGB, POS_RGB, _rgb, attribution_colours, opinion_colour

    assert (opinion_colour(1.0), opinion_colour(0.0), opinion_colour(0.5)) == (POS_RGB, NEG_RGB, MID_RGB)
    assert attribution_colours([0.2, -0.1, 0.0]) == [POS_RGB, _rgb(-0.5), MID_RGB]  # relative to max |a| = 0.2
    assert attribution_colours([-4.0, 1.0]) == [NEG_RGB, _rgb(0.25)]
    assert _rgb(0.5) == tuple(round((m + e) / 2) for m, e in zip(MID_RGB, POS_RGB))


def test_html_colours_and_hover_numbers_are_each_tokens_own():
    """One run: each word's background is its own running opinion (the first view) and its own attribution
    (the second), and its hover names its own numbers, not another token's."""
    from rnnlab.explain_views import _hex, attribution_colours, opinion_colour

    e = _made_up([1.0, 0.0, 0.25, 0.6], [0.5, -0.25, 0.0, 0.1], change=[1.0, 2.0, 3.0, 4.0])
    spans = re.findall(r'<span class="t w[^"]*" style="background:(#[0-9a-f]{6})[^"]*" title="([^"]*)">([^<]*)</span>',
                       render_html([e]))
    assert [w for _, _, w in spans] == e.words * 2  # the opinion view, then the attribution view
    assert [c for c, _, _ in spans[:4]] == [_hex(opinion_colour(p)) for p in e.opinion]
    assert [c for c, _, _ in spans[4:]] == [_hex(c) for c in attribution_colours(e.attribution)]
    for k, (_, tip, _) in enumerate(spans[:4]):
        assert f"token {k + 1}: w{k}" in tip and f"P(positive) {e.opinion[k]:.3f}" in tip, tip
        assert f"attribution {e.attribution[k]:+.4f}" in tip and f"|dL/dx| {e.grad_norm[k]:.2e}" in tip, tip
        assert f"|h_t - h_t-1| {e.state_change[k]:.3f}" in tip, tip


def test_png_attribution_bars_are_blue_up_red_down(tmp_path, monkeypatch):
    import matplotlib.colors

    import rnnlab.plots
    from rnnlab.explain_views import NEG_RGB, POS_RGB

    drawn = []
    monkeypatch.setattr(rnnlab.plots, "save_figure", lambda fig, path, **kw: drawn.append(fig))
    e = _made_up([0.6, 0.4, 0.7], [0.3, -0.2, 0.0])
    write_png([e], tmp_path / "e.png")
    (fig,) = drawn
    bars = fig.axes[1].patches
    assert [b.get_height() for b in bars] == pytest.approx(e.attribution)
    rgb = [tuple(round(255 * c) for c in matplotlib.colors.to_rgb(b.get_facecolor())) for b in bars]
    assert rgb == [POS_RGB, NEG_RGB, POS_RGB]


def test_attributions_that_do_not_add_up_are_drawn_faded_and_said_to_be_no_reasons(tmp_path, monkeypatch):
    """A learner read the full-colour bars of a failed completeness check (they added up to -3.3 where the logit
    moved +1.2) as the reasons for a positive answer: such bars and words are now faded, with the why beside them."""
    import dataclasses

    import rnnlab.plots
    from rnnlab.explain import attribution_warning
    from rnnlab.explain_views import _card, _hex, _rgb, attribution_colours, header_lines

    good = _made_up([0.6, 0.4, 0.7], [0.3, -0.2, 0.001])
    bad = dataclasses.replace(good, logit=2.0, attribution_delta=0.101 - 2.0)
    assert not attribution_warning(good) and attribution_warning(bad)
    assert good.to_dict()["attribution_warning"] == "" and bad.to_dict()["attribution_warning"] == attribution_warning(bad)
    assert Explanation.from_dict(json.loads(bad.to_json())) == bad  # the extra key is read back as nothing
    assert attribution_colours(bad.attribution, faded=True) == [_rgb(a / 0.3 / 3) for a in bad.attribution]  # a third
    for e, faded in ((good, False), (bad, True)):
        spans = re.findall(r'<span class="t w[^"]*" style="background:(#[0-9a-f]{6})', render_html([e]))
        assert spans[3:] == [_hex(c) for c in attribution_colours(e.attribution, faded=faded)]
        assert ("not the reasons for the answer" in _card(e)) == faded
        assert "<b>w2</b> +0.001" in _card(e)  # listed as the terminal lists it (at 2 decimals the page said "none")
    tiny = _made_up([0.6, 0.4, 0.7], [0.3, -0.2, 0.0004])
    assert "<b>w2</b>" not in _card(tiny) and "w2 +0.000" not in "\n".join(header_lines(tiny))  # +0.000: in neither
    drawn = []
    monkeypatch.setattr(rnnlab.plots, "save_figure", lambda fig, path, **kw: drawn.append(fig))
    write_png([good], tmp_path / "good.png")
    write_png([bad], tmp_path / "bad.png")
    for fig, faded in zip(drawn, (False, True)):
        assert {b.get_alpha() for b in fig.axes[1].patches} == ({0.35} if faded else {1.0})
        said = [" ".join(t.get_text().split()) for t in fig.axes[1].texts]  # wrapped to the panel's width
        assert said == (["completeness fails: these bars add up to +0.101 where the logit moved +2.000; read them as "
                         "a rough picture, not as the reasons for the answer"] if faded else [])
    cut = dataclasses.replace(good, truncation="read the last 3 of the review's 9 tokens (...): 6 tokens were cut")
    assert "6 tokens were cut. Running opinion:" in _card(cut)


def test_a_one_token_review_draws_points_and_a_bar_of_a_bars_width(tmp_path, monkeypatch):
    """A one-token review drew empty line panels (one point, no marker) and one bar filling its whole panel;
    its title said "1 tokens"."""
    import rnnlab.plots

    drawn = []
    monkeypatch.setattr(rnnlab.plots, "save_figure", lambda fig, path, **kw: drawn.append(fig))
    write_png([_made_up([0.3], [-0.5], change=[2.0])], tmp_path / "one.png")
    (fig,) = drawn
    assert fig.axes[0].lines[-1].get_marker() == "o" and fig.axes[-1].get_xlim() == (-4.0, 4.0)
    assert fig._suptitle.get_text().endswith(", 1 token")


def test_top_words_strongest_first():
    from rnnlab.explain_views import top_words

    e = _made_up([0.5] * 5, [0.1, 0.5, -0.3, 0.3, -0.6])
    pos, neg = top_words(e, k=2)
    assert pos == [("w1", 0.5), ("w3", 0.3)] and neg == [("w4", -0.6), ("w2", -0.3)]
    e.ids[1] = e.ids[4] = 1  # read as <unk>: marked as the table marks it (session 64's second hunt: "wow +0.073"
    pos, neg = top_words(e, k=2)  # named a word a run of vocabulary 3 had never seen)
    assert pos == [("w1 (unk)", 0.5), ("w3", 0.3)] and neg == [("w4 (unk)", -0.6), ("w2", -0.3)]


@pytest.mark.parametrize("late,seed", [(0.5, 0), (0.03, 0), (0.5, 1)])  # 0.03: not the first long review here
def test_pick_reviews_takes_the_first_review_of_the_seeded_order_that_meets_each_rule(runs, data, late, seed):
    """Each rule's pick recomputed the slow way: every review explained, in the seeded order, the first that
    meets the rule (and was not picked by an earlier one) taken; the P(positive) recorded is the model's answer."""
    split = load_imdb(data).test
    rnn, lstm = load_run(runs["rnn"]), load_run(runs["lstm"])
    picks = pick_reviews(split, rnn, lstm, long_min=40, late=late, short=(5, 15), seed=seed)
    seen = [(int(i), explain_runs([rnn], split.texts[i], attribution=False)[0])
            for i in np.random.default_rng(seed).permutation(len(split))]
    right = lambda p, i: (p > 0.5) == (int(split.labels[i]) == 1)  # noqa: E731
    long_ = next(((i, e) for i, e in seen if len(e) >= 40 and 0 < decided_at(e.opinion) >= (1 - late) * len(e)),
                 (None, None))
    assert picks[0]["index"] == long_[0]
    if long_[0] is not None:
        assert picks[0]["rnn_p"] == pytest.approx(long_[1].p_positive, abs=1e-6)
        assert picks[0]["decided_at_token"] == decided_at(long_[1].opinion) + 1
    short = next(((i, e) for i, e in seen if 5 <= len(e) <= 15 and i != long_[0]), (None, None))
    assert picks[1]["index"] == short[0] and picks[1]["rnn_p"] == pytest.approx(short[1].p_positive, abs=1e-6)
    third = next(((i, e) for i, e in seen if i not in (long_[0], short[0]) and not right(e.p_positive, i)
                  and right(explain_runs([lstm], split.texts[i], attribution=False)[0].p_positive, i)), (None, None))
    assert picks[2]["index"] == third[0]
    assert f"that {rnn.name} classifies wrongly and {lstm.name} rightly" in picks[2]["criterion"]


def test_a_long_wait_through_a_model_run_once_per_prefix_is_announced(runs, monkeypatch):
    """The Transformer and the CNN run once per prefix (time grows faster than the length squared): past
    PER_PREFIX_NOTE_TOKENS tokens read, a note before the wait; none for a recurrent run, nor for a short review."""
    import rnnlab.explain as E
    from rnnlab.text import tokenize

    n = len(tokenize(REVIEW, False))
    monkeypatch.setattr(E, "PER_PREFIX_NOTE_TOKENS", n - 1)
    args = ["explain", str(runs["transformer"]), str(runs["rnn"]), str(runs["cnn"]), "--no-attribution", "--text", REVIEW]
    r = CliRunner().invoke(main, args)
    notes = [line for line in r.stderr.splitlines() if "prefixes anew" in line]
    assert r.exit_code == 0 and len(notes) == 2, r.stderr
    assert notes[0].startswith(f"note: transformer (transformer) reads each of the review's {n:,} prefixes anew")
    assert notes[1].startswith("note: cnn (cnn) reads each")  # a run is named as explain's views name it
    monkeypatch.setattr(E, "PER_PREFIX_NOTE_TOKENS", n)
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0 and "prefixes anew" not in r.stderr


@pytest.mark.parametrize("kind", ["rnn", "transformer"])
def test_the_attribution_baseline_is_zero_embeddings_whatever_the_pad_row_holds(runs, kind):
    """The note says the baseline is zero embeddings: it is, though a damaged or edited file's <pad> row is not zero
    (it took that row: every attribution 0.0000 and another baseline logit, the note unchanged)."""
    import torch

    clean = explain(load_run(runs[kind]), REVIEW)
    run = load_run(runs[kind])
    with torch.no_grad():
        run.model.embedding.weight[0] = torch.linspace(-3.0, 3.0, run.model.embedding.embedding_dim)  # a LayerNorm
        # would take a uniform row away
    damaged = explain(run, REVIEW)
    assert damaged.baseline_logit == pytest.approx(clean.baseline_logit, abs=1e-6)
    np.testing.assert_allclose(damaged.attribution, clean.attribution, rtol=0, atol=1e-5)


# --- from the mutation test of session 45's code (session 46) ---------------------------------------
SMALL_RUN = ["--preset", "default", "--epochs", "1", "--embed-dim", "16", "--hidden-dim", "16", "--vocab-size", "60",
             "--batch-size", "16"]


@pytest.fixture
def available(monkeypatch):
    monkeypatch.setattr(memory_mod, "CHECK_FROM", 0)
    return lambda n: monkeypatch.setattr(memory_mod, "memory_available", lambda: n)


def _train(out, tiny_data, *args):
    res = CliRunner().invoke(main, ["train", "--data", str(tiny_data), "--out", str(out), *SMALL_RUN, *args])
    assert res.exit_code == 0, res.output
    return out


def test_a_run_trained_with_a_max_len_is_checked_for_the_tokens_it_reads(tmp_path, tiny_data, available):
    """The refusal's own advice is "use a run trained with a --max-len": such a run explains a long review in
    the memory its max_len needs, not the whole review's."""
    from rnnlab.explain import load_run

    run = _train(tmp_path / "cut", tiny_data, "--model", "lstm", "--max-len", "100")
    review = " ".join(["great film"] * 2_000)  # 4,000 tokens, 100 read
    per = memory_mod.token_bytes(load_run(run).model, backward=True)
    available(100 * per + memory_mod.WORKSPACE)  # enough for 100 tokens, far from enough for 4,000
    res = CliRunner().invoke(main, ["explain", str(run), review, "--no-attribution"])
    assert res.exit_code == 0, res.output


def test_a_short_review_through_a_model_run_once_per_prefix_needs_its_own_prefixes_not_64(tmp_path, tiny_data,
                                                                                          available):
    """Fewer tokens than PREFIX_CHUNK: a pass holds L prefixes of L tokens, not 64 of them."""
    from rnnlab.explain import load_run
    from rnnlab.models import PREFIX_CHUNK

    run = _train(tmp_path / "tf", tiny_data, "--model", "transformer", "--max-len", "0", "--pool", "mean")
    review = " ".join(["great film"] * 10)  # 20 tokens
    model = load_run(run).model
    L = 20
    need = max(L * memory_mod.token_bytes(model, backward=True), L * L * memory_mod.token_bytes(model))
    assert need < PREFIX_CHUNK * L * memory_mod.token_bytes(model)
    available(need + memory_mod.WORKSPACE)
    res = CliRunner().invoke(main, ["explain", str(run), review, "--no-attribution"])
    assert res.exit_code == 0, res.output


def test_the_terminal_lists_leave_out_words_that_round_to_zero():
    """As the HTML card does (a mutant that dropped the filter from the positive list passed)."""
    from rnnlab.explain_views import header_lines

    lines = header_lines(_made_up([0.6, 0.4, 0.7], [0.3, -0.2, 0.0004]))
    assert "  pushed towards positive: w0 +0.300" in lines and "  pushed towards negative: w1 -0.200" in lines, lines


def test_one_token_cut_is_singular(runs):
    (e,) = explain_runs([runs["rnn-head"]], " ".join(["great"] * 13), attribution=False)
    assert e.truncation.endswith("tokens (max_len 12, truncate head): 1 token was cut"), e.truncation
    (e,) = explain_runs([runs["rnn-head"]], " ".join(["great"] * 14), attribution=False)
    assert e.truncation.endswith(": 2 tokens were cut"), e.truncation


def test_split_is_refused_only_for_the_one_file_forms_that_are_a_split_of_their_own(tmp_path):
    """A reviewer's regression: --split with a tarball (one file holding both splits) was refused too."""
    from rnnlab.explain import _one_split

    for name, one in (("mine.csv", True), ("test.PARQUET", True), ("aclImdb_v1.tar.gz", False), ("d", False)):
        (tmp_path / name).write_text("x")
        assert _one_split(str(tmp_path / name)) is one, name
    assert not _one_split(str(tmp_path)) and not _one_split("x" * 5000) and not _one_split("a\0b.csv")


def test_a_file_takes_the_words_and_the_terminal_gets_each_runs_answer(runs, tmp_path):
    """With --html or --png the per-token table (a row per token: 1,000 rows for a long review) is not printed too:
    the terminal shows each run's header, its answer and the words that pushed it."""
    for flags in (["--html", str(tmp_path / "e.html")], ["--png", str(tmp_path / "e.png")]):
        r = CliRunner().invoke(main, ["explain", str(runs["rnn"]), str(runs["lstm"]), "--text", REVIEW, *flags])
        assert r.exit_code == 0, r.output
        assert "P(positive) = " in r.stdout and r.stdout.count("pushed towards positive") == 2
        assert "\n\nlstm (lstm" in r.stdout and "\n\naligned: " in r.stdout  # a blank line between runs; the alignment
        assert "columns: t = " not in r.stdout and "|dL/dx|" not in r.stdout  # no table
        assert "\x1b[" not in r.stdout
    r = CliRunner().invoke(main, ["explain", str(runs["rnn"]), "--text", REVIEW, "--plain"])
    assert "columns: t = " in r.stdout  # without a file, the table


@pytest.mark.parametrize("text", ["a great film", "one two three four five six seven eight nine ten eleven twelve"])
def test_the_charts_label_each_token_place_once(runs, text):
    """A review of up to 10 tokens labelled token 1 twice on every chart's axis (stranger's walkthrough)."""
    page = render_html(explain_runs([runs["rnn"]], text, attribution=False))
    for chart in re.findall(r"<svg viewBox.*?</svg>", page):
        places = [int(x) for x in re.findall(r'text-anchor="middle">(\d+)</text>', chart)]
        assert places and places == sorted(set(places)) and places[0] == 1, places


def test_the_figures_gradient_axis_has_numbers_at_both_ends(runs, tmp_path, monkeypatch):
    """Gradients within one power of ten left the log axis a single label (or only minor ones, 0.08-0.1): its ends
    are now whole powers of ten, so at least two are labelled."""
    import rnnlab.plots

    drawn = []
    monkeypatch.setattr(rnnlab.plots, "save_figure", lambda fig, path, **kw: drawn.append(fig))
    exps = explain_runs([runs["rnn"]], "a great film", attribution=False)
    e = exps[0]
    exps = [dataclasses.replace(e, grad_norm=[0.012, 0.02, 0.03][:len(e)])]  # within one decade
    write_png(exps, tmp_path / "e.png")
    grad = next(a for a in drawn[0].axes if a.get_yscale() == "log")
    lo, hi = grad.get_ylim()
    assert (lo, hi) == pytest.approx((0.01, 0.1)), (lo, hi)
    import matplotlib.pyplot as plt

    plt.close(drawn[0])


def test_a_run_name_with_a_terminals_escape_codes_is_shown_not_obeyed(runs, tmp_path):
    """A run folder (or --html path) named with ESC[2J or an OSC title sequence reached the terminal raw: the header
    cleared the screen and set the window's title; the SVG figure was not well-formed XML (the HTML audit)."""
    from xml.dom import minidom

    run = tmp_path / "evil\x1b[2J\x1b]0;pwned\x07run"
    shutil.copytree(runs["rnn"], run)
    for extra in ([], ["--plain"], ["--html", str(tmp_path / "o\x1b[2J.html")], ["--png", str(tmp_path / "f.svg")]):
        r = CliRunner().invoke(main, ["explain", str(run), "--text", REVIEW, "--no-attribution", *extra])
        assert r.exit_code == 0, r.output
        assert "\x1b[2J" not in r.output and "\x1b]" not in r.output and "\x07" not in r.output, extra
        assert "evil\\x1b[2J\\x1b]0;pwned\\x07run" in r.output, extra
    assert "evil" in minidom.parse(str(tmp_path / "f.svg")).toxml()
    strip = tmp_path / "strip\x1b]0;pwned\x07"  # in a note too: runs that read the review differently
    shutil.copytree(runs["rnn-strip"], strip)
    r = CliRunner().invoke(main, ["explain", str(runs["rnn"]), str(strip), "--plain", "--text", "<br /><br />"])
    assert r.exit_code == 0 and "\x07" not in r.output and "strip\\x1b]0;pwned\\x07: the review has no word" in r.stderr


def test_json_writes_a_value_that_is_not_a_number_as_null(runs, monkeypatch):
    """An attribution of 0/0 printed NaN, which is not JSON (a strict parser refuses the whole object)."""
    import rnnlab.explain

    real = rnnlab.explain.explain_runs

    def with_nan(*a, **k):
        return [dataclasses.replace(e, attribution=[math.nan] + e.attribution[1:], attribution_delta=math.inf)
                for e in real(*a, **k)]

    pytest.importorskip("captum")
    monkeypatch.setattr(rnnlab.explain, "explain_runs", with_nan)
    r = CliRunner().invoke(main, ["explain", str(runs["rnn"]), "--text", REVIEW, "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    assert out["runs"][0]["attribution"][0] is None and out["runs"][0]["attribution_delta"] is None
    (e,) = real([runs["rnn"]], REVIEW)
    assert json.loads(dataclasses.replace(e, attribution_delta=math.nan).to_json())["attribution_delta"] is None


def test_an_empty_review_from_the_data_is_refused_without_a_note_on_how_it_would_be_read(runs, tmp_path):
    """`--review 0` of a file whose review is empty said "the model reads one <unk> token", then refused it."""
    f = tmp_path / "e.csv"
    f.write_text('text,label\n"",1\n"good film",0\n', encoding="utf-8")
    r = CliRunner().invoke(main, ["explain", str(runs["rnn"]), "--review", "0", "--data", str(f)])
    assert r.exit_code == 2 and "note:" not in r.output, r.output
    assert r.stderr.strip().splitlines() == [f"Error: empty review (review 0 of {f}): there is nothing to explain"]
    assert CliRunner().invoke(main, ["explain", str(runs["rnn"]), "--review", "1", "--data", str(f)]).exit_code == 0
