"""On a GPU: the same model gives the same logits and gradients on the CPU (rnnlab's kernels) and on CUDA
(cuDNN), and a short training run learns. Marked `gpu`: they run where a CUDA device exists."""
from __future__ import annotations

import pytest
import torch

from rnnlab.config import TrainConfig
from rnnlab.models import build_model

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru", "transformer"])
def test_cpu_and_cuda_agree(kind):
    torch.manual_seed(0)
    cfg = TrainConfig(model=kind, embed_dim=16, hidden_dim=16, pool="mean" if kind == "transformer" else "last")
    cpu = build_model(cfg, 100)
    gpu = build_model(cfg, 100).cuda()
    gpu.load_state_dict(cpu.state_dict())
    lengths = torch.tensor([5, 12, 1, 9])
    tokens = torch.randint(2, 100, (4, 12)) * (torch.arange(12)[None, :] < lengths[:, None])
    a, b = cpu(tokens, lengths), gpu(tokens.cuda(), lengths.cuda())
    torch.testing.assert_close(b.cpu(), a, atol=1e-4, rtol=1e-3)
    a.sum().backward()
    b.sum().backward()
    for (n, p), q in zip(cpu.named_parameters(), gpu.parameters()):
        torch.testing.assert_close(q.grad.cpu(), p.grad, atol=1e-4, rtol=1e-3, msg=n)
