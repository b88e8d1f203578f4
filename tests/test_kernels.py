"""The LSTM / GRU training kernels against nn.LSTM / nn.GRU: values, every gradient, gradcheck."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from rnnlab import kernels
from rnnlab.kernels import gru_layer, lstm_layer

LAYERS = {"lstm": (nn.LSTM, lstm_layer), "gru": (nn.GRU, gru_layer)}


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: a second thread only adds OpenMP hand-offs (seconds on a busy machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _weights(module: nn.RNNBase, layer: int = 0):
    return [getattr(module, f"{n}_l{layer}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]


def _reference(module, x, w):
    """The nn module's output and gradients of (out * w).sum() w.r.t. x and every parameter."""
    out = module(x)[0]
    grads = torch.autograd.grad((out * w).sum(), [x, *module.parameters()])
    return out.detach(), grads


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("B,T", [(3, 1), (5, 2), (8, 17), (4, 17)])
@pytest.mark.parametrize("rows", [1024, 8])  # one chunk, or chunks of 1-2 steps (chunk boundaries)
def test_matches_nn_module_values_and_gradients(kind, B, T, rows, monkeypatch):
    monkeypatch.setattr(kernels, "ROWS_PER_CHUNK", rows)
    cls, layer = LAYERS[kind]
    torch.manual_seed(B * 100 + T)
    m = cls(6, 5, batch_first=True)
    with torch.no_grad():  # non-zero, distinct biases: b_hn must sit inside r * (W_hn h + b_hn)
        for p in m.parameters():
            p.uniform_(-0.8, 0.8)
    x = torch.randn(B, T, 6, requires_grad=True)
    w = torch.randn(B, T, 5)
    ref, ref_grads = _reference(m, x, w)
    out = layer(x, *_weights(m))
    assert out.shape == (B, T, 5)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)
    grads = torch.autograd.grad((out * w).sum(), [x, *_weights(m)])
    for name, a, b in zip(["x", "weight_ih", "weight_hh", "bias_ih", "bias_hh"], grads, ref_grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5, msg=name)


