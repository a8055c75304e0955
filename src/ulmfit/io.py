"""Small file-system helpers shared by every layer (no torch here).

Every artefact is written to a temporary file in the same folder and renamed over the target,
so an interrupted run or a full disk never leaves a half-written file where a good one was.
"""

from __future__ import annotations

import errno
import functools
import inspect
import json
import math
import numbers
import os
import re
import stat
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path


# How the ULMFIT_* switches (ULMFIT_BF16, ULMFIT_JEMALLOC) are written, in lower case
ON_WORDS, OFF_WORDS = ("1", "on", "yes", "true"), ("0", "off", "no", "false")


class UlmfitError(Exception):
    """An error whose message is meant for the user as it is (the CLI prints it, no traceback; so
    does IPython/Jupyter, through `_render_traceback_`)."""

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


class FinishedRun(UlmfitError):
    """`resume` given a run that has finished (its budget spent, or ended by early stopping): there
    is nothing to continue. The demo, resumed after an interruption that landed between a step's
    end and its record, keeps such a step as done."""


class TrainingInterrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C or SIGTERM after saving everything; the message says where and how
    to resume. A KeyboardInterrupt, as the Ctrl-C it stands for: `except Exception` (a loop over
    settings that logs failures and goes on) does not swallow it, and `except KeyboardInterrupt`
    catches it. The CLI prints the message and exits with 130; IPython/Jupyter prints it alone."""

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


def as_texts(texts, what: str = "texts") -> list[str]:
    """`texts` as a list of strings: any iterable of str (a list, tuple, numpy array, generator).
    A single string is refused, since iterating it would give one text per character, and so is
    an item that is not a string (None, a number), by its position."""
    return list(iter_texts(texts, what))


def iter_texts(texts, what: str = "texts") -> Iterator[str]:
    """The texts of `texts` one by one, checked as `as_texts` checks them, without holding them all.
    Refused before the first: a single string, a table (a pandas DataFrame iterates its column
    names) and a mapping (a dict iterates its keys)."""
    if isinstance(texts, (str, bytes)):
        raise UlmfitError(f"{what} must be a list of texts, not a single string: wrap it, e.g. [text]")
    if hasattr(texts, "columns") and hasattr(texts, "iloc"):
        raise UlmfitError(f"{what} must be a list of texts, not a table: give its column of texts, e.g. df['text']")
    if isinstance(texts, Mapping):
        raise UlmfitError(f"{what} must be a list of texts, not a {type(texts).__name__} (which gives its keys): give "
                          "the list of texts itself, e.g. data['text']")
    try:
        items = iter(texts)
    except TypeError:
        raise UlmfitError(f"{what} must be a list of texts, not {type(texts).__name__}") from None
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise UlmfitError(f"{what}[{i}] is {type(text).__name__} {text!r:.40}, not a string")
        yield text


def _read_umask() -> int:
    """The process's umask, read where the system shows it (Linux), else by setting it and back: for
    that moment files other threads create (ulmfit first imported by a service's request thread) would
    get no mask."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once, at import


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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:  # named after the file asked for, not a temporary name or a parent of it
        blocking = file_in_the_way(path)
        why = f"{blocking} is a file, not a folder" if blocking is not None else e.strerror or str(e)
        raise type(e)(e.errno, why, str(path)) from None
    os.close(fd)
    try:
        yield tmp
        # on the disk before it takes the target's name: after a power cut the target is the old
        # file or the new one, never a new name over data the kernel had not yet written
        _fsync(tmp)
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


def file_in_the_way(path: str | os.PathLike) -> Path | None:
    """The file (not a folder) that stands where a folder of `path`'s should be, if any: writing
    `path` needs its parents to be folders."""
    return next((p for p in Path(path).parents if p.exists() and not p.is_dir()), None)


def _fsync(p: str) -> None:
    try:
        fd = os.open(p, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # a filesystem or device that cannot sync (a pipe, some network mounts)
        pass
    finally:
        os.close(fd)


def _remove(p: str) -> None:
    try:
        os.remove(p)
    except OSError:
        pass


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)  # synced by atomic_path


def written_through(path: str | os.PathLike) -> bool:
    """Whether an output goes through `path` as it is, not by replacing it: a link (/dev/stdout is one),
    a pipe or a device. Renaming a finished file onto such a path would replace the link or the device
    node with a plain file, and the output would never reach where the user sent it."""
    path = Path(path)
    return path.is_symlink() or (path.exists() and not path.is_file())


def is_stdout(path: str | os.PathLike) -> bool:
    """Whether `path` is this process's standard output (/dev/stdout, /proc/self/fd/1, or the file it
    is redirected to). Opened again with "w" that file would be cut to nothing: `>> all.json` would
    keep only the last run; such output is written to sys.stdout instead."""
    try:
        return os.path.samestat(os.stat(path), os.fstat(sys.stdout.fileno()))
    except (OSError, ValueError, AttributeError):  # no such path, or no real standard output (pytest)
        return False


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


READ_JSON_MAX = 64 << 20  # a config or state is kilobytes; a model folder from elsewhere may hold anything


def read_json(path: str | os.PathLike) -> dict:
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > READ_JSON_MAX:  # /dev/zero, a FIFO (read for ever)
            raise UlmfitError(f"{path} is {'not a file' if not stat.S_ISREG(st.st_mode) else f'{st.st_size:,} bytes'}"
                              ": not a JSON file ulmfit wrote")
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:  # RecursionError: nesting 5,000 deep
        raise UlmfitError(f"{path} is not valid JSON ({type(e).__name__}: {e}); the file is corrupted") from None


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
    """$ULMFIT_CACHE (a leading ~ is the home folder; empty is unset), else $XDG_CACHE_HOME/ulmfit
    where that is set (as PyTorch and Hugging Face read it), else ~/.cache/ulmfit."""
    env = os.environ.get("ULMFIT_CACHE", "").strip()
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    if xdg and os.path.isabs(os.path.expanduser(xdg)):  # the XDG rules: a relative one is ignored
        return Path(xdg).expanduser() / "ulmfit"
    return Path.home() / ".cache" / "ulmfit"


def cache_unwritable(path, e: OSError) -> UlmfitError | None:
    """The error to raise when a cache folder cannot be written (a read-only or missing home, a
    service account): it names the folder and the fix, where errno text alone would not."""
    if e.errno in (errno.ENOTDIR, errno.EEXIST):  # a file where a folder should be (ULMFIT_CACHE=a file)
        return UlmfitError(f"cannot make the cache folder {path}: a file stands where a folder of its path should "
                           f"be ({e}); set ULMFIT_CACHE to a folder (it is "
                           f"{os.environ.get('ULMFIT_CACHE') or 'unset'})")
    if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
        return None
    return UlmfitError(f"cannot write the cache folder {path} ({e.strerror}); set ULMFIT_CACHE to a folder you can "
                       "write, e.g. ULMFIT_CACHE=/tmp/ulmfit-cache")


def writable_cache_dir(path) -> Path:
    """`path` made (with its parents) and writable, or a clear UlmfitError."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
    except OSError as e:
        err = cache_unwritable(path, e)
        if err is None:
            raise
        raise err from None
    return path


# One training run per output folder. A second process writing into a folder that a run is still
# training into (`--resume` in another terminal while the first run goes on, `--overwrite`, or the
# same `--out` by mistake) would interleave two runs' checkpoints, metrics and configs, and
# `--overwrite` would delete the live run's files. The run holds an exclusive flock on a file in
# the folder; the kernel drops it when the process ends, however it ends (a crash, `kill -9`), so
# a stale lock never blocks anyone. Where the OS or filesystem has no flock, nothing is checked.
OUT_LOCK = ".ulmfit-run.lock"
_held_outs: dict[str, object] = {}  # resolved folder -> the open, locked file


def _lock_key(out) -> str:
    return str(Path(out).resolve())


def _holder(f) -> str:
    """'process 123 (on host)' from the lock file's text, or '' where it cannot be read."""
    try:
        f.seek(0)
        pid, _, host = f.read(200).strip().partition(" ")
    except (OSError, ValueError):
        return ""
    return f"process {pid}{f' (on {host})' if host else ''}" if pid.isdigit() else ""


def out_in_use(out) -> str | None:
    """Who holds `out`: 'process N (on HOST)', 'this process', 'another process', or None when no
    live run holds it."""
    if _lock_key(out) in _held_outs:
        return "this process"
    path = Path(out) / OUT_LOCK
    try:
        import fcntl
        f = open(path, "r")
    except (ImportError, OSError):
        return None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder(f) or "another process"
        except OSError:
            return None
        return None


def in_use_error(out, who: str) -> UlmfitError:
    pid = who.split()[1] if who.startswith("process ") else "PID"
    return UlmfitError(f"{out} is in use: {who} is still training into it. Wait for that run to end, or stop it "
                       f"(Ctrl-C where it runs, or `kill -TERM {pid}`: it saves and stops, and `--resume` "
                       "continues it), or choose another --out")


def refuse_if_held(out) -> None:
    """Refuse to write into `out` while another process's run holds it (nothing to check for a
    folder that does not exist yet, or that this process holds)."""
    who = out_in_use(out) if Path(out).is_dir() else None
    if who and who != "this process":
        raise in_use_error(out, who)


def holds_out(out) -> bool:
    """Whether this process holds `out` (`claim_out`)."""
    return _lock_key(out) in _held_outs


_left_locks: set[str] = set()  # folders whose lock file was there before this process claimed them


def lock_left_behind(out) -> bool:
    """Whether `out` holds the lock file of a run that is gone (killed: its lock is released by the OS
    but the file stays): there before this process claimed the folder, or there and not ours."""
    if not (Path(out) / OUT_LOCK).exists():
        return False
    return _lock_key(out) in _left_locks or not holds_out(out)


def claim_out(out) -> bool:
    """Hold `out` (an existing folder) for this process until `release_out`. Refuses, with who
    holds it, a folder that a live run holds. Returns whether this call took the lock (False: it was
    held by this process already, or the filesystem has no locks)."""
    key = _lock_key(out)
    if key in _held_outs:
        return False
    try:
        import fcntl
    except ImportError:
        return False
    path = Path(out) / OUT_LOCK
    if path.is_symlink():  # never ulmfit's: a folder from elsewhere planted it (writing to it truncated
        path.unlink()      # its target, anywhere); the link goes, its target is left alone
    if path.exists():  # a run before this one left it: one killed (its release never ran)
        _left_locks.add(key)
    while True:
        try:
            f = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0), 0o666),
                          "a+")
        except PermissionError:  # another user's run's lock file (a shared folder): lock it read-only
            try:
                f = open(path, "r")
            except OSError:
                return False
        except OSError:  # a folder that takes no files: writable_out says so
            return False
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = _holder(f) or "another process"
            f.close()
            raise in_use_error(out, who) from None
        except OSError:  # a filesystem without locks
            f.close()
            return False
        try:  # the holder may have removed the file just before we locked it: lock the one at the path
            same = os.fstat(f.fileno()).st_ino == os.stat(path).st_ino
        except OSError:
            same = False
        if same:
            break
        f.close()
    try:
        import socket
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()} {socket.gethostname()}\n")
        f.flush()
    except OSError:  # a full disk: the lock holds all the same, only its message lacks the pid
        pass
    _held_outs[key] = f
    return True


