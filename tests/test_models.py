"""Models against references: the hand-written kernels vs nn.RNN, padding and batch invariance."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from rnnlab.config import TrainConfig
from rnnlab.kernels import tanh_rnn_layer
from rnnlab.models import RecurrentClassifier, build_model, count_parameters

KINDS = ["rnn", "lstm", "gru", "bow", "transformer", "cnn"]
# every (model, pool) a config accepts: only the recurrent models have a last state to read
KIND_POOL = [(k, p) for k in KINDS for p in ("last", "mean", "max") if k in ("rnn", "lstm", "gru") or p != "last"]


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


def test_unrolled_backward_does_not_scatter_each_step_into_the_whole_sequence():
    """Each step reads its slice of the input projection through unbind (one stacked gradient), not
    xw[:, t], whose backward fills a zero (B, T, H) tensor per step: T^2 memory traffic, 1 GB at T 800."""
    tokens, lengths = _batch(B=2, T=12)
    logits, _ = RecurrentClassifier("rnn", 50, 8, 6).unrolled(tokens, lengths)
    seen, todo = set(), [logits.grad_fn]
    while todo:
        fn = todo.pop()
        if fn is not None and fn not in seen:
            seen.add(fn)
            todo += [nxt for nxt, _ in fn.next_functions]
    names = {type(fn).__name__ for fn in seen}
    assert "UnbindBackward0" in names and "SelectBackward0" not in names, names


@pytest.mark.parametrize("kind,pool", KIND_POOL)
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


@pytest.mark.parametrize("kind,pool", KIND_POOL)
def test_forward_steps_is_the_prediction_on_every_prefix(kind, pool):
    """The running opinion: steps[:, t] is what the model outputs for the review cut after token t."""
    torch.manual_seed(5)
    model = build_model(TrainConfig(model=kind, embed_dim=8, hidden_dim=8, pool=pool, vocab_size=50), 50).eval()
    tokens, lengths = _batch(B=4, T=11)
    lengths[1] = 1  # a one-token review must be there
    tokens[1, 1:] = 0
    with torch.no_grad():
        logits, steps = model.forward_steps(tokens, lengths)
        assert steps.shape == tokens.shape
        torch.testing.assert_close(logits, model(tokens, lengths))
        for b in range(len(lengths)):
            for t in range(int(lengths[b])):  # slow reference: the model on the prefix alone
                ref = model(tokens[b:b + 1, : t + 1], torch.tensor([t + 1]))
                torch.testing.assert_close(steps[b, t], ref[0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(steps[torch.arange(4), lengths - 1], logits, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", ["bow", "transformer", "cnn"])
def test_models_without_a_last_state_refuse_pool_last(kind):
    from rnnlab.config import ConfigError

    with pytest.raises(ConfigError, match="no last state"):
        TrainConfig(model=kind, pool="last")
    with pytest.raises(ValueError, match="no last state"):  # the model itself refuses too, not only the config
        from rnnlab.models import BagOfEmbeddings, CNNClassifier, TransformerClassifier

        {"bow": lambda: BagOfEmbeddings(10, 4, pool="last"), "cnn": lambda: CNNClassifier(10, 4, 4, pool="last"),
         "transformer": lambda: TransformerClassifier(10, 4, 4, pool="last")}[kind]()


def test_transformer_refuses_a_width_its_heads_cannot_split():
    from rnnlab.models import TransformerClassifier

    with pytest.raises(ValueError, match="not divisible by 4 attention heads"):
        TransformerClassifier(10, 6, 8, pool="mean")


@pytest.mark.parametrize("T", [1, 2, 9])
def test_tanh_kernel_two_layers_match_nn_rnn(T):
    """Two stacked kernel layers (as run_recurrent stacks them) against nn.RNN(num_layers=2), short T too."""
    from rnnlab.models import run_recurrent

    torch.manual_seed(T)
    rnn = nn.RNN(5, 4, num_layers=2, batch_first=True)
    x = torch.randn(3, T, 5, requires_grad=True)
    ref = rnn(x)[0]
    w = torch.randn_like(ref)
    (ref * w).sum().backward()
    want = [p.grad.clone() for p in rnn.parameters()] + [x.grad.clone()]
    rnn.zero_grad()
    x.grad = None
    out = run_recurrent(rnn, x)
    torch.testing.assert_close(out, ref, atol=2e-6, rtol=1e-5)
    (out * w).sum().backward()
    for a, b in zip([p.grad for p in rnn.parameters()] + [x.grad], want):
        torch.testing.assert_close(a, b, atol=5e-5, rtol=1e-4)


def test_tanh_kernel_gradcheck_float64():
    torch.manual_seed(0)
    args = (torch.randn(2, 6, 3, dtype=torch.float64, requires_grad=True),
            *(torch.randn(*s, dtype=torch.float64, requires_grad=True) * 0.5 for s in ((4, 3), (4, 4), (4,), (4,))))
    args = tuple(a.detach().requires_grad_() for a in args)
    assert torch.autograd.gradcheck(tanh_rnn_layer, args, eps=1e-6, atol=1e-6)


def test_the_cnn_reads_five_tokens_a_filter_keeping_each_reviews_length():
    """Conv1d(kernel 5, padding 2): 5 x embed_dim x hidden_dim weights, one output per token."""
    from rnnlab.models import CNNClassifier

    m = CNNClassifier(50, 8, 6)
    assert m.conv.kernel_size == (5,) and m.conv.padding == (2,)
    assert count_parameters(m) == 50 * 8 + (5 * 8 * 6 + 6) + (6 + 1)


@pytest.mark.parametrize("kind", ["bow", "transformer", "cnn"])
def test_forward_steps_covers_every_prefix_of_a_review_longer_than_one_chunk(kind):
    """Prefixes go PREFIX_CHUNK at a time: a review of more tokens than that needs them all, across chunks."""
    from rnnlab.models import PREFIX_CHUNK

    torch.manual_seed(5)
    model = build_model(TrainConfig(model=kind, embed_dim=8, hidden_dim=8, pool="mean", vocab_size=50), 50).eval()
    T = 2 * PREFIX_CHUNK + 3
    tokens, lengths = _batch(B=1, T=T)
    with torch.no_grad():
        _, steps = model.forward_steps(tokens, lengths)
        ref = torch.stack([model(tokens[:, : t + 1], torch.tensor([t + 1]))[0] for t in range(T)])
    torch.testing.assert_close(steps[0], ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind, pool", [("lstm", "last"), ("rnn", "mean")])
def test_unrolled_is_only_the_vanilla_rnn_reading_its_last_state(kind, pool):
    tokens, lengths = _batch(B=2, T=5)
    with pytest.raises(ValueError, match="vanilla RNN reading its last state"):
        RecurrentClassifier(kind, 50, 8, 6, pool=pool).unrolled(tokens, lengths)
