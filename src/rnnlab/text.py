"""Tokenise, build the vocabulary, and encode (and cache) the corpus.

    from rnnlab.text import tokenize, encode_corpus
    tokenize("Great film!<br />Loved it")       # ['great', 'film', 'br', 'loved', 'it']
    corpus = encode_corpus(dataset, strip_html=False)   # cached on disk after the first run
    vocab = corpus.vocab(20000)                         # <pad>=0, <unk>=1, then top train words

The tokenizer is the notebook's: lowercase, every character outside [a-z0-9] and whitespace
becomes a space, split on whitespace. `strip_html` first removes the site's `<br />` tags.
Vocabulary order is by train count, ties broken alphabetically, so it never depends on
row order. An empty review (no tokens) is read as a single `<unk>`.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import Dataset

PAD, UNK = 0, 1
_NON_ALNUM = re.compile(r"[^a-z0-9\s]")
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
CACHE_VERSION = 1


def tokenize(text: str, strip_html: bool = False) -> list[str]:
    """The notebook's basic_english_tokenizer, optionally without `<br />` tags."""
    if strip_html:
        text = _BR.sub(" ", text)
    return _NON_ALNUM.sub(" ", text.lower()).split()


class Vocab:
    """Word <-> id map: <pad>=0, <unk>=1, then words by descending train count."""

    def __init__(self, itos: list[str], strip_html: bool = False):
        if len(itos) < 2 or itos[0] != "<pad>" or itos[1] != "<unk>":
            raise ValueError("vocabulary must start with <pad>, <unk>")
        self.itos = list(itos)
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("vocabulary has duplicate words")
        self.strip_html = strip_html

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        ids = [self.stoi.get(t, UNK) for t in tokenize(text, self.strip_html)]
        return ids or [UNK]

    def to_json(self) -> dict:
        return {"tokenizer": {"name": "seed_basic_english", "strip_html": self.strip_html},
                "itos": self.itos}

    @classmethod
    def from_json(cls, d: dict) -> "Vocab":
        if not isinstance(d, dict) or not isinstance(d.get("itos"), list):
            raise ValueError("vocab.json needs an 'itos' list")
        if not all(isinstance(w, str) for w in d["itos"]):
            raise ValueError("vocab.json 'itos' must hold strings")
        tok = d.get("tokenizer", {})
        return cls(d["itos"], bool(tok.get("strip_html", False)))


@dataclass
class Corpus:
    """The dataset tokenised once: word ids by train rank, flat arrays plus offsets.

    Ids are `rank + 2` in the full train ranking (words seen only in test get the id
    just past the last ranked word), so a vocabulary of any size is one `np.where` away.
    """

    words: list[str]  # all train words, most frequent first
    counts: np.ndarray  # (W,) train counts, aligned with words
    train_ids: np.ndarray  # (n_train_tokens,) int32
    train_offsets: np.ndarray  # (N_train + 1,) int64
    test_ids: np.ndarray
    test_offsets: np.ndarray
    strip_html: bool
    key: str

    def vocab(self, size: int) -> Vocab:
        return Vocab(["<pad>", "<unk>"] + self.words[: size - 2], self.strip_html)

    def split(self, name: str, vocab_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(flat ids remapped to the vocabulary, starts, lengths) of 'train' or 'test'."""
        ids = self.train_ids if name == "train" else self.test_ids
        off = self.train_offsets if name == "train" else self.test_offsets
        limit = min(vocab_size, len(self.words) + 2)  # a small corpus may have fewer words than asked
        ids = np.where(ids < limit, ids, UNK).astype(np.int64)  # test-only words -> <unk>
        return ids, off[:-1].copy(), np.diff(off)


def _encode_texts(texts: list[str], strip_html: bool) -> tuple[list[list[str]], np.ndarray]:
    toks = [tokenize(t, strip_html) or ["<unk>"] for t in texts]
    offsets = np.zeros(len(toks) + 1, dtype=np.int64)
    np.cumsum([len(t) for t in toks], out=offsets[1:])
    return toks, offsets


def dataset_fingerprint(ds: Dataset) -> str:
    h = hashlib.sha256()
    for split in (ds.train, ds.test):
        h.update(str(len(split)).encode())
        for t in split.texts:
            h.update(t.encode("utf-8", "surrogatepass"))
            h.update(b"\x00")
        h.update(split.labels.tobytes())
    return h.hexdigest()


def cache_dir() -> Path:
    return Path(os.environ.get("RNNLAB_CACHE", Path.home() / ".cache" / "rnnlab"))


def encode_corpus(ds: Dataset, strip_html: bool = False, use_cache: bool = True,
                  progress=None) -> Corpus:
    """Tokenise train and test; cached on disk keyed by the data and text settings."""
    key = hashlib.sha256(
        f"{dataset_fingerprint(ds)}|strip_html={strip_html}|v{CACHE_VERSION}".encode()
    ).hexdigest()[:24]
    path = cache_dir() / f"corpus-{key}.npz"
    if use_cache and path.exists():
        try:
            return _load_corpus(path, strip_html, key)
        except (OSError, ValueError, KeyError):
            pass  # a broken cache entry is rebuilt below
    if progress:
        progress("tokenising train and test (first run only; cached afterwards)")
    tr_toks, tr_off = _encode_texts(ds.train.texts, strip_html)
    te_toks, te_off = _encode_texts(ds.test.texts, strip_html)
    from collections import Counter

    counter = Counter()
    for t in tr_toks:
        counter.update(t)
    counter.pop("<unk>", None)  # placeholder of empty reviews, not a word
    ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    words = [w for w, _ in ranked]
    counts = np.array([c for _, c in ranked], dtype=np.int64)
    index = {w: i + 2 for i, w in enumerate(words)}
    index["<unk>"] = UNK
    oov = len(words) + 2
    tr_ids = np.fromiter((index[w] for t in tr_toks for w in t), dtype=np.int32, count=int(tr_off[-1]))
    te_ids = np.fromiter((index.get(w, oov) for t in te_toks for w in t), dtype=np.int32,
                         count=int(te_off[-1]))
    corpus = Corpus(words, counts, tr_ids, tr_off, te_ids, te_off, strip_html, key)
    if use_cache:
        _save_corpus(path, corpus)
    return corpus


def _save_corpus(path: Path, c: Corpus) -> None:
    from .io import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, words=np.frombuffer(json.dumps(c.words).encode(), dtype=np.uint8),
                     counts=c.counts, train_ids=c.train_ids, train_offsets=c.train_offsets,
                     test_ids=c.test_ids, test_offsets=c.test_offsets)


def _load_corpus(path: Path, strip_html: bool, key: str) -> Corpus:
    with np.load(path, allow_pickle=False) as z:
        words = json.loads(z["words"].tobytes().decode())
        return Corpus(words, z["counts"], z["train_ids"], z["train_offsets"],
                      z["test_ids"], z["test_offsets"], strip_html, key)
