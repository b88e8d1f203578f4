"""Every classifier behind one interface, and the one factory.

    from rnnlab.models import build_model
    model = build_model(cfg, vocab_size=20000)       # cfg.model in rnn|lstm|gru|bow|transformer|cnn
    logits = model(tokens, lengths)                   # tokens (B, T) right-padded with 0; logits (B,)
    logits, steps = model.forward_steps(tokens, lengths)   # steps (B, T): the running opinion

`forward_steps` gives, for every token t, the logit the model would output if the review ended
there (for a model reading its final state: the classifier on h_t; for a pooled model: on the
pooled prefix; otherwise one forward pass per prefix). In eval mode steps[b, lengths[b] - 1] is
logits[b]. The per-step logits also serve the training-only step loss (`TrainConfig.step_loss`).

Padding never reaches a result: a recurrence is causal, so its state at step len-1 is the same
whether the batch is padded or not; pooling and attention mask the padding. Batches run dense,
never packed (packed sequences run several times slower on CPU). On CPU the recurrences train
through the hand-written kernels of `rnnlab.kernels` (the vanilla RNN's nonlinearity is always
tanh), on a GPU through cuDNN.
`RecurrentClassifier.unrolled` writes the vanilla RNN out as an explicit loop over time and keeps
each h_t, so experiments can read dL/dh_t. tests/test_models.py checks the tanh paths against nn.RNN,
tests/test_kernels.py the LSTM and GRU kernels against nn.LSTM and nn.GRU.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import RECURRENT_KINDS, TRANSFORMER_HEADS, TrainConfig
from .kernels import fold, gru_layer, lstm_layer, tanh_rnn_layer


PREFIX_CHUNK = 64  # prefixes per forward pass where a model's running opinion is one pass per prefix


def mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """(B, T) bool, True at real tokens."""
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]


def pool_states(out: torch.Tensor, lengths: torch.Tensor, pool: str) -> torch.Tensor:
    """Reduce (B, T, F) states to (B, F): at the last real step, mean or max over real steps."""
    B, T, _ = out.shape
    if pool == "last":
        return out[torch.arange(B, device=out.device), lengths - 1]
    m = mask(lengths, T).unsqueeze(-1)  # (B, T, 1)
    if pool == "mean":
        return (out * m).sum(1) / lengths.clamp(min=1).unsqueeze(-1).to(out.dtype)
    return out.masked_fill(~m, float("-inf")).max(1).values


def running_pool(out: torch.Tensor, pool: str) -> torch.Tensor:
    """(B, T, F) -> (B, T, F): position t holds the pool of steps 0..t (the pooled prefix)."""
    if pool == "last":
        return out
    if pool == "mean":
        steps = torch.arange(1, out.shape[1] + 1, device=out.device, dtype=out.dtype)
        return out.cumsum(1) / steps[None, :, None]
    return out.cummax(1).values


class Classifier(nn.Module):
    """The interface: forward(tokens, lengths) -> (B,) logits; forward_steps -> (logits, (B, T) steps)."""

    embedding: nn.Embedding

    def forward_steps(self, tokens: torch.Tensor, lengths: torch.Tensor):
        """Exact for any model: one forward pass per prefix, prefixes batched PREFIX_CHUNK at a time."""
        B, T = tokens.shape
        lengths = lengths.to(tokens.device)
        steps = torch.empty(B, T, device=tokens.device)
        ends = torch.arange(1, T + 1, device=tokens.device)  # prefix lengths
        for b in range(B):
            for lo in range(0, T, PREFIX_CHUNK):
                n = ends[lo:lo + PREFIX_CHUNK]
                prefix = tokens[b, : int(n[-1])].expand(len(n), -1)
                prefix = prefix.masked_fill(~mask(n, prefix.shape[1]), 0)  # nothing past the prefix's end
                steps[b, lo:lo + len(n)] = self(prefix, n)
        return self(tokens, lengths), steps


def per_prefix(model: Classifier) -> bool:
    """Whether `forward_steps` runs the model once per prefix (no running state of its own: the Transformer, the CNN)."""
    return type(model).forward_steps is Classifier.forward_steps


def run_recurrent(module: nn.RNNBase, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
    """An nn.RNN/LSTM/GRU on dense (B, T, F) input, or on CPU folded input x[index] -> top-layer states (B, T, H)."""
    if x.device.type != "cpu":
        return module(x)[0]  # cuDNN's fused kernels on a GPU
    layer_fn = {nn.RNN: tanh_rnn_layer, nn.LSTM: lstm_layer, nn.GRU: gru_layer}[type(module)]
    for layer in range(module.num_layers):
        if layer:
            x, index = F.dropout(x, module.dropout, module.training), None
        x = layer_fn(x, *module.all_weights[layer], index=index)  # W_ih, W_hh, b_ih, b_hh (one direction, biased)
    return x


class RecurrentClassifier(Classifier):
    """Embedding -> RNN/LSTM/GRU -> pooled hidden states -> Linear(1)."""

    def __init__(self, kind: str, vocab_size: int, embed_dim: int, hidden_dim: int, layers: int = 1,
                 dropout: float = 0.0, pool: str = "last", recurrent_init: str = "default"):
        super().__init__()
        cls = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind]
        self.kind, self.pool = kind, pool
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.drop = nn.Dropout(dropout)
        self.rnn = cls(embed_dim, hidden_dim, num_layers=layers, batch_first=True,
                       dropout=dropout if layers > 1 else 0.0,
                       **({"nonlinearity": "tanh"} if kind == "rnn" else {}))
        self.fc = nn.Linear(hidden_dim, 1)
        if recurrent_init == "orthogonal":  # norm-preserving W_hh: gradients neither vanish nor blow up at init
            for name, p in self.rnn.named_parameters():
                if "weight_hh" in name:
                    for block in p.data.split(hidden_dim, 0):  # LSTM/GRU stack their gates
                        nn.init.orthogonal_(block)

    def states(self, tokens: torch.Tensor) -> torch.Tensor:
        """Top-layer hidden states (B, T, H); entries past a review's end are junk (never read: the callers pool
        them with the lengths)."""
        if self.training and self.drop.p == 0 and tokens.device.type == "cpu":
            # each distinct token projected once; in training only: scoring keeps the dense path's order of sums,
            # the one every published score was computed in
            return run_recurrent(self.rnn, *fold(self.embedding, tokens))
        return run_recurrent(self.rnn, self.drop(self.embedding(tokens)))

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        lengths = lengths.to(tokens.device)
        return self.fc(self.drop(pool_states(self.states(tokens), lengths, self.pool))).squeeze(-1)

    def forward_steps(self, tokens: torch.Tensor, lengths: torch.Tensor):
        lengths = lengths.to(tokens.device)
        return self.read_steps(self.states(tokens), lengths)  # one pass: the states of every prefix

    def read_steps(self, out: torch.Tensor, lengths: torch.Tensor):
        """`forward_steps` from the states `out` (B, T, H) that `states` returned."""
        logits = self.fc(self.drop(pool_states(out, lengths, self.pool))).squeeze(-1)
        return logits, self.fc(self.drop(running_pool(out, self.pool))).squeeze(-1)

    def unrolled(self, tokens: torch.Tensor, lengths: torch.Tensor,
                 embedded: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The vanilla RNN reading its last state as an explicit loop over time (1 layer, tanh).

        Returns logits (B,) and every h_t (B, H) for t = 0..T-1, each a graph node with
        `retain_grad()` set, so `h_t.grad` after backward is dL/dh_t. Past a review's end
        h_t is carried unchanged, so its final state is the one at step len-1.
        """
        if self.kind != "rnn" or self.rnn.num_layers != 1 or self.pool != "last":
            raise ValueError("unrolled() is defined for the 1-layer vanilla RNN reading its last state")
        W_ih, W_hh = self.rnn.weight_ih_l0, self.rnn.weight_hh_l0  # (H, E), (H, H)
        b = self.rnn.bias_ih_l0 + self.rnn.bias_hh_l0  # (H,)
        x = self.drop(self.embedding(tokens)) if embedded is None else embedded  # (B, T, E)
        B, T, _ = x.shape
        # the input projection has no time dependence; unbound into T steps, as indexing xw[:, t] would give
        # each step's backward a zero-filled (B, T, H) gradient (1 GB and 7 s at T = 800 in float64)
        xw = (x @ W_ih.T + b).unbind(1)
        live = mask(lengths.to(tokens.device), T).unsqueeze(-1).unbind(1)  # T x (B, 1)
        h = x.new_zeros(B, W_hh.shape[0])
        hs = []
        for t in range(T):
            h = torch.where(live[t], torch.tanh(xw[t] + h @ W_hh.T), h)
            h.retain_grad()
            hs.append(h)
        return self.fc(self.drop(h)).squeeze(-1), hs


