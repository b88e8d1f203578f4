"""The `rnnlab` command line (also `python -m rnnlab`).

    rnnlab train --preset seed --data ../shared/data/imdb
    rnnlab evaluate runs/seed-... --json
    rnnlab predict runs/seed-... "What a film!"
    rnnlab lab --data ../shared/data/imdb

Training flags are built from the `TrainConfig` fields, so every field is a flag and flags
override the preset (or `--config FILE`). Bad input and faults of the machine exit with one line
on stderr and a non-zero code, never a traceback (set RNNLAB_DEBUG=1 to see one).
"""
from __future__ import annotations

import _thread
import atexit
import contextlib
import dataclasses
import errno
import gc
import json
import os
import queue
import re
import signal
import sys
import threading
import time
from pathlib import Path

import click

from .config import CHOICES, PRESETS, ConfigError, TrainConfig, preset as get_preset, with_overrides
from .data import DataError, data_source
from .experiments import SHORTFALLS
from .io import (HANGUP, STOPS, RunError, echo_whole, first_line, in_the_way, interrupt_in, is_run_dir, one_line,
                 printable, shorten, whole_stdout)
from .memory import is_out_of_memory

# --- train's options: one per TrainConfig field, in groups ------------------------------------------

GROUPS = {
    "Model": ("model", "embed_dim", "hidden_dim", "layers", "dropout", "pool", "recurrent_init"),
    "Text": ("vocab_size", "strip_html", "max_len", "truncate"),
    "Optimisation": ("batch_size", "batching", "lr", "lr_schedule", "lr_hold", "clip", "step_loss", "epochs"),
    "Evaluation": ("val_fraction", "val_checks", "test_every_epoch"),
    "Run": ("seed", "device"),
}
HELP = {
    "model": "Model kind.", "embed_dim": "Embedding size.",
    "hidden_dim": "Hidden size (the transformer: its feed-forward layer is twice this wide; the CNN: its filters).",
    "layers": "Recurrent/encoder layers.", "dropout": "Dropout on embeddings, between "
    "layers and before the classifier (the CNN: embeddings and classifier; bow: classifier; transformer: residual "
    "and feed-forward paths).", "pool": "How the classifier reads the states: the last real one, mean or max.",
    "recurrent_init": "Initialisation of W_hh.", "vocab_size": "Vocabulary size incl. <pad> and <unk>.",
    "strip_html": "Remove <br /> tags first.", "max_len": "Keep at most N tokens per review (0 = all).",
    "truncate": "Which part --max-len keeps.", "batch_size": "Training batch size.",
    "batching": "bucket: by length (fast); random: the notebook's shuffled batches.", "lr": "Adam learning rate.",
    "lr_schedule": "constant, or cosine decay to 0 by the last step.",
    "lr_hold": "Cosine only: share of the run at the full rate before the decay.",
    "clip": "Max gradient norm (0 = off).",
    "step_loss": "Weight of a training-only loss on every hidden state (target replication; 0 = off).",
    "epochs": "Training epochs.", "val_fraction": "Validation share carved from train (0 = none).",
    "val_checks": "Validation passes per epoch; the best pass's weights are kept.",
    "test_every_epoch": "Measure test accuracy every epoch (the notebook does).", "seed": "Random seed.",
    "device": "Where to train.",
}
assert sorted(f for g in GROUPS.values() for f in g) == sorted(f.name for f in dataclasses.fields(TrainConfig))
RESUMABLE = ("epochs", "device")  # what --resume may change: extend a run, move it to another device


def _preset_values(name: str) -> str:
    """Each preset's value of one field, e.g. for epochs 'seed, notebook: 5 · tuned: 32 · rnn, lstm, gru, bow,
    transformer: 3'."""
    by_value: dict[str, list[str]] = {}
    for p, cfg in PRESETS.items():
        if p != "default":
            v = getattr(cfg, name)
            by_value.setdefault(str(v).lower() if isinstance(v, bool) else str(v), []).append(p)
    return " · ".join(f"{', '.join(ps)}: {v}" for v, ps in by_value.items())


def config_options(f):
    """Add one --flag per TrainConfig field (default None: keep the preset's value)."""
    for field in reversed(dataclasses.fields(TrainConfig)):
        name = "--" + field.name.replace("_", "-")
        help_ = f"{HELP[field.name]} [{_preset_values(field.name)}]"
        if field.type == "bool":
            opt = click.option(f"{name}/--no-{field.name.replace('_', '-')}", field.name, default=None, help=help_)
        elif field.name in CHOICES:
            opt = click.option(name, field.name, type=click.Choice(CHOICES[field.name]), default=None, help=help_)
        else:
            opt = click.option(name, field.name, type={"int": int, "float": float}[field.type], default=None,
                               help=help_)
        f = opt(f)
    return f


class Command(click.Command):
    """An rnnlab command: one that imports torch loads it once its arguments are read (a mistyped option is said
    without waiting for it), under the signals rnnlab.__main__ held: a SIGTERM inside torch's C++ import code
    (torch.distributed's) aborted the process with 88 lines of stack (exit 134, 2 in 35 timed kills to `predict`)."""

    def invoke(self, ctx):
        if HOLD_SIGNALS and self.name not in WITHOUT_TORCH:
            _hold_signals()
            _load_torch()
            try:
                _release_signals()
            except KeyboardInterrupt as e:  # came while torch loaded: nothing has run
                _stopped_starting(e)
            _torch_settings()  # what the import raised, said in one line
        return super().invoke(ctx)


class GroupedCommand(Command):
    """--help lists the training options under Model, Text, Optimisation, Evaluation, Run."""

    def format_options(self, ctx, formatter):
        rows: dict[str, list] = {g: [] for g in ("Data and output", *GROUPS)}
        group_of = {f: g for g, fs in GROUPS.items() for f in fs}
        for p in self.get_params(ctx):
            rec = p.get_help_record(ctx)
            if rec:
                rows[group_of.get(p.name, "Data and output")].append(rec)
        for group, recs in rows.items():
            with formatter.section(f"{group} options"):
                formatter.write_dl(recs)


# --- errors: one line, a non-zero exit ----------------------------------------------------------------

