"""Bad input through the CLI as a user types it: exit code 2, one short error line naming the
file or flag, never a traceback, and no half-made run directory. Plus odd but valid reviews
through `rnnlab predict`, which must all get a prediction."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from rnnlab.cli import main

from conftest import make_reviews, write_acl_dir, write_acl_tarball, write_parquet_dir

TINY = ["--preset", "seed", "--epochs", "1", "--hidden-dim", "8", "--embed-dim", "8", "--vocab-size", "50",
        "--device", "cpu"]
# lines a failing command may print besides its one error line: progress logs and click's usage hint
ALLOWED_EXTRA = ("loading data", "tokenising", "train ", "Usage:", "Try ")
MAX_ERROR_LEN = 400
PRED_LINE = re.compile(r"^(positive|negative)\t(0(\.\d+)?|1(\.0+)?)$")


# --- a real tiny run, made once -------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_parquet(tmp_path_factory) -> Path:
    return write_parquet_dir(tmp_path_factory.mktemp("badin") / "imdb", make_reviews(240, seed=1),
                             make_reviews(120, seed=2))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_parquet) -> Path:
    out = tmp_path_factory.mktemp("badin-run") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RNNLAB_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        res = CliRunner().invoke(main, ["train", "--data", str(tiny_parquet), "--out", str(out), *TINY])
    assert res.exit_code == 0, res.output
    for f in ("config.json", "vocab.json", "model.safetensors", "summary.json"):
        assert (out / f).is_file(), f
    return out


# --- helpers that write bad data ------------------------------------------------------------

def _pq(d: Path, columns: dict, test_columns: dict | None = None, only_train: bool = False) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    d.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), d / "train.parquet")
    if not only_train:
        pq.write_table(pa.table(test_columns or columns), d / "test.parquet")
    return d


def _good_cols(n=20, seed=3) -> dict:
    texts, labels = make_reviews(n, seed=seed)
    return {"text": texts, "label": labels}


def _with(cols: dict, **changes) -> dict:
    out = {k: list(v) for k, v in cols.items()}
    for k, fn in changes.items():
        out[k] = fn(out[k])
    return out


def _set_at(i, value):
    def f(col):
        col[i] = value
        return col
    return f


# a FIFO read in pyarrow's open() blocks where neither pytest-timeout's signal nor SIGTERM reaches: should a case
# regress, its thread method ends the whole run (a failure) instead of hanging CI
HANGS = (pytest.mark.timeout(120, method="thread"),)


def _write(p: Path, content: bytes | str) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return p


def _truncated_tarball(tmp: Path) -> Path:
    f = write_acl_tarball(tmp / "src" / "aclImdb_v1.tar.gz", make_reviews(200, 1), make_reviews(100, 2))
    raw = f.read_bytes()
    return _write(tmp / "data" / "aclImdb_v1.tar.gz", raw[: len(raw) // 2])


def _corrupt_parquet_dir(tmp: Path) -> Path:
    rng = np.random.default_rng(0)
    d = tmp / "corrupt"
    for name in ("train.parquet", "test.parquet"):
        _write(d / name, rng.bytes(4096))
    return d


def _misnamed_acl_dir(tmp: Path) -> Path:
    d = write_acl_dir(tmp / "acl", make_reviews(40, 1), make_reviews(20, 2))
    _write(d / "test" / "neg" / "._0_2.txt", b"\x00\x05 a macOS companion file, not a review")  # skipped
    _write(d / "test" / "neg" / "review-extra.txt", "a fine film")  # a review by its place: refused, not skipped
    return d


def _misnamed_acl_tarball(tmp: Path) -> Path:
    import io
    import tarfile

    f = write_acl_tarball(tmp / "data" / "aclImdb_v1.tar.gz", make_reviews(40, 1), make_reviews(20, 2))
    raw = io.BytesIO()
    with tarfile.open(f, "r:gz") as src, tarfile.open(fileobj=raw, mode="w:gz") as dst:
        for m in src:
            dst.addfile(m, src.extractfile(m))
        info = tarfile.TarInfo("aclImdb/train/pos/extra.txt")
        info.size = 4
        dst.addfile(info, io.BytesIO(b"good"))
    return _write(f, raw.getvalue())


def _two_tarballs(tmp: Path) -> Path:
    for name in ("aclImdb_v1.tar.gz", "aclImdb_v2.tar.gz"):
        write_acl_tarball(tmp / "two" / name, make_reviews(40, 1), make_reviews(20, 2))
    return tmp / "two"


def _loop(p: Path) -> Path:
    p.unlink(missing_ok=True)
    p.symlink_to(p.name)  # a link to itself
    return p


def _fifo(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(p)
    return p


def _copy_split(data: Path, to: Path, split: str) -> Path:
    to.mkdir(parents=True, exist_ok=True)
    shutil.copy(data / f"{split}.parquet", to / f"{split}.parquet")
    return to


def _acl_dir_with_a_fifo(tmp: Path) -> Path:
    d = write_acl_dir(tmp / "acl", make_reviews(40, 1), make_reviews(20, 2))
    _fifo(d / "test" / "pos" / "99_9.txt")  # reading it would wait for a writer for ever
    return d


def _copy_run(run_dir: Path, tmp: Path) -> Path:
    dst = tmp / "damaged-run"
    shutil.copytree(run_dir, dst)
    return dst


def _append(f: Path, raw: bytes) -> Path:
    with open(f, "ab") as fh:
        fh.write(raw)
    return f


def _edit_json(f: Path, fn) -> None:
    d = json.loads(f.read_text())
    f.write_text(json.dumps(fn(d)))


def _overflowing_config(run: Path) -> Path:
    """A run whose config.json asks for a weight whose size in bytes overflows 64 bits."""
    _edit_json(run / "config.json", lambda d: {**d, "hidden_dim": 2_000_000_000})
    return run


def _truncate(f: Path, keep: Callable[[int], int]) -> None:
    raw = f.read_bytes()
    f.write_bytes(raw[: keep(len(raw))])


# --- the table --------------------------------------------------------------------------------

@dataclass
class Ctx:
    run: Path  # the intact tiny run (read only)
    data: Path  # the good tiny parquet dir (read only)


@dataclass
class Case:
    """`build(tmp, ctx)` writes what it needs and returns (argv, needle, out_dir or None).

    `needle` is a regex the error line must contain (the file or flag at fault); `out_dir`
    is the --out of a train command, which must not exist afterwards.
    """

    id: str
    build: Callable
    marks: tuple = ()


def _train(tmp: Path, data: Path | str | None, *extra: str, out: Path | None = None):
    out = out or tmp / "out-run"
    argv = ["train", *TINY, "--out", str(out), *extra]
    if data is not None:
        argv += ["--data", str(data)]
    return argv, out


def train_case(id, make_data, needle, *extra, marks=()):
    """A train command over data from make_data(tmp, ctx) (None: no --data)."""

    def build(tmp, ctx):
        data = make_data(tmp, ctx) if make_data else None
        argv, out = _train(tmp, data, *extra)
        return argv, needle(data) if callable(needle) else needle, out

    return Case(id, build, marks)


def _overflowing(run: Path) -> None:
    """Finite weights (loading accepts them) whose products overflow: every input term +inf, and from the second
    token every recurrent term -inf, so their sum is NaN. (+inf and -inf products inside one matrix product gave
    NaN on AMD CPUs but +inf from MKL's kernel on an Intel Xeon at a batch of 4 or more: not a fault to rely on.)"""
    from safetensors.torch import load_file, save_file

    w = load_file(run / "model.safetensors")
    w["embedding.weight"] = torch.full_like(w["embedding.weight"], 3e38)
    w["rnn.weight_ih_l0"] = torch.full_like(w["rnn.weight_ih_l0"], 3e38)
    w["rnn.weight_hh_l0"] = torch.full_like(w["rnn.weight_hh_l0"], -3e38)
    save_file(w, run / "model.safetensors")


def run_case(id, command, damage, needle, *extra, marks=(), elsewhere=None):
    """`rnnlab evaluate|predict RUN` on a copy of the tiny run damaged in place by damage(run),
    or on elsewhere(tmp) instead of a run."""

    def build(tmp, ctx):
        run = _copy_run(ctx.run, tmp)
        if elsewhere is not None:
            run = elsewhere(tmp)
        else:
            damage(run)
        argv = [command, str(run), *extra]
        if command == "predict":
            argv.append("a fine film")
        return argv, needle(run) if callable(needle) else needle, None

    return Case(id, build, marks)


def eval_data_case(id, make_file, needle):
    """`rnnlab evaluate RUN --data FILE` on the intact tiny run."""

    def build(tmp, ctx):
        f = make_file(tmp)
        return ["evaluate", str(ctx.run), "--data", str(f)], needle(f) if callable(needle) else needle, None

    return Case(id, build)


no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="tests the no-GPU message")

def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


LOOP = r"^Error: .*loop-a: a symbolic link to nowhere \(a loop, or its target is gone\)$"  # was "no such run directory"