FOLDED = {"rnn": (nn.RNN, kernels.tanh_rnn_layer), **LAYERS}


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("B,T", [(3, 1), (5, 17), (4, 9)])
@pytest.mark.parametrize("rows", [1024, 8])
def test_folded_input_matches_embedding_then_nn_module(kind, B, T, rows, monkeypatch):
    """fold(embedding, tokens) into the layer == embedding(tokens) into the nn module: the states and the
    gradients of the embedding table (padding row included) and of every weight."""
    monkeypatch.setattr(kernels, "ROWS_PER_CHUNK", rows)
    cls, layer = FOLDED[kind]
    torch.manual_seed(B * 10 + T)
    emb, m = nn.Embedding(11, 6, padding_idx=0), cls(6, 5, batch_first=True)
    with torch.no_grad():
        for p in m.parameters():
            p.uniform_(-0.8, 0.8)
    tokens = torch.randint(0, 11, (B, T))
    tokens[0, -1] = 0  # padding present, and repeated tokens (11 ids over B * T positions)
    w = torch.randn(B, T, 5)
    params = [emb.weight, *_weights(m)]
    ref = m(emb(tokens))[0]
    ref_grads = torch.autograd.grad((ref * w).sum(), params)
    rows_, index = kernels.fold(emb, tokens)
    assert rows_.shape[0] == len(tokens.unique()) and torch.equal(rows_[index], emb(tokens))
    out = layer(rows_, *_weights(m), index=index)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)
    grads = torch.autograd.grad((out * w).sum(), params)
    for name, a, b in zip(["embedding", "weight_ih", "weight_hh", "bias_ih", "bias_hh"], grads, ref_grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5, msg=name)
    assert grads[0][0].abs().sum() == 0  # the padding row gets no gradient, as nn.Embedding's


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("folded", [False, True])
def test_frozen_weights_same_input_gradient_and_no_weight_gradients(kind, folded, monkeypatch):
    """Weights that do not require grad (explain freezes them): the input's gradient is the same bits as with
    trainable weights, and the weights get none (the kernels skip those matmuls)."""
    monkeypatch.setattr(kernels, "ROWS_PER_CHUNK", 8)
    cls, layer = FOLDED[kind]
    torch.manual_seed(7)
    m = cls(6, 5, batch_first=True)
    x = torch.randn(11, 6, requires_grad=True) if folded else torch.randn(4, 9, 6, requires_grad=True)
    index = torch.randint(0, 11, (4, 9)) if folded else None
    w = torch.randn(4, 9, 5)
    (trained,) = torch.autograd.grad((layer(x, *_weights(m), index=index) * w).sum(), [x])
    m.requires_grad_(False)
    (layer(x, *_weights(m), index=index) * w).sum().backward()
    assert torch.equal(x.grad, trained)
    assert all(p.grad is None for p in m.parameters())


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_folded_gradcheck_float64(kind, monkeypatch):
    monkeypatch.setattr(kernels, "ROWS_PER_CHUNK", 4)
    cls, layer = FOLDED[kind]
    torch.manual_seed(5)
    m = cls(3, 2).double()
    rows_ = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    index = torch.tensor([[0, 1, 1, 3, 2], [3, 3, 0, 2, 1]])
    ws = [p.detach().clone().requires_grad_() for p in _weights(m)]
    assert torch.autograd.gradcheck(lambda r, *w: layer(r, *w, index=index), (rows_, *ws), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_models_fold_only_where_the_embedding_feeds_the_layer(kind):
    """A training step with dropout 0 folds, and gives the dense path's logits and gradients; with dropout it
    does not fold (a position-wise mask sits between embedding and layer)."""
    from rnnlab.models import RecurrentClassifier

    torch.manual_seed(6)
    tokens, lengths = torch.randint(0, 50, (6, 21)), torch.full((6,), 21)
    model = RecurrentClassifier(kind, 50, 8, 7, layers=2)
    calls = []
    model.embedding.register_forward_hook(lambda mod, inp, out: calls.append(tuple(out.shape)))
    results = []
    for train in (True, False):
        model.train(train)
        logits = model(tokens, lengths)
        grads = torch.autograd.grad(logits.square().sum(), list(model.parameters()))
        results.append((logits, grads))
    assert calls[0] == (len(tokens.unique()), 8) and calls[1] == (6, 21, 8)  # folded, then dense
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-6, rtol=1e-5)
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    dropped = RecurrentClassifier(kind, 50, 8, 7, dropout=0.2).train()
    dropped.embedding.register_forward_hook(lambda mod, inp, out: calls.append(tuple(out.shape)))
    dropped(tokens, lengths)
    assert calls[-1] == (6, 21, 8)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_can_fail(kind):
    """The comparison above is not vacuous: a changed W_hh or a swapped bias changes the result."""
    cls, layer = LAYERS[kind]
    torch.manual_seed(0)
    m = cls(4, 3, batch_first=True)
    x = torch.randn(2, 9, 4)
    W_ih, W_hh, b_ih, b_hh = _weights(m)
    ref = m(x)[0]
    assert not torch.allclose(layer(x, W_ih, W_hh * 1.5, b_ih, b_hh), ref, atol=1e-4)
    b = b_ih + b_hh  # the same sum: only the GRU's b_hn, inside r * (...), tells them apart
    swapped = layer(x, W_ih, W_hh, b, torch.zeros_like(b))
    assert torch.allclose(swapped, ref, atol=1e-5) == (kind == "lstm")


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_gradcheck_float64(kind, monkeypatch):
    monkeypatch.setattr(kernels, "ROWS_PER_CHUNK", 4)  # B=2: chunks of 2 steps
    cls, layer = LAYERS[kind]
    torch.manual_seed(1)
    m = cls(3, 2).double()
    x = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    ws = [p.detach().clone().requires_grad_() for p in _weights(m)]
    assert torch.autograd.gradcheck(layer, (x, *ws), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_two_stacked_layers_match_two_layer_module(kind):
    cls, layer = LAYERS[kind]
    torch.manual_seed(2)
    m = cls(7, 4, num_layers=2, batch_first=True)
    x = torch.randn(5, 13, 7, requires_grad=True)
    w = torch.randn(5, 13, 4)
    ref, ref_grads = _reference(m, x, w)
    out = layer(layer(x, *_weights(m, 0)), *_weights(m, 1))
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)
    params = [x, *_weights(m, 0), *_weights(m, 1)]  # the module's parameter order
    for a, b in zip(torch.autograd.grad((out * w).sum(), params), ref_grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_pooled_buffers_never_shared_between_live_graphs(kind):
    """Two forwards alive at once (and one under no_grad) keep their own saved buffers."""
    cls, layer = LAYERS[kind]
    torch.manual_seed(3)
    m = cls(4, 3, batch_first=True)
    xs = [torch.randn(3, 11, 4, requires_grad=True) for _ in range(3)]
    refs = [_reference(m, x, torch.ones(3, 11, 3))[1][0] for x in xs]
    outs = [layer(x, *_weights(m)) for x in xs[:2]]
    with torch.no_grad():
        layer(xs[2], *_weights(m))  # its buffers go straight back to the pool...
    outs.append(layer(xs[2], *_weights(m)))  # ...and are taken again here
    for x, out, ref in zip(xs, outs, refs):
        torch.testing.assert_close(torch.autograd.grad(out.sum(), x)[0], ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("folded", [False, True])
def test_without_grad_same_states_without_the_backward_buffers(kind, folded):
    """Under no_grad (evaluation, probes, explain's running opinion) the layer skips the local derivatives
    that only backward reads: the same states, bitwise, and a pooled buffer smaller than them."""
    cls, layer = LAYERS[kind]
    torch.manual_seed(5)
    m, emb = cls(4, 8, batch_first=True), nn.Embedding(30, 4)
    tokens = torch.randint(0, 30, (3, 40))
    x, index = kernels.fold(emb, tokens) if folded else (emb(tokens), None)
    kernels.clear_pool()
    out = layer(x, *_weights(m), index=index)
    assert out.requires_grad
    with_grad, out = out.detach().clone(), None  # the graph is gone: its buffer is back in the pool
    (buf,) = kernels._pool
    kernels.clear_pool()
    with torch.no_grad():
        without = layer(x, *_weights(m), index=index)
    assert not without.requires_grad and torch.equal(with_grad, without)
    derivatives = 40 * 3 * 8 * {"lstm": 6, "gru": 5}[kind]  # D: T x B x (6 or 5) H
    assert [b.numel() for b in kernels._pool] == [buf.numel() - derivatives]


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_backward_twice_with_retain_graph(kind):
    """Backward leaves the saved tensors intact: a second pass gives the same gradients."""
    cls, layer = LAYERS[kind]
    torch.manual_seed(4)
    m = cls(4, 3, batch_first=True)
    x = torch.randn(2, 7, 4, requires_grad=True)
    loss = layer(x, *_weights(m)).square().sum()
    first = torch.autograd.grad(loss, [x, *_weights(m)], retain_graph=True)
    for a, b in zip(torch.autograd.grad(loss, [x, *_weights(m)]), first):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


_DENORMALS = """
import sys, torch
torch.set_num_threads(2)
{setup}
x = torch.full((1 << 22,), 1e-30)  # large enough that torch splits the multiply over both threads
print(int((x * 1e-10).count_nonzero()))  # 1e-40 is a denormal: 0 when flushed in every thread
"""


@pytest.mark.parametrize("setup, nonzero", [
    ("import rnnlab.models", 0),  # what training, evaluation and explain import first
    ("import os; from rnnlab.jobs import _worker_init; _worker_init(os.getppid())", 0),  # a lab worker process
    ("", 1 << 22),  # without rnnlab: the check can fail
])
def test_denormals_are_flushed_in_every_thread(setup, nonzero):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", _DENORMALS.format(setup=setup)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) == nonzero
