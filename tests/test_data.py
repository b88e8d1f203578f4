"""Data loading and text processing: every loader form agrees, CSVs, resolution order,
the seed tokenizer, the vocabulary and the corpus cache."""
from __future__ import annotations

import io
import json
import os
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest

import rnnlab.data as data_mod
import rnnlab.text as text_mod
from rnnlab.data import (DataError, Dataset, Split, load_csv, load_split, load_imdb,
                         resolve_data_path)
from rnnlab.text import PAD, UNK, Vocab, encode_corpus, tokenize

from conftest import (SHARED_IMDB, _acl_members, make_reviews, needs_shared, write_acl_dir,
                      write_acl_tarball, write_parquet_dir)


def basic_english_tokenizer(text):
    """The notebook's tokenizer, verbatim: the reference `tokenize` must match."""
    text = text.lower()
    text = re.sub(r'[^a-z0-9\s]', ' ', text)
    return text.split()


def _rows(split: Split) -> tuple[list[str], list[int]]:
    return list(split.texts), [int(y) for y in split.labels]


def assert_same_dataset(got: Dataset, want: Dataset) -> None:
    for name in ("train", "test"):
        g, w = getattr(got, name), getattr(want, name)
        assert len(g) == len(w), name
        assert g.labels.dtype == np.int64
        assert g.texts == w.texts, f"{name}: texts differ (or differ in order)"
        np.testing.assert_array_equal(g.labels, w.labels, err_msg=name)


# --- every loader form gives the same rows --------------------------------------------------

LOADER_FORMS = {
    "acl_dir": lambda root, s: write_acl_dir(root / "a", *s),  # .../aclImdb itself
    "dir_containing_acl": lambda root, s: write_acl_dir(root / "b", *s).parent,
    "dir_containing_tarball": lambda root, s: write_acl_tarball(root / "c" / "aclImdb_v1.tar.gz", *s).parent,
    "tarball_path": lambda root, s: write_acl_tarball(root / "d" / "aclImdb_v1_labeled.tar.gz", *s),
    # bzip2 and xz: tarfile reads them; the name was refused (fault hunt)
    "tarball_bz2": lambda root, s: write_acl_tarball(root / "e" / "aclImdb_v1.tar.bz2", *s, mode="w:bz2"),
    "tarball_xz": lambda root, s: write_acl_tarball(root / "f" / "aclImdb_v1.tar.xz", *s, mode="w:xz"),
}


@pytest.mark.parametrize("form", sorted(LOADER_FORMS))
def test_every_form_loads_the_same_rows_as_parquet(tmp_path, tiny_splits, tiny_data, form):
    ref = load_imdb(tiny_data)
    assert len(ref.train) == 240 and len(ref.test) == 120
    # the parquet reference is the HF order: negatives first, each class in id order
    assert list(ref.train.labels) == sorted(ref.train.labels)
    path = LOADER_FORMS[form](tmp_path, tiny_splits)
    got = load_imdb(path)
    assert_same_dataset(got, ref)
    # str paths work as well as Path objects
    assert_same_dataset(load_imdb(str(path)), ref)


def test_a_parquet_folder_whose_name_is_not_utf8_loads(tmp_path, tiny_data):
    """A folder named in Latin-1 (bytes that are not UTF-8): pyarrow's path handling raised UnicodeEncodeError,
    a traceback from evaluate (from a black-box hunt); the files are opened by Python and read."""
    import os
    import shutil

    odd = tmp_path / os.fsdecode(b"lat\xe9")
    shutil.copytree(tiny_data, odd)
    ds = load_imdb(str(odd))
    assert ds.train.texts == load_imdb(tiny_data).train.texts
    assert load_split(str(odd / "test.parquet"), "test").texts == ds.test.texts


def test_parquet_is_read_on_one_thread(tiny_data, monkeypatch):
    """pyarrow's thread pool, once it has read a file object, aborted 3 of 40 processes that exited right after
    (SIGABRT: "terminate called without an active exception"; e.g. the loser of two labs into one --out)."""
    import pyarrow.parquet as pq

    seen, real = [], pq.read_table
    monkeypatch.setattr(pq, "read_table", lambda *a, **kw: seen.append(kw) or real(*a, **kw))
    data_mod.load_imdb(str(tiny_data))
    assert seen and all(kw.get("use_threads") is False for kw in seen)


def test_parquet_dir_holds_exactly_the_written_rows(tiny_splits, tiny_data):
    ds = load_imdb(tiny_data)
    for split, (texts, labels) in zip((ds.train, ds.test), tiny_splits):
        assert sorted(zip(split.labels.tolist(), split.texts)) == sorted(zip(labels, texts))


TRICKY = [
    "Café — naïve résumé; 10/10!!",
    "tabs\tand  double  spaces ",
    "  leading and trailing  ",
    "İstanbul ß ﬁ Ｆｕｌｌ 🎬 \u00a0nbsp",
    "line one\nline two",
    "<br /><br />only tags<br/>",
    "",  # an empty review file is valid data (it is read as a single <unk>)
    "quotes \"double\" and 'single', commas, and semicolons;",
]


