"""The Python API over the same functions the CLI runs: pretrain, fine-tune, evaluate, generate.

    from ulmfit import LanguageModel
    lm = LanguageModel.load("models/my-lm")
    lm.perplexity(["some text", "more text"])
    lm.generate("The movie was", n_tokens=40)
"""

from __future__ import annotations

import functools
import json
import math
import numbers
import os
import re
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import torch

from . import checkpoint as ckpt
from .data.cache import OlderRules, build_corpus, encode_texts, load_corpus_dir, rules_of
from .data.lm import LMStream
from .io import (OUT_LOCK, FinishedRun, UlmfitError, append_jsonl, as_texts, claim_out, defaults_of, holds_files,
                 holds_out, is_real_number, is_main_process, launch_env, lock_left_behind, owns_out, read_json, refuse_if_held, warn,
                 whole_number)
from .model.awd_lstm import PRESETS, AWDLSTMConfig
from .model.awd_lstm import preset as arch_preset
from .model.heads import AWDLSTMLanguageModel
from .pretrained import resolve_model
from .text.tokenize import BOS, RULES_VERSION, SPECIAL_TOKENS, TokenizerConfig, detokenize, join_continuation
from .text.vocab import Vocab, unknown_share, unknown_warning
from .train.finetune import transfer_vocab
from .train import distributed as dist_
from .train.checks import MAX_SEED, config_from
from .train.loop import (FINETUNE_DEFAULTS, PRETRAIN_DEFAULTS, LMTrainConfig, LMTrainer, bf16_pays, evaluate_lm,
                         keeps_callers_rng)
from .train.precision import precision_line, predicts_in_bf16


def _follow_direction(model_dir, model_cfg: dict, train_cfg: LMTrainConfig, progress: bool) -> LMTrainConfig:
    """Training goes on in the direction the model reads. A backward LM trained further on forward
    text (or the reverse) would unlearn what it knew and be saved under the wrong direction, which
    the classifier then trusts; so the model's direction wins over --backwards, with a note."""
    back = ckpt.reads_backwards(model_cfg)
    if back != train_cfg.backwards:
        # a setting given that does not take effect: said without progress too, as a resume's ignored ones
        if dist_.is_main():  # once, not from every torchrun process
            _say_ignored(f"note: {model_dir} is a {'backward' if back else 'forward'} language model; training it "
                         f"on {'reversed' if back else 'forward'} text{'' if back else ' (without --backwards)'}",
                         progress)
        train_cfg = replace(train_cfg, backwards=back)
    return train_cfg


def _print(msg: str, progress: bool) -> None:
    if progress:
        print(msg, flush=True)


def _prepare_out(out: Path, resume: bool, overwrite: bool) -> None:
    """Check the output directory (every process), then create it (process 0 only). A run it
    replaces (--overwrite) keeps all its files until the new inputs have been read: see
    `_fresh_metrics`."""
    tidy_out(out)  # process 0; the others check the folder once it is done
    dist_.barrier()
    _check_out(out, resume, overwrite)
    dist_.barrier()  # nobody changes anything before everybody has checked
    if dist_.is_main():
        writable_out(out, create=not resume)
    dist_.barrier()


def writable_out(out: Path, create: bool) -> None:
    """Create --out (when `create`) and check that it takes files: a folder on a read-only mount,
    or one the user may not write to, is refused now, not at the first save after an hour of
    training."""
    probe = out / f".ulmfit-write-test-{os.getpid()}"
    try:
        if create:
            out.mkdir(parents=True, exist_ok=True)
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        probe.unlink()
    except OSError as e:
        raise UlmfitError(f"cannot write into --out {out} ({e.strerror or e}); choose a folder you can write to") from e
    claim_out(out)  # held until the training function returns (`io.owns_out`)
    if holds_out(out):  # no other run of ours writes here: the half-written saves of a killed one go
        sweep_partial_writes(out)


# What a run or a command on its model leaves in the model's folder besides the files every save
# rewrites (config.json, model.safetensors, vocab.txt): a replaced run's copies would describe the
# old model beside the new one (its evaluation report, its best epoch's weights, its training state).
RUN_FILES = ("metrics.jsonl", "best.safetensors", ckpt.STATE_J, ckpt.STATE_T, "eval_report.json",
             "eval_report.png", "lr_find.png")


# The model's own files, which every save of a run rewrites. (Its spm.model stays in place while a
# run replaces it: a model fine-tuned into its own folder reads it at its first save.)
MODEL_FILES = (ckpt.CONFIG, ckpt.WEIGHTS, ckpt.VOCAB)
# Where the files of the run that --overwrite replaces wait until the new run has its first checkpoint,
# and the file that says all of them are there (`settle_replaced`).
REPLACED, REPLACED_WHOLE = ckpt.REPLACED, "ALL_SET_ASIDE"


def clear_replaced_run(out: Path) -> None:
    """Set aside the files of the run that --overwrite replaces (other files in the folder stay),
    once the new run's inputs are read: the folder never holds files of both runs. They are
    removed once the new run has saved its first checkpoint and put back if it ends before that
    (a NaN at its first steps, a crash, Ctrl-C before anything was saved): `settle_replaced`.
    config.json goes first and a marker last, so that a stop part-way is seen and undone."""
    settle_replaced(out)  # a replacement killed (SIGKILL) before, that left its predecessor aside
    names = [n for n in (*MODEL_FILES, *RUN_FILES) if (out / n).exists()]  # config.json first
    if names:
        aside = out / REPLACED
        aside.mkdir()
        for name in names:
            os.replace(out / name, aside / name)
        (aside / REPLACED_WHOLE).touch()


def settle_replaced(out: Path) -> bool:
    """Settle the run set aside by `clear_replaced_run`. With its marker (all of it set aside): dropped
    when the new run has saved a checkpoint (config.json in `out`), else put back in place of the new
    run's partial files. Without the marker (setting aside, or putting back, was cut short): put back,
    deleting nothing. Files go back with config.json last, after the marker is gone, so a stop at any
    point leaves a state this function settles the same way next time. True when the old run came back."""
    import shutil

    out = Path(out)
    aside, dropped = out / REPLACED, out / f"{REPLACED}.dropped"
    if dropped.exists():  # dropped before, its removal cut short: nothing in it is wanted
        shutil.rmtree(dropped, ignore_errors=True)
    if aside.is_symlink() or dropped.is_symlink():  # never ulmfit's: a planted link moved another folder's
        # files into this one
        raise UlmfitError(f"{aside if aside.is_symlink() else dropped} is a link, not the folder in which ulmfit "
                          "sets a replaced run aside; remove it (the folder it points to is not touched)")
    if not aside.is_dir():
        return False
    marker = aside / REPLACED_WHOLE
    if marker.exists():
        if (out / ckpt.CONFIG).exists():  # the new run's first checkpoint: the old run goes,
            os.replace(aside, dropped)    # renamed whole first, so a stop in the removal puts nothing back
            shutil.rmtree(dropped, ignore_errors=True)
            return False
        for name in (*MODEL_FILES, *RUN_FILES):  # the new run's partial files (it saved no checkpoint)
            (out / name).unlink(missing_ok=True)
        marker.unlink()
    # the files ulmfit sets aside, and nothing else (a hand-made folder of that name holds other things)
    back = sorted((p for p in aside.iterdir() if p.name in (*MODEL_FILES, *RUN_FILES) and not p.is_symlink()),
                  key=lambda p: p.name == ckpt.CONFIG)  # config.json last
    for p in back:
        os.replace(p, out / p.name)
    try:
        aside.rmdir()
    except OSError:  # it holds other things: they stay, with the folder
        pass
    return bool(back)


def tidy_out(out: Path) -> None:
    """Process 0, before any process checks `out`: the run an interrupted --overwrite set aside comes
    back (`settle_replaced`), and what a run killed before its first checkpoint left goes
    (`_unsaved_leftovers`), with a note. Nothing else is touched."""
    if not out.is_dir() or not is_main_process():
        return
    refuse_if_held(out)  # never in a folder a live run of another process holds
    settle_replaced(out)
    left = _unsaved_leftovers(out)
    if left:
        for p in left:
            p.unlink(missing_ok=True)
        print(f"note: removed {', '.join(sorted(p.name for p in left))} from {out}: what a run killed before "
              "its first save left there", file=sys.stderr)


