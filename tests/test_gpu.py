"""On a GPU: the same model gives the same logits and gradients on the CPU (rnnlab's kernels) and on CUDA
(cuDNN), a short training run on the GPU learns, and the run it saves works on a machine without one.
Marked `gpu`: they run where a CUDA device exists (CI has none; they ran on an H200, see docs/PERFORMANCE.md).

cuDNN's recurrent layers compute in TF32 by default on Ampere and newer GPUs (torch.backends.cudnn.allow_tf32):
their inputs rounded to 10-bit mantissas, so their gradients differ from float32's by ~1e-3 relative. The
comparison turns TF32 off to check the two code paths compute the same function; training keeps PyTorch's
default."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import make_reviews, write_parquet_dir
from rnnlab.config import TrainConfig, with_overrides
from rnnlab.data import load_imdb
from rnnlab.prepare import prepare
from rnnlab.runs import RunDir
from rnnlab.text import tokenize
from rnnlab.train import train

_spec = importlib.util.spec_from_file_location(  # the setup benchmarks/cudnn_tf32.py measures, TF32 on and off
    "cudnn_tf32", Path(__file__).resolve().parents[1] / "benchmarks" / "cudnn_tf32.py")
_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_bench)
twins = _bench.twins

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.fixture
def float32_on_the_gpu():
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru", "transformer"])
def test_cpu_and_cuda_agree(kind, float32_on_the_gpu):
    cpu, gpu, tokens, lengths = twins(kind)
    a, b = cpu(tokens, lengths), gpu(tokens.cuda(), lengths.cuda())
    torch.testing.assert_close(b.cpu(), a, atol=1e-5, rtol=1e-4)
    a.sum().backward()
    b.sum().backward()
    for (n, p), q in zip(cpu.named_parameters(), gpu.parameters()):
        torch.testing.assert_close(q.grad.cpu(), p.grad, atol=1e-5, rtol=1e-4, msg=lambda m, n=n: f"{n}: {m}")


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_a_run_trained_on_the_gpu_learns_and_is_used_on_a_machine_without_one(tmp_path, kind):
    data_dir = write_parquet_dir(tmp_path / "imdb", make_reviews(600, seed=3, min_len=4, max_len=20),
                                 make_reviews(200, seed=4, min_len=4, max_len=20))
    cfg = with_overrides(TrainConfig(), dict(model=kind, embed_dim=16, hidden_dim=16, vocab_size=60, batch_size=16,
                                             val_fraction=0.2, test_every_epoch=False, epochs=10, lr=1e-2,
                                             clip=1.0, device="cuda"))
    ds = load_imdb(data_dir)
    run = RunDir.create(tmp_path / "run", cfg, prepare(cfg, ds).vocab, ds)
    summary = train(cfg, prepare(cfg, ds), run, log=lambda s: None).summary
    assert summary["device"].startswith("cuda") and summary["test_acc"] >= 0.8, summary  # chance is 0.5
    text = ds.test.texts[0]
    on_gpu = json.loads(_rnnlab("predict", str(run.path), text, "--json", env={}).splitlines()[0])
    on_cpu = json.loads(_rnnlab("predict", str(run.path), text, "--json", env={"CUDA_VISIBLE_DEVICES": ""}).splitlines()[0])
    assert abs(on_cpu["p_positive"] - on_gpu["p_positive"]) < 5e-3, (on_cpu, on_gpu)  # cuDNN's TF32 (above)
    html = tmp_path / "why.html"
    _rnnlab("explain", str(run.path), text, "--attribution", "--html", str(html), "--plain",  # no Captum: says so
            env={"CUDA_VISIBLE_DEVICES": ""})
    assert html.read_text().count('<span class="t w') == 2 * len(tokenize(text))  # by opinion, by attribution


def _rnnlab(*args: str, env: dict) -> str:
    r = subprocess.run([sys.executable, "-m", "rnnlab", *args], capture_output=True, text=True, timeout=300,
                       env={**os.environ, **env})
    assert r.returncode == 0, r.stderr
    return r.stdout