class InputError(click.ClickException):
    """Bad input or a fault of the machine: one line on stderr, exit code 2."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(one_line(message))

    def show(self, file=None) -> None:
        try:
            super().show(file)
        except BrokenPipeError:  # the log's reader is gone (2> >(head -0)): SIGPIPE's status, not click's exit 1
            _to_devnull(_pipes_gone())
            sys.exit(128 + 13)


def _fail(e) -> None:
    raise InputError(str(e)) from None


def _log(msg: str) -> None:
    click.echo(one_line(msg), err=True)


_READS_A_RUN = "give shorter reviews, or use a run trained with a --max-len"  # it reads the run as it was trained
OUT_OF_MEMORY_HINTS = {  # what each command can change
    None: "use smaller sizes (e.g. --batch-size, --max-len)", "predict": _READS_A_RUN, "evaluate": _READS_A_RUN,
    "explain": "use fewer --ig-steps or a shorter review, or a run trained with a --max-len",
    **dict.fromkeys(("lab", "compare", "shortfall"), "use fewer --jobs"),
}
_SIGNALLED: list[str] = []  # the signal _interrupt turned into KeyboardInterrupt: Ray re-raises it without its message


WHOLE_PROCESS = False  # rnnlab.__main__ sets it: the process ends with the command (not so under CliRunner)
HELD_MASK = None  # rnnlab.__main__: the signal mask to restore once a signal can stop the command with its line
HOLD_SIGNALS = False  # rnnlab.__main__: hold them again between reading the arguments and the command


def _release_signals() -> None:
    """Deliver the signals rnnlab.__main__ held while the libraries loaded (inside torch's C++ import code a Ctrl-C
    aborted the process) and Main holds between reading the arguments and invoking the command (where it was click's
    "Aborted!"): one that came meanwhile is raised here (pthread_sigmask runs the handlers), where the caller says it
    with the "while starting" line."""
    global HELD_MASK
    if HELD_MASK is not None:
        mask, HELD_MASK = HELD_MASK, None
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _stopped_starting(e: KeyboardInterrupt) -> None:
    """A signal before the command's work began: its line, exit 130."""
    _log(f"interrupted ({str(e) or (_SIGNALLED or ['Ctrl-C'])[-1]}) while starting; nothing was done")
    sys.exit(130)


def _hold_signals() -> None:
    global HELD_MASK
    if HOLD_SIGNALS and HELD_MASK is None:
        HELD_MASK = signal.pthread_sigmask(signal.SIG_BLOCK, STOPS)


def _work_over() -> None:
    """The command's work is over: its output written, or its error line. A signal from here on would only
    interrupt the exit (click printed "Aborted!" with exit code 1, a finalizer a traceback): it is ignored."""
    for sig in STOPS:
        with contextlib.suppress(ValueError):  # not the main thread
            signal.signal(sig, signal.SIG_IGN)


def _interrupt(signum, frame):
    _SIGNALLED.append(signal.Signals(signum).name)
    raise KeyboardInterrupt(_SIGNALLED[-1])  # its message names the signal (Ctrl-C has none)


_DROPPED: list[str] = []  # interrupts Python dropped: raised inside a finalizer or a weakref callback
RESENT = {s.name: s for s in STOPS}  # _interrupt's messages; Ctrl-C's is ""


def _exit_if_dropped() -> None:
    """A Ctrl-C that landed in a cleanup, sent again, did not stop the command (it came as the command's work
    ended, or its signal is ignored), which ran on to its end: exit as interrupted."""
    if _DROPPED:
        _log(f"interrupted ({_DROPPED[-1]}) where Python could not stop the command, which ran on to its end: its "
             "output is whole")
        sys.exit(130)


class Resender:
    """Sends an interrupt that Python dropped in a cleanup (a finalizer, a weakref callback: "Exception ignored" and a
    traceback, the command running on) again, as its signal, to the main thread, 10 ms after it was noted, so the
    command stops where it can. `note` is the sys.unraisablehook while the command runs: it only notes the interrupt
    and queues it (SimpleQueue.put is safe in a finalizer; starting a thread there is not); a thread of its own sends
    it, unless the command is over by then (`over`: nothing is sent after it). A signal the process ignores, or
    leaves to the OS, is not sent: the command runs on and exits as interrupted (`_exit_if_dropped`)."""

    def __init__(self, hook):
        self.hook, self.queue, self.lock, self.done = hook, queue.SimpleQueue(), threading.Lock(), False
        # started with the signals blocked, which it keeps: the kernel hands a process's signal to a thread that does
        # not block it, so this one would take those the main thread holds (`Command.invoke`) and Python would run
        # their handler in the main thread at once, inside the import they are held for
        blocking = hasattr(signal, "pthread_sigmask")  # not on Windows
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOPS) if blocking else None
        try:
            with contextlib.suppress(RuntimeError):  # no thread to be had (a cap on processes): noted, not sent
                threading.Thread(target=self._run, daemon=True, name="rnnlab-resend").start()
        finally:
            if blocking:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    def note(self, unraisable):
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            return self.hook(unraisable)
        _DROPPED.append(str(unraisable.exc_value) or "Ctrl-C")
        self.queue.put(RESENT.get(_DROPPED[-1], signal.SIGINT))

    def _run(self):
        while (sig := self.queue.get()) is not None:
            time.sleep(0.01)
            with self.lock:
                if self.done or not callable(signal.getsignal(sig)):
                    continue
                with contextlib.suppress(OSError, ValueError):
                    if hasattr(signal, "pthread_kill"):  # a real signal: it also ends a wait in a system call
                        signal.pthread_kill(threading.main_thread().ident, sig)
                    else:
                        _thread.interrupt_main(sig)

    def over(self):
        """The command's work is over: nothing is sent from now on (one already sent is handled at once)."""
        with self.lock:
            self.done = True
        self.queue.put(None)


def _pipes_gone() -> list[int]:
    """Which of standard output and standard error (1, 2) are pipes whose reader has closed them (poll reports an
    error on their end). Without poll (Windows): standard output, the one a reader usually stops."""
    try:
        import select

        p = select.poll()
        for fd in (1, 2):
            p.register(fd, select.POLLOUT)
        return sorted(fd for fd, ev in p.poll(0) if ev & (select.POLLERR | select.POLLHUP))
    except (AttributeError, OSError, ValueError):
        return [1]


def _to_devnull(fds) -> None:
    """Point these file descriptors at /dev/null: nothing more is written where they went, at exit either."""
    for fd in fds:
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), fd)


NO_ARGS = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click 8.2+: help for a command given no arguments


def _usage(e: click.UsageError, group: click.Context | None = None) -> InputError:
    """click's usage error (4 lines: usage, a hint, a blank, the error; a choice's list a line each) as one line
    naming the help to read: the command's, also where click's parser gave no context (`lab --jobs`)."""
    where = e.ctx.command_path if e.ctx else "rnnlab"
    if e.ctx is None and group is not None and group.invoked_subcommand:
        where = f"{group.command_path} {group.invoked_subcommand}"
    return InputError(f"{' '.join(e.format_message().split())} (see: {where} --help)")


ASKED_HELP = "rnnlab.help"  # ctx.meta: the command was asked for its help
STDOUT_CLOSED = "standard output is closed; send it somewhere (e.g. > out.txt or > /dev/null)"