def release_out(out) -> None:
    """Let go of `out` (a no-op where this process does not hold it); its lock file is removed."""
    f = _held_outs.pop(_lock_key(out), None)
    _left_locks.discard(_lock_key(out))
    if f is None:
        return
    path = Path(out) / OUT_LOCK
    try:  # while still locked (see claim_out's check), and only our own: the folder may have been moved
        mine, there = os.fstat(f.fileno()), os.stat(path)
        if (mine.st_ino, mine.st_dev) == (there.st_ino, there.st_dev):
            path.unlink()
    except OSError:
        pass
    f.close()


def holds_files(out) -> bool:
    """Whether the folder `out` holds anything besides a run's lock file."""
    return any(p.name != OUT_LOCK for p in Path(out).iterdir())


def launch_env() -> tuple[int, int, int]:
    """(RANK, WORLD_SIZE, LOCAL_RANK) as torchrun sets them; (0, 1, 0) outside a job of several
    processes: a RANK left in the environment (some clusters set it) made a lone command silent
    and unlocked. A value that is not a number is refused by name (it was a ValueError traceback)."""
    vals = {}
    for name, default in (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)):
        raw = os.environ.get(name, "").strip()
        try:
            vals[name] = int(raw) if raw else default
        except ValueError:
            raise UlmfitError(f"the environment variable {name}={raw!r} is not a whole number; torchrun sets it, "
                              f"and outside torchrun it should be unset") from None
    if vals["WORLD_SIZE"] <= 1:
        return 0, 1, 0
    return vals["RANK"], vals["WORLD_SIZE"], vals["LOCAL_RANK"]


