"""Training-step speed of the hand-written LSTM / GRU / tanh-RNN kernels vs nn.LSTM / nn.GRU / nn.RNN.

    PYTHONPATH=src python benchmarks/kernels.py [--threads 1,2] [--repeats 9] [--warmup 2]
        [--optimizer none|sgd|adam] [--data ../shared/data/imdb] [--out benchmarks/results/kernels.json]

One training step of the notebook's shape: Embedding(20000, 100) -> one recurrent layer
(100 -> 128) -> Linear on the last state -> BCE -> backward (-> optimizer step), B=64, T=400,
for each variant: `nn.LSTM` vs `lstm_layer`, `nn.GRU` vs `gru_layer`, and for reference
`nn.RNN` vs the existing `tanh_rnn_layer`. The variants run side by side in one process:
each round times one step of every variant (in a rotated order), the first --warmup rounds are
dropped, and each speed-up is the median over rounds of the ratio within a round (paired, so a
load change between rounds hits both sides), with its min and max. Per thread count the script
also measures this machine's float32 GEMM throughput (median of (2048x2048)@(2048x2048)) and
reports each variant's matmul FLOP/s as a fraction of it; the matmul FLOPs of a step are
counted by formula: forward 2*B*T*(E*G*H + H*G*H), G = 4 (LSTM), 3 (GRU), 1 (RNN), backward
twice that. Wall time is the measure; the process CPU time, the load average (other jobs on
the machine) and the minor page faults of a step (memory the allocator got fresh from the system
and touched: benchmarks/allocator.py runs this script under two malloc settings) are recorded
next to it.

"lstm / gru matmuls only" (skip with --no-floor) run the same step with a layer that does only
the kernels' matmuls, with their shapes and nothing else: their speed-up over nn.LSTM / nn.GRU
is the most any kernel of this design could reach on this machine.

"... folded" variants feed the layer `rnnlab.kernels.fold(embedding, tokens)` (each distinct
token's vector once, as rnnlab's models do in training when no dropout follows the embedding):
"x_layer folded" is the kernel, "x matmuls only folded" the floor of that design (its matmuls,
gathers and index_add_s). Their FLOP/s count the dense step's matmul FLOPs (the same work done
with fewer operations), so a fraction of sgemm above 1 is possible there. --data PATH takes
the tokens of real reviews (the last 400 of 64 random train reviews at least that long: ~4,700
distinct tokens); without it the tokens are uniform random ids (~14,000 distinct: the worst
case for folding).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from common import sgemm_gflops
from rnnlab.kernels import fold, gru_layer, lstm_layer, tanh_rnn_layer

GATES = {"rnn": 1, "lstm": 4, "gru": 3}
PAIRS = [(kind, ref, ker + how) for kind, ref, ker in
         [("lstm", "nn.LSTM", "lstm_layer"), ("gru", "nn.GRU", "gru_layer"), ("rnn", "nn.RNN", "tanh_rnn_layer")]
         for how in ("", " folded")]
KERNEL = {"lstm_layer": lstm_layer, "gru_layer": gru_layer, "tanh_rnn_layer": tanh_rnn_layer}
FLOOR = {"lstm": "lstm matmuls only", "gru": "gru matmuls only"}  # the floor of the kernels' design
FOLDED_FLOOR = {k: v + " folded" for k, v in FLOOR.items()}
MODULE = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


def machine() -> dict:
    """CPU model (with family/model and caches from lscpu), cores, torch and BLAS versions."""
    env = {"python": platform.python_version(), "torch": torch.__version__, "cpu_count": os.cpu_count()}
    try:
        info = dict(line.split(":", 1) for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines() if ":" in line)
        for key in ("Model name", "CPU family", "Model", "Core(s) per socket", "Thread(s) per core",
                    "L2 cache", "L3 cache"):
            if key in info:
                env[key.lower().replace(" ", "_").replace("(s)", "s")] = info[key].strip()
    except (OSError, subprocess.CalledProcessError):
        env["model_name"] = platform.processor()
    env["blas"] = next((l.strip(" -") for l in torch.__config__.show().splitlines() if "Math Kernel" in l
                        or "OpenBLAS" in l), "unknown")
    env["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    return env


def step_flops(kind: str, B: int, T: int, E: int, H: int) -> int:
    """Matmul FLOPs of one training step of the layer: forward 2BT(EGH + HGH), backward 2x that."""
    G = GATES[kind]
    return 3 * 2 * B * T * (E * G * H + H * G * H)


class _MatmulsOnly(torch.autograd.Function):
    """The matmuls of lstm_layer / gru_layer / tanh_rnn_layer with their shapes, and nothing else.

    Forward: per chunk of K steps the input projection, then one (B, H) @ (H, G*H) addmm per
    step; backward: one (B, G*H) @ (G*H, H) addmm per step, per chunk dW^T += [x | 1]^T dG,
    dW_hh^T += h^T dG, dx = dG W_ih, plus the kernels' two layout copies (x in, dx out) and its
    buffers (zero-filled, not pooled). Values are meaningless; the time is about the floor of a
    kernel built this way: what it leaves out is the elementwise work.
    """

    @staticmethod
    def forward(ctx, x, index, W_ih, W_hh, b, K):
        (B, T), E = (x.shape[:2] if index is None else index.shape), x.shape[-1]
        GH, H = W_hh.shape
        WiT, WhT = W_ih.t().contiguous(), W_hh.t().contiguous()
        if index is None:
            X1 = x.new_empty(T, B, E + 1)
            X1[..., :E] = x.detach().transpose(0, 1)
            X1[..., E] = 1.0
        else:  # folded: the distinct rows' projection, gathered per chunk
            X1, P, idx = x.detach(), torch.addmm(b, x.detach(), WiT), index.t().reshape(-1)
        Hs = x.new_zeros(T + 1, B, H)
        Gc = x.new_empty(K, B, GH)
        gates, h_ = Gc.unbind(0), Hs.unbind(0)
        for t0 in range(0, T, K):
            n = min(T, t0 + K) - t0
            if index is None:
                torch.addmm(b, X1[t0:t0 + n, :, :E].reshape(-1, E), WiT, out=Gc[:n].view(-1, GH))
            else:
                torch.index_select(P, 0, idx[t0 * B:(t0 + n) * B], out=Gc[:n].view(-1, GH))
            for k in range(n):
                if t0 + k:
                    gates[k].addmm_(h_[t0 + k], WhT)
        ctx.save_for_backward(X1, Hs, W_ih, W_hh, None if index is None else idx)
        ctx.K = K
        return Hs[1:]

    @staticmethod
    def backward(ctx, dhs):
        X1, Hs, W_ih, W_hh, idx = ctx.saved_tensors
        T, B = Hs.shape[0] - 1, Hs.shape[1]
        E = W_ih.shape[1]
        GH, H, K = W_hh.shape[0], W_hh.shape[1], ctx.K
        W = dhs.new_zeros(K, B, GH)
        dWiT, dWhT = dhs.new_zeros(E + 1, GH), dhs.new_zeros(H, GH)
        dX = dhs.new_empty(B, T, E) if idx is None else None
        dP = None if idx is None else dhs.new_zeros(X1.shape[0], GH)
        tmp, dh = dhs.new_empty(K * B, E), dhs.new_empty(B, H)
        w_, dh_in = W.unbind(0), dhs.unbind(0)
        for t0 in reversed(range(0, T, K)):
            n = min(T, t0 + K) - t0
            for k in range(n - 1, -1, -1):
                if t0 + k:
                    torch.addmm(dh_in[t0 + k - 1], w_[k], W_hh, out=dh)
            dG = W[:n].view(n * B, GH)
            dWhT.addmm_(Hs[t0:t0 + n].view(n * B, H).t(), dG)
            if idx is not None:
                dP.index_add_(0, idx[t0 * B:(t0 + n) * B], dG)
                continue
            dWiT.addmm_(X1[t0:t0 + n].view(n * B, E + 1).t(), dG)
            y = torch.mm(dG, W_ih, out=tmp[:n * B])
            dX[:, t0:t0 + n].copy_(y.view(n, B, -1).transpose(0, 1))
        if idx is not None:
            torch.mm(X1.t(), dP, out=dWiT[:E])
            torch.sum(dP, 0, out=dWiT[E])
            dX = dP @ W_ih
        return dX, None, dWiT[:-1].t(), dWhT.t(), dWiT[-1], None


def matmuls_only(x, W_ih, W_hh, b_ih, b_hh, index=None):
    from rnnlab import kernels
    B, T = x.shape[:2] if index is None else index.shape
    K = max(1, min(T, kernels.ROWS_PER_CHUNK // B))
    return _MatmulsOnly.apply(x, index, W_ih, W_hh, b_ih + b_hh, K).transpose(0, 1)


class Variant:
    """Embedding -> layer (nn module or kernel on the module's weights) -> Linear(last state) -> BCE."""

    def __init__(self, kind: str, kernel: str | None, args, seed: int = 0):
        torch.manual_seed(seed)
        self.folded = bool(kernel) and kernel.endswith(" folded")
        if kernel:
            kernel = kernel.removesuffix(" folded")
        self.kernel = (matmuls_only if kernel in FLOOR.values() else KERNEL[kernel]) if kernel else None
        self.emb = nn.Embedding(args.vocab, args.embed, padding_idx=0)
        self.rnn = MODULE[kind](args.embed, args.hidden, batch_first=True)
        self.fc = nn.Linear(args.hidden, 1)
        params = [*self.emb.parameters(), *self.rnn.parameters(), *self.fc.parameters()]
        self.opt = {"none": None, "sgd": lambda: torch.optim.SGD(params, lr=0.01),
                    "adam": lambda: torch.optim.Adam(params, lr=1e-3)}[args.optimizer]
        self.opt = self.opt() if self.opt else None
        self.params = params

    def step(self, tokens: torch.Tensor, y: torch.Tensor) -> None:
        w = (self.rnn.weight_ih_l0, self.rnn.weight_hh_l0, self.rnn.bias_ih_l0, self.rnn.bias_hh_l0)
        if self.folded:  # what rnnlab's models do in training when no dropout sits after the embedding
            rows, index = fold(self.emb, tokens)
            out = self.kernel(rows, *w, index=index)
        elif self.kernel is None:
            out = self.rnn(self.emb(tokens))[0]
        else:
            out = self.kernel(self.emb(tokens), *w)
        loss = F.binary_cross_entropy_with_logits(self.fc(out[:, -1]).squeeze(-1), y)
        loss.backward()
        if self.opt is not None:
            self.opt.step()
        for p in self.params:
            p.grad = None


def imdb_tokens(args) -> torch.Tensor:
    """The last `steps` tokens of `batch` random train reviews at least that long (lab presets' text settings)."""
    import numpy as np

    from rnnlab.data import load_imdb
    from rnnlab.text import encode_corpus

    ids, starts, lengths = encode_corpus(load_imdb(args.data), strip_html=True).split("train", args.vocab)
    long = np.flatnonzero(lengths >= args.steps)
    pick = np.random.default_rng(0).choice(long, args.batch, replace=False)
    return torch.from_numpy(np.stack([ids[starts[i] + lengths[i] - args.steps:starts[i] + lengths[i]] for i in pick]))


def _minor_faults() -> int:
    """The process's minor page faults so far: each first touch of a 4 KB page the allocator got fresh from the
    system (glibc's malloc maps blocks above its mmap threshold anew and unmaps them when freed)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def measure(threads: int, args) -> dict:
    torch.set_num_threads(threads)
    load_before = os.getloadavg()
    gemm = sgemm_gflops()
    g = torch.Generator().manual_seed(0)
    tokens = imdb_tokens(args) if args.data else torch.randint(1, args.vocab, (args.batch, args.steps), generator=g)
    y = torch.randint(0, 2, (args.batch,), generator=g).float()
    names = list(dict.fromkeys(n for kind, ref, ker in PAIRS if kind in args.kinds
                               for n in (ref, ker, *([FLOOR[kind], FOLDED_FLOOR[kind]] if args.floor and kind in FLOOR
                                                     else []))))
    kind_of = {n: kind for kind, ref, ker in PAIRS for n in (ref, ker, FLOOR.get(kind), FOLDED_FLOOR.get(kind))}
    variants = {n: Variant(kind_of[n], None if n.startswith("nn.") else n, args) for n in names}
    wall = {n: [] for n in names}
    cpu = {n: [] for n in names}
    faults = {n: [] for n in names}
    for r in range(args.warmup + args.repeats):
        order = names[r % len(names):] + names[:r % len(names)]  # rotate: no variant always first
        for n in order:
            f, c, t = _minor_faults(), time.process_time(), time.perf_counter()
            variants[n].step(tokens, y)
            t, c, f = time.perf_counter() - t, time.process_time() - c, _minor_faults() - f
            if r >= args.warmup:
                wall[n].append(t)
                cpu[n].append(c)
                faults[n].append(f)
    gemm_after = sgemm_gflops()
    res = {"threads": threads, "distinct_tokens": len(tokens.unique()), "sgemm_gflops": round(gemm, 1), "sgemm_gflops_after": round(gemm_after, 1),
           "load_avg_before": [round(v, 2) for v in load_before],
           "load_avg_after": [round(v, 2) for v in os.getloadavg()], "variants": {}, "speedups": {}}
    ref_gemm = statistics.median([gemm, gemm_after])
    for n in names:
        ws = sorted(wall[n])
        q1, q3 = statistics.quantiles(ws, n=4)[0], statistics.quantiles(ws, n=4)[2]
        med = statistics.median(ws)
        flops = step_flops(kind_of[n], args.batch, args.steps, args.embed, args.hidden)
        res["variants"][n] = {
            "median_ms": round(1000 * med, 1), "min_ms": round(1000 * ws[0], 1), "max_ms": round(1000 * ws[-1], 1),
            "iqr_ms": [round(1000 * q1, 1), round(1000 * q3, 1)],
            "cpu_median_ms": round(1000 * statistics.median(cpu[n]), 1),
            "minor_page_faults_median": statistics.median(faults[n]),
            "matmul_gflop_per_step": round(flops / 1e9, 2),
            "achieved_gflops": round(flops / med / 1e9, 1),
            "fraction_of_sgemm": round(flops / med / 1e9 / ref_gemm, 3),
            "wall_ms": [round(1000 * v, 1) for v in wall[n]],
        }
    pairs = [(ref, ker) for kind, ref, ker in PAIRS if kind in args.kinds]
    pairs += list(dict.fromkeys((ref, floor[kind]) for kind, ref, _ in PAIRS for floor in (FLOOR, FOLDED_FLOOR)
                                if floor.get(kind) in names))  # the bounds
    for ref, ker in pairs:
        ratios = [a / b for a, b in zip(wall[ref], wall[ker])]
        res["speedups"][f"{ker} vs {ref}"] = {
            "median": round(statistics.median(ratios), 2), "min": round(min(ratios), 2),
            "max": round(max(ratios), 2),
            "of_medians": round(statistics.median(wall[ref]) / statistics.median(wall[ker]), 2),
            "cpu_time": round(statistics.median(cpu[ref]) / statistics.median(cpu[ker]), 2)}
    return res


def table(res: dict) -> str:
    lines = [f"threads {res['threads']}: sgemm {res['sgemm_gflops']} / {res['sgemm_gflops_after']} GFLOP/s "
             f"(before / after), load avg {res['load_avg_before'][0]} -> {res['load_avg_after'][0]}",
             f"  {'variant':24} {'median ms':>10} {'IQR ms':>15} {'min-max ms':>15} {'cpu ms':>8} "
             f"{'GFLOP/s':>8} {'of sgemm':>8} {'faults':>7}"]
    for n, v in res["variants"].items():
        lines.append(f"  {n:24} {v['median_ms']:10.1f} {v['iqr_ms'][0]:7.1f}-{v['iqr_ms'][1]:<7.1f} "
                     f"{v['min_ms']:7.1f}-{v['max_ms']:<7.1f} {v['cpu_median_ms']:8.1f} "
                     f"{v['achieved_gflops']:8.1f} {v['fraction_of_sgemm']:8.2f} {v['minor_page_faults_median']:7.0f}")
    for k, s in res["speedups"].items():
        lines.append(f"  speed-up {k}: {s['median']}x (paired rounds, min {s['min']}, max {s['max']}; "
                     f"ratio of medians {s['of_medians']}, of CPU time {s['cpu_time']})")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    ap.add_argument("--repeats", type=int, default=9, help="timed rounds per thread count (>= 7)")
    ap.add_argument("--warmup", type=int, default=2, help="rounds dropped first")
    ap.add_argument("--kinds", default="lstm,gru,rnn", help="which pairs: lstm, gru, rnn")
    ap.add_argument("--optimizer", choices=["none", "sgd", "adam"], default="none",
                    help="also time an optimizer step")
    ap.add_argument("--no-floor", dest="floor", action="store_false",
                    help="skip the matmuls-only variants (the speed-up bound of the kernels' design)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=400, help="sequence length T")
    ap.add_argument("--embed", type=int, default=100)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=20000)
    ap.add_argument("--data", default=None,
                    help="IMDB copy: real reviews' tokens (default: uniform random ids, the worst case for folding)")
    ap.add_argument("--out", default=None, help="also write the JSON result here")
    args = ap.parse_args()
    args.kinds = args.kinds.split(",")
    result = {"machine": machine(), "config": {k: v for k, v in vars(args).items() if k != "out"}, "runs": []}
    print(json.dumps({"machine": result["machine"]}), flush=True)
    for threads in map(int, args.threads.split(",")):
        res = measure(threads, args)
        result["runs"].append(res)
        print(table(res), flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
