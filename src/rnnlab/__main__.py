"""`python -m rnnlab ...` and the `rnnlab` console script: the command, after its libraries load.

Loading them (torch above all) takes a second or more; Ctrl-C, SIGTERM or SIGHUP meanwhile stop the command
with one line, as they do later, instead of a traceback from inside an import or no line at all.
"""
import signal
import sys

_EARLY = [s for s in (signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None]


def _stop(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main() -> None:
    mine = [s for s in _EARLY if signal.getsignal(s) == signal.SIG_DFL]  # not one ignored (nohup) or handled
    for sig in mine:
        signal.signal(sig, _stop)
    try:
        from .cli import main as command
    except KeyboardInterrupt as e:
        sys.stderr.write(f"interrupted ({str(e) or 'Ctrl-C'}) while starting; nothing was done\n")
        sys.exit(130)
    for sig in mine:  # the command installs its own (rnnlab.cli.Main)
        signal.signal(sig, signal.SIG_DFL)
    command(prog_name="rnnlab")


if __name__ == "__main__":  # not in the lab's spawned worker processes, which import this module
    main()
