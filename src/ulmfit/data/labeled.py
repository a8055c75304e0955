"""Labeled data for the classifier (stage 3 of ULMFiT): readers of the usual layouts.

Every reader returns a `LabeledTexts` (texts, labels, and where each example came from, so that
later checks can name the file and line of a bad example). The layouts:

* CSV / TSV with a header row: ``text_col`` names the text column ("title,body" joins several with
  xxfld), ``label_col`` the label column (defaults "text" and "label").
* CSV / TSV without a header row: columns by 0-based index (``text_col="1,2"``, ``label_col="0"``);
  by default the label is column 0 and the text the other columns joined with xxfld, which is the
  fast.ai / torchtext layout of AG News, DBpedia and Yelp (``fmt="fastai"``). Whether the first
  row is a header is detected when ``header`` is None (see `_first_row_is_header`).
* JSON lines: one object per line; the label may be a string, a number or a list (multi-label).
* A folder per class, ``path/<class>/*.txt``, one document per file; with ``path/train`` and
  ``path/test`` (the aclImdb layout) ``split`` picks one. ``unsup/`` is never a class.
* TREC: ``LABEL:fine question text`` lines; the label is the coarse LABEL (``trec_fine=True``:
  "LABEL:fine").

Errors are `UlmfitError`s that name the file and line and say what to do.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import random
import re
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from ..io import UlmfitError, as_texts
from ..text.tokenize import join_fields
from .corpus import (_decode_error, _iter_lines, check_source, check_width, column_name, csv_delimiter, field_names,
                     refuse_json_array, table_error, table_reader, text_files, unique_columns)

FORMATS = ("auto", "csv", "tsv", "fastai", "jsonl", "folder", "trec")

_TREC = re.compile(r"^([A-Z]+):(\S+)(?:\s+(.*))?$")
_TREC_SNIFF = re.compile(r"^[A-Z]+:\S+ ")
_SPLIT_NAMES = ("train", "test", "valid", "dev", "training", "testing", "val", "validation")
_SKIP_DIRS = ("unsup",)  # aclImdb's unlabeled reviews: text for the LM, never a class
_COLUMN_HINT = "choose with --text-col / --label-col"


def _memory_label(lab, i: int, source: str):
    """A label given in memory as the string a JSONL file would give (`_label_str`: 1 and 1.0 -> "1",
    True -> "true"); a list of them for multi-label data. None is refused, as is any other object."""
    if isinstance(lab, str):
        return label_name(lab)
    if isinstance(lab, (list, tuple)):
        return [_memory_label(x, i, source) for x in lab]
    if hasattr(lab, "item") and getattr(lab, "ndim", 1) == 0:  # a numpy scalar
        lab = lab.item()
    if lab is None or (isinstance(lab, float) and lab != lab):
        raise UlmfitError(f"{source}: example {i + 1} has no label ({lab})")
    return _label_str(lab, f"{source}: example {i + 1}")


@dataclass
class LabeledTexts:
    """Texts with their labels (a str each, or a list of str each for multi-label data)."""

    texts: list[str]
    labels: list  # list[str], or list[list[str]] for multi-label data
    source: str  # the file or folder it came from (for messages)
    lines: list[int] | None = None  # 1-based line (file index for folders) of each example
    files: list[str] | None = None  # folder layouts: the file of each example
    n_skipped: int = 0  # empty texts skipped (skip_empty=True)

    def __post_init__(self):
        # any iterable of texts (a tuple, a numpy array, a generator) becomes a list; a single string
        # is refused (iterating it gives one text per character), as are labels given as one string
        self.texts = as_texts(self.texts, f"{self.source}: texts")
        if isinstance(self.labels, (str, bytes)):
            raise UlmfitError(f"{self.source}: labels must be a list, one per text, not a single string")
        try:
            self.labels = list(self.labels)
        except TypeError:
            raise UlmfitError(f"{self.source}: labels must be a list, one per text, not "
                              f"{type(self.labels).__name__}") from None
        if len(self.texts) != len(self.labels):
            raise UlmfitError(f"{self.source}: {len(self.texts)} texts but {len(self.labels)} labels")
        # Labels are strings, as a file gives them: numbers (0/1 labels in memory) become their text,
        # so that a classifier trained on a CSV of 0/1 also evaluates labels given as ints.
        if not all(isinstance(lab, str) for lab in self.labels):
            self.labels = [_memory_label(lab, i, self.source) for i, lab in enumerate(self.labels)]
            if any(isinstance(lab, list) for lab in self.labels):  # multi-label, as a file reader gives it:
                self.labels = [_norm_label(lab if isinstance(lab, list) else [lab], None, self.source)
                               for lab in self.labels]  # a lone "x" is ["x"], "" is none, a repeat is once

    def __len__(self) -> int:
        return len(self.texts)

    def __repr__(self) -> str:
        """A summary (the dataclass's own repr printed every text: megabytes for a notebook cell)."""
        counts = self.class_counts()
        names = list(counts)
        shown = ", ".join(f"{n!r}: {counts[n]:,}" for n in names[:6]) + (", ..." if len(names) > 6 else "")
        kind = "multi-label, " if self.multi_label else ""
        return (f"LabeledTexts({self.source!r}: {len(self):,} texts, {kind}{len(names):,} labels {{{shown}}})")

    @property
    def multi_label(self) -> bool:
        return any(isinstance(lab, list) for lab in self.labels)

    def label_names(self) -> list[str]:
        """The distinct labels, sorted (numerically when every label is an integer)."""
        return sort_labels(_flat(self.labels))

    def where(self, i: int) -> str:
        """Where example i came from, for messages: 'file, line N' or the document's file."""
        if self.files is not None:
            return self.files[i]
        if self.lines is not None:
            return f"{self.source}, line {self.lines[i]}"
        return f"{self.source}, example {i + 1}"

    def subset(self, indices: Iterable[int]) -> "LabeledTexts":
        idx = list(indices)
        pick = lambda xs: None if xs is None else [xs[i] for i in idx]  # noqa: E731
        return LabeledTexts([self.texts[i] for i in idx], [self.labels[i] for i in idx], self.source,
                            pick(self.lines), pick(self.files))

    def class_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for lab in _flat(self.labels):
            counts[lab] = counts.get(lab, 0) + 1
        return {k: counts[k] for k in sort_labels(counts)}


def sort_labels(labels: Iterable[str]) -> list[str]:
    """Sorted distinct labels; "2" before "10" when all of them are integers."""
    uniq = set(labels)
    if uniq and all(re.fullmatch(r"-?\d+", x) for x in uniq):
        # "1" and "01" are equal as numbers: the text breaks the tie, or their order (and with it the
        # validation split and a resumed run's label check) would follow the set's hash order
        return sorted(uniq, key=lambda x: (int(x), x))
    return sorted(uniq)


def _flat(labels) -> Iterator[str]:
    for lab in labels:
        if isinstance(lab, list):
            yield from lab
        else:
            yield lab


# ---------------------------------------------------------------------------------------------
# Public readers


def read_labeled(
    path: str | os.PathLike,
    *,
    fmt: str = "auto",
    text_col: str | Sequence[str] | None = None,
    label_col: str | None = None,
    header: bool | None = None,
    encoding: str = "utf-8",
    split: str | None = None,
    multi_label_sep: str | None = None,
    trec_fine: bool = False,
    skip_empty: bool = False,
) -> LabeledTexts:
    """Read labeled examples from a file or folder (see the module docstring for the layouts).

    An empty text raises (the message says which line) unless ``skip_empty`` is true; then such
    examples are counted (``n_skipped``) and a warning goes to stderr. An empty label always
    raises, except in multi-label data, where it means "none of the labels".
    """
    path = Path(path)
    fmt = resolve_labeled_format(path, fmt, encoding)
    if fmt == "folder":
        root = _split_folder(path, split)
        records = _folder_records(root, encoding)
        source = str(root)
    else:
        if split is not None:
            raise UlmfitError(f"{path} is a file: split={split!r} only applies to a folder with train/ and test/")
        records = _file_records(path, fmt, text_col, label_col, header, encoding, trec_fine, need_label=True)
        source = str(path)
    return _collect(records, source, multi_label_sep, skip_empty)


def read_unlabeled_texts(
    path: str | os.PathLike,
    *,
    fmt: str = "auto",
    text_col: str | Sequence[str] | None = None,
    label_col: str | None = None,
    header: bool | None = None,
    encoding: str = "utf-8",
    split: str | None = None,
) -> Iterator[str]:
    """Yield the non-empty texts of `path`, labels ignored (text for fine-tuning the LM).

    A folder yields the documents of its class folders and of unsup/ (of every split folder, or
    of ``path/split`` when `split` is given): for aclImdb that is train/, test/ and train/unsup/,
    the 100k reviews the paper fine-tuned its LM on; pass split="train" to leave the test reviews
    out. Loose files such as aclImdb's urls_*.txt are not documents. A folder without class
    folders yields every *.txt below it. A file yields the text column(s) of every row;
    its label column may be absent.
    """
    path = Path(path)
    fmt = resolve_labeled_format(path, fmt, encoding)
    if fmt == "folder":
        files = _unlabeled_files(path, split)
        records: Iterator = ((i, [_read_doc(p, encoding)], None, str(p)) for i, p in enumerate(files, 1))
    else:
        records = _file_records(path, fmt, text_col, label_col, header, encoding, False, need_label=False)
    n = 0
    for _, fields, _, _ in records:
        if any(f.strip() for f in fields):
            n += 1
            yield fields[0] if len(fields) == 1 else join_fields(fields)
    if n == 0:
        raise UlmfitError(f"{path} holds no non-empty text")


def resolve_labeled_format(path: Path, fmt: str = "auto", encoding: str = "utf-8") -> str:
    """The concrete format "auto" stands for, after checking that `path` exists."""
    known = check_source(path, fmt, FORMATS, "labeled-data", "a folder of class folders")
    if known is not None:
        return known
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return suffix[1:]
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    first = next((line.strip() for _, line in _iter_lines(path, encoding) if line.strip()), None)
    if first is None:
        raise UlmfitError(f"{path} is empty: no examples")
    if _TREC_SNIFF.match(first):
        return "trec"
    refuse_json_array(path, first)
    if first.startswith("{"):
        return "jsonl"
    if "\t" in first:
        return "tsv"
    if "," in first:
        return "csv"
    raise UlmfitError(
        f"{path}: cannot tell the format of this file; name it .csv, .tsv or .jsonl, or pass the "
        f"format (one of {', '.join(FORMATS[1:])})"
    )


# ---------------------------------------------------------------------------------------------
# Checks


def check_one_class(data: LabeledTexts, what: str = "training") -> None:
    """A classifier needs two classes (multi-label data: at least one label)."""
    names = data.label_names()
    if data.multi_label:
        if not names:
            raise UlmfitError(f"{data.source}: no example of the {what} data has a label")
    elif len(names) < 2:
        raise UlmfitError(
            f"{data.source}: the {what} data has only one class ({names[0]!r}, {len(data)} examples); "
            "a classifier needs examples of at least two classes"
        )


def validate_training(data: LabeledTexts) -> None:
    """Raise if `data` cannot train a classifier: no examples, an empty text (a file's reader refuses
    those with their line; texts given in memory are checked here), or a single class."""
    if len(data) == 0:
        raise UlmfitError(f"{data.source}: no training examples")
    empty = next((i for i, t in enumerate(data.texts) if not t.strip()), None)
    if empty is not None:
        raise UlmfitError(f"{data.source}: example {empty + 1} has an empty text; drop such examples first")
    check_one_class(data, "training")


def check_labels(train: LabeledTexts, other: LabeledTexts, what: str = "test") -> None:
    """Raise if `other` (test/valid data) has a label that never occurs in `train`."""
    if train.multi_label != other.multi_label and len(other) and len(train):
        kinds = ("multi-label", "single-label")
        raise UlmfitError(
            f"{other.source}: the {what} data is {kinds[not other.multi_label]} but the training data "
            f"({train.source}) is {kinds[not train.multi_label]}"
        )
    check_label_names(train.label_names(), other, what, f"the training data ({train.source})")


def check_label_names(
    names: Sequence[str], other: LabeledTexts, what: str = "test", known_from: str = "the training data"
) -> None:
    """Raise naming each label of `other` not in `names`, with where it first occurs."""
    known = set(names)
    first: dict[str, int] = {}
    for i, lab in enumerate(other.labels):
        for x in lab if isinstance(lab, list) else (lab,):
            if x not in known and x not in first:
                first[x] = i
    if first:
        items = list(first.items())
        folded = {}
        for x in names:
            folded.setdefault(x.casefold(), x)
        shown = ", ".join(f"{x!r} (first at {other.where(i)}"
                          + (f"; the known labels have {folded[x.casefold()]!r}" if x.casefold() in folded else "")
                          + ")" for x, i in items[:5])
        more = f" and {len(items) - 5} more" if len(items) > 5 else ""
        case = ("; labels are compared exactly, case included (JSON writes booleans as true/false, pandas "
                "as True/False)" if any(x.casefold() in folded for x, _ in items) else "")
        raise UlmfitError(
            f"label(s) {shown}{more} occur in the {what} data but never in {known_from}; the classifier "
            f"cannot predict them: fix the labels, or add training examples of them{case}"
        )


def stratified_split(
    data: LabeledTexts, valid_frac: float = 0.1, seed: int = 0
) -> tuple[LabeledTexts, LabeledTexts]:
    """Hold out about `valid_frac` of each class for validation; deterministic given `seed`.

    A class of n >= 2 examples gives floor(valid_frac * n + 0.5) of them, at least 1 and at most
    n - 1, to validation; a class of one example stays in training. Multi-label data is split at
    random (not stratified), except that an example does not go to validation when it holds the
    last training example of one of its labels. Both parts keep the original order of the examples.
    """
    if not 0.0 < valid_frac < 1.0:
        raise UlmfitError(f"valid_frac must be between 0 and 1 (exclusive), not {valid_frac}")
    validate_training(data)
    rng = random.Random(seed)
    valid: list[int] = []
    if data.multi_label:
        n = len(data)
        if n < 2:
            raise UlmfitError(f"{data.source}: cannot split {n} example into training and validation")
        order = list(range(n))
        rng.shuffle(order)
        want = min(n - 1, max(1, math.floor(valid_frac * n + 0.5)))
        left: dict[str, int] = {}  # training examples of each label
        for lab in _flat(data.labels):
            left[lab] = left.get(lab, 0) + 1
        for i in order:
            if len(valid) == want:
                break
            if all(left[lab] > 1 for lab in data.labels[i]):
                for lab in data.labels[i]:
                    left[lab] -= 1
                valid.append(i)
    else:
        by_class: dict[str, list[int]] = {}
        for i, lab in enumerate(data.labels):
            by_class.setdefault(lab, []).append(i)
        for lab in sort_labels(by_class):
            idx = by_class[lab]
            n = len(idx)
            if n < 2:
                continue
            rng.shuffle(idx)
            valid.extend(idx[: min(n - 1, max(1, math.floor(valid_frac * n + 0.5)))])
    held = set(valid)
    train_idx = [i for i in range(len(data)) if i not in held]
    return data.subset(train_idx), data.subset(sorted(valid))


# ---------------------------------------------------------------------------------------------
# Collecting records into LabeledTexts

# A record is (line or file index, text fields, raw label or None, file or None).


def _collect(records: Iterable, source: str, sep: str | None, skip_empty: bool) -> LabeledTexts:
    texts: list[str] = []
    labels: list = []
    lines: list[int] = []
    files: list[str] = []
    n_skipped = 0
    first_empty_label: int | None = None
    for lineno, fields, raw, file in records:
        where = file or f"{source}, line {lineno}"
        if not any(f.strip() for f in fields):
            if skip_empty:
                n_skipped += 1
                continue
            raise UlmfitError(
                f"{where}: empty text; remove or fill in such examples (or skip them with --skip-empty)"
            )
        try:
            label = _norm_label(raw, sep, where)
        except UlmfitError as e:
            if not str(e).startswith("the label "):  # label_name's: it knows no file or line
                raise
            raise UlmfitError(f"{where}: {e}") from None
        if label == "" and first_empty_label is None:
            first_empty_label = len(labels)
        texts.append(fields[0] if len(fields) == 1 else join_fields(fields))
        labels.append(label)
        lines.append(lineno)
        if file is not None:
            files.append(file)
    if not texts:
        skipped = f" ({n_skipped} empty text(s) skipped)" if n_skipped else ""
        raise UlmfitError(f"{source}: no examples{skipped}")
    n_lists = sum(isinstance(lab, list) for lab in labels)
    multi = sep is not None or n_lists > 0
    if sep is None and 0 < n_lists < len(labels):  # one list among plain labels makes it all multi-label
        print(f"note: {source}: {n_lists:,} of {len(labels):,} labels are lists, so the data is read as "
              "multi-label (a plain label is a set of one)", file=sys.stderr)
    data = LabeledTexts(texts, labels, source, lines, files or None, n_skipped)
    # multi-label: LabeledTexts made a lone string a one-label list and "" no label
    if not multi and first_empty_label is not None:
        raise UlmfitError(f"{data.where(first_empty_label)}: empty label; every example needs one")
    if n_skipped:
        print(f"warning: skipped {n_skipped} example(s) of {source} with an empty text", file=sys.stderr)
    _note_labels_alike(data.label_names(), source)
    return data


def _note_labels_alike(names: list[str], source: str) -> None:
    """Labels that differ only in case ('Pos' and 'pos') are different classes; most often that is a
    typo in the data, so say so (once, with a few of them) rather than silently train two classes."""
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(n.casefold(), []).append(n)
    alike = [g for g in groups.values() if len(g) > 1]
    if alike:
        shown = "; ".join(" and ".join(map(repr, g)) for g in alike[:3]) + ("; ..." if len(alike) > 3 else "")
        print(f"note: {source}: labels that differ only in case are different classes: {shown}", file=sys.stderr)


def _norm_label(raw, sep: str | None, where: str):
    if isinstance(raw, list):
        out: list[str] = []
        for x in raw:
            s = _label_str(x, where)
            if s and s not in out:
                out.append(s)
        return out
    s = _label_str(raw, where)
    if sep is None:
        return s
    out = []
    for part in s.split(sep):
        part = label_name(part)  # stripped, and "1.0" as "1", as a single label would be
        if part and part not in out:
            out.append(part)
    return out


def _label_str(x, where: str) -> str:
    if x is None:
        return ""
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, float) and not math.isfinite(x):  # JSON's NaN (Python's json writes it) or Infinity
        if x != x:
            return ""  # no label, as null
        raise UlmfitError(f"{where}: {x} is not a label")
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    if isinstance(x, (str, int, float)):
        return label_name(str(x))
    raise UlmfitError(f"{where}: a label must be a string, a number or a list of them, not {x!r:.60}")