def _unrelated_files(t: Path) -> Path:
    _write(t / "stuff" / "notes.txt", "hello")
    _write(t / "stuff" / "data.json", "{}")
    _mkdir(t / "stuff" / "images")
    return t / "stuff"


def _good(t, ctx):
    return ctx.data


CASES = [
    # --- train: the data -----------------------------------------------------------------
    train_case("missing-path", lambda t, c: t / "no-such-data", "no-such-data"),
    # splits and sizes the data or the machine cannot give: one line, no run directory left behind
    train_case("validation-split-empty", lambda t, c: c.data, r"leaves no validation reviews", "--val-fraction", "0.001"),
    train_case("training-split-empty", lambda t, c: c.data, r"leaves no training reviews", "--val-fraction", "0.999"),
    train_case("model-too-big-for-memory", lambda t, c: c.data, r"out of memory building the rnn .*embed_dim 2000000000",
               "--embed-dim", "2000000000"),
    train_case("model-whose-bytes-overflow-64-bits", lambda t, c: c.data,  # was torch's traceback, and a run folder
               r"^Error: out of memory building the lstm \(vocab_size \d+, embed_dim \d+, hidden_dim 800000000, layers 1\): a "
               r"weight of these sizes takes more bytes than a 64-bit size counts; use smaller sizes$",  # left behind
               "--model", "lstm", "--hidden-dim", "800000000"),
    train_case("size-beyond-a-c-integer", lambda t, c: c.data, r"max_len must be below 2\*\*31",
               "--max-len", "99999999999999999999"),
    train_case("empty-directory", lambda t, c: _mkdir(t / "empty"), "empty"),
    train_case("one-parquet-split", lambda t, c: c.data / "train.parquet",  # the folder that holds it was meant
               r"^Error: .*train\.parquet: one split; --data takes the folder that holds train\.parquet and "
               r"test\.parquet$"),
    train_case("a-file-of-another-kind", lambda t, c: _write(t / "notes.txt", "hello"),
               r"^Error: .*notes\.txt: not a data folder \(train\.parquet and test\.parquet, or aclImdb's\) nor an "
               r"aclImdb tarball$"),
    train_case("dir-without-expected-files", lambda t, c: _unrelated_files(t), "stuff"),
    train_case("parquet-missing-label-column", lambda t, c: _pq(t / "d", {"text": ["a", "b"]}),
               r"train\.parquet.*label"),
    train_case("parquet-misnamed-columns",
               lambda t, c: _pq(t / "d", {"review": ["good", "bad"], "sentiment": ["positive", "negative"]}),
               r"train\.parquet.*'text'"),
    train_case("label-outside-0-1", lambda t, c: _pq(t / "d", _with(_good_cols(), label=_set_at(5, 2))),
               r"train\.parquet.*row 5.*label 2"),
    train_case("label-negative", lambda t, c: _pq(t / "d", _with(_good_cols(), label=_set_at(4, -1))),
               r"train\.parquet.*row 4.*label -1"),
    train_case("label-float", lambda t, c: _pq(t / "d", _with(_good_cols(), label=lambda col: [float(x) for x in col])),
               r"train\.parquet.*row 0.*label"),
    train_case("null-text", lambda t, c: _pq(t / "d", _with(_good_cols(), text=_set_at(3, None))),
               r"train\.parquet.*row 3.*text"),
    train_case("null-label", lambda t, c: _pq(t / "d", _with(_good_cols(), label=_set_at(2, None))),
               r"train\.parquet.*row 2.*label"),
    train_case("non-string-text",
               lambda t, c: _pq(t / "d", {"text": list(range(20)), "label": [i % 2 for i in range(20)]}),
               r"train\.parquet.*row 0.*text"),
    train_case("single-class", lambda t, c: _pq(t / "d", _with(_good_cols(), label=lambda col: [0] * len(col))),
               r"train\.parquet.*one class"),
    train_case("no-words-in-training-texts",
               lambda t, c: _pq(t / "d", _with(_good_cols(), text=lambda col: ["!!! ??? ..."] * len(col)),
                                _good_cols()),
               r"training reviews hold no words"),
    train_case("single-class-in-test",
               lambda t, c: _pq(t / "d", _good_cols(), _with(_good_cols(), label=lambda col: [1] * len(col))),
               r"test\.parquet.*one class"),
    train_case("no-rows", lambda t, c: _pq(t / "d", {"text": pa_empty("string"), "label": pa_empty("int64")}),
               r"train\.parquet.*no rows"),
    train_case("only-train-parquet", lambda t, c: _pq(t / "d", _good_cols(), only_train=True), r"test\.parquet"),
    train_case("truncated-tarball-path", lambda t, c: _truncated_tarball(t), r"aclImdb_v1\.tar\.gz"),
    train_case("truncated-tarball-in-dir", lambda t, c: _truncated_tarball(t).parent, r"aclImdb_v1\.tar\.gz"),
    train_case("corrupt-parquet", lambda t, c: _corrupt_parquet_dir(t), r"train\.parquet"),
    train_case("not-a-tarball", lambda t, c: _write(t / "aclImdb_v1.tar.gz", b"this is not gzip"),
               r"aclImdb_v1\.tar\.gz: not a tar archive \(plain, gzip, bzip2 or xz\), or cut short; download it again$"),
    train_case("acl-dir-missing-class", lambda t, c: _mkdir(t / "aclImdb" / "train" / "pos").parent.parent,
               r"aclImdb.*train.*neg"),
    train_case("csv-as-train-data", lambda t, c: _write(t / "reviews.csv", "text,label\ngood,1\nbad,0\n"),
               r"reviews\.csv"),
    train_case("empty-csv-as-train-data", lambda t, c: _write(t / "empty.csv", b""), r"empty\.csv"),
    train_case("unknown-file-type", lambda t, c: _write(t / "reviews.json", "[]"), r"reviews\.json"),
    train_case("hub-offline-no-data", None, "RNNLAB_DATA"),
    # --- train: --out and the flags --------------------------------------------------------
    Case("out-is-a-file", lambda t, c: (_train(t, c.data, out=_write(t / "taken", "x"))[0], "taken", None)),
    Case("out-is-a-nonempty-dir",
         lambda t, c: (_train(t, c.data, out=_write(t / "busy" / "x.txt", "x").parent)[0], "busy", None)),
    train_case("unknown-model", None, "--model", "--model", "foo"),
    train_case("epochs-0", None, "epochs", "--epochs", "0"),
    train_case("hidden-dim-negative", None, "hidden.dim", "--hidden-dim", "-1"),
    train_case("embed-dim-0", None, "embed.dim", "--embed-dim", "0"),
    train_case("batch-size-0", None, "batch.size", "--batch-size", "0"),
    train_case("vocab-size-2", None, "vocab.size", "--vocab-size", "2"),
    train_case("max-len-negative", None, "max.len", "--max-len", "-5"),
    train_case("seed-negative", None, r"seed must be >= 0", "--seed", "-1"),
    train_case("dropout-1", None, "dropout", "--dropout", "1.0"),
    train_case("lr-0", None, "lr", "--lr", "0"),
    train_case("transformer-width-not-a-multiple-of-its-heads", None, r"embed_dim 30: .*4 attention heads",
               "--model", "transformer", "--pool", "mean", "--embed-dim", "30"),
    train_case("step-loss-1", None, "step.loss", "--step-loss", "1"),
    train_case("step-loss-on-bow", None, "step.loss", "--step-loss", "0.5", "--model", "bow"),
    train_case("step-loss-mean-pool", None, "step.loss", "--step-loss", "0.5", "--pool", "mean"),
    train_case("epochs-not-int", None, "--epochs", "--epochs", "two"),
    train_case("unknown-preset", None, "--preset", "--preset", "best"),
    train_case("unknown-flag", None, "--hiden-dim", "--hiden-dim", "8"),
    train_case("resume-missing-run", None, "no-such-run", "--resume", "no-such-run"),
    Case("resume-with-another-out", lambda t, c: (["train", "--resume", str(c.run), "--out", str(t / "elsewhere")],
                                                  r"--out .*elsewhere: a resumed run continues", t / "elsewhere")),
    Case("config-json-nested-too-deeply", lambda t, c: (
        ["train", "--config", str(_write(t / "deep.json", "[" * 100000 + "]" * 100000)), "--show-config"],
        r"deep\.json: malformed JSON \(nested too deeply\)", None)),
    Case("config-toml-nested-too-deeply", lambda t, c: (
        ["train", "--config", str(_write(t / "deep.toml", "a = " + "[" * 100000 + "]" * 100000)), "--show-config"],
        r"deep\.toml: not valid TOML", None)),
    Case("config-json-duplicate-key", lambda t, c: (  # json kept the last 'lr' without a word; TOML refuses it
        ["train", "--config", str(_write(t / "dup.json", '{"lr": 0.1, "epochs": 1, "lr": 0.001}')), "--show-config"],
        r"dup\.json: malformed JSON \(duplicate key 'lr'\)", None)),
    Case("config-toml-fifo", lambda t, c: (
        ["train", "--config", str((os.mkfifo(t / "f.toml"), t / "f.toml")[1]), "--show-config"],
        r"f\.toml: not a regular file", None)),
    Case("config-toml-dev-zero", lambda t, c: (
        ["train", "--config", str(((t / "z.toml").symlink_to("/dev/zero"), t / "z.toml")[1]), "--show-config"],
        r"z\.toml: not a regular file", None)),
    Case("config-toml-5000-digit-integer", lambda t, c: (
        ["train", "--config", str(_write(t / "big.toml", "epochs = " + "9" * 5000)), "--show-config"],
        r"big\.toml: not valid TOML \(Exceeds the limit", None)),
    Case("resume-meta-5000-digit-integer", lambda t, c: (
        ["evaluate", str(_write(_copy_run(c.run, t) / "meta.json", '{"x": ' + "9" * 5000 + "}").parent)],
        r"meta\.json: malformed JSON \(Exceeds the limit", None)),
    Case("preset-and-config", lambda t, c: (
        ["train", "--preset", "lstm", "--config", str(_write(t / "e2.toml", "epochs = 2\n")), "--show-config"],
        r"--preset and --config", None)),
    Case("resume-config-sizes-beyond-64-bit-bytes", lambda t, c: (  # was "resume it on a machine with more memory"
        ["train", "--resume", str(_overflowing_config(_copy_run(c.run, t))), "--epochs", "2"],
        r"hidden_dim 2000000000.*: no machine can resume this run \(its config\.json damaged or edited\)$", None)),
    Case("resume-metrics-not-utf8", lambda t, c: (
        ["train", "--resume", str(_append(_copy_run(c.run, t) / "metrics.jsonl", b"\xff\n").parent), "--epochs", "2"],
        r"metrics\.jsonl: not UTF-8", None)),
    train_case("lr-nan", _good, "lr", "--lr", "nan",
),
    train_case("lr-inf", _good, "lr", "--lr", "inf",
),
    train_case("clip-nan", _good, "clip", "--clip", "nan",),
    train_case("device-cuda-without-gpu", _good, "cuda", "--device", "cuda",
               marks=(no_cuda,)),
    # --- evaluate --data -------------------------------------------------------------------
    eval_data_case("csv-label-maybe", lambda t: _write(t / "maybe.csv", "text,label\ngood,1\nunsure,maybe\n"),
                   r"maybe\.csv.*'maybe'"),
    eval_data_case("csv-sentiment-unknown",
                   lambda t: _write(t / "s.csv", "review,sentiment\ngood,positive\nhm,neutral\n"), r"s\.csv.*neutral"),
    eval_data_case("empty-csv", lambda t: _write(t / "empty.csv", b""), r"empty\.csv"),
    eval_data_case("csv-header-only", lambda t: _write(t / "hdr.csv", "text,label\n"), r"hdr\.csv"),
    eval_data_case("csv-wrong-columns", lambda t: _write(t / "cols.csv", "body,score\nx,1\n"), r"cols\.csv"),
    eval_data_case("csv-not-utf8",
                   lambda t: _write(t / "latin.csv", "text,label\ncafé,1\nbad,0\n".encode("latin-1")), r"latin\.csv"),
    eval_data_case("csv-binary-garbage", lambda t: _write(t / "bin.csv", bytes(range(256)) * 8), r"bin\.csv"),
    eval_data_case("csv-sentiment-as-a-number", lambda t: _write(t / "s.csv", "review,sentiment\ngood,positive\nbad,1\n"),
                   r"s\.csv: row 1: sentiment '1' is not positive or negative"),
    eval_data_case("csv-row-too-long", lambda t: _write(t / "long.csv", "text,label\ngood,1\nbad,0,9\n"),
                   r"long\.csv: row 1: 3 fields, the header has 2"),
    eval_data_case("csv-row-too-short", lambda t: _write(t / "short.csv", "text,label\ngood,1\nbad\n"),
                   r"short\.csv: row 1: 1 field, the header has 2"),
    eval_data_case("csv-text-column-twice", lambda t: _write(t / "two.csv", "text,label,Text\ngood,1,x\n"),
                   r"two\.csv: column 'text' appears twice"),
    eval_data_case("csv-label-column-twice", lambda t: _write(t / "two.csv", "text,label,label\ngood,1,0\n"),
                   r"two\.csv: column 'label' appears twice"),
    eval_data_case("eval-data-missing", lambda t: t / "nowhere.csv", r"nowhere\.csv"),
    eval_data_case("eval-data-null-text",
                   lambda t: _pq(t / "d", _good_cols(), _with(_good_cols(), text=_set_at(0, None))),
                   r"test\.parquet.*row 0"),
    # --- evaluate / predict on a run directory ---------------------------------------------
    run_case("evaluate-meta-nested-too-deeply", "evaluate",  # predict does not read meta.json
             lambda r: _write(r / "meta.json", '{"a":' * 100000 + "1" + "}" * 100000), r"meta\.json.*nested too deeply"),
    *[c for cmd in ("evaluate", "predict") for c in (
        run_case(f"{cmd}-missing-run-dir", cmd, None, "no-such-run", elsewhere=lambda t: t / "no-such-run"),
        run_case(f"{cmd}-review-given-as-run-dir", cmd, None, r"^Error: x{38}\.\.\.x{39}: no such run directory$",
                 elsewhere=lambda t: "x" * 5000),  # a name too long for a path: cut in the line, not an OSError
        run_case(f"{cmd}-config-nested-too-deeply", cmd,
                 lambda r: _write(r / "config.json", "[" * 100000 + "]" * 100000), r"config\.json.*nested too deeply"),
        run_case(f"{cmd}-vocab-tokenizer-not-an-object", cmd,
                 lambda r: _edit_json(r / "vocab.json", lambda d: {**d, "tokenizer": "x"}), r"'tokenizer' must be an object"),
        run_case(f"{cmd}-run-dir-is-a-file", cmd, None, "runfile", elsewhere=lambda t: _write(t / "runfile", "x")),
        run_case(f"{cmd}-a-file-of-a-run-for-the-run", cmd, None,  # was: "no such run directory"
                 r"^Error: model\.safetensors is a file of a run: give its folder, .*damaged-run$",
                 elsewhere=lambda t: t / "damaged-run" / "model.safetensors"),
        run_case(f"{cmd}-empty-run-dir", cmd, None, r"^Error: .*empty-run: not a run \(no config\.json\); rnnlab train "
                 r"--out DIR makes one$", elsewhere=lambda t: _mkdir(t / "empty-run")),
        run_case(f"{cmd}-a-labs-folder", cmd, None, r"^Error: .*lab: a lab's folder, not a run: its trained models are "
                 r"the runs in .*lab/jobs/ ", elsewhere=lambda t: _mkdir(_mkdir(t / "lab") / "jobs").parent),
        run_case(f"{cmd}-run-dir-is-a-symlink-loop", cmd, None, LOOP, elsewhere=lambda t: _loop(t / "loop-a")),
        run_case(f"{cmd}-a-published-labs-folder", cmd, None, r"^Error: .*lab: a lab's folder, not a run: a lab keeps "
                 r"its trained models in its jobs/ folder, and this one has none$",
                 elsewhere=lambda t: _write(_mkdir(t / "lab") / "lab.json", "{}").parent),
        run_case(f"{cmd}-a-labs-seed-folder", cmd, None, r"^Error: .*seed: not a run \(no config\.json\)",
                 elsewhere=lambda t: _write(_write(t / "lab" / "seed" / "summary.json", "{}").parent / "results.csv",
                                            "a\n").parent),  # a summary.json, as a run has: not a damaged run
        run_case(f"{cmd}-a-labs-job-store", cmd, None, r"^Error: .*jobs: a lab's job store, not a run: the runs are "
                 r"the folders in it", elsewhere=lambda t: _write(t / "lab" / "jobs" / "ab12" / "config.json", "{}")
                 .parent.parent),
        run_case(f"{cmd}-run-missing-only-its-config", cmd, lambda r: (r / "config.json").unlink(),
                 r"config\.json: missing$"),  # a damaged run, named as such
        run_case(f"{cmd}-malformed-config-json", cmd, lambda r: _write(r / "config.json", '{"model": "rnn",'),
                 r"config\.json"),
        run_case(f"{cmd}-config-json-not-object", cmd, lambda r: _write(r / "config.json", "[1, 2]"),
                 r"config\.json"),
        run_case(f"{cmd}-config-wrong-type", cmd,
                 lambda r: _edit_json(r / "config.json", lambda d: {**d, "hidden_dim": "big"}),
                 r"config\.json.*hidden_dim"),
        run_case(f"{cmd}-config-invalid-value", cmd,
                 lambda r: _edit_json(r / "config.json", lambda d: {**d, "embed_dim": 0}),
                 r"config\.json.*embed_dim"),
        run_case(f"{cmd}-config-sizes-beyond-64-bit-bytes", cmd,  # torch's "Storage size calculation overflowed":
                 _overflowing_config,  # a traceback
                 r"^Error: .*damaged-run: config\.json describes a model no machine can build \(rnn, embed_dim \d+, "
                 r"hidden_dim 2000000000, layers 1: a weight of these sizes takes more bytes than a 64-bit size counts\): "
                 r"damaged or edited$"),
        run_case(f"{cmd}-config-unknown-key", cmd,
                 lambda r: _edit_json(r / "config.json", lambda d: {**d, "colour": "red"}),
                 r"config\.json.*colour"),
        run_case(f"{cmd}-malformed-vocab-json", cmd, lambda r: _write(r / "vocab.json", b"\xff\xfe{"),
                 r"vocab\.json"),
        run_case(f"{cmd}-vocab-json-without-specials", cmd,
                 lambda r: _edit_json(r / "vocab.json", lambda d: {**d, "itos": d["itos"][2:]}),
                 r"vocab\.json"),
        run_case(f"{cmd}-truncated-safetensors", cmd,
                 lambda r: _truncate(r / "model.safetensors", lambda n: n // 2), r"model\.safetensors"),
        run_case(f"{cmd}-tiny-safetensors", cmd,
                 lambda r: _truncate(r / "model.safetensors", lambda n: 5), r"model\.safetensors"),
        run_case(f"{cmd}-missing-safetensors", cmd, lambda r: (r / "model.safetensors").unlink(),
                 r"model\.safetensors"),
        run_case(f"{cmd}-pickle-instead-of-safetensors", cmd,
                 lambda r: torch.save({"x": torch.zeros(2)}, r / "model.safetensors"), r"model\.safetensors"),
        run_case(f"{cmd}-weights-vs-smaller-vocab", cmd,
                 lambda r: _edit_json(r / "vocab.json", lambda d: {**d, "itos": d["itos"][:20]}),
                 r"model\.safetensors.*shape"),
        run_case(f"{cmd}-weights-vs-config-hidden-dim", cmd,
                 lambda r: _edit_json(r / "config.json", lambda d: {**d, "hidden_dim": 16}),
                 r"model\.safetensors.*shape"),
        run_case(f"{cmd}-weights-vs-config-model", cmd,
                 lambda r: _edit_json(r / "config.json", lambda d: {**d, "model": "lstm"}),
                 r"model\.safetensors"),
        run_case(f"{cmd}-finite-weights-whose-arithmetic-overflows", cmd, _overflowing,
                 r"answer is not a number \(NaN\) for 1 of 1 reviews|answer is not a number \(NaN\) for \d+ of \d+ "),
        run_case(f"{cmd}-vocab-larger-than-config", cmd,
                 lambda r: _edit_json(r / "vocab.json",
                                      lambda d: {**d, "itos": d["itos"] + [f"w{i}" for i in range(60)]}),
                 r"vocab\.json"),
    )],
    # --- found by the third fault sweep: the message names what is really wrong --------------------
    train_case("data-empty-path", lambda t, c: "", r"--data '': an empty path"),
    Case("evaluate-data-empty-path", lambda t, c: (["evaluate", str(c.run), "--data", ""],
                                                   r"--data '': an empty path", None)),
    train_case("acl-dir-misnamed-review", lambda t, c: _misnamed_acl_dir(t), r"review-extra\.txt: not named <id>_<rating>\.txt"),
    train_case("acl-tarball-misnamed-review", lambda t, c: _misnamed_acl_tarball(t),
               r"aclImdb_v1\.tar\.gz: aclImdb/train/pos/extra\.txt: not named <id>_<rating>\.txt"),
    train_case("two-acl-tarballs", lambda t, c: _two_tarballs(t),
               r"holds 2 aclImdb tarballs \(aclImdb_v1\.tar\.gz, aclImdb_v2\.tar\.gz\)"),
    Case("config-not-a-regular-file", lambda t, c: (["train", "--config", "/dev/null", "--show-config"],
                                                    r"/dev/null: not a regular file", None)),
    Case("config-yaml", lambda t, c: (["train", "--config", str(_write(t / "c.yaml", "epochs: 2\n")), "--show-config"],
                                      r"c\.yaml: not JSON, and not named \.toml: a config is a TOML \(\.toml\) or JSON", None)),
    run_case("evaluate-run-that-records-no-data", "evaluate", lambda r: (r / "meta.json").unlink(),
             r"damaged-run: records no data it was trained on \(no meta\.json\); pass --data"),
    Case("compare-out-under-a-file", lambda t, c: (
        ["compare", "--quick", "--data", str(c.data), "--out", str(_write(t / "afile", "x") / "x")],
        r"afile/x: .*afile is a file, not a directory", None)),
    # --- found by the fourth fault sweep ----------------------------------------------------------
    train_case("data-is-a-fifo", lambda t, c: _fifo(t / "fifo"), r"fifo: not a regular file or a directory"),
    train_case("acl-review-is-a-fifo", lambda t, c: _acl_dir_with_a_fifo(t), r"99_9\.txt: not a regular file"),
    train_case("acl-tarball-is-a-fifo", lambda t, c: _fifo(t / "d" / "aclImdb_v1.tar.gz").parent,
               r"aclImdb_v1\.tar\.gz: not a regular file"),
    # --- found by the eighth (session 46) ---------------------------------------------------------------
    train_case("train-parquet-is-a-fifo", lambda t, c: _fifo(_copy_split(c.data, t / "d", "test") / "train.parquet").parent,
               r"train\.parquet: not a regular file$", marks=HANGS),  # opening it waited for a writer for ever, deaf to signals
    Case("eval-test-parquet-is-a-fifo", lambda t, c: (
        ["evaluate", str(c.run), "--data", str(_fifo(_copy_split(c.data, t / "d", "train") / "test.parquet").parent)],
        r"test\.parquet: not a regular file$", None), HANGS),
    train_case("data-path-with-a-newline", lambda t, c: t / "no\nsuch", r"no\\nsuch: no such file or directory$"),
    Case("explain-run-is-a-symlink-loop", lambda t, c: (["explain", str(_loop(t / "loop-a")), "good"], LOOP, None)),
    Case("resume-run-is-a-symlink-loop", lambda t, c: (["train", "--resume", str(_loop(t / "loop-a"))], LOOP, None)),
    Case("report-lab-is-a-symlink-loop", lambda t, c: (["report", str(_loop(t / "loop-a"))], LOOP, None)),
    Case("evaluate-run-with-a-newline", lambda t, c: (["evaluate", str(t / "no\nsuch")],
                                                      r"no\\nsuch: no such run directory$", None)),
    Case("report-lab-with-a-newline-and-an-escape", lambda t, c: (["report", str(t / "no\nlab\x1b[2J")],
                                                                  r"no\\nlab\\x1b\[2J: no such directory; make it with rnnlab lab", None)),
    Case("report-lab-with-c1-controls", lambda t, c: (["report", str(t / "no\x9b31mlab\x85x\u2028y")],
                                                      r"no\\x9b31mlab\\x85x\\u2028y: no such directory; make it with rnnlab lab", None)),
    train_case("data-looks-like-a-hub-name", lambda t, c: "stanfordnlp/imdb",
               r"no such file or directory \(--data takes a local path"),
    train_case("data-is-a-url", lambda t, c: "https://example.com/imdb.tar.gz",  # was echoed as "https:/example.com/..."
               r"^Error: https://example\.com/imdb\.tar\.gz: a URL; --data takes a local path: download it first$"),
    Case("evaluate-data-is-a-url", lambda t, c: (["evaluate", str(c.run), "--data", "s3://bucket/x.csv"],
                                                 r"s3://bucket/x\.csv: a URL; --data takes a local path", None)),
    Case("explain-html-is-a-symlink-loop", lambda t, c: (
        ["explain", str(c.run), "great", "--html", str(_loop(t / "loop.html"))], r"loop\.html.*a symbolic link loop", None)),
    Case("evaluate-run-whose-config-is-a-dangling-link", lambda t, c: (  # a damaged run, not "not a run"
        ["evaluate", str(_dangling_config(t / "d"))], r"d/config\.json: missing$", None)),
    Case("resume-checkpoint-is-a-symlink-loop", lambda t, c: (
        ["train", "--resume", str(_loop(_copy_run(c.run, t) / "checkpoint.json").parent), "--epochs", "2"],
        r"checkpoint\.json: a symbolic link to nothing \(or a loop\)", None)),
    # --- found by the ninth (session 47) -----------------------------------------------------------------
    train_case("tarball-is-a-saved-web-page",  # a failed download; the line ended "(file could not be opened successfully:)"
               lambda t, c: _write(t / "d" / "aclImdb_v1.tar.gz", "<!DOCTYPE html><html><body>404 Not Found</body></html>\n"),
               r"aclImdb_v1\.tar\.gz: not a tar archive \(plain, gzip, bzip2 or xz\), or cut short; download it again$"),
    *(Case(f"{cmd[0]}-out-is-empty", lambda t, c, cmd=cmd: (  # Path("") is the current folder: it ran there
        [*cmd, "--quick", "--data", str(c.data), "--out", ""],
        r"Invalid value for '--out': an empty path; give a folder \(\. for the current one\)", None))
      for cmd in (["lab"], ["shortfall", "serial"], ["compare"])),
    train_case("tensorboard-is-empty", lambda t, c: c.data,
               r"Invalid value for '--tensorboard': an empty path; give a folder", "--tensorboard", ""),
    # --- found by session 57's fault hunt ------------------------------------------------------------------
    Case("report-of-a-training-run", lambda t, c: (["report", str(c.run)],  # was "holds nothing rnnlab made"
                                                   r"run: a training run, not a lab: report renders the folder rnnlab "
                                                   r"lab writes \(its --out\)$", None)),
    # --- found by session 61's fault hunt: an unset "$RUN" read the current folder as the run or the lab ---------
    *(Case(f"{cmd[0]}-run-is-empty", lambda t, c, cmd=cmd: (
        cmd, r"(RUN_DIR|\[LAB_DIR\]).*: an empty path; give a folder \(\. for the current one\)", None))
      for cmd in (["predict", "", "good"], ["evaluate", ""], ["report", ""], ["explain", "", "good"])),
    Case("evaluate-data-is-a-symlink-loop", lambda t, c: (  # was "no such file or directory"
        ["evaluate", str(c.run), "--data", str(_loop(t / "loop"))], r"loop: a symbolic link to nowhere", None)),
    train_case("data-is-a-symlink-loop", lambda t, c: _loop(t / "loop"), r"loop: a symbolic link to nowhere"),
    *(Case(f"train-{flag[2:]}-is-empty", lambda t, c, flag=flag: (  # --resume '' resumed the run in the current folder
        ["train", flag, ""], rf"Invalid value for '{flag}': an empty path; give a folder", None))
      for flag in ("--resume", "--out")),
]


def _dangling_config(d: Path) -> Path:
    d.mkdir(parents=True)
    (d / "config.json").symlink_to(d / "nowhere")
    return d


def pa_empty(kind: str):
    import pyarrow as pa

    return pa.array([], type=getattr(pa, kind)())


def assert_one_line_error(result_output: str, stdout: str, exit_code: int, needle: str) -> str:
    assert "Traceback" not in result_output, result_output
    assert exit_code == 2, f"exit {exit_code}: {result_output}"
    assert stdout.strip() == "", f"stdout should be empty on error: {stdout!r}"
    lines = [ln for ln in result_output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("Error:")]
    assert len(errors) == 1, result_output
    others = [ln for ln in lines if not ln.startswith("Error:")]
    assert all(ln.startswith(ALLOWED_EXTRA) for ln in others), f"unexpected lines: {others}"
    err = errors[0]
    assert len(err) <= MAX_ERROR_LEN, f"error line too long ({len(err)}): {err}"
    assert re.search(needle, err), f"{needle!r} not in {err!r}"
    return err


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_bad_input_cli(case, tmp_path, run_dir, tiny_parquet, monkeypatch):
    work = tmp_path / "w"
    work.mkdir()
    monkeypatch.chdir(work)  # default run dirs, relative --resume etc. land in the test's own folder
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # offline and an empty cache: the hub fails fast
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))
    argv, needle, out = case.build(work, Ctx(run_dir, tiny_parquet))
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    res = CliRunner().invoke(main, argv)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        import traceback

        pytest.fail("uncaught exception (a user would see a traceback):\n"
                    + "".join(traceback.format_exception(res.exception)))
    assert_one_line_error(res.output, res.stdout, res.exit_code, needle)
    if out is not None:
        assert not out.exists(), f"--out {out} was created: {sorted(p.name for p in out.iterdir())}"
    if "--out" in argv:
        given = Path(argv[argv.index("--out") + 1])
        if case.id == "out-is-a-file":
            assert given.is_file() and given.read_text() == "x"
        if case.id == "out-is-a-nonempty-dir":
            assert [p.name for p in given.iterdir()] == ["x.txt"]
    assert not (work / "runs").exists()
    # the intact run is never touched by a failing command
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def test_case_ids_are_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))


