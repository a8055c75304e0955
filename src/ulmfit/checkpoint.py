"""Model directories: what a trained model is on disk, and the only way it is read back.

A model directory holds
- ``config.json``: format marker, kind, architecture, tokenizer settings, training config,
  library version, and the training history;
- ``model.safetensors``: the weights (tied weights stored once);
- ``vocab.txt`` (one token a line) and, for subword models, ``spm.model``;
- for resuming, ``train_state.safetensors`` (optimizer moments, RNG state) and
  ``train_state.json`` (step, epoch, position in the data, schedule).

Nothing here ever unpickles: tensors come from safetensors, everything else from JSON or text.
Every file is written to a temporary name and renamed into place; ``train_state.json`` is
written last and names the step that the tensor files must carry, so a run interrupted while
saving is detected instead of silently resuming from mixed files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import __version__
from .io import UlmfitError, atomic_path, atomic_write_json, read_json
from .model.awd_lstm import AWDLSTMConfig
from .model.heads import AWDLSTMLanguageModel
from .text.tokenize import RULES_VERSION, TokenizerConfig
from .text.vocab import Vocab

FORMAT = "ulmfit"
FORMAT_VERSION = 1
CONFIG, WEIGHTS, VOCAB, SPM = "config.json", "model.safetensors", "vocab.txt", "spm.model"
STATE_T, STATE_J = "train_state.safetensors", "train_state.json"
# what a training run keeps beside its model: a model written over a run must not leave them there
RUN_FILES = (STATE_J, STATE_T, "best.safetensors", "metrics.jsonl")


def remove_run_files(out: Path, *names: str) -> None:
    """Remove a replaced run's training state (and `names`, e.g. a model's own files) from `out`:
    a model written over a run would otherwise sit beside a state that no longer matches it."""
    for name in (*names, *RUN_FILES):
        (Path(out) / name).unlink(missing_ok=True)


def check_free_space(out: Path, model: torch.nn.Module, copies: int) -> None:
    """Refuse to start a run whose first checkpoint cannot fit in `out`'s free space (it would fail
    at the first save, up to --save-every minutes or an epoch in), and warn when two do not: a
    checkpoint is written whole beside the previous one before it replaces it. `copies`: fp32
    values a checkpoint holds per weight (weights, Adam's two moments, best or last weights)."""
    need = 4 * copies * sum(t.numel() for t in _unique_state_dict(model).values())
    try:
        free = shutil.disk_usage(out).free
    except OSError:
        return
    if free < need:
        raise UlmfitError(f"{out} has {free / 1e6:,.1f} MB free, and a checkpoint of this model takes about "
                          f"{need / 1e6:,.1f} MB (weights and optimizer state); free some space or choose another --out")
    if free < 2 * need:
        print(f"warning: {out} has {free / 1e6:,.1f} MB free; a checkpoint takes about {need / 1e6:,.1f} MB and "
              "each new one is written whole before the last one is removed, so later saves may fail for "
              "lack of space (the last good checkpoint is kept)", file=sys.stderr)


def _unique_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """state_dict without the second name of a tied tensor (safetensors stores each tensor once)."""
    seen: dict[int, str] = {}
    out = {}
    for name, t in model.state_dict(keep_vars=False).items():
        key = t.data_ptr()
        if key in seen and t.numel() > 0:
            continue
        seen[key] = name
        out[name] = t.detach().cpu().contiguous()
    return out


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    with atomic_path(path) as tmp:
        try:
            save_file(tensors, tmp, metadata=metadata)
        except SafetensorError as e:  # "Error while serializing: I/O error: File too large": which file?
            raise UlmfitError(f"could not write {path} ({e}); a full disk or a file-size limit (ulimit -f)?") from None


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    if not path.exists():
        raise UlmfitError(f"{path} is missing")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return load_file(str(path)), meta
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise UlmfitError(f"{path} is not a readable safetensors file ({e}); the file is corrupted or foreign") from e


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tie(vocab: Vocab, tok: dict, backwards: bool, sp_model: str | os.PathLike | None,
         labels: list[str] | None = None) -> dict[str, str]:
    """What the weights were trained with, written into their safetensors header: the files beside
    them (config.json, vocab.txt, spm.model) are plain text that can be swapped or edited one at a
    time, and a vocabulary, tokenisation, direction or label order that is not the training one
    gives wrong predictions without any error. `_check_tie` compares them on loading."""
    meta = {"vocab_sha256": _digest(json.dumps(vocab.itos, ensure_ascii=False).encode("utf-8")),
            "tokenizer": json.dumps({"kind": tok.get("kind"), "lower": tok.get("lower")}, sort_keys=True),
            "backwards": "true" if backwards else "false"}
    if sp_model:
        meta["spm_sha256"] = _digest(Path(sp_model).read_bytes())
    if labels is not None:
        meta["labels"] = json.dumps(list(labels), ensure_ascii=False)
    return meta


def _check_tie(path: Path, meta: dict[str, str], vocab: Vocab, cfg: dict, backwards: bool) -> None:
    """The files beside the weights are the ones the weights were saved with (see `_tie`). Weights
    saved before the record existed (the shipped models among them) carry none and are not checked;
    spm.model is checked where the record names one (a word-level model does not read it)."""
    if "vocab_sha256" not in meta:
        return
    sp = path / SPM
    if meta.get("spm_sha256") and not sp.exists():
        raise UlmfitError(f"{path}: {SPM} is missing: {WEIGHTS} reads text cut into the pieces of that SentencePiece "
                          "model. Copy the whole model folder again from where it was trained.")
    now = _tie(vocab, cfg.get("tokenizer") or {}, backwards, sp if sp.exists() else None,
               cfg.get("labels") if "labels" in meta else None)
    what = {"vocab_sha256": f"{VOCAB} is not the vocabulary",
            "tokenizer": f"the tokenizer settings of {CONFIG} are not those",
            "backwards": f"the reading direction in {CONFIG} ({'backward' if backwards else 'forward'}) is not the one",
            "spm_sha256": f"{SPM} is not the SentencePiece model",
            "labels": f"the labels of {CONFIG} (names or order) are not those"}
    for key, says in what.items():
        if key in meta and meta[key] != now.get(key):
            raise UlmfitError(
                f"{path}: {says} that {WEIGHTS} was trained with; the files of two models were mixed, or "
                "one was edited. Copy the whole model folder again from where it was trained.")


def _save_vocab(out: Path, vocab: Vocab, sp_model: str | None) -> None:
    """vocab.txt (rewritten only when it changed) and a copy of the SentencePiece model."""
    if not (out / VOCAB).exists() or Vocab.load(out / VOCAB).itos != vocab.itos:
        vocab.save(out / VOCAB)
    if sp_model and Path(sp_model).resolve() != (out / SPM).resolve():
        with atomic_path(out / SPM) as tmp:
            shutil.copyfile(sp_model, tmp)


def save_model(out: str | os.PathLike, model: AWDLSTMLanguageModel, *, vocab: Vocab, tok_cfg: TokenizerConfig,
               sp_model: str | None = None, train: dict | None = None, history: list | None = None,
               step: int = 0, dtype: torch.dtype | None = None, kind: str = "language_model",
               extra: dict | None = None) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tensors = _unique_state_dict(model)
    if dtype is not None:
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "ulmfit_version": __version__,
        "arch": model.cfg.to_dict(),
        "tokenizer": tok_cfg.to_dict(),
        "tokenizer_rules": RULES_VERSION,  # of the tokens it trained on: `extra` says so for a resumed older run
        "train": train or {},
        "history": history or [],
        "step": step,
    }
    config.update(extra or {})
    tie = _tie(vocab, config["tokenizer"], reads_backwards(config), sp_model)
    save_tensors(out / WEIGHTS, tensors, {"format": FORMAT, "step": str(step), **tie})
    _save_vocab(out, vocab, sp_model)
    atomic_write_json(out / CONFIG, config)
    return out


