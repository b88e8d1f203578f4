"""The run directory: what a training run leaves, and loading it back safely.

    runs/seed/
      config.json          the TrainConfig (rebuilds the model)
      meta.json            command line, data source, versions, hardware
      vocab.json           <pad>, <unk>, then the words; tokenizer settings
      metrics.jsonl        one JSON object per epoch
      learning_curve.png
      model.safetensors    the selected epoch's state dict (never a pickle)
      summary.json         the final line `rnnlab train` prints
      checkpoint.json      -> ckpt-<epoch>/ {last,best,optimizer,rng}.safetensors, for --resume

Every file is written atomically; `checkpoint.json` is switched last, so a run killed at any
point resumes from its last completed epoch. Loading reads only JSON and safetensors.
"""
from __future__ import annotations

import contextlib
import errno
import itertools
import json
import math
import os
import platform
import re
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from . import __version__
from .config import PRESETS, ConfigError, TrainConfig, from_dict
from .io import (RUN_FILES, UMASK, RunError, StorageError, exclusive, fault, held_elsewhere, in_the_way, owner,
                 load_tensors, missing_folders, no_such, read_json, read_jsonl, remove_dead_temps, remove_empty,
                 remove_leftovers, require_file, save_tensors, shorten, temp_prefix, write_json, write_jsonl)
from .jobs import usable_cpus
from .text import Vocab


def data_record(ds) -> dict:
    """Where a run's data came from: the absolute path (or the hub name) and a fingerprint of its rows, and of
    each split's."""
    src = ds.source
    local = not src.startswith("hub:") and " (subset" not in src
    return {"source": src, "path": str(Path(src).resolve()) if local else None, "fingerprint": ds.fingerprint(),
            "splits": {"train": ds.train.fingerprint(), "test": ds.test.fingerprint()}}  # one split checked alone


def read_config(path: str | os.PathLike) -> TrainConfig:
    """A TrainConfig from a TOML or JSON file of its fields (a run's config.json works as it is, and so does what
    `rnnlab presets NAME` prints)."""
    path = Path(path)
    if path.suffix.lower() != ".toml":
        try:
            d = read_json(path)
        except RunError as e:
            if path.suffix.lower() == ".json" or "malformed JSON" not in str(e):
                raise
            raise RunError(f"{path}: not JSON, and not named .toml: a config is a TOML (.toml) or JSON file") from None
    else:
        import tomllib

        require_file(path)
        try:
            d = tomllib.loads(path.read_text(encoding="utf-8-sig"))
        except OSError as e:
            raise RunError(f"{path}: {fault(e)}") from None
        except ValueError as e:  # bad TOML, bad UTF-8, an integer of over 4,300 digits
            raise RunError(f"{path}: not valid TOML ({e})") from None
        except RecursionError:
            raise RunError(f"{path}: not valid TOML (nested too deeply)") from None
    if not isinstance(d, dict):
        raise RunError(f"{path}: needs an object/table of config fields")
    if len(d) == 1 and (name := next(iter(d))) in PRESETS and isinstance(d[name], dict):
        # `rnnlab presets NAME > FILE`'s {"NAME": {fields}}: keys an edited copy leaves out are NAME's, not default's
        d = {**PRESETS[name].to_dict(), **d[name]}
    try:
        return from_dict(d)
    except (ConfigError, TypeError) as e:
        raise RunError(f"{path}: {e}") from None


def _meta_data(run: "RunDir"):
    """meta.json's record of the run's data: a dict (or a path string from older runs); RunError if it is neither."""
    f = run.path / "meta.json"
    meta = read_json(f)
    data = meta.get("data") if isinstance(meta, dict) else None
    if not isinstance(data, (dict, str)):
        raise RunError(f"{f}: not what rnnlab writes (no data record); pass --data")
    return data


