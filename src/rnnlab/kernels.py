"""Hand-written CPU training kernels for recurrent layers: forward and BPTT without an autograd node per step.

    from rnnlab.kernels import tanh_rnn_layer
    hs = tanh_rnn_layer(x, W_ih, W_hh, b_ih, b_hh)   # x (B, T, E) -> every hidden state (B, T, H)

PyTorch has no fused recurrent kernel on CPU: nn.RNN runs its steps as ordinary operators, each
recorded for autograd. These kernels compute the input projection of all steps in one matmul,
run one matmul (and as few elementwise operations as possible) per step, and in backward form the
weight gradient as one big matmul after the loop. `models.run_recurrent` uses them on CPU; on a GPU
cuDNN's fused kernels are faster. tests/test_models.py checks values and gradients against nn.RNN.
"""
from __future__ import annotations

import torch


class _TanhRecurrence(torch.autograd.Function):
    """hs[t] = tanh(xw[t] + hs[t-1] @ W_hh.T) with hs[-1] = 0, and hand-written BPTT.

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
