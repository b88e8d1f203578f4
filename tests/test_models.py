"""Models against references: the hand-written kernels vs nn.RNN, padding and batch invariance."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from rnnlab.config import TrainConfig
from rnnlab.models import (RecurrentClassifier, build_model, count_parameters, orthogonality_penalty,
                           reverse_within, tanh_rnn_layer)

KINDS = ["rnn", "lstm", "gru", "bow", "transformer", "cnn"]


def _batch(B=6, T=17, V=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    lengths[0] = T
    tokens = torch.randint(2, V, (B, T), generator=g)
    tokens[torch.arange(T)[None, :] >= lengths[:, None]] = 0
    return tokens, lengths


def test_tanh_kernel_matches_nn_rnn_values_and_gradients():
    torch.manual_seed(0)
    rnn = nn.RNN(12, 9, batch_first=True)
    x = torch.randn(4, 23, 12, requires_grad=True)
    out_ref, _ = rnn(x)
    w = torch.randn_like(out_ref)
    (out_ref * w).sum().backward()
    ref = [p.grad.clone() for p in rnn.parameters()] + [x.grad.clone()]
    rnn.zero_grad()
    x.grad = None
    out = tanh_rnn_layer(x, rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0)
    torch.testing.assert_close(out, out_ref, atol=2e-6, rtol=1e-5)
    (out * w).sum().backward()
    got = [p.grad for p in rnn.parameters()] + [x.grad]
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, atol=5e-5, rtol=1e-4)


def test_tanh_kernel_is_not_trivially_equal():
    """The comparison above can fail: a different W_hh gives different states."""
    torch.manual_seed(0)
    rnn = nn.RNN(5, 4, batch_first=True)
    x = torch.randn(2, 9, 5)
    out = tanh_rnn_layer(x, rnn.weight_ih_l0, rnn.weight_hh_l0 * 1.5, rnn.bias_ih_l0, rnn.bias_hh_l0)
    assert not torch.allclose(out, rnn(x)[0], atol=1e-4)


def test_classifier_matches_seed_model_with_packing():
    """Same weights as the notebook's VanillaRNN (packed nn.RNN): same logits and gradients."""
    torch.manual_seed(1)
    tokens, lengths = _batch()
    model = RecurrentClassifier("rnn", 50, 8, 7)
    emb = model.embedding(tokens)
    packed = nn.utils.rnn.pack_padded_sequence(emb, lengths, batch_first=True, enforce_sorted=False)
    _, h = model.rnn(packed)
    ref = model.fc(h.squeeze(0)).squeeze(-1)
    ref.sum().backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    out = model(tokens, lengths)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    out.sum().backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref_grads[n], atol=1e-5, rtol=1e-4, msg=n)


def test_unrolled_matches_fused_and_exposes_dl_dh():
    torch.manual_seed(2)
    tokens, lengths = _batch(B=5, T=30)
    model = RecurrentClassifier("rnn", 50, 8, 6)
    logits, hs = model.unrolled(tokens, lengths)
    torch.testing.assert_close(logits, model(tokens, lengths), atol=1e-5, rtol=1e-5)
    logits.sum().backward()
    assert len(hs) == 30 and all(h.grad is not None for h in hs)
    # the review of full length gets gradient at its first step; past a review's end there is none
    # beyond what is carried: dL/dh_t is defined for every t
    assert hs[0].grad[0].abs().sum() > 0


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("pool", ["last", "mean", "max"])
def test_output_independent_of_padding_and_batch(kind, pool):
    torch.manual_seed(3)
    cfg = TrainConfig(model=kind, embed_dim=8, hidden_dim=8, pool=pool, vocab_size=50)
    model = build_model(cfg, 50).eval()
    tokens, lengths = _batch(B=6, T=15)
    with torch.no_grad():
        together = model(tokens, lengths)
        for i in range(len(lengths)):
            L = int(lengths[i])
            alone = model(tokens[i:i + 1, :L], lengths[i:i + 1])  # no padding at all
            padded = model(torch.cat([tokens[i:i + 1, :L], torch.zeros(1, 40, dtype=torch.long)], 1),
                           lengths[i:i + 1])  # lots of padding
            torch.testing.assert_close(alone, together[i:i + 1], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(padded, together[i:i + 1], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_bidirectional_reads_each_review_reversed(kind):
    torch.manual_seed(4)
    cfg = TrainConfig(model=kind, embed_dim=6, hidden_dim=5, bidirectional=True, layers=2, vocab_size=50)
    model = build_model(cfg, 50).eval()
    tokens, lengths = _batch(B=4, T=12)
    with torch.no_grad():
        out = model(tokens, lengths)
        # reference: the same weights through a packed nn bidirectional module, layer by layer
        x = model.embedding(tokens)
        for f, b in zip(model.fwd, model.bwd):
            ref = nn.RNNBase  # noqa: F841 (documentation only)
            mod = type(f)(x.shape[-1], 5, batch_first=True, bidirectional=True,
                          **({"nonlinearity": "tanh"} if kind == "rnn" else {}))
            sd = {**{k: v for k, v in f.state_dict().items()},
                  **{k + "_reverse": v for k, v in b.state_dict().items()}}
            mod.load_state_dict(sd)
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            y, h = mod(packed)
            x, _ = nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=12)
        h = h[0] if isinstance(h, tuple) else h
        ref = model.fc(torch.cat([h[-2], h[-1]], -1)).squeeze(-1)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)


