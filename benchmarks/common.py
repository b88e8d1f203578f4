"""What the benchmark scripts share: naming the machine and writing the result."""
import json
from pathlib import Path

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
