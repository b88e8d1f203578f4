"""Training end to end on synthetic data: learning, determinism, run files, divergence, resume."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import make_reviews, write_parquet_dir
from rnnlab.config import ConfigError, TrainConfig, with_overrides
from rnnlab.data import load_imdb
from rnnlab.io import HANGUP, RunError, write_json
from rnnlab.models import RecurrentClassifier, build_model
from rnnlab.prepare import prepare, stratified_split
from rnnlab.runs import RunDir
from rnnlab.scoring import score
from rnnlab.train import BestWeights, Divergence, Interrupted, lr_at, objective, train

SMALL = dict(embed_dim=16, hidden_dim=16, vocab_size=60, batch_size=16, val_fraction=0.2, test_every_epoch=False)
TIMING = {"train_seconds", "tokens_per_second"}


def _run(tmp_path, data_dir, name="run", **over):
    cfg = with_overrides(TrainConfig(), {**SMALL, **over})
    ds = load_imdb(data_dir)
    data = prepare(cfg, ds)
    run = RunDir.create(tmp_path / name, cfg, data.vocab, ds)
    return train(cfg, data, run, log=lambda s: None).summary, run


@pytest.fixture(scope="module")
def learn_data(tmp_path_factory):
    """600 short synthetic reviews: one or two polar words among 4-20 filler words."""
    return write_parquet_dir(tmp_path_factory.mktemp("learn") / "imdb",
                             make_reviews(600, seed=3, min_len=4, max_len=20), make_reviews(200, seed=4, min_len=4, max_len=20))


@pytest.mark.parametrize("kind,epochs,lr", [("rnn", 12, 3e-3), ("lstm", 10, 1e-2), ("gru", 10, 1e-2),
                                             ("bow", 15, 3e-2), ("transformer", 10, 3e-3), ("cnn", 8, 1e-2)])
def test_each_model_kind_learns_the_synthetic_task(tmp_path, learn_data, kind, epochs, lr):
    pool = "last" if kind in ("rnn", "lstm", "gru") else "mean"
    summary, run = _run(tmp_path, learn_data, model=kind, epochs=epochs, lr=lr, clip=1.0, pool=pool)
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
    logits, steps = m.forward_steps(tokens, lengths)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    real = torch.cat([steps[0, :3], steps[1, :5]])
    want = 0.75 * bce(logits, labels) + 0.25 * bce(real, torch.tensor([1.0] * 3 + [0.0] * 5))
    assert torch.allclose(objective(m, tokens, lengths, labels, 0.25), want)
    assert torch.allclose(objective(m, tokens, lengths, labels, 0.0), bce(logits, labels))
    wider = torch.cat([tokens, torch.zeros(2, 4, dtype=tokens.dtype)], 1)  # more padding: same loss
    assert torch.allclose(objective(m, wider, lengths, labels, 0.25), want)


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
    cfg, vocab, model = RunDir(run.path).load_model()
    assert len(vocab) <= cfg.vocab_size and not model.training
    meta = json.loads((run.path / "meta.json").read_text())  # where the run came from
    assert meta["data"]["path"] == str(tiny_data.resolve()) and len(meta["data"]["fingerprint"]) == 64
    assert meta["environment"]["rnnlab"]


def test_clipping_applies_and_the_unclipped_norm_is_recorded(tmp_path, tiny_data):
    seen = []

    def after_step(model, row):  # the gradients the optimizer stepped with are still in .grad
        applied = torch.norm(torch.stack([p.grad.norm() for p in model.parameters() if p.grad is not None]))
        seen.append((row["grad_norm"], float(applied)))

    cfg = with_overrides(TrainConfig(), {**SMALL, "epochs": 1, "clip": 1e-3})
    ds = load_imdb(tiny_data)
    metrics = train(cfg, prepare(cfg, ds), log=lambda s: None, on_step=after_step).metrics
    assert metrics[0]["grad_norm_max"] == max(n for n, _ in seen) > 1e-3  # the norm before clipping is recorded
    assert all(applied == pytest.approx(1e-3, rel=1e-3) for n, applied in seen if n > 1e-3)  # and clipped
    free = with_overrides(cfg, {"clip": 0.0})
    seen.clear()
    train(free, prepare(free, ds), log=lambda s: None, on_step=after_step)
    assert all(applied == pytest.approx(n, rel=1e-4) for n, applied in seen)  # clip 0: never clipped


def test_train_without_a_run_dir_or_a_test_split_writes_nothing(tmp_path, tiny_data, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = with_overrides(TrainConfig(), {**SMALL, "epochs": 2})
    data = prepare(cfg, load_imdb(tiny_data))
    data.test = None
    trained = train(cfg, data, log=lambda s: None)
    assert "test_acc" not in trained.summary and len(trained.metrics) == 2 and not trained.model.training
    assert score(trained.model, data.val)["acc"] == pytest.approx(trained.summary["val_acc"])
    assert list(tmp_path.iterdir()) == []


def test_best_weights_keep_the_earliest_of_equal_passes():
    m = RecurrentClassifier("rnn", 10, 4, 4)
    best = BestWeights()
    assert best.offer(0.7, 1, 5, m)
    first = {k: v.clone() for k, v in best.state.items()}
    with torch.no_grad():
        m.fc.weight.add_(1.0)
    assert not best.offer(0.7, 2, 5, m)  # a tie keeps the earlier pass and its weights
    assert (best.epoch, best.step) == (1, 5) and all(torch.equal(first[k], best.state[k]) for k in first)
    assert best.offer(0.71, 2, 5, m) and best.epoch == 2 and torch.equal(best.state["fc.weight"], m.fc.weight)


def test_on_a_validation_tie_the_summary_and_the_saved_weights_name_the_same_epoch(tmp_path, tiny_data, monkeypatch):
    import rnnlab.train as T

    monkeypatch.setattr(T, "score", lambda model, enc, device="cpu": {"acc": 0.5, "loss": 0.7})  # every pass ties
    summary, run = _run(tmp_path, tiny_data, epochs=3)
    from safetensors import safe_open

    with safe_open(run.path / "model.safetensors", "pt") as f:
        assert summary["best_epoch"] == int(f.metadata()["epoch"]) == 1


def test_the_summary_reports_the_kept_epochs_validation_accuracy_not_the_last(tmp_path, tiny_data, monkeypatch):
    """Validation 0.6, 0.9, 0.7: epoch 2 is kept, and its 0.9 is the summary's val_acc (compare picks each
    family's best model by it)."""
    import rnnlab.train as T

    accs = iter([0.6, 0.9, 0.7])
    real = T.score
    monkeypatch.setattr(T, "score", lambda model, enc, device="cpu": (
        {"acc": next(accs), "loss": 0.5} if enc is data.val else real(model, enc, device)))
    cfg = with_overrides(TrainConfig(), {**SMALL, "epochs": 3})
    data = prepare(cfg, load_imdb(tiny_data))
    trained = train(cfg, data, log=lambda s: None)
    assert trained.summary["best_epoch"] == 2 and [m["val_acc"] for m in trained.metrics] == [0.6, 0.9, 0.7]
    assert trained.summary["val_acc"] == 0.9