def _tricky_splits(extra: str | None = None):
    (tr_t, tr_y), (te_t, te_y) = make_reviews(24, seed=5), make_reviews(12, seed=6)
    tr_t = list(tr_t)
    for i, t in enumerate(TRICKY):
        tr_t[i] = t
    if extra is not None:
        tr_t[len(TRICKY)] = extra
    return (tr_t, tr_y), (te_t, te_y)


@pytest.mark.parametrize("form", sorted(LOADER_FORMS))
def test_tricky_texts_survive_every_form(tmp_path, form):
    s = _tricky_splits()
    ref = load_imdb(write_parquet_dir(tmp_path / "pq", *s))
    assert_same_dataset(load_imdb(LOADER_FORMS[form](tmp_path, s)), ref)


def test_carriage_returns_survive_the_acl_directory(tmp_path):
    s = _tricky_splits(extra="windows\r\nline endings\rand old mac ones")
    ref = load_imdb(write_parquet_dir(tmp_path / "pq", *s))
    assert_same_dataset(load_imdb(write_acl_tarball(tmp_path / "t" / "aclImdb.tar.gz", *s)), ref)
    assert_same_dataset(load_imdb(write_acl_dir(tmp_path / "a", *s)), ref)


def test_plain_tar_and_dot_slash_member_names(tmp_path, tiny_splits, tiny_data):
    """A plain .tar and members named ./aclImdb/... (tar -czf x ./aclImdb) load alike."""
    ref = load_imdb(tiny_data)
    f = tmp_path / "aclImdb.tar"
    with tarfile.open(f, "w") as tar:
        for name, text in _acl_members(*tiny_splits):
            b = text.encode("utf-8")
            info = tarfile.TarInfo("./" + name)
            info.size = len(b)
            tar.addfile(info, io.BytesIO(b))
    assert_same_dataset(load_imdb(f), ref)


def test_acl_dir_ignores_non_review_files(tmp_path, tiny_splits, tiny_data):
    acl = write_acl_dir(tmp_path, *tiny_splits)
    (acl / "README").write_text("readme")
    (acl / "imdb.vocab").write_text("the\nfilm\n")
    (acl / "train" / "urls_pos.txt").write_text("http://example.com\n")
    (acl / "train" / "labeledBow.feat").write_text("0:1\n")
    (acl / "train" / "unsup").mkdir()
    (acl / "train" / "unsup" / "0_0.txt").write_text("unlabelled review")
    assert_same_dataset(load_imdb(tmp_path), load_imdb(tiny_data))


def test_reviews_stored_as_links_load_from_the_tarball_as_from_the_folder(tmp_path, tiny_splits):
    """`tar czf` keeps a symbolic or hard link as a link member: the folder reads through both, and so must the
    tarball (it skipped them: 2 reviews fewer, another fingerprint). A link to nothing in the archive: one line."""
    acl = write_acl_dir(tmp_path / "d", *tiny_splits)
    pos, neg = sorted((acl / "train" / "pos").iterdir()), sorted((acl / "train" / "neg").iterdir())
    pos[0].rename(acl / "moved.txt")
    pos[0].symlink_to(Path("..", "..", "moved.txt"))
    os.link(neg[0], acl / "train" / "neg" / "99999_1.txt")
    f = tmp_path / "aclImdb.tar.gz"
    with tarfile.open(f, "w:gz") as tar:
        tar.add(acl, arcname="aclImdb")
    folder, tarball = load_imdb(tmp_path / "d"), load_imdb(f)
    assert len(folder.train) == len(tiny_splits[0][0]) + 1
    assert_same_dataset(tarball, folder)
    bad = tmp_path / "bad.tar"
    with tarfile.open(bad, "w") as tar:
        tar.add(acl, arcname="aclImdb", filter=lambda m: None if m.name == "aclImdb/moved.txt" else m)
    with pytest.raises(DataError, match=r"links to \.\./\.\./moved\.txt, which is no file in the archive") as e:
        load_imdb(bad)
    assert "\n" not in str(e.value)
    loop = tmp_path / "loop.tar"  # two links to each other: one line, not a RecursionError's traceback
    with tarfile.open(loop, "w") as tar:
        tar.add(acl, arcname="aclImdb")
        for a, b in (("90001_7.txt", "90002_7.txt"), ("90002_7.txt", "90001_7.txt")):
            info = tarfile.TarInfo(f"aclImdb/train/pos/{a}")
            info.type, info.linkname = tarfile.SYMTYPE, b
            tar.addfile(info)
    with pytest.raises(DataError, match=r"links to 90002_7\.txt, which is no file in the archive"):
        load_imdb(loop)