def _fresh_metrics(out: Path, resume: bool) -> None:
    """Clear the files of a run being replaced (process 0), once the new run's data and model are
    ready: an --overwrite run that fails on its inputs leaves the old run's files as they were."""
    if not resume and dist_.is_main():
        clear_replaced_run(out)


def require_saved_run(out: Path) -> None:
    """--resume on a folder with no checkpoint in it (a wrong path, or a run stopped before its first
    save, perhaps killed with a first metrics line or half-written files left)."""
    tidy_out(out)  # an interrupted --overwrite's predecessor comes back: it may be the run to resume
    if not out.is_dir() or not (out / ckpt.CONFIG).exists():
        raise UlmfitError(f"cannot resume: {out} holds no saved run (the run stopped before its first save, or "
                          "the path is wrong); start it again without --resume")


# What training writes into its folder, and what it alone writes there (evaluate --report and
# lr-find write their own files without holding the folder: theirs are never swept).
TRAINING_FILES = (*MODEL_FILES, ckpt.SPM, *ckpt.RUN_FILES)
# The temporary name `io.atomic_path` gives a file while it is written: .NAME.XXXXXXXX.tmp
_PARTIAL_WRITE = re.compile(r"^\.(.+)\.[A-Za-z0-9_]+\.tmp$")


def _partial_writes(out: Path) -> list[Path]:
    """The temporary files of training saves that a killed run left in `out`."""
    return [p for p in out.iterdir()
            if (m := _PARTIAL_WRITE.match(p.name)) and m.group(1) in TRAINING_FILES and p.is_file()]


def _unsaved_leftovers(out: Path) -> list[Path] | None:
    """What a run killed before its first checkpoint left in `out` (no config.json: its first metrics
    line, best.safetensors, the files of a first save cut short), when that is all the folder holds
    and the run's lock file is there, which a killed run leaves behind: files of those names in a
    folder without it are somebody else's (None: nothing to remove)."""
    if (out / ckpt.CONFIG).exists() or not lock_left_behind(out):
        return None
    partial = set(_partial_writes(out))
    left = [p for p in out.iterdir() if p.name != OUT_LOCK]
    if not left or any(p.name not in TRAINING_FILES and p not in partial for p in left):
        return None
    return left


def sweep_partial_writes(out: Path) -> None:
    """Remove the temporary files of training saves that a killed run left in `out` (this process holds
    the folder, so no live training writes them); they would stay, hidden, a checkpoint's size each."""
    for p in _partial_writes(out):
        p.unlink(missing_ok=True)


def require_free_out(out: Path, overwrite: bool, choices: str) -> None:
    """An output folder that is not a file and holds no files, unless `overwrite`; `choices` says
    what the user can do instead."""
    if out.exists() and not out.is_dir():
        raise UlmfitError(f"--out {out} is a file, not a directory")
    tidy_out(out)
    if out.exists() and holds_files(out) and not overwrite:
        raise UlmfitError(f"{out} already holds files; {choices}")


def require_path(x, what: str, hint: str = "") -> None:
    """A data argument that must be a file or folder (a list of texts here would fail deep inside)."""
    if not isinstance(x, (str, os.PathLike)):
        raise UlmfitError(f"{what} must be the path of a file or folder, not {type(x).__name__}{hint}")


IN_MEMORY_TEXTS = "texts"  # the cache's folder of texts given in memory to pretrain or finetune_lm


def texts_or_path(texts, what: str, fmt: str = "auto", column=None, *, resume: bool = False):
    """(path, fmt, column) of a language model's text: a file or folder as given, or texts in
    memory (a list, tuple, numpy array, pandas Series or generator of strings) as a file the
    commands read: JSON lines, one {"text": ...} per text, in the cache folder (`texts/`), named by
    the sha256 of its content and written once (streamed: a large list is not copied in memory).
    The same texts thus find their tokens cached again, and a run trained on them resumes without
    being given them again. With `resume`, an empty iterable (a generator that an earlier call used
    up) counts as not given."""
    import hashlib
    import tempfile

    from .io import cache_root, cache_unwritable, iter_texts

    if texts is None or isinstance(texts, (str, os.PathLike)):
        return texts, fmt, column
    if fmt not in ("auto", "jsonl") or column not in (None, "text"):
        raise UlmfitError(f"fmt and column say how to read a file; {what} given as texts in memory are read as they "
                          "are (leave fmt and column out)")
    folder = cache_root() / IN_MEMORY_TEXTS
    texts = iter_texts(texts, what)
    tmp = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        h, n, nonempty = hashlib.sha256(), 0, False
        with tempfile.NamedTemporaryFile("wb", dir=folder, prefix=".", suffix=".tmp", delete=False) as f:
            tmp = Path(f.name)
            for i, text in enumerate(texts):
                try:
                    line = (json.dumps({"text": text}, ensure_ascii=False) + "\n").encode("utf-8")
                except UnicodeEncodeError:
                    raise UlmfitError(f"{what}[{i}] holds a lone surrogate (half of a character pair, e.g. from bytes "
                                      "decoded with errors='surrogateescape'), which is not text; decode it "
                                      "properly") from None
                h.update(line)
                f.write(line)
                n, nonempty = n + 1, nonempty or bool(text.strip())
        if n == 0 and resume:
            return None, fmt, column
        if n == 0:
            raise UlmfitError(f"{what} is empty: no text (a generator that an earlier call used up gives nothing)")
        if not nonempty:
            raise UlmfitError(f"{what}: all {n:,} texts are empty or blank")
        path = folder / f"{h.hexdigest()[:24]}.jsonl"
        if not (path.is_file() and path.stat().st_size == tmp.stat().st_size):  # else kept: its tokens stay cached
            os.replace(tmp, path)
            tmp = None
        return path, "jsonl", "text"
    except OSError as e:
        raise (cache_unwritable(folder, e) or UlmfitError(f"cannot keep {what} in {folder}: {e}")) from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def _check_out_before_reading(out: Path, resume: bool, overwrite: bool, *texts) -> None:
    """Texts in memory are read once (a generator is used up): a run its folder refuses is refused
    before they are read, as `_prepare_out` would refuse it after. In one process only: under
    torchrun, process 0 tidies the folder first, and the others check it after that."""
    if launch_env()[1] == 1 and any(t is not None and not isinstance(t, (str, os.PathLike)) for t in texts):
        tidy_out(out)
        _check_out(out, resume, overwrite)


def _check_out(out: Path, resume: bool, overwrite: bool) -> None:
    if resume:
        require_saved_run(out)
        if not (out / ckpt.STATE_J).exists():
            raise UlmfitError(
                f"cannot resume: {out} holds no interrupted run ({ckpt.STATE_J} is missing). To keep training a "
                f"finished or shipped model from its weights, start a new run from it: `ulmfit finetune-lm TEXT --from "
                f"{out} --out NEW` or `ulmfit pretrain CORPUS --init-from {out} --out NEW`"
            )
        return
    require_free_out(out, overwrite, "pass --resume to continue that run, --overwrite to replace it (from Python: "
                                     "resume=True, overwrite=True), "
                                     "or choose another --out")


def is_token_cache(path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / "meta.json").is_file() and (p / "ids.bin").is_file()