def test_divergence_stops_and_keeps_last_good_weights(tmp_path, tiny_data, monkeypatch):
    import rnnlab.train as T

    cfg = with_overrides(TrainConfig(), {**SMALL, "epochs": 3})
    ds = load_imdb(tiny_data)
    data = prepare(cfg, ds)
    run = RunDir.create(tmp_path / "div", cfg, data.vocab, ds)
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


def test_a_step_that_overflows_the_weights_before_a_validation_pass_is_divergence(tmp_path, tiny_data):
    """lr 1e37: a step's update overflows the weights while its loss and gradient were finite; the validation pass
    after it answers NaN. That is the training diverging (exit 1, --clip and --lr advice), not a broken run."""
    from click.testing import CliRunner

    from rnnlab.cli import main

    r = CliRunner().invoke(main, ["train", "--data", str(tiny_data), "--out", str(tmp_path / "r"), "--preset", "rnn",
                                  "--epochs", "2", "--lr", "1e37", "--val-checks", "100"])
    assert r.exit_code == 1, r.output
    assert "stopped: non-finite" in r.stderr and "Try gradient clipping (--clip 1.0) or a lower --lr" in r.stderr
    assert "not a number" not in r.output


def test_stratified_split_is_seeded_and_stratified():
    y = np.array([0] * 600 + [1] * 400)
    tr, va = stratified_split(y, 0.1, 0)
    assert len(va) == 100 and y[va].sum() == 40 and len(np.intersect1d(tr, va)) == 0
    assert (stratified_split(y, 0.1, 0)[1] == va).all() and not (stratified_split(y, 0.1, 1)[1] == va).all()



def test_each_training_seed_carves_its_own_validation_split(tiny_data):
    """prepare's validation reviews are stratified_split's for the config's seed: seeds 0, 1 and 2 of the lab
    each select on a validation split of their own (no seed reuses seed 0's)."""
    from rnnlab.config import preset

    ds = load_imdb(tiny_data)
    cfg = with_overrides(preset("rnn"), {"val_fraction": 0.2, "max_len": 0})
    whole = prepare(with_overrides(cfg, {"val_fraction": 0.0}), ds).train
    reviews = lambda e: [tuple(e.ids[s:s + n]) for s, n in zip(e.starts, e.lengths)]  # noqa: E731
    vals = []
    for seed in (0, 1, 2):
        p = prepare(with_overrides(cfg, {"seed": seed}), ds)
        want_train, want_val = stratified_split(whole.labels, 0.2, seed)
        assert reviews(p.val) == reviews(whole.subset(want_val)) and (p.val.labels == whole.labels[want_val]).all()
        assert reviews(p.train) == reviews(whole.subset(want_train))
        vals.append(set(want_val))
    assert vals[0] != vals[1] and vals[0] != vals[2]


@pytest.fixture(scope="module")
def medium_data(tmp_path_factory):
    """Enough reviews that an epoch takes ~1 s, so a signal can land mid-run."""
    return write_parquet_dir(tmp_path_factory.mktemp("medium") / "imdb",
                             make_reviews(1500, seed=5, max_len=100), make_reviews(200, seed=6))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, *HANGUP])
def test_interrupt_then_resume_equals_uninterrupted(tmp_path, medium_data, sig):
    args = ["--preset", "default", "--data", str(medium_data), "--epochs", "4", "--hidden-dim", "32",
            "--embed-dim", "32", "--vocab-size", "80", "--dropout", "0.1", "--batch-size", "32"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if sig == signal.SIGTERM:  # at two threads, as `train` runs on a 2-core laptop (a test worker's commands run one)
        env["OMP_NUM_THREADS"] = "2"
    cmd = [sys.executable, "-m", "rnnlab.cli", "train"]
    full = subprocess.run(cmd + args + ["--out", str(tmp_path / "full")], capture_output=True, text=True, env=env)
    assert full.returncode == 0, full.stderr
    proc = subprocess.Popen(cmd + args + ["--out", str(tmp_path / "cut")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(sig, signal.SIG_DFL))  # as a terminal gives it (pytest
    ck = tmp_path / "cut" / "checkpoint.json"                                    # may run under nohup)
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
    assert torch.equal(*(RunDir(tmp_path / d).load_model()[2].fc.weight for d in ("full", "cut")))


@pytest.mark.parametrize("val_checks,schedule", [(1, "constant"), (3, "cosine")])
def test_resumed_run_equals_straight_run(tmp_path, tiny_data, val_checks, schedule):
    over = {**SMALL, "dropout": 0.2, "val_checks": val_checks, "lr_schedule": schedule, "step_loss": 0.5}
    from rnnlab.train import Interrupted

    straight = _run(tmp_path, tiny_data, "straight", epochs=3, **over)[1]
    cfg = with_overrides(TrainConfig(), {**over, "epochs": 3})
    ds = load_imdb(tiny_data)
    cut = RunDir.create(tmp_path / "cut", cfg, prepare(cfg, ds).vocab, ds)

    def stop_after_epoch_1(row):  # as a kill after epoch 1 would: the same config, stopped
        if row["epoch"] == 1:
            raise Interrupted("stopped after epoch 1")

    with pytest.raises(Interrupted):
        train(cfg, prepare(cfg, ds), cut, log=lambda s: None, on_epoch=stop_after_epoch_1)
    assert [m["epoch"] for m in cut.metrics()] == [1]
    train(cfg, prepare(cfg, ds), RunDir(cut.path), log=lambda s: None)
    strip = lambda ms: [{k: v for k, v in m.items() if k not in TIMING} for m in ms]  # noqa: E731
    assert strip(RunDir(cut.path).metrics()) == strip(straight.metrics())
    a, b = load_file(straight.path / "model.safetensors"), load_file(cut.path / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_val_checks_select_the_best_pass_and_save_its_weights(tmp_path, learn_data):
    summary, run = _run(tmp_path, learn_data, "checks", epochs=3, lr=3e-2, clip=1.0, dropout=0.3, val_checks=4)
    ms = run.metrics()
    steps = ms[0]["steps"]
    for m in ms:  # four passes, evenly spaced, the last at the epoch's end; val_acc is the best one
        assert [p[0] for p in m["val_passes"]] == [math.ceil(k * steps / 4) for k in (1, 2, 3, 4)]
        top = max(m["val_passes"], key=lambda p: p[1])
        assert m["val_acc"] == pytest.approx(top[1], abs=1e-6) and m["val_step"] == top[0]
    best = max(ms, key=lambda r: (r["val_acc"], -r["epoch"]))  # the earliest of equals
    assert (summary["best_epoch"], summary["best_step"]) == (best["epoch"], best["val_step"])
    assert best["val_step"] < steps  # this seed and rate peak mid-epoch: the case the weights must follow
    cfg, vocab, model = run.load_model()  # the saved weights score the selected pass, mid-epoch or not
    assert score(model, prepare(cfg, load_imdb(learn_data)).val)["acc"] == pytest.approx(best["val_acc"])
    ends = _run(tmp_path, learn_data, "ends", epochs=3, lr=3e-2, clip=1.0, dropout=0.3)[1].metrics()
    assert [m["train_loss"] for m in ends] == [m["train_loss"] for m in ms]  # passes do not change training
    assert [m["val_acc"] for m in ends] == pytest.approx([m["val_passes"][-1][1] for m in ms], abs=1e-6)
    with pytest.raises(ConfigError, match="val_checks"):
        TrainConfig(val_checks=0)


def test_more_val_checks_than_steps_validate_after_every_step_and_say_so(tmp_path, tiny_data):
    cfg = with_overrides(TrainConfig(), {**SMALL, "epochs": 2, "val_checks": 10_000})
    data = prepare(cfg, load_imdb(tiny_data))
    log: list[str] = []
    train(cfg, data, log=log.append)
    notes = [s for s in log if s.startswith("note: --val-checks 10000 is more than")]
    assert len(notes) == 1 and notes[0].endswith("steps of an epoch: validation runs after every step"), log


def test_cosine_holds_the_full_rate_for_lr_hold_then_decays(tmp_path, tiny_data):
    rates = lambda **o: [m["lr"] for m in _run(tmp_path, tiny_data, str(o), epochs=4, **o)[1].metrics()]  # noqa: E731
    assert rates() == [1e-3] * 4
    held, plain = rates(lr_schedule="cosine", lr_hold=0.5), rates(lr_schedule="cosine")
    assert held[:2] == [1e-3, 1e-3] and 1e-3 > held[2] > held[3] and held[3] < 0.2e-3
    assert all(h >= p for h, p in zip(held, plain)) and plain[0] < 1e-3
    assert rates(lr_hold=0.5) == [1e-3] * 4  # the constant schedule ignores the hold
    with pytest.raises(ConfigError, match="lr_hold must be in"):
        TrainConfig(lr_hold=1.0)


def test_lr_at_is_a_pure_function_of_the_step():
    cfg = TrainConfig(lr=1e-3, lr_schedule="cosine", lr_hold=0.5, epochs=2)
    rates = [lr_at(cfg, step, 100) for step in range(100)]
    assert rates[:50] == [1e-3] * 50 and rates[50] == pytest.approx(1e-3)
    assert all(a > b for a, b in zip(rates[50:], rates[51:])) and rates[-1] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 49 / 50)))
    assert lr_at(TrainConfig(lr=2e-3), 77, 100) == 2e-3


