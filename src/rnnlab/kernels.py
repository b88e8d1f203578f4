"""Hand-written CPU training kernels for one vanilla RNN, LSTM or GRU layer (forward and BPTT).

    from rnnlab.kernels import fold, gru_layer, lstm_layer, tanh_rnn_layer
    m = nn.LSTM(100, 128, batch_first=True)
    out = lstm_layer(x, m.weight_ih_l0, m.weight_hh_l0, m.bias_ih_l0, m.bias_hh_l0)  # == m(x)[0]
    # x (B, T, E) dense batch-first, zero initial state; out (B, T, H): every hidden state
    rows, index = fold(embedding, tokens)                # each distinct token's vector once
    out = lstm_layer(rows, *weights, index=index)         # == lstm_layer(embedding(tokens), *weights)

PyTorch has no fused recurrent kernel for the vanilla RNN on CPU (nn.RNN runs its steps as ordinary
operators, each recorded for autograd): `tanh_rnn_layer` computes the input projection of all steps
in one matmul, one matmul and one in-place sigmoid per step, and the weight gradient as one big
matmul after the loop (faster per training step than nn.RNN, and more so with folded input, below:
docs/PERFORMANCE.md). `models.run_recurrent`
uses all three on CPU; on a GPU cuDNN's fused kernels are faster.

Folded input: when the embedding feeds the layer directly (no dropout between them), a layer
given `fold(embedding, tokens)` projects each distinct token once ((U, E) @ (E, G), U ~4,700
distinct tokens in a batch of 64 x 400 real review tokens, against 25,600 positions) and gathers
the projections into each chunk; backward sums each distinct token's gate gradients (index_add_)
and turns them into the gradients of the rows, W_ih and the bias with two (U x E x G) matmuls,
where the dense path does three (25,600 x E x G) ones. The same values and gradients, in
another summation order. `models.RecurrentClassifier` folds in training when its dropout is 0
(the notebook's presets and the lab's vanilla RNNs; not the gated presets, which drop out
embedding outputs position by position).

The LSTM and GRU are `torch.autograd.Function`s with exactly nn.LSTM's / nn.GRU's equations and weight
layouts (LSTM gates i, f, g, o; GRU r, z, n with b_hn inside r * (W_hn h + b_hn)), in float32
or float64, and return gradients for x (so the embedding trains) and all four weight tensors.
One unidirectional layer with biases and a zero initial state; stack calls for more layers
(with dropout between them, as nn.LSTM does). `tests/test_kernels.py` checks values and
gradients against the nn modules, and gradcheck. Where the modules go further, these kernels do not:
no second derivatives (a backward with create_graph=True raises), no empty batch (B = 0 raises), and an
infinite input gives the GRU NaN states where nn.GRU saturates (nothing rnnlab runs reaches them;
docs/REVIEW.md).

On CPU, nn.GRU runs a chain of small ops per step and nn.LSTM runs oneDNN's fused LSTM. These
kernels spend most of a layer's time in the matmuls that any kernel of this design must do (how
close to that floor they come, and how much faster than the modules, by CPU: benchmarks/kernels.py,
docs/PERFORMANCE.md). How:

- Time is cut into chunks of ~ROWS_PER_CHUNK rows (K steps x B). Per chunk the input
  projection of its K steps is one addmm into a chunk buffer, where each step then adds its
  recurrent term in place (one addmm per step) while the chunk is in cache.
- Few elementwise kernels per step, as each costs a fixed few microseconds: tanh is several times slower
  than sigmoid on CPU, so the g / n pre-activations are doubled (their weight rows x2) and
  tanh(a) = 2 sigmoid(2a) - 1. One in-place sigmoid covers all four LSTM gates, and the LSTM
  keeps 2c, so tanh(c) is one more sigmoid: addmm, sigmoid, add, mul, addcmul, sigmoid, add,
  mul. A GRU step is addmm, sigmoid (r, z), lerp (n's pre-activation is
  lerp(W_in x, W_in x + W_hn h, r)), sigmoid, add, lerp (h = lerp(n, h_{t-1}, z)).
- After each chunk's steps, still in cache, a handful of chunk-wide ops turn its gates into
  the local derivatives that backward needs (saved instead of the gates: computing them there
  costs half as much as from the cold saved gates in backward). They are laid out so a
  backward step is one broadcast multiply of dL/dc (LSTM) or dL/dh (GRU) into them, one or two
  small ops, and one addmm for dL/dh_{t-1}.
- Without grad (under torch.no_grad, or no input requires it: evaluation, probes, explain's running
  opinion) the forward skips those derivatives and returns its buffer at once: 1.35x (LSTM) and
  1.5x (GRU) faster at B 256, T 400, and T x B x 6H (5H) floats less memory.
- Per backward chunk, dL/dx is one matmul and each weight gradient one accumulating matmul
  (transposed, dW^T += [x | 1]^T dG: ~10% faster); the column of ones next to x_t gives
  the bias gradient with it. Weights that do not require grad (explain freezes them: it needs only dL/dx)
  get none, and backward skips their matmuls.
- The large internal buffers come from a small pool and go back to it when the autograd graph
  is freed: a fresh 100 MB buffer costs ~30 ms of page faults. The pool never
  holds a tensor the caller can see (outputs and gradients are always fresh); backward only
  reads the saved tensors, so retain_graph works.

Importing this module sets `torch.set_flush_denormal(True)`: floats below 1.2e-38 become 0. A
vanishing gradient passes through that range on its way to 0, and on Intel CPUs every operation on
such a number takes a slow microcode path: an nn.LSTM training step (B 64, T 400) was 6.7x slower
with denormals than without on an Intel Xeon (benchmarks/denormals.py). Worker threads inherit
the setting from the thread that starts them, so it is set here, before any of torch's parallel work.
No trained number moves: a denormal is ~1e-30 times any weight gradient it would be added to.
"""
from __future__ import annotations

