"""Batching: bucketed and random batches, determinism per (seed, epoch), truncation, collation."""
from __future__ import annotations

import numpy as np
import pytest

from rnnlab.batching import Encoded, batch_indices, sorted_batches


def _enc():
    seqs = [[i + 2] * n for i, n in enumerate([5, 1, 9, 3, 7, 2, 8, 4, 6, 10])]
    return Encoded.from_lists(seqs, [i % 2 for i in range(10)])


@pytest.mark.parametrize("mode", ["bucket", "random"])
def test_every_review_once_and_deterministic(mode):
    lengths = np.random.default_rng(0).integers(1, 500, 1000)
    a = batch_indices(lengths, 64, mode, seed=3, epoch=2)
    b = batch_indices(lengths, 64, mode, seed=3, epoch=2)
    c = batch_indices(lengths, 64, mode, seed=3, epoch=3)
    assert sorted(np.concatenate(a).tolist()) == list(range(1000))
    assert all((x == y).all() for x, y in zip(a, b))
    assert not all(len(x) == len(y) and (x == y).all() for x, y in zip(a, c))  # reshuffled per epoch


def test_bucketing_cuts_padding():
    lengths = np.random.default_rng(0).integers(1, 1000, 5000)

    def padding(batches):
        return 1 - sum(lengths[b].sum() for b in batches) / sum(len(b) * lengths[b].max() for b in batches)

    assert padding(batch_indices(lengths, 64, "bucket", 0, 1)) < 0.05
    assert padding(batch_indices(lengths, 64, "random", 0, 1)) > 0.3


def test_truncation_head_and_tail():
    enc = Encoded.from_lists([[2, 3, 4, 5, 6], [7, 8]], [0, 1])
    head, tail = enc.truncated(3, "head"), enc.truncated(3, "tail")
    assert head.collate(np.array([0, 1]))[0].tolist() == [[2, 3, 4], [7, 8, 0]]
    assert tail.collate(np.array([0, 1]))[0].tolist() == [[4, 5, 6], [7, 8, 0]]
    assert enc.truncated(0, "tail") is enc


def test_collate_pads_with_zero_and_keeps_labels():
    enc = _enc()
    tokens, lengths, labels = enc.collate(np.array([1, 2, 3]))
    assert tokens.shape == (3, 9) and lengths.tolist() == [1, 9, 3]
    assert tokens[0].tolist() == [3] + [0] * 8 and labels.tolist() == [1.0, 0.0, 1.0]


def test_eval_order_is_sorted_and_complete():
    enc = _enc()
    batches = sorted_batches(enc.lengths, 4)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(10))
    assert (np.diff(enc.lengths[flat]) >= 0).all()


def test_test_only_words_map_to_unk_when_vocab_exceeds_corpus():
    """A corpus with fewer words than vocab_size: unseen test words must still be <unk> (id 1)."""
    from rnnlab.data import Dataset, Split
    from rnnlab.text import encode_corpus

    tr = Split(["good film", "bad film"], np.array([1, 0]), "t")
    te = Split(["novel words here", "good"], np.array([1, 0]), "t")
    corpus = encode_corpus(Dataset(tr, te, "t"), use_cache=False)
    vocab = corpus.vocab(20000)
    ids, starts, lengths = corpus.split("test", 20000)
    assert len(vocab) == 5 and ids.max() < len(vocab)
    assert ids[:3].tolist() == [1, 1, 1]


def test_bucketed_batches_are_served_in_a_shuffled_order_not_shortest_first():
    """Reviews of similar length share a batch, but the batches come in a shuffled order: served by length, every
    epoch would be a curriculum from short to long (a mutant of session 62 that no test caught)."""
    lengths = np.arange(1, 201)  # one pool: 50 batches of 4
    for epoch in (1, 2):
        batches = batch_indices(lengths, 4, "bucket", seed=0, epoch=epoch)
        longest = [int(lengths[b].max()) for b in batches]
        assert len(batches) == 50 and longest != sorted(longest) and longest != sorted(longest, reverse=True)
