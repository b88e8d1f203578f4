"""Turn encoded reviews into padded batches: length-bucketed (default) or random.

    enc = Encoded.from_corpus(corpus, "train", ds.train.labels, vocab_size=20000, max_len=400, truncate="tail")
    for idx in batch_indices(enc.lengths, 64, "bucket", seed=0, epoch=1):
        tokens, lengths, labels = enc.collate(idx)   # (B, T) int64, (B,), (B,) float
    for idx in sorted_batches(enc.lengths, 64, max_tokens=262144): ...  # evaluation: by length, fixed order

Bucketing sorts reviews of similar length together so a batch carries almost no padding;
the batch order and contents are reshuffled each epoch from (seed, epoch) alone, so a
resumed run sees exactly the batches an uninterrupted one would. `random` is the notebook's
DataLoader(shuffle=True). Truncation is a view: `head` keeps the first max_len tokens,
`tail` the last.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

POOL_BATCHES = 50  # bucket within pools of 50 batches: similar lengths, still well mixed


@dataclass
class Encoded:
    """A split as flat token ids with per-review start and length (after truncation)."""

    ids: np.ndarray  # (n_tokens,) int64
    starts: np.ndarray  # (N,) int64
    lengths: np.ndarray  # (N,) int64, >= 1
    labels: np.ndarray  # (N,) int64
    full: "Encoded | None" = None  # the same reviews before truncation (None: these are)

    @classmethod
    def from_corpus(cls, corpus, split: str, labels: np.ndarray, vocab_size: int,
                    max_len: int = 0, truncate: str = "head") -> "Encoded":
        ids, starts, lengths = corpus.split(split, vocab_size)
        return cls(ids, starts, lengths, np.asarray(labels, dtype=np.int64)).truncated(max_len, truncate)

    @classmethod
    def from_lists(cls, seqs: list[list[int]], labels) -> "Encoded":
        lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        if (lengths < 1).any():
            raise ValueError("every sequence needs at least one token")
        starts = np.zeros(len(seqs), dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        ids = np.fromiter((t for s in seqs for t in s), dtype=np.int64, count=int(lengths.sum()))
        return cls(ids, starts, lengths, np.asarray(labels, dtype=np.int64))

    def truncated(self, max_len: int, truncate: str) -> "Encoded":
        if max_len <= 0:
            return self
        keep = np.minimum(self.lengths, max_len)
        starts = self.starts + (self.lengths - keep if truncate == "tail" else 0)
        return Encoded(self.ids, starts, keep, self.labels, self.untruncated())

    def untruncated(self) -> "Encoded":
        return self if self.full is None else self.full

    def subset(self, idx: np.ndarray) -> "Encoded":
        return Encoded(self.ids, self.starts[idx], self.lengths[idx], self.labels[idx],
                       None if self.full is None else self.full.subset(idx))

    def __len__(self) -> int:
        return len(self.lengths)

    def collate(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Right-padded (B, T) token ids with pad=0, lengths (B,), float labels (B,)."""
        lengths = self.lengths[idx]
        T = int(lengths.max())
        pos = np.arange(T)
        mask = pos[None, :] < lengths[:, None]  # (B, T)
        gather = np.where(mask, self.starts[idx][:, None] + pos[None, :], 0)
        tokens = np.where(mask, self.ids[gather], 0)
        return (torch.from_numpy(tokens), torch.from_numpy(lengths.copy()),
                torch.from_numpy(self.labels[idx].astype(np.float32)))


def sorted_batches(lengths: np.ndarray, batch_size: int, max_tokens: int = 0) -> list[np.ndarray]:
    """Evaluation's batches: sorted by length (minimal padding), in a fixed order. With `max_tokens`, a batch
    also ends before its padded size (reviews x its longest) would pass max_tokens; a longer review runs alone."""
    order = np.argsort(lengths, kind="stable")
    if not max_tokens or len(lengths) == 0 or batch_size * int(lengths.max()) <= max_tokens:
        return [order[i:i + batch_size] for i in range(0, len(lengths), batch_size)]
    batches, start = [], 0
    for i in range(1, len(order) + 1):
        if i == len(order) or i - start == batch_size or (i - start + 1) * int(lengths[order[i]]) > max_tokens:
            batches.append(order[start:i])
            start = i
    return batches


def batch_indices(lengths: np.ndarray, batch_size: int, mode: str = "bucket", seed: int = 0,
                  epoch: int = 0) -> list[np.ndarray]:
    """Training's batches, as index arrays, reshuffled each epoch. Deterministic in (seed, epoch)."""
    n = len(lengths)
    rng = np.random.default_rng([seed, epoch])
    perm = rng.permutation(n)
    if mode == "random":
        return [perm[i:i + batch_size] for i in range(0, n, batch_size)]
    if mode != "bucket":
        raise ValueError(f"unknown batching mode {mode!r}")
    pool = batch_size * POOL_BATCHES
    batches = []
    for p in range(0, n, pool):
        chunk = perm[p:p + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]
