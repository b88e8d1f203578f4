"""`python -m rnnlab ...` and the `rnnlab` console script: the command, after its libraries load.

Loading them (torch above all) takes a second or more; Ctrl-C, SIGTERM or SIGHUP meanwhile stop the command
with one line, as they do later, instead of a traceback from inside an import or no line at all.
"""
import atexit
import signal
import sys

_EARLY = [s for s in (signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None]


def _stop(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _exit_code_stands() -> None:
    """At exit: under `python -m`, CPython ends the process by SIGINT, whatever its exit code, where an interrupt left
    Python code that C ran through PyRun_String (as pybind11 runs a library's), which marks it "unhandled" though
    rnnlab handled it (its line said, exit 130; a caller saw -2 after 6 of 80 SIGTERMs to `predict`). Running an
    empty string that way clears the mark."""
    try:
        import ctypes

        ctypes.pythonapi.PyRun_SimpleString(b"")
    except Exception:  # not CPython
        pass


_stop.early = True  # rnnlab.cli.Main replaces it (under `python -m` this module is __main__, not rnnlab.__main__)


def main() -> None:
    for sig in _EARLY:
        if signal.getsignal(sig) == signal.SIG_DFL:  # not one ignored (nohup) or handled by the caller
            signal.signal(sig, _stop)
    # the signals are held (not lost) until cli.Main can stop the command with its line: inside torch's C++ import
    # code a Ctrl-C aborted the process, and after the imports it was click's "Aborted!" (3 in ~250 timed tries)
    held = None
    if hasattr(signal, "pthread_sigmask"):
        held = signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT, *_EARLY])
    try:
        from . import cli
        from .cli import main as command
    except (KeyboardInterrupt, ImportError) as e:  # ImportError: an interrupt inside a compiled library's import
        stop = e
        if isinstance(e, ImportError):
            from .io import interrupt_in

            if (stop := interrupt_in(e)) is None:
                raise
        if sys.stderr is not None:  # started with stderr closed (2>&-): nothing to say it on
            sys.stderr.write(f"interrupted ({str(stop) or 'Ctrl-C'}) while starting; nothing was done\n")
        sys.exit(130)
    # a signal once the command's work is over is ignored while the process exits; not where a host lives on
    # after it (IPython's `%run -m rnnlab`, an interactive interpreter), whose Ctrl-C must keep working
    cli.HELD_MASK = held  # the mask before this process held them: restored by cli.Main as it reads the arguments
    cli.HOLD_SIGNALS = held is not None
    cli.WHOLE_PROCESS = not ("IPython" in sys.modules or hasattr(sys, "ps1") or sys.flags.interactive)
    if cli.WHOLE_PROCESS:
        atexit.register(_exit_code_stands)
    command(prog_name="rnnlab")  # whose rnnlab.cli.Main puts its own handler in place of _stop


if __name__ == "__main__":  # not in the lab's spawned worker processes, which import this module
    main()
