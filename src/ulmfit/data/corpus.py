"""Corpus readers: the raw text that language models are pretrained and fine-tuned on.

Stage 1 of ULMFiT reads a general corpus (WikiText-103: one document per article), stage 2 the
target task's own text (IMDb reviews: a folder of .txt files, or a CSV/JSONL column). Every reader
is a generator that yields one document (a str) at a time and reads its file line by line, so a
corpus larger than memory streams through the tokenizer.

Errors name the file (and line) and say what to do: a wrong encoding gives the byte offset and
suggests --encoding; a missing column lists the columns there are.
"""

from __future__ import annotations

import codecs
import csv
import functools
import io
import json
import os
import re
import sys
import unicodedata
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from ..io import UlmfitError
from ..text.tokenize import join_fields

FORMATS = ("auto", "folder", "lines", "wikitext", "csv", "tsv", "jsonl")

# " = Title = " starts a WikiText article; " = = Section = = " is a heading inside one.
_WIKI_TITLE = re.compile(r"^ ?= (?!=)(.*\S) = ?$")


def iter_documents(
    source: str | os.PathLike,
    fmt: str = "auto",
    column: str | Sequence[str] | None = None,
    encoding: str = "utf-8",
) -> Iterator[str]:
    """Yield the documents of `source` one by one (whitespace-only documents are skipped).

    Formats: a folder (every *.txt below it is a document), "lines" (one document per line),
    "wikitext" (one document per " = Title = " article), "csv"/"tsv" (header row; `column`
    names the text column, default "text"; "title,body" joins several with xxfld) and "jsonl"
    (`column` names the field). "auto" picks by path type and suffix.
    """
    path = Path(source)
    fmt = resolve_format(path, fmt, encoding)
    readers = {
        "folder": lambda: _read_folder(path, encoding),
        "lines": lambda: _read_lines(path, encoding),
        "wikitext": lambda: _read_wikitext(path, encoding),
        "csv": lambda: _read_table(path, encoding, csv_delimiter(path, encoding, _columns(column)), column),
        "tsv": lambda: _read_table(path, encoding, "\t", column),
        "jsonl": lambda: _read_jsonl(path, encoding, column),
    }
    n = 0
    for doc in readers[fmt]():
        if doc.strip():
            n += 1
            yield doc
    if n == 0:
        raise UlmfitError(f"{path} holds no non-empty document (read as {fmt})")


def check_source(path: Path, fmt: str, formats, what: str, folder: str = "a folder") -> str | None:
    """Check `path` against the requested format: "folder" for a folder, the format itself when
    one was named, None when a file's format is for the caller to guess ("auto")."""
    if fmt not in formats:
        raise UlmfitError(f"unknown {what} format {fmt!r}; choose one of {', '.join(formats)}")
    if not path.exists():
        raise UlmfitError(f"{path}: no such file or folder")
    if path.is_dir():
        if fmt not in ("auto", "folder"):
            raise UlmfitError(f"{path} is a folder, but format {fmt!r} reads a file")
        return "folder"
    if fmt == "folder":
        raise UlmfitError(f"{path} is a file, not {folder}")
    if fmt == "auto" and not path.is_file():  # a pipe, <(...), /dev/stdin: read once, and guessing reads its start
        raise UlmfitError(f"{path} is a pipe or a device, not a file: its format is guessed by reading its start, "
                          "which a pipe gives only once; name the format with --format, or write it to a file")
    return None if fmt == "auto" else fmt


def resolve_format(path: Path, fmt: str = "auto", encoding: str = "utf-8") -> str:
    """The concrete format "auto" stands for, after checking that `path` exists."""
    known = check_source(path, fmt, FORMATS, "corpus")
    if known is not None:
        return known
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv", ".jsonl"):
        return suffix[1:]
    if suffix in (".json", ".ndjson"):  # JSON Lines under another name, or a JSON array (refused)
        first = next((line.strip() for _, line in _iter_lines(path, encoding) if line.strip()), "")
        refuse_json_array(path, first)
        if first.startswith("{"):
            return "jsonl"
    if suffix == ".tokens" or _looks_like_wikitext(path, encoding):
        return "wikitext"
    return "lines"