def label_name(s: str) -> str:
    """A label as every reader names it: stripped, and "1.0" (the label 1 written by a float column:
    pandas writes 0/1 labels with NaNs as 0.0/1.0) as "1", the same label as "1" in another file
    and as the number 1.0 in JSON."""
    s = s.strip()
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:  # it could not be saved with the model: say so before training, not after it
        raise UlmfitError(f"the label {ascii(s)} is not valid text: it holds a lone surrogate, from a "
                          "folder name in another encoding than UTF-8 or a JSON \\ud800-\\udfff escape without its "
                          "pair; rename it") from None
    if not s.isascii() and not unicodedata.is_normalized("NFC", s):  # "café" typed with a combining accent
        s = unicodedata.normalize("NFC", s)
    if _WHOLE_FLOAT.fullmatch(s):  # its sign as written: "+1.0" is the label "+1", "-1.0" is "-1"
        head = s[: s.index(".")]
        return ("+" if head.startswith("+") else "") + str(int(head))
    return s


def label_names_as_read(labels: list[str]) -> list[str]:
    """A saved model's labels named as the readers name them now (models trained before "1.0" was
    read as "1" saved "1.0"); unchanged where that would make two labels one."""
    named = [label_name(x) for x in labels]
    return named if len(set(named)) == len(named) else list(labels)