class Main(click.Group):
    """Turns a fault of the machine anywhere in a command into one line and exit code 2."""

    command_class = Command

    def make_context(self, info_name, args, *rest, **kwargs):
        options = args[:args.index("--")] if "--" in args else args
        if sys.stdout is None and (not args or {"-h", "--help", "--version"} & set(options)):
            _log(f"Error: {STDOUT_CLOSED}")  # click would print its help or version into nothing and exit 0
            sys.exit(2)
        try:  # click would turn a signal while it reads the arguments into "Aborted!" and exit code 1
            _release_signals()
            ctx = super().make_context(info_name, args, *rest, **kwargs)
            _hold_signals()  # until invoke: click runs code of its own between the two
            return ctx
        except KeyboardInterrupt as e:
            _stopped_starting(e)
        except click.UsageError as e:
            if isinstance(e, NO_ARGS):  # bare `rnnlab`: its help, as click prints it
                raise
            raise _usage(e) from None
        except OSError as e:  # --help or --version into a full disk (> /dev/full); a closed pipe is click's (exit 1)
            if e.errno == errno.EPIPE or os.environ.get("RNNLAB_DEBUG"):
                raise
            _os_error(e)

    def resolve_command(self, ctx, args):
        name, command, rest = super().resolve_command(ctx, args)
        options = rest[:rest.index("--")] if "--" in rest else rest
        ctx.meta[ASKED_HELP] = bool({"-h", "--help"} & set(options))  # for main(), which runs before the command's own
        return name, command, rest

    def _command(self, ctx):
        """The command; an ImportError an interrupt caused (inside a compiled library's import) is raised as that
        interrupt (`io.interrupt_in`)."""
        try:
            return super().invoke(ctx)
        except ImportError as e:  # only this: an error in a command's own interrupt handling keeps its way out
            if (stop := interrupt_in(e)) is None:
                raise
            raise stop from None

    def invoke(self, ctx):
        _SIGNALLED.clear()
        _DROPPED.clear()
        try:
            os.getcwd()
        except FileNotFoundError:  # torch's import would die in MKL's loader with a FATAL ERROR of its own
            _log("Error: the current folder no longer exists (deleted or moved away); cd to one that does")
            sys.exit(2)
        for sig in (signal.SIGTERM, *HANGUP):  # as Ctrl-C (training loops catch them too); SIGHUP: a closed
            now = signal.getsignal(sig)  # terminal or ssh session. rnnlab.__main__'s while the libraries loaded:
            if now == signal.SIG_DFL or getattr(now, "early", False):
                with contextlib.suppress(ValueError):  # not the main thread: signals stay as they are
                    signal.signal(sig, _interrupt)
        hook, resender = sys.unraisablehook, None
        try:
            _release_signals()
        except KeyboardInterrupt as e:  # held since the arguments were read: nothing has run
            _stopped_starting(e)
        try:
            if threading.current_thread() is threading.main_thread():  # where a signal can interrupt the command
                resender = Resender(hook)
                sys.unraisablehook = resender.note
            try:
                done = self._command(ctx)
            finally:
                if resender is not None:
                    resender.over()
            _exit_if_dropped()
            return done
        except SystemExit as e:
            if e.code in (0, None):
                _exit_if_dropped()
            raise
        except click.UsageError as e:
            if isinstance(e, click.NoSuchOption) and e.ctx is not None and e.ctx.command.name in ("predict", "explain"):
                # a review may start with "-" ("-1/10, awful"): say how to give it
                e.message = f"{e.message.rstrip('.')} (a review that starts with '-' goes after --: rnnlab {e.ctx.command.name} RUN -- TEXT)"
            if isinstance(e, NO_ARGS):
                raise
            raise _usage(e, ctx) from None
        except KeyboardInterrupt as e:  # a command without a line of its own (training says what it kept)
            _log(f"interrupted ({str(e) or (_SIGNALLED or ['Ctrl-C'])[-1]}); the command stopped before it finished")
            sys.exit(130)
        except RunError as e:  # a run found wanting where a command did not expect it (a model answering NaN)
            raise InputError(str(e)) from None
        except (MemoryError, RuntimeError) as e:  # torch's CPU allocator fails with a RuntimeError
            if isinstance(e, RuntimeError) and str(e).startswith("Symlink loop from"):  # pathlib's, before 3.13
                _log(f"Error: {shorten(str(e).removeprefix('Symlink loop from ').strip(chr(39)))}: a symbolic link loop")
                sys.exit(2)
            if isinstance(e, RuntimeError) and not is_out_of_memory(e):
                raise
            _log(f"Error: out of memory; {OUT_OF_MEMORY_HINTS.get(ctx.invoked_subcommand, OUT_OF_MEMORY_HINTS[None])}")
            sys.exit(2)
        except BrokenPipeError as e:
            gone = _pipes_gone()
            if not gone:  # a pipe of something else (a subprocess, Ray): an error like any other
                with contextlib.suppress(OSError):
                    _log(f"Error: {e.strerror or e}")
                sys.exit(2)
            _to_devnull(gone)  # the reader of the output or the log stopped (| head): quietly, as any command in a pipe
            sys.exit(128 + 13)  # SIGPIPE's status, as the shell gives `yes | head`
        except OSError as e:
            if os.environ.get("RNNLAB_DEBUG"):
                raise
            _os_error(e)
        finally:
            sys.unraisablehook = hook
            if WHOLE_PROCESS:
                _work_over()


def _os_error(e: OSError) -> None:
    """A fault of the machine as one line naming the file (or the output), and exit code 2."""
    with contextlib.suppress(OSError):  # stderr itself on the full disk: the exit code still says it
        if getattr(e, "filename", None):
            _log(f"Error: {shorten(str(e.filename))}: {e.strerror or e}")  # a name can be 1000s long
        elif e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):  # standard output has no name
            _log(f"Error: cannot write the output: {e.strerror or e}")
            if WHOLE_PROCESS:  # what is still buffered for it goes nowhere at exit, quietly (not a host's stdout)
                _to_devnull([1])
        else:
            _log(f"Error: {e.strerror or e}")
    sys.exit(2)


SHORT_COMMANDS = ("explain", "predict")  # short-lived: Python's cycle collector stays off while they run (below)


@click.group(cls=Main, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="rnnlab")
@click.pass_context
def main(ctx):
    """rnnlab: a vanilla RNN on IMDB, and its four shortfalls measured."""
    # Python's cycle collector is costly for a command that imports torch: full passes over its ~170,000 tracked
    # objects while they are created, and at exit passes that tear them all down (benchmarks/startup_gc.py:
    # `import torch` 1.62 s, 1.19 s with the collector off and the objects frozen at exit). explain and predict,
    # short-lived, run with it off (an explanation leaves ~400 objects in cycles; reference
    # counting frees the rest); every command freezes what is alive at exit (outputs are written and closed
    # before a command returns).
    if sys.stdout is None:  # started with stdout closed (>&-): what it prints would vanish without a word
        raise InputError(STDOUT_CLOSED)
    whole_stdout()  # output into a nearly full disk: an error, not exit 0 with the output cut short
    if ctx.invoked_subcommand not in WITHOUT_TORCH and not ctx.meta.get(ASKED_HELP) and not HOLD_SIGNALS:
        _torch_settings()  # a command's help needs no torch; with the signals held, Command.invoke imports it
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)
    if ctx.invoked_subcommand in SHORT_COMMANDS and gc.isenabled():
        gc.disable()
        ctx.call_on_close(gc.enable)