def older_rules_note(path, cfg: dict) -> str | None:
    """What to tell a user of a model trained on tokens of earlier tokeniser rules than this ulmfit's
    (config "tokenizer_rules", recorded since 2026-12-08, at rules version 2; a model without it, or
    with None there (a fastai import, an export of an unrecorded model), is not judged)."""
    rules = cfg.get("tokenizer_rules")
    if isinstance(rules, int) and not isinstance(rules, bool) and rules < RULES_VERSION:
        return (f"{path} was trained on tokens of the tokeniser rules of an earlier ulmfit (version {rules}; this one "
                f"has {RULES_VERSION}): some texts now get other tokens than it learned from, and its predictions on "
                "them may differ a little; train it again with this version for the same tokens")
    return None


def model_path(path) -> Path:
    """A model directory's path; anything else (None, a model object) is refused by name."""
    if not isinstance(path, (str, os.PathLike)):
        raise UlmfitError(f"a model is given by the path of its directory, not {type(path).__name__}")
    return Path(path)


# Where a run with --overwrite keeps the files of the run it replaces until its first checkpoint
# (`api.clear_replaced_run`): a folder holding it and no config.json is being replaced.
REPLACED = ".ulmfit-replaced"


def refuse_if_being_replaced(path: Path) -> None:
    """A model folder whose model a run with --overwrite has set aside: said as such, not as "no model"."""
    if (path / REPLACED).is_dir() and not (path / CONFIG).exists():
        raise UlmfitError(f"{path} holds no model now: a run with --overwrite is replacing it, or was stopped "
                          "before its first save (then the next training command there puts the earlier "
                          "model back, or --overwrite again replaces it)")


