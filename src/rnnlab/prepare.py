"""Data preparation: from loaded reviews to the encoded train, validation and test splits of one config.

    from rnnlab.prepare import prepare, subsample
    data = prepare(cfg, load_imdb("../shared/data/imdb"))   # data.train, data.val, data.test, data.vocab
    small = subsample(ds, n_train=2000, n_test=1000)        # a seeded, class-balanced subset

Tokenising is cached on disk (rnnlab.text); the vocabulary is the `vocab_size` most frequent
training words; each review is cut to `max_len` tokens (its head or its tail); the validation
split is `val_fraction` of each class of train, seeded by `cfg.seed`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .batching import Encoded
from .config import TrainConfig
from .data import DataError, Dataset, Split
from .text import Vocab, encode_corpus


@dataclass
class Prepared:
    """Encoded splits and the vocabulary of one configuration (val None: no validation split)."""

    train: Encoded
    val: Encoded | None
    test: Encoded | None
    vocab: Vocab
    source: str


def prepare(cfg: TrainConfig, ds: Dataset, log: Callable[[str], None] = lambda s: None) -> Prepared:
    """Tokenise (cached), build the vocabulary, truncate, carve the validation split."""
    corpus = encode_corpus(ds, cfg.strip_html, progress=log)
    full = Encoded.from_corpus(corpus, "train", ds.train.labels, cfg.vocab_size, cfg.max_len, cfg.truncate)
    test = Encoded.from_corpus(corpus, "test", ds.test.labels, cfg.vocab_size, cfg.max_len, cfg.truncate)
    val = None
    if cfg.val_fraction > 0:
        tr_idx, val_idx = stratified_split(full.labels, cfg.val_fraction, cfg.seed)
        full, val = full.subset(tr_idx), full.subset(val_idx)
        if len(val) == 0 or len(full) == 0:  # (the loaded train split itself is never empty: data.py checks)
            raise DataError(f"{ds.source}: val_fraction {cfg.val_fraction:g} of {len(tr_idx) + len(val_idx)} training "
                            f"reviews leaves {'no validation' if len(val) == 0 else 'no training'} reviews; "
                            "use more data (or, training one run, another --val-fraction)")
    vocab = corpus.vocab(cfg.vocab_size)
    if len(vocab) <= 2:  # <pad> and <unk> only: every review would read as <unk>s, and accuracy be chance
        raise DataError(f"{ds.source}: the training reviews hold no words (every text is empty, or punctuation "
                        "and tags only): there is nothing to learn from")
    return Prepared(full, val, test, vocab, ds.source)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, val_idx): `fraction` of each class to validation, seeded."""
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        val.append(rng.permutation(idx)[: int(round(len(idx) * fraction))])
    val_idx = np.sort(np.concatenate(val))
    return np.setdiff1d(np.arange(len(labels)), val_idx), val_idx


def balanced_indices(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray | None:
    """The positions `subsample` keeps of a split with these labels, ascending (None: it keeps the whole split)."""
    if n <= 0 or n >= len(labels):
        return None
    rng = np.random.default_rng(seed)
    idx = [rng.choice(c, min(len(c), n // 2), replace=False) for c in (np.flatnonzero(labels == y) for y in (0, 1))]
    return np.sort(np.concatenate(idx))


def subsample(ds: Dataset, n_train: int, n_test: int, seed: int = 0) -> Dataset:
    """A seeded, class-balanced subset: n/2 reviews of each class (n <= 0: the whole split)."""

    def pick(split: Split, n: int) -> Split:
        idx = balanced_indices(split.labels, n, seed)
        return split if idx is None else split.subset(idx)

    if n_train <= 0 and n_test <= 0:
        return ds
    train, test = pick(ds.train, n_train), pick(ds.test, n_test)
    n = [len(s) if len(s) < len(whole) else "all" for s, whole in ((train, ds.train), (test, ds.test))]
    return Dataset(train, test, f"{ds.source} (subset: {n[0]} train / {n[1]} test, seed {seed})")