def is_main_process() -> bool:
    """Process 0 of a torchrun job (its RANK; the process group may not be set up yet), or a
    process on its own."""
    if launch_env()[0] != 0:
        return False
    from .train.distributed import is_main  # here, not at import: this module needs no torch

    return is_main()


def whole_number(value, name: str, lo: int = 1, hi: int | None = None, none: bool = False):
    """`value` if it is a whole number in [lo, hi] (a numpy integer too, as a Python int; a bool is
    not one), else an UlmfitError that names the parameter."""
    if value is None and none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lo \
            or (hi is not None and value > hi):
        span = f"from {lo:,} to {hi:,}" if hi is not None else f"of at least {lo:,}"
        raise UlmfitError(f"{name} must be a whole number {span}{' (or None)' if none else ''}, not {value!r}")
    return int(value)


def is_real_number(value, lo: float | None = None, hi: float | None = None, *, above: bool = False,
                   below: bool = False) -> bool:
    """Whether `value` is a finite real number (a numpy one too; not a bool, NaN or infinity, nor a
    whole number too large for a float) in [lo, hi], or (lo, hi] with `above`, [lo, hi) with
    `below`. The callers word their own errors: what the number means is theirs to say."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    try:
        v = float(value)
    except (OverflowError, ValueError):
        return False
    if not math.isfinite(v):
        return False
    if lo is not None and (v <= lo if above else v < lo):
        return False
    return hi is None or (v < hi if below else v <= hi)


class UlmfitWarning(UserWarning):
    """What the library warns about (a model that scores badly, a setting a resumed run ignores, an
    unfinished model loaded): `warnings.filterwarnings("ignore", category=UlmfitWarning)` silences it,
    and `"error"` turns it into an exception. A call with `progress=True` (the default) prints its
    warnings as `warning:` lines beside its progress bars (`warn`), under the same filters;
    `progress=False` sends them through `warnings`."""


# Every time, not once per line of the caller (Python's default): each bad run in a loop over seeds,
# or a cell run again, is news. Appended, so a filter the user set first still wins.
warnings.filterwarnings("always", category=UlmfitWarning, append=True)


def warn(msg: str, progress: bool = False) -> None:
    """A warning for the user: on standard error with a run's progress, else an UlmfitWarning
    (progress=False silences progress, not news that the result is bad), shown at the caller's
    line: the first one outside this package. The printed line obeys the user's warnings filters
    as the warning would: "ignore" drops it, "error" raises it."""
    here, level, frame = os.path.dirname(os.path.abspath(__file__)), 2, sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(here + os.sep):
        frame, level = frame.f_back, level + 1
    if progress:
        module = frame.f_globals.get("__name__", "<string>") if frame is not None else "sys"
        lineno = frame.f_lineno if frame is not None else 0
        action = _filter_action(msg, module, lineno)
        if action == "error":
            warnings.warn(msg, UlmfitWarning, stacklevel=level)
        seen = {"once": (msg,), "module": (msg, module), "default": (msg, module, lineno)}.get(action)
        if action == "ignore" or seen in _PRINTED:
            return
        if seen is not None:
            _PRINTED.add(seen)
        print(f"warning: {msg}", file=sys.stderr, flush=True)
        return
    warnings.warn(msg, UlmfitWarning, stacklevel=level)


_PRINTED: set = set()  # what "once", "module" and "default" filters have let through as a printed line


def _filter_action(msg: str, module: str, lineno: int) -> str:
    """What the warnings filters say of an UlmfitWarning `msg` raised in `module` at `lineno`: the
    first filter that matches decides, as in `warnings.warn` (message, category, module and line)."""
    try:
        for action, text, category, mod, line in list(warnings.filters):
            if ((text is None or text.match(msg)) and issubclass(UlmfitWarning, category)
                    and (mod is None or mod.match(module)) and (line == 0 or line == lineno)):
                return action
    except (TypeError, ValueError, AttributeError):  # a filters list of another shape: show it
        return "always"
    return warnings.defaultaction


def owns_out(fn):
    """A training function that writes into `out`: while it runs, it holds the folder against
    other processes (`io.claim_out`: a second run there is refused, not interleaved). A run that
    fails before its first file (on its inputs: a missing base model, an empty or undecodable text)
    leaves no empty --out folder behind, nor the empty parents made for it (--out a/b/new); a folder
    that was already there, or that holds anything, stays."""
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def run(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        out = Path(bound.arguments["out"])
        resume = bool(bound.arguments.get("resume", False))
        fresh = not resume and not out.exists()
        new_parents = [p for p in out.absolute().parents if not p.exists()] if fresh else []  # nearest first
        # a folder that exists is held from the start, so that a live run there is named before
        # anything else is checked; a new one from when it is made (`writable_out`)
        claimed = is_main_process() and out.is_dir() and claim_out(out)
        had = _run_files(out) if out.is_dir() else set()
        try:
            result = fn(*args, **kwargs)
            if is_main_process() and out.is_dir():  # while the folder is still held
                from .api import settle_replaced

                settle_replaced(out)  # the new run saved: the run it replaced goes
        except BaseException as e:
            if is_main_process() and out.is_dir() and not resume:
                restored = _undo_unsaved_run(out, had)
                if restored and isinstance(e, UlmfitError):
                    raise UlmfitError(f"{e}; the run that --overwrite was to replace is back in {out}, as it "
                                      "was") from e
            if fresh and is_main_process() and out.is_dir() and not holds_files(out):
                release_out(out)
                for folder in (out, *new_parents):  # only folders this call made, and only while empty
                    try:
                        folder.rmdir()
                    except OSError:
                        break
            raise
        finally:
            if claimed or fresh:
                release_out(out)
        return result

    return run


def _run_files(out: Path) -> set[str]:
    """The files of a model or run (api.MODEL_FILES, api.RUN_FILES) in `out`."""
    from .api import MODEL_FILES, RUN_FILES

    return {n for n in (*MODEL_FILES, *RUN_FILES) if (out / n).exists()}


def _undo_unsaved_run(out: Path, had: set[str]) -> bool:
    """A run that ended (failed, or was interrupted) before its first checkpoint leaves none of its
    partial files (a metrics.jsonl with its first line) and, when it was to replace a run
    (--overwrite), puts that run back (`api.settle_replaced`). True when a replaced run came back."""
    from .api import settle_replaced
    from .checkpoint import CONFIG

    if settle_replaced(out):  # (with a checkpoint, the one the error calls the last good one, it drops the old run)
        return True
    if not (out / CONFIG).exists():
        for name in _run_files(out) - had:  # made by this run, which saved no checkpoint
            (out / name).unlink(missing_ok=True)
    return False


def defaults_of(fn) -> dict:
    """The default of each argument of `fn`, taken once at import (api.note_ignored_args), so that
    a caller that wraps or replaces the function's name does not change them."""
    return {k: p.default for k, p in inspect.signature(fn).parameters.items()}


