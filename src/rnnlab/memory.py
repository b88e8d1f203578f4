"""How much memory the host can still give, and how much a model needs to read a batch of tokens.

    from rnnlab.memory import fitting, most, require, token_bytes
    batches = fitting(batches, lengths, token_bytes(model))   # evaluation's batches, split where memory is short
    require(B * T * token_bytes(model, backward=True), "training on it", "use a --max-len")   # else TooLong
    k = most(n, each)                                          # how many of n parts of `each` bytes fit at once

Linux grants more memory than it has and kills the process that touches it, without a message; so a command
that would need more than is available says so before it starts, in one line (TooLong).
"""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import numpy as np

from .io import RunError

FLOAT = 4  # bytes of a float32
TOKEN_OVERHEAD = 64  # int64 ids, mask, gather and lengths of the padded batch, per token
CHECK_FROM = 64 << 20  # a need below this is not checked (reading the memory available costs ~70 us)
WORKSPACE = 64 << 20  # added to a need that is checked: fixed buffers beside the per-token ones (a Transformer's ~40 MB)
READ_ADVICE = "give shorter reviews, or use a run trained with a --max-len"


class TooLong(RunError):
    """Reviews longer than the model can read in the memory available, refused before they are read."""

    def __init__(self, facts: str, advice: str):
        super().__init__(f"{facts}; {advice}")
        self.facts = facts


def require(need: int, what: str, advice: str = READ_ADVICE) -> None:
    """TooLong naming `what` where `need` bytes exceed the memory available."""
    if need < CHECK_FROM:
        return
    have = memory_available()
    if have is not None and need + WORKSPACE > have:
        raise TooLong(f"{what} needs about {size(need + WORKSPACE)} and {size(have)} is available", advice)