def run_data_path(run: "RunDir") -> str | None:
    """The data a run was trained on, to resume or evaluate it: its absolute path (None: the hub)."""
    f = run.path / "meta.json"
    if not f.exists():  # e.g. a lab job's kept model: the lab records the data, not the job
        raise RunError(f"{run.path}: records no data it was trained on (no meta.json); pass --data")
    data = _meta_data(run)
    path = data if isinstance(data, str) else data.get("path")
    if path is None:  # the hub, or data it cannot reload by itself (a subset made in Python)
        source = data.get("source") if isinstance(data, dict) else None
        if isinstance(source, str) and source.startswith("hub:"):
            return None
        raise RunError(f"{run.path}: trained on {shorten(str(source))}, which it cannot load again by itself; "
                       "pass --data")
    if not isinstance(path, str) or not path.strip():
        raise RunError(f"{f}: data.path must be a path, got {path!r}")
    if not Path(path).exists():
        raise RunError(f"{run.path}: its data {path} is gone; pass --data")
    return path


def own_split(run: "RunDir", name: str = "test"):
    """Split NAME of the data `run` was trained on, read again from where meta.json says: RunError where those
    rows are no longer the ones it was trained on (by the fingerprint it recorded of that split, or, in runs
    before it did, of both; runs older still record none), as `train --resume` refuses them: a number on other
    data is not the run's own test."""
    from .data import DataError, load_imdb, load_split

    path, data = run_data_path(run), _meta_data(run)
    splits = data.get("splits") if isinstance(data, dict) else None
    if splits is not None:
        want = splits.get(name) if isinstance(splits, dict) else None
        if not (isinstance(want, str) and re.fullmatch(r"[0-9a-f]{64}", want)):
            raise RunError(f"{run.path / 'meta.json'}: data.splits.{name} must be a sha256, got "
                           f"{shorten(repr(want))}")
        split = load_split(path, name)
        if split.fingerprint() != want:
            raise RunError(_not_its_own(run, path, split.source, data))
        return split
    want = run_fingerprint(run)
    if want is None:
        return load_split(path, name)
    try:
        ds = load_imdb(path)
    except DataError as e:
        raise RunError(f"{run.path}: cannot check its data is still what it was trained on ({e}); give --data to "
                       "read it as it is now") from None
    if ds.fingerprint() != want:
        raise RunError(_not_its_own(run, path, ds.source, data))
    return ds.test if name == "test" else ds.train


def _not_its_own(run: "RunDir", path: str | None, read: str, data) -> str:
    """Why reviews read from the run's own data are refused: the data at its recorded path changed, or (a run
    trained on the hub) another copy was read ($RNNLAB_DATA's)."""
    if path is not None:
        return (f"{run.path}: its data {shorten(path)} has changed since it was trained (its rows differ from the "
                "fingerprint in meta.json); give --data to read it as it is now")
    trained = data.get("source") if isinstance(data, dict) else data
    return (f"{run.path}: {shorten(read)} is not the data it was trained on ({shorten(str(trained))}): its rows "
            "differ from the fingerprint in meta.json; give --data to read it anyway")


def run_fingerprint(run: "RunDir") -> str | None:
    """The fingerprint of the rows a run was trained on (meta.json), None where it records none (older runs)."""
    data = _meta_data(run)
    fp = data.get("fingerprint") if isinstance(data, dict) else None
    if fp is not None and not (isinstance(fp, str) and re.fullmatch(r"[0-9a-f]{64}", fp)):
        raise RunError(f"{run.path / 'meta.json'}: data.fingerprint must be a sha256, got {shorten(repr(fp))}")
    return fp


