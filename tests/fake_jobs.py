"""Job functions for tests/test_jobs.py: `Job("fake_jobs:echo", {...})`.

A module of its own (not a test module) so that spawn worker processes and Ray workers can import it
by name: they get this process's sys.path, which holds tests/. Every call leaves a file in `calls`
(one per call, so concurrent workers never share a file), which is how the tests count executions.
"""
from __future__ import annotations

import os
import time
import uuid
from pathlib import Path


def _called(calls: str | None, name: str) -> None:
    if calls:
        Path(calls).mkdir(parents=True, exist_ok=True)
        (Path(calls) / f"{name}.{os.getpid()}.{uuid.uuid4().hex}").write_text("")


def echo(ds, name: str, calls: str | None = None, sleep: float = 0.0, keep: bool = False) -> list[dict] | dict:
    """One row: who ran it (pid, torch threads), on which data, and when; with `keep` a file too, as a job that
    keeps its model (rnnlab.experiments.common.fit_job)."""
    import torch

    start = time.time()
    _called(calls, name)
    time.sleep(sleep)
    rows = [{"part": "echo", "name": name, "pid": os.getpid(), "threads": torch.get_num_threads(),
             "data": ds.fingerprint(), "reviews": len(ds.train), "start": start, "end": time.time()}]
    return {"rows": rows, "files": {"kept.txt": name.encode()}} if keep else rows


def fail(ds, name: str, kind: str = "ValueError", calls: str | None = None, sleep: float = 0.0) -> list[dict]:
    """Raises `kind` (a builtin exception's name) after `sleep` seconds."""
    _called(calls, name)
    time.sleep(sleep)
    raise {"ValueError": ValueError, "RuntimeError": RuntimeError, "KeyError": KeyError}[kind](f"{name} broke")


def calls(d: Path, name: str) -> int:
    """How many times the job named `name` ran (files left in `d`)."""
    return len(list(Path(d).glob(f"{name}.*"))) if Path(d).is_dir() else 0


def die(ds, name: str, calls: str | None = None, sleep: float = 0.0) -> list[dict]:
    """Kills its own worker process after `sleep` seconds, as the kernel's out-of-memory killer would."""
    import signal

    _called(calls, name)
    time.sleep(sleep)
    os.kill(os.getpid(), signal.SIGKILL)
    return []


def nan(ds, name: str) -> list[dict]:
    """A row whose measurement failed (NaN), as a vanishing-gradient ratio that underflowed."""
    return [{"part": "nan", "name": name, "value": float("nan")}]
