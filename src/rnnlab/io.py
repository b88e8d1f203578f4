"""Atomic file writes and the run directory's file formats (JSON, JSONL, safetensors).

Every artifact is written to a temporary name in the same directory and renamed into place,
so a killed process never leaves a truncated file that a later command trips on. A write the
file system refuses (disk full, read-only, no permission, a file in the way) raises
StorageError, one line naming the path and the fault, and leaves no temporary file behind.
Loading a run reads only JSON and safetensors: a shared run can never execute code.
"""
from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import io
import itertools
import json
import math
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator


class RunError(ValueError):
    """A run directory or one of its files is missing, malformed or inconsistent."""


class StorageError(RunError):
    """The file system refused a write: `cannot write PATH: no space left on device`."""


# faults of the environment, not of the program: each becomes one StorageError line
_FAULTS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
           errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
           errno.EPERM: "operation not permitted", errno.ENOTDIR: "a parent path is a file, not a directory",
           errno.EEXIST: "a file is in the way", errno.EISDIR: "it is a directory",
           errno.EFBIG: "file too large (a size limit: ulimit -f)"}


def fault(e: OSError) -> str:
    """What the file system refused, as a short lower-case phrase."""
    return _FAULTS.get(e.errno) or (e.strerror or str(e) or type(e).__name__).lower()


def first_line(e: BaseException) -> str:
    """An exception's message cut to its first line (200 characters), or its type's name when it has none."""
    s = str(e).strip().splitlines()
    return s[0][:200] if s else type(e).__name__


def pid_alive(pid: int) -> bool:
    """Whether a process `pid` runs on this machine (someone else's counts)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # OverflowError: a number no process can have
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def interrupt_in(e: BaseException) -> KeyboardInterrupt | None:
    """The interrupt (Ctrl-C, or a signal raised as one) behind an error, if any: a KeyboardInterrupt inside a compiled
    library's import reaches Python as "ImportError: initialization failed", its cause the interrupt."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


@contextlib.contextmanager
def exclusive(folder: Path, busy: str) -> Iterator[None]:
    """Hold `folder` for this process: an advisory lock on it, released however the process ends. RunError
    "FOLDER: BUSY" at once if another process holds it."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunError(f"{folder}: {busy}") from None
        yield
    finally:
        os.close(fd)


def held_elsewhere(folder: Path) -> bool:
    """Whether another process holds `folder` with `exclusive` now. A shared probe: two probes never see each
    other, and `exclusive` sees one only for its instant. False where there is no lock (Windows) or no folder."""
    try:
        import fcntl
    except ImportError:
        return False
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    except OSError:  # a file system without flock
        return False
    finally:
        os.close(fd)


def _pid_namespace() -> str:
    """Linux's PID namespace of this process (containers that share a host name have their own pids), else ""."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return ""


HOST = hashlib.sha256(f"{socket.gethostname()}|{_pid_namespace()}".encode("utf-8", "surrogateescape")).hexdigest()[:6]
# this machine and PID namespace, in temporary names: a process of another one sharing the folder is not ours to call dead
OWNER_MAX = 6 + 1 + 10  # `<host>-<pid>`, at most: NAME is cut by the most it can be, so every writer cuts it alike


def temp_prefix(name: str) -> str:
    """The prefix of a temporary name beside `name`: `.NAME.<host>-<pid>.`, to which mkstemp and mkdtemp add 8 random
    characters and `.tmp`; NAME cut so the whole fits the 255 bytes a file name may have (a name the file system takes
    must not fail for its temporary's sake). The host and pid tell a writer killed mid-write (`remove_dead_temps`)."""
    return "." + os.fsdecode(os.fsencode(name)[:255 - 15 - OWNER_MAX]) + f".{HOST}-{os.getpid()}."


_RANDOM = r"[a-z0-9_]{8}\.tmp"  # what mkstemp and mkdtemp put after temp_prefix's prefix
RANDOM_TMP = rf"(?:[0-9a-f]{{6}}-[0-9]+\.)?{_RANDOM}"  # what follows `.NAME.` (older versions wrote no host-pid)
_DEAD_TMP = re.compile(rf"\.(?P<name>.+)\.(?P<host>[0-9a-f]{{6}})-(?P<pid>[0-9]+)\.{_RANDOM}", re.DOTALL)