WITHOUT_TORCH = ("report", "presets")  # the commands that never import torch (`report` must not: test_report)
TORCH_SETTINGS = ("TORCH_LOGS", "TORCH_LOGS_FORMAT")  # read by torch's import, which a value it cannot parse stops


TORCH_ERROR: list[BaseException] = []  # what torch's import under the held signals raised (_load_torch)


def _load_torch() -> None:
    """torch imported (`Command.invoke`, the signals held), with Python's cycle collector off meanwhile, as `main` has
    it for explain and predict. An error is kept for `_torch_settings` to say (a failed import of torch cannot be
    tried again in the process)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        import torch  # noqa: F401
    except Exception as e:  # ImportError, TORCH_LOGS' ValueError, a missing library's OSError: said by the command
        TORCH_ERROR.append(e)
    finally:
        if collecting:
            gc.enable()


def _torch_settings() -> None:
    """What torch's import raised (`_load_torch`), raised: where it refuses TORCH_LOGS or TORCH_LOGS_FORMAT, one line
    before any work (its import raised a traceback of 50 lines in the middle of a command). Where the signals were
    not held (torch not imported yet), it is imported here if either is set."""
    named = [v for v in TORCH_SETTINGS if os.environ.get(v)]
    if named and not TORCH_ERROR:
        _load_torch()
    if not TORCH_ERROR:
        return
    e = TORCH_ERROR[0]
    if named and isinstance(e, ValueError):
        raise InputError(f"{' or '.join(named)}: torch cannot read it ({shorten(first_line(e), 120)}); fix it, or "
                         f"unset it") from None
    raise e


DATA_HELP = "Parquet dir, aclImdb dir or tarball. Default: $RNNLAB_DATA, else the Hugging Face hub."


class Folder(click.Path):
    """A folder (or, with what="a file name", a file) named on the command line: "" is refused, not read as the
    current folder (as Path("") is: an unset "$RUN" would read, resume or overwrite whatever is there)."""

    def __init__(self, what: str = "a folder (. for the current one)"):
        super().__init__(path_type=Path)
        self.what = what

    def convert(self, value, param, ctx):
        if value == "":
            self.fail(f"an empty path; give {self.what}", param, ctx)
        return super().convert(value, param, ctx)


# --- train ----------------------------------------------------------------------------------------------

@main.command(cls=GroupedCommand)
@click.option("--preset", "preset_name", type=click.Choice(list(PRESETS)), default="seed", show_default=True,
              help="Named configuration; flags override its values (`rnnlab presets` lists them).")
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
              help="Start from a TOML or JSON config (e.g. a run's config.json) instead of a preset.")
@click.option("--data", "data_path", type=str, default=None, help=DATA_HELP + " With --resume: the run's data.")
@click.option("--out", "out", type=Folder(), default=None,
              help="Run directory (default: runs/<preset>-<time>, -2, -3, ... where that is taken).")
@click.option("--resume", "resume", type=Folder(), default=None,
              help="Continue an interrupted run directory to its configured epochs.")
@click.option("--show-config", is_flag=True, help="Print the resolved configuration as JSON and exit.")
@click.option("--tensorboard", "tb_dir", type=Folder(), default=None,
              help="Also log per-step loss, gradient norm, learning rate and per-epoch accuracy for TensorBoard here "
                   "(needs the tensorboard package: `pip install tensorboard`, or the `tensorboard` extra).")
@config_options
def train(preset_name, config_file, data_path, out, resume, show_config, tb_dir, **flags):
    """Train a model; prints one JSON summary line last."""
    from .data import load_imdb
    from .memory import TooLong
    from .prepare import prepare
    from .runs import RunDir, check_new_run, read_config, run_data_path, run_fingerprint, unused
    from .train import (CannotResume, Divergence, Interrupted, OutOfMemory, TooLarge, Unbuildable, resolve_device,
                        train as train_run)

    overrides = {k: v for k, v in flags.items() if v is not None}
    preset_given = click.get_current_context().get_parameter_source("preset_name").name != "DEFAULT"
    with contextlib.ExitStack() as held:  # the run is this process's until it returns
        try:
            if resume is not None:
                if out is not None and Path(out).resolve() != Path(resume).resolve():
                    raise RunError(f"--out {out}: a resumed run continues in its own directory ({resume}); drop --out")
                run = RunDir(resume)
                held.enter_context(run.exclusive())
                saved = run.config()
                changed = {k: v for k, v in overrides.items() if getattr(saved, k) != v and k not in RESUMABLE}
                if config_file or preset_given:
                    raise RunError("a resumed run keeps its own config: drop --preset/--config (only --epochs and "
                                   "--device may change)")
                if changed:
                    k, v = next(iter(changed.items()))  # the first option that differs
                    raise RunError(f"--{k.replace('_', '-')} {v} differs from the run's config "
                                   f"({getattr(saved, k)}); a resumed run keeps its config (only --epochs and "
                                   "--device may change)")
                cfg = with_overrides(saved, overrides)
                if cfg.epochs < (done := run.completed_epochs()):
                    asked = (f"--epochs {cfg.epochs}" if "epochs" in overrides else
                             f"{run.path / 'config.json'} says epochs {cfg.epochs}")  # edited by hand
                    raise RunError(f"{asked}: {resume} has completed {done} epochs already "
                                   f"(give --epochs {done} or more, or train a new run)")
                finished = run.finished_summary() if cfg.epochs == done else None  # nothing to train: no data read
                if finished is None and data_path is None:
                    data_path = run_data_path(run)
            else:
                if config_file and preset_given:
                    raise RunError("--preset and --config each give the starting configuration: give one "
                                   "(flags then override it)")
                base = read_config(config_file) if config_file else get_preset(preset_name)
                cfg = with_overrides(base, overrides)
            if show_config:
                click.echo(json.dumps(cfg.to_dict(), indent=2))
                return
            if resume is None:
                start = Path(config_file).stem if config_file else preset_name
                default_name = out is None
                out = out or Path("runs") / f"{start}-{time.strftime('%Y%m%d-%H%M%S')}"
                check_new_run(unused(out) if default_name else out,  # before the data is read; no --out given:
                              fix="give --out a folder" if default_name else "choose another --out")  # say so
            resolve_device(cfg.device)  # fail before anything is written
            if tb_dir:
                _tensorboard_available()
                if blocked := in_the_way(tb_dir):  # before the data is read
                    raise RunError(f"--tensorboard {tb_dir}: {blocked}")
            if resume is not None and finished is not None:
                _log(f"{resume}: its {done} epoch{'s' * (done != 1)} and final test are done already: nothing to "
                     "train (a larger --epochs trains on)")
                click.echo(json.dumps(finished))
                return
            _log(f"loading data ({shorten(data_source(data_path))})")
            ds = load_imdb(data_path)
            data = prepare(cfg, ds, _log)
            if resume is not None:
                trained_on = run_fingerprint(run)
                if trained_on is not None and trained_on != ds.fingerprint():
                    raise RunError(f"{resume}: trained on other data than {shorten(ds.source)} (its rows differ from "
                                   "the fingerprint in meta.json); resume with the data it was trained on")
                if run.vocab().itos != data.vocab.itos:
                    raise RunError(f"{resume}: vocabulary differs from this data; resume with the run's own --data"
                                   if trained_on is None else f"{run.path / 'vocab.json'}: not the vocabulary this "
                                   "run's own data gives (damaged or edited; config.json's vocab_size sets its size)")
                run.remove_leftovers()  # config.json takes a new --epochs once the resume can go on (train)
            else:
                run = RunDir.create(out, cfg, data.vocab, ds, default_name=default_name)
                held.enter_context(run.exclusive())
            on_step, on_epoch = (None, None)
            if tb_dir:  # only now: a log written before the run existed filled --out (or outlived a failed start)
                try:
                    on_step, on_epoch = _tensorboard(tb_dir)
                except BaseException:  # its slow import interrupted too: no empty run left behind
                    if resume is None:
                        run.discard_if_empty()
                    raise
        except (DataError, RunError, ConfigError, ValueError) as e:
            _fail(e)
        try:
            _log(f"train {len(data.train)} / val {len(data.val) if data.val is not None else 0} / test "
                 f"{len(data.test)} reviews; {cfg.model}, {cfg.epochs} epoch{'s' * (cfg.epochs != 1)} -> {run.path}")
            trained = train_run(cfg, data, run, log=_log, on_step=on_step, on_epoch=on_epoch)
        except (Interrupted, KeyboardInterrupt) as e:  # KeyboardInterrupt: outside the epochs (set-up, final test)
            if isinstance(e, KeyboardInterrupt):  # its message names the signal; Ctrl-C's is empty
                e = (str(e) or "SIGINT") + (" in the final test" if _all_epochs_saved(run, cfg) else "")
            if resume is None:
                run.discard_if_empty()
            if run.path.exists():
                _log(f"interrupted ({e}); completed epochs are saved. Continue with: rnnlab train --resume {run.path}")
            else:
                _log(f"interrupted ({e}) before the first epoch completed; nothing was saved")
            sys.exit(130)
        except Divergence as e:
            if resume is None:
                run.discard_if_empty()
            kept = (f"the last good epoch's weights are kept in {run.path}" if run.path.exists()
                    else "no epoch had completed, so nothing was kept")
            _log(f"stopped: {e}; {kept}. Try gradient clipping (--clip 1.0) or a lower --lr")
            sys.exit(1)
        except (RunError, ValueError, OutOfMemory) as e:
            if resume is None:
                run.discard_if_empty()
            if isinstance(e, Unbuildable) and resume is not None:
                _fail(f"{e.facts}: no machine can resume this run (its config.json damaged or edited)")
            if isinstance(e, (TooLarge, TooLong)) and resume is not None:  # a resumed run keeps its sizes and data
                _fail(f"{e.facts}: this run cannot be resumed here; free memory, or resume it on a machine with more")
            if run.path.exists() and (run.path / "checkpoint.json").exists() and not isinstance(e, CannotResume):
                _fail(f"{e} (completed epochs are kept: rnnlab train --resume {run.path})")
            _fail(e)
        except BaseException:  # anything else (a broken pipe, a fault of the machine) leaves no empty run behind
            if resume is None:
                run.discard_if_empty()
            raise
        click.echo(json.dumps(trained.summary))


TENSORBOARD_NEEDED = "--tensorboard needs the tensorboard package: pip install tensorboard"


def _tensorboard_available() -> None:
    """RunError, before anything is written, unless TensorBoard's writer imports (a broken install raises anything:
    a protobuf mismatch raises TypeError)."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        raise RunError(TENSORBOARD_NEEDED)
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except Exception as e:
        raise RunError(f"{TENSORBOARD_NEEDED} (it is installed, but importing it failed: "
                       f"{type(e).__name__}: {shorten(str(e).splitlines()[0] if str(e) else '')})") from None


