"""Load IMDB-style review data from any of the forms people have it in.

    from rnnlab.data import load_imdb
    ds = load_imdb("../shared/data/imdb")          # parquet dir, aclImdb dir or tarball
    ds.train.texts[0], ds.train.labels[0]

Forms: a directory with `train.parquet`/`test.parquet` (columns text, label); an `aclImdb`
directory or `aclImdb*.tar.gz` tarball (read in place); a CSV (`text,label` or
`review,sentiment`) for evaluating on one's own file; or no path: the Hugging Face hub.
Every loader returns rows in the same order (negatives first, each class by review id,
as the HF parquet files), and everything read is validated: bad data raises `DataError`
with a one-line message naming the file and the problem.
"""
from __future__ import annotations

import lzma
import os
import posixpath
import re
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .io import first_line, home, is_utf8, no_such, require_file

ENV_VAR = "RNNLAB_DATA"
HUB_NAME = "stanfordnlp/imdb"
HUB_HOST = "huggingface.co"


class DataError(ValueError):
    """Input data is missing or malformed (message names the file and the problem)."""


@dataclass
class Split:
    """One split: review texts and 0/1 labels (0 = negative, 1 = positive)."""

    texts: list[str]
    labels: np.ndarray  # (N,) int64
    source: str

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, idx) -> "Split":
        idx = np.asarray(idx, dtype=np.int64)
        return Split([self.texts[i] for i in idx], self.labels[idx], self.source)

    def fingerprint(self) -> str:
        """sha256 of its rows (texts and labels)."""
        import hashlib

        h = hashlib.sha256()
        _hash_rows(h, self)
        return h.hexdigest()


def _hash_rows(h, split: Split) -> None:
    h.update(str(len(split)).encode())
    for t in split.texts:
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    h.update(split.labels.tobytes())


@dataclass
class Dataset:
    """Train and test splits and where they came from."""

    train: Split
    test: Split
    source: str

    def fingerprint(self) -> str:
        """sha256 of every row (texts and labels) of both splits, computed once."""
        if getattr(self, "_fingerprint", None) is None:
            import hashlib

            h = hashlib.sha256()
            for split in (self.train, self.test):
                _hash_rows(h, split)
            self._fingerprint = h.hexdigest()
        return self._fingerprint


def resolve_data_path(path: str | os.PathLike | None) -> str | None:
    """--data PATH, else $RNNLAB_DATA, else None (meaning: the Hugging Face hub). An empty PATH is refused:
    taken as "not given", it would silently read other data."""
    if path is not None and not str(path).strip():
        raise DataError(f"--data {str(path)!r}: an empty path; give a data path, or leave --data out to read "
                        f"${ENV_VAR} or the hub")
    found = str(path) if path else os.environ.get(ENV_VAR, "").strip() or None
    if found and re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", found) and not Path(found).exists():
        raise DataError(f"{found}: a URL; {'--data' if path else '$' + ENV_VAR} takes a local path: download it "
                        "first")  # Path() would have echoed it as "https:/host/..."
    return found


def data_source(path: str | os.PathLike | None) -> str:
    """Where `load_imdb(path)` reads, in words for a log line (an empty --data: load_imdb's error says why)."""
    if path is not None:
        return str(path) if str(path).strip() else repr(str(path))
    env = resolve_data_path(None)  # $RNNLAB_DATA, as load_imdb reads it
    return f"${ENV_VAR}: {env}" if env else f"{HUB_NAME} from the Hugging Face hub"


