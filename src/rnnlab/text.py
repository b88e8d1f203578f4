"""Tokenise, build the vocabulary, and encode (and cache) the corpus.

    from rnnlab.text import tokenize, encode_corpus
    tokenize("Great film!<br />Loved it")       # ['great', 'film', 'br', 'loved', 'it']
    corpus = encode_corpus(dataset, strip_html=False)   # cached on disk after the first run
    vocab = corpus.vocab(20000)                         # <pad>=0, <unk>=1, then top train words

The tokenizer is the notebook's: lowercase, every character outside [a-z0-9] and whitespace
becomes a space, split on whitespace. `strip_html` first removes the site's `<br />` tags.
Vocabulary order is by train count, ties broken alphabetically, so it never depends on
row order. An empty review (no tokens) is read as a single `<unk>`.

The cache is one directory per data and text settings, `$RNNLAB_CACHE/corpus-<key>/`: one
`.npy` per array, `words.json`, and `manifest.json` (format version, key, each file's size
and sha256). Arrays are memory-mapped read-only, so parallel workers share one copy.
A builder writes into its own `.corpus-<key>.<host>.<pid>.<random>.tmp` directory and
renames it into place; if another process got there first, its entry is used. An entry
that fails any check is reported in one warning line, removed and rebuilt; temporary
directories of dead processes (or older than an hour) are swept away. A cache that cannot
be written (read-only, full, no permission, a file in the way) is reported in one warning
line and the corpus is kept in memory. Old `corpus-<key>.npz` files (format 1) are ignored.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import sys
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .data import Dataset
from .io import HOST, fault, home, pid_alive

PAD, UNK = 0, 1
_NON_ALNUM = re.compile(r"[^a-z0-9\s]")
_ALNUM = re.compile(r"[a-z0-9]")  # a text has a token iff its lower case has one of these
UNREAD_SHOWN = 12  # characters a note about unread ones shows
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
CACHE_VERSION = 2  # 1: one .npz file; 2: a directory of .npy files and a manifest


def tokenize(text: str, strip_html: bool = False) -> list[str]:
    """The notebook's basic_english_tokenizer, optionally without `<br />` tags."""
    if strip_html:
        text = _BR.sub(" ", text)
    return _NON_ALNUM.sub(" ", text.lower()).split()


def unread(text: str) -> str:
    """The characters other than ASCII's letters, digits, punctuation and spaces that `tokenize` reads as spaces (é,
    日, 😍, U+FFFD, a NUL byte; not the Kelvin sign, whose lower case is k), each once, in order: the notebook's
    tokenizer reads only a-z and 0-9."""
    return "".join(dict.fromkeys(c for c in text if (not c.isascii() or not (c.isprintable() or c.isspace()))
                                 and _NON_ALNUM.search(c.lower())))


def stand_in(text: str, strip_html: bool) -> str:
    """A review in the few characters `unread_note` and `wordless_note` read of it: its unread characters, then "a"
    where it has a word, "<br />" where only its tags have letters, nothing where it has none. The notes on a stream
    of reviews keep these, not the reviews."""
    has_word = _ALNUM.search((_BR.sub(" ", text) if strip_html else text).lower())
    return unread(text) + ("a" if has_word else "<br />" if _ALNUM.search(text.lower()) else "")


def unread_note(texts: list[str]) -> str:
    """"" or a line for the user: which reviews lose characters the tokenizer cannot read, and some of them."""
    hit = [(i, u) for i, u in enumerate(map(unread, texts)) if u]
    if not hit:
        return ""
    chars = "".join(dict.fromkeys("".join(u for _, u in hit)))
    shown = " ".join(c if c.isprintable() and not unicodedata.category(c).startswith("M") else ascii(c)[1:-1]
                     for c in chars[:UNREAD_SHOWN])  # escaped: a control (U+202E) not obeyed, a mark (U+0301,
    # U+FE0F, U+093F: combining or not) not drawn onto the space before
    if len(chars) > UNREAD_SHOWN:
        shown += f" ... ({len(chars):,} in all)"
    which = "the review" if len(texts) == 1 else (
        f"{len(hit):,} of the {len(texts):,} reviews (the first: review {hit[0][0] + 1})")
    return f"the tokenizer (the notebook's) reads only a-z and 0-9; it reads these characters of {which} as spaces: {shown}"