import math
import threading
import weakref

import torch

torch.set_flush_denormal(True)  # see the docstring: denormals cost 6x on Intel CPUs


class _TanhRecurrence(torch.autograd.Function):
    """hs[t] = tanh(xw[t] + hs[t-1] @ W_hh.T) with hs[-1] = 0, and hand-written BPTT.

    Forward keeps s = (h + 1) / 2 = sigmoid(2z), so each step is one addmm and one in-place
    sigmoid (tanh itself is several times slower on CPU: module docstring); backward is one mul and one addmm
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
        T, _, H = hs.shape
        da = torch.mul(hs, hs).neg_().add_(1.0)  # tanh' = 1 - h^2, turned into dL/da in place
        dh = dhs[T - 1]
        for t in range(T - 1, 0, -1):
            dh = torch.addmm(dhs[t - 1], da[t].mul_(dh), W_hh)  # dL/dh_{t-1}
        da[0].mul_(dh)
        if not ctx.needs_input_grad[1]:  # weights frozen (explain's attributions need only dL/dx)
            return da, None
        dW = da[1:].reshape(-1, H).t() @ hs[:-1].reshape(-1, H)  # sum_t da_t^T h_{t-1}
        return da, dW


def tanh_rnn_layer(x: torch.Tensor, W_ih, W_hh, b_ih, b_hh, index: torch.Tensor | None = None) -> torch.Tensor:
    """One vanilla tanh RNN layer on dense (B, T, E) input (or folded: see `fold`) -> (B, T, H), zero initial state."""
    if index is None:
        B, T, E = x.shape
        xw = torch.addmm(b_ih + b_hh, x.transpose(0, 1).reshape(T * B, E), W_ih.t())  # all steps at once
    else:  # each distinct row projected once, then gathered; autograd sums the gathered rows' gradients
        B, T = index.shape
        xw = torch.index_select(torch.addmm(b_ih + b_hh, x, W_ih.t()), 0, index.t().reshape(-1))
    return _TanhRecurrence.apply(xw.view(T, B, -1), W_hh).transpose(0, 1)


def fold(embedding: torch.nn.Embedding, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, index) with rows[index] == embedding(tokens): each distinct token's vector once (see "Folded
    input" above). Only where the embedding feeds the layer directly (no dropout between them)."""
    uniq, index = torch.unique(tokens, return_inverse=True)
    return embedding(uniq), index


ROWS_PER_CHUNK = 1024  # K = ROWS_PER_CHUNK // B steps per chunk: matmuls big enough, buffers cache-sized
POOL_KEEP = 4  # internal buffers kept for reuse (most recently released first)
_pool: list[torch.Tensor] = []
_lock = threading.RLock()  # finalizers run on any thread, or inside _take (garbage collection)