# --- real processes: what a user's terminal shows ----------------------------------------------

def _cli_cmd(how: str) -> list[str]:
    if how == "module":
        return [sys.executable, "-m", "rnnlab.cli"]
    script = Path(sys.executable).parent / "rnnlab"
    if not script.exists():
        found = shutil.which("rnnlab")
        if not found:
            pytest.skip("the rnnlab console script is not installed")
        script = Path(found)
    return [str(script)]


def _proc(argv, how="module", input: bytes | None = None, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run(_cli_cmd(how) + [str(a) for a in argv], input=input, capture_output=True,
                          timeout=180, env=env, cwd=cwd)


SUBPROCESS_CASES = ["missing-path", "corrupt-parquet", "truncated-tarball-path", "epochs-0", "unknown-model",
                    "predict-truncated-safetensors", "evaluate-weights-vs-smaller-vocab", "csv-label-maybe"]


@pytest.mark.parametrize("case_id,how", [(c, "module") for c in SUBPROCESS_CASES]
                         + [(c, "script") for c in SUBPROCESS_CASES[:2]])
def test_bad_input_subprocess_has_no_traceback(case_id, how, tmp_path, run_dir, tiny_parquet):
    """`python -m rnnlab.cli` and the `rnnlab` console script, as a shell runs them."""
    case = next(c for c in CASES if c.id == case_id)
    work = tmp_path / "w"
    work.mkdir()
    argv, needle, out = case.build(work, Ctx(run_dir, tiny_parquet))
    p = _proc(argv, how, cwd=work)
    stderr, stdout = p.stderr.decode("utf-8", "replace"), p.stdout.decode("utf-8", "replace")
    assert "Traceback" not in stderr + stdout, stderr
    assert_one_line_error(stderr, stdout, p.returncode, needle)
    if out is not None:
        assert not out.exists()


# --- odd but valid reviews ------------------------------------------------------------------

def _assert_predictions(output: str, n: int) -> list[float]:
    lines = output.splitlines()
    assert len(lines) == n, output[:500]
    for ln in lines:
        assert PRED_LINE.match(ln), ln
    return [float(ln.split("\t")[1]) for ln in lines]


ODD_BUT_VALID = [
    pytest.param(["", "a fine film"], None, 2, id="empty-string-argument"),
    pytest.param(["zxqv qqqz blorft", "日本語のレビュー", "!!! ??? ..."], None, 3, id="only-unknown-words"),
    pytest.param(["great film and a very good story " * 32000], None, 1, id="one-megabyte-review"),  # ~1.06 MB
    pytest.param([], b"\xff\xfe bad bytes\n", 1, id="non-utf8-stdin"),
    pytest.param([], b"first review\r\nsecond \xc3\xa9 review\r\n<br /><br />\n", 3, id="crlf-stdin"),
    pytest.param([], b"no trailing newline", 1, id="stdin-without-final-newline"),
    pytest.param([], "one review with a \u2028 line separator\nanother with \x85 NEL\n".encode("utf-8"), 2,
                 id="stdin-unicode-line-separators"),
]


@pytest.mark.parametrize("texts,stdin,n", ODD_BUT_VALID)
def test_predict_odd_but_valid_text(run_dir, texts, stdin, n):
    res = CliRunner().invoke(main, ["predict", str(run_dir), *texts], input=stdin)
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output
    probs = _assert_predictions(res.stdout, n)
    assert all(0.0 <= p <= 1.0 for p in probs)


def test_predict_json_output(run_dir):
    res = CliRunner().invoke(main, ["predict", str(run_dir), "--json", "", "superb", "awful"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(ln) for ln in res.stdout.splitlines()]
    assert len(rows) == 3
    for r in rows:
        assert r["label"] in ("positive", "negative") and 0.0 <= r["p_positive"] <= 1.0
        assert r["label"] == ("positive" if r["p_positive"] > 0.5 else "negative")


def test_predict_is_the_same_for_argument_and_stdin(run_dir):
    texts = ["a great film", "", "awful boring plot"]
    a = CliRunner().invoke(main, ["predict", str(run_dir), *texts])
    b = CliRunner().invoke(main, ["predict", str(run_dir)], input="\n".join(texts) + "\n")
    assert a.exit_code == b.exit_code == 0
    assert a.stdout == b.stdout
    c = CliRunner().invoke(main, ["predict", str(run_dir), "-"], input="\n".join(texts) + "\n")  # "-": stdin, as cat
    assert c.exit_code == 0 and c.stdout == a.stdout, c.output  # it was classified as the review "-"
    for mixed in (["-", "great film"], ["great film", "-"]):  # stdin and arguments: refused, not "-" as a review
        d = CliRunner().invoke(main, ["predict", str(run_dir), *mixed], input="awful\n")
        assert d.exit_code == 2 and d.stderr.splitlines() == ['Error: "-" reads the reviews from stdin: give them there '
                                                                'or as TEXT arguments, not both (the review "-" itself: '
                                                                'echo - | rnnlab predict RUN)'], d.output


def test_predict_refuses_a_second_run_as_a_review(run_dir):
    """`predict RUN_A RUN_B TEXT` printed a prediction for the text "RUN_B" (scientist's check): explain takes
    several runs, predict one, so a review that names a run directory is refused; on stdin it is a review."""
    res = CliRunner().invoke(main, ["predict", str(run_dir), str(run_dir), "great film"])
    assert_one_line_error(res.output, res.stdout, res.exit_code, "a run directory, not a review")
    res = CliRunner().invoke(main, ["predict", str(run_dir)], input=f"{run_dir}\n")
    assert res.exit_code == 0 and len(res.stdout.splitlines()) == 1, res.output
    res = CliRunner().invoke(main, ["predict", str(run_dir), "x" * 5000, "a\x00b"])  # too long a name, a NUL: reviews
    assert res.exit_code == 0 and len(res.stdout.splitlines()) == 2, res.output


def test_predict_empty_stdin_is_an_error(run_dir):
    res = CliRunner().invoke(main, ["predict", str(run_dir)], input=b"")
    assert_one_line_error(res.output, res.stdout, res.exit_code, "no review")


def test_evaluate_on_reviews_of_one_class(run_dir, tmp_path):
    """A CSV of positive reviews only is a fine evaluation set (training data still needs both classes)."""
    f = _write(tmp_path / "pos.csv", "text,label\ngreat film,1\nloved every minute,1\nsuperb,1\n")
    res = CliRunner().invoke(main, ["evaluate", str(run_dir), "--data", str(f)])
    assert res.exit_code == 0, res.output
    assert f"{f}: 3 reviews, accuracy" in res.stdout, res.stdout


def test_evaluate_on_a_test_parquet_alone(run_dir, tiny_parquet, tmp_path):
    """A directory with only test.parquet, or the file itself: evaluation needs no training split."""
    only = tmp_path / "test-only"
    only.mkdir()
    shutil.copy(tiny_parquet / "test.parquet", only / "test.parquet")
    results = []
    for data in (only, only / "test.parquet", tiny_parquet):
        res = CliRunner().invoke(main, ["evaluate", str(run_dir), "--data", str(data)])
        assert res.exit_code == 0, res.output
        results.append(res.stdout.split(": ", 1)[1])
    assert results[0] == results[1] == results[2]


def test_predict_with_stdin_closed_is_one_line(run_dir):
    """`rnnlab predict RUN <&-`: no stdin at all."""
    p = subprocess.run([sys.executable, "-m", "rnnlab.cli", "predict", str(run_dir)], capture_output=True,
                       preexec_fn=lambda: os.close(0), timeout=120)
    assert p.returncode == 2 and b"Traceback" not in p.stderr and b"no review given" in p.stderr, p.stderr


def test_evaluate_with_a_data_path_that_is_not_a_string_is_one_line(run_dir, tmp_path):
    run = _copy_run(run_dir, tmp_path)
    _edit_json(run / "meta.json", lambda d: {**d, "data": {**d["data"], "path": 5}})
    res = CliRunner().invoke(main, ["evaluate", str(run)])
    assert_one_line_error(res.output, res.stdout, res.exit_code, r"data.path must be a path, got 5")


@pytest.mark.parametrize("command", ["predict", "evaluate", "explain"])
def test_a_vocab_whose_tokenizer_contradicts_the_config_is_one_line(run_dir, tmp_path, command):
    run = _copy_run(run_dir, tmp_path)  # found by a fault sweep: evaluate scored with the edited tokenizer
    _edit_json(run / "vocab.json", lambda d: {**d, "tokenizer": {**d["tokenizer"], "strip_html": not d["tokenizer"]["strip_html"]}})
    res = CliRunner().invoke(main, [command, str(run), *(["a fine film"] if command != "evaluate" else [])])
    assert_one_line_error(res.output, res.stdout, res.exit_code, r"vocab\.json's tokenizer strip_html \(\w+\) contradicts "
                          r"config\.json's")


META_DAMAGE = {  # found by a fault sweep: each was read as "trained on the hub" (offline a hub error, online other data)
    "meta a list": (lambda d: [], "evaluate", r"meta\.json: not what rnnlab writes \(no data record\); pass --data"),
    "data a number": (lambda d: {**d, "data": 5}, "evaluate", r"meta\.json: not what rnnlab writes"),
    "data path empty": (lambda d: {**d, "data": {**d["data"], "path": ""}}, "evaluate", r"data\.path must be a path, got ''"),
    "a subset without a path": (lambda d: {**d, "data": {**d["data"], "path": None, "source": "x (subset: 9 train)"}},
                                "evaluate", r"trained on x \(subset: 9 train\), which it cannot load again by itself; pass --data"),
    "fingerprint a number": (lambda d: {**d, "data": {**d["data"], "fingerprint": 5}}, "resume",
                             r"data\.fingerprint must be a sha256, got 5"),
    "a split's fingerprint not a sha256": (  # was read as "its data has changed since it was trained"
        lambda d: {**d, "data": {**d["data"], "splits": {**d["data"].get("splits", {}), "test": "x"}}}, "evaluate",
        r"data\.splits\.test must be a sha256, got 'x'"),
}


@pytest.mark.parametrize("damage", list(META_DAMAGE))
def test_a_malformed_data_record_is_one_line_not_the_hub(run_dir, tmp_path, damage, monkeypatch):
    import rnnlab.data as data_mod

    monkeypatch.setattr(data_mod, "_load_hub", lambda: pytest.fail("went to the hub"))
    edit, command, needle = META_DAMAGE[damage]
    run = _copy_run(run_dir, tmp_path)
    _edit_json(run / "meta.json", edit)
    argv = ["evaluate", str(run)] if command == "evaluate" else ["train", "--resume", str(run), "--epochs", "9"]
    res = CliRunner().invoke(main, argv)
    assert_one_line_error(res.output, res.stdout, res.exit_code, needle)


def test_sigterm_before_training_is_exit_130_and_leaves_no_run(tmp_path, tiny_parquet):
    """A signal while the data loads (before the training loop catches it) exits 130 with one line, as Ctrl-C."""
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "rnnlab.cli", "train", "--data", str(tiny_parquet), *TINY,
                             "--out", str(out)], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seen = ""
    while not seen.endswith("\n") or not seen.splitlines()[-1].startswith("loading data"):  # the command has started
        line = proc.stderr.readline()
        assert line, f"ended before loading data: {seen}"
        seen += line
    proc.send_signal(signal.SIGTERM)
    err = seen + proc.stderr.read()
    assert proc.wait(timeout=120) == 130, err
    assert "Traceback" not in err and "interrupted" in err
    assert not out.exists() or (out / "checkpoint.json").exists()  # nothing half-made


def test_predict_non_utf8_stdin_in_a_real_process(run_dir):
    p = _proc(["predict", run_dir], input=b"\xff\xfe bad bytes\nsecond \x80 line\n")
    assert p.returncode == 0, p.stderr.decode("utf-8", "replace")
    assert b"Traceback" not in p.stderr
    _assert_predictions(p.stdout.decode("utf-8"), 2)


@pytest.mark.parametrize("setting,value", [("TORCH_LOGS", "garbage"), ("TORCH_LOGS_FORMAT", "%garbage"),
                                           ("TORCH_LOGS", "help")])
@pytest.mark.parametrize("command", ["predict", "explain"])
def test_torch_settings_it_cannot_read_are_one_line(run_dir, setting, value, command):
    """torch's import stopped on a TORCH_LOGS or TORCH_LOGS_FORMAT it cannot parse: 46-101 lines of traceback
    (explain: one line of 3.4 KB) in the middle of a command (fault hunt). Now one line naming the variable."""
    env = {**os.environ, setting: value}
    p = subprocess.run([sys.executable, "-m", "rnnlab", command, str(run_dir), "great"], capture_output=True,
                       text=True, timeout=180, env=env)
    assert p.returncode == 2 and p.stdout == "", p.stderr
    assert p.stderr.startswith(f"Error: {setting}: torch cannot read it") and len(p.stderr.splitlines()) == 1, p.stderr
    assert len(p.stderr) < 300
    p = subprocess.run([sys.executable, "-m", "rnnlab", command, "--help"], capture_output=True, text=True,
                       timeout=180, env=env)  # a command's help needs no torch: shown, as without the variable
    assert p.returncode == 0 and p.stdout.startswith(f"Usage: rnnlab {command}") and p.stderr == "", p.stderr


def test_a_matplotlib_backend_it_does_not_know_is_not_a_traceback(run_dir, tmp_path):
    """rnnlab draws with Agg; an MPLBACKEND that matplotlib does not know stopped its import with a traceback
    (explain --png, lab, compare; train after its first epoch: fault hunt)."""
    env = {**os.environ, "MPLBACKEND": "nonsense"}
    p = subprocess.run([sys.executable, "-m", "rnnlab", "explain", str(run_dir), "great", "--no-attribution", "--png",
                        str(tmp_path / "e.png")], capture_output=True, text=True, timeout=180, env=env)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    assert (tmp_path / "e.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("args", [["train", "--data", "x" * 5000], ["report", "x" * 5000],
                                  ["lab", "--quick", "--data", "x" * 5000, "--out", "OUT"]])