def load_imdb(path: str | os.PathLike | None = None) -> Dataset:
    """Load train and test splits from `path` (resolved as `resolve_data_path`)."""
    path = resolve_data_path(path)
    if path is None:
        return _load_hub()
    p = Path(path)
    if not p.exists():  # or a symbolic link to nowhere
        hub = re.fullmatch(r"[\w.-]+/[\w.-]+", str(path)) and not str(path).startswith(".") and not p.is_symlink()
        raise DataError(no_such(p, "file or directory") + (
            f" (--data takes a local path; without --data or ${ENV_VAR}, {HUB_NAME} is read from the hub)" if hub else ""))
    if not p.is_file() and not p.is_dir():  # a FIFO or a device: reading it could block for ever
        raise DataError(f"{p}: not a regular file or a directory")
    if p.is_file():
        if _is_tarball(p):
            return _load_acl_tarball(p)
        if p.suffix.lower() == ".csv":
            raise DataError(f"{p}: a CSV holds one split; training needs a train and a test split "
                            "(use a parquet directory, an aclImdb directory or tarball)")
        if p.suffix.lower() == ".parquet":
            raise DataError(f"{p}: one split; --data takes the folder that holds train.parquet and test.parquet")
        raise DataError(f"{p}: not a data folder (train.parquet and test.parquet, or aclImdb's) nor an aclImdb "
                        "tarball")
    return _load_dir(p)


def load_split(path: str | os.PathLike | None = None, name: str = "test") -> Split:
    """One split to read reviews from: a CSV or parquet file is that split itself (whatever `name`), a
    directory's NAME.parquet (the other split's file is not needed), else split NAME of the dataset."""
    resolved = resolve_data_path(path)
    p = Path(resolved) if resolved is not None else None
    # reviews of one class are a fine evaluation set, in any form (training needs both: load_imdb)
    if p is not None and p.is_file() and p.suffix.lower() == ".csv":
        return load_csv(p, both_classes=False)
    if p is not None and p.is_file() and p.suffix.lower() == ".parquet":
        return load_parquet(p, both_classes=False)
    if p is not None and p.is_dir() and (p / f"{name}.parquet").is_file():
        return load_parquet(p / f"{name}.parquet", both_classes=False)
    acl = None if p is None or not p.is_dir() else p if (p / name).is_dir() else p / "aclImdb"
    if acl is not None and (acl / name).is_dir() and not (p / "train.parquet").exists():
        return _load_acl_split(acl, name, both_classes=False)  # the other split is not read (nor refused)
    tar = p if p is not None and p.is_file() and _is_tarball(p) else None
    if p is not None and p.is_dir() and not any((p / n).exists() for n in ("train.parquet", "test.parquet", "train",
                                                                           "test", "aclImdb")):
        tar = _dir_tarball(p)
    if tar is not None:  # as the folder: the other split not needed (nor refused), one class a fine evaluation set
        return _acl_rows_to_split(_split_rows(tar, _acl_tarball_rows(tar), name), f"{tar}:{name}", both_classes=False)
    ds = load_imdb(resolved)
    return ds.test if name == "test" else ds.train


# --- directory forms ---------------------------------------------------------------------

def _load_dir(p: Path) -> Dataset:
    tr, te = p / "train.parquet", p / "test.parquet"
    if tr.exists() or te.exists():
        for f in (tr, te):
            if not f.exists():
                raise DataError(f"{f}: missing split (need both train.parquet and test.parquet)")
        return Dataset(load_parquet(tr), load_parquet(te), str(p))
    acl = p if (p / "train").is_dir() or (p / "test").is_dir() else p / "aclImdb"
    if acl.is_dir():
        return Dataset(_load_acl_split(acl, "train"), _load_acl_split(acl, "test"), str(acl))
    tar = _dir_tarball(p)
    if tar is not None:
        return _load_acl_tarball(tar)
    raise DataError(f"{p}: no train.parquet/test.parquet, aclImdb directory or aclImdb*.tar.gz here")


def _dir_tarball(p: Path) -> Path | None:
    """The one aclImdb*.tar.gz in folder `p`, or None; DataError for several, or one that is not a regular file."""
    tars = sorted(p.glob("aclImdb*.tar.gz"))
    for t in tars:
        if not t.is_file():
            raise DataError(f"{t}: not a regular file")
    if len(tars) > 1:
        raise DataError(f"{p}: holds {len(tars)} aclImdb tarballs ({', '.join(t.name for t in tars)}); "
                        "give one of them as --data")
    return tars[0] if tars else None