_WHOLE_FLOAT = re.compile(r"[-+]?\d+\.0+")


# ---------------------------------------------------------------------------------------------
# File formats


def _file_records(path: Path, fmt: str, text_col, label_col, header, encoding, trec_fine, need_label):
    if fmt in ("csv", "tsv", "fastai"):
        delimiter = "\t" if fmt == "tsv" or (fmt == "fastai" and path.suffix.lower() == ".tsv") else ","
        if fmt == "csv" and header is not False:
            text_spec, label_spec = _cols(text_col, "text"), _cols(label_col, "label")
            delimiter = csv_delimiter(path, encoding, (text_spec or ["text"])
                                      + (label_spec or (["label"] if need_label else [])))
        if fmt == "fastai" and header is None:
            header = False
        return _table_records(path, encoding, delimiter, text_col, label_col, header, need_label)
    if fmt == "jsonl":
        return _jsonl_records(path, encoding, text_col, label_col, need_label)
    if fmt == "trec":
        return _trec_records(path, encoding, trec_fine)
    raise UlmfitError(f"unknown labeled-data format {fmt!r}")  # pragma: no cover


def _cols(spec, what: str) -> list[str] | None:
    if spec is None:
        return None
    cols = spec.split(",") if isinstance(spec, str) else [str(c) for c in spec]
    cols = [column_name(c) for c in cols if c.strip()]
    if not cols:
        raise UlmfitError(f"no column name in the {what} column {spec!r}")
    return cols