# Control characters (C0 but tab and newline, DEL, C1) are commands to a terminal, not text: in a
# label, a generated sample, a file name or a text they could clear the screen, rewrite a line
# (\r), retitle the window or set the clipboard (OSC 52). Labels and texts come from data files and,
# with a model folder from elsewhere, from its author; printed to a terminal they are escaped
# (`terminal_safe_streams`).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class TerminalText:
    """A standard stream on a terminal that writes control characters as escapes (`escape_controls`).
    `wrapped` is the stream itself, for progress bars, whose carriage returns redraw their line."""

    def __init__(self, stream):
        self.wrapped = stream

    def write(self, text: str) -> int:
        self.wrapped.write(escape_controls(text))
        return len(text)  # as written, for a caller that counts

    def __getattr__(self, name):
        return getattr(self.wrapped, name)


def terminal_safe_streams() -> None:
    """Standard output and error, where they are terminals, write control characters as escapes;
    files and pipes get the text as it is. For the command line, which owns its terminal."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        try:
            tty = stream.isatty()
        except (AttributeError, ValueError):  # closed, or no such method
            tty = False
        if tty and not isinstance(stream, TerminalText):
            setattr(sys, name, TerminalText(stream))


def escape_controls(text: str) -> str:
    """`text` with its control characters written as escapes (\\x1b)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