def test_a_name_too_long_for_the_file_system_is_short_lines(args, tmp_path):
    """ENAMETOOLONG carries the whole name; every line shows at most 80 characters of it."""
    args = [str(tmp_path / "lab") if a == "OUT" else a for a in args]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2, (r.output, r.exception)
    *_, last = r.stderr.strip().splitlines()
    assert last.lower().startswith("error: ") and "xxx" in last, last[:300]
    assert max(len(line) for line in r.stderr.splitlines()) < 200, r.stderr[:300]


@pytest.mark.parametrize("address", ["CLOSED", "no-port-here", "http://x:8265"])  # http: Ray cut its own message
def test_a_ray_address_where_nothing_answers_is_one_line_at_once(address, tmp_path, tiny_parquet):
    """ray.init retries a GCS address where nothing listens forever (in C++, logging as it goes): rnnlab checks
    that the port answers first."""
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"127.0.0.1:{port}" if address == "CLOSED" else address
    r = CliRunner().invoke(main, ["compare", "--quick", "--data", str(tiny_parquet), "--out", str(tmp_path / "c"),
                                  "--jobs", "1", "--ray", address])
    assert r.exit_code == 2, (r.output, r.exception)
    errors = [ln for ln in r.stderr.splitlines() if ln.lower().startswith("error")]
    assert len(errors) == 1 and f"--ray {address}: " in errors[0], r.stderr
    assert ("nothing answers there" if address.startswith("127.") else "give HOST:PORT") in errors[0]
    assert not (tmp_path / "c").exists()  # checked before --out is made: no empty OUT/jobs/ left behind