@pytest.mark.parametrize("step_weight", [0.0, 0.5])
def test_unequal_batches_run_in_chunks_with_the_same_loss_and_gradient(step_weight, monkeypatch):
    import rnnlab.train as T

    torch.manual_seed(0)
    m = RecurrentClassifier("rnn", 40, 6, 8)
    lengths = torch.tensor([3, 40, 5, 2, 38, 7] * 6)  # shuffled batch: mostly padding when padded whole
    tokens = torch.randint(2, 40, (len(lengths), 40)) * (torch.arange(40)[None, :] < lengths[:, None])
    labels = (torch.arange(len(lengths)) % 2).float()
    assert T.length_chunks(lengths) is not None and T.length_chunks(lengths.clamp(min=39)) is None

    def loss_and_grads():
        m.zero_grad()
        loss = objective(m, tokens, lengths, labels, step_weight)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in m.parameters()]

    chunked = loss_and_grads()
    monkeypatch.setattr(T, "length_chunks", lambda lengths: None)
    whole = loss_and_grads()
    torch.testing.assert_close(chunked[0], whole[0], atol=1e-6, rtol=1e-5)
    for a, b in zip(chunked[1], whole[1]):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)


@pytest.fixture
def two_epoch_run(tmp_path, tiny_data):
    return _run(tmp_path, tiny_data, "r", epochs=2)[1]


def test_resume_refuses_a_missing_rng_state(two_epoch_run):
    from safetensors.torch import save_file

    ck = two_epoch_run.path / json.loads((two_epoch_run.path / "checkpoint.json").read_text())["dir"]
    save_file({"other": torch.zeros(1)}, str(ck / "rng.safetensors"))
    m = build_model(two_epoch_run.config(), len(two_epoch_run.vocab()))
    with pytest.raises(RunError, match="no torch RNG state"):
        two_epoch_run.restore(m, torch.optim.Adam(m.parameters()))


def test_resume_refuses_metrics_that_disagree_with_the_checkpoint(two_epoch_run):
    f = two_epoch_run.path / "metrics.jsonl"
    f.write_text(f.read_text().splitlines()[0] + "\n")  # one epoch where the checkpoint says two
    cfg = two_epoch_run.config()
    m = build_model(cfg, len(two_epoch_run.vocab()))
    with pytest.raises(RunError, match=r"has epochs \[1\], checkpoint.json says 1..2"):
        two_epoch_run.restore(m, torch.optim.Adam(m.parameters()))


def test_resume_refuses_a_lost_checkpoint_record_of_a_run_with_two_epochs(two_epoch_run):
    """Before, --resume retrained such a run from epoch 1 without a word. With one epoch recorded it still starts
    again: that is also what a kill between metrics.jsonl and the first checkpoint.json leaves."""
    (two_epoch_run.path / "checkpoint.json").unlink()
    m = build_model(two_epoch_run.config(), len(two_epoch_run.vocab()))
    with pytest.raises(RunError, match=r"checkpoint\.json: missing, though metrics\.jsonl records 2 epochs"):
        two_epoch_run.restore(m, torch.optim.Adam(m.parameters()))
    f = two_epoch_run.path / "metrics.jsonl"
    f.write_text(f.read_text().splitlines()[0] + "\n")
    assert two_epoch_run.restore(m, torch.optim.Adam(m.parameters()))[0] == []


def test_resume_with_other_data_refuses_a_different_vocabulary(two_epoch_run, tmp_path):
    other = write_parquet_dir(tmp_path / "other", make_reviews(240, seed=21), make_reviews(120, seed=22))
    r = subprocess.run([sys.executable, "-m", "rnnlab", "train", "--resume", str(two_epoch_run.path), "--epochs", "3",
                        "--data", str(other)], capture_output=True, text=True)
    assert r.returncode == 2 and "trained on other data than" in r.stderr and "Traceback" not in r.stderr
    assert [m["epoch"] for m in two_epoch_run.metrics()] == [1, 2]  # nothing trained, nothing lost
    # a run from before rnnlab recorded its data's fingerprint: the vocabulary tells
    meta = two_epoch_run.path / "meta.json"
    m = json.loads(meta.read_text())
    meta.write_text(json.dumps({**m, "data": {k: v for k, v in m["data"].items() if k != "fingerprint"}}))
    r = subprocess.run([sys.executable, "-m", "rnnlab", "train", "--resume", str(two_epoch_run.path), "--epochs", "3",
                        "--data", str(other)], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
        f"Error: {two_epoch_run.path}: vocabulary differs from this data; resume with the run's own --data"), r.stderr
    assert [m["epoch"] for m in two_epoch_run.metrics()] == [1, 2]


