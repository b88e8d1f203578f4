"""A lab whose worker process is killed (as the kernel's out-of-memory killer would) stops in one line, and rerun
gives the rows of a lab never interrupted.

    python benchmarks/killed_worker.py --data ../shared/data/imdb --out benchmarks/results/killed_worker.json

Three `rnnlab lab --quick --jobs 2` runs into a scratch folder: A uninterrupted; B with one worker process killed
(SIGKILL) once KILL_AFTER jobs have finished, which must stop in one `Error:` line and exit 2; then B rerun, which
resumes from B's finished jobs. Reports B's stop (exit code, its last line, seconds from the kill to the exit),
the rerun's exit code and how many jobs it found done, and A against B by `same_rows.compare` (every results.csv,
timings left out).
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import publish
from same_rows import compare

KILL_AFTER = 3  # finished jobs before the kill: the lab is mid-way through its parallel jobs


def lab(data: str, out: Path) -> list[str]:
    return [sys.executable, "-m", "rnnlab", "lab", "--quick", "--jobs", "2", "--data", data, "--out", str(out)]


def workers(parent: int) -> list[int]:
    """The pids of `parent`'s pool workers (spawn_main in their command line; not the resource tracker)."""
    kids = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return [int(k) for k in kids if b"spawn_main" in Path(f"/proc/{k}/cmdline").read_bytes()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        a, b = Path(tmp) / "a", Path(tmp) / "b"
        first = subprocess.run(lab(args.data, a), capture_output=True, text=True)
        assert first.returncode == 0, first.stderr
        proc = subprocess.Popen(lab(args.data, b), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines, killed = [], None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            m = re.match(r"\[jobs\] (\d+)/\d+ ", line)
            if killed is None and m and int(m.group(1)) >= KILL_AFTER:
                victim = workers(proc.pid)[0]
                os.kill(victim, signal.SIGKILL)
                killed = time.monotonic()
        code = proc.wait()
        stopped = {"exit_code": code, "last_line": lines[-1] if lines else "",
                   "seconds_from_kill_to_exit": round(time.monotonic() - killed, 2) if killed else None,
                   "jobs_finished_before": sum(bool(re.match(r"\[jobs\] \d+/", x)) for x in lines)}
        rerun = subprocess.run(lab(args.data, b), capture_output=True, text=True)
        done = re.search(r"(\d+) of (\d+) jobs already done", rerun.stdout + rerun.stderr)
        names = sorted(p.parent.name for p in a.glob("*/results.csv"))
        result = {"command": "rnnlab lab --quick --jobs 2", "kill_after_jobs": KILL_AFTER, "stopped": stopped,
                  "rerun": {"exit_code": rerun.returncode, "jobs_already_done": done.group(0) if done else None},
                  "same_rows": {n: compare(a / n / "results.csv", b / n / "results.csv") for n in names}}
    publish(result, args.out)


if __name__ == "__main__":
    main()