@pytest.mark.parametrize("command", ["lab", "compare"])
def test_a_bad_ray_address_or_no_ray_package_is_refused_before_the_data_is_read(command, tmp_path, monkeypatch):
    """--ray bogus, or --ray without the ray package, was refused only after the data was loaded (4-5 s from
    parquet, more from the hub): given data that does not exist, the --ray line must come first."""
    import importlib.util

    no_data = str(tmp_path / "no-such-data")
    r = CliRunner().invoke(main, [command, "--quick", "--data", no_data, "--out", str(tmp_path / "o"), "--ray", "bogus"])
    assert r.exit_code == 2 and r.stderr.strip() == ("Error: --ray bogus: give HOST:PORT, ray://HOST:PORT, auto or "
                                                     "local"), r.output
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing answers there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = CliRunner().invoke(main, [command, "--quick", "--data", no_data, "--out", str(tmp_path / "o"), "--ray",
                                  f"127.0.0.1:{port}"])
    assert r.exit_code == 2 and r.stderr.startswith(f"Error: --ray 127.0.0.1:{port}: nothing answers there"), r.output
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    r = CliRunner().invoke(main, [command, "--quick", "--data", no_data, "--out", str(tmp_path / "o"), "--ray", "local"])
    assert r.exit_code == 2 and r.stderr.strip() == "Error: --ray needs the ray package: pip install ray", r.output
    assert not (tmp_path / "o").exists()