def read_config(path: str | os.PathLike, kind: str | None = None) -> dict:
    path = model_path(path)
    if not path.is_dir():
        raise UlmfitError(f"{path} is not a model directory (it does not exist or is a file)")
    cfg_path = path / CONFIG
    if not cfg_path.exists():
        refuse_if_being_replaced(path)
        raise UlmfitError(f"{path} is not a ulmfit model directory: it has no {CONFIG}")
    cfg = read_json(cfg_path)
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise UlmfitError(f"{cfg_path} is not a ulmfit model config (foreign format)")
    if cfg.get("format_version", 0) > FORMAT_VERSION:
        raise UlmfitError(f"{path} was written by a newer ulmfit (format {cfg['format_version']}); upgrade ulmfit")
    if kind is not None and cfg.get("kind") != kind:
        raise UlmfitError(f"{path} holds a {cfg.get('kind')}, not a {kind}")
    for section in ("arch", "head", "tokenizer", "train"):  # a hand-edited or damaged config
        if section in cfg and not isinstance(cfg[section], dict):
            raise UlmfitError(f"{cfg_path}: its {section!r} section is {type(cfg[section]).__name__}, not an object")
    for where, d in (("", cfg), ("train.", cfg.get("train") or {})):  # read as a direction by every loader
        if "backwards" in d and not isinstance(d["backwards"], bool):
            raise UlmfitError(f"{cfg_path}: '{where}backwards' must be true or false, not {d['backwards']!r}")
    if "labels" in cfg and not (isinstance(cfg["labels"], list) and all(isinstance(x, str) for x in cfg["labels"])):
        raise UlmfitError(f"{cfg_path}: 'labels' must be a list of label names")
    if "labels" in cfg and len(set(cfg["labels"])) != len(cfg["labels"]):
        raise UlmfitError(f"{cfg_path}: 'labels' names a label twice; the file is damaged or was edited")
    return cfg


def reads_backwards(cfg: dict) -> bool:
    """Whether the language model of this config reads text right to left (its training setting,
    checked to be true or false by `read_config`)."""
    return bool((cfg.get("train") or {}).get("backwards", False))


def classifier_reads_backwards(cfg: dict) -> bool:
    """Whether a classifier reads its texts right to left (what `predict` goes by)."""
    return bool(cfg.get("backwards", reads_backwards(cfg)))


def require_sections(cfg: dict, path: Path, *sections: str) -> None:
    """The config sections that loading a model needs (a damaged or hand-edited file may lack one)."""
    for section in sections:
        if section not in cfg:
            raise UlmfitError(f"{path / CONFIG} has no {section!r} section; the file is damaged or was edited")


def load_model(path: str | os.PathLike) -> tuple[AWDLSTMLanguageModel, dict, Vocab]:
    """A language model from its directory, in eval mode, with its config and vocabulary."""
    path = model_path(path)
    cfg = read_config(path, "language_model")
    require_sections(cfg, path, "arch", "tokenizer")
    try:
        arch = AWDLSTMConfig.from_dict(cfg["arch"])
    except (KeyError, TypeError, ValueError) as e:
        raise UlmfitError(f"{path / CONFIG} has an invalid architecture section ({e})") from e
    if not (path / VOCAB).exists():
        raise UlmfitError(f"{path} has no {VOCAB}")
    try:
        vocab = Vocab.load(path / VOCAB)
    except (ValueError, UnicodeDecodeError) as e:
        raise UlmfitError(f"{path / VOCAB} is not a valid vocabulary ({e})") from e
    if len(vocab) != arch.vocab_size:
        raise UlmfitError(f"{path}: vocabulary has {len(vocab)} tokens but the model expects {arch.vocab_size}")
    model = AWDLSTMLanguageModel(arch)
    tensors, meta = load_tensors(path / WEIGHTS)
    _check_tie(path, meta, vocab, cfg, reads_backwards(cfg))
    load_weights(model, tensors, path / WEIGHTS)
    model.eval()
    return model, cfg, vocab