def wordless_note(texts: list[str], strip_html: bool) -> str:
    """"" or a line for the user: which reviews have no token at all (no a-z or 0-9), read as one <unk>."""
    hit = [i for i, t in enumerate(texts) if not _ALNUM.search((_BR.sub(" ", t) if strip_html else t).lower())]
    if not hit:
        return ""
    tags = all(_ALNUM.search(texts[i].lower()) for i in hit)  # <br /> tags only: words once, but read as spaces
    which = ("the review has" if len(texts) == 1 else f"review {hit[0] + 1:,} of {len(texts):,} has"
             if len(hit) == 1 else f"{len(hit):,} of the {len(texts):,} reviews (the first: review {hit[0] + 1:,}) have")
    reads = "once its <br /> tags are removed" if tags else "(a-z, 0-9)"
    return f"{which} no word the tokenizer reads {reads}: the model reads one <unk> token, as for an empty review"


def tag_kept_positions(text: str) -> list[int]:
    """Where each token of tokenize(text, strip_html=True) sits in tokenize(text): its index there.

    The two tokenisations differ only by the tokens of the `<br />` tags (a tag starts and ends with a
    character that is not a letter or digit, so it never joins the words beside it): the text between two
    tags is tokenised alike either way. Linear in the text's length.
    """
    out: list[int] = []
    pos = last = 0
    for m in _BR.finditer(text):
        n = len(tokenize(text[last:m.start()]))
        out += range(pos, pos + n)
        pos += n + len(tokenize(m.group()))
        last = m.end()
    n = len(tokenize(text[last:]))
    return out + list(range(pos, pos + n))


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
        tok = d.get("tokenizer")
        if not isinstance(tok, dict):
            raise ValueError("vocab.json 'tokenizer' must be an object")
        if tok.get("name") != "seed_basic_english" or not isinstance(tok.get("strip_html"), bool):
            raise ValueError("vocab.json 'tokenizer' must be {\"name\": \"seed_basic_english\", \"strip_html\": "
                             "true or false} (the tokenizer the run was trained with)")
        return cls(d["itos"], tok["strip_html"])


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


def cache_dir() -> Path | None:
    """$RNNLAB_CACHE (empty or blank: unset), else ~/.cache/rnnlab; None where there is no home folder (`io.home`)."""
    folder = home()
    if setting := os.environ.get("RNNLAB_CACHE", "").strip():  # stripped as RNNLAB_DATA is; "~/x": the home's x, not ./~
        if setting.startswith("~"):
            return Path(os.path.expanduser(setting)) if folder else None
        return Path(setting)
    return folder / ".cache" / "rnnlab" if folder else None


def encode_corpus(ds: Dataset, strip_html: bool = False, use_cache: bool = True,
                  progress: Callable[[str], None] | None = None) -> Corpus:
    """Tokenise train and test; cached on disk keyed by the data and text settings.

    Cache warnings go to `progress` (else stderr); a cache fault never fails the call.
    """
    key = hashlib.sha256(
        f"{ds.fingerprint()}|strip_html={strip_html}|v{CACHE_VERSION}".encode()
    ).hexdigest()[:24]
    warn = progress or (lambda msg: print(msg, file=sys.stderr))
    folder = cache_dir() if use_cache else None
    if use_cache and folder is None:
        warn("warning: no home folder to keep the tokenised corpus in; set RNNLAB_CACHE to keep it")
        use_cache = False
    entry = folder / f"corpus-{key}" if use_cache else None
    if use_cache:
        _sweep(entry.parent)
        corpus = _cached(entry, strip_html, key, (len(ds.train), len(ds.test)), warn)
        if corpus is not None:
            return corpus
        try:  # said now, before the tokenising it would keep (a full disk is still found only when written)
            entry.parent.mkdir(parents=True, exist_ok=True)
            (probe := _private_name(entry)).mkdir()
            probe.rmdir()
        except OSError as e:
            _uncached(warn, entry, e)
            use_cache = False
    if progress:
        progress("tokenising train and test" + (" (once for these text settings; cached afterwards)" if use_cache
                                                else ""))
    corpus = _encode(ds, strip_html, key)
    if use_cache:
        corpus = _store(entry, corpus, warn)
    return corpus


def _encode(ds: Dataset, strip_html: bool, key: str) -> Corpus:
    """Tokenise both splits, rank the train words, and map every token to its id."""
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
    for a in (counts, tr_ids, tr_off, te_ids, te_off):
        a.flags.writeable = False  # read-only, as the memory-mapped arrays of a cache hit are
    return Corpus(words, counts, tr_ids, tr_off, te_ids, te_off, strip_html, key)


