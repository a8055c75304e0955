"""Tokenise a corpus once: text -> tokens -> ids, cached on disk as a memory-mapped id array.

Pretraining on WikiText-103 and fine-tuning on IMDb both start from the same pipeline (the paper's
spaCy tokens + rules + a vocabulary of at most 60k tokens, or MultiFiT's SentencePiece subwords).
Tokenising 100M words takes far longer than an epoch of data loading, so it happens once: the ids
are written to ``ids.bin`` (uint16 when the vocabulary allows, so WikiText-103 takes ~200 MB) and
later runs memory-map it, whatever the size of the corpus and of the machine's memory.

A cache folder holds ``ids.bin``, ``offsets.npy`` (document d is ids[offsets[d]:offsets[d+1]]),
``vocab.txt``, ``spm.model`` (subword only) and ``meta.json``. It is built in a temporary folder
and renamed into place at the end, so an interrupted build never leaves a half cache. Nothing is
pickled: loading is np.load(allow_pickle=False) and np.memmap.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from ..io import _UMASK, UlmfitError, atomic_write_json, cache_root, launch_env, read_json, writable_cache_dir
from ..text.tokenize import (RULES_VERSION, SubwordTokenizer, TokenizerConfig, make_tokenizer,
                             tokenize_in_process, tokenize_parallel)
from ..text.vocab import Vocab
from .corpus import iter_documents, resolve_format, source_files

FORMAT_VERSION = 1  # bump when the layout or the tokenisation changes: old caches are then ignored


@dataclass(repr=False, eq=False)
class TokenIds:
    """A tokenised corpus, or a view on some of its documents (see `split`).

    Document i of the view is ids[starts[i]:ends[i]]. For a whole corpus starts/ends are
    offsets[:-1]/offsets[1:]; a view keeps the same ids and offsets and only changes them.
    """

    ids: np.ndarray  # 1-D, usually an np.memmap of uint16/uint32
    offsets: np.ndarray  # int64, len = n_docs + 1 of the whole corpus
    vocab: Vocab
    starts: np.ndarray | None = None
    ends: np.ndarray | None = None
    sp_model: str | None = None  # the SentencePiece model for subword corpora
    path: Path | None = None  # the cache folder this was loaded from
    _n_tokens: int = field(default=0, init=False)

    def __post_init__(self):
        if self.starts is None:
            self.starts, self.ends = self.offsets[:-1], self.offsets[1:]
        self.starts = np.asarray(self.starts, dtype=np.int64)
        self.ends = np.asarray(self.ends, dtype=np.int64)
        self._n_tokens = int((self.ends - self.starts).sum())

    def n_docs(self) -> int:
        return len(self.starts)

    def n_tokens(self) -> int:
        return self._n_tokens

    def lengths(self) -> np.ndarray:
        return self.ends - self.starts

    def doc(self, i: int) -> np.ndarray:
        return self.ids[self.starts[i] : self.ends[i]]

    def view(self, starts: Sequence[int], ends: Sequence[int]) -> "TokenIds":
        return TokenIds(self.ids, self.offsets, self.vocab, np.asarray(starts), np.asarray(ends),
                        self.sp_model, self.path)

    def fingerprint(self, n: int = 16384) -> str:
        """A digest of the documents' boundaries and of `n` tokens sampled evenly through the ids:
        a resumed run checks that its data is the one it started on. Cheap at any size, and text
        with the same counts (other documents, or the same ones in another order) gives another."""
        h = hashlib.sha256()
        for arr in (self.starts, self.ends, self.ids):
            if len(arr):
                pos = np.unique(np.linspace(0, len(arr) - 1, min(len(arr), n)).astype(np.int64))
                h.update(np.asarray(arr[pos], dtype=np.int64).tobytes())
            h.update(str(len(arr)).encode())
        return h.hexdigest()[:32]

    def __repr__(self) -> str:
        return f"TokenIds({self.n_docs()} docs, {self.n_tokens()} tokens, vocab {len(self.vocab)})"

    def split(
        self, valid_frac: float = 0.05, seed: int = 0, max_valid_tokens: int | None = None
    ) -> tuple["TokenIds", "TokenIds"]:
        """Hold out whole documents (about valid_frac of the tokens, at most max_valid_tokens
        beyond the first document) for validation; deterministic given `seed`.

        Both parts get at least one document. A corpus of one document is cut at a token
        instead: its last part becomes the validation text.
        """
        n = self.n_docs()
        lengths = self.lengths()
        target = valid_frac * self._n_tokens
        if max_valid_tokens is not None:
            target = min(target, max_valid_tokens)
        if n == 0 or self._n_tokens < 2:
            raise UlmfitError("cannot split a corpus of fewer than 2 tokens into train and validation")
        if n == 1:
            n_valid = min(max(1, int(target)), self._n_tokens - 1)
            cut = int(self.ends[0]) - n_valid
            return self.view([self.starts[0]], [cut]), self.view([cut], [self.ends[0]])
        order = np.random.default_rng(seed).permutation(n)
        # The fewest documents (taken in random order) whose tokens reach the target.
        k = int(np.searchsorted(np.cumsum(lengths[order]), target, side="left")) + 1
        k = min(max(k, 1), n - 1)
        valid, train = np.sort(order[:k]), np.sort(order[k:])
        return (self.view(self.starts[train], self.ends[train]),
                self.view(self.starts[valid], self.ends[valid]))


# ---------------------------------------------------------------------------------------------
# Building


_SCRATCH: list[Path] = []


def run_scratch_dir() -> Path:
    """A temporary folder for this process's token caches, removed at exit (when the cache cannot be written)."""
    if not _SCRATCH:
        import atexit

        _SCRATCH.append(Path(tempfile.mkdtemp(prefix="ulmfit-cache-")))
        atexit.register(shutil.rmtree, _SCRATCH[0], True)
    return _SCRATCH[0]


