"""How much memory the host can still give, and how much a model needs to read a batch of tokens.

    from rnnlab.memory import GRADIENTS, memory_available, require, token_bytes
    require(B * T * token_bytes(model), "reading it")               # TooLong where a forward pass would not fit
    require(T * GRADIENTS * token_bytes(model), "explaining it")     # with a backward to the embeddings

Linux grants more memory than it has and kills the process that touches it, without a message; so a command
that would need more than is available says so before it starts.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

from .io import RunError

FLOAT = 4  # bytes of a float32
TOKEN_OVERHEAD = 64  # int64 ids, mask, gather and lengths of the padded batch, per token
GRADIENTS = 3  # a backward to the embeddings holds up to 2.5x `token_bytes` (the LSTM's saved gates; measured)
CHECK_FROM = 64 << 20  # a need below this is not checked (reading the memory available costs ~70 us)


class TooLong(RunError):
    """Reviews longer than the model can read in the memory available, refused before they are read."""

    def __init__(self, facts: str, advice: str):
        super().__init__(f"{facts}; {advice}")
        self.facts = facts


def require(need: int, what: str, advice: str = "give shorter reviews, or use a run trained with a --max-len") -> None:
    """TooLong naming `what` where `need` bytes exceed the memory available."""
    if need < CHECK_FROM:
        return
    have = memory_available()
    if have is not None and need > have:
        raise TooLong(f"{what} needs about {size(need)} and {size(have)} is available", advice)


def memory_available(meminfo: str = "/proc/meminfo", cgroup: str = "/sys/fs/cgroup") -> int | None:
    """Bytes of memory the host can still give this process: Linux's MemAvailable plus free swap, or less where its
    cgroup's limit (v2 memory.max, v1 memory.limit_in_bytes) is nearer, counting the cgroup's reclaimable page cache
    (inactive_file) as free. None where unknown (not Linux)."""
    try:
        with open(meminfo) as f:
            info = {k: int(v.split()[0]) * 1024 for k, v in (line.split(":", 1) for line in f if ":" in line)}
        have = info["MemAvailable"] + info.get("SwapFree", 0)
    except (OSError, ValueError, KeyError, IndexError):
        return None
    root = Path(cgroup)
    for limit_file, usage_file, stat_file, key in (("memory.max", "memory.current", "memory.stat", "inactive_file"),
                                                   ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes",
                                                    "memory/memory.stat", "total_inactive_file")):
        try:
            limit = (root / limit_file).read_text().strip()
        except OSError:
            continue
        with contextlib.suppress(OSError, ValueError):
            if limit != "max" and int(limit) < 1 << 60:  # v1 says "no limit" with a number near 2**63
                stat = dict(line.split() for line in (root / stat_file).read_text().splitlines() if line.strip())
                used = int((root / usage_file).read_text()) - int(stat.get(key, 0))
                have = min(have, max(0, int(limit) - used))
        break
    return have


def token_bytes(model) -> int:
    """A bound on the bytes a forward pass without gradients holds per token of its padded batch.

    From the sizes of the activations each kind keeps alive at once (float32); tests/test_memory.py measures the
    peak resident memory of a pass of every kind over 200,000 tokens (the Transformer 20,000) against it: the bound
    was 1.2-1.6x what a forward pass took, and GRADIENTS times it 1.2-3.6x what a backward to the embeddings took."""
    from .models import BagOfEmbeddings, CNNClassifier, RecurrentClassifier, TransformerClassifier

    E = model.embedding.embedding_dim
    if isinstance(model, RecurrentClassifier):
        floats = 2 * E + 3 * model.rnn.hidden_size * model.rnn.num_layers  # embeddings, [x | 1], states, gates
    elif isinstance(model, CNNClassifier):
        floats = 2 * E + 3 * model.conv.out_channels
    elif isinstance(model, TransformerClassifier):
        layer = model.encoder.layers[0]
        floats = 4 * E + (8 * E + 2 * layer.linear1.out_features) * len(model.encoder.layers)
    elif isinstance(model, BagOfEmbeddings):
        floats = 3 * E
    else:
        raise TypeError(f"no memory bound for {type(model).__name__}")
    return FLOAT * floats + TOKEN_OVERHEAD


def size(n: int) -> str:
    """Bytes as text: '53.8 GB', '67 MB'."""
    return f"{n / 2**30:,.1f} GB" if n >= 2**30 else f"{n / 2**20:,.0f} MB"