def load_parquet(f: str | os.PathLike, both_classes: bool = True) -> Split:
    import pyarrow as pa
    import pyarrow.parquet as pq

    f = Path(f)
    require_file(f, DataError)  # a FIFO's open would block for ever, where no signal stops it
    try:
        # pyarrow's own file: from a Python file object pyarrow keeps buffers that its threads release at exit, and
        # a command that failed soon after reading the data aborted (SIGABRT, "terminate called without an active
        # exception") in up to 10 of 10 runs. A name that is not UTF-8 pyarrow cannot open: a Python file then.
        with (pa.OSFile(str(f)) if is_utf8(str(f)) else open(f, "rb")) as fh:
            table = pq.read_table(fh, use_threads=False)
    except FileNotFoundError:
        raise DataError(f"{f}: no such file") from None
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{f}: cannot read parquet ({first_line(e)})") from None
    cols = set(table.column_names)
    if not {"text", "label"} <= cols:
        raise DataError(f"{f}: needs columns 'text' and 'label', found {sorted(cols)}")
    try:
        texts = table.column("text").to_pylist()
    except UnicodeDecodeError:  # arrow strings are UTF-8 unless written unvalidated: find the row
        raise DataError(f"{f}: row {_first_non_utf8(table.column('text'))}: text is not UTF-8") from None
    labels = table.column("label").to_pylist()
    return _validated(texts, labels, str(f), both_classes)


def _first_non_utf8(column) -> int:
    """The index of the first value of an arrow string column whose bytes are not UTF-8 (-1: none)."""
    import pyarrow as pa

    for i, b in enumerate(column.cast(pa.binary()).to_pylist()):
        try:
            b is None or b.decode("utf-8")
        except UnicodeDecodeError:
            return i
    return -1


def load_csv(f: str | os.PathLike, both_classes: bool = True) -> Split:
    """A CSV with columns text,label (0/1) or review,sentiment (positive/negative); other columns are ignored."""
    import csv

    f = Path(f)
    if not f.is_file():
        raise DataError(f"{f}: no such file")
    csv.field_size_limit(2**31 - 1)  # a review may be longer than the module's default 128 kB field
    try:
        with open(f, encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh, strict=True)  # a stray quote is an error, not a field that swallows rows
            rows = list(reader)
    except UnicodeDecodeError:
        raise DataError(f"{f}: not UTF-8 text") from None
    except csv.Error as e:
        raise DataError(f"{f}: cannot parse CSV at line {reader.line_num} ({first_line(e)})") from None
    if not rows:
        raise DataError(f"{f}: empty file (no header)")
    cols = [c.strip().lower() for c in rows[0]]
    twice = sorted({c for c in cols if cols.count(c) > 1 and c in ("text", "label", "review", "sentiment")})
    if twice:
        raise DataError(f"{f}: column {twice[0]!r} appears twice in the header")
    body = [r for r in rows[1:] if r]  # blank lines are skipped
    for i, r in enumerate(body):
        if len(r) != len(cols):
            raise DataError(f"{f}: row {i}: {len(r)} field{'s' * (len(r) != 1)}, the header has {len(cols)} "
                            f"({','.join(cols)})")
    if {"text", "label"} <= set(cols):
        t, y = cols.index("text"), cols.index("label")
        texts, labels = [r[t] for r in body], [_parse_int_label(r[y]) for r in body]
    elif {"review", "sentiment"} <= set(cols):
        t, y = cols.index("review"), cols.index("sentiment")
        m = {"positive": 1, "pos": 1, "negative": 0, "neg": 0}
        for i, r in enumerate(body):
            if r[y].strip().lower() not in m:
                raise DataError(f"{f}: row {i}: sentiment {r[y]!r} is not positive or negative")
        texts, labels = [r[t] for r in body], [m[r[y].strip().lower()] for r in body]
    else:
        found = ",".join(c.strip() for c in rows[0])  # as written: cols is lowercased
        raise DataError(f"{f}: needs columns text,label or review,sentiment; found {found}")
    return _validated(texts, labels, str(f), both_classes)