def build_corpus(
    source: str | os.PathLike,
    tok_cfg: TokenizerConfig,
    *,
    fmt: str = "auto",
    column: str | Sequence[str] | None = None,
    encoding: str = "utf-8",
    vocab: Vocab | None = None,
    sp_model: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    n_workers: int | None = None,
    progress: bool = True,
    keep: Vocab | None = None,
    replace: bool = True,
    rules: int = RULES_VERSION,
) -> tuple[TokenIds, str | None]:
    """Tokenise and numericalise `source` (or reuse its cache); returns (ids, sp_model path).

    Word level builds the vocabulary from the corpus unless `vocab` is given (a pretrained
    model's vocabulary when fine-tuning or evaluating); the words of `keep` that occur in the
    corpus get an id however rare they are (fine-tuning: the pretrained words). Subword level trains SentencePiece on a
    sample of the corpus unless `sp_model` is given. The returned sp_model path (None for word
    level) is the copy inside the cache folder, from which the same tokenizer can be rebuilt.
    `replace`: a cache of another corpus or other settings in `cache_dir` is replaced once the new
    one is complete; False refuses instead (a folder the user named, not the shared cache).
    `rules`: the tokeniser rules' version of a run that resumes; tokens of an earlier version are
    reused from the cache, never made again (this version cannot make them): `OlderRules` if gone.
    """
    if Path(source).exists() and not Path(source).is_dir() and not Path(source).is_file():
        raise UlmfitError(f"{source} is a pipe or a device, not a file: a language model's text is read more than "
                          "once (tokenised in parallel, its tokens cached by file); write it to a file first")
    path = Path(source).resolve()
    fmt = resolve_format(path, fmt, encoding)
    if tok_cfg.kind not in ("word", "subword"):
        raise UlmfitError(f"unknown tokenizer kind {tok_cfg.kind!r}: use 'word' or 'subword'")
    if sp_model is not None and not Path(sp_model).is_file():
        raise UlmfitError(f"{sp_model}: no such SentencePiece model file")
    key = corpus_key(path, tok_cfg, fmt=fmt, column=column, encoding=encoding, vocab=vocab, sp_model=sp_model,
                     keep=keep, rules=rules)
    final = Path(cache_dir) if cache_dir is not None else cache_root() / "corpora" / key[:16]
    say = (lambda msg: print(msg, file=sys.stderr)) if progress else (lambda msg: None)

    if _cache_key(final) == key:
        say(f"using cached tokens at {final}" + (f" (made by the tokeniser rules of an earlier ulmfit, version "
                                                 f"{rules})" if rules != RULES_VERSION else ""))
        data = load_corpus_dir(final)
        return data, data.sp_model
    if rules != RULES_VERSION:
        raise OlderRules(f"its tokens were made by the tokeniser rules of an earlier ulmfit (version {rules}; this "
                         f"one has version {RULES_VERSION}, which gives some texts other tokens) and are no longer "
                         f"in the cache ({final})")
    if final.exists() and not _is_replaceable(final):
        raise UlmfitError(f"{final} exists and is not a ulmfit token cache (or holds other files besides its tokens, "
                          "which replacing it would delete); choose another --out")
    if not replace and (final / "meta.json").is_file():
        try:
            old = json.loads((final / "meta.json").read_text(encoding="utf-8"))
            what = f" (of {old.get('source', '?')}, {old.get('n_tokens', 0):,} tokens, made {old.get('created', '?')}"
            what += (f" by the tokeniser rules of an earlier ulmfit, version {rules_of(old)})"
                     if rules_of(old) != RULES_VERSION else ")")
        except (OSError, ValueError, AttributeError, TypeError):
            what = ""
        raise UlmfitError(f"{final} already holds tokens of another corpus, other settings or other tokeniser "
                          f"rules{what}; "
                          "pass --overwrite to replace them, or choose another --out")

    try:
        writable_cache_dir(final.parent)
    except UlmfitError as e:
        if cache_dir is not None or launch_env()[1] > 1:
            # a folder the user named; or processes of a torchrun job, which share one cache folder
            # (process 0 builds it, the others read it): folders of their own would each tokenise it all
            raise
        # the shared cache cannot be written (a read-only or missing home: a service account): the
        # run goes on with its tokens in a folder of its own, removed when the process ends
        final = run_scratch_dir() / "corpora" / key[:16]
        final.parent.mkdir(parents=True, exist_ok=True)
        print(f"note: {e}. This run keeps its tokens in {final.parent.parent} until it ends", file=sys.stderr)
    for gone, size in sweep_stale_builds(final.parent):
        say(f"removed {gone}, the unfinished build of a run that was killed ({size / 1e6:,.1f} MB)")
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}{BUILDING}", dir=final.parent))
    lock = _hold_build_lock(tmp)
    try:
        docs = lambda: iter_documents(path, fmt, column, encoding)  # noqa: E731 (read twice)
        if tok_cfg.kind == "word":
            meta = _build_word(docs, tok_cfg, vocab, tmp, n_workers, progress, keep=keep)
        else:
            meta = _build_subword(docs, path, tok_cfg, vocab, sp_model, tmp, n_workers, progress)
        if meta["n_skipped"]:
            print(f"warning: skipped {meta['n_skipped']} document(s) of {path} that have no tokens "
                  "(empty, or only markup)", file=sys.stderr)
        meta.update(
            key=key, format_version=FORMAT_VERSION, rules=RULES_VERSION, source=str(path),
            source_files=_source_signature(path), fmt=fmt,
            column=_column_str(column), encoding=encoding, tokenizer=tok_cfg.to_dict(),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        atomic_write_json(tmp / "meta.json", meta)  # written last: its presence marks a complete cache
        (tmp / BUILD_LOCK).unlink(missing_ok=True)  # the cache needs no lock; the open file keeps it held
        if final.exists():
            shutil.rmtree(final)
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp made it its owner's alone: a cache shared by a group could not
        # be read by the others (their run stopped on "Permission denied"), whatever the umask
        try:
            os.replace(tmp, final)
        except OSError:
            if _cache_key(final) != key:  # not a concurrent build of the same corpus
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if lock is not None:
            lock.close()
    say(f"cached {meta['n_tokens']:,} tokens of {meta['n_docs']:,} documents at {final}")
    data = load_corpus_dir(final)
    return data, data.sp_model


def _source_signature(path: Path) -> str:
    """sha256 of the source files' names, sizes and mtimes (a changed source makes a cache stale)."""
    h = hashlib.sha256()
    for line in _source_lines(path):
        h.update(line)
    return h.hexdigest()


def cached_corpora(root: str | os.PathLike | None = None) -> list[dict]:
    """The token caches in the cache folder (`ulmfit corpus cache`): for each its folder, source,
    tokens, bytes, when it was made, `stale`, why no run will use it again (None: it may be), and
    `older_rules`, the version of the earlier tokeniser rules that made it (None: this version's):
    new runs tokenise such a source again, but a run started before the upgrade resumes on it."""
    root = Path(root) if root is not None else cache_root() / "corpora"
    found = []
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        if not d.is_dir() or BUILDING in d.name:  # a build in progress, or one killed (swept by builds)
            continue
        size = sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
        try:
            meta = json.loads((d / "meta.json").read_text(encoding="utf-8"))
            if not isinstance(meta, dict):
                raise ValueError
        except (OSError, ValueError):
            found.append({"folder": d, "source": None, "n_tokens": None, "bytes": size, "created": None,
                          "stale": "no readable meta.json", "older_rules": None})
            continue
        src, stale = meta.get("source"), None
        if meta.get("format_version") != FORMAT_VERSION:
            stale = "an older cache format"
        elif not src or not Path(src).exists():
            stale = "its source is gone"
        elif meta.get("source_files") and meta["source_files"] != _source_signature(Path(src)):
            stale = "its source has changed since"
        found.append({"folder": d, "source": src, "n_tokens": meta.get("n_tokens"), "bytes": size,
                      "created": meta.get("created"), "stale": stale,
                      "older_rules": rules_of(meta) if rules_of(meta) != RULES_VERSION else None})
    return found


class OlderRules(UlmfitError):
    """A resumed run's tokens were made by earlier tokeniser rules, and are not cached any more."""


def rules_of(meta: dict) -> int:
    """The tokeniser rules' version that made a token folder or a run's tokens (1: before it was kept)."""
    return int(meta.get("rules") or 1)


BUILDING = ".building."  # a build's temporary folder: .<cache name>.building.<random>, next to the cache
BUILD_LOCK = ".lock"  # inside it: a file its build holds an exclusive flock on while it runs
STALE_UNLOCKED_SECONDS = 6 * 3600  # a build folder without a lock file (older versions) untouched this long


def _hold_build_lock(folder: Path):
    """An open file in `folder` with an exclusive flock, or None where the OS has no flock. The
    kernel releases the lock when the process dies, however it dies (the out-of-memory killer,
    `kill -9`, a power cut), which is what `sweep_stale_builds` looks for."""
    try:
        import fcntl
    except ImportError:  # Windows: builds still work, their leftovers are swept by age only
        return None
    f = open(folder / BUILD_LOCK, "w")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # a filesystem without locks
        f.close()
        return None
    return f


def _is_stale_build(folder: Path, now: float) -> bool:
    lock = folder / BUILD_LOCK
    if lock.is_file():
        try:
            import fcntl
        except ImportError:
            return False
        try:
            with open(lock, "a") as f:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # succeeds only when no live build holds it
                return True
        except OSError:
            return False
    if not re.fullmatch(r"\.[0-9a-f]{16}" + re.escape(BUILDING) + r".+", folder.name):
        return False  # without our lock file, only a folder named like a default cache's build is ours
    try:  # no lock file: a build by an older version, or one just finishing; judge by its last write
        newest = max([folder.stat().st_mtime] + [p.stat().st_mtime for p in folder.iterdir()])
    except OSError:
        return False
    return now - newest > STALE_UNLOCKED_SECONDS


def sweep_stale_builds(parent: Path) -> list[tuple[Path, int]]:
    """Remove the temporary build folders in `parent` that no running build owns: a build that was
    killed (not interrupted: that one cleans up after itself) leaves one behind, up to gigabytes of
    tokens for a large corpus. Returns each removed folder with its size in bytes."""
    removed = []
    now = time.time()
    for folder in sorted(Path(parent).glob(f".*{BUILDING}*")):
        if not folder.is_dir() or folder.is_symlink() or not _is_stale_build(folder, now):
            continue
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            removed.append((folder, size))
    return removed


def corpus_key(
    path: Path, tok_cfg: TokenizerConfig, *, fmt: str, column=None, encoding: str = "utf-8",
    vocab: Vocab | None = None, sp_model=None, keep: Vocab | None = None, rules: int = RULES_VERSION,
) -> str:
    """sha256 of everything the cached ids depend on, including each file's size and mtime, and the
    version of the tokeniser's rules (from 2 on; the keys of version 1 had none)."""
    h = hashlib.sha256()
    h.update(json.dumps({
        "format_version": FORMAT_VERSION, "source": str(path), "fmt": fmt,
        "column": _column_str(column), "encoding": encoding, "tokenizer": tok_cfg.to_dict(),
        **({"rules": rules} if rules >= 2 else {}),
        "vocab": _sha256_text("\n".join(vocab.itos)) if vocab is not None else None,
        "sp_model": _sha256_file(sp_model) if sp_model is not None else None,
        **({"keep": _sha256_text("\n".join(keep.itos))} if keep is not None else {}),
    }, sort_keys=True).encode())
    for line in _source_lines(path):
        h.update(line)
    return h.hexdigest()


def _source_lines(path: Path) -> Iterator[bytes]:
    for p in source_files(path):
        st = p.stat()
        yield f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape")


def _column_str(column) -> str | None:
    if column is None or isinstance(column, str):
        return column
    return ",".join(column)


def _sha256_text(s: str) -> str:
    return hashlib.sha256(s.encode("utf-8")).hexdigest()


def _sha256_file(p) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _cache_key(folder: Path) -> str | None:
    """The key of a complete cache in `folder`, or None."""
    meta = folder / "meta.json"
    if not meta.is_file():
        return None
    try:
        m = read_json(meta)
    except UlmfitError:
        return None
    if m.get("format_version") != FORMAT_VERSION:
        return None
    return m.get("key")


CACHE_FILES = {"meta.json", "ids.bin", "offsets.npy", "vocab.txt", "spm.model"}


def _is_replaceable(folder: Path) -> bool:
    # Only ever delete a folder that is empty or one of our caches, holding nothing else (a user's
    # notes beside the tokens would go with it): cache_dir is user input.
    if not folder.is_dir():
        return False
    names = {p.name for p in folder.iterdir()}
    return not names or ("meta.json" in names and names <= CACHE_FILES)


class _IdWriter:
    """Appends documents' ids to a binary file in blocks; remembers each document's length."""

    def __init__(self, path: Path, dtype):
        self.f = open(path, "wb")
        self.dtype = np.dtype(dtype)
        self.buf: list[np.ndarray] = []
        self.buffered = 0
        self.lengths = array("q")

    def add(self, ids) -> None:
        self.lengths.append(0)
        self.extend(ids)

    def extend(self, ids) -> None:
        """More ids of the last document added (a long document comes in pieces)."""
        a = np.asarray(ids, dtype=self.dtype)
        self.buf.append(a)
        self.buffered += len(a)
        self.lengths[-1] += len(a)
        if self.buffered >= 1 << 20:
            self.flush()

    def flush(self) -> None:
        if self.buf:
            np.concatenate(self.buf).tofile(self.f)
            self.buf, self.buffered = [], 0

    def close(self, folder: Path) -> dict:
        self.flush()
        self.f.close()
        offsets = np.zeros(len(self.lengths) + 1, dtype=np.int64)
        np.cumsum(np.frombuffer(self.lengths, dtype=np.int64), out=offsets[1:])
        np.save(folder / "offsets.npy", offsets, allow_pickle=False)
        return {"n_docs": len(self.lengths), "n_tokens": int(offsets[-1]), "dtype": self.dtype.name}


def id_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 65535 else np.uint32)


