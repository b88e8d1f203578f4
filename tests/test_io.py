"""Atomic writes: the file appears whole or not at all, with the mode a plain write would give."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from rnnlab.io import UMASK, StorageError, atomic_path, write_text


def test_written_file_has_the_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "x")
        (tmp_path / "b.txt").write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == stat.S_IMODE((tmp_path / "b.txt").stat().st_mode)


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "c.txt") as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.timeout(60)  # opens a FIFO in this process: a regression would block, not fail
def test_a_symlink_is_followed_and_a_special_file_refused(tmp_path):
    """Writing through a link replaces its target and keeps the link; a FIFO (or a device such as /dev/full) is
    refused in one line instead of being replaced by a regular file."""
    target = tmp_path / "real.html"
    target.write_text("old")
    link = tmp_path / "link.html"
    link.symlink_to(target)
    write_text(link, "new")
    assert link.is_symlink() and target.read_text() == "new"
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(StorageError, match="pipe: not a regular file"):
        write_text(fifo, "x")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.html", "pipe", "real.html"]


def test_a_file_size_limit_is_one_line_naming_the_file(tmp_path):
    """Past `ulimit -f` a write fails with EFBIG: StorageError naming the file, and nothing is left behind."""
    import subprocess
    import sys

    target = tmp_path / "big.html"
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))\n"
            "from rnnlab.io import StorageError, write_text\n"
            "try:\n    write_text(sys.argv[1], 'x' * 1000)\nexcept StorageError as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == f"cannot write {target}: file too large (a size limit: ulimit -f)", (r.stdout, r.stderr)
    assert list(tmp_path.iterdir()) == []


def test_errors_name_the_target_not_the_temporary_file(tmp_path, monkeypatch):
    """A folder that takes no new file, or a temporary file removed under us, is "cannot write TARGET: why"."""
    import tempfile

    def no_new_file(prefix, suffix, dir):
        raise FileNotFoundError(2, "No such file or directory", os.path.join(dir, prefix + "x1y2" + suffix))

    with monkeypatch.context() as m:
        m.setattr(tempfile, "mkstemp", no_new_file)
        with pytest.raises(StorageError, match=r"^cannot write .*a\.html: no such file or directory$"):
            write_text(tmp_path / "a.html", "x")
    with pytest.raises(StorageError, match=r"^cannot write .*b\.html: no such file or directory$"):
        with atomic_path(tmp_path / "b.html") as tmp:
            tmp.unlink()  # another process took it
            os.replace(tmp, tmp.with_name("elsewhere"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["r" * 255, "é" * 127, "r" * 241 + ".html"])
def test_a_name_the_file_system_takes_is_written_however_long(tmp_path, name):
    """The temporary name beside it (.NAME.XXXXXXXX.tmp then, .NAME.<host>-<pid>.XXXXXXXX.tmp now) added bytes:
    names of 242-255 bytes, which the file system takes, were refused as 'file name too long'."""
    assert len(os.fsencode(name)) <= 255
    write_text(tmp_path / name, "whole")
    assert [p.name for p in tmp_path.iterdir()] == [name] and (tmp_path / name).read_text() == "whole"


def test_a_run_folder_of_a_long_name_is_made(tmp_path, tiny_data):
    from rnnlab.config import preset
    from rnnlab.data import load_imdb
    from rnnlab.prepare import prepare
    from rnnlab.runs import RunDir

    cfg = preset("rnn")
    ds = load_imdb(tiny_data)
    run = RunDir.create(tmp_path / ("r" * 255), cfg, prepare(cfg, ds, log=lambda s: None).vocab, ds)
    assert (run.path / "config.json").is_file() and [p.name for p in tmp_path.iterdir()] == ["r" * 255]


def test_the_digest_is_of_the_bytes_write_text_writes(tmp_path):
    """A results.csv's digest reads its line ends as \\n and nothing else: a lone surrogate (a non-UTF-8 name) is
    the same text, a bare \\r added by hand is a change."""
    from rnnlab.io import text_file_sha256, text_sha256

    for text in ("a,b\nx\udcff,1\n", "a,b\n\"x\ry\",1\n"):
        write_text(tmp_path / "r.csv", text)
        assert text_file_sha256(tmp_path / "r.csv") == text_sha256(text)
    (tmp_path / "r.csv").write_bytes(b"ab\n")
    assert text_file_sha256(tmp_path / "r.csv") != text_sha256("a\rb\n")


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_write_removes_the_temporaries_a_killed_writer_left_beside_its_file_and_only_those(tmp_path):
    """kill -9 between a temporary's making and its rename left `.p.html.XXXXXXXX.tmp` (explain --html), a report's
    figure's, or a half-made run's hidden sibling (train), and no later run removed them (session 63's fault hunt).
    The next write of the same file removes those of dead processes of this machine; a live writer's, another
    machine's, another file's and a name of the user's own stay."""
    from rnnlab.io import HOST

    dead, live = _dead_pid(), os.getpid()
    left = {f".p.html.{HOST}-{dead}.ab12cd34.tmp": False, f".p.html.{HOST}-{live}.ab12cd34.tmp": True,
            f".p.html.{'0' * 6 if HOST != '0' * 6 else '1' * 6}-{dead}.ab12cd34.tmp": True,
            f".q.html.{HOST}-{dead}.ab12cd34.tmp": True, ".p.html.mine.tmp": True, ".p.html.ab12cd34.tmp": True}
    for name in left:
        (tmp_path / name).write_text("half")
    (tmp_path / f".p.html.{HOST}-{dead}.zz99yy88.tmp").mkdir()  # a directory of a dead writer: gone too
    (tmp_path / f".p.html.{HOST}-{dead}.zz99yy88.tmp" / "x").write_text("x")
    write_text(tmp_path / "p.html", "page")
    assert sorted(f.name for f in tmp_path.iterdir()) == sorted(["p.html", *(n for n, kept in left.items() if kept)])


def test_a_long_names_leftover_of_a_writer_whose_pid_had_other_digits_is_removed(tmp_path):
    from rnnlab.io import HOST, temp_prefix

    name = "r" * 250
    cut = temp_prefix(name).split(".")[1]
    (tmp_path / f".{cut}.{HOST}-9.ab12cd34.tmp").write_text("half")  # pid 9 was dead long before (init's is 1)
    write_text(tmp_path / name, "whole")
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_the_labs_out_keeps_a_users_file_that_looks_like_another_machines_temporary(tmp_path):
    """remove_leftovers(only=...), for a --out that may be the user's folder: this machine's temporaries of the lab's
    own files go, old ones too; a name of another host's form is the user's."""
    from rnnlab.io import HOST, remove_leftovers

    gone = [f".lab.json.{HOST}-{_dead_pid()}.ab12cd34.tmp", ".lab.json.ab12cd34.tmp"]
    kept = [".lab.json.cafe00-2024.backup01.tmp" if HOST != "cafe00" else ".lab.json.beef00-2024.backup01.tmp",
            ".notes.ab12cd34.tmp", "lab.json"]
    for n in gone + kept:
        (tmp_path / n).write_text("x")
    remove_leftovers(tmp_path, only=("lab.json", "report.html"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)


def test_a_run_killed_while_it_was_made_leaves_nothing_after_the_next_train_to_the_same_place(tmp_path, tiny_data):
    """train killed inside RunDir.create left `.run.XXXXXXXX.tmp/` (config, meta, vocab) beside the run for good."""
    from rnnlab.config import TrainConfig
    from rnnlab.data import load_imdb
    from rnnlab.io import HOST
    from rnnlab.prepare import prepare
    from rnnlab.runs import RunDir

    half = tmp_path / f".run.{HOST}-{_dead_pid()}.k1ll3d00.tmp"
    half.mkdir()
    (half / "config.json").write_text("{}")
    ds = load_imdb(tiny_data)
    cfg = TrainConfig(epochs=1)
    RunDir.create(tmp_path / "run", cfg, prepare(cfg, ds).vocab, ds)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["run"]


def test_the_temporary_prefix_keeps_all_the_bytes_it_can_and_every_writer_cuts_a_name_alike(monkeypatch):
    """A long name is cut by the most a `<host>-<pid>` can take, not by this pid's length: a dead writer whose pid had
    other digits cut it otherwise, and its leftover was never found (the diff review of session 63)."""
    import rnnlab.io as io_mod
    from rnnlab.io import HOST, OWNER_MAX, temp_prefix

    cut = [temp_prefix("a" * 300)]
    monkeypatch.setattr(io_mod.os, "getpid", lambda: 4_194_304_000)  # ten digits
    cut.append(temp_prefix("a" * 300))
    assert len(os.fsencode(cut[1])) + 8 + len(".tmp") == 255 and len(f"{HOST}-4194304000") == OWNER_MAX
    assert len({c.split(".")[1] for c in cut}) == 1  # the same NAME


def test_a_long_path_in_an_error_line_keeps_its_end():
    """An error line cut a long path at its end ("/tmp/pytest-of-root/.../w/no-...: no such run directory"): the name
    the user typed was the part cut (session 57, seen under pytest-xdist's longer temporary folders)."""
    from rnnlab.io import shorten

    path = "/a/long/" + "x" * 100 + "/no-such-run"
    cut = shorten(path)
    assert len(cut) == 80 and cut.startswith("/a/long/") and cut.endswith("x/no-such-run") and "..." in cut
    assert shorten("short") == "short" and shorten("y" * 80) == "y" * 80 and len(shorten("z" * 81)) == 80


def test_a_file_replaced_keeps_its_mode(tmp_path):
    """Every atomic write gave the new file 0o666 less the umask: `report --readme` turned a README of mode 600 into
    644 (a fault hunt of session 61). A file it replaces keeps its mode; a new one gets a new file's."""
    f = tmp_path / "README.md"
    f.write_text("old")
    f.chmod(0o600)
    write_text(f, "new")
    assert f.read_text() == "new" and stat.S_IMODE(f.stat().st_mode) == 0o600
    write_text(tmp_path / "fresh.txt", "x")
    assert stat.S_IMODE((tmp_path / "fresh.txt").stat().st_mode) == 0o666 & ~UMASK


def test_a_set_of_files_is_renamed_in_order_and_a_failure_names_its_own_file(tmp_path, monkeypatch):
    """write_files: the last file given (the one that vouches for the others) is renamed last; a full disk while one
    temporary is written names that file (the first file's context claimed every error as its own: "cannot write
    report.md" for the page that did not fit); a directory in the way is refused before anything is written (its
    rename failed at the end, after the others were replaced). The diff review of session 61."""
    from rnnlab.io import write_files

    files = [(tmp_path / "results.csv", "r"), (tmp_path / "fig.png", b"p"), (tmp_path / "verdict.json", "{}")]
    replaced, real_replace = [], os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (replaced.append(Path(b).name), real_replace(a, b)))
    write_files(files)
    assert replaced == ["results.csv", "fig.png", "verdict.json"]
    monkeypatch.setattr(os, "replace", real_replace)
    before = {f.name: f.stat().st_ino for f in tmp_path.iterdir()}
    real_bytes = Path.write_bytes

    def full(self, data):
        if ".fig.png." in self.name:
            raise OSError(28, "No space left on device")
        return real_bytes(self, data)

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(StorageError, match=r"cannot write .*/fig\.png: no space left on device$"):
        write_files(files)
    monkeypatch.setattr(Path, "write_bytes", real_bytes)
    (tmp_path / "table.csv").mkdir()
    with pytest.raises(StorageError, match=r"table\.csv: it is a directory"):
        write_files(files[:2] + [(tmp_path / "table.csv", "t")] + files[2:])
    assert {f.name: f.stat().st_ino for f in tmp_path.iterdir() if f.is_file()} == before
    assert not [f for f in tmp_path.iterdir() if f.name.endswith(".tmp")]


def test_an_interrupt_inside_a_tensor_load_is_an_interrupt_not_a_corrupt_file(tmp_path, monkeypatch):
    """Ctrl-C while safetensors loaded a run's weights: the interrupt raised in Python code that the library runs
    inside became its ValueError ("could not determine the shape of object type 'torch.storage.UntypedStorage'"), and
    predict said the file was corrupt or truncated (exit 2; session 64's timed Ctrl-Cs, 1 in 60). The signal is now
    noted during the load and raised as itself after it; the handlers are as they were."""
    import signal

    import safetensors.torch
    import torch

    import rnnlab.io as io_mod

    f = tmp_path / "w.safetensors"
    io_mod.save_tensors(f, {"w": torch.ones(3)})

    def swallowing(*args, **kw):  # what the library did: the interrupt raised inside it, reported as its own error
        try:
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(100_000):  # bytecode, where an interrupt not deferred is raised
                pass
        except KeyboardInterrupt:
            pass
        raise ValueError("could not determine the shape of object type 'torch.storage.UntypedStorage'")

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        monkeypatch.setattr(safetensors.torch, "load_file", swallowing)
        with pytest.raises(KeyboardInterrupt):
            io_mod.load_tensors(f)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        monkeypatch.undo()
        assert io_mod.load_tensors(f)["w"].tolist() == [1.0, 1.0, 1.0]  # and a load with no signal, as before
        with pytest.raises(io_mod.RunError, match="corrupt or truncated"):  # and a corrupt file, as before
            f.write_bytes(b"\x08" + b"\x00" * 7 + b"{bad json")
            io_mod.load_tensors(f)
    finally:
        signal.signal(signal.SIGINT, before)