def environment() -> dict:
    """Hardware and versions written next to every number."""
    usable = usable_cpus()
    env = {"python": platform.python_version(), "torch": torch.__version__, "rnnlab": __version__, **_git(),
           "platform": platform.platform(), **_cpu(), "cpu_count": os.cpu_count(),
           **({"usable_cpus": usable} if usable != os.cpu_count() else {}),  # taskset, a cpuset, a CPU quota
           "cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run the block with `n` torch threads (None: unchanged), then restore the setting."""
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _git() -> dict:
    """The commit of the rnnlab checkout (and whether it had uncommitted changes); {} when not run from one: an
    installed rnnlab inside another project's repository (a user's .venv) is not that project's commit."""
    import subprocess

    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(here), "rev-parse", "--show-toplevel", "HEAD"], capture_output=True,
                                text=True, errors="surrogateescape", timeout=5)  # a checkout's name not UTF-8
        top, _, head = commit.stdout.strip().partition("\n")
        if commit.returncode or Path(top).resolve() / "src" / "rnnlab" != here:
            return {}
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, errors="surrogateescape", timeout=5)
        return {"git_commit": head.strip(), "git_dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {}


def _cpu() -> dict:
    """The CPU's name and, on Linux, its family and model numbers: VMs often name only the vendor ("AMD EPYC")."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    first = {}  # the first processor's fields
    for key, _, value in (line.partition(":") for line in lines):
        first.setdefault(key.strip(), value.strip())
    return {"processor": first.get("model name") or platform.processor() or "unknown",
            **{key: first[name] for name, key in (("cpu family", "cpu_family"), ("model", "cpu_model")) if name in first}}


def _names(run_dir: str, folder: Path) -> bool:
    """Whether `run_dir`, as train recorded it (relative to the folder it ran in, which is not recorded), names
    `folder`: from here, or by its last parts (a run made as runs/x and resumed from another folder)."""
    where, p = folder.resolve(), Path(run_dir)
    if p.resolve() == where:
        return True
    parts = tuple(x for x in p.parts if x not in (".", ".."))
    return not p.is_absolute() and bool(parts) and where.parts[-len(parts):] == parts


def check_new_run(path: Path, fix: str = "choose another --out") -> None:
    """RunError unless a new run can be made at `path`: it is made whole in a hidden sibling, then renamed onto
    `path`, which must be nothing yet or an empty folder that a rename can replace. `fix`: what the line asks for."""
    where = path.resolve()
    if where == Path.cwd().resolve() or where == Path(where.anchor):
        raise RunError(f"{path}: the current or root folder; give the run a new folder's name")
    if path.is_symlink() or (path.is_dir() and os.path.ismount(path)):
        raise RunError(f"{path}: {'a symbolic link' if path.is_symlink() else 'a mount point'}, which a finished run "
                       f"cannot be renamed onto; give a new folder inside it (e.g. {path / 'run'})")
    if path.exists() and not path.is_dir():
        raise RunError(f"{path}: exists and is a file{'' if path.is_file() else ' (a device, a FIFO)'}; {fix}")
    if blocked := in_the_way(path.parent):  # now, not after the data is read
        raise RunError(f"{path}: {blocked}; {fix}")
    if whose := owner(path, runs_only=True):  # in another run's checkpoint folder: its next epoch or resume deletes it
        raise RunError(f"{path}: {whose}; {fix}")
    if path.is_dir() and any(path.iterdir()):
        raise RunError(f"{path}: exists and is not empty; {fix} (or --resume it)")


def unused(path: Path) -> Path:
    """`path`, or where it is taken the first of PATH-2, PATH-3, ... that is not: a default run name (a time to
    the second) that another run started in the same second took."""
    for k in itertools.count(1):
        p = path if k == 1 else path.with_name(f"{path.name}-{k}")
        if not p.exists() and not p.is_symlink():
            return p


class RunDir:
    """A run directory being written (training) or read (evaluate, predict, resume)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._made: list[Path] = []  # folders `create` made for it, innermost first: taken back with it

    # --- creating --------------------------------------------------------------------------
    @classmethod
    def create(cls, path, cfg: TrainConfig, vocab: Vocab, ds, default_name: bool = False) -> "RunDir":
        """A new run directory for training `cfg` on the Dataset `ds` (its absolute path and fingerprint are kept).
        `default_name`: the user did not choose `path`, so where another run takes it first, the next `unused`
        name is taken instead of failing (the run's path is then `run.path`)."""
        base = Path(path)
        path = unused(base) if default_name else base
        check_new_run(path)
        tmp = None
        made = missing_folders(path.parent)
        try:  # made whole in a hidden sibling, then renamed into place: a kill at any moment leaves no half run
            path.parent.mkdir(parents=True, exist_ok=True)
            remove_dead_temps(path)  # a run killed here before: its hidden half-made sibling
            tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(path.name), suffix=".tmp", dir=path.parent))
            os.chmod(tmp, 0o777 & ~UMASK)  # mkdtemp makes it private; a run directory is made as mkdir would
            write_json(tmp / "vocab.json", vocab.to_json())
            write_json(tmp / "meta.json", {"command": sys.argv, "data": data_record(ds), "environment": environment()})
            write_json(tmp / "config.json", cfg.to_dict())
            while True:
                try:
                    os.rename(tmp, path)  # onto nothing, or onto the empty directory checked above
                    break
                except OSError as e:  # taken since: by a run started in the same second, for a default name
                    if not (default_name and e.errno in (errno.ENOTEMPTY, errno.EEXIST)):
                        raise
                    path = unused(base)
        except BaseException as e:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            remove_empty(made)  # the folders made for it, as they were: none
            if isinstance(e, StorageError) and tmp is not None:  # name the run's path, not the hidden one
                raise StorageError(str(e).replace(str(tmp), str(path))) from None
            if isinstance(e, OSError):  # mkdir or rename refused (a refused write is already a StorageError)
                raise StorageError(f"cannot write {path}: {fault(e)}") from None
            raise
        run = cls(path)
        run._made = made
        return run

    def save_epoch(self, model, opt, metrics: list[dict], best) -> None:
        """Checkpoint one finished epoch; `best` (train.BestWeights) holds the selected weights so far.

        The checkpoint directory is complete before checkpoint.json points to it, so a run killed or
        out of space at any point resumes from its last completed epoch.
        """
        epoch = metrics[-1]["epoch"]
        ck = self.path / f"ckpt-{epoch}"
        shutil.rmtree(ck, ignore_errors=True)  # a partial one left by an earlier failure
        ck.mkdir()
        try:
            save_tensors(ck / "last.safetensors", model.state_dict(), {"epoch": str(epoch)})
            save_tensors(ck / "best.safetensors", best.state, {"epoch": str(best.epoch)})
            save_tensors(ck / "optimizer.safetensors", _flatten_optimizer(opt))
            rng = {"torch": torch.get_rng_state()}
            if torch.cuda.is_available():
                rng.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
            save_tensors(ck / "rng.safetensors", rng)
        except BaseException:
            shutil.rmtree(ck, ignore_errors=True)
            raise
        prev = self._checkpoint()
        (self.path / "summary.json").unlink(missing_ok=True)  # it describes a finished run: this one trains on
        write_jsonl(self.path / "metrics.jsonl", metrics)
        save_tensors(self.path / "model.safetensors", best.state, {"epoch": str(best.epoch)})
        write_json(self.path / "checkpoint.json", {"epoch": epoch, "dir": ck.name, "best_epoch": best.epoch,
                                                   "best_step": best.step, "best_acc": best.acc})
        if prev and prev["dir"] != ck.name:
            shutil.rmtree(self.path / prev["dir"], ignore_errors=True)
        from .plots import learning_curve

        learning_curve(metrics, self.path / "learning_curve.png")

    def remove_leftovers(self) -> None:
        """Before a resume: delete what a run killed mid-write left (temporary files, as large as the model, and a
        checkpoint folder checkpoint.json no longer names) and draw the learning curve again (a kill can land
        between the checkpoint and the figure)."""
        remove_leftovers(self.path)
        recorded = self._checkpoint()
        if recorded is None or not (self.path / recorded["dir"]).is_dir():
            return  # no record, a lost one, or one naming no folder: nothing is known to be stale (the others may be
            # the good checkpoints: kept), and restore says what is wrong
        for old in self.path.glob("ckpt-*"):
            if old.name != recorded["dir"] and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
        from .plots import learning_curve

        rows = [r for r in self._metric_rows() if r["epoch"] <= recorded["epoch"]]  # checked: a damaged file is one line
        learning_curve(rows, self.path / "learning_curve.png")

    def save_summary(self, summary: dict) -> None:
        write_json(self.path / "summary.json", summary)

    def discard_if_empty(self) -> None:
        """Remove a run directory that never completed an epoch (no half-written runs)."""
        if not (self.path / "checkpoint.json").exists():
            shutil.rmtree(self.path, ignore_errors=True)
            remove_empty(self._made)  # and the folders made for it, where still empty

    @contextlib.contextmanager
    def exclusive(self):
        """Hold the run for this process (an advisory lock on its directory, released however the process
        ends): a second `train --resume` of it fails at once instead of racing over its checkpoints."""
        self._require_dir()
        with exclusive(self.path, "being trained by another process; wait for it or stop it"):
            yield

    # --- reading ---------------------------------------------------------------------------
    def completed_epochs(self) -> int:
        """Epochs the run has completed and saved (0 before its first)."""
        ck = self._checkpoint()
        return ck["epoch"] if ck else 0

    def finished_summary(self) -> dict | None:
        """summary.json of a run whose training and final test are done: one that names this folder and the epochs
        completed; None where it is missing, damaged, another's or the run was moved (train then writes it anew)."""
        if not (self.path / "summary.json").is_file():
            return None
        try:
            s = read_json(self.path / "summary.json")
            here = isinstance(s, dict) and isinstance(s.get("run_dir"), str) and _names(s["run_dir"], self.path)
        except (RunError, OSError, ValueError, RuntimeError):  # a name with a NUL; a link loop (3.11's resolve)
            return None
        return s if here and s.get("epochs") == self.completed_epochs() else None

    def _checkpoint(self) -> dict | None:
        f = self.path / "checkpoint.json"
        if not f.exists():
            if f.is_symlink():  # a link to nothing (or to itself) is damage, not "no epoch completed yet"
                raise RunError(f"{f}: a symbolic link to nothing (or a loop)")
            return None
        ck = read_json(f)
        if not (isinstance(ck, dict) and _count(ck.get("epoch")) and isinstance(ck.get("dir"), str)
                and _count(ck.get("best_epoch")) and ck["best_epoch"] <= ck["epoch"]
                and (ck.get("best_step") is None or _count(ck["best_step"]))
                and (ck.get("best_acc") is None or _number(ck["best_acc"]))):  # null: no validation pass
            raise RunError(f"{f}: malformed checkpoint record")
        if not ck["dir"] or "/" in ck["dir"] or ck["dir"].startswith("."):
            raise RunError(f"{f}: bad checkpoint directory name {ck['dir']!r}")
        return ck

    def config(self) -> TrainConfig:
        self._require_dir()
        if not (self.path / "config.json").exists() and not (self.path / "config.json").is_symlink():
            self._not_a_run()
        return read_config(self.path / "config.json")

    def _not_a_run(self) -> None:
        """RunError saying what the folder is, where it holds none of a run's files (a run missing only its
        config.json is a damaged run: read_config names the file)."""
        there = lambda *names: any((self.path / n).exists() for n in names)  # noqa: E731
        if there(*(RUN_FILES - {"config.json", "summary.json"})):  # a lab's seed/ has a summary.json too
            return
        where = shorten(str(self.path))
        if self.path.name == "jobs" and any(self.path.glob("*/config.json")):
            raise RunError(f"{where}: a lab's job store, not a run: the runs are the folders in it "
                           "(KEY.json beside each names it)")
        if there("lab.json", "jobs", "explain/picks.json"):
            raise RunError(f"{where}: a lab's folder, not a run: " + (
                f"its trained models are the runs in {where}/jobs/ (explain/picks.json names the ones it explained; "
                "jobs/KEY.json names each)" if (self.path / "jobs").is_dir() else "a lab keeps its trained models "
                "in its jobs/ folder, and this one has none"))
        raise RunError(f"{where}: not a run (no config.json); rnnlab train --out DIR makes one")

    def vocab(self) -> Vocab:
        self._require_dir()
        try:
            return Vocab.from_json(read_json(self.path / "vocab.json"))
        except ValueError as e:
            if isinstance(e, RunError):
                raise
            raise RunError(f"{self.path / 'vocab.json'}: {e}") from None

    def metrics(self) -> list[dict]:
        return read_jsonl(self.path / "metrics.jsonl")

    def _metric_rows(self) -> list[dict]:
        """metrics.jsonl for --resume: every row an epoch's record, with what a resumed run reads from it (its
        summary, its learning curve)."""
        f = self.path / "metrics.jsonl"
        rows = self.metrics()
        for i, r in enumerate(rows, 1):
            if not (isinstance(r, dict) and _count(r.get("epoch")) and _number(r.get("train_seconds"))
                    and _number(r.get("tokens_per_second")) and _number(r.get("train_loss"))
                    and all(r.get(k) is None or _number(r[k]) for k in ("val_acc", "val_loss", "test_acc"))):
                raise RunError(f"{f}: record {i} is not an epoch's metrics")
        return rows

    def restore(self, model, opt):
        """For --resume: load the last completed epoch into `model` and `opt`, and the torch RNG.

        Returns (metrics of the completed epochs, train.BestWeights of the run so far); a run with
        no completed epoch returns ([], an empty BestWeights) and leaves everything as it is.
        """
        from .train import BestWeights

        ck = self._checkpoint()
        if ck is None:  # no epoch completed, or checkpoint.json was lost: a kill cannot leave two epochs without it
            recorded = self.metrics() if (self.path / "metrics.jsonl").is_file() else []
            if len(recorded) >= 2:
                raise RunError(f"{self.path / 'checkpoint.json'}: missing, though metrics.jsonl records "
                               f"{len(recorded)} epochs; the run cannot be resumed (train it again into a new --out)")
            return [], BestWeights()
        d = self.path / ck["dir"]
        _load_state(model, load_tensors(d / "last.safetensors"), d / "last.safetensors")
        _unflatten_optimizer(opt, load_tensors(d / "optimizer.safetensors"), d / "optimizer.safetensors")
        rng = load_tensors(d / "rng.safetensors")
        if "torch" not in rng:
            raise RunError(f"{d / 'rng.safetensors'}: no torch RNG state")
        try:
            torch.set_rng_state(rng["torch"])
        except (RuntimeError, TypeError, ValueError):
            raise RunError(f"{d / 'rng.safetensors'}: not a torch RNG state") from None
        if torch.cuda.is_available():
            states = [rng[f"cuda{i}"] for i in range(torch.cuda.device_count()) if f"cuda{i}" in rng]
            if states:
                torch.cuda.set_rng_state_all(states)
        metrics = [r for r in self._metric_rows() if r["epoch"] <= ck["epoch"]]
        if [r.get("epoch") for r in metrics] != list(range(1, ck["epoch"] + 1)):
            raise RunError(f"{self.path / 'metrics.jsonl'}: has epochs {[r.get('epoch') for r in metrics]}, "
                           f"checkpoint.json says 1..{ck['epoch']}")
        best_state = load_tensors(d / "best.safetensors")
        _check_state(model, best_state, d / "best.safetensors")
        row = metrics[ck["best_epoch"] - 1]
        acc = ck.get("best_acc", row.get("val_acc"))
        best = BestWeights(-math.inf if acc is None else acc, ck["best_epoch"], ck.get("best_step"), best_state)
        # model.safetensors must be the best of the epochs kept (a kill may have left a later one)
        save_tensors(self.path / "model.safetensors", best_state, {"epoch": str(best.epoch)})
        return metrics, best

    def resumed_as(self, cfg: TrainConfig) -> None:
        """config.json rewritten where `cfg`, the configuration the run resumes with, differs (a new --epochs or
        --device): it then holds for later resumes too. Called once the resume can go on (its state loaded, its
        memory checked): a resume that fails leaves the run as it was."""
        if cfg != self.config():
            write_json(self.path / "config.json", cfg.to_dict())

    def unfinished(self) -> str | None:
        """A sentence when training stopped before the configured epochs (killed, out of space): the weights are
        then the best of the epochs it completed. None for a finished run or one that keeps no checkpoint. A finished
        run resumed for more epochs (`train --resume --epochs N`) and stopped keeps its first summary.json: finished
        only if that summary has the configured epochs."""
        if (self.path / "summary.json").exists():
            try:
                done = read_json(self.path / "summary.json").get("epochs")
            except (RunError, AttributeError):  # a damaged summary: the weights load (checked apart)
                return None
            if not (type(done) is int and done < self.config().epochs):
                return None
        try:
            ck = self._checkpoint()
        except RunError:  # a damaged checkpoint record: the weights load (checked apart), say nothing of it here
            return None
        if ck is None:
            return None
        if held_elsewhere(self.path):  # `train` is writing it now
            return f"{self.path}: being trained now (epoch {ck['epoch']} of {self.config().epochs} done)"
        epochs = self.config().epochs
        stopped = ("its final test did not run" if ck["epoch"] >= epochs
                   else f"training stopped after epoch {ck['epoch']} of {epochs}; these are the weights it had then")
        for name in ("last", "optimizer", "rng", "best"):  # what --resume loads: where one is cut short it would fail
            if not _whole_safetensors(self.path / ck["dir"] / f"{name}.safetensors"):
                return (f"{self.path}: {stopped}. It cannot be resumed ({ck['dir']}/{name}.safetensors is missing or "
                        "damaged): train it again")
        return f"{self.path}: {stopped}. rnnlab train --resume {self.path} finishes it"

    def load_model(self, device="cpu"):
        """(config, vocab, model in eval mode) from a saved run; every file checked."""
        from .memory import is_out_of_memory
        from .models import build_model, shapes_only

        cfg, vocab = self.config(), self.vocab()
        if len(vocab) > cfg.vocab_size:
            raise RunError(f"{self.path}: vocab.json has {len(vocab)} words, config allows {cfg.vocab_size}")
        if vocab.strip_html != cfg.strip_html:  # which one the model was trained with cannot be told
            raise RunError(f"{self.path}: vocab.json's tokenizer strip_html ({vocab.strip_html}) contradicts "
                           f"config.json's ({cfg.strip_html})")
        if not any((self.path / f).exists() for f in ("model.safetensors", "checkpoint.json", "summary.json")):
            if held_elsewhere(self.path):  # --resume is refused while `train` holds it
                raise RunError(f"{self.path}: is being trained now: no weights yet (its first epoch has not finished)")
            raise RunError(f"{self.path}: stopped before its first epoch finished (killed, or out of memory): no "
                           f"weights yet; rnnlab train --resume {self.path} trains it")
        f = self.path / "model.safetensors"
        state = load_tensors(f)  # read first: building 20,000 layers that a damaged config.json asks for takes minutes
        if layers_in(state) != cfg.layers:
            raise RunError(f"{f}: holds {layers_in(state)} layer(s) where config.json says layers {cfg.layers} "
                           "(damaged or edited)")
        sizes = f"{cfg.model}, embed_dim {cfg.embed_dim}, hidden_dim {cfg.hidden_dim}, layers {cfg.layers}"
        try:
            shapes = shapes_only(cfg, len(vocab))
        except MemoryError as e:
            raise RunError(f"{self.path}: config.json describes a model no machine can build ({sizes}: {e}): damaged "
                           "or edited") from None
        _check_state(shapes, state, f)  # sizes that do not match the weights: refused before any memory is taken
        # (Linux grants more than it has, then kills the process without a word)
        try:
            model = build_model(cfg, len(vocab))
        except (MemoryError, RuntimeError) as e:  # a damaged config.json's sizes can ask for terabytes
            if not is_out_of_memory(e):
                raise
            raise RunError(f"{self.path}: out of memory building the model config.json describes ({sizes}): a "
                           "damaged config.json, or a run for a larger machine") from None
        model.load_state_dict(state)  # keys, shapes, dtypes and values checked above
        return cfg, vocab, model.to(device).eval()

    def _require_dir(self) -> None:
        parent = self.path.parent
        try:
            found = self.path.is_dir()
            inside = not found and self.path.is_file() and all((parent / f).is_file()  # RUN/model.safetensors
                                                               for f in ("config.json", "vocab.json"))
        except (OSError, ValueError):  # a name too long for a path, or with a NUL byte
            found = inside = False
        if inside:
            raise RunError(f"{shorten(self.path.name, 40)} is a file of a run: give its folder, {shorten(str(parent))}")
        if not found:
            raise RunError(no_such(self.path, "run directory"))