def test_a_failed_job_says_whether_finished_jobs_are_kept(tmp_path, tiny_parquet, monkeypatch):
    """A job's failure ends the lab with one line that says what is kept: nothing (no job had finished), or the
    finished jobs under OUT and how to resume."""
    import rnnlab.lab
    from rnnlab.jobs import JobError

    def fails(*args, **kwargs):
        raise JobError("job seed-1 failed: boom")

    monkeypatch.setattr(rnnlab.lab, "run_lab", fails)
    out = tmp_path / "lab"
    argv = ["lab", "--quick", "--data", str(tiny_parquet), "--out", str(out), "--jobs", "1"]
    r = CliRunner().invoke(main, argv)
    assert r.exit_code == 2 and r.stderr.splitlines()[-1] == ("Error: job seed-1 failed: boom; no job had finished, "
                                                              "so none is kept"), r.stderr
    (out / "jobs").mkdir(parents=True, exist_ok=True)
    (out / "jobs" / "x.json").write_text("{}")
    r = CliRunner().invoke(main, argv)
    assert r.exit_code == 2 and r.stderr.splitlines()[-1] == (f"Error: job seed-1 failed: boom; finished jobs are kept "
                                                              f"under {out}: rerun the same command to resume"), r.stderr


def test_sigterm_is_named_when_ray_raises_the_interrupt_again_without_its_message(tmp_path, tiny_parquet, monkeypatch):
    """ray.wait catches the KeyboardInterrupt("SIGTERM") of the CLI's handler and raises a bare KeyboardInterrupt:
    the line said "interrupted (Ctrl-C)" for a SIGTERM."""
    import signal

    from rnnlab import cli, lab

    def interrupted_as_under_ray(*args, **kwargs):
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
            cli._interrupt(signal.SIGTERM, None)
        raise KeyboardInterrupt()

    monkeypatch.setattr(lab, "run_lab", interrupted_as_under_ray)
    out = tmp_path / "lab"
    r = CliRunner().invoke(main, ["lab", "--quick", "--data", str(tiny_parquet), "--out", str(out), "--jobs", "1"])
    assert r.exit_code == 130, (r.output, r.exception)
    assert r.stderr.splitlines()[-1] == "interrupted (SIGTERM); no job had finished, so none is kept", r.stderr
    # (it said "finished jobs are kept under OUT", of a folder the lab had just taken back)

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt()

    monkeypatch.setattr(lab, "run_lab", ctrl_c)  # the next command in this process: no signal of its own
    r = CliRunner().invoke(main, ["lab", "--quick", "--data", str(tiny_parquet), "--out", str(out), "--jobs", "1"])
    assert r.exit_code == 130 and r.stderr.splitlines()[-1].startswith("interrupted (Ctrl-C); "), r.stderr


