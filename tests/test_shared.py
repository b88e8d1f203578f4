"""Slow: the real IMDB copy end to end (skipped cleanly where ../shared/data/imdb is absent)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import SHARED_IMDB, needs_shared

pytestmark = [pytest.mark.slow, needs_shared]
CMD = [sys.executable, "-m", "rnnlab"]


def test_real_data_train_evaluate_predict(tmp_path):
    out = tmp_path / "run"
    r = subprocess.run(CMD + ["train", "--preset", "default", "--data", str(SHARED_IMDB), "--epochs", "1",
                              "--max-len", "60", "--truncate", "tail", "--strip-html", "--clip", "1.0",
                              "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert s["test_acc"] > 0.6, s  # one short epoch on the last 60 tokens: well above chance (0.5)
    m = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert m[0]["steps"] == 352 and m[0]["val_acc"] > 0.6  # 22,500 train reviews / 64, 2,500 held out
    vocab = json.loads((out / "vocab.json").read_text())["itos"]
    assert len(vocab) == 20000 and vocab[:4] == ["<pad>", "<unk>", "the", "and"]
    r = subprocess.run(CMD + ["evaluate", str(out), "--data", str(SHARED_IMDB), "--json"],
                       capture_output=True, text=True)
    rep = json.loads(r.stdout)
    assert rep["n"] == 25000 and rep["acc"] == s["test_acc"]  # both rounded from the same number
    assert [b["bucket"] for b in rep["by_length"]] == ["0-100", "100-200", "200-400", "400-800", "800+"]
