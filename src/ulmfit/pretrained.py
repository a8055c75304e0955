"""The language models shipped with the package (ULMFiT stage 1, done once for every user).

``general-en-fwd`` and ``general-en-bwd`` are AWD-LSTM language models pretrained on the general
English corpus described in docs/CORPUS.md, reading text forwards and backwards; their model
cards (README.md in each folder) say how they were trained. Commands that need a pretrained
model use them when no other is given.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .io import UlmfitError

WEIGHTS_DIR = Path(__file__).parent / "weights"
SHIPPED = {False: "general-en-fwd", True: "general-en-bwd"}


def resolve_model(value):
    """A model argument as given: a folder, or the name of a shipped model ("general-en-fwd",
    "general-en-bwd"), which lives inside the installed package. A folder of that name in the
    working directory wins; anything else comes back unchanged."""
    if isinstance(value, str) and value in SHIPPED.values() and not Path(value).exists():
        return WEIGHTS_DIR / value
    return value


def default_lm(backwards: bool = False) -> Path:
    """The directory of the shipped forward (or backward) language model."""
    path = WEIGHTS_DIR / SHIPPED[backwards]
    if not (path / "config.json").exists():
        raise UlmfitError(
            f"this installation has no shipped {'backward' if backwards else 'forward'} language model "
            f"({path} is missing); pass --from DIR with a model made by `ulmfit pretrain`"
        )
    return path


_STANDARD_KEYS = ("format", "format_version", "kind", "ulmfit_version", "arch", "tokenizer", "train", "history",
                  "step")


def export_model(src, dst, *, dtype: str = "float16", card: str | None = None, overwrite: bool = False) -> Path:
    """A copy of a trained language model, classifier, or folder of classifiers (an ensemble)
    without the training state kept for resuming, weights stored in `dtype` (for shipping or
    deployment: `predict` and `evaluate` need only this). A `dst` that already holds files is
    refused unless `overwrite`."""
    from . import checkpoint as ckpt
    from .api import require_free_out
    from .io import UlmfitError

    src_p, dst_p = ckpt.model_path(src), Path(dst)
    require_free_out(dst_p, overwrite, "pass --overwrite to replace them, or choose another --out")
    if dst_p.exists() and src_p.resolve() == dst_p.resolve():
        raise UlmfitError("--out must be another directory than the model exported")
    if dtype not in ("float16", "bfloat16", "float32"):
        raise UlmfitError(f"dtype must be float16, bfloat16 or float32, not {dtype!r}")
    if (src_p / ckpt.CONFIG).exists():
        kind = ckpt.read_config(src_p).get("kind")
        if kind not in ("language_model", "classifier"):
            raise UlmfitError(f"{src_p} holds a {kind}; export takes a language model or a classifier")
        jobs = [(src_p, dst_p, kind)]
        members_there = [p for p in sorted(dst_p.iterdir()) if p.is_dir() and (p / ckpt.CONFIG).exists()] \
            if dst_p.is_dir() else []
        if members_there:  # a model at the top would hide them, and they would stay beside it
            raise UlmfitError(f"{dst_p} holds the models of an ensemble ({members_there[0].name}/, ...); "
                              "choose another --out")
    else:  # a folder of classifiers (fwd/, bwd/): each member goes to the same name under dst
        from .classifier_api import TextClassifier

        members = TextClassifier.member_dirs(src_p)
        jobs = [(m, dst_p / m.name, "classifier") for m in members]
        for m in members:
            if ckpt.read_config(m).get("kind") != "classifier":
                raise UlmfitError(f"{m} is not a classifier: a folder exported as an ensemble holds only classifiers")
        if dst_p.is_dir():  # what `--overwrite` would leave behind and the ensemble would then read
            stale = [p for p in sorted(dst_p.iterdir())
                     if p.is_dir() and (p / ckpt.CONFIG).exists() and p.name not in {m.name for m in members}]
            if stale:
                raise UlmfitError(f"{dst_p} holds the classifier {stale[0].name}/, which is not a member of "
                                  f"{src_p}: it would join the exported ensemble; choose another --out")
    from .io import refuse_if_held

    for s, d, kind in jobs:  # all checked before any is written
        if d.resolve() == s.resolve() or s.resolve() in d.resolve().parents:
            raise UlmfitError("--out must be another directory than the model exported")
        refuse_if_held(d)  # a member folder a run trains into
    if len(jobs) > 1 or jobs[0][1] != dst_p:  # an ensemble
        if overwrite and dst_p.is_dir():  # a single model's files at the top would hide the members from every loader
            ckpt.remove_run_files(dst_p, ckpt.CONFIG, ckpt.WEIGHTS, ckpt.VOCAB, ckpt.SPM)
    for s, d, kind in jobs:
        _export_one(s, d, kind, dtype, overwrite)
    if card:
        (dst_p / "README.md").write_text(card, encoding="utf-8")
    return dst_p


def _export_one(src: Path, dst: Path, kind: str, dtype: str, overwrite: bool) -> None:
    import torch

    from . import checkpoint as ckpt
    from .text.tokenize import TokenizerConfig

    torch_dtype = getattr(torch, dtype)
    with torch.random.fork_rng(devices=[]):  # building the model draws initial weights: not the caller's
        model, cfg, vocab = (ckpt.load_model if kind == "language_model" else ckpt.load_classifier)(src)
    from .io import out_in_use

    who = out_in_use(src)
    if who and who != "this process":
        print(f"warning: {src} is still being trained ({who}); the export holds the weights of its last "
              "checkpoint", file=sys.stderr)
    elif kind == "classifier":
        unfinished = _unfinished_classifier(src, cfg)
        if unfinished:
            print(f"warning: {src} {unfinished}; the export holds the weights of its last checkpoint",
                  file=sys.stderr)
    tok = TokenizerConfig.from_dict(cfg["tokenizer"])
    sp = src / ckpt.SPM
    sp_model = None  # a word-level model has none: a file of that name beside it is not part of it
    if tok.kind == "subword":
        if sp.is_symlink() or not sp.is_file():  # never a link: its target (anywhere) would be exported
            raise UlmfitError(f"{sp} is {'a link' if sp.is_symlink() else 'not a file'}; a subword model's "
                              "SentencePiece model is a file of its own folder")
        sp_model = str(sp)
    extra = {k: v for k, v in cfg.items() if k not in _STANDARD_KEYS}
    extra["exported_from"] = str(src.resolve())
    extra["tokenizer_rules"] = cfg.get("tokenizer_rules")  # None: saved before the rules were recorded, unknown
    extra["weights_dtype"] = dtype
    if overwrite:
        ckpt.remove_run_files(dst)
    common = dict(vocab=vocab, tok_cfg=tok, sp_model=sp_model, train=cfg.get("train"), history=cfg.get("history"),
                  step=cfg.get("step", 0))
    if kind == "language_model":
        ckpt.save_model(dst, model, dtype=torch_dtype, extra=extra, **common)
    else:
        extra.pop("labels", None), extra.pop("head", None)
        weights = {k: v.to(torch_dtype) if v.is_floating_point() else v
                   for k, v in ckpt._unique_state_dict(model).items()}
        ckpt.save_classifier(dst, weights, arch=cfg["arch"], head=cfg["head"], labels=cfg["labels"], extra=extra,
                             **common)
    metrics = src / "metrics.jsonl"
    if metrics.is_file() and not metrics.is_symlink():  # a link's target is not the run's log
        (dst / "metrics.jsonl").write_bytes(metrics.read_bytes())


def _unfinished_classifier(src: Path, cfg: dict) -> str | None:
    """What is left of an interrupted classifier run in `src` (None: finished, or no record)."""
    from . import checkpoint as ckpt
    from .io import read_json

    state_p = src / ckpt.STATE_J
    if not state_p.exists():
        return None
    try:
        state = read_json(state_p)
        stages = len((cfg.get("train") or {}).get("stage_groups") or [])
        stage = int(state.get("stage", stages))
    except Exception:  # a damaged record says nothing either way; the weights were checked on loading
        return None
    if stages and stage < stages:
        return f"is a classifier run that has not finished (interrupted in stage {stage + 1} of {stages})"
    return None