def remove_dead_temps(path: Path) -> None:
    """Delete the temporaries of `path` that a process of this machine, now gone, left beside it (killed between
    making one and renaming it: SIGKILL, a power cut). A live writer's, or another machine's, are left alone."""
    name = temp_prefix(path.name)[1:].rsplit(".", 2)[0]  # NAME as cut in the temporaries
    with contextlib.suppress(OSError):
        for f in path.parent.glob(f".{glob.escape(name)}.*.tmp"):
            m = _DEAD_TMP.fullmatch(f.name)
            if m and m["name"] == name and m["host"] == HOST and not pid_alive(int(m["pid"])):
                with contextlib.suppress(OSError):
                    shutil.rmtree(f) if f.is_dir() and not f.is_symlink() else f.unlink()


def remove_leftovers(*folders: Path, only: tuple[str, ...] | None = None) -> None:
    """Delete the temporary files of writes cut short by a kill in `folders` (never read; as large as a model):
    names `temp_prefix` made. With `only`, just those of the files named: a folder of the user's own, as --out may
    be, where `.notes.tmp` or `.draft.20240101.tmp` is theirs. Only in folders this process holds (exclusive):
    another process's writes in progress look the same."""
    if only is None:
        ours = re.compile(rf"\..+\.{RANDOM_TMP}", re.DOTALL)
    else:  # a folder of the user's own: this machine's names only (`.notes.cafe00-2024.backup01.tmp` may be theirs)
        names = "|".join(re.escape(f".{n}.") for n in only)
        ours = re.compile(rf"(?:{names})(?:{HOST}-[0-9]+\.)?{_RANDOM}")
    for folder in folders:
        for f in folder.glob(".*.tmp"):
            if not ours.fullmatch(f.name):
                continue
            with contextlib.suppress(OSError):
                shutil.rmtree(f) if f.is_dir() and not f.is_symlink() else f.unlink()


def home() -> Path | None:
    """The user's home folder; None where there is none to find (an empty HOME, which Python reads as "/"; HOME
    unset and no passwd entry) or HOME names a folder that does not exist (rnnlab does not make it)."""
    if os.environ.get("HOME") == "":  # `HOME= rnnlab ...`
        return None
    try:
        folder = Path.home()
    except RuntimeError:  # HOME unset, and the user has no passwd entry (a container's made-up uid)
        return None
    try:
        os.stat(folder)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:  # there, but not to be looked at (a folder above it closed): a write there says why
        pass
    return folder


def nearest_existing(path: str | os.PathLike) -> Path:
    """`path`, or the nearest of its parents that exists (or is a link)."""
    p = Path(path)
    while not p.exists() and not p.is_symlink() and p != p.parent:
        p = p.parent
    return p


def missing_folders(folder: Path) -> list[Path]:
    """`folder` and those of its parents that do not exist yet, innermost first: what a mkdir(parents=True) makes."""
    return list(itertools.takewhile(lambda d: not os.path.lexists(d), (folder, *folder.parents)))


def remove_empty(folders: list[Path]) -> None:
    """Remove each folder (innermost first) where it is empty: folders made for an output that was taken back."""
    for d in folders:
        with contextlib.suppress(OSError):
            d.rmdir()


def is_run_dir(arg: str) -> bool:
    """A directory holding a run's config.json (a folder that happens to be named like a word is not; nor is a
    text too long for a file name, or one holding a NUL)."""
    try:
        return (Path(arg) / "config.json").is_file()
    except (OSError, ValueError):
        return False


def file_in_the_way(path: str | os.PathLike) -> Path | None:
    """The nearest of `path` and its parents that exists, if it is not a directory: a file where a folder
    must be (None when that nearest one is a directory)."""
    p = nearest_existing(path)
    return p if p.exists() and not p.is_dir() else None


def in_the_way(path: str | os.PathLike) -> str:
    """"" where a folder can be made at `path` as far as its nearest existing part goes; else why not: a file, or a
    symbolic link to nothing (or a loop), where a folder must be."""
    p = nearest_existing(path)
    if p.is_symlink() and not p.exists():
        return f"{p} is a symbolic link to nothing (or a loop)"
    return f"{p} is a file, not a folder" if file_in_the_way(p) else ""


RUN_FILES = frozenset({"config.json", "meta.json", "vocab.json", "metrics.jsonl", "learning_curve.png",
                       "model.safetensors", "summary.json", "checkpoint.json"})  # and ckpt-<epoch>/
DATA_FILES = ("train.parquet", "test.parquet", "aclImdb")
JOB_KEY = re.compile(r"[0-9a-f]{20}")  # a job's name in a job store, STORE/<key>.json and STORE/<key>/ (rnnlab.jobs)


