"""Word2vec embeddings learnt from the training split's own text, to initialise a model's embedding.

    from rnnlab.pretrain import init_embedding, word2vec_embeddings
    vectors, found = word2vec_embeddings(data.train, vocab_size=20000, dim=100, seed=0)  # (20000, 100), (20000,)
    init_embedding(model.embedding, vectors, found)

Labels are never read and no other split is touched: the vectors come from the reviews the model
trains on (after truncation, as the model sees them), so validation and test stay unseen. Skip-gram
with negative sampling (gensim), one worker and a fixed hash so that one seed gives one matrix.
The matrix is rescaled to unit standard deviation, the scale of PyTorch's default N(0, 1)
embedding init, so the rest of a recipe (dropout, learning rate, the Transformer's sqrt(d) scaling)
sees inputs of the size it was tuned for. Words word2vec never kept (fewer than `min_count`
uses), `<unk>` and `<pad>` keep the model's own init, `<pad>` stays zero.
"""
from __future__ import annotations

import zlib

import numpy as np
import torch

from .batching import Encoded


def _stable_hash(s: str) -> int:
    # gensim seeds each word's initial vector with hashfxn(word + seed); Python's hash() is salted
    # per process, crc32 is not
    return zlib.crc32(s.encode())


def word2vec_embeddings(enc: Encoded, vocab_size: int, dim: int, seed: int, epochs: int = 5,
                        window: int = 5, min_count: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """(vectors (vocab_size, dim) float32, found (vocab_size,) bool) learnt from `enc`'s token ids."""
    from gensim.models import Word2Vec

    sentences = [[str(t) for t in enc.ids[s:s + n].tolist()]
                 for s, n in zip(enc.starts.tolist(), enc.lengths.tolist())]
    w2v = Word2Vec(sentences, vector_size=dim, window=window, min_count=min_count, sg=1, negative=5,
                   epochs=epochs, workers=1, seed=seed, hashfxn=_stable_hash)
    vectors = np.zeros((vocab_size, dim), dtype=np.float32)
    found = np.zeros(vocab_size, dtype=bool)
    for word, row in w2v.wv.key_to_index.items():
        i = int(word)
        if 2 <= i < vocab_size:  # never <pad> (0) or <unk> (1)
            vectors[i] = w2v.wv.vectors[row]
            found[i] = True
    if found.any():
        vectors[found] /= vectors[found].std()
    return vectors, found


def init_embedding(embedding: torch.nn.Embedding, vectors: np.ndarray, found: np.ndarray) -> None:
    """Copy the found rows into `embedding` (the rest keep their init)."""
    if vectors.shape != tuple(embedding.weight.shape):
        raise ValueError(f"vectors {vectors.shape} do not match the embedding {tuple(embedding.weight.shape)}")
    rows = torch.from_numpy(np.flatnonzero(found))
    with torch.no_grad():
        embedding.weight[rows] = torch.from_numpy(vectors[found]).to(embedding.weight)
