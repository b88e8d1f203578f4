"""The CLI as a user calls it: help, train, evaluate, predict (happy paths)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

CMD = [sys.executable, "-m", "rnnlab.cli"]


@pytest.mark.parametrize("sub", [[], ["train"], ["evaluate"], ["predict"]])
def test_help_on_every_command(sub):
    r = subprocess.run(CMD + sub + ["--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "Usage:" in r.stdout


def test_train_evaluate_predict(tmp_path, tiny_data):
    out = tmp_path / "run"
    r = subprocess.run(CMD + ["train", "--data", str(tiny_data), "--epochs", "2", "--embed-dim", "16",
                              "--hidden-dim", "16", "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])  # the last line is one JSON object
    assert summary["run_dir"] == str(out) and summary["best_epoch"] == 2 and "test_acc" in summary
    assert "epoch 1 |" in r.stderr and "test acc" in r.stderr  # seed preset: test accuracy each epoch
    # default output directory and preset are recorded
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["val_fraction"] == 0.0 and cfg["test_every_epoch"] is True and cfg["hidden_dim"] == 16

    r = subprocess.run(CMD + ["evaluate", str(out), "--data", str(tiny_data), "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["n"] == 120 and abs(rep["acc"] - summary["test_acc"]) < 1e-3
    assert sum(map(sum, rep["confusion"]["matrix"])) == 120
    assert sum(b["n"] for b in rep["by_length"]) == 120

    csv = tmp_path / "mine.csv"
    csv.write_text("review,sentiment\n\"great, excellent film\",positive\nawful and boring,negative\n")
    r = subprocess.run(CMD + ["evaluate", str(out), "--data", str(csv)], capture_output=True, text=True)
    assert r.returncode == 0 and "2 reviews" in r.stdout

    r = subprocess.run(CMD + ["predict", str(out), "great excellent", "awful terrible"], capture_output=True, text=True)
    lines = r.stdout.strip().splitlines()
    assert r.returncode == 0 and len(lines) == 2
    assert all(l.split("\t")[0] in ("positive", "negative") and 0 <= float(l.split("\t")[1]) <= 1 for l in lines)
    r = subprocess.run(CMD + ["predict", str(out), "--json"], input="one\ntwo\nthree\n", capture_output=True, text=True)
    assert [json.loads(l)["label"] in ("positive", "negative") for l in r.stdout.splitlines()] == [True] * 3


def test_flags_override_preset_and_unknown_values_fail(tmp_path, tiny_data):
    r = subprocess.run(CMD + ["train", "--preset", "tuned", "--data", str(tiny_data), "--epochs", "1",
                              "--hidden-dim", "8", "--embed-dim", "8", "--out", str(tmp_path / "t")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    cfg = json.loads((tmp_path / "t" / "config.json").read_text())
    from rnnlab.config import TUNED

    assert cfg["epochs"] == 1 and cfg["hidden_dim"] == 8 and cfg["max_len"] == TUNED.max_len
    assert cfg["truncate"] == TUNED.truncate and cfg["clip"] == TUNED.clip
