"""Hand-written CPU training kernels for one LSTM or GRU layer (forward and BPTT).

    from rnnlab.kernels import lstm_layer, gru_layer
    m = nn.LSTM(100, 128, batch_first=True)
    out = lstm_layer(x, m.weight_ih_l0, m.weight_hh_l0, m.bias_ih_l0, m.bias_hh_l0)  # == m(x)[0]
    # x (B, T, E) dense batch-first, zero initial state; out (B, T, H): every hidden state

Both are `torch.autograd.Function`s with exactly nn.LSTM's / nn.GRU's equations and weight
layouts (LSTM gates i, f, g, o; GRU r, z, n with b_hn inside r * (W_hn h + b_hn)), in float32
or float64, and return gradients for x (so the embedding trains) and all four weight tensors.
`tests/test_kernels.py` checks values and gradients against the nn modules, and gradcheck.
Stack calls for several layers (with dropout between them as nn.LSTM does).

On CPU, nn.GRU runs one autograd node per op and step, and nn.LSTM runs oneDNN's LSTM well
below the machine's matmul throughput; these kernels spend most of a training step in matrix
products (benchmarks/kernels.py measures both). What makes them fast:

- Time is cut into chunks of ~ROWS_PER_CHUNK rows (K steps x B). Per chunk the input
  projection of its K steps is one addmm, written where each step then adds its recurrent term
  in place (one addmm per step), while the chunk is still in cache.
- Few elementwise kernels per step, because each costs a fixed few microseconds: tanh is ~5x
  slower than sigmoid on CPU, so the g / n pre-activations are doubled (their weight rows x2)
  and tanh(a) = 2 sigmoid(2a) - 1. One in-place sigmoid covers all four LSTM gates; the LSTM
  keeps 2c, so tanh(c) is one more sigmoid. A GRU step is addmm, sigmoid (r, z),
  lerp (n's pre-activation, lerp(W_in x, W_in x + W_hn h, r)), sigmoid, add, lerp (h).
- Backward: the local derivatives of a chunk are a handful of chunk-wide ops, laid out so each
  step is one broadcast multiply of dL/dc (LSTM) or dL/dh (GRU) into them, one or two small
  ops and one addmm for dL/dh_{t-1}. Per chunk, dL/dx is one matmul and each weight gradient
  is one accumulating matmul; a column of ones next to x_t gives the bias gradient with it.
- The large internal buffers (gates, cell states) come from a small pool and go back to it
  when the autograd graph is freed: a fresh 50 MB buffer costs ~15 ms of page faults per call.
  The pool never holds a tensor the caller can see (outputs and gradients are fresh).
"""
from __future__ import annotations

import weakref

import torch

ROWS_PER_CHUNK = 1024  # K = ROWS_PER_CHUNK // B steps per chunk: matmuls big enough, buffers cache-sized
POOL_KEEP = 4  # internal buffers kept for reuse (most recently released first)
_pool: list[torch.Tensor] = []


def _take(numel: int, like: torch.Tensor) -> torch.Tensor:
    """A flat internal buffer of at least `numel` elements: the smallest pooled one that fits."""
    fits = [k for k, b in enumerate(_pool) if b.dtype == like.dtype and b.device == like.device
            and b.numel() >= numel]
    if not fits:
        return like.new_empty(numel)
    return _pool.pop(min(fits, key=lambda k: _pool[k].numel()))


def _give(buf: torch.Tensor) -> None:
    _pool.append(buf)
    del _pool[:-POOL_KEEP]


def clear_pool() -> None:
    """Free the pooled internal buffers."""
    _pool.clear()


def _carve(buf: torch.Tensor, *shapes):
    """Consecutive views of `buf` with the given shapes."""
    out, at = [], 0
    for s in shapes:
        n = 1
        for d in s:
            n *= d
        out.append(buf[at:at + n].view(s))
        at += n
    return out