def _doc_events(pieces: Iterable[tuple[list, bool]]) -> Iterator[tuple[str, list | None]]:
    """From (result, starts a document) pieces: ("add", result) for a document's first piece,
    ("more", result without its xxbos) for each later one with tokens, ("skip", None) for a document
    without tokens (only xxbos). A first piece that is only xxbos waits for a later piece's token."""
    held = False
    for r, first in pieces:
        if first:
            if held:
                yield "skip", None
            held = len(r) <= 1
            if not held:
                yield "add", r
        elif len(r) > 1:
            if held:
                yield "add", r[:1]
                held = False
            yield "more", r[1:]
    if held:
        yield "skip", None


def _build_word(docs, tok_cfg, vocab, tmp: Path, n_workers, progress, keep: Vocab | None = None) -> dict:
    from ..progress import progress_bar

    # A long document comes in pieces, written as they come: its tokens are never all in memory.
    events = _doc_events(tokenize_parallel(docs(), tok_cfg, n_workers=n_workers, desc="tokenizing",
                                           progress=progress, pieces=True))
    n_skipped = 0
    writer_events: Iterable[tuple[str, list[int]]]
    if vocab is None:
        # Pass 1: tokens to a temporary file (a line per document, or per piece of a long one, a later
        # piece's line starting with a tab; tokens never hold whitespace) while counting them, then
        # the vocabulary; pass 2 numericalises the file.
        counts: Counter = Counter()
        tok_file = tmp / "tokens.txt"
        n_docs = n_lines = 0
        with open(tok_file, "w", encoding="utf-8", newline="\n") as f:
            for kind, toks in events:
                if kind == "skip":
                    n_skipped += 1
                    continue
                counts.update(toks)
                f.write("\t" if kind == "more" else "")
                f.write(" ".join(toks))
                f.write("\n")
                n_docs += kind == "add"
                n_lines += 1
        if n_docs == 0:
            raise UlmfitError("the corpus has no tokens")
        vocab = Vocab.build(counts, tok_cfg.max_vocab, tok_cfg.min_freq,
                            keep=None if keep is None else keep.stoi)
        del counts

        def numericalised() -> Iterator[tuple[str, list[int]]]:
            with open(tok_file, encoding="utf-8", newline="\n") as f:
                for line in progress_bar(f, total=n_lines, desc="numericalizing", unit=" lines",
                                 disable=not progress):
                    more = line.startswith("\t")
                    yield ("more" if more else "add"), vocab.numericalize(line.strip("\t\n").split(" "))

        writer_events = numericalised()
    else:
        def numericalised_direct() -> Iterator[tuple[str, list[int]]]:
            nonlocal n_skipped
            for kind, toks in events:
                if kind == "skip":
                    n_skipped += 1
                    continue
                yield kind, vocab.numericalize(toks)

        writer_events = numericalised_direct()
    writer = _IdWriter(tmp / "ids.bin", id_dtype(len(vocab)))
    for kind, ids in writer_events:
        (writer.extend if kind == "more" else writer.add)(ids)
    meta = writer.close(tmp)
    if meta["n_docs"] == 0:
        raise UlmfitError("the corpus has no tokens")
    (tmp / "tokens.txt").unlink(missing_ok=True)
    vocab.save(tmp / "vocab.txt")
    return {**meta, "n_skipped": n_skipped, "vocab_size": len(vocab)}