def _parse_int_label(v):
    s = str(v).strip()
    return int(s) if s in ("0", "1") else v


_ACL_NAME = re.compile(r"(?:^|/)aclImdb/(train|test)/(pos|neg)/(\d+)_(\d+)\.txt$")
_ACL_REVIEW = re.compile(r"(?:^|/)aclImdb/(?:train|test)/(?:pos|neg)/[^/.][^/]*\.txt$")  # any review-like name


def _misnamed(name: str) -> str:
    """A class folder's .txt file that is not named as aclImdb names its reviews: refused, not skipped (skipping
    it would silently drop a review). Hidden files (macOS's ._ companions) are not reviews and are skipped."""
    return (f"{name}: not named <id>_<rating>.txt as aclImdb's reviews are (rename it, or move it out of the "
            "class folder)")


def _load_acl_split(root: Path, split: str, both_classes: bool = True) -> Split:
    d = root / split
    if not d.is_dir():
        raise DataError(f"{d}: missing split directory")
    rows = []
    for label, cls in ((0, "neg"), (1, "pos")):
        cdir = d / cls
        if not cdir.is_dir():
            raise DataError(f"{cdir}: missing class directory")
        for fp in cdir.glob("*.txt"):
            m = re.match(r"(\d+)_(\d+)\.txt$", fp.name)
            if not m:
                if fp.name.startswith("."):
                    continue
                raise DataError(_misnamed(str(fp)))
            if not fp.is_file():  # a directory, a link to nothing, a FIFO (its read would block)
                raise DataError(f"{fp}: not a regular file")
            try:
                text = fp.read_bytes().decode("utf-8")  # bytes as stored: keep \r\n like the tarball
            except UnicodeDecodeError:
                raise DataError(f"{fp}: not UTF-8 text") from None
            rows.append((label, int(m.group(1)), text))
    return _acl_rows_to_split(rows, str(d), both_classes)


def _load_acl_tarball(f: Path) -> Dataset:
    rows = _acl_tarball_rows(f)
    train, test = (_split_rows(f, rows, split) for split in ("train", "test"))  # both there before either is read
    return Dataset(_acl_rows_to_split(train, f"{f}:train"), _acl_rows_to_split(test, f"{f}:test"), str(f))


def _split_rows(f: Path, rows: dict[str, list], split: str) -> list:
    """A split's rows of the tarball `f` (`_acl_tarball_rows`); DataError where it has none."""
    if not rows[split]:
        raise DataError(f"{f}: no aclImdb/{split}/{{pos,neg}}/*.txt reviews in the archive")
    return rows[split]