def _chunks(T: int, B: int) -> list[tuple[int, int]]:
    K = max(1, min(T, ROWS_PER_CHUNK // max(B, 1)))
    return [(t0, min(T, t0 + K)) for t0 in range(0, T, K)]


def _dx_chunk(dX, dG, W_ih, tmp, t0, t1):
    """dX[:, t0:t1] = dG @ W_ih, dG's rows in (t, b) order, dX batch-major (B, T, E)."""
    n, B = t1 - t0, dX.shape[0]
    y = torch.mm(dG, W_ih, out=tmp[:n * B])
    dX[:, t0:t1].copy_(y.view(n, B, -1).transpose(0, 1))


class _LSTMLayer(torch.autograd.Function):
    """One LSTM layer, zero initial state: x (B, T, E) -> states (T, B, H), time-major."""

    @staticmethod
    def forward(ctx, x, W_ih, W_hh, b_ih, b_hh):
        B, T, E = x.shape
        H = W_hh.shape[1]
        scale = x.new_ones(4 * H, 1)
        scale[2 * H:3 * H] = 2.0  # g rows doubled: tanh(a) = 2 sigmoid(2a) - 1
        WiT = (W_ih * scale).t().contiguous()  # (E, 4H)
        WhT = (W_hh * scale).t().contiguous()  # (H, 4H)
        b = (b_ih + b_hh) * scale[:, 0]  # (4H,)
        ws = _take(T * B * (E + 1) + T * B * 4 * H + (T + 1) * B * H + B * H, x)
        X1, G, C2, tc = _carve(ws, (T, B, E + 1), (T, B, 4 * H), (T + 1, B, H), (B, H))
        # X1[t] = [x_t | 1]; G[t] = gates i, f, 2g, o; C2[t] = 2 c_{t-1} (2c: tanh(c) is one sigmoid)
        X1[..., E] = 1.0
        C2[0] = 0.0
        Hs = x.new_empty(T + 1, B, H)  # Hs[t] = h_{t-1}; Hs[1:] is the output
        Hs[0] = 0.0
        m1, m2 = x.new_tensor(-1.0), x.new_tensor(-2.0)
        xt = x.detach().transpose(0, 1)  # (T, B, E) view
        gates = G.unbind(0)
        i_, f_, g_, o_ = (G[..., k * H:(k + 1) * H].unbind(0) for k in range(4))  # T x (B, H)
        h_, c_ = Hs.unbind(0), C2.unbind(0)
        add, mul, sigmoid = torch.add, torch.mul, torch.sigmoid
        for t0, t1 in _chunks(T, B):
            X1[t0:t1, :, :E].copy_(xt[t0:t1])
            torch.addmm(b, X1[t0:t1, :, :E].reshape(-1, E), WiT, out=G[t0:t1].view(-1, 4 * H))
            for t in range(t0, t1):
                a = gates[t]  # (B, 4H): x_t W_ih^T + b, plus h_{t-1} W_hh^T
                if t:
                    a.addmm_(h_[t], WhT)
                a.sigmoid_()  # i, f, sigmoid(2 a_g), o
                g2 = add(m2, g_[t], alpha=4, out=g_[t])  # 2g = 4 sigmoid(2 a_g) - 2
                c2 = mul(f_[t], c_[t], out=c_[t + 1])
                c2.addcmul_(i_[t], g2)  # 2c_t = f 2c_{t-1} + i 2g
                add(m1, sigmoid(c2, out=tc), alpha=2, out=tc)  # tanh(c_t)
                mul(o_[t], tc, out=h_[t + 1])  # h_t
        ctx.save_for_backward(X1, G, C2, Hs, W_ih, W_hh)
        weakref.finalize(ctx, _give, ws)  # back to the pool once the graph is gone
        return Hs[1:]

    @staticmethod
    def backward(ctx, dhs):  # dhs: (T, B, H)
        X1, G, C2, Hs, W_ih, W_hh = ctx.saved_tensors
        T, B, H = C2.shape[0] - 1, C2.shape[1], C2.shape[2]
        E = X1.shape[2] - 1
        chunks = _chunks(T, B)
        K = chunks[0][1]
        ws = _take(2 * K * B * 5 * H + 2 * K * B * H + K * B * H + K * B * E, G)
        Dbuf, Abuf, TCc, Xc = _carve(ws, (2, K, B, 5 * H), (2, K, B, H), (K, B, H), (K * B, E))
        # D[k] = [f | (i-i^2) 2g | (f-f^2) 2c_{t-1} | i (2 - (2g)^2/2) | (o-o^2) tanh c]   (B, 5H)
        # times e = dL/d(2c) (first four) and dh (last): [e f (the carry) | dG_i dG_f dG_g dG_o]
        dWi = G.new_zeros(4 * H, E + 1)  # [dW_ih | db]
        dWh = G.new_zeros(4 * H, H)
        dX = G.new_empty(B, T, E) if ctx.needs_input_grad[0] else None
        m1, half, two = G.new_tensor(-1.0), G.new_tensor(0.5), G.new_tensor(2.0)
        dh_in = dhs.unbind(0)
        dh = dh_in[T - 1]
        dhb, e = G.new_empty(B, H), G.new_empty(B, H)
        carry = None
        mul, addcmul, addmm = torch.mul, torch.addcmul, torch.addmm
        for j, (t0, t1) in enumerate(reversed(chunks)):
            n = t1 - t0
            D, A, g = Dbuf[j % 2, :n], Abuf[j % 2, :n], G[t0:t1]  # (n, B, .)
            gi, gf, gg, go = g[..., :H], g[..., H:2 * H], g[..., 2 * H:3 * H], g[..., 3 * H:]
            tc = torch.sigmoid(C2[t0 + 1:t1 + 1], out=TCc[:n])
            tc = torch.add(m1, tc, alpha=2, out=tc)  # tanh(c_t)
            addcmul(g, g, g, value=-1.0, out=D[..., H:])  # s - s^2 (the g slot is rewritten below)
            D[..., :H].copy_(gf)
            D[..., H:2 * H].mul_(gg)
            D[..., 2 * H:3 * H].mul_(C2[t0:t1])
            addcmul(two, gg, gg, value=-0.5, out=D[..., 3 * H:4 * H]).mul_(gi)
            D[..., 4 * H:].mul_(tc)
            addcmul(half, tc, tc, value=-0.5, out=A).mul_(go)  # o (1 - tanh(c)^2) / 2
            Dk, Ak = D.unbind(0), A.unbind(0)
            De, Do = D[..., :4 * H].unflatten(-1, (4, H)).unbind(0), D[..., 4 * H:].unbind(0)
            for k in range(n - 1, -1, -1):
                if carry is None:
                    mul(dh, Ak[k], out=e)
                else:
                    addcmul(carry, dh, Ak[k], out=e)  # e_t = e_{t+1} f_{t+1} + dh_t o (1 - tanh^2) / 2
                De[k].mul_(e.unsqueeze(1))  # (B, 4, H)
                Do[k].mul_(dh)
                carry = Dk[k][:, :H]
                if t0 + k:
                    dh = addmm(dh_in[t0 + k - 1], Dk[k][:, H:], W_hh, out=dhb)  # dL/dh_{t-1}
            dG = D[..., H:].reshape(n * B, 4 * H)  # view, rows (t, b), gates i, f, g, o
            dWi.addmm_(dG.t(), X1[t0:t1].view(n * B, E + 1))
            dWh.addmm_(dG.t(), Hs[t0:t1].view(n * B, H))
            if dX is not None:
                _dx_chunk(dX, dG, W_ih, Xc, t0, t1)
        _give(ws)
        db = dWi[:, E]
        return dX, dWi[:, :E], dWh, db, db.clone()


class _GRULayer(torch.autograd.Function):
    """One GRU layer, zero initial state: x (B, T, E) -> states (T, B, H), time-major."""

    @staticmethod
    def forward(ctx, x, W_ih, W_hh, b_ih, b_hh):
        B, T, E = x.shape
        H = W_hh.shape[1]
        scale = x.new_ones(3 * H, 1)
        scale[2 * H:] = 2.0  # n rows doubled: n = tanh(a) = 2 sigmoid(2a) - 1
        WiT = (W_ih * scale).t().contiguous()  # (E, 3H)
        WhT = (W_hh * scale).t().contiguous()  # (H, 3H)
        b = (b_ih + b_hh) * scale[:, 0]  # r, z: b_i + b_h; n: 2 (b_in + b_hn)
        bhn2 = 2.0 * b_hh[2 * H:]
        chunks = _chunks(T, B)
        K = chunks[0][1]
        ws = _take(T * B * (E + 1) + T * B * 3 * H + T * B * H + K * B * H, x)
        X1, S, N, XN = _carve(ws, (T, B, E + 1), (T, B, 3 * H), (T, B, H), (K, B, H))
        # X1[t] = [x_t | 1]; S[t] = r, z, 2 (W_hn h + b_hn); N[t] = n_t; XN: the chunk's 2 (W_in x + b_in)
        X1[..., E] = 1.0
        Hs = x.new_empty(T + 1, B, H)  # Hs[t] = h_{t-1}; Hs[1:] is the output
        Hs[0] = 0.0
        m1 = x.new_tensor(-1.0)
        xt = x.detach().transpose(0, 1)
        s_ = S.unbind(0)
        rz_, r_, z_ = S[..., :2 * H].unbind(0), S[..., :H].unbind(0), S[..., H:2 * H].unbind(0)
        sn_, n_, h_, xn_ = S[..., 2 * H:].unbind(0), N.unbind(0), Hs.unbind(0), XN.unbind(0)
        lerp, add = torch.lerp, torch.add
        for t0, t1 in chunks:
            X1[t0:t1, :, :E].copy_(xt[t0:t1])
            torch.addmm(b, X1[t0:t1, :, :E].reshape(-1, E), WiT, out=S[t0:t1].view(-1, 3 * H))
            xn = torch.sub(S[t0:t1, :, 2 * H:], bhn2, out=XN[:t1 - t0])
            for t in range(t0, t1):
                if t:
                    s_[t].addmm_(h_[t], WhT)  # S_n = 2 (W_in x + b_in + W_hn h + b_hn)
                rz_[t].sigmoid_()  # r, z
                n = lerp(xn_[t - t0], sn_[t], r_[t], out=n_[t])  # 2 (W_in x + b_in + r (W_hn h + b_hn))
                add(m1, n.sigmoid_(), alpha=2, out=n)  # n_t
                lerp(n, h_[t], z_[t], out=h_[t + 1])  # h_t = (1 - z) n + z h_{t-1}
            S[t0:t1, :, 2 * H:].sub_(xn)  # keep 2 (W_hn h + b_hn) for backward
        ctx.save_for_backward(X1, S, N, Hs, W_ih, W_hh)
        weakref.finalize(ctx, _give, ws)
        return Hs[1:]

    @staticmethod
    def backward(ctx, dhs):
        X1, S, N, Hs, W_ih, W_hh = ctx.saved_tensors
        T, B, H = N.shape
        E = X1.shape[2] - 1
        chunks = _chunks(T, B)
        K = chunks[0][1]
        W_nrz = torch.cat([W_hh[2 * H:], W_hh[:2 * H]])  # W_hh's rows in the order n, r, z
        ws = _take(2 * K * B * 4 * H + 2 * K * B * H + K * B * H + K * B * E + K * B, S)
        Dbuf, DH, tmp, Xc, ones = _carve(ws, (2, K, B, 4 * H), (2, K, B, H), (K, B, H), (K * B, E), (K * B,))
        # D[k] = [D_n r | D_n hn (r-r^2) | (h_{t-1}-n)(z-z^2) | D_n] (B, 4H), D_n = (1-z)(1-n^2), hn = W_hn h + b_hn;
        # times dh: [dL/dhn | dG_r | dG_z | dG_n]: dG_h = D[:, :3H] (rows n, r, z), dG_i = D[:, H:] (r, z, n)
        ones.fill_(1.0)
        dWi = S.new_zeros(3 * H, E + 1)  # [dW_ih | db_ih]
        dWh = S.new_zeros(3 * H, H)  # rows n, r, z
        dbhn = S.new_zeros(H)
        dX = S.new_empty(B, T, E) if ctx.needs_input_grad[0] else None
        one = S.new_tensor(1.0)
        dh_in = dhs.unbind(0)
        addcmul, addmm = torch.addcmul, torch.addmm
        order = list(reversed(chunks))
        DH[0, order[0][1] - order[0][0] - 1].copy_(dh_in[T - 1])
        for j, (t0, t1) in enumerate(order):
            n = t1 - t0
            D, dhc, tm = Dbuf[j % 2, :n], DH[j % 2, :n], tmp[:n]
            s = S[t0:t1]
            r, z, rz, hn2 = s[..., :H], s[..., H:2 * H], s[..., :2 * H], s[..., 2 * H:]
            nt, hp = N[t0:t1], Hs[t0:t1]
            Dn = D[..., 3 * H:]
            addcmul(rz, rz, rz, value=-1.0, out=D[..., H:3 * H])  # r - r^2, z - z^2
            addcmul(one, nt, nt, value=-1.0, out=Dn)
            Dn.addcmul_(Dn, z, value=-1.0)  # (1 - n^2)(1 - z)
            torch.mul(Dn, r, out=D[..., :H])
            D[..., H:2 * H].mul_(hn2).mul_(Dn).mul_(0.5)
            D[..., 2 * H:3 * H].mul_(torch.sub(hp, nt, out=tm))
            Dk, z_, dh_ = D.unbind(0), z.unbind(0), dhc.unbind(0)
            Dh = D[..., :3 * H].unflatten(-1, (3, H)).unbind(0)
            nxt = DH[(j + 1) % 2, order[j + 1][1] - order[j + 1][0] - 1] if j + 1 < len(order) else None
            for k in range(n - 1, -1, -1):
                dh = dh_[k]
                Dh[k].mul_(dh.unsqueeze(1))  # (B, 3, H)
                if t0 + k:
                    out = dh_[k - 1] if k else nxt
                    addcmul(dh_in[t0 + k - 1], dh, z_[k], out=out)  # direct path h_{t-1} -> h_t
                    addmm(out, Dk[k][:, :3 * H], W_nrz, out=out)  # dL/dh_{t-1}
            Dn.mul_(dhc)  # dG_n = dh D_n
            dGh, dGi = D[..., :3 * H].reshape(n * B, 3 * H), D[..., H:].reshape(n * B, 3 * H)
            dWh.addmm_(dGh.t(), Hs[t0:t1].view(n * B, H))
            dbhn.addmv_(D[..., :H].reshape(n * B, H).t(), ones[:n * B])
            dWi.addmm_(dGi.t(), X1[t0:t1].view(n * B, E + 1))
            if dX is not None:
                _dx_chunk(dX, dGi, W_ih, Xc, t0, t1)
        _give(ws)
        dW_hh = torch.cat([dWh[H:], dWh[:H]])  # rows back to r, z, n
        db_hh = torch.cat([dWi[:2 * H, E], dbhn])  # r, z: as b_ih; n: dL/dhn summed
        return dX, dWi[:, :E], dW_hh, dWi[:, E].clone(), db_hh


def lstm_layer(x: torch.Tensor, W_ih, W_hh, b_ih, b_hh) -> torch.Tensor:
    """One nn.LSTM layer on dense (B, T, E) input, zero initial state -> all states (B, T, H)."""
    return _LSTMLayer.apply(x, W_ih, W_hh, b_ih, b_hh).transpose(0, 1)


def gru_layer(x: torch.Tensor, W_ih, W_hh, b_ih, b_hh) -> torch.Tensor:
    """One nn.GRU layer on dense (B, T, E) input, zero initial state -> all states (B, T, H)."""
    return _GRULayer.apply(x, W_ih, W_hh, b_ih, b_hh).transpose(0, 1)