def tokenize_corpus(source, out, tok_cfg: TokenizerConfig, *, fmt="auto", column=None, encoding="utf-8",
                    n_workers=None, progress=True, vocab_from=None, overwrite=False):
    """Tokenise a corpus into the folder `out` (ids.bin, offsets.npy, vocab.txt, meta.json), which
    `pretrain` accepts as its corpus: tokenise once on one machine, train on another.

    `vocab_from` (a token folder or a model directory) reuses its vocabulary and tokenizer settings,
    e.g. for a held-out validation text. A token folder of another corpus or other settings in
    `out` is refused unless `overwrite` (then replaced once the new one is complete); one of the
    same corpus and settings is reused."""
    vocab = sp = None
    if vocab_from is not None:
        vf = Path(resolve_model(vocab_from))
        if not (vf / "vocab.txt").is_file():
            raise UlmfitError(f"{vf} has no vocab.txt to reuse")
        vocab = Vocab.load(vf / "vocab.txt")
        meta = read_json(vf / "meta.json") if (vf / "meta.json").is_file() else read_json(vf / ckpt.CONFIG)
        tok_cfg = TokenizerConfig.from_dict(meta["tokenizer"])
        sp = str(vf / "spm.model") if (vf / "spm.model").is_file() else None
    data, _ = build_corpus(source, tok_cfg, fmt=fmt, column=column, encoding=encoding, cache_dir=out,
                           vocab=vocab, sp_model=sp, n_workers=n_workers, progress=progress, replace=overwrite)
    return data


def _build_corpus_once(*args, progress: bool = True, **kwargs):
    """Process 0 tokenises; the others wait and then read its cache."""
    if dist_.is_main():
        res = build_corpus(*args, progress=progress, **kwargs)
        dist_.barrier()
        return res
    dist_.barrier()
    return build_corpus(*args, progress=False, **kwargs)


def _run_tokens(out: Path, how: str, what: str, *args, **kwargs):
    """`_build_corpus_once` for the run in `out`; a resumed run whose tokens were made by earlier
    tokeniser rules and are gone is refused with how its weights can go on (`how`)."""
    try:
        return _build_corpus_once(*args, **kwargs)
    except OlderRules as e:
        raise UlmfitError(f"cannot resume {out}: {what}{e}. Its weights can go on in a new run, on tokens of these "
                          f"rules: `{how}`") from None


def _check_valid_frac(valid_frac, hint: str) -> None:
    """A language model validates on a held-out share of its text: above 0 (0 validated on a handful
    of tokens and early-stopped on them) and below 1 (1 trained on a document or two)."""
    if not is_real_number(valid_frac, 0, 1, above=True, below=True):
        raise UlmfitError(f"valid_frac (--valid-frac), the share of the text held out to validate on, must be above 0 "
                          f"and below 1, not {valid_frac!r}{hint}")


def _split(data, valid_frac: float, seed: int, max_valid_tokens: int | None):
    train, valid = data.split(valid_frac, seed, max_valid_tokens)
    return train, valid