def test_a_file_beside_a_config_json_that_is_no_run_is_not_called_a_file_of_a_run(tmp_path):
    from rnnlab.runs import RunDir, RunError

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "data.csv").write_text("text,label\n")
    with pytest.raises(RunError, match=r"data\.csv: no such run directory$"):
        RunDir(tmp_path / "data.csv")._require_dir()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_predict_stopped_while_it_waits_on_stdin_says_so_without_steps(run_dir):
    """SIGTERM to `predict` reading a pipe said "nothing past the last completed step was saved": predict has no
    steps (fault hunt)."""
    proc = subprocess.Popen([sys.executable, "-m", "rnnlab", "predict", str(run_dir)], stdin=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        deadline, before = time.monotonic() + 120, None
        while time.monotonic() < deadline:  # until it waits on stdin: torch loaded, then no CPU time for a second
            time.sleep(1.0)
            now = _cpu_ticks(proc.pid)
            if now == before and _loaded_torch(proc.pid):
                break
            before = now
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=120)[1]
    finally:
        proc.kill()
    assert proc.returncode == 130 and err.strip().splitlines() == [
        "interrupted (SIGTERM); the command stopped before it finished"], err


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _loaded_torch(pid: int) -> bool:
    with open(f"/proc/{pid}/maps") as f:
        return "libtorch_cpu" in f.read()


def test_a_config_with_more_layers_than_its_weights_is_refused_before_building_them(run_dir, tmp_path):
    """layers 20000 in a hand-edited config.json: predict built all 20,000 layers (59 s, 2.9 GB) before finding the
    weights did not match (fault hunt). The layers the weights hold are read first."""
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    cfg = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**cfg, "layers": 20000}))
    t0 = time.perf_counter()
    for argv in (["predict", str(run), "good"], ["explain", str(run), "--text", "good"], ["evaluate", str(run)]):
        r = CliRunner().invoke(main, argv)
        assert r.exit_code == 2 and r.stderr.splitlines() == [
            f"Error: {run / 'model.safetensors'}: holds 1 layer(s) where config.json says layers 20000 (damaged or "
            "edited)"], (argv, r.output)
    assert time.perf_counter() - t0 < 30  # not minutes: nothing was built (a bound far above the ~1 s it takes)


@pytest.mark.parametrize("name", ["notebook", "rnn", "lstm", "gru", "bow", "transformer", "cnn"])
def test_the_layers_read_from_weights_are_the_models(name):
    from rnnlab.config import preset, with_overrides
    from rnnlab.models import build_model
    from rnnlab.runs import layers_in

    base = with_overrides(preset("bow"), {"model": "cnn", "pool": "max"}) if name == "cnn" else preset(name)
    for layers in ((1, 3) if name in ("rnn", "lstm", "gru", "transformer") else (1,)):
        cfg = with_overrides(base, {"layers": layers, "embed_dim": 8, "hidden_dim": 8})
        assert layers_in(build_model(cfg, 50).state_dict()) == layers


# --- fault review, session 56 -----------------------------------------------------------------