def _acl_tarball_rows(f: Path) -> dict[str, list]:
    """{"train": rows, "test": rows} of the aclImdb folder from its tarball, each (label, id, text): a review stored
    as a link is read through it, as the folder loader reads it, and a name listed twice (tar -r) counts once, as
    its last listing, as extraction would leave it."""
    entries: dict[str, tuple] = {}  # a review's normalised name -> ("text", text) or ("link", target): last wins
    others: dict[str, tarfile.TarInfo] = {}  # any other file, read only if a review links to it
    links: dict[str, str] = {}  # every link's normalised name -> its target's (chains through any file)
    try:
        with tarfile.open(f, "r:*") as tar:
            for member in tar:
                if not (member.isfile() or member.islnk() or member.issym()):
                    continue
                name = posixpath.normpath(member.name)
                review = _ACL_NAME.search(name)
                if not review and _ACL_REVIEW.search(name):
                    raise DataError(f"{f}: " + _misnamed(member.name))
                if member.isfile():
                    links.pop(name, None)
                    if review:
                        entries[name] = ("text", _member_text(tar, member, f))
                    else:
                        others[name] = member
                    continue
                base = "" if member.islnk() else posixpath.dirname(name)  # hard: a member; symbolic: from its folder
                links[name] = posixpath.normpath(posixpath.join(base, member.linkname))
                others.pop(name, None)
                if review:
                    entries[name] = ("link", member.linkname)
            _check_archive_end(tar, f)
            ends = {name: _link_end(name, links) for name, (kind, _) in entries.items() if kind == "link"}
            needed = sorted({e for e in ends.values() if e in others}, key=lambda n: others[n].offset_data)
            texts = {n: _member_text(tar, others[n], f) for n in needed}  # in the archive's order: one rewind
    except (tarfile.TarError, EOFError, OSError, ValueError, lzma.LZMAError, zlib.error) as e:  # the last two: a
        if isinstance(e, DataError):  # corrupt compressed stream, which tarfile passes on as it is
            raise
        if isinstance(e, tarfile.ReadError) and str(e).startswith("file could not be opened successfully"):
            # tarfile's list of the compressions it tried, one a line: a saved web page, a zip, an empty file
            raise DataError(f"{f}: not a tar archive (plain, gzip, bzip2 or xz), or cut short; download it "
                            "again") from None
        raise DataError(f"{f}: truncated or corrupt archive ({first_line(e)})") from None
    rows: dict[str, list] = {"train": [], "test": []}
    for name, (kind, value) in entries.items():
        if kind == "link":
            end = ends[name]
            text = entries[end][1] if end in entries and entries[end][0] == "text" else texts.get(end)
            if text is None:
                raise DataError(f"{f}: {name} links to {value}, which is no file in the archive")
        else:
            text = value
        split, cls, rid = _ACL_NAME.search(name).group(1, 2, 3)
        try:
            number = int(rid)
        except ValueError:  # past 4,300 digits (sys.get_int_max_str_digits) int() refuses the string
            raise DataError(f"{f}: {name[:80]}...: a review id of {len(rid):,} digits") from None
        rows[split].append((1 if cls == "pos" else 0, number, text))
    return rows


def _link_end(name: str, links: dict[str, str]) -> str:
    """Where a chain of links from `name` ends (a file's name, or a name the archive does not hold); a loop ends
    at a link. Each link's end is kept in `links` as it is found, so long chains cost once."""
    path, seen = [], set()
    while name in links and name not in seen:
        seen.add(name)
        path.append(name)
        name = links[name]
    for link in path:
        if name not in seen:  # not a loop: every link on the way leads here
            links[link] = name
    return name


def _member_text(tar: tarfile.TarFile, member: tarfile.TarInfo, f: Path) -> str:
    try:
        return tar.extractfile(member).read().decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{f}: {member.name} is not UTF-8 text") from None


def _check_archive_end(tar: tarfile.TarFile, f: Path) -> None:
    """tarfile takes a bad header for the end of the archive: make sure it really ended."""
    fileobj = tar.fileobj
    if hasattr(fileobj, "_fp") or type(fileobj).__name__ in ("GzipFile", "BZ2File", "LZMAFile"):
        while fileobj.read(1 << 20):  # reading to the end verifies the compressed stream's checksum
            pass
        return
    fileobj.seek(tar.offset)
    rest = fileobj.read()
    if len(rest) < 1024 or rest.strip(b"\0"):
        raise DataError(f"{f}: truncated or corrupt archive (data after the last readable member)")


def _acl_rows_to_split(rows: list, source: str, both_classes: bool = True) -> Split:
    rows.sort(key=lambda r: (r[0], r[1]))  # negatives first, then by review id: the HF order
    return _validated([r[2] for r in rows], [r[0] for r in rows], source, both_classes)


# --- hub -----------------------------------------------------------------------------------

