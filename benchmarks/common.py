"""What the benchmark scripts share: naming the machine, its matmul speed and writing the result."""
import json
import statistics
import time
from pathlib import Path

import torch

from rnnlab.runs import environment


def machine() -> str:
    """This machine in one line: processor, cores, torch."""
    env = environment()
    return f"{env['processor']}, {env['cpu_count']} cores, torch {env['torch']}"


def commit() -> str | None:
    """This checkout's commit, short, and whether it has uncommitted changes; None outside git."""
    env = environment()
    if not env.get("git_commit"):
        return None
    return env["git_commit"][:7] + (" (uncommitted changes)" if env["git_dirty"] else "")


def publish(result: dict, out: str | None) -> None:
    """Add the machine and the commit to `result`, print it as JSON and, with `out`, write it there."""
    result["machine"] = machine()
    if (c := commit()) is not None:
        result["commit"] = c
    print(json.dumps(result, indent=2))
    if out:
        Path(out).write_text(json.dumps(result, indent=2) + "\n")


def sgemm_gflops(n: int = 2048, repeats: int = 7) -> float:
    """Median float32 (n x n) @ (n x n) throughput at the current thread count (GFLOP/s), after a warm-up."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * n ** 3 / statistics.median(times) / 1e9