def _take(numel: int, like: torch.Tensor) -> torch.Tensor:
    """A flat internal buffer of at least `numel` elements: the smallest pooled one that fits."""
    with _lock:
        fits = [b for b in _pool if b.dtype == like.dtype and b.device == like.device and b.numel() >= numel]
        best = min(fits, key=torch.Tensor.numel, default=None)
        for k, b in enumerate(_pool):
            if b is best:  # by identity: a finalizer may have changed the list meanwhile
                return _pool.pop(k)
    return like.new_empty(numel)


def _give(buf: torch.Tensor) -> None:
    with _lock:
        _pool.append(buf)
        del _pool[:-POOL_KEEP]


def clear_pool() -> None:
    """Free the pooled internal buffers."""
    with _lock:
        _pool.clear()


def _carve(buf: torch.Tensor, *shapes):
    """Consecutive views of `buf` with the given shapes."""
    sizes = [math.prod(s) for s in shapes]
    return [part.view(s) for part, s in zip(buf[:sum(sizes)].split(sizes), shapes)]


def _chunks(T: int, B: int) -> list[tuple[int, int]]:
    K = max(1, min(T, ROWS_PER_CHUNK // max(B, 1)))
    return [(t0, min(T, t0 + K)) for t0 in range(0, T, K)]


def _dx_chunk(dX, dG, W_ih, tmp, t0, t1):
    """dX[:, t0:t1] = dG @ W_ih, dG's rows in (t, b) order, dX batch-major (B, T, E)."""
    n, B = t1 - t0, dX.shape[0]
    y = torch.mm(dG, W_ih, out=tmp[:n * B])
    dX[:, t0:t1].copy_(y.view(n, B, -1).transpose(0, 1))


def _sizes(x, index, W_hh):
    """B, T, E, H, the chunks of time steps and K, the steps per chunk."""
    (B, T), E = (x.shape[:2] if index is None else index.shape), x.shape[-1]
    chunks = _chunks(T, B)
    return B, T, E, W_hh.shape[1], chunks, chunks[0][1]


def _input(x, index, WiT, b):
    """Forward's view of the input: xt (T, B, E), time-major, if dense; if folded, the projection of the
    distinct rows (U, G) and the index in time-major order (T * B,)."""
    if index is None:
        return x.detach().transpose(0, 1), None, None
    return None, torch.addmm(b, x.detach(), WiT), index.t().reshape(-1)


def _project(out, X1, xt, P, idx, WiT, b, t0, t1, B):
    """out (n * B, G) = x_t W_ih^T + b for steps t0..t1; dense: x_t also kept in X1 for backward."""
    if P is not None:
        torch.index_select(P, 0, idx[t0 * B:t1 * B], out=out)
        return
    E = xt.shape[-1]
    X1[t0:t1, :, :E].copy_(xt[t0:t1])
    torch.addmm(b, X1[t0:t1, :, :E].reshape(-1, E), WiT, out=out)


def _input_chunk_grads(dWiT, dX, dP, dG, X1, idx, W_ih, tmp, t0, t1, B):
    """Backward, per chunk: dense, [dW_ih | db]^T += [x_t | 1]^T dG (dWiT None: weights frozen) and dX's rows;
    folded, dP += dG by row."""
    if idx is not None:  # a strided source takes index_add_'s slow path (3x): copy dG to a flat buffer first
        dP.index_add_(0, idx[t0 * B:t1 * B], tmp[:dG.numel()].view(dG.shape).copy_(dG))
        return
    if dWiT is not None:
        dWiT.addmm_(X1[t0:t1].view((t1 - t0) * B, -1).t(), dG)
    if dX is not None:
        _dx_chunk(dX, dG, W_ih, tmp[:dG.shape[0] * W_ih.shape[1]].view(dG.shape[0], -1), t0, t1)


def _input_grads(ctx, rows, dP, W_ih, dWiT, dX):
    """After a folded backward: dP (U, G) holds each distinct row's summed gate gradients."""
    if dP is None:
        return dX
    if dWiT is not None:
        E = W_ih.shape[1]
        torch.mm(rows.t(), dP, out=dWiT[:E])
        torch.sum(dP, 0, out=dWiT[E])
    return dP @ W_ih if ctx.needs_input_grad[0] else None


def _doubled_rows(W_ih, W_hh, b_ih, b_hh, rows: slice):
    """W_ih^T, W_hh^T (E or H, G) and b_ih + b_hh with the gate rows `rows` doubled: a tanh gate computed as
    tanh(a) = 2 sigmoid(2a) - 1, so every gate of a step is one in-place sigmoid."""
    scale = W_ih.new_ones(W_ih.shape[0], 1)
    scale[rows] = 2.0
    return (W_ih * scale).t().contiguous(), (W_hh * scale).t().contiguous(), (b_ih + b_hh) * scale[:, 0]


def _keep(ctx, grad: bool, ws: torch.Tensor, *saved) -> None:
    """Save what backward reads, its buffer back to the pool once the graph is gone; without grad, at once."""
    if not grad:
        _give(ws)
        return
    ctx.save_for_backward(*saved)
    weakref.finalize(ctx, _give, ws)


def _needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


class _LSTMLayer(torch.autograd.Function):
    """One LSTM layer, zero initial state: x (B, T, E) -> states (T, B, H), time-major."""

    @staticmethod
    def forward(ctx, x, index, W_ih, W_hh, b_ih, b_hh, grad):
        B, T, E, H, chunks, K = _sizes(x, index, W_hh)
        WiT, WhT, b = _doubled_rows(W_ih, W_hh, b_ih, b_hh, slice(2 * H, 3 * H))  # the g rows
        E1 = E + 1 if index is None else 0  # X1 only for dense input
        TD = T if grad else 0  # D only when a backward may follow
        ws = _take(T * B * E1 + TD * B * 6 * H + K * B * 4 * H + (K + 1) * B * H + K * B * H, x)
        X1, D, G, C2, TC = _carve(ws, (T, B, E1), (TD, B, 6 * H), (K, B, 4 * H), (K + 1, B, H), (K, B, H))
        # saved: X1[t] = [x_t | 1] (dense input) and D[t], the local derivatives of step t (below);
        # per chunk: G[k] gates i, f, 2g, o; C2[k] = 2 c_{t-1} (so tanh(c) is one sigmoid); TC[k] = tanh(c_t)
        X1[..., E:] = 1.0
        C2[0] = 0.0
        Hs = x.new_empty(T + 1, B, H)  # Hs[t] = h_{t-1}; Hs[1:] is the output
        Hs[0] = 0.0
        m1, m2, half, two = (x.new_tensor(v) for v in (-1.0, -2.0, 0.5, 2.0))
        xt, P, idx = _input(x, index, WiT, b)
        gates = G.unbind(0)
        i_, f_, g_, o_ = (G[..., k * H:(k + 1) * H].unbind(0) for k in range(4))  # K x (B, H)
        h_, c_, tc_ = Hs.unbind(0), C2.unbind(0), TC.unbind(0)
        add, mul, sigmoid = torch.add, torch.mul, torch.sigmoid
        for t0, t1 in chunks:
            n = t1 - t0
            _project(G[:n].view(-1, 4 * H), X1, xt, P, idx, WiT, b, t0, t1, B)
            if t0:
                C2[0].copy_(C2[K])  # 2c of the previous chunk's last step
            for k in range(n):
                a = gates[k]  # (B, 4H): x_t W_ih^T + b, plus h_{t-1} W_hh^T
                if t0 + k:
                    a.addmm_(h_[t0 + k], WhT)
                a.sigmoid_()  # i, f, sigmoid(2 a_g), o
                g2 = add(m2, g_[k], alpha=4, out=g_[k])  # 2g = 4 sigmoid(2 a_g) - 2
                c2 = mul(f_[k], c_[k], out=c_[k + 1])
                c2.addcmul_(i_[k], g2)  # 2c_t = f 2c_{t-1} + i 2g
                tc = add(m1, sigmoid(c2, out=tc_[k]), alpha=2, out=tc_[k])  # tanh(c_t)
                mul(o_[k], tc, out=h_[t0 + k + 1])  # h_t
            if not grad:
                continue
            # D[t] = [f | (i-i^2) 2g | (f-f^2) 2c_{t-1} | i (2 - (2g)^2/2) | (o-o^2) tanh c | o (1 - tanh(c)^2)/2]:
            # backward multiplies the first four by e = dL/d(2c), the fifth by dh: [carry | dG_i dG_f dG_g dG_o]
            g, tc = G[:n], TC[:n]
            i, f, g2, o = g.split(H, -1)  # the gates as the step loop left them: i, f, 2g, o
            carry, di, df, dg, do, dc = D[t0:t1].split(H, -1)
            torch.addcmul(g, g, g, value=-1.0, out=D[t0:t1, :, H:5 * H])  # s - s^2 into di, df, dg, do
            carry.copy_(f)
            di.mul_(g2)
            df.mul_(C2[:n])
            torch.addcmul(two, g2, g2, value=-0.5, out=dg).mul_(i)  # overwrites dg's s - s^2
            do.mul_(tc)
            torch.addcmul(half, tc, tc, value=-0.5, out=dc).mul_(o)
        _keep(ctx, grad, ws, X1 if index is None else x, D, Hs, W_ih, W_hh, idx)
        return Hs[1:]

    @staticmethod
    def backward(ctx, dhs):  # dhs: (T, B, H)
        X1, D, Hs, W_ih, W_hh, idx = ctx.saved_tensors  # folded: X1 holds the distinct rows (U, E)
        T, B, H = D.shape[0], D.shape[1], D.shape[2] // 6
        E = W_ih.shape[1]
        chunks = _chunks(T, B)
        K = chunks[0][1]
        ws = _take(2 * K * B * 5 * H + K * B * max(E, 4 * H), D)
        Wbuf, tmp = _carve(ws, (2, K, B, 5 * H), (K * B * max(E, 4 * H),))  # W[k] = [e f (the carry) | dG_i dG_f dG_g dG_o]
        weights = any(ctx.needs_input_grad[2:6])  # False: frozen (explain's attributions need only dL/dx)
        dWiT = D.new_zeros(E + 1, 4 * H) if weights else None  # [dW_ih | db]^T
        dWhT = D.new_zeros(H, 4 * H)
        dP = None if idx is None else D.new_zeros(X1.shape[0], 4 * H)  # folded: per distinct row
        dX = D.new_empty(B, T, E) if ctx.needs_input_grad[0] and idx is None else None
        dh_in = dhs.unbind(0)
        dh = dh_in[T - 1]
        dhb, e = D.new_empty(B, H), D.new_empty(B, H)
        e1 = e.unsqueeze(1)
        carry = None
        mul, addcmul, addmm = torch.mul, torch.addcmul, torch.addmm
        for j, (t0, t1) in enumerate(reversed(chunks)):  # two work buffers: the carry survives a chunk boundary
            n = t1 - t0
            d, w = D[t0:t1], Wbuf[j % 2, :n]
            de = d[..., :4 * H].unflatten(-1, (4, H)).unbind(0)  # n x (B, 4, H)
            do, A = d[..., 4 * H:5 * H].unbind(0), d[..., 5 * H:].unbind(0)
            we, wo = w[..., :4 * H].unflatten(-1, (4, H)).unbind(0), w[..., 4 * H:].unbind(0)
            wc, wg = w[..., :H].unbind(0), w[..., H:].unbind(0)
            for k in range(n - 1, -1, -1):
                if carry is None:
                    mul(dh, A[k], out=e)
                else:
                    addcmul(carry, dh, A[k], out=e)  # e_t = e_{t+1} f_{t+1} + dh_t o (1 - tanh(c)^2) / 2
                mul(de[k], e1, out=we[k])  # (B, 4, H)
                mul(do[k], dh, out=wo[k])
                carry = wc[k]
                if t0 + k:
                    dh = addmm(dh_in[t0 + k - 1], wg[k], W_hh, out=dhb)  # dL/dh_{t-1}
            dG = w[..., H:].reshape(n * B, 4 * H)  # view, rows (t, b), gates i, f, g, o
            if weights:
                dWhT.addmm_(Hs[t0:t1].view(n * B, H).t(), dG)
            _input_chunk_grads(dWiT, dX, dP, dG, X1, idx, W_ih, tmp, t0, t1, B)
        _give(ws)
        dX = _input_grads(ctx, X1, dP, W_ih, dWiT, dX)
        if not weights:
            return dX, None, None, None, None, None, None
        db = dWiT[E]
        return dX, None, dWiT[:E].t(), dWhT.t(), db, db.clone(), None


class _GRULayer(torch.autograd.Function):
    """One GRU layer, zero initial state: x (B, T, E) -> states (T, B, H), time-major."""

    @staticmethod
    def forward(ctx, x, index, W_ih, W_hh, b_ih, b_hh, grad):
        B, T, E, H, chunks, K = _sizes(x, index, W_hh)
        WiT, WhT, b = _doubled_rows(W_ih, W_hh, b_ih, b_hh, slice(2 * H, 3 * H))  # the n rows; b_n: 2 (b_in + b_hn)
        bhn2 = 2.0 * b_hh[2 * H:]
        E1 = E + 1 if index is None else 0  # X1 only for dense input
        TD = T if grad else 0  # D only when a backward may follow
        ws = _take(T * B * E1 + TD * B * 5 * H + K * B * 3 * H + 3 * K * B * H, x)
        X1, D, S, N, XN, tmp = _carve(ws, (T, B, E1), (TD, B, 5 * H), (K, B, 3 * H), (K, B, H), (K, B, H), (K, B, H))
        # saved: X1[t] = [x_t | 1] (dense input) and D[t], the local derivatives of step t (below); per chunk:
        # S[k] = r, z, 2 (W_in x + b_in + W_hn h + b_hn); N[k] = n_t; XN[k] = 2 (W_in x + b_in)
        X1[..., E:] = 1.0
        Hs = x.new_empty(T + 1, B, H)  # Hs[t] = h_{t-1}; Hs[1:] is the output
        Hs[0] = 0.0
        m1, zero, one = x.new_tensor(-1.0), x.new_tensor(0.0), x.new_tensor(1.0)
        xt, P, idx = _input(x, index, WiT, b)
        s_ = S.unbind(0)
        rz_, r_, z_ = S[..., :2 * H].unbind(0), S[..., :H].unbind(0), S[..., H:2 * H].unbind(0)
        sn_, n_, h_, xn_ = S[..., 2 * H:].unbind(0), N.unbind(0), Hs.unbind(0), XN.unbind(0)
        lerp, add = torch.lerp, torch.add
        for t0, t1 in chunks:
            n = t1 - t0
            _project(S[:n].view(-1, 3 * H), X1, xt, P, idx, WiT, b, t0, t1, B)
            torch.sub(S[:n, :, 2 * H:], bhn2, out=XN[:n])
            for k in range(n):
                if t0 + k:
                    s_[k].addmm_(h_[t0 + k], WhT)  # S_n = 2 (W_in x + b_in + W_hn h + b_hn)
                rz_[k].sigmoid_()  # r, z
                nk = lerp(xn_[k], sn_[k], r_[k], out=n_[k])  # 2 (W_in x + b_in + r (W_hn h + b_hn))
                add(m1, nk.sigmoid_(), alpha=2, out=nk)  # n_t
                lerp(nk, h_[t0 + k], z_[k], out=h_[t0 + k + 1])  # h_t = (1 - z) n + z h_{t-1}
            if not grad:
                continue
            # D[t] = [D_n r | D_n hn (r-r^2) | (h_{t-1}-n)(z-z^2) | D_n | z], D_n = (1-z)(1-n^2), hn = W_hn h + b_hn;
            # backward multiplies it by dh: [dL/dhn | dG_r | dG_z | dG_n | the direct path dh z]
            s, nt, tm = S[:n], N[:n], tmp[:n]
            r, z, sn = s.split(H, -1)  # as the step loop left them: r, z, S_n = 2 (W_in x + b_in + W_hn h + b_hn)
            dhn, dr, dz, Dn, dzh = D[t0:t1].split(H, -1)
            dzh.copy_(z)
            torch.addcmul(s[..., :2 * H], s[..., :2 * H], s[..., :2 * H], value=-1.0, out=D[t0:t1, :, H:3 * H])  # dr, dz
            torch.addcmul(one, nt, nt, value=-1.0, out=Dn)
            Dn.addcmul_(Dn, z, value=-1.0)  # (1 - n^2)(1 - z)
            torch.mul(Dn, r, out=dhn)
            torch.sub(sn, XN[:n], out=tm).mul_(Dn)  # 2 hn D_n
            torch.addcmul(zero, dr, tm, value=0.5, out=dr)
            dz.mul_(torch.sub(Hs[t0:t1], nt, out=tm))
        _keep(ctx, grad, ws, X1 if index is None else x, D, Hs, W_ih, W_hh, idx)
        return Hs[1:]

    @staticmethod
    def backward(ctx, dhs):
        X1, D, Hs, W_ih, W_hh, idx = ctx.saved_tensors  # folded: X1 holds the distinct rows (U, E)
        T, B, H = D.shape[0], D.shape[1], D.shape[2] // 5
        E = W_ih.shape[1]
        chunks = _chunks(T, B)
        K = chunks[0][1]
        W_nrz = torch.cat([W_hh[2 * H:], W_hh[:2 * H]])  # W_hh's rows in the order n, r, z
        ws = _take(K * B * 5 * H + K * B * max(E, 3 * H) + K * B, D)
        Wbuf, tmp, ones = _carve(ws, (K, B, 5 * H), (K * B * max(E, 3 * H),), (K * B,))
        ones.fill_(1.0)
        weights = any(ctx.needs_input_grad[2:6])  # False: frozen (explain's attributions need only dL/dx)
        dWiT = D.new_zeros(E + 1, 3 * H) if weights else None  # [dW_ih | db_ih]^T, columns r, z, n
        dWhT = D.new_zeros(H, 3 * H)  # columns n, r, z
        dbhn = D.new_zeros(H)
        dP = None if idx is None else D.new_zeros(X1.shape[0], 3 * H)  # folded: per distinct row
        dX = D.new_empty(B, T, E) if ctx.needs_input_grad[0] and idx is None else None
        dh_in = dhs.unbind(0)
        dhb = D.new_empty(B, H)
        dh1, dhb1 = dh_in[T - 1].unsqueeze(1), dhb.unsqueeze(1)  # dL/dh_t as (B, 1, H)
        mul, add = torch.mul, torch.add
        for t0, t1 in reversed(chunks):
            n = t1 - t0
            w = Wbuf[:n]
            d5, w5 = D[t0:t1].unflatten(-1, (5, H)).unbind(0), w.unflatten(-1, (5, H)).unbind(0)
            wh, wz = w[..., :3 * H].unbind(0), w[..., 4 * H:].unbind(0)
            for k in range(n - 1, -1, -1):
                mul(d5[k], dh1, out=w5[k])  # (B, 5, H)
                if t0 + k:
                    add(dh_in[t0 + k - 1], wz[k], out=dhb)  # direct path h_{t-1} -> h_t
                    dhb.addmm_(wh[k], W_nrz)  # dL/dh_{t-1}
                    dh1 = dhb1
            dGh, dGi = w[..., :3 * H].reshape(n * B, 3 * H), w[..., H:4 * H].reshape(n * B, 3 * H)
            if weights:
                dWhT.addmm_(Hs[t0:t1].view(n * B, H).t(), dGh)
                dbhn.addmv_(w[..., :H].reshape(n * B, H).t(), ones[:n * B])
            _input_chunk_grads(dWiT, dX, dP, dGi, X1, idx, W_ih, tmp, t0, t1, B)
        _give(ws)
        dX = _input_grads(ctx, X1, dP, W_ih, dWiT, dX)
        if not weights:
            return dX, None, None, None, None, None, None
        dW_hh = torch.cat([dWhT[:, H:], dWhT[:, :H]], 1).t()  # rows back to r, z, n
        db_hh = torch.cat([dWiT[E, :2 * H], dbhn])  # r, z: as b_ih; n: dL/dhn summed
        return dX, None, dWiT[:E].t(), dW_hh, dWiT[E].clone(), db_hh, None


def lstm_layer(x: torch.Tensor, W_ih, W_hh, b_ih, b_hh, index: torch.Tensor | None = None) -> torch.Tensor:
    """One nn.LSTM layer on dense (B, T, E) input (or folded: x[index], see `fold`), zero initial state -> (B, T, H)."""
    grad = _needs_grad(x, W_ih, W_hh, b_ih, b_hh)
    return _LSTMLayer.apply(x, index, W_ih, W_hh, b_ih, b_hh, grad).transpose(0, 1)


def gru_layer(x: torch.Tensor, W_ih, W_hh, b_ih, b_hh, index: torch.Tensor | None = None) -> torch.Tensor:
    """One nn.GRU layer on dense (B, T, E) input (or folded: x[index], see `fold`), zero initial state -> (B, T, H)."""
    grad = _needs_grad(x, W_ih, W_hh, b_ih, b_hh)
    return _GRULayer.apply(x, index, W_ih, W_hh, b_ih, b_hh, grad).transpose(0, 1)