_JSON_ARRAY = re.compile(r"\[\s*(?:[{\[]|$)")


def refuse_json_array(path: Path, first_line: str) -> None:
    """A JSON array of records is not read (it would be read as lines of text, or as a CSV): a first
    line that is `[` alone or opens `[{` / `[[` (`[Music] good movie` is text)."""
    if _JSON_ARRAY.match(first_line.strip()):
        raise UlmfitError(f"{path} looks like a JSON array; write one JSON object per line (JSON Lines, "
                          "e.g. with pandas: df.to_json(path, orient='records', lines=True))")


def source_files(path: str | os.PathLike) -> list[Path]:
    """The files a source reads (sorted), for cache keys and progress totals."""
    path = Path(path)
    if path.is_dir():
        return text_files(path)
    return [path]


def text_files(folder: Path) -> list[Path]:
    """The .txt files in `folder` and below it, sorted, without hidden ones: a name or a folder
    that starts with "." (macOS's ._name.txt resource forks, .git, .ipynb_checkpoints) is not text
    someone meant to train on."""
    return sorted(p for p in folder.rglob("*.txt")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _looks_like_wikitext(path: Path, encoding: str) -> bool:
    for _, line in _iter_lines(path, encoding):
        if line.strip():
            return bool(_WIKI_TITLE.match(line.rstrip("\r\n")))
    return False


# ---------------------------------------------------------------------------------------------
# Decoding with useful errors


_UTF8_MULTIBYTE = re.compile(rb"[\xc2-\xf4][\x80-\xbf]+")


def _decode_error(path: Path, encoding: str, e: UnicodeDecodeError, offset: int, line: int | None):
    bad = e.object[e.start : e.start + 1].hex() if isinstance(e.object, bytes) else "?"
    where = f"line {line}, byte offset {offset}" if line else f"byte offset {offset}"
    guess = "e.g. --encoding latin-1"
    if isinstance(e.object, bytes) and codecs.lookup(encoding).name == "utf-8" \
            and not _UTF8_MULTIBYTE.search(e.object):  # a UTF-8 file with a stray byte is no cp1252 file
        try:  # Excel's CSV on Windows (in Western Europe and the Americas): its quotes and dashes are 0x91-0x97
            e.object.decode("cp1252")
            guess = "--encoding cp1252, Windows' and Excel's Western European encoding, reads this line"
        except UnicodeDecodeError:
            pass
    return UlmfitError(
        f"{path}: cannot decode byte 0x{bad} at {where} as {encoding}; "
        f"if the file uses another encoding, pass it with --encoding ({guess})"
    )


def _iter_lines(path: Path, encoding: str) -> Iterator[tuple[int, str]]:
    """(line number, line with its newline) for each line, decoding one line at a time so that
    a bad byte is reported with its line and byte offset. A leading BOM is dropped."""
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise UlmfitError(f"unknown encoding {encoding!r}") from None
    if not newline_is_a_byte(encoding):
        # UTF-16/32: lines cannot be split on the byte b"\n"; let Python decode the stream.
        yield from _iter_lines_text(path, encoding)
        return
    with open(path, "rb") as f:
        yield from iter_byte_lines(f, encoding, path)


_SIGNATURES = (
    (b"\x1f\x8b", "is gzip-compressed; decompress it first (gunzip)"),
    (b"PK\x03\x04", "is a zip archive (an Excel .xlsx or a .zip?); save the sheet as CSV, or unzip it"),
    (b"\xff\xfe", "is UTF-16 (it starts with a UTF-16 byte-order mark); pass --encoding utf-16"),
    (b"\xfe\xff", "is UTF-16 (it starts with a UTF-16 byte-order mark); pass --encoding utf-16"),
)


def _not_text(first: bytes, encoding: str, name) -> None:
    """Files that are not text in an 8-bit encoding, recognised by their first line, with what to do
    (decoding them gave a misleading "cannot decode byte" or column names full of NUL characters)."""
    for magic, says in _SIGNATURES:
        if first.startswith(magic):
            raise UlmfitError(f"{name} {says}")
    nuls = first.count(b"\x00")
    # UTF-16 puts a NUL beside each ASCII character, on one side; a binary file has NULs here and there;
    # one or two stray NULs in a text are kept in it, on the first line as on any other
    if nuls >= 3 or (nuls and max(first[0::2].count(0), first[1::2].count(0)) >= max(2, len(first) // 8)):
        raise UlmfitError(f"{name} holds NUL bytes, so it is not {encoding} text: UTF-16 without a byte-order mark "
                          "(--encoding utf-16-le or utf-16-be), or a binary file")
    if first.count(b"\r") >= 2 and not first.endswith(b"\n"):
        raise UlmfitError(f"{name} ends its lines with a carriage return (\\r) alone (old Mac files); convert "
                          "them to \\n (e.g. tr '\\r' '\\n')")


def newline_is_a_byte(encoding: str) -> bool:
    """Whether a file in `encoding` splits into lines at the byte b"\n" (UTF-8, Latin-1, cp1252...;
    utf-8-sig too: its BOM is the first line's, and "\n" encodes with a BOM in front only alone)."""
    return codecs.lookup(encoding).name == "utf-8-sig" or "\n".encode(encoding) == b"\n"


def iter_byte_lines(f, encoding: str, name) -> Iterator[tuple[int, str]]:
    """`_iter_lines` over an open binary file (a file, or standard input's buffer) in an encoding
    whose newline is the byte b"\n"; `name` is what messages call it."""
    offset = 0
    for lineno, raw in enumerate(f, 1):
        if lineno == 1:
            _not_text(raw, encoding, name)
        try:
            line = raw.decode(encoding)
        except UnicodeDecodeError as e:
            raise _decode_error(name, encoding, e, offset + e.start, lineno) from None
        if lineno == 1 and line.startswith("\ufeff"):
            line = line[1:]
        offset += len(raw)
        yield lineno, line


def _iter_lines_text(path: Path, encoding: str) -> Iterator[tuple[int, str]]:
    with open(path, "rb") as f:
        yield from iter_wide_lines(f, encoding, path)


def iter_wide_lines(f, encoding: str, name) -> Iterator[tuple[int, str]]:
    """`_iter_lines` over an open binary file in an encoding whose newline is not the byte b"\n"
    (UTF-16/32): Python decodes the stream; lines end at \n only, as in the byte path."""
    lineno = 0
    try:
        for lineno, line in enumerate(io.TextIOWrapper(f, encoding=encoding, newline="\n"), 1):
            yield lineno, line.lstrip("\ufeff") if lineno == 1 else line
    except UnicodeError as e:  # also "UTF-16 stream does not start with BOM", which is no UnicodeDecodeError
        order = (f" (text without a byte-order mark needs its byte order named: --encoding "
                 f"{codecs.lookup(encoding).name}-le or -be)" if "BOM" in str(e) else "")
        raise UlmfitError(
            f"{name}: cannot decode the text {f'after line {lineno}' if lineno else 'at its start'} as {encoding}{order}; "
            "pass the file's encoding with --encoding"
        ) from None


# ---------------------------------------------------------------------------------------------
# CSV and TSV


def table_reader(lines: Iterable[str], delimiter: str):
    """A csv.reader over `lines`. CSV follows RFC 4180, strictly: a double quote that opens a field
    must close it (Python's lenient default glued `"Best" film` into `Best film`, and a quote that
    never closed swallowed every row after it into one text). In a TSV a row is a line and a quote
    is text (as in the TSV files of NLP datasets: GLUE, SST), except around a whole field that
    pandas, Python's csv or R's write.table quoted (its doubled quotes become single ones)."""
    if delimiter == "\t":
        return ([_unquote(f) for f in row] for row in csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE))
    return csv.reader(lines, delimiter=delimiter, strict=True)


_SAID_SEMICOLONS: set[Path] = set()


def csv_delimiter(path: Path, encoding: str, wanted: Sequence[str]) -> str:
    """The delimiter of a CSV file: a comma, or a semicolon where the first row names the `wanted`
    columns only when it is split at semicolons (the CSV that spreadsheets write in locales whose
    decimal mark is a comma: German, French, Spanish, Brazilian...). Said on standard error when
    it is a semicolon. A file without a header row stays comma-separated: its columns cannot
    tell; so does a pipe (`<(...)`, /dev/stdin), which gives its start once."""
    if not path.is_file():
        return ","
    lines = _iter_lines(path, encoding)
    try:
        first = next((line for _, line in lines if line.strip()), None)
    finally:
        lines.close()
    if first is None or ";" not in first:
        return ","

    def names(delimiter: str) -> list[str]:
        try:
            return [column_name(c) for c in next(csv.reader([first], delimiter=delimiter), [])]
        except csv.Error:  # a quoted field that runs on to the next line
            return []

    if all(c in names(";") for c in wanted) and not all(c in names(",") for c in wanted):
        if path.resolve() not in _SAID_SEMICOLONS:  # a command may read a file twice (subword: to train, to encode)
            _SAID_SEMICOLONS.add(path.resolve())
            print(f"note: {path}: its fields are separated by semicolons (';'), as spreadsheets write CSV in "
                  "many locales; read that way", file=sys.stderr)
        return ";"
    return ","


_QUOTED = re.compile(r'"((?:[^"]|"")*)"', re.DOTALL)


def _unquote(field: str) -> str:
    m = _QUOTED.fullmatch(field)
    return m.group(1).replace('""', '"') if m else field


def table_error(path: Path, line: int, delimiter: str, e: csv.Error) -> UlmfitError:
    """A csv.Error said in terms of the file: where, and what to change."""
    kind = "tab-separated" if delimiter == "\t" else f"{delimiter!r}-separated"
    if "new-line character seen in unquoted field" in str(e):
        return UlmfitError(f"{path}, line {line}: a carriage return (\\r) inside a field that is not quoted; "
                           "convert old Mac line endings (\\r) to \\n, or quote the field")
    return UlmfitError(f"{path}, line {line}: malformed {kind} row ({e}); a double quote that opens a field must "
                       'close it, and a quote inside a quoted field is written twice ("")')


def check_width(path: Path, line: int, row: list[str], n: int, delimiter: str, header: bool,
                used: int | None = None) -> list[str]:
    """The row with as many fields as the header (or the first row): an unquoted comma in a text
    would otherwise cut it and turn its second half into the label. Spreadsheets' habits pass: extra
    fields at the end that are empty (a trailing delimiter) are dropped, and a row cut short after
    the last column read (`used`: the highest index read) is padded with empty fields."""
    if len(row) > n and not any(f.strip() for f in row[n:]):
        return row[:n]
    if len(row) < n and used is not None and used < len(row):
        return row + [""] * (n - len(row))
    if len(row) != n:
        hint = ("a text that holds a comma must be in double quotes" if delimiter == "," else
                "a TSV field cannot hold a tab or a line break (quotes are read as part of the text)"
                if delimiter == "\t" else f"a field that holds {delimiter!r} must be in double quotes")
        raise UlmfitError(f"{path}, line {line}: {len(row)} field(s) where the {'header' if header else 'first row'} "
                          f"has {n}; {hint}")
    return row


def unique_columns(path: Path, header: list[str], wanted: Iterable[str], hint: str = "") -> None:
    """A column asked for by name must be named once in the header."""
    twice = sorted({c for c in wanted if header.count(c) > 1})
    if twice:
        raise UlmfitError(f"{path}: the header names column {', '.join(map(repr, twice))} more than once; "
                          f"rename one of them{hint}")


# ---------------------------------------------------------------------------------------------
# Readers


def _read_folder(path: Path, encoding: str) -> Iterator[str]:
    files = source_files(path)
    if not files:
        raise UlmfitError(f"{path}: no .txt files in this folder or below it")
    for p in files:
        raw = p.read_bytes()
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as e:
            raise _decode_error(p, encoding, e, e.start, raw.count(b"\n", 0, e.start) + 1) from None
        yield text.lstrip("\ufeff")


def _read_lines(path: Path, encoding: str) -> Iterator[str]:
    for _, line in _iter_lines(path, encoding):
        line = line.strip()
        if line:
            yield line


def _read_wikitext(path: Path, encoding: str) -> Iterator[str]:
    article: list[str] = []
    for _, line in _iter_lines(path, encoding):
        line = line.rstrip("\r\n")
        if _WIKI_TITLE.match(line) and article:
            yield "\n".join(article)
            article = []
        line = line.strip()
        if line:  # the title line stays in its article, as in the WikiText LM benchmark
            article.append(line)
    if article:
        yield "\n".join(article)


@functools.lru_cache(maxsize=4096)  # JSON keys: the same few, once a record
def column_name(name: str) -> str:
    """A column or field name as it is compared: stripped, in Unicode's composed form (NFC), so that
    "texté" typed with a combining accent names the header's "texté"."""
    name = name.strip()
    return name if name.isascii() else unicodedata.normalize("NFC", name)


def field_names(obj: dict) -> dict:
    """A JSON object with its keys as `column_name` gives them (the object itself when none changes)."""
    if all(isinstance(k, str) and k.isascii() for k in obj):
        return obj
    return {column_name(k): v for k, v in obj.items()}


def _columns(column: str | Sequence[str] | None) -> list[str]:
    if column is None:
        return ["text"]
    cols = column.split(",") if isinstance(column, str) else list(column)
    cols = [column_name(c) for c in cols if c.strip()]
    if not cols:
        raise UlmfitError(f"no column name in {column!r}")
    return cols


def _read_table(path: Path, encoding: str, delimiter: str, column) -> Iterator[str]:
    cols = _columns(column)
    # Reviews and articles are longer than the csv module's default field limit of 128 KiB.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    lines = _iter_lines(path, encoding)
    position = {"line": 0}

    def text_lines():
        for lineno, line in lines:
            position["line"] = lineno
            yield line

    reader = table_reader(text_lines(), delimiter)
    try:
        header = next(reader, None)
        if header is None:
            raise UlmfitError(f"{path} is empty: expected a header row naming the columns")
        header = [column_name(h) for h in header]
        missing = [c for c in cols if c not in header]
        if missing:
            raise UlmfitError(
                f"{path}: no column {', '.join(map(repr, missing))}; the columns are "
                f"{', '.join(map(repr, header))} (choose with --column)"
            )
        unique_columns(path, header, cols)
        idx = [header.index(c) for c in cols]
        start = position["line"] + 1
        for row in reader:
            if row:
                row = check_width(path, start, row, len(header), delimiter, header=True, used=max(idx))
                fields = [row[i] for i in idx]
                yield fields[0] if len(fields) == 1 else join_fields(fields)
            start = position["line"] + 1
    except csv.Error as e:
        raise table_error(path, position["line"], delimiter, e) from None


def _read_jsonl(path: Path, encoding: str, column) -> Iterator[str]:
    cols = _columns(column)
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
        missing = [c for c in cols if c not in obj]
        if missing:
            raise UlmfitError(
                f"{path}, line {lineno}: no field {', '.join(map(repr, missing))}; the fields are "
                f"{', '.join(map(repr, obj))} (choose with --column)"
            )
        fields = ["" if obj[c] is None else str(obj[c]) for c in cols]
        yield fields[0] if len(fields) == 1 else join_fields(fields)
