"""A measured dead end: the LSTM kernel with its per-step elementwise work compiled (C, gcc, ctypes).

    PYTHONPATH=src:benchmarks python benchmarks/fused_lstm/run.py --data ../shared/data/imdb \
        --out benchmarks/results/fused_lstm.json

`step.c` does one LSTM step's elementwise work after its matmul (the gates' sigmoids, c, h and the six
local derivatives backward reads) and one backward step's before its matmul, each in one call and
one pass over the step's cache-resident rows, where `rnnlab.kernels.lstm_layer` dispatches seven
PyTorch operations per forward step, eight per chunk of steps and three per backward step. Everything
else (chunks, pooled buffers, folded input, the matmuls) is the kernel's own ("lstm_c"). A second
variant ("lstm_chunk_c") runs a whole chunk of steps in one C call, its recurrent matmuls included
through MKL's sgemm_ (exported by libtorch_cpu), so no Python runs per step. This script compiles
step.c with `gcc -O3 -ffast-math -march=native`, checks the values and gradients of a training step
against nn.LSTM, and times the training step of benchmarks/kernels.py (B 64, T 400, 100 -> 128, one
thread, folded input, real reviews' tokens with --data) for nn.LSTM, lstm_layer and both variants,
rotated round by round; speed-ups are the medians of the per-round ratios, with their range.
"""
from __future__ import annotations

import argparse
import ctypes
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import kernels as bench  # noqa: E402  (benchmarks/kernels.py)
from common import publish  # noqa: E402
from rnnlab.kernels import (_carve, _chunks, _doubled_rows, _give, _input, _input_chunk_grads,  # noqa: E402
                            _input_grads, _keep, _needs_grad, _project, _sizes, _take)


def compile_step() -> ctypes.CDLL:
    out = Path(tempfile.mkdtemp()) / "libstep.so"
    subprocess.run(["gcc", "-O3", "-ffast-math", "-march=native", "-shared", "-fPIC",
                    str(Path(__file__).with_name("step.c")), "-o", str(out), "-lm"], check=True)
    lib = ctypes.CDLL(str(out))
    P, I = ctypes.c_void_p, ctypes.c_int
    lib.lstm_step.argtypes = [I, I, P, P, P, P, P]
    lib.lstm_step_back.argtypes = [I, I, P, P, P, P]
    lib.lstm_chunk.argtypes = [P, I, I, I, I, P, P, P, P, P]
    lib.lstm_chunk_back.argtypes = [P, I, I, I, I, P, P, P, P, P, P]
    return lib


LIB = compile_step()
SGEMM = ctypes.cast(ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so")).sgemm_,
                    ctypes.c_void_p).value  # MKL's, as PyTorch's matmuls use it