def test_a_run_killed_before_its_first_epoch_is_named_so_by_the_commands_that_read_it(two_epoch_run, tiny_data,
                                                                                       tmp_path):
    """What a run killed in its first epoch leaves (config, meta and vocab: the out-of-memory killer's case):
    predict, evaluate and explain say so in one line, and --resume trains it."""
    run = tmp_path / "killed"
    run.mkdir()
    for f in ("config.json", "meta.json", "vocab.json"):
        shutil.copy(two_epoch_run.path / f, run / f)
    for cmd in (["predict", str(run), "good"], ["evaluate", str(run), "--data", str(tiny_data)],
                ["explain", str(run), "good", "film"]):
        r = subprocess.run([sys.executable, "-m", "rnnlab", *cmd], capture_output=True, text=True)
        assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
            f"Error: {run}: stopped before its first epoch finished (killed, or out of memory): no weights yet; "
            f"rnnlab train --resume {run} trains it"), (cmd, r.stderr)
    r = subprocess.run([sys.executable, "-m", "rnnlab", "train", "--resume", str(run), "--data", str(tiny_data)],
                       capture_output=True, text=True)
    assert r.returncode == 0 and (run / "model.safetensors").is_file(), r.stderr


def test_resume_names_a_damaged_vocabulary_where_the_data_is_the_runs_own(two_epoch_run, tiny_data):
    f = two_epoch_run.path / "vocab.json"
    saved = f.read_text()
    vocab = json.loads(saved)
    words = vocab["itos"] if isinstance(vocab, dict) else vocab
    words[-1], words[-2] = words[-2], words[-1]  # two words swapped: the same size, another vocabulary
    f.write_text(json.dumps(vocab))
    try:
        r = subprocess.run([sys.executable, "-m", "rnnlab", "train", "--resume", str(two_epoch_run.path), "--epochs",
                            "3", "--data", str(tiny_data)], capture_output=True, text=True)
    finally:
        f.write_text(saved)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
        f"Error: {f}: not the vocabulary this run's own data gives (damaged or edited; config.json's vocab_size sets "
        "its size)"), r.stderr
    assert [m["epoch"] for m in two_epoch_run.metrics()] == [1, 2]


# --- a damaged checkpoint: one error naming the file, never a crash ------------------------------------

def _damage_optimizer(run, change):
    from safetensors.torch import save_file

    f = run.path / json.loads((run.path / "checkpoint.json").read_text())["dir"] / "optimizer.safetensors"
    save_file({k: change(v) for k, v in load_file(str(f)).items()}, str(f))


@pytest.mark.parametrize("change,match", [
    (lambda v: torch.zeros(3, 3) if v.dim() else v, r"0\.exp_avg: torch.float32 \(3, 3\), parameter"),
    (lambda v: v[:1] if v.dim() else v, r"does not match the model"),  # an earlier crash: fused Adam, unchecked
    (lambda v: v.double(), r"torch.float64"),
    (lambda v: v.fill_(math.nan) if v.dim() else v, r"non-finite"),
])
def test_resume_refuses_optimizer_state_that_does_not_fit_the_model(two_epoch_run, change, match):
    _damage_optimizer(two_epoch_run, change)
    m = build_model(two_epoch_run.config(), len(two_epoch_run.vocab()))
    with pytest.raises(RunError, match=match):
        two_epoch_run.restore(m, torch.optim.Adam(m.parameters(), fused=True))


@pytest.mark.parametrize("change,match", [
    (lambda d: {k: v for k, v in d.items() if k != "0.exp_avg"}, r"weight 0 holds \['exp_avg_sq', 'step'\], not Adam's"),
    (lambda d: {k: v for k, v in d.items() if not k.startswith("3.")}, r"weight 3 holds nothing, not Adam's"),
    (lambda d: {**d, "3.bogus": d["3.exp_avg"].clone()}, r"weight 3 holds \['bogus', 'exp_avg', 'exp_avg_sq', 'step'\]"),
    (lambda d: {**d, "0.exp_avg_sq": -d["0.exp_avg_sq"] - 1}, r"0\.exp_avg_sq holds non-finite or negative values"),
])
def test_resume_refuses_optimizer_state_missing_or_impossible_for_adam(two_epoch_run, change, match):
    """A missing moment was a KeyError traceback from inside Adam; a missing weight's state or an extra one resumed
    silently (another run than the uninterrupted one); a negative second moment trained into NaN, reported as
    divergence."""
    from safetensors.torch import save_file

    f = two_epoch_run.path / json.loads((two_epoch_run.path / "checkpoint.json").read_text())["dir"] / "optimizer.safetensors"
    save_file(change(load_file(str(f))), str(f))
    m = build_model(two_epoch_run.config(), len(two_epoch_run.vocab()))
    with pytest.raises(RunError, match=match):
        two_epoch_run.restore(m, torch.optim.Adam(m.parameters(), fused=True))


@pytest.mark.parametrize("field,value", [("epoch", 0), ("epoch", True), ("best_epoch", 5), ("best_epoch", 0),
                                         ("best_acc", "x"), ("best_step", -1)])
def test_resume_refuses_a_checkpoint_record_with_impossible_values(two_epoch_run, field, value):
    f = two_epoch_run.path / "checkpoint.json"
    f.write_text(json.dumps({**json.loads(f.read_text()), field: value}))
    m = build_model(two_epoch_run.config(), len(two_epoch_run.vocab()))
    with pytest.raises(RunError, match="malformed checkpoint record"):
        two_epoch_run.restore(m, torch.optim.Adam(m.parameters()))


@pytest.mark.parametrize("out", ["", ".", "/"])
def test_a_run_cannot_be_the_current_or_root_folder(tmp_path, monkeypatch, out):
    monkeypatch.chdir(tmp_path)  # empty: before, renaming the run onto it said 'device or resource busy'
    with pytest.raises(RunError, match="the current or root folder; give the run a new folder's name"):
        RunDir.create(out, None, None, None)
    assert list(tmp_path.iterdir()) == []


GOOD = '"epoch": 1, "train_seconds": 1, "tokens_per_second": 1, "train_loss": 0.5'


@pytest.mark.parametrize("line", ['5', '{"epoch": "1", "train_seconds": 1, "tokens_per_second": 1, "train_loss": 0.5}',
                                  '{"epoch": 1}', '{%s, "val_acc": "x"}' % GOOD,
                                  '{"epoch": 1, "train_seconds": 1, "tokens_per_second": 1}',  # no train_loss
                                  '{%s, "val_loss": "x"}' % GOOD, '{%s, "test_acc": [1]}' % GOOD])
def test_resume_refuses_metrics_that_are_not_epoch_records(two_epoch_run, line):
    f = two_epoch_run.path / "metrics.jsonl"
    f.write_text(line + "\n" + f.read_text().splitlines()[1] + "\n")
    m = build_model(two_epoch_run.config(), len(two_epoch_run.vocab()))
    with pytest.raises(RunError, match=r"metrics.jsonl: record 1 is not an epoch's metrics"):
        two_epoch_run.restore(m, torch.optim.Adam(m.parameters()))


@pytest.mark.parametrize("state", [torch.zeros(10, dtype=torch.uint8), torch.zeros(5056)])
def test_resume_refuses_an_rng_state_torch_cannot_take(two_epoch_run, state):
    from safetensors.torch import save_file

    ck = two_epoch_run.path / json.loads((two_epoch_run.path / "checkpoint.json").read_text())["dir"]
    save_file({"torch": state}, str(ck / "rng.safetensors"))
    m = build_model(two_epoch_run.config(), len(two_epoch_run.vocab()))
    with pytest.raises(RunError, match="rng.safetensors: not a torch RNG state"):
        two_epoch_run.restore(m, torch.optim.Adam(m.parameters()))


