"""Training end to end on synthetic data: learning, determinism, run files, divergence, resume."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import make_reviews, write_parquet_dir
from rnnlab.config import ConfigError, TrainConfig, with_overrides
from rnnlab.data import load_imdb
from rnnlab.runs import Run
from rnnlab.models import RecurrentClassifier, orthogonality_penalty
from rnnlab.train import Divergence, _loss, evaluate, prepare, stratified_split, train

SMALL = dict(embed_dim=16, hidden_dim=16, vocab_size=60, batch_size=16, val_fraction=0.2,
             test_every_epoch=False, eval_batch_size=64)
TIMING = {"train_seconds", "tokens_per_second"}


def _run(tmp_path, data_dir, name="run", **over):
    cfg = with_overrides(TrainConfig(), {**SMALL, **over})
    data = prepare(cfg, load_imdb(data_dir))
    run = Run.create(tmp_path / name, cfg, data.vocab, data.source)
    return train(cfg, data, run, log=lambda s: None), run


@pytest.fixture(scope="module")
def learn_data(tmp_path_factory):
    """600 short synthetic reviews: one or two polar words among 4-20 filler words."""
    return write_parquet_dir(tmp_path_factory.mktemp("learn") / "imdb",
                             make_reviews(600, seed=3, min_len=4, max_len=20), make_reviews(200, seed=4, min_len=4, max_len=20))


@pytest.mark.parametrize("kind,epochs,lr", [("rnn", 12, 3e-3), ("lstm", 10, 1e-2), ("gru", 10, 1e-2),
                                             ("bow", 15, 3e-2), ("transformer", 10, 3e-3), ("cnn", 8, 1e-2)])
def test_each_model_kind_learns_the_synthetic_task(tmp_path, learn_data, kind, epochs, lr):
    summary, run = _run(tmp_path, learn_data, model=kind, epochs=epochs, lr=lr, clip=1.0)
    first = run.metrics()[0]["train_loss"]
    assert run.metrics()[-1]["train_loss"] < first
    assert summary["test_acc"] >= 0.8, summary  # chance is 0.5: polar words decide the label


def test_step_loss_learns_and_changes_training(tmp_path, learn_data):
    base, rb = _run(tmp_path, learn_data, "base", epochs=3, lr=3e-3, clip=1.0)
    summary, run = _run(tmp_path, learn_data, "steps", epochs=12, lr=3e-3, clip=1.0, step_loss=0.5)
    assert summary["test_acc"] >= 0.8, summary
    steps3 = _run(tmp_path, learn_data, "steps3", epochs=3, lr=3e-3, clip=1.0, step_loss=0.5)[1]
    assert [m["train_loss"] for m in steps3.metrics()] != [m["train_loss"] for m in rb.metrics()]


def test_step_loss_mixes_final_and_real_steps_only():
    torch.manual_seed(0)
    m = RecurrentClassifier("rnn", 30, 6, 8).eval()
    tokens = torch.tensor([[5, 6, 7, 0, 0], [8, 9, 10, 11, 12]])
    lengths = torch.tensor([3, 5])
    labels = torch.tensor([1.0, 0.0])
    logits, steps = m(tokens, lengths, every_step=True)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    real = torch.cat([steps[0, :3], steps[1, :5]])
    want = 0.75 * bce(logits, labels) + 0.25 * bce(real, torch.tensor([1.0] * 3 + [0.0] * 5))
    assert torch.allclose(_loss(m, tokens, lengths, labels, 0.25), want)
    assert torch.allclose(_loss(m, tokens, lengths, labels, 0.0), bce(logits, labels))
    wider = torch.cat([tokens, torch.zeros(2, 4, dtype=tokens.dtype)], 1)  # more padding: same loss
    assert torch.allclose(_loss(m, wider, lengths, labels, 0.25), want)


def test_cpu_run_repeats_exactly(tmp_path, tiny_data):
    a, ra = _run(tmp_path, tiny_data, "a", epochs=2, dropout=0.2)
    b, rb = _run(tmp_path, tiny_data, "b", epochs=2, dropout=0.2)
    c, rc = _run(tmp_path, tiny_data, "c", epochs=2, dropout=0.2, seed=1)
    strip = lambda ms: [{k: v for k, v in m.items() if k not in TIMING} for m in ms]  # noqa: E731
    assert strip(ra.metrics()) == strip(rb.metrics())
    assert strip(ra.metrics()) != strip(rc.metrics())


def test_run_directory_contents(tmp_path, tiny_data):
    summary, run = _run(tmp_path, tiny_data, epochs=2, test_every_epoch=True)
    for f in ("config.json", "meta.json", "vocab.json", "metrics.jsonl", "model.safetensors",
              "learning_curve.png", "summary.json", "checkpoint.json"):
        assert (run.path / f).is_file(), f
    rows = run.metrics()
    assert [r["epoch"] for r in rows] == [1, 2]
    for key in ("train_loss", "val_acc", "test_acc", "train_seconds", "tokens_per_second",
                "grad_norm_max", "grad_norm_median"):
        assert all(key in r for r in rows), key
    assert summary["best_epoch"] in (1, 2) and 0 <= summary["test_acc"] <= 1
    assert not list(run.path.glob("*.tmp")) and not list(run.path.glob(".*"))
    # weights are a plain safetensors state dict that reloads into a fresh model
    cfg, vocab, model = Run(run.path).load_model()
    assert len(vocab) <= cfg.vocab_size and not model.training


def test_gradient_clipping_records_unclipped_norm(tmp_path, tiny_data):
    _, run = _run(tmp_path, tiny_data, epochs=1, clip=1e-3, lr=0.5)
    assert run.metrics()[0]["grad_norm_max"] > 1e-3  # the norm before clipping is what is recorded


def test_divergence_stops_and_keeps_last_good_weights(tmp_path, tiny_data, monkeypatch):
    import rnnlab.train as T

    cfg = with_overrides(TrainConfig(), {**SMALL, "epochs": 3})
    data = prepare(cfg, load_imdb(tiny_data))
    run = Run.create(tmp_path / "div", cfg, data.vocab, data.source)
    real = T.F.binary_cross_entropy_with_logits
    calls = {"n": 0}

    def flaky(logits, y):
        calls["n"] += 1
        out = real(logits, y)
        return out * float("nan") if calls["n"] == len(T.batch_indices(data.train.lengths, 16)) + 3 else out

    monkeypatch.setattr(T.F, "binary_cross_entropy_with_logits", flaky)
    with pytest.raises(Divergence, match=r"epoch 2, step 3"):
        train(cfg, data, run, log=lambda s: None)
    assert [r["epoch"] for r in run.metrics()] == [1]
    from safetensors import safe_open

    with safe_open(run.path / "model.safetensors", "pt") as f:
        assert f.metadata()["epoch"] == "1"


def test_stratified_split_is_seeded_and_stratified():
    y = np.array([0] * 600 + [1] * 400)
    tr, va = stratified_split(y, 0.1, 0)
    assert len(va) == 100 and y[va].sum() == 40 and len(np.intersect1d(tr, va)) == 0
    assert (stratified_split(y, 0.1, 0)[1] == va).all() and not (stratified_split(y, 0.1, 1)[1] == va).all()


@pytest.fixture(scope="module")
def medium_data(tmp_path_factory):
    """Enough reviews that an epoch takes ~1 s, so a signal can land mid-run."""
    return write_parquet_dir(tmp_path_factory.mktemp("medium") / "imdb",
                             make_reviews(1500, seed=5, max_len=100), make_reviews(200, seed=6))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_then_resume_equals_uninterrupted(tmp_path, medium_data, sig):
    args = ["--preset", "default", "--data", str(medium_data), "--epochs", "4", "--hidden-dim", "32",
            "--embed-dim", "32", "--vocab-size", "80", "--dropout", "0.1", "--batch-size", "32"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "rnnlab.cli", "train"]
    full = subprocess.run(cmd + args + ["--out", str(tmp_path / "full")], capture_output=True, text=True, env=env)
    assert full.returncode == 0, full.stderr
    proc = subprocess.Popen(cmd + args + ["--out", str(tmp_path / "cut")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    ck = tmp_path / "cut" / "checkpoint.json"
    deadline = time.time() + 120
    while not ck.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "--resume" in err
    done = [json.loads(line)["epoch"] for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert 1 <= len(done) < 4
    res = subprocess.run(cmd + ["--resume", str(tmp_path / "cut"), "--data", str(medium_data)],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    strip = lambda p: [{k: v for k, v in json.loads(l).items() if k not in TIMING}  # noqa: E731
                       for l in (p / "metrics.jsonl").read_text().splitlines()]
    assert strip(tmp_path / "cut") == strip(tmp_path / "full")
    a, b = json.loads(full.stdout.splitlines()[-1]), json.loads(res.stdout.splitlines()[-1])
    assert a["test_acc"] == b["test_acc"] and a["best_epoch"] == b["best_epoch"]
    assert torch.equal(*(Run(tmp_path / d).load_model()[2].fc.weight for d in ("full", "cut")))


def test_weight_average_is_what_gets_scored_and_saved(tmp_path, learn_data):
    summary, run = _run(tmp_path, learn_data, "avg", epochs=12, lr=3e-3, clip=1.0, weight_average=0.95)
    assert summary["test_acc"] >= 0.8, summary
    plain = _run(tmp_path, learn_data, "plain", epochs=3, lr=3e-3, clip=1.0)[1]
    avg3 = _run(tmp_path, learn_data, "avg3", epochs=3, lr=3e-3, clip=1.0, weight_average=0.95)[1]
    assert [m["val_acc"] for m in avg3.metrics()] != [m["val_acc"] for m in plain.metrics()]
    ck = avg3.path / json.loads((avg3.path / "checkpoint.json").read_text())["dir"]
    saved, live = load_file(avg3.path / "model.safetensors"), load_file(ck / "last.safetensors")
    average = {k.removeprefix("module."): v for k, v in load_file(ck / "average.safetensors").items()
               if k.startswith("module.")}
    assert saved.keys() == live.keys() == average.keys()
    if avg3.metrics()[-1]["val_acc"] >= max(m["val_acc"] for m in avg3.metrics()):  # the last epoch is the best
        assert all(torch.equal(saved[k], average[k]) for k in saved)
    assert not all(torch.equal(average[k], live[k]) for k in live)
    cfg, vocab, model = avg3.load_model()  # the saved weights score the recorded validation accuracy
    data = prepare(cfg, load_imdb(learn_data))
    best = max(avg3.metrics(), key=lambda r: (r["val_acc"], r["epoch"]))
    assert evaluate(model, data.val)["acc"] == pytest.approx(best["val_acc"])


@pytest.mark.parametrize("weight_average,skip_spikes,val_checks", [(0.0, 0.0, 1), (0.9, 1.5, 3)])
def test_resumed_run_equals_straight_run(tmp_path, tiny_data, weight_average, skip_spikes, val_checks):
    over = {**SMALL, "dropout": 0.2, "weight_average": weight_average, "skip_spikes": skip_spikes,
            "val_checks": val_checks}
    straight = _run(tmp_path, tiny_data, "straight", epochs=3, **over)[1]
    cut = _run(tmp_path, tiny_data, "cut", epochs=1, **over)[1]
    cfg = with_overrides(TrainConfig(), {**over, "epochs": 3})
    train(cfg, prepare(cfg, load_imdb(tiny_data)), Run(cut.path), log=lambda s: None)
    strip = lambda ms: [{k: v for k, v in m.items() if k not in TIMING} for m in ms]  # noqa: E731
    assert strip(Run(cut.path).metrics()) == strip(straight.metrics())
    a, b = load_file(straight.path / "model.safetensors"), load_file(cut.path / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("value", [-0.1, 1.0])
def test_weight_average_must_be_a_decay(value):
    with pytest.raises(ConfigError, match="weight_average must be in"):
        TrainConfig(weight_average=value)


def test_skip_spikes_skips_steps_above_the_last_epochs_median(tmp_path, tiny_data):
    plain = _run(tmp_path, tiny_data, "plain", epochs=3)[1].metrics()
    tight = _run(tmp_path, tiny_data, "tight", epochs=3, skip_spikes=1.01)[1].metrics()
    loose = _run(tmp_path, tiny_data, "loose", epochs=3, skip_spikes=1e9)[1].metrics()
    assert tight[0]["skipped_steps"] == 0  # no median before epoch 1 ends
    assert all(0 < m["skipped_steps"] < m["steps"] for m in tight[1:])  # about half the steps beat the median
    assert [m["skipped_steps"] for m in loose] == [0, 0, 0]
    assert [m["train_loss"] for m in loose] == [m["train_loss"] for m in plain]
    assert tight[0]["train_loss"] == plain[0]["train_loss"] and tight[1]["train_loss"] != plain[1]["train_loss"]
    with pytest.raises(ConfigError, match="skip_spikes"):
        TrainConfig(skip_spikes=0.5)


def test_val_checks_select_the_best_pass_and_save_its_weights(tmp_path, learn_data):
    summary, run = _run(tmp_path, learn_data, "checks", epochs=3, lr=3e-2, clip=1.0, dropout=0.3, val_checks=4)
    ms = run.metrics()
    steps = ms[0]["steps"]
    for m in ms:  # four passes, evenly spaced, the last at the epoch's end; val_acc is the best one
        assert [p[0] for p in m["val_passes"]] == [math.ceil(k * steps / 4) for k in (1, 2, 3, 4)]
        top = max(m["val_passes"], key=lambda p: p[1])
        assert m["val_acc"] == pytest.approx(top[1], abs=1e-6) and m["val_step"] == top[0]
    best = max(ms, key=lambda r: (r["val_acc"], r["epoch"]))
    assert (summary["best_epoch"], summary["best_step"]) == (best["epoch"], best["val_step"])
    assert best["val_step"] < steps  # this seed and rate peak mid-epoch: the case the weights must follow
    cfg, vocab, model = run.load_model()  # the saved weights score the selected pass, mid-epoch or not
    assert evaluate(model, prepare(cfg, load_imdb(learn_data)).val)["acc"] == pytest.approx(best["val_acc"])
    ends = _run(tmp_path, learn_data, "ends", epochs=3, lr=3e-2, clip=1.0, dropout=0.3)[1].metrics()
    assert [m["train_loss"] for m in ends] == [m["train_loss"] for m in ms]  # passes do not change training
    assert [m["val_acc"] for m in ends] == pytest.approx([m["val_passes"][-1][1] for m in ms], abs=1e-6)
    with pytest.raises(ConfigError, match="val_checks"):
        TrainConfig(val_checks=0)


def test_orthogonal_penalty_keeps_the_recurrence_orthogonal(tmp_path, learn_data):
    over = dict(epochs=4, lr=3e-2, clip=1.0, recurrent_init="orthogonal")
    free = _run(tmp_path, learn_data, "free", **over)[1].load_model()[2]
    held = _run(tmp_path, learn_data, "held", orthogonal_penalty=1.0, **over)[1].load_model()[2]
    assert orthogonality_penalty(held).item() < 0.2 * orthogonality_penalty(free).item()
    with pytest.raises(ConfigError, match="orthogonal_penalty needs a recurrent model"):
        TrainConfig(model="bow", orthogonal_penalty=0.1)


def test_cosine_holds_the_full_rate_for_lr_hold_then_decays(tmp_path, tiny_data):
    rates = lambda **o: [m["lr"] for m in _run(tmp_path, tiny_data, str(o), epochs=4, **o)[1].metrics()]  # noqa: E731
    assert rates() == [1e-3] * 4
    held, plain = rates(lr_schedule="cosine", lr_hold=0.5), rates(lr_schedule="cosine")
    assert held[:2] == [1e-3, 1e-3] and 1e-3 > held[2] > held[3] and held[3] < 0.2e-3
    assert all(h >= p for h, p in zip(held, plain)) and plain[0] < 1e-3
    assert rates(lr_hold=0.5) == [1e-3] * 4  # the constant schedule ignores the hold
    with pytest.raises(ConfigError, match="lr_hold must be in"):
        TrainConfig(lr_hold=1.0)
