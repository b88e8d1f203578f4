"""cuDNN against rnnlab's CPU kernels on the same weights and batch: the largest difference in the output and in
each gradient, with TF32 on (PyTorch's default for cuDNN) and off. Needs a CUDA GPU:
    PYTHONPATH=src python benchmarks/cudnn_tf32.py
Output on an H200: benchmarks/results/gpu_h200/cudnn_tf32.txt ("difference/largest value" per tensor).
`twins` is also tests/test_gpu.py's setup, so this measures what that test checks."""
import sys

import torch

from rnnlab.config import TrainConfig
from rnnlab.models import build_model


def twins(kind: str):
    """(cpu model, the same weights on CUDA, tokens (4, 12) with padding, lengths): a tiny model of `kind`."""
    torch.manual_seed(0)
    cfg = TrainConfig(model=kind, embed_dim=16, hidden_dim=16, pool="mean" if kind == "transformer" else "last")
    cpu = build_model(cfg, 100)
    gpu = build_model(cfg, 100).cuda()
    gpu.load_state_dict(cpu.state_dict())
    lengths = torch.tensor([5, 12, 1, 9])
    tokens = torch.randint(2, 100, (4, 12)) * (torch.arange(12)[None, :] < lengths[:, None])
    return cpu, gpu, tokens, lengths


def main() -> None:
    import argparse

    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()  # no options: --help, or refuse any
    if not torch.cuda.is_available():
        sys.exit("needs a CUDA GPU: it compares the CPU's numbers with cuDNN's")
    print("defaults: cudnn.allow_tf32", torch.backends.cudnn.allow_tf32, "matmul.allow_tf32",
          torch.backends.cuda.matmul.allow_tf32, torch.get_float32_matmul_precision())
    for tf32 in (True, False):
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        for kind in ("rnn", "lstm", "gru", "transformer"):
            cpu, gpu, tokens, lengths = twins(kind)
            a, b = cpu(tokens, lengths), gpu(tokens.cuda(), lengths.cuda())
            worst = [("out", (b.cpu() - a).abs().max().item(), a.abs().max().item())]
            a.sum().backward()
            b.sum().backward()
            for (n, p), q in zip(cpu.named_parameters(), gpu.parameters()):
                worst.append((n, (q.grad.cpu() - p.grad).abs().max().item(), p.grad.abs().max().item()))
            print(f"tf32={tf32} {kind}: " + ", ".join(f"{n} {d:.1e}/{m:.1e}" for n, d, m in worst if d > 1e-6))


if __name__ == "__main__":
    main()
