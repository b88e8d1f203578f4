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


def publish(result: dict, out: str | None) -> None:
    """Add the machine and the commit to `result`, print it as JSON and, with `out`, write it there."""
    result["machine"] = machine()
    env = environment()
    if env.get("git_commit"):
        result["commit"] = env["git_commit"][:7] + (" (uncommitted changes)" if env["git_dirty"] else "")
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