SP_LINE_CHARS = 4096  # a line of SentencePiece's training sample: at most 16 KB of UTF-8, half its limit


def _build_subword(docs, path: Path, tok_cfg, vocab, sp_model, tmp: Path, n_workers, progress) -> dict:
    model = tmp / "spm.model"
    if sp_model is None:
        sample = tmp / "spm_train.txt"
        _write_sp_sample(docs(), sample, path, tok_cfg)
        SubwordTokenizer.train(str(sample), str(tmp / "spm"), tok_cfg.sp_vocab_size)
        sample.unlink()
        (tmp / "spm.vocab").unlink(missing_ok=True)
    else:
        shutil.copyfile(sp_model, model)
    pieces = SubwordTokenizer(str(model), tok_cfg).vocab()
    if sp_model is None and len(pieces) < 0.9 * tok_cfg.sp_vocab_size:
        print(f"note: SentencePiece found {len(pieces):,} pieces in this text, fewer than the {tok_cfg.sp_vocab_size:,} "
              "asked for (--sp-vocab): a small text has fewer distinct pieces", file=sys.stderr)
    if vocab is not None and vocab.itos != pieces:
        raise UlmfitError("the vocabulary given does not match the SentencePiece model's pieces")
    vocab = Vocab(pieces)
    writer = _IdWriter(tmp / "ids.bin", id_dtype(len(vocab)))
    n_skipped = 0
    for kind, ids in _doc_events(tokenize_parallel(docs(), tok_cfg, str(model), n_workers=n_workers,
                                                   desc="encoding", progress=progress, pieces=True)):
        if kind == "skip":
            n_skipped += 1
            continue
        (writer.extend if kind == "more" else writer.add)(ids)
    meta = writer.close(tmp)
    if meta["n_docs"] == 0:
        raise UlmfitError("the corpus has no tokens")
    vocab.save(tmp / "vocab.txt")
    return {**meta, "n_skipped": n_skipped, "vocab_size": len(vocab), "sp_model": "spm.model",
            "spm_sha256": _sha256_file(model)}