def load_weights(model: torch.nn.Module, tensors: dict[str, torch.Tensor], where) -> None:
    expected = _unique_state_dict(model)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise UlmfitError(
            f"{where} does not match the model described in config.json "
            f"(missing: {missing[:5]}, unexpected: {unexpected[:5]})"
        )
    for k, v in tensors.items():
        if v.shape != expected[k].shape:
            raise UlmfitError(f"{where}: {k} has shape {tuple(v.shape)}, expected {tuple(expected[k].shape)}")
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise UlmfitError(f"{where}: {k} holds NaN or infinite values; the file is damaged (a model "
                              "saved by ulmfit never does: training stops when its loss stops being finite)")
        if k.endswith("running_var") and bool((v < 0).any()):  # a variance: a square root of it comes next
            raise UlmfitError(f"{where}: {k} holds negative variances; the file is damaged")
    with torch.no_grad():
        sd = model.state_dict()
        for k, v in tensors.items():
            sd[k].copy_(v.to(sd[k].dtype))


# ---------------------------------------------------------------------------------------------
# Training state (resume)


def rng_state() -> dict[str, torch.Tensor]:
    """The random generators' state (dropout masks, sampling) as tensors, for `set_rng_state`."""
    out = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["rng.cuda"] = torch.cuda.get_rng_state()
    return out


def set_rng_state(tensors: dict[str, torch.Tensor]) -> None:
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])


def save_train_state(out: str | os.PathLike, optimizer: torch.optim.Optimizer, names: dict[int, str],
                     state: dict, hidden: list | None = None, extra_tensors: dict | None = None) -> None:
    """Optimizer moments, RNG state and the LM's carried hidden state as tensors, the rest
    (step, position, ...) as JSON: enough for a resumed run to take the very same steps."""
    out = Path(out)
    tensors: dict[str, torch.Tensor] = rng_state()
    for i, (h, c) in enumerate(hidden or []):
        tensors[f"hidden.{i}.h"], tensors[f"hidden.{i}.c"] = h.cpu().contiguous(), c.cpu().contiguous()
    for group in optimizer.param_groups:
        for p in group["params"]:
            st = optimizer.state.get(p)
            if not st:
                continue
            name = names[id(p)]
            for k, v in st.items():
                t = v if torch.is_tensor(v) else torch.tensor(v)
                tensors[f"opt.{name}.{k}"] = t.detach().cpu().contiguous().clone()
    for k, v in (extra_tensors or {}).items():
        tensors[k] = v.detach().cpu().contiguous()
    step = str(state["step"])
    save_tensors(out / STATE_T, tensors, {"format": FORMAT, "step": step})
    state = dict(state)
    state["lrs"] = [g["lr"] for g in optimizer.param_groups]
    atomic_write_json(out / STATE_J, state)