def _all_epochs_saved(run, cfg) -> bool:
    """Whether the run has saved all its epochs (an interrupt then came in the final test, not in the set-up)."""
    try:
        return run.completed_epochs() >= cfg.epochs
    except RunError:
        return False


def _tensorboard(log_dir: Path):
    """(on_step, on_epoch) hooks writing TensorBoard scalars to `log_dir` (`_tensorboard_available` checked first)."""
    import threading

    from torch.utils.tensorboard import SummaryWriter

    from .io import StorageError, fault

    default_hook = threading.excepthook

    def quiet_writer(args):  # the writer's thread keeps its OSError for the next add_scalar: no traceback here
        if not (isinstance(args.exc_value, OSError) and type(args.thread).__name__ == "_AsyncWriterThread"):
            default_hook(args)

    threading.excepthook = quiet_writer

    @contextlib.contextmanager
    def refused():
        try:
            yield
        except OSError as e:
            raise StorageError(f"cannot write {shorten(str(log_dir))}: {fault(e)}") from None

    events = lambda: set(log_dir.glob("events.out.tfevents.*")) if log_dir.is_dir() else set()  # noqa: E731
    with refused():
        existed, before = log_dir.is_dir(), events()
    try:
        with refused():
            writer = SummaryWriter(str(log_dir))
    except StorageError:  # e.g. a full disk: the writer has made an empty event file (and the folder)
        for f in events() - before:
            with contextlib.suppress(OSError):
                f.unlink()
        if not existed:
            with contextlib.suppress(OSError):
                log_dir.rmdir()
        raise

    def on_step(model, row):  # counted over the whole run, so a resumed run's curves continue
        with refused():
            for k in ("loss", "grad_norm", "lr"):
                writer.add_scalar(f"step/{k}", row[k], row["global_step"])

    def on_epoch(row):
        with refused():
            for k in ("train_loss", "val_acc", "val_loss", "test_acc"):
                if row.get(k) is not None:
                    writer.add_scalar(f"epoch/{k}", row[k], row["epoch"])
            writer.flush()

    return on_step, on_epoch


@main.command()
@click.argument("names", nargs=-1)
def presets(names):
    """Print the named configurations (all, or NAMES) as JSON.

    \b
    seed         the notebook's recipe: whole reviews, no clipping, 5 epochs, test accuracy every epoch
    notebook     the same with shuffled batches, as the notebook's DataLoader (the lab's exercise)
    tuned        the best vanilla RNN a validation search found (32 epochs; docs/TUNING.md)
    rnn, lstm, gru, bow, transformer
                 the lab's models at its shared budget: the last 400 tokens, 3 epochs, the best on validation
    default      TrainConfig's own values, the base of a --config file
    """
    try:
        click.echo(json.dumps({n: get_preset(n).to_dict() for n in (names or PRESETS)}, indent=2))
    except ConfigError as e:
        _fail(e)


