"""Shared fixtures: a tiny synthetic IMDB written in every supported form."""
from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER"):  # a worker of `pytest -n N`: set before any test imports torch
    # Torch's threads: each worker its share of the cores, inherited by the commands its tests start. Two workers
    # each running 2 OpenMP threads on 2 cores wait on each other's preempted threads: the real-IMDB test took
    # 207 s beside test_memory's passes where it takes 29 s with one thread each (and 600+ s once in CI).
    _CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _CPUS // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", 1)))))

import numpy as np  # noqa: E402 (after the threads are set: its OpenBLAS reads them too)
import pytest  # noqa: E402

SHARED_IMDB = Path(__file__).resolve().parents[2] / "shared" / "data" / "imdb"

POS = ["great", "excellent", "wonderful", "loved", "superb", "brilliant"]
NEG = ["awful", "terrible", "boring", "hated", "worst", "dull"]
FILLER = ["the", "film", "movie", "plot", "actor", "scene", "story", "and", "a", "was", "it", "this",
          "director", "music", "ending", "character", "time", "really", "very", "just"]


def make_reviews(n: int, seed: int = 0, min_len: int = 5, max_len: int = 60) -> tuple[list[str], list[int]]:
    """Reviews of random filler with one or two polar words; label follows the polar words."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        y = i % 2
        words = list(rng.choice(FILLER, rng.integers(min_len, max_len)))
        for _ in range(rng.integers(1, 3)):
            words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(POS if y else NEG)))
        text = " ".join(words).capitalize() + "."
        if i % 7 == 0:
            text = text.replace(" ", "<br /><br />", 1)
        texts.append(text)
        labels.append(y)
    return texts, labels


def write_parquet_dir(d: Path, train, test) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    d.mkdir(parents=True, exist_ok=True)
    for name, (texts, labels) in (("train", train), ("test", test)):
        order = sorted(range(len(labels)), key=lambda i: (labels[i], i))  # negatives first
        pq.write_table(pa.table({"text": [texts[i] for i in order], "label": [labels[i] for i in order]}),
                       d / f"{name}.parquet")
    return d


def _acl_members(train, test):
    for split, (texts, labels) in (("train", train), ("test", test)):
        # ids in sorted order within each class, so the HF order (neg first, by id) is the parquet order
        for cls_label, cls in ((0, "neg"), (1, "pos")):
            idx = [i for i in sorted(range(len(labels)), key=lambda i: (labels[i], i)) if labels[i] == cls_label]
            for rid, i in enumerate(idx):
                yield f"aclImdb/{split}/{cls}/{rid}_{8 if cls_label else 2}.txt", texts[i]


def write_acl_dir(d: Path, train, test) -> Path:
    for name, text in _acl_members(train, test):
        f = d / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text, encoding="utf-8")
    return d / "aclImdb"


def write_acl_tarball(f: Path, train, test, mode: str = "w:gz") -> Path:
    f.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(f, mode) as tar:
        for name, text in _acl_members(train, test):
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return f


@pytest.fixture(scope="session")
def tiny_splits():
    return make_reviews(240, seed=1), make_reviews(120, seed=2)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory, tiny_splits) -> Path:
    """A parquet directory with 240 train and 120 test synthetic reviews."""
    return write_parquet_dir(tmp_path_factory.mktemp("tiny") / "imdb", *tiny_splits)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("RNNLAB_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.delenv("RNNLAB_DATA", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


needs_shared = pytest.mark.skipif(not SHARED_IMDB.is_dir(), reason=f"needs the shared IMDB copy at {SHARED_IMDB}")