def test_a_corrupt_xz_tarball_is_one_line(tmp_path, monkeypatch):
    """xz's own error (lzma.LZMAError) is no OSError: tarfile passes it on as it is, and it was a traceback."""
    monkeypatch.setenv("RNNLAB_CACHE", str(tmp_path / "cache"))
    f = write_acl_tarball(tmp_path / "aclImdb_v1.tar.xz", make_reviews(60, 1), make_reviews(30, 2), mode="w:xz")
    raw = bytearray(f.read_bytes())
    raw[-1] ^= 0xFF  # the stream footer's magic bytes
    f.write_bytes(bytes(raw))
    res = CliRunner().invoke(main, ["train", *TINY, "--data", str(f), "--out", str(tmp_path / "r")])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert_one_line_error(res.output, res.stdout, res.exit_code, r"aclImdb_v1\.tar\.xz: truncated or corrupt archive")


def test_a_tarball_review_id_of_5000_digits_is_one_line(tmp_path, monkeypatch, run_dir):
    """int() refuses a string of more than 4,300 digits (ValueError: a traceback from evaluate, a line naming no file
    from train)."""
    monkeypatch.setenv("RNNLAB_CACHE", str(tmp_path / "cache"))
    import io
    import tarfile

    f = write_acl_tarball(tmp_path / "src.tar", make_reviews(40, 1), make_reviews(20, 2), mode="w")
    with tarfile.open(f) as src, tarfile.open(tmp_path / "aclImdb_v1.tar", "w", format=tarfile.PAX_FORMAT) as dst:
        for m in src:
            dst.addfile(m, src.extractfile(m))
        info = tarfile.TarInfo(f"aclImdb/test/pos/{'1' * 5000}_7.txt")
        info.size = 4
        dst.addfile(info, io.BytesIO(b"good"))
    for argv in (["train", *TINY, "--out", str(tmp_path / "r")], ["evaluate", str(run_dir)]):
        res = CliRunner().invoke(main, [*argv, "--data", str(tmp_path / "aclImdb_v1.tar")])
        assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
        assert_one_line_error(res.output, res.stdout, res.exit_code, r"a review id of 5,000 digits")


def test_a_stray_cache_folder_with_a_pid_no_process_can_have_is_swept(tmp_path, monkeypatch, tiny_parquet):
    """The cache sweep asked os.kill about a pid of 20 digits: OverflowError, a traceback from train."""
    from rnnlab.text import _HOST

    cache = tmp_path / "cache"
    stray = cache / f".corpus-x.{_HOST}.{'9' * 20}.ab.tmp"
    stray.mkdir(parents=True)
    monkeypatch.setenv("RNNLAB_CACHE", str(cache))
    res = CliRunner().invoke(main, ["train", *TINY, "--data", str(tiny_parquet), "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert not stray.exists()  # no process has that number: the builder that left it is dead


def test_evaluate_prints_a_data_path_that_is_not_utf8_under_a_strict_stdout(tmp_path, run_dir):
    """evaluate's text output printed the data's path raw: a byte that is not UTF-8 made a strict stdout (as under
    LANG=en_US.UTF-8) raise UnicodeEncodeError, a traceback."""
    f = os.fsencode(tmp_path) + b"/d\xff.csv"
    with open(f, "w") as fh:
        fh.write("text,label\ngreat film,1\nawful film,0\n")
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict", "RNNLAB_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "rnnlab", "evaluate", str(run_dir), "--data", f], capture_output=True,
                       env=env, timeout=300)
    assert r.returncode == 0 and b"Traceback" not in r.stderr, r.stderr.decode(errors="replace")
    assert r.stdout.decode("utf-8").startswith(f"{tmp_path}/d\\udcff.csv: 2 reviews, accuracy ")


@pytest.mark.parametrize("embed_dim", [2**30, 20_000_000])
def test_a_config_whose_sizes_are_not_its_weights_is_refused_before_any_memory_is_taken(run_dir, tmp_path, embed_dim,
                                                                                         monkeypatch):
    """embed_dim 20,000,000 (8 GB of embedding) in a damaged config.json: Linux grants the memory, so under a memory
    limit the process was killed without a word (fault review). The sizes are compared with the weights' shapes on
    torch's meta device first: the model is never built anywhere else."""
    import torch

    import rnnlab.models

    build = rnnlab.models.build_model

    def only_on_meta(cfg, vocab_size):
        assert torch.empty(0).device.type == "meta", "built the damaged config's model in memory"
        return build(cfg, vocab_size)

    monkeypatch.setattr(rnnlab.models, "build_model", only_on_meta)
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    cfg = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**cfg, "embed_dim": embed_dim}))
    for argv in (["predict", str(run), "good"], ["explain", str(run), "--text", "good"], ["evaluate", str(run)]):
        r = CliRunner().invoke(main, argv)
        assert r.exit_code == 2 and len(r.stderr.splitlines()) == 1, (argv, r.output)
        assert re.fullmatch(rf"Error: {re.escape(str(run / 'model.safetensors'))}: embedding\.weight has shape "
                            rf"\((\d+), {cfg['embed_dim']}\), the config/vocabulary needs \(\1, {embed_dim}\)\n",
                            r.stderr), (argv, r.output)


@pytest.mark.parametrize("command", ["lab", "shortfall"])
def test_a_file_where_a_part_s_folder_goes_is_refused_before_any_job(command, tmp_path, tiny_parquet, monkeypatch):
    """OUT/serial a file: the experiment ran every job, then failed on its folder (fault review). Now before the
    data is read."""
    monkeypatch.setenv("RNNLAB_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "o"
    out.mkdir()
    (out / "serial").write_text("notes")
    argv = [command, *(["serial"] if command == "shortfall" else []), "--quick", "--data", str(tiny_parquet),
            "--out", str(out)]
    res = CliRunner().invoke(main, argv)
    assert_one_line_error(res.output, res.stdout, res.exit_code,
                          rf"^Error: {re.escape(str(out / 'serial'))}: a file where the results' serial/ folder goes")
    assert sorted(p.name for p in out.iterdir()) == ["serial"] and (out / "serial").read_text() == "notes"


def test_a_lab_markdown_that_is_a_fifo_is_refused_before_any_job(tmp_path, tiny_parquet, monkeypatch):
    """lab --markdown FIFO: refused only by the last write, after every job, leaving lab.json without its report."""
    monkeypatch.setenv("RNNLAB_CACHE", str(tmp_path / "cache"))
    fifo = _fifo(tmp_path / "f.md")
    res = CliRunner().invoke(main, ["lab", "--quick", "--data", str(tiny_parquet), "--out", str(tmp_path / "l"),
                                    "--markdown", str(fifo)])
    assert_one_line_error(res.output, res.stdout, res.exit_code, rf"{re.escape(str(fifo))}: not a regular file")
    assert not (tmp_path / "l").exists()


def test_a_model_that_matches_its_weights_but_not_this_machine_s_memory_is_one_line(run_dir, tmp_path, monkeypatch):
    """A run trained on a larger machine: its config and weights agree, and building it fails for want of memory
    (the CPU allocator's RuntimeError, simulated): one line naming the sizes."""
    import rnnlab.models

    build = rnnlab.models.build_model

    def no_memory(cfg, vocab_size):
        import torch

        if torch.empty(0).device.type == "meta":
            return build(cfg, vocab_size)
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough memory")

    monkeypatch.setattr(rnnlab.models, "build_model", no_memory)
    cfg = json.loads((run_dir / "config.json").read_text())
    r = CliRunner().invoke(main, ["predict", str(run_dir), "good"])
    assert r.exit_code == 2 and r.stderr.splitlines() == [
        f"Error: {run_dir}: out of memory building the model config.json describes ({cfg['model']}, embed_dim "
        f"{cfg['embed_dim']}, hidden_dim {cfg['hidden_dim']}, layers {cfg['layers']}): a damaged config.json, or a run "
        "for a larger machine"], r.output


@pytest.mark.parametrize("where", ["lab.json", "figures"])
def test_a_lab_s_record_or_figures_folder_in_the_way_is_refused_before_any_job(where, tmp_path, tiny_parquet,
                                                                              monkeypatch):
    """A folder at OUT/lab.json, or a file where --markdown's figures folder goes (outside the lab): refused only by
    the report, after every job (a diff review's list of what was left)."""
    monkeypatch.setenv("RNNLAB_CACHE", str(tmp_path / "cache"))
    out, md = tmp_path / "l", tmp_path / "docs" / "R.md"
    if where == "lab.json":
        (out / "lab.json").mkdir(parents=True)
        needle = rf"^Error: {re.escape(str(out / 'lab.json'))}: a folder where the lab writes its record"
    else:
        md.parent.mkdir()
        (md.parent / "R_figures").write_text("notes")
        needle = rf"^Error: {re.escape(str(md.parent / 'R_figures'))}: a file where the Markdown's figures folder goes"
    res = CliRunner().invoke(main, ["lab", "--quick", "--data", str(tiny_parquet), "--out", str(out), "--markdown",
                                    str(md)])
    assert_one_line_error(res.output, res.stdout, res.exit_code, needle)
    assert not (out / "jobs").exists()