def _load_hub() -> Dataset:
    """The seed's own source, used when no --data and no $RNNLAB_DATA: a copy in the local Hugging Face
    cache, else a download; without a network that fails within a few seconds, not after retries."""
    hf_home = _hf_home()
    datasets_cache = os.environ.get("HF_DATASETS_CACHE") or (hf_home / "datasets" if hf_home else None)
    # the datasets library's folder owner___name; $HF_DATASETS_CACHE needs no home folder
    cached = datasets_cache is not None and (Path(datasets_cache) / HUB_NAME.replace("/", "___")).is_dir()
    if hf_home is None and not cached:
        raise DataError(f"hub {HUB_NAME}: no home folder to cache a download in (HOME is empty or names no folder): "
                        f"set HF_HOME to a folder, or pass --data PATH or set {ENV_VAR} to a local copy")
    try:
        if not cached and not _reachable(HUB_HOST):
            raise ConnectionError(f"{HUB_HOST} is unreachable (offline?) and no copy is cached")
        from datasets import load_dataset

        ds = _offline(lambda: load_dataset(HUB_NAME)) if cached else load_dataset(HUB_NAME)
    except Exception as e:  # network, hub or cache errors: one line, not a traceback
        raise DataError(f"hub {HUB_NAME}: cannot load ({first_line(e)}); "
                        f"pass --data PATH or set {ENV_VAR} to a local copy") from None
    return Dataset(_validated(ds["train"]["text"], ds["train"]["label"], f"hub:{HUB_NAME}:train"),
                   _validated(ds["test"]["text"], ds["test"]["label"], f"hub:{HUB_NAME}:test"),
                   f"hub:{HUB_NAME}")


def _hf_home() -> Path | None:
    """Where the Hugging Face libraries keep their caches, as they resolve it: $HF_HOME, else
    $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface; None where that needs a home folder and there is none
    (an empty HOME would put it in /.cache)."""
    folder = home()
    for setting, under in (("HF_HOME", ""), ("XDG_CACHE_HOME", "huggingface")):
        if value := os.environ.get(setting):  # "~/x": the home's x, where there is a home
            return None if value.startswith("~") and not folder else Path(os.path.expanduser(value)) / under
    return folder / ".cache" / "huggingface" if folder else None


def _offline(fn):
    """Run `fn` with the Hugging Face libraries in offline mode (no network request at all)."""
    import datasets.config
    import huggingface_hub.constants as hub

    old = datasets.config.HF_HUB_OFFLINE, hub.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = hub.HF_HUB_OFFLINE = True
    try:
        return fn()
    finally:
        datasets.config.HF_HUB_OFFLINE, hub.HF_HUB_OFFLINE = old


def _reachable(host: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to host:443 opens within `timeout` seconds (name lookup included)."""
    import socket
    import threading

    ok = []

    def probe():
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return bool(ok)


# --- validation ----------------------------------------------------------------------------

def _validated(texts: list, labels: list, source: str, both_classes: bool = True) -> Split:
    if len(texts) == 0:
        raise DataError(f"{source}: no rows")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise DataError(f"{source}: row {i}: text is {'missing' if t is None else type(t).__name__}, not a string")
    for i, y in enumerate(labels):
        if isinstance(y, bool) or not isinstance(y, (int, np.integer)) or y not in (0, 1):
            kind = "" if isinstance(y, (int, np.integer)) and not isinstance(y, bool) else f" (a {type(y).__name__})"
            raise DataError(f"{source}: row {i}: label {y!r}{kind} is not the integer 0 or 1")
    arr = np.asarray(labels, dtype=np.int64)
    if both_classes and len(np.unique(arr)) < 2:
        raise DataError(f"{source}: only one class present (label {int(arr[0])}); need both 0 and 1")
    return Split(list(texts), arr, source)


def _is_tarball(p: Path) -> bool:
    n = p.name.lower()
    return n.endswith((".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tbz2", ".tar.xz", ".txz"))  # what tarfile's r:* reads