def test_links_that_are_not_reviews_are_ignored_and_a_review_listed_twice_counts_once(tmp_path, tiny_splits):
    """A dangling link, a link to a folder and a hard link to a file that is not UTF-8, none of them a review:
    the folder loader never reads them, nor does the tarball (the first link-reading fix refused all three). A
    review listed twice (tar -r after an edit) counts once, as its last listing: what extraction leaves."""
    acl = write_acl_dir(tmp_path / "d", *tiny_splits)
    (acl / "imdb.vocab").write_bytes(b"caf\xe9\n")
    review = sorted((acl / "train" / "pos").iterdir())[0]
    f = tmp_path / "aclImdb.tar"
    with tarfile.open(f, "w") as tar:
        tar.add(acl, arcname="aclImdb")
        for name, kind, target in (("latest", tarfile.SYMTYPE, "/nonexistent"), ("data", tarfile.SYMTYPE, "train"),
                                   ("vocab.bak", tarfile.LNKTYPE, "aclImdb/imdb.vocab")):
            info = tarfile.TarInfo(f"aclImdb/{name}")
            info.type, info.linkname = kind, target
            tar.addfile(info)
        edited = b"an edited review, added again"
        info = tarfile.TarInfo(f"aclImdb/train/pos/{review.name}")
        info.size = len(edited)
        tar.addfile(info, io.BytesIO(edited))
    review.write_bytes(edited)  # the folder as extraction leaves it
    assert_same_dataset(load_imdb(f), load_imdb(tmp_path / "d"))


def _tarball_bytes(tmp_path, splits) -> bytes:
    return write_acl_tarball(tmp_path / "src" / "aclImdb_v1.tar.gz", *splits).read_bytes()


def test_truncated_tarball_raises_one_line_data_error(tmp_path):
    raw = _tarball_bytes(tmp_path, (make_reviews(200, 1), make_reviews(100, 2)))
    f = tmp_path / "aclImdb_v1.tar.gz"
    f.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError) as e:
        load_imdb(f)
    msg = str(e.value)
    assert "\n" not in msg and str(f) in msg


def test_corrupted_tarball_is_an_error_not_a_partial_split(tmp_path):
    raw = bytearray(_tarball_bytes(tmp_path, (make_reviews(200, 1), make_reviews(100, 2))))
    i = int(len(raw) * 0.95)  # inside the test reviews: train is complete, test is cut short
    for j in range(i, i + 64):
        raw[j] ^= 0x5A
    f = tmp_path / "aclImdb_v1.tar.gz"
    f.write_bytes(bytes(raw))
    with pytest.raises(DataError):
        ds = load_imdb(f)
        print(len(ds.train), len(ds.test))  # shows the partial split when it loads


def test_truncated_plain_tar_is_an_error_not_a_partial_split(tmp_path):
    tr, te = make_reviews(200, 1), make_reviews(100, 2)
    f = tmp_path / "aclImdb.tar"
    with tarfile.open(f, "w") as tar:
        for name, text in _acl_members(tr, te):
            b = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(b)
            tar.addfile(info, io.BytesIO(b))
    raw = f.read_bytes()
    f.write_bytes(raw[: int(len(raw) * 0.9)])
    with pytest.raises(DataError):
        load_imdb(f)


# --- CSV -------------------------------------------------------------------------------------

def test_csv_text_label(tmp_path):
    f = tmp_path / "mine.csv"
    f.write_text('text,label\n"Great, truly great film",1\n"Awful.\nTwo lines, ""quoted""",0\n'
                 'Café ok,1\n,0\n', encoding="utf-8")
    want = (["Great, truly great film", 'Awful.\nTwo lines, "quoted"', "Café ok", ""], [1, 0, 1, 0])
    s = load_csv(f)
    assert _rows(s) == want
    assert s.labels.dtype == np.int64
    assert _rows(load_split(f)) == want
    assert _rows(load_split(str(f))) == want


def test_csv_review_sentiment(tmp_path):
    f = tmp_path / "reviews.csv"
    f.write_text("review,sentiment\nLoved it,positive\nHated it,negative\n"
                 "Meh but fine, Positive \n\"A, b\",NEGATIVE\n", encoding="utf-8")
    want = (["Loved it", "Hated it", "Meh but fine", "A, b"], [1, 0, 1, 0])
    assert _rows(load_csv(f)) == want
    assert _rows(load_split(f)) == want


def test_csv_header_case_whitespace_and_bom(tmp_path):
    f = tmp_path / "excel.csv"
    f.write_bytes(" Text , LABEL \nfine,1\nbad, 0\n".encode("utf-8-sig"))
    assert _rows(load_csv(f)) == (["fine", "bad"], [1, 0])