def test_a_damaged_checkpoint_is_one_line_without_the_resume_hint(two_epoch_run):
    """Resuming it again would fail the same way: the error must not advise it."""
    _damage_optimizer(two_epoch_run, lambda v: torch.zeros(3, 3) if v.dim() else v)
    r = subprocess.run([sys.executable, "-m", "rnnlab", "train", "--resume", str(two_epoch_run.path), "--epochs", "3"],
                       capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and "optimizer.safetensors" in last and "--resume" not in last, r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.float64])
def test_weights_of_another_dtype_are_refused(two_epoch_run, dtype):
    from safetensors.torch import save_file

    f = two_epoch_run.path / "model.safetensors"
    save_file({k: v.to(dtype) for k, v in load_file(str(f)).items()}, str(f))
    with pytest.raises(RunError, match=f"model.safetensors: .* is {dtype}, the model needs torch.float32"):
        two_epoch_run.load_model()


def test_a_signal_during_the_last_epochs_validation_or_checkpoint_still_stops_the_run(tmp_path, tiny_data):
    """The step loop checks for a signal after each step; one that lands later in the epoch (validation,
    the checkpoint) stops the run once the epoch is saved, instead of being dropped."""
    from rnnlab.train import Interrupted

    cfg = with_overrides(TrainConfig(), {**SMALL, "epochs": 2})
    ds = load_imdb(tiny_data)
    data = prepare(cfg, ds)
    run = RunDir.create(tmp_path / "r", cfg, data.vocab, ds)
    term = lambda row: os.kill(os.getpid(), signal.SIGTERM) if row["epoch"] == 2 else None  # noqa: E731
    with pytest.raises(Interrupted, match="SIGTERM after epoch 2"):
        train(cfg, data, run, log=lambda s: None, on_epoch=term)
    assert run.completed_epochs() == 2 and not (run.path / "summary.json").exists()


def test_a_resume_cut_short_leaves_no_summary_of_other_weights(tmp_path, tiny_data):
    """A finished 2-epoch run resumed to 4 epochs and stopped after epoch 3: model.safetensors may now hold
    another epoch's weights, so the finished run's summary.json goes (train writes it again when it finishes)."""
    from rnnlab.train import Interrupted

    summary, run = _run(tmp_path, tiny_data, epochs=2)
    assert (run.path / "summary.json").exists()
    cfg = with_overrides(run.config(), {"epochs": 4})
    ds = load_imdb(tiny_data)
    term = lambda row: os.kill(os.getpid(), signal.SIGTERM) if row["epoch"] == 3 else None  # noqa: E731
    with pytest.raises(Interrupted):
        train(cfg, prepare(cfg, ds), run, log=lambda s: None, on_epoch=term)
    assert run.completed_epochs() == 3 and not (run.path / "summary.json").exists()
    summary = train(cfg, prepare(cfg, ds), run, log=lambda s: None).summary
    assert json.loads((run.path / "summary.json").read_text())["epochs"] == 4 == summary["epochs"]


def test_a_resume_clears_what_a_kill_mid_checkpoint_left_and_draws_the_learning_curve_again(tmp_path, tiny_data):
    """Killed between recording a checkpoint and removing the one before it (or drawing the figure): the old
    checkpoint folder is deleted and the learning curve drawn from metrics.jsonl on resume."""
    from PIL import Image

    _, run = _run(tmp_path, tiny_data, epochs=2)
    recorded = json.loads((run.path / "checkpoint.json").read_text())["dir"]
    shutil.copytree(run.path / recorded, run.path / "ckpt-1")  # the one before, never removed
    (run.path / "learning_curve.png").write_bytes(b"not the curve")
    run.remove_leftovers()
    assert sorted(p.name for p in run.path.glob("ckpt-*")) == [recorded]
    with Image.open(run.path / "learning_curve.png") as im:
        im.verify()