class _LSTMc(torch.autograd.Function):
    """rnnlab.kernels._LSTMLayer with each step's elementwise work in one C call ("lstm_c"), or with whole
    chunks of steps, their recurrent matmuls included, in one C call each ("lstm_chunk_c"); float32 only."""

    @staticmethod
    def forward(ctx, x, index, W_ih, W_hh, b_ih, b_hh, grad, whole_chunks):
        B, T, E, H, chunks, K = _sizes(x, index, W_hh)
        WiT, WhT, b = _doubled_rows(W_ih, W_hh, b_ih, b_hh, slice(2 * H, 3 * H))
        E1 = E + 1 if index is None else 0
        TD = T if grad else 0
        ws = _take(T * B * E1 + TD * B * 6 * H + K * B * 4 * H + (K + 1) * B * H, x)
        X1, D, G, C2 = _carve(ws, (T, B, E1), (TD, B, 6 * H), (K, B, 4 * H), (K + 1, B, H))
        X1[..., E:] = 1.0
        C2[0] = 0.0
        Hs = x.new_empty(T + 1, B, H)
        Hs[0] = 0.0
        xt, P, idx = _input(x, index, WiT, b)
        gates, h_ = G.unbind(0), Hs.unbind(0)
        gp, cp, hp, dp = G.data_ptr(), C2.data_ptr(), Hs.data_ptr(), D.data_ptr() if grad else None
        sg, sh, sd = B * 4 * H * 4, B * H * 4, B * 6 * H * 4
        for t0, t1 in chunks:
            n = t1 - t0
            _project(G[:n].view(-1, 4 * H), X1, xt, P, idx, WiT, b, t0, t1, B)
            if t0:
                C2[0].copy_(C2[K])
            if whole_chunks:
                LIB.lstm_chunk(SGEMM, B, H, n, int(t0 == 0), gp, WhT.data_ptr(), cp, hp + t0 * sh, dp and dp + t0 * sd)
                continue
            for k in range(n):
                t = t0 + k
                if t:
                    gates[k].addmm_(h_[t], WhT)
                LIB.lstm_step(B, H, gp + k * sg, cp + k * sh, cp + (k + 1) * sh, hp + (t + 1) * sh, dp and dp + t * sd)
        _keep(ctx, grad, ws, X1 if index is None else x, D, Hs, W_ih, W_hh, idx)
        ctx.whole_chunks = whole_chunks
        return Hs[1:]

    @staticmethod
    def backward(ctx, dhs):
        X1, D, Hs, W_ih, W_hh, idx = ctx.saved_tensors
        T, B, H = D.shape[0], D.shape[1], D.shape[2] // 6
        E = W_ih.shape[1]
        chunks = _chunks(T, B)
        K = chunks[0][1]
        ws = _take(2 * K * B * 5 * H + K * B * max(E, 4 * H) + B * 5 * H + B * H, D)
        Wbuf, tmp, zero, dh = _carve(ws, (2, K, B, 5 * H), (K * B * max(E, 4 * H),), (B, 5 * H), (B, H))
        zero.zero_()
        dWiT, dWhT = D.new_zeros(E + 1, 4 * H), D.new_zeros(H, 4 * H)
        dP = None if idx is None else D.new_zeros(X1.shape[0], 4 * H)
        dX = D.new_empty(B, T, E) if ctx.needs_input_grad[0] and idx is None else None
        dhs, W_hh = dhs.contiguous(), W_hh.contiguous()
        dh_in = dhs.unbind(0)
        dh.copy_(dh_in[T - 1])
        carry, dp, sd, sw = zero.data_ptr(), D.data_ptr(), B * 6 * H * 4, B * 5 * H * 4
        for j, (t0, t1) in enumerate(reversed(chunks)):
            n = t1 - t0
            w = Wbuf[j % 2, :n]
            wp, wg = w.data_ptr(), w[..., H:].unbind(0)
            if ctx.whole_chunks:
                LIB.lstm_chunk_back(SGEMM, B, H, n, t0, dp + t0 * sd, dhs.data_ptr(), dh.data_ptr(), carry, wp,
                                    W_hh.data_ptr())
            else:
                for k in range(n - 1, -1, -1):
                    t = t0 + k
                    LIB.lstm_step_back(B, H, dp + t * sd, dh.data_ptr(), carry, wp + k * sw)
                    carry = wp + k * sw
                    if t:
                        torch.addmm(dh_in[t - 1], wg[k], W_hh, out=dh)
            carry = wp  # the chunk's first step: the carry into the chunk before it
            dG = w[..., H:].reshape(n * B, 4 * H)
            dWhT.addmm_(Hs[t0:t1].view(n * B, H).t(), dG)
            _input_chunk_grads(dWiT, dX, dP, dG, X1, idx, W_ih, tmp, t0, t1, B)
        _give(ws)
        dX = _input_grads(ctx, X1, dP, W_ih, dWiT, dX)
        db = dWiT[E]
        return dX, None, dWiT[:E].t(), dWhT.t(), db, db.clone(), None, None