def test_csv_bad_label_names_the_file(tmp_path):
    f = tmp_path / "maybe.csv"
    f.write_text("text,label\ngood,1\nunsure,maybe\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"maybe\.csv.*row 1.*'maybe'"):
        load_csv(f)


@pytest.mark.parametrize("body, where", [('"unterminated,1\n"bad",0\n', "line 3"),
                                         ('"unterminated,1\nbad,0\n', "line 3")])
def test_csv_with_a_stray_quote_is_an_error_not_rows_merged(tmp_path, body, where):
    """A quote that never closes, followed by a quoted field, was read as one review swallowing the next row
    (its label taken from the row after): now an error naming the file and line."""
    f = tmp_path / "quotes.csv"
    f.write_text("text,label\n" + body, encoding="utf-8")
    with pytest.raises(DataError, match=rf"quotes\.csv: cannot parse CSV at {where} "):
        load_csv(f)


def test_eval_split_of_a_dataset_is_its_test_split(tiny_data):
    assert _rows(load_split(tiny_data)) == _rows(load_imdb(tiny_data).test)


# --- where the data comes from ---------------------------------------------------------------

@pytest.fixture
def hub_sentinel(monkeypatch, tiny_data):
    """Replace the hub loader; records calls. Never touches the network."""
    calls = []
    sentinel = load_imdb(tiny_data)
    sentinel.source = "SENTINEL"

    def fake_hub():
        calls.append(1)
        return sentinel

    monkeypatch.setattr(data_mod, "_load_hub", fake_hub)
    return sentinel, calls


def _other_data(tmp_path) -> Path:
    return write_parquet_dir(tmp_path / "other", make_reviews(20, seed=11), make_reviews(10, seed=12))


def test_explicit_path_wins_over_env(monkeypatch, tmp_path, tiny_data, hub_sentinel):
    monkeypatch.setenv("RNNLAB_DATA", str(_other_data(tmp_path)))
    assert resolve_data_path(tiny_data) == str(tiny_data)
    ds = load_imdb(tiny_data)
    assert len(ds.train) == 240 and ds.source == str(tiny_data)
    assert hub_sentinel[1] == []


def test_env_var_used_without_a_path(monkeypatch, tmp_path, hub_sentinel):
    other = _other_data(tmp_path)
    monkeypatch.setenv("RNNLAB_DATA", str(other))
    assert resolve_data_path(None) == str(other)
    ds = load_imdb(None)
    assert len(ds.train) == 20 and ds.source == str(other)
    for arg in ("", " "):  # given, but empty: refused, not taken for "not given" (it would read other data)
        with pytest.raises(DataError, match="an empty path"):
            load_imdb(arg)
    assert hub_sentinel[1] == []


def test_env_var_bad_path_is_a_data_error(monkeypatch, tmp_path, hub_sentinel):
    monkeypatch.setenv("RNNLAB_DATA", str(tmp_path / "missing"))
    with pytest.raises(DataError, match="missing"):
        load_imdb()
    assert hub_sentinel[1] == []


def test_a_url_is_refused_as_a_url_not_a_missing_path(monkeypatch, tmp_path, hub_sentinel):
    """A URL was read as a path ("https:/example.com/x.csv: no such file or directory"); a folder that is really
    named so is still read."""
    for arg, env, says in (("https://example.com/x.csv", None, "--data"), (None, "s3://bucket/imdb", "$RNNLAB_DATA")):
        if env:
            monkeypatch.setenv("RNNLAB_DATA", env)
        with pytest.raises(DataError, match=f"^{re.escape(arg or env)}: a URL; {re.escape(says)} takes a local path"):
            load_imdb(arg)
    monkeypatch.chdir(_other_data(tmp_path).parent)
    (tmp_path / "file:").mkdir()
    (tmp_path / "other").rename(tmp_path / "file:" / "x")  # the relative path file://x names this folder
    assert len(load_imdb("file://x").train) == 20 and hub_sentinel[1] == []


@pytest.mark.parametrize("env", [None, "", "   "])
def test_hub_is_attempted_without_path_or_env(monkeypatch, hub_sentinel, env):
    if env is not None:
        monkeypatch.setenv("RNNLAB_DATA", env)
    sentinel, calls = hub_sentinel
    assert resolve_data_path(None) is None
    assert load_imdb() is sentinel
    assert load_imdb(None) is sentinel
    assert load_split() is sentinel.test
    assert len(calls) == 3


def test_env_var_csv_for_evaluation(monkeypatch, tmp_path, hub_sentinel):
    f = tmp_path / "env.csv"
    f.write_text("text,label\nyes,1\nno,0\n", encoding="utf-8")
    monkeypatch.setenv("RNNLAB_DATA", str(f))
    assert _rows(load_split()) == (["yes", "no"], [1, 0])
    assert hub_sentinel[1] == []


def test_real_hub_loader_offline_is_one_line_data_error(monkeypatch, tmp_path):
    """Offline (conftest sets HF_*_OFFLINE) with an empty HF cache: a DataError naming the way out."""
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))
    with pytest.raises(DataError) as e:
        data_mod._load_hub()
    assert "\n" not in str(e.value) and "RNNLAB_DATA" in str(e.value)


