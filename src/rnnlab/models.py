"""Every classifier behind one interface: `forward(tokens, lengths) -> logits`.

    from rnnlab.models import build_model
    model = build_model(cfg, vocab_size=20000)      # cfg.model in rnn|lstm|gru|bow|transformer|cnn
    logits = model(tokens, lengths)                  # tokens (B, T) right-padded with 0; logits (B,)

The recurrent models read the hidden state at each review's last real token (`pool=last`,
the notebook's model), or pool over all hidden states (`mean`, `max`). Padding never reaches
the result: a unidirectional RNN is causal, so its state at step len-1 is the same whether the
batch is padded or not, and the backward direction of a bidirectional model reads each review
reversed within its length. Batches run dense, never packed: on CPU, packed sequences run
several times slower (benchmarks/speed.py). On CPU the vanilla RNN trains through
`_TanhRecurrence`, a hand-written BPTT kernel (PyTorch has no fused CPU RNN kernel); on a GPU
through cuDNN. `RecurrentClassifier.unrolled` writes the vanilla RNN out as an explicit loop over
time and keeps each h_t, so experiments can read dL/dh_t. Tests prove all three agree with nn.RNN.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import RECURRENT_KINDS, TrainConfig


def mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """(B, T) bool, True at real tokens."""
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]


def _pool(out: torch.Tensor, lengths: torch.Tensor, pool: str) -> torch.Tensor:
    """Reduce (B, T, F) states to (B, F): at the last real step, mean or max over real steps."""
    B, T, _ = out.shape
    if pool == "last":
        return out[torch.arange(B, device=out.device), lengths - 1]
    m = mask(lengths, T).unsqueeze(-1)  # (B, T, 1)
    if pool == "mean":
        return (out * m).sum(1) / lengths.clamp(min=1).unsqueeze(-1).to(out.dtype)
    return out.masked_fill(~m, float("-inf")).max(1).values


def reverse_within(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each row's first `len` steps of (B, T, F), padding stays at the end."""
    B, T = x.shape[:2]
    t = torch.arange(T, device=x.device)[None, :]
    idx = torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)  # (B, T)
    return x.gather(1, idx.unsqueeze(-1).expand_as(x))


class _TanhRecurrence(torch.autograd.Function):
    """hs[t] = tanh(xw[t] + hs[t-1] @ W_hh.T) with hs[-1] = 0, and hand-written BPTT.

    PyTorch has no fused RNN kernel on CPU (it runs one autograd node per step), so this is the
    CPU training kernel; `tests/test_models.py` checks values and gradients against nn.RNN.
    Forward keeps s = (h + 1) / 2 = sigmoid(2z), so each step is one addmm and one in-place
    sigmoid (tanh itself is ~3x slower than sigmoid on CPU); backward is one mul and one addmm
    per step, with the weight gradient as one big matmul at the end.
    """

    @staticmethod
    def forward(ctx, xw, W_hh):  # xw: (T, B, H) input projection plus both biases; W_hh: (H, H)
        T = xw.shape[0]
        W4 = W_hh.t() * 4.0
        row = 2.0 * W_hh.sum(1)  # (H,): the "-1" of h = 2s - 1, pushed through W_hh
        c = (xw * 2.0).sub_(row)  # z_t * 2 = 2 xw_t + 4 s_{t-1} W^T - 2 (1 W^T)
        c[0].add_(row)  # h_{-1} = 0: no recurrent term at t = 0
        s = torch.empty_like(xw)
        prev = torch.sigmoid(c[0], out=s[0])
        for t in range(1, T):
            prev = torch.addmm(c[t], prev, W4, out=s[t]).sigmoid_()
        hs = s.mul_(2.0).sub_(1.0)  # (T, B, H)
        ctx.save_for_backward(hs, W_hh)
        return hs

    @staticmethod
    def backward(ctx, dhs):
        hs, W_hh = ctx.saved_tensors
        T, B, H = hs.shape
        da = torch.mul(hs, hs).neg_().add_(1.0)  # tanh' = 1 - h^2, turned into dL/da in place
        dh = dhs[T - 1]
        for t in range(T - 1, 0, -1):
            dh = torch.addmm(dhs[t - 1], da[t].mul_(dh), W_hh)  # dL/dh_{t-1}
        da[0].mul_(dh)
        dW = da[1:].reshape(-1, H).t() @ hs[:-1].reshape(-1, H)  # sum_t da_t^T h_{t-1}
        return da, dW


def tanh_rnn_layer(x: torch.Tensor, W_ih, W_hh, b_ih, b_hh) -> torch.Tensor:
    """One vanilla tanh RNN layer on dense (B, T, E) input -> (B, T, H), zero initial state."""
    B, T, E = x.shape
    xw = torch.addmm(b_ih + b_hh, x.transpose(0, 1).reshape(T * B, E), W_ih.t())  # all steps at once
    return _TanhRecurrence.apply(xw.view(T, B, -1), W_hh).transpose(0, 1)