def _write_sp_sample(docs: Iterator[str], out: Path, path: Path, tok_cfg: TokenizerConfig) -> None:
    """About tok_cfg.sp_sample_chars characters of rule-processed text, drawn from the whole corpus
    (each document kept with the probability that fits the budget, judged from the file sizes)
    rather than from its beginning, which may be one topic or one class."""
    budget = tok_cfg.sp_sample_chars
    total = sum(p.stat().st_size for p in source_files(path)) or 1
    keep = min(1.0, 1.2 * budget / total)  # a little over, since markup and markers are dropped
    rng = random.Random(0)
    written = 0
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        for doc in docs:
            if keep < 1.0 and rng.random() >= keep:
                continue
            words = SubwordTokenizer.training_text(doc, tok_cfg.lower).split(" ")
            # SentencePiece skips "sentences" longer than its max_sentence_length: cut long documents,
            # by words, and by characters where a script writes no spaces (Chinese, Japanese, Thai)
            for i in range(0, len(words), 1000):
                line = " ".join(words[i : i + 1000])
                for j in range(0, len(line), SP_LINE_CHARS):
                    f.write(line[j : j + SP_LINE_CHARS] + "\n")
                    written += len(line[j : j + SP_LINE_CHARS])
            if written >= budget:
                break
    if written == 0:
        raise UlmfitError(f"{path}: no text to train SentencePiece on")