def load_train_state(path: str | os.PathLike, optimizer: torch.optim.Optimizer, names: dict[int, str],
                     weights_prefix: str | None = None, model: torch.nn.Module | None = None) -> dict:
    path = Path(path)
    if not (path / STATE_J).exists():
        raise UlmfitError(f"{path} has no training state to resume from ({STATE_J} is missing)")
    state = read_json(path / STATE_J)
    if not isinstance(state, dict):
        raise UlmfitError(f"{path / STATE_J} is not a training state (a JSON object)")
    for k in ("step", "epoch", "batch", "tokens", "stage", "stage_epoch", "best_epoch", "bad_epochs"):
        v = state.get(k, 0)  # counters: a negative batch made a resumed run loop through its epoch for ever
        if v is None and k == "best_epoch":  # a classifier stopped before its first epoch ended has none
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise UlmfitError(f"{path / STATE_J}: {k} is {v!r}, not a count (a whole number >= 0); the file is "
                              "damaged or was not written by ulmfit")
    tensors, meta = load_tensors(path / STATE_T)
    _, wmeta = load_tensors(path / WEIGHTS)
    step = str(state.get("step"))
    if meta.get("step") != step or wmeta.get("step") != step:
        raise UlmfitError(
            f"{path}: the saved files come from different steps (weights {wmeta.get('step')}, optimizer "
            f"{meta.get('step')}, state {step}); the run was interrupted while saving. "
            "Restore the directory from a backup or start again without --resume."
        )
    by_name = {n: i for i, n in names.items()}
    params = {id(p): p for g in optimizer.param_groups for p in g["params"]}
    if weights_prefix is not None and model is not None:  # the last weights of a run (classifier)
        last = {k[len(weights_prefix):]: v for k, v in tensors.items() if k.startswith(weights_prefix)}
        load_weights(model, last, path / STATE_T)
    for key, t in tensors.items():
        if not key.startswith("opt."):
            continue
        name, k = key[4:].rsplit(".", 1)
        pid = by_name.get(name)
        if pid is None or pid not in params:
            raise UlmfitError(f"{path}: optimizer state names a parameter {name!r} the model does not have")
        p = params[pid]
        optimizer.state[p][k] = t if k == "step" else t.to(p.device)  # Adam keeps its step count on the CPU
    set_rng_state(tensors)
    n_hidden = sum(1 for k in tensors if k.startswith("hidden.")) // 2
    state["hidden"] = [(tensors[f"hidden.{i}.h"], tensors[f"hidden.{i}.c"]) for i in range(n_hidden)] or None
    return state


# ---------------------------------------------------------------------------------------------
# Classifiers


def save_classifier(out: str | os.PathLike, weights: dict[str, torch.Tensor], *, arch: dict, head: dict,
                    vocab: Vocab, tok_cfg: TokenizerConfig, labels: list[str], sp_model: str | None = None,
                    train: dict | None = None, history: list | None = None, step: int = 0,
                    extra: dict | None = None) -> Path:
    """A self-contained classifier directory: everything predict needs, nothing from the LM's folder."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seen, tensors = set(), {}
    for k, v in weights.items():
        if v.data_ptr() in seen and v.numel() > 0:
            continue
        seen.add(v.data_ptr())
        tensors[k] = v.detach().cpu().contiguous()
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": "classifier",
              "ulmfit_version": __version__, "arch": arch, "head": head, "labels": list(labels),
              "tokenizer": tok_cfg.to_dict(), "tokenizer_rules": RULES_VERSION, "train": train or {},
              "history": history or [], "step": step}
    config.update(extra or {})
    tie = _tie(vocab, config["tokenizer"], classifier_reads_backwards(config), sp_model, labels)
    save_tensors(out / WEIGHTS, tensors, {"format": FORMAT, "step": str(step), **tie})
    _save_vocab(out, vocab, sp_model)
    atomic_write_json(out / CONFIG, config)
    return out


def load_classifier(path: str | os.PathLike):
    """(model in eval mode, config, vocabulary) from a classifier directory; never unpickles."""
    from .model.classifier import AWDLSTMClassifier, HeadConfig

    path = model_path(path)
    cfg = read_config(path, "classifier")
    require_sections(cfg, path, "arch", "head", "tokenizer", "labels")
    try:
        arch = AWDLSTMConfig.from_dict(cfg["arch"])
        head = HeadConfig.from_dict(cfg["head"])
        labels = cfg["labels"]
    except (KeyError, TypeError, ValueError) as e:
        raise UlmfitError(f"{path / CONFIG} has an invalid classifier section ({e})") from e
    if len(labels) != head.n_classes:
        raise UlmfitError(f"{path / CONFIG}: {len(labels)} labels but the head has {head.n_classes} outputs")
    try:
        vocab = Vocab.load(path / VOCAB)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise UlmfitError(f"{path / VOCAB} is missing or not a valid vocabulary ({e})") from e
    if len(vocab) != arch.vocab_size:
        raise UlmfitError(f"{path}: vocabulary has {len(vocab)} tokens but the model expects {arch.vocab_size}")
    model = AWDLSTMClassifier(arch, head)
    tensors, meta = load_tensors(path / WEIGHTS)
    _check_tie(path, meta, vocab, cfg, classifier_reads_backwards(cfg))
    load_weights(model, tensors, path / WEIGHTS)
    model.eval()
    return model, cfg, vocab


def to_json_safe(obj):
    return json.loads(json.dumps(obj, default=str))