def owner(path: str | os.PathLike, runs_only: bool = False) -> str:
    """"" where an output file may be written at `path`; else whose file it is: one of a training run's own files, a
    data set's, or an existing file of a lab's (or of a shortfall's or comparison's results), or a job store's record,
    that a later command reads. Writing there would break the next `predict`, `train --resume`, `evaluate` or `report`, or
    make the next lab train a job again. `runs_only`: a training run's own files only (a new run's folder: one inside a
    run's checkpoint folder goes with it; an empty folder of a lab's is a fine place for one)."""
    p = Path(os.path.abspath(path))
    with contextlib.suppress(OSError, RuntimeError):  # RuntimeError: a link loop (3.11's resolve); named elsewhere
        p = Path(path).resolve()
    for folder in reversed(p.parents):  # the outermost owner: a lab, rather than its part or one of its runs
        rel = p.relative_to(folder).parts
        try:
            if (folder / "config.json").is_file() and (folder / "vocab.json").is_file() and (
                    rel[0] in RUN_FILES or rel[0].startswith("ckpt-")):
                return f"one of the training run {folder}'s own files"
            if runs_only:
                continue
            if rel[0] in DATA_FILES and (folder / rel[0]).exists():
                return f"a file of the data in {folder}"
            if (folder / "lab.json").is_file() and (rel == ("lab.json",) or (len(rel) > 1 and p.exists())):
                return f"a file of the lab {folder}"
            if len(rel) == 1 and p.exists() and (folder / "verdict.json").is_file() and (folder / "results.csv").is_file():
                return f"a file of the results in {folder}"
            if (len(rel) == 1 and p.is_file() and folder.name == "jobs" and rel[0].endswith(".json")
                    and JOB_KEY.fullmatch(rel[0].removesuffix(".json"))):  # (its kept run's files: the first rule)
                return f"a finished job's record in the job store {folder}"
        except OSError:
            continue
    return ""


_CONTROL = ({c: f"\\x{c:02x}" for c in (*range(32), *range(127, 160))} | {10: "\\n", 13: "\\r", 9: "\\t"}
            | {c: f"\\u{c:04x}" for c in (0x2028, 0x2029, 0xFFFE, 0xFFFF)})  # C0, DEL, C1 (CSI, NEL), line/paragraph
# separators, and the two noncharacters XML refuses (an SVG figure naming a run with one was no XML a browser opens)


def one_line(s: str) -> str:
    """`s` with its control characters escaped (a newline as \\n): a path holding one stays on its error's line,
    and a terminal's escape sequences in a name are shown, not obeyed."""
    return s.translate(_CONTROL)


def no_such(path, what: str) -> str:
    """"PATH: no such WHAT", or, where PATH is a symbolic link whose target is not there (a loop, or gone), that."""
    name = shorten(str(path))
    try:
        dangling = os.path.islink(path) and not os.path.exists(path)
    except (OSError, ValueError):  # a name too long for a path, or with a NUL byte
        dangling = False
    return f"{name}: a symbolic link to nowhere (a loop, or its target is gone)" if dangling else f"{name}: no such {what}"


def shorten(s: str, n: int = 80) -> str:
    """`s` cut to n characters for an error line (a review taken for a path can be thousands), by its middle: a long
    path keeps its start and the names at its end."""
    if len(s) <= n:
        return s
    head = (n - 3) // 2
    return s[:head] + "..." + s[len(s) - (n - 3 - head):]


def _raise_if_refused(path: Path, e: BaseException, tmp: str | None = None) -> None:
    """Raise StorageError if `e` is the file system refusing to write `path` (or its temporary file `tmp`),
    naming `path`: the temporary name means nothing to the user."""
    if isinstance(e, OSError) and (e.errno in _FAULTS or (tmp is not None and e.filename == tmp)):
        raise StorageError(f"cannot write {path}: {fault(e)}") from None