def most(n: int, each: int) -> int:
    """How many of n parts needing `each` bytes fit in the memory available at once: n where it is not checked,
    at least 1 (whether one fits is `require`'s to say)."""
    have = memory_available() if n * each >= CHECK_FROM else None
    return n if have is None else max(1, min(n, (have - WORKSPACE) // max(each, 1)))


def fitting(batches: list[np.ndarray], lengths: np.ndarray, per_token: int) -> list[np.ndarray]:
    """Evaluation's `batches` (index arrays sorted by length), each needing its reviews x its longest x `per_token`
    bytes, halved where the memory available is short of that, in the same order; TooLong for a review that cannot
    fit alone. Checked before any is read, the memory read once."""
    def need(b):
        return len(b) * int(lengths[b[-1]]) * per_token + WORKSPACE

    if not batches or max(map(need, batches)) < CHECK_FROM + WORKSPACE or (have := memory_available()) is None:
        return batches
    out, todo = [], batches[::-1]
    while todo:
        b = todo.pop()
        if need(b) <= have:
            out.append(b)
        elif len(b) == 1:
            raise TooLong(f"review number {b[0] + 1} has {int(lengths[b[0]]):,} tokens: reading it needs about "
                          f"{size(need(b))} and {size(have)} is available", READ_ADVICE)
        else:
            todo += [b[len(b) // 2:], b[:len(b) // 2]]
    return out


OUT_OF_MEMORY = ("out of memory", "can't allocate memory", "not enough memory",  # torch's CUDA and CPU allocators
                 "cannot allocate memory")  # ENOMEM's strerror (a failed mmap)


def is_out_of_memory(e: BaseException) -> bool:
    """A CUDA or host allocation failure: MemoryError, torch's OutOfMemoryError, or the RuntimeError of torch's CPU
    allocator, which says so in words (not any error that names memory: CUDA's "an illegal memory access")."""
    torch = sys.modules.get("torch")  # not imported: not torch's error
    return (isinstance(e, MemoryError) or (torch is not None and isinstance(e, torch.OutOfMemoryError))
            or any(words in str(e).lower() for words in OUT_OF_MEMORY))


def memory_available(meminfo: str = "/proc/meminfo", cgroup: str = "/sys/fs/cgroup",
                     membership: str = "/proc/self/cgroup") -> int | None:
    """Bytes of memory the host can still give this process: Linux's MemAvailable plus free swap, or less where a
    cgroup's limit (v2 memory.max, v1 memory.limit_in_bytes) is nearer: this process's own group's (`membership`
    names it), each parent's up to the mount, and the mount's own; a group's reclaimable page cache (inactive_file)
    counted as free; or less where this process's address space is capped (`ulimit -v`) nearer. None where unknown
    (not Linux)."""
    try:
        with open(meminfo) as f:
            info = {k: int(v.split()[0]) * 1024 for k, v in (line.split(":", 1) for line in f if ":" in line)}
        have = info["MemAvailable"] + info.get("SwapFree", 0)
    except (OSError, ValueError, KeyError, IndexError):
        return None
    for folder, v2 in cgroup_folders("memory", Path(cgroup), membership):
        limit_file, usage_file, stat_file, key = _V2 if v2 else _V1
        try:
            limit = (folder / limit_file).read_text().strip()
        except OSError:
            continue
        with contextlib.suppress(OSError, ValueError):
            if limit != "max" and int(limit) < 1 << 60:  # v1 says "no limit" with a number near 2**63
                stat = dict(line.split() for line in (folder / stat_file).read_text().splitlines() if line.strip())
                used = int((folder / usage_file).read_text()) - int(stat.get(key, 0))
                have = min(have, max(0, int(limit) - used))
    return min(have, _address_space_left())


def _address_space_left() -> int:
    """Bytes this process may still map under its RLIMIT_AS (`ulimit -v`): its limit less what it maps now."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft == resource.RLIM_INFINITY:
            return 1 << 62
        with open("/proc/self/status") as f:
            mapped = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
        return max(0, soft - mapped)
    except (ImportError, OSError, ValueError, StopIteration):
        return 1 << 62


_V2 = ("memory.max", "memory.current", "memory.stat", "inactive_file")
_V1 = ("memory.limit_in_bytes", "memory.usage_in_bytes", "memory.stat", "total_inactive_file")


def cgroup_folders(controller: str, root: Path, membership: str) -> list[tuple[Path, bool]]:
    """The cgroup folders whose `controller` ("memory", "cpu") limits may apply to this process, each with whether it
    is cgroup v2's: its own group and each parent below the mount (from /proc/self/cgroup: "0::/a/b" for v2,
    "4:memory:/a/b" for v1), then the mounts' roots (a container with its own cgroup namespace sees its group there)."""
    mounts = {"": (root, True), controller: (root / controller, False)}
    try:
        lines = Path(membership).read_text().splitlines()
    except (OSError, ValueError):
        lines = []
    folders = []
    for line in lines:
        _, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        kind = "" if controllers == "" else controller if controller in controllers.split(",") else None
        names = path.split("/")[1:] if path.startswith("/") else [".."]  # a group's name may hold spaces or ':'
        if kind is None or ".." in names:  # ".." never comes from the kernel: nothing outside the mount is read
            continue
        base, v2 = mounts[kind]
        folder = base.joinpath(*names)
        while folder != base and base in folder.parents:
            folders.append((folder, v2))
            folder = folder.parent
    return folders + list(mounts.values())


def token_bytes(model, backward: bool = False) -> int:
    """A bound on the bytes a pass holds per token of its padded batch: without gradients, or with a backward (to the
    embeddings' output as explain takes it, or to the weights as training does).

    From the sizes of the activations each kind keeps alive at once (float32), times what a backward adds per kind;
    tests/test_memory.py measures the peak resident memory of passes of every kind against it, at sizes where
    embed_dim or hidden_dim dominates (its 16 SIZES: 0.13-0.87 of the bound with WORKSPACE, by
    benchmarks/memory_bound.py). Not counted: tens of MB of fixed buffers (a Transformer's ~40 MB), which every
    check adds as WORKSPACE."""
    from .models import BagOfEmbeddings, CNNClassifier, RecurrentClassifier, TransformerClassifier

    E = model.embedding.embedding_dim
    if isinstance(model, RecurrentClassifier):  # embeddings, [x | 1]; states and gates, kept every step for a backward
        H = model.rnn.hidden_size * model.rnn.num_layers  # (the LSTM's, the GRU's: ~10 H measured)
        floats = 3 * E + 4 * H
        grads = 6 * E + 4 * H * (1.5 if model.kind == "rnn" else 3.5)  # ~4.5 E measured where E dominates
    elif isinstance(model, CNNClassifier):
        floats = 7 * E + 3 * model.conv.out_channels  # the convolution's unfolded input: kernel (5) x E
        grads = floats
    elif isinstance(model, TransformerClassifier):
        layer = model.encoder.layers[0]
        floats = 4 * E + (8 * E + 2 * layer.linear1.out_features) * len(model.encoder.layers)
        grads = 2.5 * floats
    elif isinstance(model, BagOfEmbeddings):
        floats, grads = 3 * E, 4.5 * E
    else:
        raise TypeError(f"no memory bound for {type(model).__name__}")
    return int(FLOAT * (grads if backward else floats)) + TOKEN_OVERHEAD


def size(n: int) -> str:
    """Bytes as text: '53.8 GB', '67 MB', '1.5 MB'."""
    return f"{n / 2**30:,.1f} GB" if n >= 2**30 else f"{n / 2**20:,.0f} MB" if n >= 10 << 20 else f"{n / 2**20:.1f} MB"