def _csv_rows(path: Path, encoding: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(line where the row starts, fields) of each non-blank row."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # reviews can exceed the 128 KiB default
    pos = [0]

    def text_lines():
        for lineno, line in _iter_lines(path, encoding):
            pos[0] = lineno
            yield line

    reader = table_reader(text_lines(), delimiter)
    while True:
        start = pos[0] + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise table_error(path, pos[0], delimiter, e) from None
        if row:
            yield start, row


def _table_records(path: Path, encoding, delimiter, text_col, label_col, header, need_label):
    text_spec, label_spec = _cols(text_col, "text"), _cols(label_col, "label")
    if label_spec is not None and len(label_spec) > 1:
        raise UlmfitError(f"the label column must be one column, not {label_col!r}")
    rows = _csv_rows(path, encoding, delimiter)
    first = next(rows, None)
    if first is None:
        raise UlmfitError(f"{path} is empty: no examples")
    head = list(itertools.islice(rows, 200))
    rows = itertools.chain(head, rows)
    auto = header is None
    if auto:
        header = _first_row_is_header(first[1], [r for _, r in head], text_spec, label_spec)
        if header and not _names_settle_header(first[1], text_spec, label_spec):  # a guess: say so
            cells = ", ".join(repr(c.strip()[:30]) for c in first[1][:4]) + (", ..." if len(first[1]) > 4 else "")
            print(f"note: {path}: read its first row ({cells}) as column names; if it is an example, "
                  "pass --no-header (header=False from Python)", file=sys.stderr)

    if header:
        names = [column_name(h) for h in first[1]]
        hint = "; if the first row is an example, not a header, pass --no-header" if auto else ""
        text_idx = _resolve(text_spec or ["text"], names, path, hint)
        label_idx = None
        if need_label or label_spec is not None or "label" in names:
            label_idx = _resolve(label_spec or ["label"], names, path, hint)[0]
        wanted = (text_spec or ["text"]) + ([label_spec[0] if label_spec else "label"] if label_idx is not None else [])
        unique_columns(path, names, wanted, ", or choose the column by its 0-based number")
    else:
        rows = itertools.chain([first], rows)
        n_cols = len(first[1])
        label_idx = _index(label_spec[0], n_cols, path) if label_spec else 0
        if text_spec:
            text_idx = [_index(c, n_cols, path) for c in text_spec]
        else:
            text_idx = [i for i in range(n_cols) if i != label_idx]
            if not text_idx:
                raise UlmfitError(f"{path}: the rows have a single column; expected a label and a text column")
        if not need_label and label_spec is None and text_spec is not None:
            label_idx = None
    width = len(first[1])
    used = max(text_idx + ([label_idx] if label_idx is not None else []))
    for lineno, row in rows:
        row = check_width(path, lineno, row, width, delimiter, header=bool(header), used=used)
        fields = [row[i] for i in text_idx]
        yield lineno, fields, (row[label_idx] if label_idx is not None else None), None


def _first_row_is_header(first: list[str], following: list[list[str]], text_spec, label_spec) -> bool:
    """Guess whether the first row names the columns.

    Column names given by the user settle it (a name needs a header row); so does a first row that
    holds them, or holds "text" and "label" when none are given. Otherwise the first row's label
    cell (column `label_col`, default 0) decides: it is data if it is a number or if it occurs again
    as a label in the rows that follow, a header otherwise (said on stderr, with --no-header to
    refuse it: a first example whose label is rare is read as a header too, and the length of its
    text cannot tell, since a column's name may be a whole question).
    """
    if _names_settle_header(first, text_spec, label_spec):
        return True
    idx = int(label_spec[0]) if label_spec else 0
    if idx >= len(first):
        return False
    cell = first[idx].strip()
    if not cell:
        return False
    try:
        float(cell)
        return False
    except ValueError:
        pass
    return cell not in {r[idx].strip() for r in following if idx < len(r)}


def _names_settle_header(first: list[str], text_spec, label_spec) -> bool:
    """Whether the first row is a header for certain: it holds the columns named by the user (or
    "text" and "label" when none are named), or a column was named (a name needs a header row)."""
    names = {column_name(c) for c in first}
    given = (text_spec or []) + (label_spec or [])
    if given:
        return all(c in names for c in given) or any(not c.isdigit() for c in given)
    return "text" in names and "label" in names


def _resolve(spec: list[str], names: list[str], path: Path, hint: str) -> list[int]:
    idx, missing = [], []
    for c in spec:
        if c in names:
            idx.append(names.index(c))
        elif c.isdigit() and int(c) < len(names):
            idx.append(int(c))
        else:
            missing.append(c)
    if missing:
        raise UlmfitError(
            f"{path}: no column {', '.join(map(repr, missing))}; the columns are "
            f"{', '.join(map(repr, names))} ({_COLUMN_HINT}{hint})"
        )
    return idx


def _index(c: str, n_cols: int, path: Path) -> int:
    if not c.isdigit():
        raise UlmfitError(
            f"{path} is read without a header row, so columns are 0-based numbers, not {c!r} "
            "(pass --header if the first row names the columns)"
        )
    if int(c) >= n_cols:
        raise UlmfitError(f"{path}: no column {c}; the rows have {n_cols} columns, numbered from 0")
    return int(c)


def _jsonl_records(path: Path, encoding, text_col, label_col, need_label):
    text_fields = _cols(text_col, "text") or ["text"]
    label_spec = _cols(label_col, "label")
    if label_spec is not None and len(label_spec) > 1:
        raise UlmfitError(f"the label field must be one field, not {label_col!r}")
    label_field = label_spec[0] if label_spec else "label"
    for lineno, line in _iter_lines(path, encoding):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise UlmfitError(f"{path}, line {lineno}: not valid JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise UlmfitError(f"{path}, line {lineno}: expected a JSON object per line")
        obj = field_names(obj)
        missing = [c for c in text_fields if c not in obj]
        if need_label and label_field not in obj:
            missing.append(label_field)
        if missing:
            raise UlmfitError(
                f"{path}, line {lineno}: no field {', '.join(map(repr, missing))}; the fields are "
                f"{', '.join(map(repr, obj))} ({_COLUMN_HINT})"
            )
        fields = ["" if obj[c] is None else str(obj[c]) for c in text_fields]
        yield lineno, fields, obj.get(label_field), None


def _trec_records(path: Path, encoding, fine: bool):
    for lineno, line in _iter_lines(path, encoding):
        s = line.strip()
        if not s:
            continue
        m = _TREC.match(s)
        if not m:
            raise UlmfitError(f"{path}, line {lineno}: not a TREC line ('LABEL:fine question text')")
        label = f"{m[1]}:{m[2]}" if fine else m[1]
        yield lineno, [m[3] or ""], label, None


# ---------------------------------------------------------------------------------------------
# Folder layouts


def _class_dirs(root: Path) -> list[Path]:
    """The class folders of a folder-per-class layout: each holds .txt documents, directly or in
    folders of its own (pos/2020/*.txt is class pos)."""
    return sorted(
        d for d in root.iterdir()
        if d.is_dir() and not d.name.startswith(".") and d.name not in _SKIP_DIRS and text_files(d)
    )


def _split_folder(path: Path, split: str | None) -> Path:
    """The folder whose sub-folders are the classes."""
    if split is not None:
        root = path / split
        if not root.is_dir():
            subs = sorted(d.name + "/" for d in path.iterdir() if d.is_dir())
            raise UlmfitError(f"{path}: no {split}/ folder (there are {', '.join(subs) or 'no folders'})")
        return root
    splits = [s for s in _SPLIT_NAMES if (path / s).is_dir() and _class_dirs(path / s)]
    if splits:
        raise UlmfitError(
            f"{path} holds {', '.join(s + '/' for s in splits)}: choose one with --split "
            f"(e.g. --split {splits[0]})"
        )
    return path


def _read_doc(p: Path, encoding: str) -> str:
    raw = p.read_bytes()
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as e:
        raise _decode_error(p, encoding, e, e.start, raw.count(b"\n", 0, e.start) + 1) from None
    except LookupError:
        raise UlmfitError(f"unknown encoding {encoding!r}") from None
    return text.lstrip("\ufeff")


def _unlabeled_files(path: Path, split: str | None) -> list[Path]:
    if split is not None:
        roots = [_split_folder(path, split)]
    else:
        roots = [path / s for s in _SPLIT_NAMES if (path / s).is_dir() and _class_dirs(path / s)] or [path]
    files: list[Path] = []
    for root in roots:
        dirs = _class_dirs(root) + [root / d for d in _SKIP_DIRS if (root / d).is_dir()]
        if dirs:
            for d in dirs:
                files.extend(text_files(d))
        else:
            files.extend(text_files(root))
    if not files:
        raise UlmfitError(f"{path}: no .txt files in this folder or below it")
    return files


def _refuse_split_folders(root: Path, classes: list[Path]) -> None:
    """Folders that hold the same class folders (2019/{pos,neg}, 2020/{pos,neg}, or splits under
    names of their own) are splits or groups, not classes: reading them as classes would train on
    labels that name the folders (and on a test split)."""
    if len(classes) < 2 or any(any(p.is_file() for p in d.glob("*.txt")) for d in classes):
        return
    subs = [{s.name for s in d.iterdir() if s.is_dir() and not s.name.startswith(".") and text_files(s)}
            for d in classes]
    if len(subs[0]) >= 2 and all(x == subs[0] for x in subs):
        raise UlmfitError(
            f"{root}: {', '.join(d.name + '/' for d in classes)} all hold the folders "
            f"{', '.join(sorted(x + '/' for x in subs[0]))}: they look like splits, not classes. Give one of them "
            f"(e.g. {classes[0]}) as the data, or its name with --split")


def _folder_records(root: Path, encoding: str):
    classes = _class_dirs(root)
    _refuse_split_folders(root, classes)
    if not classes:
        raise UlmfitError(
            f"{root}: no class folders; expected {root}/<class>/*.txt, one document per file"
            + (" (unsup/ is unlabeled text, never a class)" if (root / "unsup").is_dir() else "")
        )
    i = 0
    for d in classes:
        for p in text_files(d):
            i += 1
            yield i, [_read_doc(p, encoding)], d.name, str(p)