def _streams(train, valid, cfg: LMTrainConfig):
    bs_valid = max(1, min(cfg.bs, (valid.n_tokens() - 1) // (cfg.bptt + 1)))
    train_stream = LMStream(train, cfg.bs, cfg.bptt, seed=cfg.seed, backwards=cfg.backwards,
                            variable_bptt=cfg.variable_bptt, shard=dist_.rank_world())
    valid_stream = LMStream(valid, bs_valid, cfg.bptt, seed=cfg.seed, shuffle=False, variable_bptt=False,
                            backwards=cfg.backwards)
    return train_stream, valid_stream


def _warn_few_steps(stream, n_tokens: int, cfg: LMTrainConfig, progress: bool) -> None:
    """A batch size so large for the text that an epoch is a step or two: the model barely trains
    (it said nothing, and perplexity moved from 690 to 678); the batch size suggested gives about
    10 steps an epoch."""
    steps = len(stream)
    # the benchmarks fine-tune 100 labels' text at 3-4 steps an epoch, well
    if steps < 3 and cfg.bs > 1 and dist_.is_main():
        better = max(1, n_tokens // (cfg.bptt * 10))
        warn(f"--bs {cfg.bs} splits the {n_tokens:,} training tokens into streams of about {n_tokens // cfg.bs:,} "
             f"tokens: {steps} step{'s' if steps != 1 else ''} an epoch, too few to learn much; a smaller --bs "
             f"(about {better}) or more text trains it better", progress)


def _warn_unknown(data, what: str, kind: str, progress: bool) -> None:
    """Text that the vocabulary barely covers (Chinese through the word tokeniser was 91% xxunk, and
    trained to a perplexity that looked fine): said before training."""
    if not dist_.is_main():  # process 0 speaks for a torchrun job
        return
    msg = unknown_warning(unknown_share(data.ids), what, kind)  # `data`: a whole corpus, never a split of it
    if msg:
        warn(msg, progress)


def resolve_device(device: str | None) -> torch.device:
    """'auto' (default) picks a CUDA GPU when there is one (each torchrun process its own), else the CPU."""
    local = launch_env()[2]  # torchrun: each process on a GPU of its own
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda", local % torch.cuda.device_count())
        return torch.device("cpu")
    try:
        d = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise UlmfitError(f"--device {device}: not a device PyTorch knows (auto, cpu, cuda, cuda:1, ...)") from e
    if d.type not in ("cpu", "cuda"):
        raise UlmfitError(f"--device {device}: ulmfit runs on the CPU or a CUDA GPU (auto, cpu, cuda, cuda:1, ...)")
    if d.type == "cuda" and not torch.cuda.is_available():
        raise UlmfitError(f"--device {device}: no CUDA GPU is available here")
    if d.type == "cuda" and d.index is None:  # "cuda" under torchrun: not every process on GPU 0
        d = torch.device("cuda", local % torch.cuda.device_count())
    return d


def _run(model, vocab, tok_cfg, sp_model, train_stream, valid_stream, cfg, out: Path, resume: bool,
         data_info: dict, progress: bool, extra: dict | None = None, device: str | None = None,
         plan_epochs=None) -> dict:
    extra = dict(extra or {})
    extra["data"] = data_info
    extra["tokenizer_rules"] = data_info.get("rules", RULES_VERSION)  # a resumed run keeps its tokens' rules

    def save_fn(step, history):  # the trainer's config: it holds the planned epochs, if planned
        kept = {"kept_epoch": trainer.kept_epoch} if trainer.kept_epoch else {}  # early stopping kept an earlier one
        ckpt.save_model(out, model, vocab=vocab, tok_cfg=tok_cfg, sp_model=sp_model, train=trainer.cfg.to_dict(),
                        history=history, step=step, extra={**extra, **kept})

    dev = resolve_device(device)
    model.to(dev)
    trainer = LMTrainer(model, train_stream, valid_stream, cfg, out, save_fn, device=dev, progress=progress,
                        plan_epochs=plan_epochs)
    _print(precision_line(trainer.use_bf16, cfg.bf16, dev), progress)
    if resume:
        trainer.resume()
        c = trainer.cfg
        if c.patience and trainer.bad_epochs >= c.patience:  # early stopping ended it: a finished run
            again = (f"ulmfit finetune-lm --from {out} TEXT --out NEW" if "finetuned_from" in extra else
                     f"ulmfit pretrain CORPUS --init-from {out} --out NEW")
            raise FinishedRun(f"{out} holds a finished run: it stopped early after epoch {trainer.epoch} (the validation "
                              f"loss had not improved for {trainer.bad_epochs} epoch(s)) and kept epoch "
                              f"{trainer.best_epoch}'s weights, which its saved optimizer state (of epoch "
                              f"{trainer.epoch}) does not belong to; nothing to resume. To train it further, start a new "
                              f"run from its weights: `{again}`")
        planned = ckpt.read_config(out, "language_model").get("train") or {}
        was_e, was_t = planned.get("epochs"), planned.get("max_tokens")
        # epochs count the unfrozen phase; the trainer's epoch counter includes the frozen one
        was_total = None if was_e is None else was_e + (planned.get("freeze_epochs") or 0)
        unfinished_before = ((was_total is None or trainer.epoch < was_total)
                             and not (was_t and trainer.tokens >= was_t))
        budget_changed = (was_e is not None and c.epochs != was_e) or (c.max_tokens or None) != (was_t or None)
        done_now = trainer.epoch >= trainer.total_epochs or (c.max_tokens and trainer.tokens >= c.max_tokens)
        if done_now and unfinished_before and budget_changed:
            raise UlmfitError(f"cannot resume {out} with a budget it has already used up: it has trained "
                              f"{trainer.epoch} epoch(s) and {trainer.tokens:,} tokens of the {was_total} epoch(s)"
                              + (f" and {was_t:,} tokens" if was_t else "") + " it planned; resume without "
                              "--epochs/--max-tokens to finish it as planned, or give a larger budget")
        if done_now:
            # nothing left to train: refuse before anything is written, rather than "save" untouched files
            frozen = min(c.freeze_epochs or 0, trainer.epoch)  # --epochs counts the epochs after these
            trained = f"{trainer.epoch} epoch{'s' if trainer.epoch != 1 else ''}" + (
                f": {frozen} frozen + {trainer.epoch - frozen}" if frozen else "")
            raise FinishedRun(f"{out} holds a finished run ({trained}, {trainer.tokens:,} tokens"
                              + (f" of a {c.max_tokens:,}-token budget" if c.max_tokens else "")
                              + "); nothing to resume. To train it further, resume with "
                              + ("a larger --max-tokens" if c.max_tokens and trainer.tokens >= c.max_tokens else
                                 f"--epochs above {trainer.epoch - frozen}"))
        if budget_changed and unfinished_before:
            _print(f"note: the new budget ({trainer.total_epochs} epochs"
                   + (f", {c.max_tokens:,} tokens" if c.max_tokens else "")
                   + f"; planned: {was_total}" + (f", {was_t:,} tokens" if was_t else "") + ") re-plans the learning-rate "
                   f"schedule of this unfinished run from step {trainer.step} on: its later rates differ from both "
                   "plans' uninterrupted runs", progress)
        _print(f"resuming {out} at step {trainer.step} (epoch {trainer.epoch + 1}, batch {trainer.batch})", progress)
    t0 = time.time()
    try:
        result = trainer.fit()
    finally:  # save_fn reads trainer.cfg: without this cycle the data's memory map closes on return
        trainer.save_fn = None
    result = dict(result)
    if dist_.is_main():
        for msg in lm_training_warnings(trainer.history, result.get("valid_loss"), _loss_before(out)):
            warn(msg, progress)
    result["wall_s"] = time.time() - t0
    result["out"] = str(out)
    return result


def _loss_before(out: Path) -> float | None:
    """The validation loss finetune-lm measured before it trained (the first line of its metrics)."""
    try:
        with open(out / "metrics.jsonl", encoding="utf-8") as f:
            first = json.loads(f.readline() or "{}")
    except (OSError, ValueError):
        return None
    return first.get("valid_loss") if first.get("step") == 0 and first.get("epoch") == 0 else None


def lm_training_warnings(history: list[dict], kept_loss: float | None, before_loss: float | None) -> list[str]:
    """What is wrong with the language model a run kept, seen on its held-out text: worse than the
    model fine-tuning started from, or far worse than an earlier epoch (training that diverged
    late; the last epoch is kept unless --patience stops early and keeps the best)."""
    if kept_loss is None or not math.isfinite(kept_loss):
        return []
    out = []
    if before_loss is not None and kept_loss > before_loss:
        out.append(f"fine-tuning made the language model worse on the held-out text (perplexity "
                   f"{_ppl(before_loss)} before, {_ppl(kept_loss)} now): train again with a lower --lr (and "
                   "--overwrite), or use the base model as it is")
    epochs = [h for h in history if h.get("valid_loss") is not None and "partial_epoch" not in h]
    best = min(epochs, key=lambda h: h["valid_loss"], default=None)
    if best is not None and kept_loss > best["valid_loss"] * 1.1:
        out.append(f"the model kept has a held-out perplexity of {_ppl(kept_loss)}, far above epoch "
                   f"{best['epoch']}'s {_ppl(best['valid_loss'])}: training went wrong late (--lr too high?); "
                   "--patience 1 stops there and keeps the best epoch")
    return out


def _ppl(loss: float) -> str:
    return f"{math.exp(loss):.1f}" if loss < 50 else f"e^{loss:.0f}"


def _train_cfg_from(saved: dict, overrides: dict) -> LMTrainConfig:
    """The saved training config of a run being resumed, with the budget the user extended."""
    cfg = LMTrainConfig.from_dict(saved)
    # A resumed run may extend its budget (more epochs / tokens / time); everything else must match.
    for k in ("epochs", "max_tokens", "max_minutes", "save_every_minutes"):
        if overrides.get(k) is not None:
            cfg = replace(cfg, **{k: overrides[k]})
    return cfg


def resumed_source(saved_path, given, out: Path, what: str, usage: str):
    """Where a resumed run reads its data: `given` (the data's new location, when it moved) or the
    path the run saved, which must still be there."""
    if given is not None:
        return given
    if saved_path is None or not Path(saved_path).exists():
        raise UlmfitError(f"cannot resume: {out} was trained on {what} {saved_path}, which is not there any more; "
                          f"if it moved, give its new location: {usage}")
    return saved_path


def moved_base(saved, given, out: Path, what: str, usage: str, progress: bool):
    """The model a resumed run started from (a fine-tuning's base, a classifier's language model):
    where the run saved it, or, when it is not there any more (another machine, a moved folder), the
    new place `given`; the caller checks that it is the same model (its vocabulary and tokens)."""
    if saved is None or Path(saved).is_dir():
        return saved
    if given is None:
        raise UlmfitError(f"cannot resume {out}: {what} it started from, {saved}, is not there any more; give its "
                          f"new place: {usage}")
    _print(f"note: {what} is not at {saved} any more: using {given}", progress)
    return str(given)


def check_same_data(saved: dict, n_tokens: int, n_docs: int, out: Path, source,
                    fingerprint: str | None = None) -> None:
    """A resumed LM run continues at a position in its data stream: the data must be the same (its
    counts, and the fingerprint of its tokens where the run recorded one)."""
    want = (saved.get("n_tokens"), saved.get("n_docs"))
    if None not in want and want != (n_tokens, n_docs):
        raise UlmfitError(f"cannot resume: {out} was trained on {want[0]:,} tokens in {want[1]:,} documents, "
                          f"{source} gives {n_tokens:,} in {n_docs:,}; it is not the same data")
    if saved.get("fingerprint") and fingerprint and saved["fingerprint"] != fingerprint:
        raise UlmfitError(f"cannot resume: {source} has the {n_tokens:,} tokens in {n_docs:,} documents that {out} "
                          "was trained on, but other tokens, or the documents in another order; it is not the same "
                          "data")


BUDGET_KEYS = ("epochs", "max_tokens", "max_minutes", "save_every_minutes")


def note_ignored_on_resume(given, saved_train: dict, progress: bool, kept=BUDGET_KEYS) -> list[str]:
    """Training settings passed from Python with resume=True that differ from the run's saved ones:
    the run goes on with the saved ones, and says so (the CLI does the same for its options).
    `kept`: the settings of a dict that a resumed run does take (a new budget)."""
    if given is None:
        return []
    from dataclasses import fields, is_dataclass

    if isinstance(given, dict):
        items = given.items()
    else:  # a whole config object: none of it is taken, its budget neither (a new one goes in extend=)
        items = ((f.name, getattr(given, f.name)) for f in fields(given)) if is_dataclass(given) else ()
        kept = ()
    differ = [f"{k}={v!r} (the run's: {saved_train[k]!r})" for k, v in items
              if k not in kept and k in saved_train and ckpt.to_json_safe(v) != saved_train[k]]
    if differ:
        _say_ignored("note: resume=True continues the run with its saved settings; ignored: " + ", ".join(differ),
                     progress)
    return differ


PATH_ARGS = ("valid_source", "valid", "from_dir")


def note_ignored_args(given: dict, saved: dict, progress: bool, defaults: dict) -> list[str]:
    """The data settings (file format, column, validation split, tokenizer, ...) passed from Python
    with resume=True that differ from the ones the run was started with: it goes on with its own,
    and says which of those given it ignores. An argument left at its default (`defaults`, of the
    function called) was not given."""
    differ = []
    for k, v in given.items():
        if v is None or k not in saved or _same_setting(v, defaults[k]):
            continue
        if k in PATH_ARGS and saved[k] is not None:
            same = Path(v).resolve() == Path(saved[k]).resolve()
        else:
            same = _same_setting(v, saved[k])
        if not same:
            differ.append(f"{k}={str(v) if k in PATH_ARGS else v!r} (the run's: {saved[k]!r})")
    if differ:
        _say_ignored("note: resume=True continues the run with the data settings it was started with; ignored: "
                     + ", ".join(differ), progress)
    return differ


def _say_ignored(msg: str, progress: bool) -> None:
    """Settings a resumed run ignores: printed with its progress, else a warning (progress=False
    silences progress, not the news that a setting given did not take effect)."""
    if progress:
        print(msg, flush=True)
    else:
        warn(msg.removeprefix("note: "))


def _same_setting(a, b) -> bool:
    if hasattr(a, "to_dict"):
        a = a.to_dict()
    return ckpt.to_json_safe(a) == ckpt.to_json_safe(b)


def _budget_from(given, extend: dict | None) -> dict | None:
    """A resumed run's new budget: `extend`, and the budget keys of a `train_cfg` dict given with
    resume=True (`extend` wins where both name one)."""
    if not isinstance(given, dict) or not any(k in given for k in BUDGET_KEYS):
        return extend
    return {**{k: given[k] for k in BUDGET_KEYS if k in given}, **{k: v for k, v in (extend or {}).items()
                                                                   if v is not None}}


def _resumed_run(out: Path, extend: dict | None, source=None, command: str = "pretrain"):
    """A run's saved config, its data settings (`source`, when given, is the data's new location)
    and its training config (with an extended budget)."""
    saved = ckpt.read_config(out, "language_model")
    d = saved.get("data", {})
    where = resumed_source(d.get("source"), source, out, "the text",
                           f"`ulmfit {command} NEW_PATH --resume {out}`")
    data = (where, d["fmt"], d.get("column"), d.get("encoding", "utf-8"), d["valid_frac"],
            d.get("max_valid_tokens"))
    return saved, data, _train_cfg_from(saved["train"], extend or {})


def _check_arch_overrides(preset: str, overrides) -> None:
    if not isinstance(overrides, dict):
        raise UlmfitError(f"arch_overrides must be a dict of architecture settings, not {type(overrides).__name__}")
    known = {f for f in AWDLSTMConfig.__dataclass_fields__} - {"vocab_size"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise UlmfitError(f"arch_overrides: unknown setting(s) {', '.join(map(repr, unknown))}; the architecture "
                          f"has {', '.join(sorted(known))}")
    try:
        arch_preset(preset, 1000, **{k: v for k, v in overrides.items() if k != "pad_id"})
    except (ValueError, TypeError) as e:
        raise UlmfitError(f"arch_overrides: {e}") from None


def _check_run_args(n_workers=None, device=None, drop_mult=None, **counts) -> None:
    """The arguments of a training call that are not settings of its config, checked before any
    text is read: a bad one otherwise surfaces after the tokenising (or never, on a corpus too small
    for tokenising workers). `counts`: whole numbers >= 1 or None (max_valid_tokens, max_vocab)."""
    whole_number(n_workers, "n_workers (tokeniser processes)", none=True)
    for name, v in counts.items():
        whole_number(v, name, none=True)
    if drop_mult is not None and not is_real_number(drop_mult, 0):  # its upper bound: the base model's, later
        raise UlmfitError(f"drop_mult must be a finite number >= 0, not {drop_mult!r}")
    resolve_device(device)


@keeps_callers_rng
@owns_out
def pretrain(corpus, out, *, preset: str = "small", tok_cfg: TokenizerConfig | None = None,
             train_cfg: LMTrainConfig | dict | None = None, fmt: str = "auto", column: str | None = None,
             encoding: str = "utf-8", valid_frac: float = 0.05, max_valid_tokens: int | None = 500_000,
             resume: bool = False, overwrite: bool = False, n_workers: int | None = None, progress: bool = True,
             arch_overrides: dict | None = None, extend: dict | None = None, device: str | None = None,
             valid=None, init_from=None, valid_source=None) -> dict:
    """Stage 1: train an AWD-LSTM language model from scratch on a general corpus. With `resume`,
    the interrupted run in `out` continues with its saved settings and data; `corpus`, when given,
    is that data's new location (checked to give the same tokens).

    valid: a held-out text (file, folder or token cache) to validate on instead of `valid_frac` of
    the corpus, as `--valid` (and `valid=` of train_classifier); `valid_source` is its older name.

    train_cfg: an LMTrainConfig used as it is, or a dict of settings on top of those of `ulmfit
    pretrain` (LMTrainConfig.for_pretraining()); None: those settings."""
    out, init_from = Path(out), resolve_model(init_from)
    if valid is not None and valid_source is not None:
        raise UlmfitError("give the held-out text once: valid= (valid_source= is its older name)")
    valid_source = valid if valid is not None else valid_source
    # every argument is checked before texts in memory are read (a generator used up, a copy cached)
    _check_run_args(n_workers, device, max_valid_tokens=max_valid_tokens)
    given_cfg = train_cfg
    train_cfg = config_from(LMTrainConfig, train_cfg, PRETRAIN_DEFAULTS)
    if not resume and init_from is None and preset not in PRESETS:
        raise UlmfitError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    if arch_overrides and not resume and init_from is None:  # checked before hours of tokenising
        _check_arch_overrides(preset, arch_overrides)
    if not resume and valid_source is None:
        _check_valid_frac(valid_frac, "; --valid FILE (valid=) validates on another text")
    _check_out_before_reading(out, resume, overwrite, corpus, valid_source)
    corpus, fmt, column = texts_or_path(corpus, "the corpus", fmt, column, resume=resume)
    valid_source = texts_or_path(valid_source, "the held-out text", resume=resume)[0]
    if corpus is not None or not resume:
        require_path(corpus, "the corpus")
    dist_.init_from_env(device)
    progress = progress and dist_.is_main()
    _prepare_out(out, resume, overwrite)
    if resume:
        given_data = dict(fmt=fmt, column=column, encoding=encoding, valid_frac=valid_frac,
                          max_valid_tokens=max_valid_tokens, valid_source=valid_source, tok_cfg=tok_cfg)
        saved, (corpus, fmt, column, encoding, valid_frac, max_valid_tokens), train_cfg = _resumed_run(
            out, _budget_from(given_cfg, extend), corpus, "pretrain")
        note_ignored_on_resume(given_cfg, saved["train"], progress)
        note_ignored_args(given_data, {**saved.get("data", {}), "tok_cfg": saved.get("tokenizer")}, progress,
                          PRETRAIN_ARGS)
        valid_source = saved["data"].get("valid_source")
        tok_cfg = TokenizerConfig.from_dict(saved["tokenizer"])
    tok_cfg = tok_cfg or TokenizerConfig()
    init = None
    run_vocab = run_sp = None
    if resume and "continued_from" in saved:  # its text was tokenised with the vocabulary it continued from
        run_vocab = Vocab.load(out / ckpt.VOCAB)
        run_sp = str(out / ckpt.SPM) if (out / ckpt.SPM).exists() and saved.get("tokenizer", {}).get("kind") == \
            "subword" else None
    if init_from is not None and not resume:  # continue pretraining a model (e.g. the shipped one) on more text
        init = ckpt.load_model(init_from)
        tok_cfg = TokenizerConfig.from_dict(init[1]["tokenizer"])
        train_cfg = _follow_direction(init_from, init[1], train_cfg, progress)
        init_sp = Path(init_from) / ckpt.SPM if tok_cfg.kind == "subword" else None  # a word model has none
    rules = rules_of(saved["data"]) if resume else RULES_VERSION  # a resumed run keeps its tokens
    valid_rules = int(saved["data"].get("valid_rules") or rules) if resume else RULES_VERSION
    if is_token_cache(corpus):  # tokenised already (`ulmfit corpus tokenize`): no tokeniser needed here
        data = load_corpus_dir(corpus)
        info, fmt = data.sp_model, "token-cache"
        meta = read_json(Path(corpus) / "meta.json")
        tok_cfg, rules = TokenizerConfig.from_dict(meta["tokenizer"]), rules_of(meta)
        _print(f"using the tokenised corpus {corpus}", progress)
        if rules != RULES_VERSION and not resume:
            _print(f"note: {corpus} was tokenised by the rules of an earlier ulmfit (version {rules}; this one has "
                   f"{RULES_VERSION}): text tokenised now (--valid, fine-tuning, prediction) may differ a little; "
                   "`ulmfit corpus tokenize ... --overwrite` makes it again with these", progress)
    else:
        data, info = _run_tokens(out, f"ulmfit pretrain CORPUS --init-from {out} --out NEW", "",
                                 corpus, tok_cfg, fmt=fmt, column=column, encoding=encoding, n_workers=n_workers,
                                 progress=progress, vocab=init[2] if init else run_vocab,
                                 sp_model=str(init_sp) if init and init_sp and init_sp.exists() else run_sp, rules=rules)
    vocab, sp_model = data.vocab, info
    fingerprint = data.fingerprint()  # recorded with the run, and compared when it resumes
    if init is not None and vocab.itos != init[2].itos:
        raise UlmfitError(f"the corpus was tokenised with another vocabulary than {init_from}; tokenise it with "
                          f"`ulmfit corpus tokenize ... --vocab-from {init_from}`")
    if resume:
        check_same_data(saved["data"], data.n_tokens(), data.n_docs(), out, corpus, fingerprint)
        model, _, saved_vocab = ckpt.load_model(out)
        if saved_vocab.itos != vocab.itos:
            raise UlmfitError(f"the corpus now gives a different vocabulary than {out} was trained with")
        model.train()
    elif init is not None:
        torch.manual_seed(train_cfg.seed)
        model = init[0].train()
        _print(f"continuing from the weights of {init_from} (a new optimizer and schedule)", progress)
    else:
        torch.manual_seed(train_cfg.seed)  # the initial weights, like everything else, follow the seed
        model = AWDLSTMLanguageModel(arch_preset(preset, len(vocab), **(arch_overrides or {})))
    if valid_source is not None:  # an explicit held-out text (one the training corpus can never leak into)
        if is_token_cache(valid_source):
            valid = load_corpus_dir(valid_source)
            if valid.vocab.itos != vocab.itos:
                raise UlmfitError(f"{valid_source} was tokenised with another vocabulary than the corpus")
        else:
            # its own rules: a new run on an older token folder tokenises --valid with today's
            valid, _ = _run_tokens(out, f"ulmfit pretrain CORPUS --init-from {out} --out NEW",
                                   f"the held-out text {valid_source}: ", valid_source, tok_cfg, vocab=vocab,
                                   sp_model=sp_model, n_workers=n_workers, progress=progress, rules=valid_rules)
        train = data
    else:
        train, valid = _split(data, valid_frac, train_cfg.seed, max_valid_tokens)
    _print(f"corpus: {data.n_tokens():,} tokens in {data.n_docs():,} documents; vocabulary {len(vocab):,}; "
           f"training on {train.n_tokens():,}, validating on {valid.n_tokens():,}", progress)
    _print(f"model: {sum(p.numel() for p in model.parameters()):,} parameters "
           f"({model.cfg.emb_size}/{model.cfg.hidden_size}/{model.cfg.n_layers})", progress)
    ts, vs = _streams(train, valid, train_cfg)
    if not resume:
        _warn_unknown(data, "the corpus", tok_cfg.kind, progress)
        _warn_few_steps(ts, train.n_tokens(), train_cfg, progress)
    info_d = {"source": str(Path(corpus).resolve()), "fmt": fmt, "column": column, "encoding": encoding,
              "valid_frac": valid_frac, "max_valid_tokens": max_valid_tokens, "n_tokens": data.n_tokens(),
              "n_docs": data.n_docs(), "fingerprint": fingerprint, "valid_tokens": valid.n_tokens(),
              "valid_source": str(Path(valid_source).resolve()) if valid_source is not None else None,
              "rules": rules, "valid_rules": valid_rules}
    extra = {}
    if init is not None:  # the earlier runs stay on record in the new model's config
        extra = {"continued_from": str(Path(init_from).resolve()),
                 "earlier_runs": init[1].get("earlier_runs", []) + [{"train": init[1].get("train"),
                                                                      "history": init[1].get("history", [])[-1:],
                                                                      "data": init[1].get("data")}]}
    elif resume:
        saved_cfg = ckpt.read_config(out, "language_model")
        extra = {k: saved_cfg[k] for k in ("continued_from", "earlier_runs") if k in saved_cfg}
    if init is not None and sp_model is None and init_sp is not None and init_sp.exists():
        sp_model = str(init_sp)
    _fresh_metrics(out, resume)
    res = _run(model, vocab, tok_cfg, sp_model, ts, vs, train_cfg, out, resume, info_d, progress, extra,
               device=device)
    return res


PRETRAIN_ARGS = defaults_of(pretrain)  # its defaults as defined (a caller may wrap or replace the name)


KEEP_BASE_VOCAB_BELOW = 100_000  # target-text tokens under which "auto" keeps the whole pretrained vocabulary


def with_base_words(data, base_vocab: Vocab):
    """`data` with the words of `base_vocab` that its vocabulary lacks appended to it (the ids of
    the corpus stay valid: the new words come after all of its own)."""
    own = data.vocab.stoi
    extra = [w for w in base_vocab.itos if w not in own]
    if not extra:
        return data
    return replace(data, vocab=Vocab(data.vocab.itos + extra))


@keeps_callers_rng
@owns_out
def finetune_lm(from_dir, texts, out, *, train_cfg: LMTrainConfig | dict | None = None, fmt: str = "auto",
                column: str | None = None, encoding: str = "utf-8", valid_frac: float = 0.1,
                max_valid_tokens: int | None = 200_000, resume: bool = False, overwrite: bool = False,
                n_workers: int | None = None, progress: bool = True, drop_mult: float | None = None,
                extend: dict | None = None, device: str | None = None, keep_base_vocab: str = "auto",
                max_vocab: int | None = None, plan_epochs=None) -> dict:
    """Stage 2: fine-tune a pretrained LM on the target task's text (discriminative rates + STLR,
    with a first epoch that trains only the embedding/decoder so new words get vectors).

    train_cfg: an LMTrainConfig used as it is, or a dict of settings on top of those of `ulmfit
    finetune-lm` (LMTrainConfig.for_finetuning(): the frozen first epoch, 3 more, early stopping);
    None: those settings. An LMTrainConfig made from scratch has none of them (no frozen epoch).

    keep_base_vocab (word-level models): "yes" keeps every word of the pretrained vocabulary, also
    those absent from the target text, so a classifier trained from this LM still knows them at
    prediction time; "no" keeps only the target text's words; "auto" (default) keeps them all when
    the target text has fewer than KEEP_BASE_VOCAB_BELOW tokens (a few hundred labeled texts miss
    most of the words their test texts use; a large text covers them, and the extra rows would
    only slow its decoder down).

    max_vocab (word-level models): the cap on the fine-tuned vocabulary; default: the pretrained
    model's own cap. A large target text (millions of tokens, many names and terms of its own) can
    have more words seen min_freq times than that; a larger cap gives them ids instead of xxunk,
    at the cost of a larger decoder (slower fine-tuning).

    plan_epochs (a function of the frozen epoch's wall time in seconds, returning the number of
    unfrozen epochs, at most train_cfg.epochs): fits the run to a time budget once the machine's
    speed is known (see LMTrainer); `ulmfit demo` uses it."""
    if keep_base_vocab not in ("auto", "yes", "no"):
        raise UlmfitError(f"keep_base_vocab must be auto, yes or no, not {keep_base_vocab!r}")
    out = Path(out)
    _check_run_args(n_workers, device, drop_mult, max_valid_tokens=max_valid_tokens, max_vocab=max_vocab)
    given_cfg = train_cfg  # checked before texts in memory are read (a generator used up, a copy cached)
    train_cfg = config_from(LMTrainConfig, train_cfg, FINETUNE_DEFAULTS)
    _check_out_before_reading(out, resume, overwrite, texts)
    texts, fmt, column = texts_or_path(texts, "the target text", fmt, column, resume=resume)
    if texts is not None or not resume:
        require_path(texts, "the target text")
    if isinstance(texts, (str, os.PathLike)) and is_token_cache(texts):
        try:
            source = read_json(Path(texts) / "meta.json").get("source")
        except (UlmfitError, AttributeError):
            source = None
        raise UlmfitError(f"{texts} is a token folder (`ulmfit corpus tokenize`): finetune-lm builds the target "
                          "text's vocabulary itself, with the base model's tokeniser, so give it the text"
                          + (f" ({source})" if source else "") + " instead; pretrain reads token folders")
    if not resume:
        _check_valid_frac(valid_frac, "")
    from_dir = resolve_model(from_dir)
    if from_dir is None and not resume:  # as `ulmfit finetune-lm` without --from
        from .pretrained import default_lm

        from_dir = default_lm(train_cfg.backwards)
    dist_.init_from_env(device)
    progress = progress and dist_.is_main()
    _prepare_out(out, resume, overwrite)
    if resume:
        given_data = dict(fmt=fmt, column=column, encoding=encoding, valid_frac=valid_frac,
                          max_valid_tokens=max_valid_tokens, from_dir=from_dir, max_vocab=max_vocab,
                          keep_base_vocab=keep_base_vocab)
        saved, (texts, fmt, column, encoding, valid_frac, max_valid_tokens), train_cfg = _resumed_run(
            out, _budget_from(given_cfg, extend), texts, "finetune-lm")
        base_dir = moved_base(saved.get("finetuned_from"), from_dir, out, "the base model",
                              f"`ulmfit finetune-lm --from NEW_PLACE --resume {out}`", progress)
        if base_dir != saved.get("finetuned_from"):
            given_data.pop("from_dir")  # its new place, taken
        note_ignored_on_resume(given_cfg, saved["train"], progress)
        note_ignored_args(given_data,
                          {**saved.get("data", {}), "max_vocab": saved.get("tokenizer", {}).get("max_vocab"),
                           "from_dir": saved.get("finetuned_from"), "keep_base_vocab": saved.get("keep_base_vocab")},
                          progress, FINETUNE_ARGS)
        from_dir = base_dir  # the same tokens are checked below (the data's fingerprint)
    base, base_cfg, base_vocab = ckpt.load_model(from_dir)
    if not resume:  # a resumed run goes on in the direction it was started in
        train_cfg = _follow_direction(from_dir, base_cfg, train_cfg, progress)
    tok_cfg = TokenizerConfig.from_dict(base_cfg["tokenizer"])
    base_sp = Path(from_dir) / ckpt.SPM if tok_cfg.kind == "subword" else None
    if resume:  # the cap the interrupted run used (its saved tokenizer settings)
        max_vocab = saved.get("tokenizer", {}).get("max_vocab")
    if max_vocab is not None and max_vocab != tok_cfg.max_vocab:
        if tok_cfg.kind == "subword":
            raise UlmfitError("max_vocab applies to word-level models; a subword model keeps its pretrained pieces")
        if max_vocab <= len(SPECIAL_TOKENS):
            raise UlmfitError(f"max_vocab must be larger than the {len(SPECIAL_TOKENS)} special tokens, not {max_vocab}")
        tok_cfg = replace(tok_cfg, max_vocab=max_vocab)
    # Word level: the target text gets its own vocabulary: every word of it that the pretrained
    # model knows (a word seen once in 100 labeled texts still has its pretrained vector), and new
    # words seen min_freq times. Subword: the pretrained pieces are kept.
    word = tok_cfg.kind != "subword"
    rules = rules_of(saved["data"]) if resume else RULES_VERSION  # a resumed run keeps its tokens
    data, info = _run_tokens(out, f"ulmfit finetune-lm TEXT --from {out} --out NEW", "",
                             texts, tok_cfg, fmt=fmt, column=column, encoding=encoding,
                             vocab=None if word else base_vocab, keep=base_vocab if word else None,
                             sp_model=str(base_sp) if base_sp else None, n_workers=n_workers, progress=progress,
                             rules=rules)
    if resume:
        keep_base_vocab = saved.get("keep_base_vocab", "no")
    if word and (keep_base_vocab == "yes" or (keep_base_vocab == "auto" and data.n_tokens() < KEEP_BASE_VOCAB_BELOW)):
        keep_base_vocab = "yes"
        data = with_base_words(data, base_vocab)
    else:
        keep_base_vocab = "no"
    vocab = data.vocab
    fingerprint = data.fingerprint()  # recorded with the run, and compared when it resumes
    arch = base.cfg
    if drop_mult is not None:
        try:
            arch = replace(arch, drop_mult=drop_mult)
        except ValueError as e:
            raise UlmfitError(f"drop_mult: {e}") from None
    arch = replace(arch, vocab_size=len(vocab))
    torch.manual_seed(train_cfg.seed)
    model = AWDLSTMLanguageModel(arch)
    sd = {k: v for k, v in base.state_dict().items() if not k.startswith(("encoder.embedding", "decoder."))}
    model.load_state_dict(sd, strict=False)
    w, b, found = transfer_vocab(base.encoder.embedding.weight.data, base_vocab.itos, vocab.itos,
                                 base.decoder.decoder.bias.data)
    with torch.no_grad():
        model.encoder.embedding.weight.copy_(w)
        model.decoder.decoder.bias.copy_(b)
    if resume:
        check_same_data(saved["data"], data.n_tokens(), data.n_docs(), out, texts, fingerprint)
        model, _, saved_vocab = ckpt.load_model(out)
        if saved_vocab.itos != vocab.itos:
            raise UlmfitError(f"the target text now gives a different vocabulary than {out} was trained with")
        model.train()
    train, valid = _split(data, valid_frac, train_cfg.seed, max_valid_tokens)
    _print(f"target text: {data.n_tokens():,} tokens in {data.n_docs():,} documents; vocabulary {len(vocab):,} "
           f"({found:,} known to the pretrained model, {len(vocab) - found:,} new, started at the mean vector)",
           progress)
    ts, vs = _streams(train, valid, train_cfg)
    if not resume:
        _warn_unknown(data, "the target text", tok_cfg.kind, progress)
        _warn_few_steps(ts, train.n_tokens(), train_cfg, progress)
    _fresh_metrics(out, resume)
    if not resume and dist_.is_main():
        before = evaluate_lm(model, vs, train_cfg.bf16 and bf16_pays())
        _print(f"before fine-tuning: valid perplexity {before['perplexity']:.2f}", progress)
        append_jsonl(out / "metrics.jsonl", {"step": 0, "epoch": 0, **{f"valid_{k}": v for k, v in before.items()}})
    info_d = {"source": str(Path(texts).resolve()), "fmt": fmt, "column": column, "encoding": encoding,
              "valid_frac": valid_frac, "max_valid_tokens": max_valid_tokens, "n_tokens": data.n_tokens(),
              "n_docs": data.n_docs(), "fingerprint": fingerprint, "rules": rules}
    extra = {"finetuned_from": str(Path(from_dir).resolve()), "keep_base_vocab": keep_base_vocab,
             "vocab_transfer": {"known": found, "new": len(vocab) - found}}
    res = _run(model, vocab, tok_cfg, str(base_sp) if base_sp else None, ts, vs, train_cfg, out, resume,
               info_d, progress, extra, device=device, plan_epochs=plan_epochs)
    return res


FINETUNE_ARGS = defaults_of(finetune_lm)


def _in_memory_corpus(arrays, vocab: Vocab):
    import numpy as np

    from .data.cache import TokenIds

    arrays = [np.asarray(a, dtype=np.int64) for a in arrays if len(a)]
    if not arrays:
        raise UlmfitError("no text to evaluate")
    lengths = np.array([len(a) for a in arrays], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return TokenIds(np.concatenate(arrays), offsets, vocab)


def _one_call_at_a_time(fn):
    """The model carries its hidden state from batch to batch (evaluate, generate): two threads at
    once mixed each other's (4 threads gave other samples for the same seed, other losses, no error)."""
    @functools.wraps(fn)
    def run(self, *args, **kwargs):
        with self._busy:
            return fn(self, *args, **kwargs)
    return run


class LanguageModel:
    """A trained AWD-LSTM language model loaded from its directory (pickle-free)."""

    def __init__(self, model: AWDLSTMLanguageModel, config: dict, vocab: Vocab, path: Path):
        self._busy = threading.RLock()
        self.model, self.config, self.vocab, self.path = model, config, vocab, Path(path)
        self.tok_cfg = TokenizerConfig.from_dict(config["tokenizer"])
        self.sp_model = str(self.path / ckpt.SPM) if self.tok_cfg.kind == "subword" else None
        self.backwards = ckpt.reads_backwards(config)

    def __repr__(self) -> str:
        a = self.model.cfg
        return (f"LanguageModel({str(self.path)!r}: AWD-LSTM {a.emb_size}/{a.hidden_size}/{a.n_layers}, "
                f"{len(self.vocab):,} tokens ({self.tok_cfg.kind}), {'backward' if self.backwards else 'forward'}, "
                f"on {next(self.model.parameters()).device})")

    @classmethod
    def load(cls, path, device: str | None = None) -> "LanguageModel":
        """A language model directory. `device`: "auto" (default: a CUDA GPU when there is one,
        else the CPU), "cpu", "cuda", "cuda:1"."""
        dev, path = resolve_device(device), resolve_model(path)
        with torch.random.fork_rng(devices=[]):  # building the model draws initial weights: not from the caller's
            model, cfg, vocab = ckpt.load_model(path)
        note = ckpt.older_rules_note(path, cfg)
        if note:
            warn(note)
        return cls(model.to(dev), cfg, vocab, Path(path))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def corpus(self, source, *, fmt="auto", column=None, encoding="utf-8", n_workers=None, progress=False):
        """A text file or folder tokenised for this model (cached), or a folder `ulmfit corpus
        tokenize --vocab-from` wrote for it: its ids are used as they are, if they are this model's."""
        if is_token_cache(source):
            data = load_corpus_dir(source)
            if data.vocab.itos != self.vocab.itos:
                raise UlmfitError(f"{source} holds tokens of another vocabulary than this model's; make them with "
                                  f"`ulmfit corpus tokenize TEXT --out DIR --vocab-from MODEL`, or give the text itself")
            return data
        data, _ = build_corpus(source, self.tok_cfg, fmt=fmt, column=column, encoding=encoding, vocab=self.vocab,
                               sp_model=self.sp_model, n_workers=n_workers, progress=progress)
        return data

    def encode(self, texts: list[str]):
        """Token ids of each text (a list of texts; each starts with xxbos)."""
        return encode_texts(as_texts(texts), self.tok_cfg, self.vocab, self.sp_model)

    @_one_call_at_a_time
    def evaluate(self, texts=None, *, source=None, fmt="auto", column=None, encoding="utf-8", bs: int = 16,
                 bptt: int = 70, progress: bool = False) -> dict:
        """Perplexity, loss and next-token accuracy on texts (a list) or a corpus file/folder."""
        whole_number(bs, "bs (the batch size)"), whole_number(bptt, "bptt")  # before reading the texts
        if source is not None:
            require_path(source, "source", "; texts in memory go in `texts`")
            data = self.corpus(source, fmt=fmt, column=column, encoding=encoding, progress=progress)
        elif texts is None:
            raise UlmfitError("give the texts to evaluate on (a list), or source= (a file or folder)")
        else:
            data = _in_memory_corpus(self.encode(as_texts(texts)), self.vocab)
        bs, bptt = int(bs), int(bptt)
        if data.n_tokens() < 3:  # a text of one word: xxbos and the word, nothing to predict from it
            raise UlmfitError(f"the text has {data.n_tokens()} tokens, too few to measure a perplexity "
                              "(at least 3: the text's start marker and two words)")
        bs = max(1, min(bs, (data.n_tokens() - 1) // (bptt + 1)))
        stream = LMStream(data, bs, bptt, shuffle=False, variable_bptt=False, backwards=self.backwards)
        res = evaluate_lm(self.model, stream, predicts_in_bf16(self.config, self.device), progress=progress)
        # a perplexity over text that is mostly xxunk (one "word" the model predicts easily) looks fine
        res["unk_share"] = unknown_share(data.ids)
        return res

    def perplexity(self, texts: list[str]) -> float:
        return self.evaluate(texts)["perplexity"]

    @_one_call_at_a_time
    @torch.no_grad()
    def generate(self, prompt: str, n_tokens: int = 50, temperature: float = 0.8, top_k: int | None = 50,
                 seed: int | None = None) -> str:
        """Continue `prompt` by sampling (a sanity look at what the model learned)."""
        if self.backwards:
            raise UlmfitError("this is a backward language model; it reads text right to left and cannot continue a prompt")
        if not isinstance(prompt, str):
            raise UlmfitError(f"the prompt must be a string, not {type(prompt).__name__}")
        if not is_real_number(temperature, 0, above=True):
            raise UlmfitError(f"temperature must be a finite number > 0, not {temperature!r}")
        temperature = float(temperature)  # a Python int would reach PyTorch as an int64, and 2**64 overflow there
        if isinstance(n_tokens, bool) or not isinstance(n_tokens, numbers.Integral) or n_tokens < 0:
            raise UlmfitError(f"n_tokens must be a whole number >= 0, not {n_tokens!r}")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 0):
            raise UlmfitError(f"top_k must be a whole number >= 0 (0 or None: no cut-off), not {top_k!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)
                                 or not 0 <= seed <= MAX_SEED):
            raise UlmfitError(f"seed must be a whole number from 0 to 2**63 - 1 (or None), not {seed!r}")
        g = torch.Generator().manual_seed(int(seed)) if seed is not None else None  # a numpy integer too
        ids = [int(i) for i in self.encode([prompt])[0]] if prompt.strip() else [self.vocab.stoi[BOS]]
        self.model.eval()
        self.model.reset()
        # Case markers are fine to sample; the other markers would only clutter a sanity look.
        dev = self.device
        banned = torch.tensor([self.vocab.stoi[t] for t in SPECIAL_TOKENS if t not in ("xxmaj", "xxup")])
        logits = self.model(torch.tensor([ids], device=dev))[0, -1].cpu()
        out = []
        for _ in range(n_tokens):
            logits = logits.float() / temperature
            logits[banned] = -float("inf")
            if top_k:
                kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
                logits[logits < kth] = -float("inf")
            nxt = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=g))
            out.append(nxt)
            logits = self.model(torch.tensor([[nxt]], device=dev))[0, -1].cpu()
        self.model.reset()
        # the prompt as typed (its tokens would show words the vocabulary lacks as xxunk), then the sample;
        # a first piece that starts no word (no ▁) goes on with the prompt's last word
        pieces = self.vocab.textify(out)
        subword = (self.config.get("tokenizer") or {}).get("kind") == "subword"
        glue = bool(subword and pieces and prompt.strip() and not pieces[0].startswith("\u2581")
                    and pieces[0] not in SPECIAL_TOKENS)
        return join_continuation(prompt, detokenize(pieces, subword), glue)


def lm_eval(model_dir, texts, *, fmt="auto", column=None, encoding="utf-8", bs=16, bptt=70, progress=True,
            device: str | None = None) -> dict:
    lm = LanguageModel.load(model_dir, device)
    res = lm.evaluate(source=texts, fmt=fmt, column=column, encoding=encoding, bs=bs, bptt=bptt, progress=progress)
    res["bits_per_token"] = res["loss"] / math.log(2)
    msg = unknown_warning(res["unk_share"], str(texts), lm.tok_cfg.kind, fixed_vocab=True)
    if msg:
        warn(msg + "; its perplexity says little", progress)
    return res