def _pooled_only(model: str, pool: str) -> str:
    if pool not in ("mean", "max"):
        raise ValueError(f"the {model} pools over positions (mean or max); it has no last state (pool {pool!r})")
    return pool


class BagOfEmbeddings(Classifier):
    """Mean (or max) of word vectors, order ignored -> Linear(1): the neural bag-of-words."""

    def __init__(self, vocab_size: int, embed_dim: int, dropout: float = 0.0, pool: str = "mean"):
        super().__init__()
        self.pool = _pooled_only("bag of embeddings", pool)
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(embed_dim, 1)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.embedding(tokens)  # (B, T, E); pad rows are zero vectors
        return self.fc(self.drop(pool_states(x, lengths.to(x.device), self.pool))).squeeze(-1)

    def forward_steps(self, tokens: torch.Tensor, lengths: torch.Tensor):
        x = self.embedding(tokens)
        logits = self.fc(self.drop(pool_states(x, lengths.to(x.device), self.pool))).squeeze(-1)
        return logits, self.fc(self.drop(running_pool(x, self.pool))).squeeze(-1)


def sinusoidal_positions(T: int, dim: int, device) -> torch.Tensor:
    """Fixed sin/cos position encoding (Vaswani et al. 2017), (T, dim)."""
    pos = torch.arange(T, device=device, dtype=torch.float32)[:, None]
    i = torch.arange(0, dim, 2, device=device, dtype=torch.float32)
    ang = pos / torch.pow(10000.0, i / dim)  # (T, dim/2)
    pe = torch.zeros(T, dim, device=device)
    pe[:, 0::2] = torch.sin(ang)
    pe[:, 1::2] = torch.cos(ang[:, : dim // 2])
    return pe


class TransformerClassifier(Classifier):
    """Embedding + positions -> TransformerEncoder (padding masked) -> mean or max pool -> Linear(1)."""

    def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, layers: int = 1,
                 dropout: float = 0.0, pool: str = "mean"):
        super().__init__()
        self.pool = _pooled_only("transformer", pool)
        heads = TRANSFORMER_HEADS
        if embed_dim % heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by {heads} attention heads")
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        layer = nn.TransformerEncoderLayer(embed_dim, heads, dim_feedforward=hidden_dim * 2,
                                           dropout=dropout, batch_first=True, norm_first=True)
        # dropout on the residual and feed-forward paths only: dropping attention weights makes a CPU
        # training step ~5x slower (measured: 1.78 s vs 0.35 s at 64 x 400 tokens, d 64, 2 layers)
        layer.self_attn.dropout = 0.0
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(embed_dim)
        self.fc = nn.Linear(embed_dim, 1)
        self.dim, self.scale = embed_dim, math.sqrt(embed_dim)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        T = tokens.shape[1]
        lengths = lengths.to(tokens.device)
        x = self.embedding(tokens) * self.scale + sinusoidal_positions(T, self.dim, tokens.device)
        out = _encode(self.encoder, x, ~mask(lengths, T))  # (B, T, E)
        return self.fc(pool_states(self.norm(out), lengths, self.pool)).squeeze(-1)


def _encode(encoder, x, padding):
    """The encoder over x; on the CPU without PyTorch's inference fast path, which there is ~3x slower than
    the plain path for these sizes (measured: 0.81 s vs 0.28 s per forward of 64 x 400 tokens, one thread)."""
    if x.device.type != "cpu":
        return encoder(x, src_key_padding_mask=padding)
    enabled = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        return encoder(x, src_key_padding_mask=padding)
    finally:
        torch.backends.mha.set_fastpath_enabled(enabled)


CNN_KERNEL = 5  # tokens a filter sees


class CNNClassifier(Classifier):
    """Embedding -> Conv1d(kernel CNN_KERNEL) + ReLU -> max (or mean) over real positions -> Linear(1)."""

    def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, dropout: float = 0.0,
                 pool: str = "max"):
        super().__init__()
        self.pool = _pooled_only("cnn", pool)
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.conv = nn.Conv1d(embed_dim, hidden_dim, CNN_KERNEL, padding=CNN_KERNEL // 2)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden_dim, 1)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.embedding(tokens)).transpose(1, 2)  # (B, E, T)
        out = torch.relu(self.conv(x)).transpose(1, 2)  # (B, T, H)
        return self.fc(self.drop(pool_states(out, lengths.to(tokens.device), self.pool))).squeeze(-1)


def build_model(cfg: TrainConfig, vocab_size: int) -> Classifier:
    """The one factory: a classifier for `cfg.model`; raises on an unknown kind or a setting it cannot honour."""
    k = cfg.model
    if k in RECURRENT_KINDS:
        return RecurrentClassifier(k, vocab_size, cfg.embed_dim, cfg.hidden_dim, cfg.layers, cfg.dropout,
                                   cfg.pool, cfg.recurrent_init)
    if k == "bow":
        return BagOfEmbeddings(vocab_size, cfg.embed_dim, cfg.dropout, cfg.pool)
    if k == "transformer":
        return TransformerClassifier(vocab_size, cfg.embed_dim, cfg.hidden_dim, cfg.layers, cfg.dropout, cfg.pool)
    if k == "cnn":
        return CNNClassifier(vocab_size, cfg.embed_dim, cfg.hidden_dim, cfg.dropout, cfg.pool)
    raise ValueError(f"unknown model kind {k!r}")


def shapes_only(cfg: TrainConfig, vocab_size: int) -> Classifier:
    """`build_model` on torch's meta device: every weight's shape and dtype, no memory taken and no values. Its
    initialisers are skipped: normal_ on a meta tensor runs through torch's Python references, whose first use
    imports torch._dynamo (1.1 s on a 2-core VM, more than the rest of an explanation). MemoryError where a weight's
    size in bytes does not fit in 64 bits (torch's RuntimeError "Storage size calculation overflowed"). While it
    runs, nn.init.normal_ and orthogonal_ do nothing in every thread of the process: a library user who builds models
    in threads builds them one at a time (rnnlab's jobs are processes)."""
    skip = lambda tensor, *args, **kwargs: tensor  # noqa: E731
    saved = {name: getattr(nn.init, name) for name in ("normal_", "orthogonal_")}
    try:
        for name in saved:
            setattr(nn.init, name, skip)
        with torch.device("meta"):
            return build_model(cfg, vocab_size)
    except RuntimeError as e:
        if "overflow" not in str(e):
            raise
        raise MemoryError("a weight of these sizes takes more bytes than a 64-bit size counts") from None
    finally:
        for name, fn in saved.items():
            setattr(nn.init, name, fn)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