@pytest.mark.parametrize("sig", [*(["SIGHUP"] if HANGUP else []), "SIGINT"])
def test_a_run_started_with_a_signal_ignored_keeps_it_ignored(tmp_path, tiny_data, sig):
    """nohup leaves SIGHUP ignored (a closed terminal must not stop such a run), and a shell starts a background
    job with SIGINT ignored (a Ctrl-C for the command in the foreground must not stop it): training keeps them
    so. SIGINT used to stop such a run once its epochs began."""
    code = (f"import signal, sys; signal.signal(signal.{sig}, signal.SIG_IGN); from rnnlab.cli import main; "
            "import rnnlab.train as T; real = T.StopOnSignal.__enter__\n"
            f"def enter(self):\n    out = real(self); signal.raise_signal(signal.{sig}); return out\n"
            "T.StopOnSignal.__enter__ = enter; main()")
    r = subprocess.run([sys.executable, "-c", code, "train", "--data", str(tiny_data), "--out", str(tmp_path / "r"),
                        "--preset", "default", "--epochs", "1", "--embed-dim", "8", "--hidden-dim", "8",
                        "--vocab-size", "50"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and (tmp_path / "r" / "summary.json").exists(), r.stderr


def test_a_resume_without_a_checkpoint_record_deletes_no_checkpoint(tmp_path, tiny_data):
    """checkpoint.json lost: restore refuses in one line, and the checkpoint folders stay (they can be recovered)."""
    _, run = _run(tmp_path, tiny_data, epochs=2)
    (run.path / "checkpoint.json").unlink()
    kept = sorted(p.name for p in run.path.glob("ckpt-*"))
    run.remove_leftovers()
    assert kept and sorted(p.name for p in run.path.glob("ckpt-*")) == kept


@pytest.mark.parametrize("named", ["ckpt-9", ""])
def test_a_resume_whose_record_names_no_checkpoint_folder_deletes_none(tmp_path, tiny_data, named):
    """checkpoint.json naming a folder that is not there (a run copied mid-training, a folder renamed): the resume
    deleted every real checkpoint as a leftover, then failed, so no resume could work again (fault review). The
    folders stay, and the refusal is one line; an empty name is a malformed record."""
    from click.testing import CliRunner

    from rnnlab.cli import main

    _, run = _run(tmp_path, tiny_data, epochs=2)
    ck = json.loads((run.path / "checkpoint.json").read_text())
    (run.path / "checkpoint.json").write_text(json.dumps({**ck, "dir": named}))
    kept = sorted(p.name for p in run.path.glob("ckpt-*"))
    r = CliRunner().invoke(main, ["train", "--resume", str(run.path), "--epochs", "3"])
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error: ")]  # after its progress lines
    assert r.exit_code == 2 and len(errors) == 1 and "Traceback" not in r.output, r.output
    assert ("ckpt-9/last.safetensors: missing" in errors[0]) if named else ("bad checkpoint directory name" in errors[0])
    assert kept and sorted(p.name for p in run.path.glob("ckpt-*")) == kept


def test_a_resume_of_a_run_with_damaged_metrics_is_one_line(tmp_path, tiny_data):
    _, run = _run(tmp_path, tiny_data, epochs=2)
    (run.path / "metrics.jsonl").write_text('{"epoch": 1}\n')
    with pytest.raises(RunError, match="metrics.jsonl: record 1 is not an epoch's metrics"):
        run.remove_leftovers()


def test_more_validation_checks_than_steps_validate_after_every_step_at_once():
    from rnnlab.train import validation_steps

    t = time.perf_counter()
    assert validation_steps(7, 2**31 - 1) == set(range(1, 8)) == validation_steps(7, 7)
    assert time.perf_counter() - t < 1  # it looped 2^31 times before: minutes
    assert validation_steps(10, 3) == {4, 7, 10}


def test_subsample_is_balanced_and_its_source_says_how_many_reviews_it_kept(tiny_data):
    from rnnlab.prepare import subsample

    ds = load_imdb(tiny_data)  # 240 train, 120 test
    sub = subsample(ds, 100, 1000, seed=3)
    assert len(sub.train) == 100 and sorted(np.bincount(sub.train.labels)) == [50, 50]
    assert sub.test is ds.test and sub.source == f"{ds.source} (subset: 100 train / all test, seed 3)"
    assert subsample(ds, 0, 0) is ds


def test_balanced_indices_are_the_places_in_the_data_of_the_reviews_subsample_keeps(tiny_data):
    """The lab names an explained review by its place in the data (what `explain --review N --data` reads)."""
    from rnnlab.prepare import balanced_indices, subsample

    ds = load_imdb(tiny_data)
    idx = balanced_indices(ds.train.labels, 100, seed=3)
    assert len(idx) == 100 and (np.diff(idx) > 0).all()
    assert [ds.train.texts[i] for i in idx] == subsample(ds, 100, 0, seed=3).train.texts
    assert balanced_indices(ds.test.labels, 1000) is None and balanced_indices(ds.test.labels, 0) is None


def test_predict_evaluate_and_explain_say_when_a_run_stopped_before_its_epochs(tmp_path, tiny_data):
    """A run killed after epoch 1 of 3 (its files as the kill leaves them: a checkpoint, no summary.json) answered
    with epoch-1 weights and no word; now one note line names the epoch and the resume command."""
    from click.testing import CliRunner

    from rnnlab.cli import main

    _, run = _run(tmp_path, tiny_data, epochs=1)
    done = CliRunner().invoke(main, ["predict", str(run.path), "good film"])
    assert done.exit_code == 0 and "note:" not in done.stderr
    config = json.loads((run.path / "config.json").read_text())
    (run.path / "config.json").write_text(json.dumps({**config, "epochs": 3}))
    (run.path / "summary.json").unlink()
    note = (f"note: {run.path}: training stopped after epoch 1 of 3; these are the weights it had then. "
            f"rnnlab train --resume {run.path} finishes it")
    for args in (["predict", str(run.path), "good film"], ["evaluate", str(run.path), "--data", str(tiny_data)],
                 ["explain", str(run.path), "good film", "--no-attribution"]):
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 0 and note in r.stderr.splitlines(), r.stderr
    with run.exclusive():  # `train` is writing it now: no advice to resume what is running
        for command in ("predict", "explain"):
            r = CliRunner().invoke(main, [command, str(run.path), "good film"])
            assert r.exit_code == 0 and f"note: {run.path}: being trained now (epoch 1 of 3 done)" in r.stderr, r.stderr
    (run.path / "config.json").write_text(json.dumps({**config, "epochs": 1}))  # every epoch done, no final test
    r = CliRunner().invoke(main, ["predict", str(run.path), "good film"])
    assert f"note: {run.path}: its final test did not run. rnnlab train --resume {run.path} finishes it" in r.stderr
    (run.path / "config.json").write_text(json.dumps({**config, "epochs": 3}))
    write_json(run.path / "summary.json", {"epochs": 1, "test_acc": 0.5})  # finished, then `--resume --epochs 3` stopped
    r = CliRunner().invoke(main, ["predict", str(run.path), "good film"])  # its old summary said nothing (fault hunt)
    assert r.exit_code == 0 and note in r.stderr.splitlines(), r.stderr
    (run.path / "summary.json").unlink()  # stopped after epoch 1 of 3, its optimizer state cut short: --resume would
    ck = run.path / json.loads((run.path / "checkpoint.json").read_text())["dir"]  # fail, so none is advised (fault
    data = (ck / "optimizer.safetensors").read_bytes()  # hunt: every call advised it)
    (ck / "optimizer.safetensors").write_bytes(data[: len(data) // 2])
    r = CliRunner().invoke(main, ["predict", str(run.path), "good film"])
    assert r.exit_code == 0 and "--resume" not in r.stderr, r.stderr
    assert (f"note: {run.path}: training stopped after epoch 1 of 3; these are the weights it had then. It cannot be "
            f"resumed ({ck.name}/optimizer.safetensors is missing or damaged): train it again") in r.stderr.splitlines()
    resumed = CliRunner().invoke(main, ["train", "--resume", str(run.path), "--data", str(tiny_data)])
    assert resumed.exit_code != 0 and "optimizer.safetensors: corrupt or truncated" in resumed.output, resumed.output
    (ck / "optimizer.safetensors").write_bytes(data)
    write_json(run.path / "summary.json", {"epochs": 3, "test_acc": 0.5})
    r = CliRunner().invoke(main, ["predict", str(run.path), "good film"])
    assert r.exit_code == 0 and "note:" not in r.stderr, r.stderr
    (run.path / "checkpoint.json").write_text("{not json")  # a damaged record: the weights still answer
    r = CliRunner().invoke(main, ["predict", str(run.path), "good film"])
    assert r.exit_code == 0 and "note:" not in r.stderr, r.stderr


def test_the_folders_made_for_a_run_that_never_completed_an_epoch_are_taken_back(tmp_path, tiny_data):
    ds = load_imdb(tiny_data)
    cfg = with_overrides(TrainConfig(), SMALL)
    run = RunDir.create(tmp_path / "new" / "deeper" / "run", cfg, prepare(cfg, ds).vocab, ds)
    run.discard_if_empty()  # as train does when stopped before its first epoch
    assert list(tmp_path.iterdir()) == []


def test_a_default_run_name_taken_by_a_run_of_the_same_second_takes_the_next(tmp_path, tiny_data, monkeypatch):
    """Two `train` without --out started in the same second chose one name (a time to the second): the second
    failed, after reading the data, on a folder the user never named. Now it takes NAME-2."""
    from click.testing import CliRunner

    import rnnlab.runs
    from rnnlab.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(time, "strftime", lambda fmt, *a: "20261205-182540")
    argv = ["train", "--preset", "rnn", "--epochs", "1", "--max-len", "16", "--data", str(tiny_data)]
    first = CliRunner().invoke(main, argv)
    assert first.exit_code == 0, first.output
    second = CliRunner().invoke(main, argv)
    assert second.exit_code == 0, second.output
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["rnn-20261205-182540", "rnn-20261205-182540-2"]
    assert json.loads(second.stdout.strip().splitlines()[-1])["run_dir"] == "runs/rnn-20261205-182540-2"

    # taken between the choice and the rename (the other run made it while this one read the data)
    cfg = with_overrides(TrainConfig(), {"max_len": 16})
    ds = load_imdb(tiny_data)
    vocab = prepare(cfg, ds, log=lambda s: None).vocab
    target = tmp_path / "raced"
    real = rnnlab.runs.environment

    def meanwhile():
        (target / "x").mkdir(parents=True, exist_ok=True)
        return real()

    monkeypatch.setattr(rnnlab.runs, "environment", meanwhile)
    assert RunDir.create(target, cfg, vocab, ds, default_name=True).path == tmp_path / "raced-2"
    target = tmp_path / "raced-3"  # raced and raced-2 taken: chosen raced-3, taken meanwhile: raced-4, not raced-3-2
    assert RunDir.create(tmp_path / "raced", cfg, vocab, ds, default_name=True).path == tmp_path / "raced-4"
    target = tmp_path / "raced-5"  # `meanwhile` takes this one now: a name the user chose is refused, as before
    with pytest.raises(RunError, match="cannot write .*raced-5: directory not empty"):
        RunDir.create(target, cfg, vocab, ds)
    monkeypatch.setattr(rnnlab.runs, "environment", real)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")  # a link to nothing takes its name too
    assert RunDir.create(tmp_path / "dangling", cfg, vocab, ds, default_name=True).path == tmp_path / "dangling-2"


# --- from the mutation test of session 45's code (session 46) ---------------------------------------
def test_resume_refuses_a_second_moment_with_one_negative_value(two_epoch_run):
    """One negative entry of exp_avg_sq is as impossible as all of them (sqrt of it: NaN in that weight)."""
    f = two_epoch_run.path / json.loads((two_epoch_run.path / "checkpoint.json").read_text())["dir"] / "optimizer.safetensors"
    d = load_file(str(f))
    sq = d["0.exp_avg_sq"].clone()
    sq.view(-1)[-1] = -1.0
    save_file({**d, "0.exp_avg_sq": sq}, str(f))
    m = build_model(two_epoch_run.config(), len(two_epoch_run.vocab()))
    with pytest.raises(RunError, match=r"0\.exp_avg_sq holds non-finite or negative values"):
        two_epoch_run.restore(m, torch.optim.Adam(m.parameters(), fused=True))


def test_a_run_in_its_first_epoch_is_named_as_being_trained_not_as_stopped(two_epoch_run, tmp_path):
    run = tmp_path / "training"
    run.mkdir()
    for f in ("config.json", "meta.json", "vocab.json"):
        shutil.copy(two_epoch_run.path / f, run / f)
    with RunDir(run).exclusive():  # `train` holds it: its first epoch is under way
        with pytest.raises(RunError, match=r": is being trained now: no weights yet"):
            RunDir(run).load_model()
    with pytest.raises(RunError, match=r": stopped before its first epoch finished"):
        RunDir(run).load_model()


def test_a_run_with_epochs_done_whose_weights_file_is_gone_is_not_called_stopped_before_its_first_epoch(
        two_epoch_run):
    """checkpoint.json says epochs were done: a lost model.safetensors is named, not "before its first epoch"."""
    (two_epoch_run.path / "model.safetensors").unlink()
    (two_epoch_run.path / "summary.json").unlink(missing_ok=True)  # as an interrupted run leaves it
    with pytest.raises(RunError) as err:
        RunDir(two_epoch_run.path).load_model()
    assert "model.safetensors" in str(err.value) and "first epoch" not in str(err.value), str(err.value)


def test_the_val_checks_note_names_the_epochs_steps_and_only_when_the_checks_exceed_them(tmp_path, tiny_data):
    """216 training reviews in batches of 16: 14 steps an epoch (the last one short). 15 passes asked: the note names
    the 14 steps and validation runs after each, the last at the epoch's end; 14 asked: no note; no validation split
    (so no passes at all): no note either; nor when a finished run is resumed."""
    ds = load_imdb(tiny_data)

    def trained(**over):
        cfg = with_overrides(TrainConfig(), {**SMALL, "epochs": 1, "val_fraction": 0.1, **over})
        data = prepare(cfg, ds)
        log: list[str] = []
        run = RunDir.create(tmp_path / str(len(list(tmp_path.iterdir()))), cfg, data.vocab, ds)
        train(cfg, data, run, log=log.append)
        again: list[str] = []  # resumed once done: it only scores its test split again, with no note
        train(cfg, data, RunDir(run.path), log=again.append)
        assert not [s for s in again if s.startswith("note:")], again
        return [s for s in log if s.startswith("note:")], run.metrics()[0]

    notes, m = trained(val_checks=15)
    assert m["steps"] == 14 and [p[0] for p in m["val_passes"]] == list(range(1, 15))
    assert notes == ["note: --val-checks 15 is more than the 14 steps of an epoch: validation runs after every step"]
    notes, m = trained(val_checks=14)
    assert notes == [] and [p[0] for p in m["val_passes"]] == list(range(1, 15))
    assert trained(val_fraction=0.0)[0] == []
    assert trained(val_fraction=0.0, val_checks=4)[0] == [  # accepted silently before (session 59's fault hunt)
        "note: --val-checks 4 does nothing without a validation split (val_fraction 0)"]
    assert trained(lr_hold=0.5)[0] == ["note: --lr-hold 0.5 does nothing with the constant schedule (cosine only)"]
    assert trained(lr_hold=0.5, lr_schedule="cosine")[0] == []


def test_a_cosine_run_resumed_for_more_epochs_says_its_rate_rises_again_and_a_resume_of_the_same_length_does_not(
        tmp_path, tiny_data):
    """A finished 2-epoch cosine run ends near a rate of 0; resumed for 4 epochs, the schedule spans 4 and step 28 of
    56 trains at half the rate again (a reviewer's finding: said nowhere). Resumed where it stopped, with the epochs
    it had, the rate goes on falling: no note."""
    ds = load_imdb(tiny_data)
    cfg = with_overrides(TrainConfig(), {**SMALL, "epochs": 2, "val_fraction": 0.1, "lr_schedule": "cosine"})
    run = RunDir.create(tmp_path / "run", cfg, prepare(cfg, ds).vocab, ds)
    train(cfg, prepare(cfg, ds), run, log=lambda s: None)
    last = run.metrics()[-1]["lr"]
    longer = with_overrides(cfg, {"epochs": 4})
    log: list[str] = []
    train(longer, prepare(longer, ds), RunDir(run.path), log=log.append)
    after = lr_at(longer, 28, 56)
    assert after == pytest.approx(cfg.lr / 2) and last < after / 10
    assert [s for s in log if s.startswith("note:")] == [
        f"note: the cosine schedule now spans 4 epochs: the learning rate rises from {last:.3g} (epoch 2's last step) "
        f"to {after:.3g}, then falls again (a run of 4 epochs from the start would not)"]
    cut = RunDir.create(tmp_path / "cut", cfg, prepare(cfg, ds).vocab, ds)

    def stop_after_epoch_1(row):
        if row["epoch"] == 1:
            raise Interrupted("stopped after epoch 1")

    with pytest.raises(Interrupted):
        train(cfg, prepare(cfg, ds), cut, log=lambda s: None, on_epoch=stop_after_epoch_1)
    log.clear()
    train(cfg, prepare(cfg, ds), RunDir(cut.path), log=log.append)
    assert not [s for s in log if s.startswith("note:")], log


def test_test_every_epoch_without_a_test_split_trains_instead_of_failing(tiny_data):
    """The notebook's presets score the test split every epoch; trained without one (as the experiments train,
    test=None), the first epoch's end failed inside predict_proba (a reviewer's reading)."""
    cfg = with_overrides(TrainConfig(), {**SMALL, "epochs": 1, "test_every_epoch": True})
    data = dataclasses.replace(prepare(cfg, load_imdb(tiny_data)), test=None)
    trained = train(cfg, data, None, log=lambda s: None)
    assert "test_acc" not in trained.metrics[0] and len(trained.metrics) == 1


def test_every_step_trains_at_the_schedules_rate_for_its_place_in_the_whole_run(tmp_path, tiny_data):
    """Step k (0-based over all epochs) of a cosine schedule trains at lr_at(cfg, k, epochs x steps), where an epoch
    has ceil(reviews / batch) steps (216 / 16: 14, the last one short); each epoch records its last step's rate."""
    cfg = with_overrides(TrainConfig(), {**SMALL, "epochs": 2, "val_fraction": 0.1, "lr_schedule": "cosine"})
    data = prepare(cfg, load_imdb(tiny_data))
    seen = []
    run = RunDir.create(tmp_path / "r", cfg, data.vocab, load_imdb(tiny_data))
    train(cfg, data, run, log=lambda s: None, on_step=lambda model, s: seen.append((s["global_step"], s["lr"])))
    assert seen == [(k + 1, lr_at(cfg, k, 2 * 14)) for k in range(2 * 14)]
    assert [m["lr"] for m in run.metrics()] == [lr_at(cfg, 13, 28), lr_at(cfg, 27, 28)]


def test_a_summarys_relative_run_dir_names_the_folder_only_when_all_its_last_parts_match(tmp_path, monkeypatch):
    """summary.json's run_dir as typed (relative, maybe with ..), read from another folder (mutation test)."""
    from rnnlab.runs import _names

    run = tmp_path / "a" / "runs" / "x"
    run.mkdir(parents=True)
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "b")  # resumed from another folder than the one it was made in
    assert _names("runs/x", run) and _names("../runs/x", run)  # made as --out ../runs/x from a/sub
    assert not _names("other/x", run) and not _names("/elsewhere/runs/x", run)  # another run's, a moved one's


def test_a_summary_naming_a_path_through_a_link_loop_is_not_finished_and_not_fatal(tmp_path, monkeypatch):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "summary.json").write_text(json.dumps({"run_dir": "loop/x", "epochs": 0}))
    monkeypatch.chdir(tmp_path)
    assert RunDir(tmp_path / "run").finished_summary() is None


def test_sizes_whose_bytes_overflow_64_bits_are_refused_on_any_device():
    """torch's "Storage size calculation overflowed" was a traceback; on a GPU the meta model was skipped, so the
    refusal must not depend on the device (no GPU is touched: it comes first)."""
    from rnnlab.train import Unbuildable, _built

    for device in ("cpu", "cuda"):
        with pytest.raises(Unbuildable, match="more bytes than a 64-bit size counts; use smaller sizes"):
            _built(with_overrides(TrainConfig(), {"model": "lstm", "hidden_dim": 800_000_000}), 100, device)


def test_the_modules_example_runs(tiny_data, tmp_path):
    """train.py's docstring shows the loop called from Python; it passed `data.source` where `RunDir.create` takes the
    Dataset, so a learner copying it met an AttributeError. Run as written, on the tiny data and a scratch folder."""
    import textwrap

    import rnnlab.train as module

    code = textwrap.dedent(module.__doc__.split("\n\n")[1])
    assert '"../shared/data/imdb"' in code and '"runs/seed"' in code
    code = code.replace('"../shared/data/imdb"', repr(str(tiny_data))).replace('"runs/seed"', repr(str(tmp_path / "seed")))
    scope: dict = {}
    exec(compile(code, "train.py's docstring", "exec"), scope)
    assert scope["trained"].summary["test_acc"] is not None and (tmp_path / "seed" / "model.safetensors").is_file()


def test_a_config_of_an_earlier_version_loads_where_its_retired_fields_did_nothing():
    """config.RETIRED: a saved run's config.json from before a field was removed loads where the field held its
    no-op value, and is refused, naming it, where the run depended on it."""
    from rnnlab.config import RETIRED, TrainConfig, from_dict

    old = {**TrainConfig().__dict__, **RETIRED}
    assert from_dict(old) == TrainConfig()
    with pytest.raises(ConfigError, match=r"bidirectional=True is no longer supported"):
        from_dict({**old, "bidirectional": True})
    with pytest.raises(ConfigError):
        from_dict({**old, "no_such_field": 1})


def test_the_returned_model_and_its_test_score_are_the_epoch_kept_on_validation(tmp_path, monkeypatch):
    """`train` scores the test split with the weights of the epoch validation kept, and returns them: without the
    reload, every summary's test_acc (and the lab's) would be the last epoch's, which `evaluate` on the saved run
    does not reproduce (a mutant of session 62 that no test caught: the saved file was right)."""
    import rnnlab.train as train_mod

    d = write_parquet_dir(tmp_path / "imdb", make_reviews(240, seed=1), make_reviews(120, seed=2))
    cfg = with_overrides(TrainConfig(), {**SMALL, "epochs": 3})
    data = prepare(cfg, load_imdb(d))
    accs = iter([0.6, 0.9, 0.7])  # validation: epoch 2 is the one kept
    monkeypatch.setattr(train_mod, "score", lambda model, enc, device="cpu": (
        {"acc": next(accs), "loss": 0.5} if enc is data.val else score(model, enc, device)))
    seen = {}
    trained = train(cfg, data, log=lambda s: None, on_step=lambda m, row: seen.__setitem__(
        row["epoch"], {k: v.clone() for k, v in m.state_dict().items()}))
    assert trained.summary["best_epoch"] == 2
    kept = trained.model.state_dict()
    assert all(torch.equal(kept[k], seen[2][k]) for k in kept)  # epoch 2's last step: the weights validated at 0.9
    assert not all(torch.equal(kept[k], seen[3][k]) for k in kept)
    assert trained.summary["test_acc"] == round(score(trained.model, data.test)["acc"], 4)


def test_a_huge_or_long_config_value_is_shortened_in_its_error_line():
    """A 400-digit seed in config.json was echoed whole in its one line (left by session 63's hunt)."""
    with pytest.raises(ConfigError, match=r"^seed must be below 2\*\*31, got 9999999999999999\.\.\.99999999 \(400 digits\)$"):
        TrainConfig(seed=int("9" * 400))
    with pytest.raises(ConfigError, match=r"; got 'xxxxxxxxxxxxxxx\.\.\.xxxxxxx' \(302 characters\)$"):
        TrainConfig(model="x" * 300)
    with pytest.raises(ConfigError, match=r"^model must be one of .*; got 'rnnn'$"):  # short: whole, as before
        TrainConfig(model="rnnn")