def run_recurrent(module: nn.RNNBase, x: torch.Tensor) -> torch.Tensor:
    """A unidirectional nn.RNN/LSTM/GRU on dense (B, T, F) input -> top-layer states (B, T, H)."""
    if isinstance(module, nn.RNN) and module.nonlinearity == "tanh" and x.device.type == "cpu":
        for layer in range(module.num_layers):
            if layer:
                x = F.dropout(x, module.dropout, module.training)
            x = tanh_rnn_layer(x, *(getattr(module, f"{n}_l{layer}")
                                    for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")))
        return x
    return module(x)[0]  # cuDNN's fused kernel on a GPU


def orthogonality_penalty(model: nn.Module) -> torch.Tensor:
    """Sum over the recurrent weight matrices (each gate's H x H block) of ||W W^T - I||_F^2.

    Zero for an orthogonal W_hh; grows as the recurrence expands or contracts some directions
    (a spectral radius far from 1: chaotic or forgetful dynamics). 0 for a model without W_hh.
    """
    blocks = [b for name, p in model.named_parameters() if "weight_hh" in name
              for b in p.split(p.shape[1], 0)]  # LSTM/GRU stack their gates
    if not blocks:
        return torch.zeros(())
    eye = torch.eye(blocks[0].shape[1], dtype=blocks[0].dtype, device=blocks[0].device)
    return sum(((b @ b.T - eye) ** 2).sum() for b in blocks)


class RecurrentClassifier(nn.Module):
    """Embedding -> RNN/LSTM/GRU -> pooled hidden states -> Linear(1)."""

    def __init__(self, kind: str, vocab_size: int, embed_dim: int, hidden_dim: int,
                 layers: int = 1, dropout: float = 0.0, bidirectional: bool = False,
                 pool: str = "last", recurrent_init: str = "default"):
        super().__init__()
        cls = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind]
        self.kind, self.pool, self.bidirectional, self.p = kind, pool, bidirectional, dropout
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.drop = nn.Dropout(dropout)
        extra = {"nonlinearity": "tanh"} if kind == "rnn" else {}
        if not bidirectional:
            self.rnn = cls(embed_dim, hidden_dim, num_layers=layers, batch_first=True,
                           dropout=dropout if layers > 1 else 0.0, **extra)
        else:  # one module per layer and direction: each direction runs dense, never packed
            dims = [embed_dim] + [2 * hidden_dim] * (layers - 1)
            self.fwd = nn.ModuleList(cls(d, hidden_dim, batch_first=True, **extra) for d in dims)
            self.bwd = nn.ModuleList(cls(d, hidden_dim, batch_first=True, **extra) for d in dims)
        self.fc = nn.Linear(hidden_dim * (2 if bidirectional else 1), 1)
        if recurrent_init == "orthogonal":  # norm-preserving W_hh: gradients neither vanish nor blow up at init
            for name, p in self.named_parameters():
                if "weight_hh" in name:
                    for block in p.data.split(hidden_dim, 0):  # LSTM/GRU stack their gates
                        nn.init.orthogonal_(block)

    def states(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Top-layer hidden states (B, T, H*directions); entries past a review's end are junk."""
        x = self.drop(self.embedding(tokens))  # (B, T, E)
        if not self.bidirectional:
            # causal: the state at step len-1 never sees the padding that follows it
            return run_recurrent(self.rnn, x)
        for i, (f, b) in enumerate(zip(self.fwd, self.bwd)):
            if i:
                x = F.dropout(x, self.p, self.training)
            back = reverse_within(run_recurrent(b, reverse_within(x, lengths)), lengths)
            x = torch.cat([run_recurrent(f, x), back], -1)  # (B, T, 2H)
        return x

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor, every_step: bool = False):
        """Logits (B,); with `every_step`, also the classifier applied to every state, (B, T).

        The per-step logits serve the training-only step loss (`TrainConfig.step_loss`); the
        prediction is always the first result, read from the pooled (by default final) state.
        """
        lengths = lengths.to(tokens.device)
        out = self.states(tokens, lengths)
        if self.bidirectional and self.pool == "last":
            H = out.shape[-1] // 2  # forward state at len-1, backward state at step 0
            feat = torch.cat([_pool(out[..., :H], lengths, "last"), out[:, 0, H:]], -1)
        else:
            feat = _pool(out, lengths, self.pool)
        logits = self.fc(self.drop(feat)).squeeze(-1)
        if every_step:
            return logits, self.fc(self.drop(out)).squeeze(-1)
        return logits

    def unrolled(self, tokens: torch.Tensor, lengths: torch.Tensor,
                 embedded: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The vanilla RNN as an explicit loop over time (1 layer, tanh, unidirectional).

        Returns logits (B,) and every h_t (B, H) for t = 0..T-1, each a graph node with
        `retain_grad()` set, so `h_t.grad` after backward is dL/dh_t. Past a review's end
        h_t is carried unchanged, so its final state is the one at step len-1.
        """
        if self.kind != "rnn" or self.rnn.num_layers != 1 or self.bidirectional:
            raise ValueError("unrolled() is defined for the 1-layer unidirectional vanilla RNN")
        W_ih, W_hh = self.rnn.weight_ih_l0, self.rnn.weight_hh_l0  # (H, E), (H, H)
        b = self.rnn.bias_ih_l0 + self.rnn.bias_hh_l0  # (H,)
        x = self.drop(self.embedding(tokens)) if embedded is None else embedded  # (B, T, E)
        B, T, _ = x.shape
        xw = x @ W_ih.T + b  # (B, T, H): the input projection has no time dependence
        live = mask(lengths.to(tokens.device), T).unsqueeze(-1)  # (B, T, 1)
        h = x.new_zeros(B, W_hh.shape[0])
        hs = []
        for t in range(T):
            h_new = torch.tanh(xw[:, t] + h @ W_hh.T)
            h = torch.where(live[:, t], h_new, h)
            h.retain_grad()
            hs.append(h)
        if self.pool == "last":
            feat = h
        else:
            feat = _pool(torch.stack(hs, 1), lengths.to(tokens.device), self.pool)
        return self.fc(self.drop(feat)).squeeze(-1), hs


class BagOfEmbeddings(nn.Module):
    """Mean of word vectors (order ignored) -> Linear(1): the neural bag-of-words."""

    def __init__(self, vocab_size: int, embed_dim: int, dropout: float = 0.0):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(embed_dim, 1)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.embedding(tokens)  # (B, T, E); pad rows are zero vectors
        feat = x.sum(1) / lengths.to(x.device).clamp(min=1).unsqueeze(-1).to(x.dtype)
        return self.fc(self.drop(feat)).squeeze(-1)


class SinusoidalPosition(nn.Module):
    """Fixed sin/cos position encoding of any length (Vaswani et al. 2017)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, T: int, device) -> torch.Tensor:
        pos = torch.arange(T, device=device, dtype=torch.float32)[:, None]
        i = torch.arange(0, self.dim, 2, device=device, dtype=torch.float32)
        ang = pos / torch.pow(10000.0, i / self.dim)  # (T, dim/2)
        pe = torch.zeros(T, self.dim, device=device)
        pe[:, 0::2] = torch.sin(ang)
        pe[:, 1::2] = torch.cos(ang[:, : self.dim // 2])
        return pe  # (T, dim)


class TransformerClassifier(nn.Module):
    """Embedding + positions -> TransformerEncoder (padding masked) -> pooled -> Linear(1)."""

    def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, layers: int = 1,
                 dropout: float = 0.0, pool: str = "mean", heads: int = 4):
        super().__init__()
        if embed_dim % heads:
            heads = next(h for h in (4, 2, 1) if embed_dim % h == 0)
        self.pool = "mean" if pool == "last" else pool  # no "last" token in attention: pool
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.pos = SinusoidalPosition(embed_dim)
        layer = nn.TransformerEncoderLayer(embed_dim, heads, dim_feedforward=hidden_dim * 2,
                                           dropout=dropout, batch_first=True, norm_first=True)
        # dropout on the residual and feed-forward paths only: dropping attention weights makes a CPU
        # training step ~5x slower (measured: 1.78 s vs 0.35 s at 64 x 400 tokens, d 64, 2 layers)
        layer.self_attn.dropout = 0.0
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(embed_dim)
        self.fc = nn.Linear(embed_dim, 1)
        self.scale = math.sqrt(embed_dim)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        B, T = tokens.shape
        lengths = lengths.to(tokens.device)
        x = self.embedding(tokens) * self.scale + self.pos(T, tokens.device)  # (B, T, E)
        out = self.encoder(x, src_key_padding_mask=~mask(lengths, T))  # (B, T, E)
        return self.fc(_pool(self.norm(out), lengths, self.pool)).squeeze(-1)


class CNNClassifier(nn.Module):
    """Embedding -> Conv1d(kernel 5) + ReLU -> max over real positions -> Linear(1)."""

    def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, dropout: float = 0.0,
                 kernel: int = 5):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.conv = nn.Conv1d(embed_dim, hidden_dim, kernel, padding=kernel // 2)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden_dim, 1)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.embedding(tokens)).transpose(1, 2)  # (B, E, T)
        out = torch.relu(self.conv(x)).transpose(1, 2)  # (B, T, H)
        return self.fc(self.drop(_pool(out, lengths.to(tokens.device), "max"))).squeeze(-1)


def build_model(cfg: TrainConfig, vocab_size: int) -> nn.Module:
    """The one factory: a classifier for `cfg.model`; raises on an unknown kind."""
    k = cfg.model
    if k in RECURRENT_KINDS:
        return RecurrentClassifier(k, vocab_size, cfg.embed_dim, cfg.hidden_dim, cfg.layers,
                                   cfg.dropout, cfg.bidirectional, cfg.pool, cfg.recurrent_init)
    if k == "bow":
        return BagOfEmbeddings(vocab_size, cfg.embed_dim, cfg.dropout)
    if k == "transformer":
        return TransformerClassifier(vocab_size, cfg.embed_dim, cfg.hidden_dim, cfg.layers,
                                     cfg.dropout, cfg.pool)
    if k == "cnn":
        return CNNClassifier(vocab_size, cfg.embed_dim, cfg.hidden_dim, cfg.dropout)
    raise ValueError(f"unknown model kind {k!r}")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