def lstm_c(x, W_ih, W_hh, b_ih, b_hh, index=None):
    return _LSTMc.apply(x, index, W_ih, W_hh, b_ih, b_hh, _needs_grad(x, W_ih, W_hh, b_ih, b_hh), False).transpose(0, 1)


def lstm_chunk_c(x, W_ih, W_hh, b_ih, b_hh, index=None):
    return _LSTMc.apply(x, index, W_ih, W_hh, b_ih, b_hh, _needs_grad(x, W_ih, W_hh, b_ih, b_hh), True).transpose(0, 1)


def max_differences(tokens: torch.Tensor, args, kernel) -> dict:
    """Relative max differences of the states and every gradient of a training step against nn.LSTM."""
    v = bench.Variant("lstm", None, args)
    w = (v.rnn.weight_ih_l0, v.rnn.weight_hh_l0, v.rnn.bias_ih_l0, v.rnn.bias_hh_l0)
    out = {}
    for name in ("nn.LSTM", "C"):
        if name == "C":
            rows, index = bench.fold(v.emb, tokens)
            states = kernel(rows, *w, index=index)
        else:
            states = v.rnn(v.emb(tokens))[0]
        loss = states[:, -1].sin().sum() + states.cos().mean()
        out[name] = [states, *torch.autograd.grad(loss, [v.emb.weight, *w])]
    names = ["states", "embedding", "weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    return {n: float(((a - b).abs().max() / a.abs().max()).detach())
            for n, a, b in zip(names, out["nn.LSTM"], out["C"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    args.batch, args.steps, args.embed, args.hidden, args.vocab, args.optimizer = 64, 400, 100, 128, 20000, "none"
    torch.set_num_threads(1)
    bench.KERNEL["lstm_c"], bench.KERNEL["lstm_chunk_c"] = lstm_c, lstm_chunk_c
    g = torch.Generator().manual_seed(0)
    tokens = bench.imdb_tokens(args) if args.data else torch.randint(1, args.vocab, (64, 400), generator=g)
    y = torch.randint(0, 2, (64,), generator=g).float()
    names = ["nn.LSTM", "lstm_layer folded", "lstm_c folded", "lstm_chunk_c folded"]
    variants = {n: bench.Variant("lstm", None if n == "nn.LSTM" else n, args) for n in names}
    wall = {n: [] for n in names}
    for r in range(args.warmup + args.repeats):
        for n in names[r % len(names):] + names[:r % len(names)]:
            t = time.perf_counter()
            variants[n].step(tokens, y)
            if r >= args.warmup:
                wall[n].append(time.perf_counter() - t)

    def ratio(a, b):
        rs = [x / y for x, y in zip(wall[a], wall[b])]
        return {"median": round(statistics.median(rs), 2), "min": round(min(rs), 2), "max": round(max(rs), 2)}

    publish({"step": "B 64, T 400, 100 -> 128, one thread, folded input, no optimizer", "rounds": args.repeats,
             "median_ms": {n: round(1000 * statistics.median(w), 1) for n, w in wall.items()},
             "speedup": {"lstm_layer folded vs nn.LSTM": ratio("nn.LSTM", "lstm_layer folded"),
                         "lstm_c folded vs nn.LSTM": ratio("nn.LSTM", "lstm_c folded"),
                         "lstm_c folded vs lstm_layer folded": ratio("lstm_layer folded", "lstm_c folded"),
                         "lstm_chunk_c folded vs nn.LSTM": ratio("nn.LSTM", "lstm_chunk_c folded"),
                         "lstm_chunk_c folded vs lstm_layer folded": ratio("lstm_layer folded", "lstm_chunk_c folded")},
             "max_relative_difference_to_nn_lstm": {"lstm_c": max_differences(tokens, args, lstm_c),
                                                    "lstm_chunk_c": max_differences(tokens, args, lstm_chunk_c)}},
            args.out)


if __name__ == "__main__":
    main()