# --- evaluate, predict ----------------------------------------------------------------------------------

def _open_run(run_dir: Path, device: str):
    from .runs import RunDir
    from .train import resolve_device

    try:
        dev = resolve_device(device)
        run = RunDir(run_dir)
        cfg, vocab, model = run.load_model(dev)
        stopped = run.unfinished()
    except (RunError, ConfigError, ValueError) as e:
        _fail(e)
    if stopped:
        _log(f"note: {stopped}")
    return cfg, vocab, model, dev


DEVICE = click.option("--device", type=click.Choice(CHOICES["device"]), default="auto", show_default=True)


@main.command()
@click.argument("run_dir", type=Folder())
@click.option("--data", "data_path", default=None,
              help="A CSV or parquet file, or a parquet dir (its test.parquet), aclImdb dir or tarball (its test split). "
                   "Default: the run's own test split.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@DEVICE
def evaluate(run_dir, data_path, as_json, device):
    """Accuracy, confusion matrix and accuracy by review length of a saved run."""
    from .data import load_split
    from .runs import RunDir, own_split
    from .scoring import evaluate_split

    cfg, vocab, model, dev = _open_run(run_dir, device)
    try:
        split = own_split(RunDir(run_dir)) if data_path is None else load_split(data_path)
    except (DataError, RunError) as e:
        _fail(e)
    rep = {**evaluate_split(cfg, vocab, model, split, dev), "data": split.source}
    if as_json:
        click.echo(json.dumps(rep))
        return
    (tn, fp), (fn, tp) = rep["confusion"]["matrix"]
    click.echo(f"{printable(split.source)}: {rep['n']:,} review{'s' * (rep['n'] != 1)}, accuracy {rep['acc']:.4f}")
    click.echo(f"confusion (rows true, cols predicted):\n           neg     pos\n  neg  {tn:7d} {fp:7d}\n  pos  {fn:7d} {tp:7d}")
    read = (f"; the run reads the {'last' if cfg.truncate == 'tail' else 'first'} {cfg.max_len} of each"
            if cfg.max_len else "")
    click.echo(f"accuracy by review length (tokens in the whole review{read}):")
    for b in rep["by_length"]:
        click.echo(f"  {b['bucket']:>8}  n={b['n']:6d}  acc={b['acc']:.4f}")


@main.command()
@click.argument("run_dir", type=Folder())
@click.argument("texts", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per review.")
@DEVICE
def predict(run_dir, texts, as_json, device):
    """Classify TEXTS (or one review per line of stdin, also when TEXTS is "-"): label and P(positive).

    Each TEXT is one review: quote a review of several words ("slow start, great ending").

    Stdin is read as UTF-8; undecodable bytes become U+FFFD. An empty review is read as a single
    <unk> token, each unknown word as one <unk>; both still get a prediction. A review that starts
    with "-" goes after --: rnnlab predict RUN -- "-1/10, awful". A TEXT that names a run directory
    is refused (predict reads one run; explain shows several): such a review goes on stdin.
    """
    from .scoring import score_texts
    from .text import stand_in, unread_note, wordless_note

    cfg, vocab, model, dev = _open_run(run_dir, device)
    run = next((t for t in texts if is_run_dir(t)), None)
    if run is not None:  # `predict RUN_A RUN_B TEXT` classified the path RUN_B as a review
        raise InputError(f"{shorten(run)}: a run directory, not a review: predict reads one run (explain shows "
                         "several side by side); a review that is a path goes on stdin")
    if "-" in texts and len(texts) > 1:
        raise InputError('"-" reads the reviews from stdin: give them there or as TEXT arguments, not both (the '
                         'review "-" itself: echo - | rnnlab predict RUN)')
    if not texts or texts == ("-",):  # "-": stdin, as `cat -` reads it (a terminal too, until Ctrl-D)
        if sys.stdin is None:  # closed (`<&-`)
            raise InputError("no review given: pass TEXT arguments or lines on stdin")
        if not texts and sys.stdin.isatty():  # it would wait without a word
            raise InputError("no review given, and stdin is a terminal: pass TEXT arguments, or pipe or redirect "
                             "reviews to stdin, one per line (< reviews.txt)")
    stream = not texts or texts == ("-",)
    seen, lengths = [], []  # each review's stand-in for the notes, and its length in tokens

    def notes():
        for note in filter(None, (unread_note(seen), wordless_note(seen, vocab.strip_html), cut_note(cfg, lengths),
                                  "" if as_json else words_note(texts))):  # --json: a script's list of words
            _log(f"note: {note}")

    for chunk in _stdin_reviews() if stream else [list(texts)]:
        if lengths:  # a long stream: the collector, off for a short command (main), frees what each chunk leaves
            gc.enable()
        try:
            probs, full = score_texts(cfg, vocab, model, chunk, dev)
        except RunError as e:  # a review's number in it counts from the chunk's first
            if not lengths:
                raise
            raise InputError(f"{e} (numbered from review {len(lengths) + 1:,} of stdin, the first after the "
                             f"{len(lengths):,} answered)") from None
        seen += (stand_in(t, vocab.strip_html) for t in chunk)
        lengths += full.tolist()
        if not stream:
            notes()  # before the answers
        out = []
        for p in probs:
            label = "positive" if p > 0.5 else "negative"
            out.append(json.dumps({"label": label, "p_positive": float(p)}) if as_json else f"{label}\t{p:.4f}")
        echo_whole("\n".join(out))  # megabytes for a file of reviews: in pieces (| head)
    if not seen:
        raise InputError("no review given: pass TEXT arguments or lines on stdin")
    if stream:
        notes()  # after the answers: they count the whole stream


def words_note(texts) -> str:
    """A note where every TEXT is one word: an unquoted sentence (`predict RUN slow but good`), each word of it scored
    as a review of its own, one answer a word. Its example is not the user's text: cut short, or quoted as a shell
    would not read it, that would be another review."""
    if len(texts) < 2 or any(len(t.split()) != 1 for t in texts):
        return ""
    return (f"{len(texts)} reviews of one word each, one answer per word (each TEXT is a review): to give a review of "
            "several words, quote it whole (rnnlab predict RUN \"slow start, great ending\")")


STDIN_CHUNK = 1_000  # reviews read from stdin and predicted at a time: a stream's answers come as it is read
CHUNK_BYTES = 16 * 2**20  # or fewer, where their text reaches this
LONGEST_LINE = 64 * 2**20  # bytes: a review longer than this on stdin is refused (`< /dev/zero` has no line end)


def _stdin_reviews():
    """The reviews on stdin, one per line (only \\n ends one; a \\r before it is dropped), as UTF-8 with
    undecodable bytes as U+FFFD, in lists of STDIN_CHUNK reviews or CHUNK_BYTES: an endless stream (`yes | rnnlab
    predict RUN -`) is answered as it comes, its memory growing only by what the notes keep of each review (its
    characters the tokenizer cannot read, if any, and its length)."""
    chunk, size, n = [], 0, 0
    while line := sys.stdin.buffer.readline(LONGEST_LINE + 1):
        n += 1
        if len(line) > LONGEST_LINE and not line.endswith(b"\n"):
            raise InputError(f"review {n:,} on stdin is longer than {LONGEST_LINE:,} bytes: give one review per line")
        chunk.append(line.decode("utf-8", errors="replace").removesuffix("\n").removesuffix("\r"))
        size += len(line)
        if len(chunk) == STDIN_CHUNK or size >= CHUNK_BYTES:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def cut_note(cfg, full_lengths) -> str:
    """"" or a line for the user: which reviews are longer than the run reads, and which part of them it read."""
    cut = [i for i, n in enumerate(full_lengths) if cfg.max_len and n > cfg.max_len]
    if not cut:
        return ""
    how, part = f"(max_len {cfg.max_len}, truncate {cfg.truncate})", "last" if cfg.truncate == "tail" else "first"
    if len(full_lengths) == 1:
        return f"the review has {int(full_lengths[0]):,} tokens; the run read its {part} {cfg.max_len} {how}"
    first = f"{int(full_lengths[cut[0]]):,} tokens"
    which = (f"review {cut[0] + 1} of the {len(full_lengths):,} ({first}) is" if len(cut) == 1 else
             f"{len(cut):,} of the {len(full_lengths):,} reviews (the first: review {cut[0] + 1}, {first}) are")
    return (f"{which} longer than the run reads: it read the {part} {cfg.max_len} tokens of "
            f"{'it' if len(cut) == 1 else 'each'} {how}")


# --- experiments, lab, report ---------------------------------------------------------------------------

MAX_SEED = 2**31 - 1  # TrainConfig's bound


class SeedList(click.ParamType):
    """--seeds: distinct non-negative integers, comma-separated."""
    name = "SEEDS"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        items = [v.strip() for v in str(value).split(",")]
        if not all(re.fullmatch(r"[0-9]+", v, re.ASCII) for v in items):
            self.fail(f"{value!r}: give seeds as comma-separated integers, e.g. 3,4,5", param, ctx)
        seeds = tuple(int(v) for v in items)
        if min(seeds) < 0 or max(seeds) > MAX_SEED or len(set(seeds)) != len(seeds):
            self.fail(f"{value!r}: seeds must be distinct, from 0 to {MAX_SEED}", param, ctx)
        return seeds


def _lab_options(f):
    """The options every experiment command shares."""
    for opt in reversed([
        click.option("--data", "data_path", type=str, default=None, help=DATA_HELP),
        click.option("--quick", is_flag=True, help="A data subset, one seed (unless --seeds), short schedules: a smoke "
                                                   "test, not evidence."),
        click.option("--jobs", type=click.IntRange(min=1), default=None,
                     help="Worker processes running independent jobs side by side [default: the cores it may use / --threads]."),
        click.option("--threads", type=click.IntRange(min=1, max=1024), default=1, show_default=True,
                     help="Torch threads per job (results depend on it: summation order)."),
        click.option("--seeds", type=SeedList(), default=None,
                     help="Comma-separated training seeds in place of the lab's (0,1,2; --quick: 0), to rerun the "
                          "evidence on seeds it has not seen, e.g. 3,4,5 (the data subset, the probes and the "
                          "timings stay as they are)."),
        click.option("--ray", "ray_address", default=None,
                     help="Send the jobs to this Ray cluster (e.g. auto, ray://host:10001, or 'local'); "
                          "needs the ray package: `pip install ray`."),
        DEVICE,
    ]):
        f = opt(f)
    return f


def _runner(jobs, threads, ray_address, log):
    from .jobs import Runner

    return Runner(workers=jobs, threads=threads, ray_address=ray_address, log=log)


@contextlib.contextmanager
def _stops_cleanly(out: Path):
    """Ctrl-C/SIGTERM -> exit 130; a failed job or bad input -> one line, exit 2; finished jobs stay."""
    from .jobs import JobError
    from .train import Interrupted

    def resume():  # a lab stopped before its first job's result takes back the folders it made
        if any((out / "jobs").glob("*.json")):
            return f"finished jobs are kept under {out}: rerun the same command to resume"
        return "no job had finished, so none is kept"

    try:
        yield
    except (Interrupted, KeyboardInterrupt) as e:
        _log(f"interrupted ({str(e) or (_SIGNALLED or ['Ctrl-C'])[-1]}); {resume()}")
        sys.exit(130)
    except JobError as e:
        _fail(f"{e}; {resume()}")
    except (DataError, RunError, ConfigError, ValueError) as e:
        _fail(e)


def _experiments(names, data_path, quick, out: Path, device, jobs, threads, ray_address, seeds):
    """Run the named experiments into OUT/<name>/; one JSON verdict line per experiment."""
    from .experiments import EXPERIMENTS
    from .experiments.common import seeds_used
    from .jobs import check_ray
    from .lab import check_out, held, load_data, run_experiments

    with _stops_cleanly(out), seeds_used("quick" if quick else "full", seeds):
        _not_a_run_or_data(out, names)  # first: a read-only folder of data is "holds data", not "cannot write"
        check_out(out, device)
        check_ray(ray_address)  # before the data is read
        ds = load_data(data_path, _log)
        with _runner(jobs, threads, ray_address, _log) as runner, held(out):
            verdicts = run_experiments([EXPERIMENTS[n] for n in names], ds, out, quick=quick, device=device,
                                       runner=runner, log=_log, data_arg=data_path)
    for v in verdicts:
        click.echo(json.dumps({k: v[k] for k in ("experiment", "outcome", "claim", "mode")}
                              | {"conclusion_seconds": v["seconds"], "seeds": v["settings"].get("seeds"),
                                 "dir": str(out / v["experiment"])}))  # the time to judge the rows, not to run them


@main.command()
@click.argument("name", type=click.Choice([*SHORTFALLS, "all"]), metavar="NAME")
@click.option("--out", type=Folder(), default=Path("results/shortfalls"), show_default=True,
              help="Each experiment writes OUT/<name>/{results.csv,<name>.png,<name>.svg,verdict.json}.")
@_lab_options
def shortfall(name, out, **opts):
    """Measure a shortfall of the vanilla RNN (or all four); one JSON verdict line per experiment.

    NAME: long-reviews, vanishing-gradients, serial, bottleneck, or all.
    """
    _experiments(SHORTFALLS if name == "all" else (name,), out=out, **opts)


@main.command()
@click.option("--out", type=Folder(), default=Path("results"), show_default=True,
              help="Writes OUT/compare/{table.csv,results.csv,compare.png,compare.svg,verdict.json}.")
@_lab_options
def compare(out, **opts):
    """RNN, LSTM, GRU, bag-of-words and a Transformer at one budget; resumes an interrupted run."""
    _experiments(("compare",), out=out, **opts)


@main.command()
@click.option("--out", type=Folder(), default=Path("results/lab"), show_default=True,
              help="Writes OUT/<experiment>/ for every experiment and OUT/report.html, OUT/report.md.")
@click.option("--markdown", type=Folder("a file name"), default=None,
              help="Write the report's Markdown twin here (figures copied next to it) instead of OUT/report.md.")
@_lab_options
def lab(out, markdown, data_path, quick, jobs, threads, ray_address, seeds, device):
    """The whole lab: the notebook's exercise, four shortfalls, the comparison, the report. Rerun to resume."""
    from .experiments.common import seeds_used
    from .jobs import check_ray
    from .lab import check_out, held, load_data, run_lab
    from .report import LAB_FOLDERS, figures_folder, not_the_labs_own, writable

    with _stops_cleanly(out), seeds_used("quick" if quick else "full", seeds):
        _not_a_run_or_data(out, [n for n in LAB_FOLDERS if n != "jobs"])  # check_out names what is at jobs
        check_out(out, device)
        if markdown is not None and markdown.is_dir():
            raise RunError(f"{markdown}: is a directory; give a file name for --markdown")
        pages = [out / "report.html", out / "report.md" if markdown is None else markdown]
        for page in [out / "lab.json", *(pages[:1] if markdown is not None else pages)]:
            if page.is_dir():
                what = "record" if page.name == "lab.json" else "report"
                raise RunError(f"{page}: a folder where the lab writes its {what}; move it, or give another --out")
        writable(*pages)  # before the work, not after it
        if markdown is not None:
            figures_folder(out, markdown)
            not_the_labs_own(out, markdown)
            if markdown.resolve() == (out / "report.html").resolve():
                raise RunError(f"{markdown}: the lab writes its HTML report there; give --markdown another file")
        check_ray(ray_address)  # before the data is read
        ds = load_data(data_path, _log)
        with _runner(jobs, threads, ray_address, _log) as runner, held(out):
            result = run_lab(ds, out, quick=quick, device=device, runner=runner, log=_log, data_arg=data_path,
                             markdown=markdown)
    click.echo(json.dumps(result))


def _part_files(name: str) -> tuple[str, ...]:
    """The files of fixed names a part's folder gets (an explained review's page is named by its pick)."""
    return {"seed": ("results.csv", "summary.json", "seed.png", "seed.svg"), "explain": ("picks.json",)}.get(
        name, ("results.csv", "verdict.json", f"{name}.png", f"{name}.svg", *(("table.csv",) * (name == "compare"))))


def _not_a_run_or_data(out: Path, folders) -> None:
    """RunError if --out holds a training run or a dataset (lab, compare or shortfall would mix its files into
    them), or a file where one of the `folders` it writes goes (found after every job had run, otherwise)."""
    for part in (out / name for name in folders):
        if part.exists() and not part.is_dir() or part.is_symlink() and not part.exists():  # a file, a dead link
            raise RunError(f"{part}: a file where the results' {part.name}/ folder goes; move it, or give another --out")
        if part.is_dir() and (part / "config.json").is_file() and (part / "vocab.json").is_file():  # a link to a run
            raise RunError(f"{part}: holds a training run (config.json, vocab.json) where the results' {part.name}/ "
                           "folder goes; move it, or give another --out")
        # a folder, a FIFO or a device where a part's file goes: its write refused it, after every job had run
        for f in (part / name for name in _part_files(part.name)):
            if f.exists() and not f.is_file():
                what = "a folder" if f.is_dir() else "not a regular file (a FIFO, a device)"
                raise RunError(f"{f}: {what} where the results' {part.name}/{f.name} goes; move it, or give another "
                               "--out")
    if out.is_dir() and (out / "config.json").is_file() and (out / "vocab.json").is_file():
        raise RunError(f"{out}: holds a training run (config.json, vocab.json); give the results their own --out")
    if out.is_dir() and any((out / n).exists() for n in ("train.parquet", "test.parquet", "aclImdb")):
        raise RunError(f"{out}: holds data (train.parquet, test.parquet or aclImdb); give the results their own --out")


@main.command("report")
@click.argument("lab_dir", type=Folder(), default=Path("results/lab"), required=False)
@click.option("--out", type=Folder("a file name"), default=None,
              help="The HTML file (one file, figures embedded). Default: LAB_DIR/report.html.")
@click.option("--markdown", type=Folder("a file name"), default=None,
              help="The Markdown twin. Default: next to --out, with .md; its figures are copied into "
                   "<its name>_figures/ next to it when it lies outside LAB_DIR.")
@click.option("--readme", type=Folder("a file name"), default=None,
              help="Also rewrite the results block of this README (between its results markers) from LAB_DIR.")
def report_command(lab_dir, out, markdown, readme):
    """Render LAB_DIR (default results/lab) to one self-contained HTML page and a Markdown twin.

    Reads what `rnnlab lab` leaves (LAB_DIR/<experiment>/); a missing part gets a section naming the
    command that makes it. Prints one JSON line last.
    """
    from .io import atomic_path, held_elsewhere
    from .report import full_lab, pages, readme_text, readme_with_block, writable, write_report

    try:
        html, md = pages(lab_dir, out, markdown)
        if held_elsewhere(lab_dir):  # a lab, shortfall or compare is writing it now
            running = f"{lab_dir}: an rnnlab lab (or shortfall, compare) is writing it now"
            if readme is not None or any(p.resolve().is_relative_to(lab_dir.resolve()) for p in (html, md)):
                raise InputError(f"{running} (a lab renders its report itself when it ends); to look at the parts "
                                 "finished so far, give --out (and --markdown) outside it, without --readme")
            _log(f"note: {running}: this report holds the parts finished so far")
        if readme is None:
            written = write_report(lab_dir, out, markdown)
        else:  # checked first: a README that cannot be updated leaves the report files as they were
            for flag, path in (("--out", html), ("--markdown", md)):
                if readme.resolve() == path.resolve() or (readme.exists() and path.exists()
                                                          and os.path.samefile(readme, path)):  # README.md, readme.md
                    raise InputError(f"{readme}: --readme and {flag} name the same file; give the report another")
            readme_text(readme)
            writable(readme)
            full_lab(lab_dir)
            text = readme_with_block(lab_dir, readme)
            with atomic_path(readme) as tmp:  # renamed onto the README only once the report is written: both or neither
                Path(tmp).write_text(text, encoding="utf-8", newline="")  # its line ends as read, on Windows too
                written = write_report(lab_dir, out, markdown)
    except RunError as e:
        _fail(e)
    for problem in written["problems"]:
        _log(f"warning: {problem}")
    _log(f"report: {written['html']} and {written['markdown']} ({written['summary']})")
    click.echo(json.dumps(written))


from .explain import command as explain_command  # noqa: E402
explain_command.__class__ = Command  # made in explain.py, which cannot import this module (it imports explain)
main.add_command(explain_command, "explain")


if __name__ == "__main__":
    main()