def _whole_safetensors(path: Path) -> bool:
    """Whether `path` is a safetensors file whose header parses and whose size is what the header says, read without its
    tensors (a run's checkpoint may be gigabytes). True where it cannot be read to tell (the resume will say why)."""
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n)) if 2 <= n <= 100_000_000 else None
            size = os.fstat(f.fileno()).st_size
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, ValueError):  # ValueError: JSON, UTF-8
        return False
    except OSError:
        return True
    if not isinstance(header, dict):
        return False
    try:
        end = max((int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"), default=0)
    except (TypeError, KeyError, IndexError, ValueError):
        return False
    return size == 8 + n + end


def _count(v) -> bool:
    """A positive int from JSON (not a bool)."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _number(v) -> bool:
    """A finite number from JSON (not a bool)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_state(model, state: dict, f) -> None:
    """Raise RunError unless `state` has exactly `model`'s keys and shapes, all finite."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if missing or extra:
        raise RunError(f"{f}: weights do not match the config (missing {missing[:3]}, unexpected {extra[:3]})")
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise RunError(f"{f}: {k} has shape {tuple(state[k].shape)}, the config/vocabulary needs {tuple(v.shape)}")
        if state[k].dtype != v.dtype:
            raise RunError(f"{f}: {k} is {state[k].dtype}, the model needs {v.dtype}")
        if state[k].is_floating_point() and not torch.isfinite(state[k]).all():
            raise RunError(f"{f}: {k} holds non-finite values")


def layers_in(state: dict) -> int:
    """How many layers a model's weights hold: a recurrent layer's names end in _l<k>, a Transformer's hold
    .layers.<k>. (1 for models of one layer)."""
    found = [int(m.group(1) or m.group(2)) for k in state if (m := re.search(r"_l(\d+)$|\.layers\.(\d+)\.", k))]
    return max(found) + 1 if found else 1


def _load_state(model, state: dict, f) -> None:
    _check_state(model, state, f)
    model.load_state_dict(state)


def _flatten_optimizer(opt) -> dict:
    out = {}
    for i, st in opt.state_dict()["state"].items():
        for name, t in st.items():
            out[f"{i}.{name}"] = t if torch.is_tensor(t) else torch.tensor(t)
    return out


ADAM_STATE = {"step", "exp_avg", "exp_avg_sq"}  # torch.optim.Adam's state of a weight (no amsgrad)


def _unflatten_optimizer(opt, flat: dict, f) -> None:
    sd = opt.state_dict()
    state: dict = {}
    for key, t in flat.items():
        i, _, name = key.partition(".")
        if not i.isdigit():
            raise RunError(f"{f}: unexpected key {key!r}")
        state.setdefault(int(i), {})[name] = t
    params = [p for g in opt.param_groups for p in g["params"]]
    if set(state) - set(range(len(params))):
        raise RunError(f"{f}: optimizer state does not match the model")
    for i in range(len(params)):  # after an epoch every weight has had a step: Adam's three, none missing or extra
        if set(state.get(i, ())) != ADAM_STATE:
            raise RunError(f"{f}: optimizer state of weight {i} holds {sorted(state.get(i, ())) or 'nothing'}, not "
                           f"Adam's {sorted(ADAM_STATE)}")
    for i, st in state.items():  # a wrong shape or dtype reaches the fused Adam's C++ unchecked (a crash)
        for name, t in st.items():
            like = () if t.dim() == 0 else tuple(params[i].shape)
            if tuple(t.shape) != like or (t.dim() and t.dtype != params[i].dtype) or not t.is_floating_point():
                raise RunError(f"{f}: optimizer state does not match the model ({i}.{name}: "
                               f"{t.dtype} {tuple(t.shape)}, parameter {params[i].dtype} {tuple(params[i].shape)})")
            if not torch.isfinite(t).all() or (name in ("step", "exp_avg_sq") and bool((t < 0).any())):
                raise RunError(f"{f}: optimizer state {i}.{name} holds non-finite or negative values")
    sd["state"] = state
    try:
        opt.load_state_dict(sd)
    except (ValueError, RuntimeError, KeyError) as e:
        raise RunError(f"{f}: optimizer state does not match ({e})") from None