UMASK = os.umask(0)
os.umask(UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` only on success.

    A symbolic link is followed (its target is replaced, the link kept); a device, FIFO or socket is refused
    (a rename would replace it with a regular file)."""
    path = Path(path)
    if path.is_symlink():
        try:
            path = path.resolve()
        except RuntimeError:  # a loop (OSError ELOOP from Python 3.13)
            raise StorageError(f"cannot write {path}: a symbolic link loop") from None
        except OSError as e:
            raise StorageError(f"cannot write {path}: {fault(e)}") from None
    if path.is_dir():  # the rename would fail at the end (in a set of files, after the others were replaced)
        raise StorageError(f"cannot write {path}: it is a directory")
    if path.exists() and not path.is_file():
        raise StorageError(f"cannot write {path}: not a regular file")
    remove_dead_temps(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=".tmp", dir=path.parent)
    except OSError as e:  # e.g. a folder that takes no new file (/proc): ENOENT on the temporary name
        raise StorageError(f"cannot write {path}: {fault(e)}") from None
    os.close(fd)
    try:
        yield Path(tmp)
        mode = 0o666 & ~UMASK  # mkstemp makes it private: a new file's mode, or that of the file it replaces
        with contextlib.suppress(OSError):
            if path.is_file():
                mode = path.stat().st_mode & 0o777  # (not its setuid or sticky bits)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):  # gone already, or the file system refuses even this
            os.unlink(tmp)
        _raise_if_refused(path, e, tmp)
        raise


HANGUP = (signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ()  # a closed terminal or ssh session (not on Windows):
# every command stops on it as on SIGTERM
STOPS = (signal.SIGINT, signal.SIGTERM, *HANGUP)  # the signals that stop a command (exit 130 and one line)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    write_files([(path, data)])


def write_text(path: str | os.PathLike, text: str) -> None:
    """UTF-8; a lone surrogate (a byte of a file name that is not UTF-8, as Python keeps it) is written as
    its escape, \\udcff, as in JSON."""
    write_files([(path, text)])


def write_files(files: list[tuple[str | os.PathLike, str | bytes]]) -> None:
    """Write a set of files that are read together: each to a temporary file first, then all renamed into place in
    the order given (the one that vouches for the others last). A full disk or an interrupt while they are written
    leaves every file as it was; only a stop, or a failed rename, between the renames can mix old and new (a
    directory in the way is refused before anything is written)."""
    with contextlib.ExitStack() as renames:
        temps = [(path, renames.enter_context(atomic_path(path)), data) for path, data in reversed(files)]  # LIFO:
        for path, tmp, data in temps:  # the first given is renamed first
            try:
                if isinstance(data, bytes):
                    tmp.write_bytes(data)
                else:
                    tmp.write_text(data, encoding="utf-8", errors="backslashreplace")  # write_text's promise
            except OSError as e:  # named here: the set's other files would each claim the error as theirs
                _raise_if_refused(Path(path), e, str(tmp))
                raise


def text_sha256(text: str) -> str:
    """The SHA-256 of `text` as write_text writes it: what a record keeps of the rows it was judged on, so that
    `rnnlab report` can tell rows changed since."""
    return hashlib.sha256(text.encode("utf-8", "backslashreplace")).hexdigest()


def text_file_sha256(path: str | os.PathLike) -> str:
    """text_sha256 of a file write_text wrote, its line ends read as \\n: a checkout that made them \\r\\n (git's
    autocrlf on Windows) holds the same text."""
    return hashlib.sha256(Path(path).read_bytes().replace(b"\r\n", b"\n")).hexdigest()


PIECE = 1 << 16  # characters per write of echo_whole: about a pipe's buffer


def echo_whole(text: str, nl: bool = True) -> None:
    """click.echo of a long output in pieces, each flushed. One write of megabytes into a pipe whose reader stops
    (`| head`) returns short without an error, so the command exited 0 with most of its output lost; in pieces,
    the next write after the reader is gone raises BrokenPipeError, which the CLI turns into SIGPIPE's exit code."""
    import click

    text += "\n" if nl else ""
    for i in range(0, len(text), PIECE):
        click.echo(text[i:i + PIECE], nl=False)


class WholeWrites(io.RawIOBase):
    """A file descriptor to which every write goes whole or raises: a file on a nearly full disk takes part of a
    write and returns short, and Python's own sys.stdout then drops the rest without an error (exit 0 with the
    output cut); here the rest is written again, and the disk's ENOSPC raised."""

    def __init__(self, fd: int):
        super().__init__()
        self._fd = fd

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return os.isatty(self._fd)

    def write(self, b) -> int:
        view, done = memoryview(b).cast("B"), 0
        while done < len(view):
            done += os.write(self._fd, view[done:])
        return done


def whole_stdout() -> None:
    """sys.stdout over `WholeWrites`, with its encoding and buffering kept, where it is a file descriptor."""
    out = sys.stdout
    if not isinstance(out, io.TextIOWrapper):
        return  # a notebook's stream, a test's capture: theirs
    unbuffered = isinstance(out.buffer, io.FileIO)  # python -u, PYTHONUNBUFFERED
    if not unbuffered and not isinstance(getattr(out.buffer, "raw", None), io.FileIO):
        return
    out.flush()
    raw = WholeWrites(out.fileno())
    sys.stdout = io.TextIOWrapper(raw if unbuffered else io.BufferedWriter(raw), encoding=out.encoding,
                                  errors=out.errors, line_buffering=out.line_buffering, write_through=unbuffered)


def printable(text: str) -> str:
    """`text` with lone surrogates as their escapes (\\udcff): what matplotlib and UTF-8 files can take."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def jsonable(o: Any) -> Any:
    """JSON has no NaN/inf: write them as null."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [jsonable(v) for v in o]
    return o


def json_text(obj: Any) -> str:
    return json.dumps(jsonable(obj), indent=2) + "\n"


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json_text(obj))


def write_jsonl(path: str | os.PathLike, rows: list[dict]) -> None:
    write_text(path, "".join(json.dumps(jsonable(r)) + "\n" for r in rows))


def require_file(path: Path, error: type[Exception] = RunError) -> None:
    """`error` unless `path` is a regular file: a FIFO would block a read for ever, /dev/zero fill the memory."""
    if not path.is_file():
        raise error(f"{path}: {'a directory, not a file' if path.is_dir() else 'not a regular file' if path.exists() else 'missing'}")


def _one_value_per_key(pairs: list) -> dict:
    """A JSON object, refused when it names a key twice (json keeps the last without a word; TOML refuses it)."""
    d = {}
    for k, v in pairs:
        if k in d:
            raise ValueError(f"duplicate key {shorten(repr(k))}")
        d[k] = v
    return d


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    require_file(path)
    try:  # -sig: a byte-order mark (Windows editors) is skipped
        return json.loads(path.read_text(encoding="utf-8-sig"), object_pairs_hook=_one_value_per_key)
    except ValueError as e:  # bad JSON, bad UTF-8, an integer of over 4,300 digits
        raise RunError(f"{path}: malformed JSON ({e})") from None
    except RecursionError:
        raise RunError(f"{path}: malformed JSON (nested too deeply)") from None


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: missing")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise RunError(f"{path}: not UTF-8 ({e})") from None
    rows = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line, object_pairs_hook=_one_value_per_key))
        except ValueError as e:  # bad JSON, an integer of over 4,300 digits
            raise RunError(f"{path}: line {i}: malformed JSON ({e})") from None
        except RecursionError:
            raise RunError(f"{path}: line {i}: malformed JSON (nested too deeply)") from None
    return rows


def save_tensors(path: str | os.PathLike, tensors: dict, metadata: dict | None = None) -> None:
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    write_bytes(path, save(tensors, metadata=metadata))  # bytes, so a full disk is Python's OSError, not Rust's


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP noted, not raised, while the block runs, then handled as they would have been: for a
    compiled library that runs Python code inside and turns an interrupt there into an error of its own (safetensors'
    load said "could not determine the shape of object type 'torch.storage.UntypedStorage'", which read as a corrupt
    file). Outside the main thread (where no Python handler runs) the block runs as it is."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    kept = {s: signal.getsignal(s) for s in STOPS}
    kept = {s: h for s, h in kept.items() if h not in (signal.SIG_IGN, None)}  # ignored, or not set from Python
    for s in kept:
        signal.signal(s, lambda signum, frame: got.append(signum))
    try:
        yield
    finally:
        for s, h in kept.items():
            signal.signal(s, h)
        if got:  # the first, as its own handler takes it: KeyboardInterrupt, or the default action
            handler = kept[got[0]]
            if callable(handler):
                handler(got[0], None)
            else:
                signal.raise_signal(got[0])


def load_tensors(path: str | os.PathLike) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load, load_file

    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: missing")
    try:  # safetensors says "No such file or directory" for a file it may not read: not a damaged file
        open(path, "rb").close()
    except OSError as e:
        raise RunError(f"cannot read {path}: {fault(e)}") from None
    try:
        with signals_deferred():  # an interrupt inside the load was "corrupt or truncated" (below)
            if not is_utf8(str(path)):  # safetensors opens UTF-8 names only
                return load(path.read_bytes())
            return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise RunError(f"{path}: corrupt or truncated safetensors file ({str(e).splitlines()[0][:160]})") from None


def is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:  # bytes that are not UTF-8, kept by Python as lone surrogates
        return False