def test_reverse_within_keeps_padding_in_place():
    x = torch.arange(10.0).view(2, 5, 1)
    r = reverse_within(x, torch.tensor([3, 5]))
    assert r[0, :, 0].tolist() == [2, 1, 0, 3, 4] and r[1, :, 0].tolist() == [9, 8, 7, 6, 5]


def test_factory_raises_on_unknown_kind_and_counts_seed_parameters():
    import dataclasses

    cfg = TrainConfig()
    m = build_model(cfg, 20000)
    # Embedding 20000x100 + RNN(100,128) + Linear(128,1): the notebook's model
    assert count_parameters(m) == 20000 * 100 + (100 * 128 + 128 * 128 + 2 * 128) + 129
    bad = dataclasses.replace(cfg)
    object.__setattr__(bad, "model", "foo")
    with pytest.raises(ValueError, match="unknown model kind"):
        build_model(bad, 10)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_every_step_logits_end_with_the_prediction(bidirectional):
    torch.manual_seed(0)
    m = RecurrentClassifier("rnn", 50, 8, 12, bidirectional=bidirectional).eval()
    tokens, lengths = _batch()
    logits, steps = m(tokens, lengths, every_step=True)
    assert torch.equal(logits, m(tokens, lengths))
    assert steps.shape == tokens.shape
    at_end = steps[torch.arange(len(lengths)), lengths - 1]
    if bidirectional:  # the step at len-1 pairs the forward end with the backward state at len-1
        assert not torch.allclose(at_end, logits)
        assert torch.allclose(steps[:, 0][lengths == 1], logits[lengths == 1])
    else:  # unidirectional: the prediction is the classifier on the state at the last real token
        assert torch.allclose(at_end, logits, atol=1e-6)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_orthogonality_penalty_is_zero_for_orthogonal_recurrence_only(kind):
    torch.manual_seed(0)
    ortho = RecurrentClassifier(kind, 30, 8, 16, layers=2, recurrent_init="orthogonal")
    assert orthogonality_penalty(ortho).item() == pytest.approx(0.0, abs=1e-9)
    with torch.no_grad():  # scale one gate block of one layer by 2: each of its 16 singular values 1 -> 2
        ortho.rnn.weight_hh_l1[:16].mul_(2.0)
    assert orthogonality_penalty(ortho).item() == pytest.approx(16 * (4 - 1) ** 2, rel=1e-4)
    penalty = orthogonality_penalty(RecurrentClassifier(kind, 30, 8, 16))  # PyTorch's uniform init
    assert penalty.item() > 1.0
    penalty.backward()  # differentiable: it is added to the training loss
    assert orthogonality_penalty(build_model(TrainConfig(model="bow"), 30)).item() == 0.0
