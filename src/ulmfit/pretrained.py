"""The language models shipped with the package (ULMFiT stage 1, done once for every user).

``general-en-fwd`` and ``general-en-bwd`` are AWD-LSTM language models pretrained on the general
English corpus described in docs/CORPUS.md, reading text forwards and backwards; their model
cards (README.md in each folder) say how they were trained. Commands that need a pretrained
model use them when no other is given.
"""

from __future__ import annotations

from pathlib import Path

from .io import UlmfitError

WEIGHTS_DIR = Path(__file__).parent / "weights"
SHIPPED = {False: "general-en-fwd", True: "general-en-bwd"}


def default_lm(backwards: bool = False) -> Path:
    """The directory of the shipped forward (or backward) language model."""
    path = WEIGHTS_DIR / SHIPPED[backwards]
    if not (path / "config.json").exists():
        raise UlmfitError(
            f"this installation has no shipped {'backward' if backwards else 'forward'} language model "
            f"({path} is missing); pass --from DIR with a model made by `ulmfit pretrain`"
        )
    return path


def export_model(src, dst, *, dtype: str = "float16", card: str | None = None, overwrite: bool = False) -> Path:
    """A copy of a trained language model without its training state, weights stored in `dtype`
    (for shipping). A `dst` that already holds files is refused unless `overwrite`."""
    import torch

    from . import checkpoint as ckpt
    from .api import require_free_out
    from .io import UlmfitError

    dst_p = Path(dst)
    require_free_out(dst_p, overwrite, "pass --overwrite to replace them, or choose another --out")
    if dst_p.exists() and Path(src).resolve() == dst_p.resolve():
        raise UlmfitError("--out must be another directory than the model exported")

    model, cfg, vocab = ckpt.load_model(src)
    from .text.tokenize import TokenizerConfig

    tok = TokenizerConfig.from_dict(cfg["tokenizer"])
    sp = Path(src) / ckpt.SPM
    extra = {k: v for k, v in cfg.items()
             if k not in ("format", "format_version", "kind", "ulmfit_version", "arch", "tokenizer", "train",
                          "history", "step")}
    extra["exported_from"] = str(Path(src).resolve())
    extra["weights_dtype"] = dtype
    if overwrite:  # the training state of a run replaced here would no longer match its weights
        for name in (ckpt.STATE_J, ckpt.STATE_T, "best.safetensors", "metrics.jsonl"):
            (dst_p / name).unlink(missing_ok=True)
    out = ckpt.save_model(dst, model, vocab=vocab, tok_cfg=tok, sp_model=str(sp) if sp.exists() else None,
                          train=cfg.get("train"), history=cfg.get("history"), step=cfg.get("step", 0),
                          dtype=getattr(torch, dtype), extra=extra)
    for name in ("metrics.jsonl",):
        if (Path(src) / name).exists():
            (Path(out) / name).write_bytes((Path(src) / name).read_bytes())
    if card:
        (Path(out) / "README.md").write_text(card, encoding="utf-8")
    return Path(out)
