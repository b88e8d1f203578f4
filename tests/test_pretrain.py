"""Word2vec embedding init: learnt from the training split only, deterministic, copied into the model."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from rnnlab.batching import Encoded
from rnnlab.config import ConfigError, TrainConfig, with_overrides
from rnnlab.data import load_imdb
from rnnlab.pretrain import init_embedding, word2vec_embeddings
from rnnlab.runs import Run
from rnnlab.train import prepare, train

from test_train import SMALL


def _two_topics(n=400, seed=0) -> Encoded:
    """Reviews drawing their words from topic A (ids 2-6) or topic B (ids 7-11), never both."""
    rng = np.random.default_rng(seed)
    seqs = [list(rng.integers(2, 7, 12) if i % 2 else rng.integers(7, 12, 12)) for i in range(n)]
    return Encoded.from_lists(seqs, np.arange(n) % 2)


def test_word2vec_vectors_place_words_of_one_context_together():
    vectors, found = word2vec_embeddings(_two_topics(), vocab_size=14, dim=8, seed=0, epochs=20, min_count=1)
    assert vectors.shape == (14, 8) and vectors.dtype == np.float32
    assert found.tolist() == [False, False] + [True] * 10 + [False, False]  # never <pad>/<unk>; 12, 13 unused
    assert not vectors[~found].any()
    assert vectors[found].std() == pytest.approx(1.0, rel=1e-5)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)
    sim = unit @ unit.T
    for w in range(2, 12):
        same = [v for v in range(2, 12) if v != w and (v < 7) == (w < 7)]
        other = [v for v in range(2, 12) if (v < 7) != (w < 7)]
        assert sim[w, same].min() > sim[w, other].max(), w


def test_word2vec_is_deterministic_per_seed():
    enc = _two_topics()
    a = word2vec_embeddings(enc, 14, 8, seed=0, min_count=1)[0]
    b = word2vec_embeddings(enc, 14, 8, seed=0, min_count=1)[0]
    c = word2vec_embeddings(enc, 14, 8, seed=1, min_count=1)[0]
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_init_embedding_copies_found_rows_only():
    emb = torch.nn.Embedding(5, 3, padding_idx=0)
    before = emb.weight.detach().clone()
    vectors = np.arange(15, dtype=np.float32).reshape(5, 3)
    found = np.array([False, False, True, False, True])
    init_embedding(emb, vectors, found)
    assert torch.equal(emb.weight[[2, 4]], torch.from_numpy(vectors[[2, 4]]))
    assert torch.equal(emb.weight[[0, 1, 3]], before[[0, 1, 3]])
    with pytest.raises(ValueError, match="do not match"):
        init_embedding(emb, vectors[:, :2], found)


def test_training_starts_from_the_training_splits_word2vec_vectors(tmp_path, tiny_data):
    cfg = with_overrides(TrainConfig(), {**SMALL, "epochs": 1, "lr": 1e-9, "embed_init": "word2vec"})
    data = prepare(cfg, load_imdb(tiny_data))
    run = Run.create(tmp_path / "w2v", cfg, data.vocab, data.source)
    train(cfg, data, run, log=lambda s: None)
    vectors, found = word2vec_embeddings(data.train, len(data.vocab), cfg.embed_dim, cfg.seed)
    assert found.sum() >= 10
    weights = next(v for k, v in load_file(tmp_path / "w2v" / "model.safetensors").items() if "embedding" in k)
    # lr 1e-9: one epoch of Adam moves no weight by more than ~steps * lr
    assert torch.allclose(weights[torch.from_numpy(found)], torch.from_numpy(vectors[found]), atol=1e-6)


def test_embed_init_must_be_known():
    with pytest.raises(ConfigError, match="embed_init must be one of random, word2vec"):
        TrainConfig(embed_init="glove")


def test_frozen_embedding_keeps_the_vectors_while_the_rest_trains(tmp_path, tiny_data):
    cfg = with_overrides(TrainConfig(), {**SMALL, "epochs": 2, "lr": 1e-2, "embed_init": "word2vec",
                                         "freeze_embedding": True})
    data = prepare(cfg, load_imdb(tiny_data))
    run = Run.create(tmp_path / "frozen", cfg, data.vocab, data.source)
    train(cfg, data, run, log=lambda s: None)
    vectors, found = word2vec_embeddings(data.train, len(data.vocab), cfg.embed_dim, cfg.seed)
    saved = load_file(tmp_path / "frozen" / "model.safetensors")
    emb = next(v for k, v in saved.items() if "embedding" in k)
    assert torch.equal(emb[torch.from_numpy(found)], torch.from_numpy(vectors[found]))
    torch.manual_seed(cfg.seed)  # the same init as the run: the recurrent weights must have moved
    from rnnlab.models import build_model
    init = build_model(cfg, len(data.vocab)).state_dict()
    moved = [k for k in saved if "embedding" not in k and not torch.equal(saved[k], init[k])]
    assert moved