# ---------------------------------------------------------------------------------------------
# Loading and small in-memory encoding


def load_corpus_dir(path: str | os.PathLike) -> TokenIds:
    """Open a cache folder written by build_corpus (memory-mapped; nothing is unpickled)."""
    path = Path(path)
    if not (path / "meta.json").is_file():
        raise UlmfitError(f"{path} is not a token cache (no meta.json)")
    meta = read_json(path / "meta.json")
    dtype = np.dtype(meta["dtype"])
    n_tokens = int(meta["n_tokens"])
    ids_file = path / "ids.bin"
    try:
        offsets = np.load(path / "offsets.npy", allow_pickle=False)
        size = ids_file.stat().st_size
    except (OSError, ValueError) as e:
        raise UlmfitError(f"{path}: the token cache is damaged ({e}); delete the folder to rebuild it") from e
    if size != n_tokens * dtype.itemsize or len(offsets) != meta["n_docs"] + 1 or offsets[-1] != n_tokens:
        raise UlmfitError(f"{path}: the token cache is damaged (sizes disagree); delete the folder to rebuild it")
    ids = np.memmap(ids_file, dtype=dtype, mode="r", shape=(n_tokens,))
    sp = path / "spm.model"
    if (meta.get("tokenizer") or {}).get("kind") == "subword":  # its ids are pieces of that model, and only of it
        if not sp.is_file():
            raise UlmfitError(f"{path}: a subword token cache without its spm.model (the SentencePiece model its "
                              "ids were made with); copy the whole folder again, or tokenise the text anew")
        if meta.get("spm_sha256") and _sha256_file(sp) != meta["spm_sha256"]:
            raise UlmfitError(f"{path}: spm.model is not the SentencePiece model this cache was made with; copy the "
                              "whole folder again, or tokenise the text anew")
    return TokenIds(ids, offsets, Vocab.load(path / "vocab.txt"), sp_model=str(sp) if sp.is_file() else None,
                    path=path)


@lru_cache(maxsize=4)
def _tokenizer(cfg_json: str, sp_model: str | None):
    return make_tokenizer(TokenizerConfig.from_dict(json.loads(cfg_json)), sp_model)


def encode_texts(
    texts: Sequence[str], tok_cfg: TokenizerConfig, vocab: Vocab, sp_model: str | os.PathLike | None = None
) -> list[np.ndarray]:
    """Ids (int64, starting with xxbos) of a few texts, in memory: for generate and predict."""
    tok = _tokenizer(json.dumps(tok_cfg.to_dict(), sort_keys=True), str(sp_model) if sp_model else None)
    results = tokenize_in_process(tok, texts)  # a long text in pieces: bounded memory
    if isinstance(tok, SubwordTokenizer):
        return [np.asarray(ids, dtype=np.int64) for ids in results]
    return [np.asarray(vocab.numericalize(t), dtype=np.int64) for t in results]
