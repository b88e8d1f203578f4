"""Faults found by a hunt in odd environments and at odd paths: an empty HOME, a checkout whose folder name is not
UTF-8, explain's stdin without an end, a run made inside another run's checkpoint folder, a FIFO where a job's
record goes, and a name holding a character XML refuses; then (session 65) symbolic links where rnnlab writes, a
weights file it may not read, the exercise's files as one set and RNNLAB_CACHE read as a shell would."""
from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import subprocess
import sys
import xml.dom.minidom
from pathlib import Path

import pytest
from click.testing import CliRunner

from rnnlab.cli import main

CMD = [sys.executable, "-m", "rnnlab"]
SMALL = ["--epochs", "1", "--embed-dim", "8", "--hidden-dim", "8"]
SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_data) -> Path:
    out = tmp_path_factory.mktemp("odd") / "run"
    r = subprocess.run(CMD + ["train", "--data", str(tiny_data), *SMALL, "--out", str(out)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    return out


def test_an_empty_home_is_no_home_not_the_root_folder(monkeypatch, tmp_path):
    """`HOME= rnnlab train`: Python reads an empty HOME as "/", and the corpus cache (and matplotlib's folders) were
    made in /.cache and /.config, the file system's root folder (as root; a user got a permission error)."""
    from rnnlab.text import cache_dir

    monkeypatch.delenv("RNNLAB_CACHE")
    monkeypatch.setenv("HOME", "")
    assert cache_dir() is None
    env = {k: v for k, v in os.environ.items() if k not in ("MPLCONFIGDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")}
    env["HOME"] = ""
    r = subprocess.run([sys.executable, "-c", "import os, rnnlab.plots; print(os.environ['MPLCONFIGDIR'])"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert Path(r.stdout.strip()).name.startswith("matplotlib-")  # a temporary folder, not /.config/matplotlib


@pytest.mark.skipif(shutil.which("git") is None or sys.platform != "linux", reason="needs git and byte file names")
def test_a_checkout_whose_folder_name_is_not_utf8_records_its_commit(tmp_path):
    """rnnlab in a folder named with a Latin-1 byte: git's output was decoded strictly, and every `train` and `lab`
    stopped with "'utf-8' codec can't decode byte 0xe9" before the run was made."""
    top = Path(os.fsdecode(os.fsencode(str(tmp_path)) + b"/caf\xe9"))
    shutil.copytree(SRC / "rnnlab", top / "src" / "rnnlab", ignore=shutil.ignore_patterns("__pycache__"))
    git = ["git", "-C", str(top), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    for args in (["init", "-q"], ["add", "src"], ["commit", "-q", "-m", "x"]):
        subprocess.run(git + args, check=True, capture_output=True)
    r = subprocess.run([sys.executable, "-c", "import json; from rnnlab.runs import _git; print(json.dumps(_git()))"],
                       env={**os.environ, "PYTHONPATH": str(top / "src")}, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert len(got["git_commit"]) == 40 and got["git_dirty"] is False


def test_explain_refuses_a_review_on_stdin_longer_than_it_reads(run, monkeypatch):
    """`rnnlab explain RUN < /dev/zero` (or `yes | rnnlab explain RUN`) read stdin whole: it grew until the memory
    ran out (predict reads a line of at most 64 MB since session 57; explain read without a bound)."""
    import rnnlab.explain as ex

    monkeypatch.setattr(ex, "LONGEST_REVIEW", 100)
    r = CliRunner().invoke(main, ["explain", str(run), "--plain"], input="good film " * 10)  # 100 bytes: read
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["explain", str(run), "--plain"], input="good film " * 10 + "x")
    assert r.exit_code == 2 and r.stdout == "" and r.stderr.strip().splitlines()[-1] == (
        "Error: the review on stdin is longer than 100 bytes (does it end?): explain reads one review"), r.output


def test_train_refuses_a_new_run_inside_another_runs_checkpoint_folder(run, tiny_data, tmp_path):
    """`train --out RUN/ckpt-1/sub` (or RUN/ckpt-9) trained there; RUN's next epoch or resume deletes its old
    checkpoint folders whole, and the new run with them, without a word."""
    ckpt = next(run.glob("ckpt-*"))
    for out in (ckpt / "sub", run / "ckpt-99"):
        r = CliRunner().invoke(main, ["train", "--data", str(tiny_data), *SMALL, "--out", str(out)])
        assert r.exit_code == 2 and "one of the training run" in r.stderr and "choose another --out" in r.stderr, r.output
        assert not out.exists()
    r = CliRunner().invoke(main, ["train", "--data", str(tiny_data), *SMALL, "--out", str(tmp_path / "elsewhere")])
    assert r.exit_code == 0, r.output  # a run anywhere else is made as before
    lab, res = tmp_path / "lab", tmp_path / "res" / "compare"  # and in an empty folder of a lab's or a part's (the
    for f in (lab / "lab.json", res / "verdict.json", res / "results.csv"):  # diff review: the first version of the
        f.parent.mkdir(parents=True, exist_ok=True)  # check refused these as "a file of the lab")
        f.write_text("{}")
    for out in (lab / "runs" / "rnn", res / "mine"):
        out.mkdir(parents=True)
        r = CliRunner().invoke(main, ["train", "--data", str(tiny_data), *SMALL, "--out", str(out)])
        assert r.exit_code == 0 and (out / "model.safetensors").is_file(), r.output


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_where_a_jobs_record_goes_is_refused_before_the_job_runs(tiny_data, tmp_path):
    """A FIFO at STORE/<key>.json: the job ran (in a full lab, minutes) and only its record's write refused it."""
    from rnnlab.data import load_imdb
    from rnnlab.io import RunError
    from rnnlab.jobs import Job, Runner

    calls = tmp_path / "calls"
    job = Job("fake_jobs:echo", {"name": "a", "calls": str(calls)}, label="echo a")
    store = tmp_path / "jobs"
    store.mkdir()
    os.mkfifo(store / f"{job.key}.json")
    with Runner(workers=1) as runner, pytest.raises(RunError, match="not a regular file .* where the job store keeps "
                                                                     "this job's record; move it away"):
        runner.run([job], load_imdb(tiny_data), data_arg=str(tiny_data), store=store)
    assert not calls.exists()  # refused before it ran


def test_a_name_with_a_character_xml_refuses_is_escaped_in_an_svg_figure(run, tmp_path):
    """A run folder named with U+FFFE: explain's SVG figure held it raw, and is no XML a browser opens ("Invalid
    character U+FFFE"), as the control characters once were."""
    from rnnlab.io import one_line

    assert one_line("a\ufffeb\uffff") == "a\\ufffeb\\uffff"
    odd = tmp_path / "run\ufffe"
    shutil.copytree(run, odd)
    r = CliRunner().invoke(main, ["explain", str(odd), "--text", "good film", "--png", str(tmp_path / "f.svg")])
    assert r.exit_code == 0, r.output
    xml.dom.minidom.parse(str(tmp_path / "f.svg"))


@pytest.mark.parametrize("command, where", [(["lab", "--quick"], "explain/picks.json"),
                                            (["lab", "--quick"], "seed/summary.json"),
                                            (["shortfall", "serial", "--quick"], "serial/serial.svg"),
                                            (["compare", "--quick"], "compare/table.csv")])
def test_a_folder_where_a_parts_file_goes_is_refused_before_the_data_is_read(command, where, tmp_path):
    """A folder at OUT/<part>/<file>: refused only by that file's write, after every job had run (picks.json: after
    the reviews were explained too)."""
    out = tmp_path / "out"
    (out / where).mkdir(parents=True)
    r = CliRunner().invoke(main, [*command, "--data", str(tmp_path / "no-such-data"), "--out", str(out)])
    assert r.exit_code == 2 and r.output.strip() == (
        f"Error: {out / where}: a folder where the results' {where} goes; move it, or give another --out"), r.output
    (out / where).rmdir()  # a FIFO there: the same, before the data is read (the diff review)
    os.mkfifo(out / where)
    r = CliRunner().invoke(main, [*command, "--data", str(tmp_path / "no-such-data"), "--out", str(out)])
    assert r.exit_code == 2 and r.output.strip() == (f"Error: {out / where}: not a regular file (a FIFO, a device) "
                                                     f"where the results' {where} goes; move it, or give another --out")


class _Endless(io.RawIOBase):
    """A stdin that never ends (as `< /dev/zero`), failing the test once more than `cap` bytes were read from it."""

    def __init__(self, cap: int):
        self.given, self.cap = 0, cap

    def readable(self):
        return True

    def readinto(self, b):
        if self.given > self.cap:
            raise AssertionError("stdin read past its bound")
        b[:] = b"x" * len(b)
        self.given += len(b)
        return len(b)


def test_explain_reads_an_endless_stdin_only_up_to_its_bound(monkeypatch):
    """The diff review: the test above passed with the bound taken out (its input ends); this one's does not."""
    import rnnlab.explain as ex

    monkeypatch.setattr(ex, "LONGEST_REVIEW", 1000)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(_Endless(100_000))))
    with pytest.raises(ValueError, match="longer than 1,000 bytes"):
        ex._read_review(None, None, None, None, [])


def test_train_out_a_device_says_so():
    """`train --out /dev/null` said "exists and is a file" (the hunt's wording note)."""
    r = CliRunner().invoke(main, ["train", "--out", "/dev/null", "--epochs", "1"])
    assert r.exit_code == 2 and r.output.strip().endswith("/dev/null: exists and is a file (a device, a FIFO); "
                                                          "choose another --out"), r.output


# --- session 65's hunt: links where rnnlab writes, an unreadable weights file, a part's files as one set ---------------

def test_a_link_in_a_job_store_is_refused_before_the_job_runs(tiny_data, tmp_path, run):
    """STORE/<key>/ or STORE/<key>.json as a symbolic link (to a training run's folder, to its summary.json): the job
    ran and its write replaced what the link led to (the run's weights; its summary), and the lab exited 0."""
    from rnnlab.data import load_imdb
    from rnnlab.io import RunError
    from rnnlab.jobs import Job, Runner

    victim = tmp_path / "victim"
    shutil.copytree(run, victim)
    before = {p.name: p.read_bytes() for p in victim.iterdir() if p.is_file()}
    calls = tmp_path / "calls"
    job = Job("fake_jobs:echo", {"name": "a", "calls": str(calls), "keep": True}, label="echo a")
    store = tmp_path / "jobs"
    store.mkdir()
    for link, target, what in ((store / job.key, victim, "files"),
                               (store / f"{job.key}.json", victim / "summary.json", "record")):
        link.symlink_to(target)
        with Runner(workers=1) as runner, pytest.raises(RunError, match=f"a symbolic link where the job store keeps "
                                                                        f"this job's {what}"):
            runner.run([job], load_imdb(tiny_data), data_arg=str(tiny_data), store=store)
        link.unlink()
    assert not calls.exists()  # refused before it ran
    assert {p.name: p.read_bytes() for p in victim.iterdir() if p.is_file()} == before


def test_a_part_folder_that_is_a_training_run_is_refused_before_the_data_is_read(run, tmp_path):
    """OUT/seed/ a link to a run: the lab wrote its exercise's summary.json over the run's, and results.csv beside it."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "seed").symlink_to(run)
    r = CliRunner().invoke(main, ["lab", "--quick", "--data", str(tmp_path / "no-such-data"), "--out", str(out)])
    assert r.exit_code == 2 and r.output.strip() == (
        f"Error: {out / 'seed'}: holds a training run (config.json, vocab.json) where the results' seed/ folder goes; "
        "move it, or give another --out"), r.output


def test_markdown_figures_through_a_link_never_replace_another_labs_or_runs_file(run, tmp_path):
    """`report --markdown D/x.md` copies the figures into D/x_figures/: a link there (the folder, to another lab's
    part; a figure, to a run's weights) replaced what it led to, and the run's next predict read a PNG as its model."""
    lab = Path(__file__).resolve().parents[1] / "docs" / "lab"
    other = tmp_path / "other"
    shutil.copytree(lab / "compare", other / "compare")
    shutil.copy(lab / "lab.json", other / "lab.json")
    victim = tmp_path / "victim"
    shutil.copytree(run, victim)
    weights = (victim / "model.safetensors").read_bytes()
    figure = (other / "compare" / "compare.png").read_bytes()
    md = tmp_path / "md"
    md.mkdir()
    (md / "x_figures").symlink_to(other / "compare")
    args = ["report", str(lab), "--out", str(md / "x.html"), "--markdown", str(md / "x.md")]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2 and r.output.strip() == (
        f"Error: {md / 'x_figures' / 'compare.png'}: a file of the lab {other}; write the report elsewhere"), \
        r.output
    (md / "x_figures").unlink()
    (md / "x_figures").mkdir()
    (md / "x_figures" / "compare.png").symlink_to(victim / "model.safetensors")
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2 and "one of the training run" in r.output, r.output
    assert (victim / "model.safetensors").read_bytes() == weights
    assert (other / "compare" / "compare.png").read_bytes() == figure
    assert not (md / "x.md").exists() and not (md / "x.html").exists()
    (md / "x_figures" / "compare.png").unlink()
    r = CliRunner().invoke(main, args)  # the way cleared: written
    assert r.exit_code == 0, r.output
    assert (md / "x_figures" / "compare.png").read_bytes() == (lab / "compare" / "compare.png").read_bytes()


def test_a_weights_file_it_may_not_read_is_not_called_corrupt(run, monkeypatch):
    """safetensors says "No such file or directory" for a file it may not open, and the error called an intact
    file "corrupt or truncated", which invites deleting it."""
    import builtins

    import rnnlab.io as io_mod
    from rnnlab.io import RunError, load_tensors

    real = builtins.open

    def refused(path, *args, **kw):
        if str(path).endswith("model.safetensors"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *args, **kw)

    monkeypatch.setattr(io_mod, "open", refused, raising=False)
    with pytest.raises(RunError) as e:
        load_tensors(run / "model.safetensors")
    assert str(e.value) == f"cannot read {run / 'model.safetensors'}: permission denied", str(e.value)


def test_the_exercises_files_are_written_as_one_set(tmp_path, monkeypatch):
    """seed/'s results.csv, figures and summary.json were written one by one: a full disk at the figure left new rows
    beside the old summary, and the report called the rows "changed since the lab wrote them"."""
    import errno

    import rnnlab.plots as plots
    from rnnlab.io import StorageError
    from rnnlab.lab import write_exercise

    rows = [{"seed": 0, "part": "epoch", "epoch": e, "metric": m, "value": v}
            for e in (1, 2) for m, v in (("test_acc", 0.5 + e / 10), ("train_loss", 0.7), ("train_seconds", 1.0),
                                         ("grad_norm_max", 2.0))]
    d = tmp_path / "seed"
    write_exercise(d, {"epochs": 2}, rows, "quick", 100, "f" * 64)
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    assert sorted(before) == ["results.csv", "seed.png", "seed.svg", "summary.json"]
    real = plots.figure_bytes

    def full(fig, fmt, **kw):
        if fmt == "png":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fig, fmt, **kw)

    monkeypatch.setattr(plots, "figure_bytes", full)
    with pytest.raises((OSError, StorageError)):
        write_exercise(d, {"epochs": 2}, [{**r, "value": r["value"] / 2} for r in rows], "quick", 100, "f" * 64)
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before  # the earlier set, whole


def test_the_cache_setting_is_read_as_a_shell_would(monkeypatch, tmp_path):
    """RNNLAB_CACHE="~/x" made a folder named "~" in the current folder, and " " one named " "; with HOME= it is no
    folder at all (the diff review: it read as /x)."""
    from rnnlab.text import cache_dir

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("RNNLAB_CACHE", "~/x ")
    assert cache_dir() == tmp_path / "x"
    monkeypatch.setenv("RNNLAB_CACHE", "  ")
    assert cache_dir() == tmp_path / ".cache" / "rnnlab"
    monkeypatch.setenv("RNNLAB_CACHE", "~/x")
    monkeypatch.setenv("HOME", "")  # no home folder: no "~" either (it read as /x)
    assert cache_dir() is None


def test_markdown_into_another_labs_folder_can_be_written_again(tmp_path):
    """The figure copies' owner check read the report's own earlier copies as "a file of the lab" of the folder the
    Markdown went to: the first `report --markdown OTHER_LAB/x.md` passed, the same command again was refused."""
    lab = Path(__file__).resolve().parents[1] / "docs" / "lab"
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(lab / "lab.json", other / "lab.json")
    args = ["report", str(lab), "--out", str(tmp_path / "x.html"), "--markdown", str(other / "x.md")]
    for _ in range(2):
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 0, r.output


def test_an_edited_preset_keeps_its_presets_values(tmp_path):
    """`rnnlab presets lstm > f.json`, trimmed to the fields changed: the fields left out are lstm's, not default's."""
    from rnnlab.config import LSTM
    from rnnlab.runs import read_config

    f = tmp_path / "f.json"
    f.write_text('{"lstm": {"epochs": 3}}')
    assert read_config(f) == dataclasses.replace(LSTM, epochs=3)


def test_a_number_past_a_floats_range_in_a_config_is_one_line(tmp_path):
    """lr = 1111...1 (400 digits) in a --config file or a run's config.json: OverflowError's 51-line traceback (the
    finiteness check converted it to a float), in train, predict, evaluate, explain and resume alike."""
    from rnnlab.config import ConfigError, from_dict

    with pytest.raises(ConfigError, match=r"^lr must be a finite number, got 1111.*\(400 digits\)$"):
        from_dict({"lr": int("1" * 400)})
    assert from_dict({"lr": 3}).lr == 3  # an integer in range is still a number
    f = tmp_path / "c.toml"
    f.write_text(f"dropout = {'1' * 400}\n")
    p = subprocess.run(CMD + ["train", "--config", str(f), "--show-config"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1 and "dropout must be a finite number" in p.stderr, \
        p.stderr


def test_a_ray_that_fails_its_own_import_is_one_line(tiny_data, tmp_path):
    """A ray package whose import raises something other than ImportError (ray and protobuf's "Descriptors cannot be
    created directly" TypeError): a traceback, exit 1."""
    fake = tmp_path / "shadow" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise TypeError('Descriptors cannot be created directly.')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake.parent), str(SRC)])}
    p = subprocess.run(CMD + ["lab", "--quick", "--data", str(tiny_data), "--out", str(tmp_path / "lab"), "--ray",
                              "local"], capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 2 and p.stderr.strip().splitlines()[-1] == (
        "Error: --ray: the ray package fails to import (TypeError: Descriptors cannot be created directly.)"), p.stderr
    assert "Traceback" not in p.stderr and not (tmp_path / "lab" / "lab.json").exists()


def test_a_sigterm_while_the_workers_start_is_one_line(tiny_data, tmp_path):
    """SIGTERM between spawning a worker and sending it its start-up data: under the lab's one line, the worker's
    EOFError traceback (1 in 6 timed SIGTERMs at 2.3 s). The signal here arrives just after the first spawn."""
    code = f"""
import os, signal, sys, types
import multiprocessing.popen_spawn_posix as p
real = p.util.spawnv_passfds
def spawn(*a, **k):
    pid = real(*a, **k)
    if not getattr(p, "sent", False):
        p.sent = True
        os.kill(os.getpid(), signal.SIGTERM)
    return pid
util = types.ModuleType("util"); util.__dict__.update(p.util.__dict__); util.spawnv_passfds = spawn; p.util = util
sys.argv = ["rnnlab", "lab", "--quick", "--data", {str(tiny_data)!r}, "--out", {str(tmp_path / 'lab')!r}, "--jobs", "2"]
from rnnlab.__main__ import main
main()
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    lines = [x for x in p.stderr.splitlines() if x.startswith(("interrupted", "Traceback", "EOFError"))]
    assert p.returncode == 130 and len(lines) == 1 and lines[0].startswith("interrupted (SIGTERM)"), p.stderr