def test_hub_without_a_home_folder_is_refused_before_any_cache_is_made(monkeypatch, tmp_path):
    """An empty HOME reads as "/" to Python and the Hugging Face libraries: their cache would go to /.cache."""
    monkeypatch.setenv("HOME", "")
    for name in ("HF_HOME", "XDG_CACHE_HOME", "HF_DATASETS_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(data_mod, "_reachable", lambda host: pytest.fail("looked for the network"))
    with pytest.raises(DataError, match="no home folder.*set HF_HOME") as e:
        data_mod._load_hub()
    assert "\n" not in str(e.value)
    monkeypatch.setenv("HOME", str(tmp_path / "gone"))  # a HOME that names no folder: the same
    with pytest.raises(DataError, match="no home folder"):
        data_mod._load_hub()


@pytest.mark.parametrize("env", ["HF_HOME", "XDG_CACHE_HOME", "HOME"])
def test_hub_cache_is_found_where_the_libraries_put_it(monkeypatch, tmp_path, env):
    """A cached copy is read offline, without a look for the network, wherever the libraries' own rules put it."""
    for name in ("HF_HOME", "XDG_CACHE_HOME", "HF_DATASETS_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(env, str(tmp_path))
    base = {"HF_HOME": tmp_path, "XDG_CACHE_HOME": tmp_path / "huggingface",
            "HOME": tmp_path / ".cache" / "huggingface"}[env]
    (base / "datasets" / data_mod.HUB_NAME.replace("/", "___")).mkdir(parents=True)
    monkeypatch.setattr(data_mod, "_reachable", lambda host: pytest.fail("looked for the network"))
    monkeypatch.setattr(data_mod, "_offline", lambda fn: {"train": {"text": ["good", "bad"], "label": [1, 0]},
                                                          "test": {"text": ["fine", "dull"], "label": [1, 0]}})
    ds = data_mod._load_hub()
    assert ds.source == f"hub:{data_mod.HUB_NAME}"


# --- tokenizer -------------------------------------------------------------------------------

TOKENIZER_CASES = [
    "Great film!<br />Loved it",
    "<br /><br />This movie... was 10/10!!! <BR>Really.",
    "Don't, won't; can't: it's \"fine\" (really) [sic] {x} #1 @you $5 50% a&b c*d e+f",
    "Café naïve résumé coöperate façade",
    "İstanbul ß straße ǅ Ǆ ﬁne ﬀ",
    "KELVIN \u212a sign and Angstrom \u212b",
    "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３ and ١٢٣ and ⅷ and ²",
    "emoji 🎬🍿 and zero\u200bwidth and soft\u00adhyphen",
    "nbsp\u00a0space\u2028line\u2029para\x85nel\x0bvt\x0cff\ttab\r\ncrlf",
    "digits 1984 3.14 1,000,000 2nd 90s",
    "under_score hy-phen slash/word back\\slash",
    "ALL CAPS SHOUTING",
    "",
    "   \n\t  ",
    "!!!???...",
    "x\u0301 combining acute",
]


@pytest.mark.parametrize("text", TOKENIZER_CASES)
def test_tokenizer_matches_the_notebook(text):
    assert tokenize(text) == basic_english_tokenizer(text)
    assert tokenize(text, strip_html=False) == basic_english_tokenizer(text)


def test_tokenizer_examples():
    assert tokenize("Great film!<br />Loved it") == ["great", "film", "br", "loved", "it"]
    assert tokenize("It's 10/10.") == ["it", "s", "10", "10"]
    assert tokenize("Café") == ["caf"]
    assert tokenize("") == [] and tokenize("?!") == []


@pytest.mark.parametrize("text,want", [
    ("Great film!<br />Loved it", ["great", "film", "loved", "it"]),
    ("a<br /><br />b", ["a", "b"]),
    ("a<br/>b<BR>c<br  />d<Br >e", ["a", "b", "c", "d", "e"]),
    ("bread brown br bro <b>bold</b>", ["bread", "brown", "br", "bro", "b", "bold", "b"]),
])
def test_strip_html_removes_br_tags(text, want):
    assert tokenize(text, strip_html=True) == want
    assert "br" in tokenize("x<br />y") and "br" not in tokenize("x<br />y", strip_html=True)


# --- vocabulary ------------------------------------------------------------------------------

def _ds(train_texts, test_texts=("zzz zzz zzz zzz zzz", "d")) -> Dataset:
    tr = Split(list(train_texts), np.arange(len(train_texts), dtype=np.int64) % 2, "train")
    te = Split(list(test_texts), np.arange(len(test_texts), dtype=np.int64) % 2, "test")
    return Dataset(tr, te, "mem")


def test_vocab_top_k_by_count_alphabetical_ties():
    # counts: d 4, b 2, a 2, c 2, e 1, f 1; test-only words never enter the vocabulary
    ds = _ds(["b a d d", "c D! b", "a c d e", "f"])
    corpus = encode_corpus(ds, use_cache=False)
    assert corpus.words == ["d", "a", "b", "c", "e", "f"]
    assert corpus.counts.tolist() == [4, 2, 2, 2, 1, 1]
    v = corpus.vocab(5)
    assert v.itos == ["<pad>", "<unk>", "d", "a", "b"]
    assert v.stoi["<pad>"] == PAD == 0 and v.stoi["<unk>"] == UNK == 1
    assert len(v) == 5
    assert v.encode("D a c zzz") == [2, 3, UNK, UNK]
    # a size beyond the number of words keeps them all
    assert corpus.vocab(100).itos == ["<pad>", "<unk>", "d", "a", "b", "c", "e", "f"]


def test_vocab_does_not_depend_on_row_order():
    texts = ["b a d d", "c D! b", "a c d e", "f"]
    v1 = encode_corpus(_ds(texts), use_cache=False).vocab(6).itos
    v2 = encode_corpus(_ds(texts[::-1]), use_cache=False).vocab(6).itos
    assert v1 == v2


def test_corpus_ids_follow_the_vocab():
    ds = _ds(["b a d d", "c D! b", "a c d e", ""], test_texts=["d zzz a", "f e"])
    corpus = encode_corpus(ds, use_cache=False)
    ids, starts, lengths = corpus.split("train", 4)  # <pad> <unk> d a
    assert lengths.tolist() == [4, 3, 4, 1]  # the empty review is one <unk>
    got = [ids[s:s + n].tolist() for s, n in zip(starts, lengths)]
    assert got == [[1, 3, 2, 2], [1, 2, 1], [3, 1, 2, 1], [1]]
    v = corpus.vocab(4)
    assert got == [v.encode(t) for t in ds.train.texts]
    ids, starts, lengths = corpus.split("test", 4)
    got = [ids[s:s + n].tolist() for s, n in zip(starts, lengths)]
    assert got == [v.encode(t) for t in ds.test.texts] == [[2, 1, 3], [1, 1]]


@pytest.mark.parametrize("strip_html", [False, True])
def test_vocab_json_round_trip(strip_html):
    v = encode_corpus(_ds(["x<br />y y", "z"]), strip_html=strip_html, use_cache=False).vocab(20)
    d = json.loads(json.dumps(v.to_json()))
    w = Vocab.from_json(d)
    assert w.itos == v.itos and w.stoi == v.stoi and w.strip_html == v.strip_html == strip_html
    assert w.encode("y<br />x q") == v.encode("y<br />x q")
    assert ("br" in w.itos) is (not strip_html)


@pytest.mark.parametrize("text", ["", "   ", "!!! ...", "<br />"])
def test_empty_text_encodes_to_unk(text):
    v = Vocab(["<pad>", "<unk>", "br", "film"])
    if text == "<br />":
        assert v.encode(text) == [2]
        v = Vocab(["<pad>", "<unk>", "br"], strip_html=True)
    assert v.encode(text) == [UNK]


@pytest.mark.parametrize("bad", [["a", "b"], ["<unk>", "<pad>", "x"], ["<pad>", "<unk>", "x", "x"], ["<pad>"]])
def test_vocab_rejects_bad_itos(bad):
    with pytest.raises(ValueError):
        Vocab(bad)


TOK = {"name": "seed_basic_english", "strip_html": True}


@pytest.mark.parametrize("bad", [None, [], {"itos": "abc"}, {"itos": ["<pad>", "<unk>", 3]}, {"itos": ["x"]},
                                 {"itos": ["<pad>", "<unk>"]}, {"itos": ["<pad>", "<unk>"], "tokenizer": {}},
                                 {"itos": ["<pad>", "<unk>"], "tokenizer": {**TOK, "strip_html": "no"}},
                                 {"itos": ["<pad>", "<unk>"], "tokenizer": {**TOK, "name": "nosuch"}}])
def test_vocab_from_json_rejects_malformed(bad):
    with pytest.raises(ValueError):
        Vocab.from_json(bad)


# --- corpus cache ----------------------------------------------------------------------------

def test_encode_corpus_second_call_hits_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("RNNLAB_CACHE", str(tmp_path / "cache"))
    ds = _ds(make_reviews(40, seed=21)[0], make_reviews(10, seed=22)[0])
    real = text_mod._encode_texts
    calls = []

    def counting(*a, **k):
        calls.append(1)
        if len(calls) > 2:  # the first encode_corpus tokenises train and test; nothing after
            raise AssertionError("cache miss: texts tokenised again")
        return real(*a, **k)

    monkeypatch.setattr(text_mod, "_encode_texts", counting)
    first = encode_corpus(ds)
    assert len(calls) == 2
    entry = tmp_path / "cache" / f"corpus-{first.key}"
    assert sorted(f.name for f in entry.iterdir()) == sorted(["manifest.json", "words.json", "counts.npy",
                                                              "train_ids.npy", "train_offsets.npy",
                                                              "test_ids.npy", "test_offsets.npy"])
    second = encode_corpus(ds)
    assert len(calls) == 2
    assert second.key == first.key and second.words == first.words
    for name in ("counts", "train_ids", "train_offsets", "test_ids", "test_offsets"):
        np.testing.assert_array_equal(getattr(second, name), getattr(first, name), err_msg=name)
        assert isinstance(getattr(second, name).base, np.memmap), f"{name} is not memory-mapped"
        assert not getattr(first, name).flags.writeable and not getattr(second, name).flags.writeable
    for got in (first.split("train", 10), second.split("test", 10)):  # callers get arrays of their own
        assert all(type(a) is np.ndarray and a.flags.writeable and a.base is None for a in got)

    # a different strip_html is a different key: it must tokenise again (and so fail here)
    with pytest.raises(AssertionError, match="cache miss"):
        encode_corpus(ds, strip_html=True)
    monkeypatch.setattr(text_mod, "_encode_texts", real)
    other = encode_corpus(ds, strip_html=True)
    assert other.key != first.key and other.strip_html
    assert "br" in first.words and "br" not in other.words


def test_encode_corpus_cache_key_follows_the_data(monkeypatch, tmp_path):
    monkeypatch.setenv("RNNLAB_CACHE", str(tmp_path / "cache"))
    a = encode_corpus(_ds(["a b", "c"]))
    b = encode_corpus(_ds(["a b", "c d"]))
    c = Dataset(Split(["a b", "c"], np.array([1, 0]), "train"), _ds(["a b", "c"]).test, "mem")
    assert len({a.key, b.key, encode_corpus(c).key}) == 3  # texts and labels both count


def test_broken_cache_entry_is_rebuilt(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("RNNLAB_CACHE", str(tmp_path / "cache"))
    ds = _ds(["a b b", "c"])
    first = encode_corpus(ds)
    (tmp_path / "cache" / f"corpus-{first.key}" / "train_ids.npy").write_bytes(b"not an npy")
    again = encode_corpus(ds)
    assert again.words == first.words
    np.testing.assert_array_equal(again.train_ids, first.train_ids)
    assert f"corpus-{first.key}" in capsys.readouterr().err  # the rebuild was reported (more in test_faults)


# --- the shared full IMDB copy ---------------------------------------------------------------

@needs_shared
@pytest.mark.slow
def test_shared_imdb_parquet_and_tarball_are_identical():
    pq = load_imdb(SHARED_IMDB)  # the directory: parquet files take precedence
    assert pq.source == str(SHARED_IMDB)
    tb = load_imdb(SHARED_IMDB / "aclImdb_v1_labeled.tar.gz")
    for ds in (pq, tb):
        assert len(ds.train) == 25000 and len(ds.test) == 25000
        for s in (ds.train, ds.test):
            assert int(s.labels.sum()) == 12500
    assert_same_dataset(tb, pq)
    assert sum(len(tokenize(t)) for t in pq.train.texts) == 6_058_488
    assert sum(len(basic_english_tokenizer(t)) for t in pq.train.texts) == 6_058_488
    assert sum(len(tokenize(t)) for t in pq.test.texts) == 5_921_583


def test_parquet_text_that_is_not_utf8_is_one_error_naming_the_file_and_row(tmp_path):
    """Arrow validates UTF-8 when a string column is built, but a file written without validation can hold
    any bytes: reading it is a DataError naming the row, not a UnicodeDecodeError."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    raw = [b"a fine film", b"dull", b"great \xff\xfe caf\xe9", b"bad"]
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in raw])]).astype(np.int32)
    text = pa.Array.from_buffers(pa.string(), len(raw), [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(b"".join(raw))])
    f = tmp_path / "test.parquet"
    pq.write_table(pa.table({"text": text, "label": pa.array([1, 0, 1, 0])}), f)
    with pytest.raises(DataError, match=re.escape(f"{f}: row 2: text is not UTF-8")):
        data_mod.load_parquet(f)


def test_a_float_or_text_label_says_what_it_is(tmp_path):
    """1.0 or '1' is not 0 or 1 as stored: the message says the type, so it does not contradict itself."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for labels, kind in (([1.0, 0.0], "float"), (["1", "0"], "str")):
        f = tmp_path / f"{kind}.parquet"
        pq.write_table(pa.table({"text": ["good", "bad"], "label": labels}), f)
        with pytest.raises(DataError, match=rf"row 0: label .*1.* \(a {kind}\) is not the integer 0 or 1"):
            load_split(f)


def test_a_split_of_one_class_is_read_for_evaluation_from_a_file_or_a_folder(tmp_path):
    import pandas as pd

    texts, labels = make_reviews(20, seed=4)
    neg = [t for t, y in zip(texts, labels) if y == 0]
    d = tmp_path / "neg"
    d.mkdir()
    pd.DataFrame({"text": neg, "label": [0] * len(neg)}).to_parquet(d / "test.parquet")
    pd.DataFrame({"text": neg, "label": [0] * len(neg)}).to_csv(tmp_path / "neg.csv", index=False)
    acl = tmp_path / "aclImdb"  # aclImdb's layout, its pos folder empty (an aclImdb test folder was refused)
    for cls in ("neg", "pos"):
        (acl / "test" / cls).mkdir(parents=True)
    for i, t in enumerate(neg):
        (acl / "test" / "neg" / f"{i}_2.txt").write_text(t, encoding="utf-8")
    for path in (d / "test.parquet", d, tmp_path / "neg.csv", acl):  # the file itself, a dir's test.parquet, a CSV,
        split = load_split(path)  # an aclImdb folder
        assert sorted(split.texts) == sorted(neg) and set(split.labels.tolist()) == {0}, path
    with pytest.raises(DataError, match="one class"):  # training still needs both
        load_imdb(write_parquet_dir(tmp_path / "train-neg", (neg, [0] * len(neg)), (neg, [0] * len(neg))))
    (acl / "train" / "neg").mkdir(parents=True)
    (acl / "train" / "pos").mkdir()
    (acl / "train" / "neg" / "0_1.txt").write_text("bad", encoding="utf-8")
    (acl / "train" / "pos" / "0_9.txt").write_text("good", encoding="utf-8")
    with pytest.raises(DataError, match="one class"):
        load_imdb(acl)


def test_an_aclimdb_tarball_gives_one_split_of_one_class_for_evaluation_as_its_folder_does(tmp_path):
    """A tarball of one class, or of the test split alone, was refused for evaluation where the same folder was read
    (left by session 61); the tarball, or a folder holding it, now gives the split asked for, as the folder does."""
    texts, labels = make_reviews(20, seed=4)
    neg = ([t for t, y in zip(texts, labels) if y == 0], [0] * labels.count(0))
    tar = write_acl_tarball(tmp_path / "only" / "aclImdb_v1.tar.gz", ([], []), neg)  # no train split, no pos
    for path in (tar, tar.parent):
        split = load_split(path)
        assert sorted(split.texts) == sorted(neg[0]) and set(split.labels.tolist()) == {0} and split.source == \
            f"{tar}:test", path
    with pytest.raises(DataError, match=re.escape(f"{tar}: no aclImdb/train/{{pos,neg}}/*.txt reviews in the archive")):
        load_split(tar, "train")
    with pytest.raises(DataError, match="no aclImdb/train/"):  # training still needs both splits, and both classes
        load_imdb(tar)
    train, test = make_reviews(40, seed=1), make_reviews(20, seed=2)
    both = write_acl_tarball(tmp_path / "both" / "aclImdb_v1.tar.gz", train, test)
    assert load_split(both, "test").texts == load_split(write_parquet_dir(tmp_path / "pq", train, test), "test").texts
    assert load_split(both, "train").texts == load_imdb(both).train.texts


def test_an_aclimdb_folder_gives_one_split_without_reading_the_other(tmp_path):
    train, test = make_reviews(40, seed=1), make_reviews(20, seed=2)
    acl = write_acl_dir(tmp_path / "d", train, test)
    (acl / "train" / "pos" / "notes.txt").write_text("not a review")  # a misnamed file in the split not read
    for path in (acl, acl.parent):
        assert load_split(path, "test").texts == load_split(write_parquet_dir(tmp_path / "pq", train, test), "test").texts
    with pytest.raises(DataError, match=r"notes\.txt: not named <id>_<rating>\.txt"):
        load_split(acl, "train")


def test_a_splits_fingerprint_sees_every_row_and_keeps_its_recorded_form():
    """Where one review ends and what each says count; the byte form is what runs on disk recorded in meta.json
    (changing it would call every older run's data changed)."""
    import hashlib

    labels = np.array([0, 1], dtype=np.int64)
    s = Split(["ab", "c"], labels, "x")
    assert s.fingerprint() != Split(["a", "bc"], labels, "x").fingerprint()
    assert s.fingerprint() != Split(["ab", "d"], labels, "x").fingerprint()  # as many reviews, another text
    assert s.fingerprint() == hashlib.sha256(b"2ab\x00c\x00" + labels.tobytes()).hexdigest()


def test_a_boolean_label_column_is_refused_not_read_as_0_and_1(tmp_path):
    """A parquet whose label column is boolean (`is_negative`, say) is refused in one line, not read as 0/1 (a mutant
    of session 62 that no test caught: the label tests had float and text columns only)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    f = tmp_path / "bool.parquet"
    pq.write_table(pa.table({"text": ["good", "bad"], "label": [True, False]}), f)
    with pytest.raises(DataError, match=r"row 0: label True \(a bool\) is not the integer 0 or 1"):
        load_split(f)


def test_hub_copy_in_hf_datasets_cache_needs_no_home_folder(monkeypatch, tmp_path):
    """HOME= with $HF_DATASETS_CACHE holding the copy: read offline, as before the home-folder refusal."""
    monkeypatch.setenv("HOME", "")
    for name in ("HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path))
    (tmp_path / data_mod.HUB_NAME.replace("/", "___")).mkdir()
    monkeypatch.setattr(data_mod, "_reachable", lambda host: pytest.fail("looked for the network"))
    monkeypatch.setattr(data_mod, "_offline", lambda fn: {"train": {"text": ["good", "bad"], "label": [1, 0]},
                                                          "test": {"text": ["fine", "dull"], "label": [1, 0]}})
    assert data_mod._load_hub().source == f"hub:{data_mod.HUB_NAME}"