# --- the disk cache --------------------------------------------------------------------------

_ARRAYS = {"counts": np.int64, "train_ids": np.int32, "train_offsets": np.int64,
           "test_ids": np.int32, "test_offsets": np.int64}
_FILES = ["words.json", *(f"{name}.npy" for name in _ARRAYS)]
_HOST = HOST  # this machine and PID namespace, as every temporary name of rnnlab's says it
_STALE_SECONDS = 3600  # a temporary directory this old is abandoned, whoever made it


def _private_name(entry: Path) -> Path:
    """`.corpus-<key>.<host>.<pid>.<random>.tmp`: never read as an entry; swept once its owner is gone."""
    return entry.with_name(f".{entry.name}.{_HOST}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _cached(entry: Path, strip_html: bool, key: str, rows: tuple[int, int], warn) -> Corpus | None:
    """The verified entry, or None; a broken entry is reported once and removed."""
    if not os.path.lexists(entry):
        return None
    try:
        return _load_corpus(entry, strip_html, key, rows)
    except Exception as e:  # noqa: BLE001 - whatever is wrong with it, it is rebuilt
        gone = _discard(entry)  # where it cannot be removed (read-only), the next line says the cache cannot be written
        warn(f"warning: corpus cache {entry} is unusable ({_why(e)})" + ("; rebuilding it" if gone else ""))
        return None


def _store(entry: Path, corpus: Corpus, warn) -> Corpus:
    """Write `corpus` as `entry` via a private temporary directory and one rename."""
    tmp = _private_name(entry)
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        _save_corpus(tmp, corpus)
        try:
            os.rename(tmp, entry)
            return corpus
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
    except Exception as e:  # noqa: BLE001 - the run goes on without a cache
        _uncached(warn, entry, e)
        return corpus
    finally:
        _remove(tmp)
    # another process renamed its entry into place first: use it (verified), as later runs will
    rows = (len(corpus.train_offsets) - 1, len(corpus.test_offsets) - 1)
    return _cached(entry, corpus.strip_html, corpus.key, rows, warn) or corpus


def _uncached(warn, entry: Path, e: Exception) -> None:
    warn(f"warning: cannot write corpus cache {entry.parent}: {_why(e, with_file=False)}; continuing without a cache")


def _save_corpus(d: Path, c: Corpus) -> None:
    """Write each array as .npy, the words as JSON, then the manifest that vouches for them."""
    def put(name: str, write) -> None:
        with open(d / name, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())  # on disk before the rename publishes it

    put("words.json", lambda fh: fh.write(json.dumps(c.words).encode()))
    for name in _ARRAYS:
        put(f"{name}.npy", lambda fh: np.save(fh, getattr(c, name), allow_pickle=False))
    files = {f: {"bytes": (d / f).stat().st_size, "sha256": _sha256(d / f)} for f in _FILES}
    manifest = {"version": CACHE_VERSION, "key": c.key, "files": files}
    put("manifest.json", lambda fh: fh.write(json.dumps(manifest, indent=1).encode()))


def _load_corpus(entry: Path, strip_html: bool, key: str, rows: tuple[int, int]) -> Corpus:
    """Check the manifest, then every file's size and sha256, then map the arrays read-only."""
    for name, want in _read_manifest(entry, key).items():
        if (entry / name).exists() and not (entry / name).is_file():  # a FIFO would block the checksum's read
            raise ValueError(f"{name}: not a regular file")
        size = (entry / name).stat().st_size
        if size != want["bytes"]:
            raise ValueError(f"{name}: {size} bytes, manifest says {want['bytes']}")
        if _sha256(entry / name) != want["sha256"]:
            raise ValueError(f"{name}: checksum mismatch")
    try:
        words = json.loads((entry / "words.json").read_bytes())
    except RecursionError:
        raise ValueError("words.json: nested too deeply") from None
    arrays = {}
    for name, dtype in _ARRAYS.items():
        a = np.asarray(np.load(entry / f"{name}.npy", mmap_mode="r", allow_pickle=False))
        if a.dtype != dtype or a.ndim != 1:
            raise ValueError(f"{name}.npy: {a.dtype} {a.shape}, expected 1-d {np.dtype(dtype)}")
        arrays[name] = a  # a read-only view of the mapped file
    _check_structure(words, arrays, rows)
    return Corpus(words, strip_html=strip_html, key=key, **arrays)


def _check_structure(words, arrays: dict, rows: tuple[int, int]) -> None:
    """ValueError unless the entry is what `_encode` makes of `rows` (train, test) reviews: files whose checksums
    match a manifest written for them can still hold other shapes (edited, or written by another program)."""
    if not (isinstance(words, list) and all(isinstance(w, str) for w in words)):
        raise ValueError("words.json: not a list of words")
    if len(arrays["counts"]) != len(words):
        raise ValueError(f"counts.npy: {len(arrays['counts'])} counts for {len(words)} words")
    for split, n in zip(("train", "test"), rows):
        ids, off = arrays[f"{split}_ids"], arrays[f"{split}_offsets"]
        if len(off) != n + 1 or off[0] != 0 or off[-1] != len(ids) or (np.diff(off) < 0).any():
            raise ValueError(f"{split}_offsets.npy: not the offsets of {n:,} reviews into {len(ids):,} tokens")
        if len(ids) and (ids.min() < UNK or ids.max() > len(words) + 2):
            raise ValueError(f"{split}_ids.npy: ids outside 1..{len(words) + 2}")


def _read_manifest(entry: Path, key: str) -> dict:
    """{file name: {"bytes": n, "sha256": hex}} of an entry of this format version and key."""
    manifest = entry / "manifest.json"
    if manifest.exists() and not manifest.is_file():  # a FIFO would block the read for ever
        raise ValueError("manifest.json: not a regular file")
    try:
        m = json.loads(manifest.read_bytes())
    except (ValueError, RecursionError) as e:
        raise ValueError(f"manifest.json: malformed JSON ({e})") from None
    if not isinstance(m, dict):
        raise ValueError("manifest.json is not a JSON object")
    if m.get("version") != CACHE_VERSION:
        raise ValueError(f"format version {m.get('version')!r}, this rnnlab reads {CACHE_VERSION}")
    if m.get("key") != key:
        raise ValueError(f"manifest key {m.get('key')!r} is not {key}")
    files = m.get("files")
    if not (isinstance(files, dict) and sorted(files) == sorted(_FILES) and all(
            isinstance(f, dict) and isinstance(f.get("bytes"), int) and isinstance(f.get("sha256"), str)
            for f in files.values())):
        raise ValueError("manifest.json: 'files' does not give each cache file's bytes and sha256")
    return files


def _sha256(f: Path) -> str:
    with open(f, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()  # ~40 ms for the full IMDB ids


def _why(e: Exception, with_file: bool = True) -> str:
    """One short line: what went wrong (with a cache file, named by its base name)."""
    if isinstance(e, OSError) and e.errno is None and re.fullmatch(r"\d+ requested and \d+ written", str(e)):
        return f"only part of a file was written, the disk is probably full ({e})"  # numpy's short write: no errno
    if isinstance(e, OSError):
        return f"{Path(e.filename).name}: {fault(e)}" if e.filename and with_file else fault(e)
    return (str(e).splitlines() or [type(e).__name__])[0][:200]


def _remove(p: Path) -> None:
    """Delete a file or directory tree, as far as the file system allows."""
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        try:
            p.unlink(missing_ok=True)
        except OSError:
            pass


def _discard(entry: Path) -> bool:
    """Move a broken entry aside in one rename (so no reader sees it half deleted), then delete it; False where it
    stays (a read-only file system or folder)."""
    aside = _private_name(entry)
    try:
        os.rename(entry, aside)
    except FileNotFoundError:
        return True  # already gone (another process)
    except OSError:
        return False
    _remove(aside)
    return True


def _sweep(cache: Path) -> None:
    """Delete temporary directories left by builders that died: dead pid on this host, or old."""
    try:
        for p in cache.glob(".corpus-*.tmp"):
            parts = p.name.split(".")  # ['', 'corpus-<key>', *host, pid, random, 'tmp']
            host, pid = ".".join(parts[2:-3]), parts[-3]
            dead = host == _HOST and pid.isascii() and pid.isdigit() and not pid_alive(int(pid))
            if dead or time.time() - p.lstat().st_mtime > _STALE_SECONDS:
                _remove(p)
    except OSError:
        pass  # an unreadable cache directory is reported when it is written


