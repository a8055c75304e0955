"""Small file-system helpers shared by every layer (no torch here).

Every artefact is written to a temporary file in the same folder and renamed over the target,
so an interrupted run or a full disk never leaves a half-written file where a good one was.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path


class UlmfitError(Exception):
    """An error whose message is meant for the user as it is (the CLI prints it, no traceback)."""


class TrainingInterrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C or SIGTERM after saving everything; the message says where and how
    to resume. A KeyboardInterrupt, as the Ctrl-C it stands for: `except Exception` (a loop over
    settings that logs failures and goes on) does not swallow it, and `except KeyboardInterrupt`
    catches it. The CLI prints the message and exits with 130."""


def as_texts(texts, what: str = "texts") -> list[str]:
    """`texts` as a list of strings: any iterable of str (a list, tuple, numpy array, generator).
    A single string is refused, since iterating it would give one text per character, and so is
    an item that is not a string (None, a number), by its position."""
    if isinstance(texts, (str, bytes)):
        raise UlmfitError(f"{what} must be a list of texts, not a single string: wrap it, e.g. [text]")
    try:
        out = list(texts)
    except TypeError:
        raise UlmfitError(f"{what} must be a list of texts, not {type(texts).__name__}") from None
    bad = first_non_string(out)
    if bad is not None:
        raise UlmfitError(f"{what}[{bad}] is {type(out[bad]).__name__} {out[bad]!r:.40}, not a string")
    return out


def first_non_string(items: list) -> int | None:
    """The position of the first item that is not a str (None when all are)."""
    return next((i for i, t in enumerate(items) if not isinstance(t, str)), None)


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once, at import (reading the umask means setting it)


_OPEN = threading.local()  # per thread: the files its open `atomic_group` has written, not yet in place


@contextmanager
def atomic_group():
    """The files written with `atomic_path` inside this block replace their targets together at
    its end, once every one of them is written in full: a full disk or an error part-way through
    a checkpoint (weights, config, training state) leaves the previous checkpoint whole, never
    new weights beside an old training state. Renames take no space, so none fails for lack of
    it. Inside an open group a nested one joins it (its files wait for the outer group). A group
    holds the files of its own thread only."""
    if getattr(_OPEN, "group", None) is not None:
        yield
        return
    _OPEN.group = written = []
    try:
        yield
        _OPEN.group = None
        for tmp, path in written:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in written:  # those renamed already are gone: nothing to remove
            _remove(tmp)
        raise
    finally:
        _OPEN.group = None


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to `path`; on success it is renamed onto `path` (inside an
    `atomic_group`, when the group ends)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        # mkstemp made the file readable by its owner alone; a saved model follows the umask like
        # any other file (0644 under the usual 022), so that others can read a shared model
        os.chmod(tmp, 0o666 & ~_UMASK)
        group = getattr(_OPEN, "group", None)
        if group is not None:
            group.append((tmp, path))
        else:
            os.replace(tmp, path)
    except OSError as e:
        _remove(tmp)
        if e.errno == 28:  # ENOSPC
            raise UlmfitError(f"disk full while writing {path}; the previous version (if any) is intact") from e
        raise
    except BaseException as e:
        _remove(tmp)
        # safetensors reports a full disk as its own error type, with the OS error in its message
        if "No space left on device" in str(e) or "StorageFull" in str(e):
            raise UlmfitError(f"disk full while writing {path}; the previous version (if any) is intact") from e
        raise


def _remove(p: str) -> None:
    try:
        os.remove(p)
    except OSError:
        pass


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UlmfitError(f"{path} is not valid JSON ({e}); the file is corrupted") from e


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def trim_jsonl(path: str | os.PathLike, max_step: int) -> int:
    """Drop the lines of a metrics log written after the checkpoint a run resumes from (those
    with a step beyond `max_step`, and a line cut short by a hard kill): the resumed run writes
    them again. Returns how many lines were dropped."""
    path = Path(path)
    if not path.exists():
        return 0
    keep, dropped = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            dropped += 1
            continue
        if isinstance(rec, dict) and isinstance(rec.get("step"), int) and rec["step"] > max_step:
            dropped += 1
            continue
        keep.append(line)
    if dropped:
        atomic_write_text(path, "".join(line + "\n" for line in keep))
    return dropped


def cache_root() -> Path:
    return Path(os.environ.get("ULMFIT_CACHE", Path.home() / ".cache" / "ulmfit"))
