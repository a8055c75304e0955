"""ULMFiT stage 3 from Python: train a classifier on a fine-tuned LM, evaluate it, predict with it.

    from ulmfit import TextClassifier
    clf = TextClassifier.load("models/reviews-clf")      # one model, or a folder holding fwd/ and bwd/
    clf.predict(["great film", "a waste of time"])       # labels, in input order
    clf.predict_proba(texts)                             # [n, classes], averaged over an ensemble
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from . import checkpoint as ckpt
from .data.clas import ClassificationData, SortishSampler, _encode
from .data.labeled import (LabeledTexts, check_labels, label_names_as_read, read_labeled, stratified_split,
                           validate_training)
from .io import (FinishedRun, UlmfitError, as_texts, atomic_group, atomic_write_json, defaults_of, is_real_number,
                 is_stdout, owns_out, warn, whole_number, written_through)
from .model.classifier import CLASSIFIER_DROPOUTS, AWDLSTMClassifier, HeadConfig
from .pretrained import _unfinished_classifier
from .text.tokenize import TokenizerConfig
from .text.vocab import unknown_share, unknown_warning
from .train.checks import config_from
from .train.classify import (MAX_LAST_EPOCHS, SELECT_LAST_MAX_VALID, ClassifierTrainConfig, ClassifierTrainer,
                             check_stage_groups, predict_probs)
from .train.distributed import single_process_only
from .train.loop import keeps_callers_rng
from .train.precision import precision_line, predicts_in_bf16
from .train.metrics import classification_report, multilabel_report, plot_confusion


def _reverse(ids: list) -> list:
    return [np.ascontiguousarray(a[::-1]) for a in ids]


def load_labeled(path, *, fmt="auto", text_col=None, label_col=None, header=None, encoding="utf-8", split=None,
                 multi_label_sep=None, skip_empty=False) -> LabeledTexts:
    return read_labeled(path, fmt=fmt, text_col=text_col, label_col=label_col, header=header, encoding=encoding,
                        split=split, multi_label_sep=multi_label_sep, skip_empty=skip_empty)


# What `read_args` may hold: load_labeled's options, and valid_split, the --split of the `valid` folder
READ_ARGS = ("fmt", "text_col", "label_col", "header", "encoding", "split", "multi_label_sep", "skip_empty",
             "valid_split")


def _read_args(read_args) -> dict:
    if read_args is None:
        return {}
    if not isinstance(read_args, dict):
        raise UlmfitError(f"read_args must be a dict, not {type(read_args).__name__}")
    unknown = sorted(set(read_args) - set(READ_ARGS))
    if unknown:
        raise UlmfitError(f"read_args: unknown option(s) {', '.join(map(repr, unknown))}; the options are "
                          f"{', '.join(READ_ARGS)}")
    return dict(read_args)


def _file_args(read_args: dict) -> dict:
    """The options load_labeled takes (valid_split is the validation folder's --split, not one)."""
    return {k: v for k, v in read_args.items() if k != "valid_split"}


def sample_labeled(texts: LabeledTexts, n: int | None, seed: int) -> LabeledTexts:
    """The `n` examples (in file order) that `train_classifier(max_train=n)` trains on with this
    seed: a uniform random sample, or all of them when `n` is None or not smaller."""
    if n is None or n >= len(texts):
        return texts
    rng = np.random.default_rng(seed)
    return texts.subset(sorted(rng.choice(len(texts), n, replace=False).tolist()))


@keeps_callers_rng
@owns_out
def train_classifier(lm, data, out, *, cfg: ClassifierTrainConfig | None = None, valid=None,
                     valid_frac: float = 0.1, read_args: dict | None = None, resume: bool = False,
                     overwrite: bool = False, n_workers: int | None = None, progress: bool = True,
                     device: str | None = None, max_train: int | None = None, pretrained: bool = True) -> dict:
    """Train a classifier on the encoder of the language model in `lm` (a directory; None = the
    shipped general-English model). `data` is a labeled file/folder (or a LabeledTexts), `valid`
    an optional separate validation set, else `valid_frac` of `data` is held out, stratified.
    `pretrained=False` keeps only the LM's vocabulary and tokenizer and starts the encoder from
    random weights (the from-scratch baseline of the benchmarks). `resume=True` continues the
    interrupted run in `out` with its saved settings and data; `data`, when given, is that data's
    new location (a path), or, for a run trained on texts in memory (which saved no path), the
    same LabeledTexts again; either is checked to give the same split sizes."""
    from .api import (_check_out, clear_replaced_run, require_path, require_saved_run, resolve_device,
                      resumed_source, writable_out)
    from .pretrained import default_lm, resolve_model

    single_process_only("train-classifier (a small model: one process trains it in minutes)")
    out, lm = Path(out), resolve_model(lm)
    given_read_args, read_args = read_args, _read_args(read_args)
    given_cfg = cfg
    cfg = config_from(ClassifierTrainConfig, cfg, what="cfg")
    # checked before the data is read (and tokenised) or the language model loaded
    whole_number(n_workers, "n_workers (tokeniser processes)", none=True)
    max_train = whole_number(max_train, "max_train (labeled examples to use)", none=True)
    if not is_real_number(valid_frac, 0, 1, below=True):
        raise UlmfitError(f"valid_frac (--valid-frac), the share of the labels held out to validate on, must be from 0 "
                          f"(none) to below 1, not {valid_frac!r}")
    resolve_device(device)
    if (data is not None or not resume) and not isinstance(data, LabeledTexts):
        require_path(data, "the labeled data", "; for texts and labels in memory, pass "
                     "ulmfit.data.labeled.LabeledTexts(texts, labels, 'name')")
    if resume:
        require_saved_run(out)
        saved = ckpt.read_config(out, "classifier")
        if not (out / ckpt.STATE_J).exists():
            raise UlmfitError(f"cannot resume: {out} holds no interrupted run ({ckpt.STATE_J} is missing)")
        s = saved.get("source", {})
        # a run started from texts in memory (the Python API) saved no path: the caller hands the
        # same texts again; a file that moved is given at its new place. The split's sizes, labels
        # and fingerprint are checked below.
        if s.get("data") is None and not isinstance(data, LabeledTexts):
            raise UlmfitError(f"cannot resume: {out} was trained on texts in memory; pass the same texts "
                              "as `data` to train_classifier(..., resume=True)")
        if s.get("data") is not None:
            data = resumed_source(s["data"], None if isinstance(data, LabeledTexts) else data, out,
                                  "the labeled data", f"`ulmfit train-classifier NEW_PATH --resume {out}`")
        given_data = {"valid_frac": valid_frac, "read_args": given_read_args, "max_train": max_train,
                      "valid": valid if isinstance(valid, (str, os.PathLike)) else None}
        given_lm, (lm, valid, valid_frac) = lm, (s.get("lm"), s.get("valid"), s.get("valid_frac", valid_frac))
        from .api import moved_base

        lm = moved_base(lm, given_lm, out, "the language model", f"`ulmfit train-classifier --lm NEW_PLACE --resume "
                        f"{out}`", progress)
        if lm != s.get("lm"):  # another place: the same vocabulary and tokenizer as the run's, or refused
            from .text.vocab import Vocab

            other = ckpt.read_config(lm, "language_model")
            tok = lambda c: TokenizerConfig.from_dict(c.get("tokenizer") or {}).to_dict()  # noqa: E731
            if Vocab.load(Path(lm) / ckpt.VOCAB).itos != Vocab.load(out / ckpt.VOCAB).itos or tok(other) != tok(saved):
                raise UlmfitError(f"cannot resume {out} from {lm}: its vocabulary or tokenizer is not the one the "
                                  "run was trained with; give the language model it started from")
            given_lm = None
        read_args, max_train = s.get("read_args", {}), s.get("max_train")
        cfg = ClassifierTrainConfig.from_dict(saved["train"])
        from .api import note_ignored_args, note_ignored_on_resume

        note_ignored_args(given_data, s, progress, TRAIN_CLASSIFIER_ARGS)

        if given_cfg is not None:  # compared as sized for the run's data, as the run's own config was
            from dataclasses import fields as _fields

            sized = config_from(ClassifierTrainConfig, given_cfg, what="cfg")
            if s.get("n_train"):
                sized = sized.for_data(s["n_train"])
            names = list(given_cfg) if isinstance(given_cfg, dict) else [f.name for f in _fields(sized)]
            note_ignored_on_resume({k: getattr(sized, k) for k in names if hasattr(sized, k)}, saved["train"],
                                   progress, kept=())
        if given_lm is not None and lm is not None and Path(given_lm).resolve() != Path(lm).resolve() and progress:
            print(f"note: resume=True continues the run from its own language model ({lm}); ignored: "
                  f"lm={given_lm}", flush=True)
    else:
        _check_out(out, False, overwrite)
    probed = out.is_dir()
    if probed:  # a folder that takes no files is refused before the data is read (a new one: once made)
        writable_out(out, create=False)
    say = (lambda m: print(m, flush=True)) if progress else (lambda m: None)

    # The language model: its encoder, vocabulary and tokenizer become the classifier's.
    lm_dir = Path(lm) if lm is not None else default_lm(cfg.backwards)
    lm_model, lm_cfg, vocab = ckpt.load_model(lm_dir)
    check_stage_groups(cfg.stage_groups, lm_model.cfg.n_layers + 2)  # before the data is read and tokenised
    lm_backwards = ckpt.reads_backwards(lm_cfg)
    if lm_backwards != cfg.backwards:
        if lm is None:
            raise UlmfitError("internal: shipped model direction mismatch")
        say(f"note: {lm_dir} is a {'backward' if lm_backwards else 'forward'} language model; "
            f"training a {'backward' if lm_backwards else 'forward'} classifier")
        cfg = replace(cfg, backwards=lm_backwards)
    tok_cfg, sp = _lm_tokenizer(lm_dir, lm_cfg)

    # Labeled data: a stratified validation split unless one is given.
    train_args = _file_args(read_args)
    train_texts = data if isinstance(data, LabeledTexts) else load_labeled(data, **train_args)
    if max_train is not None:  # sample-efficiency experiments, the demo's time budget
        train_texts = sample_labeled(train_texts, max_train, cfg.seed)
    if valid is not None:
        valid_args = {**train_args, "split": read_args.get("valid_split", read_args.get("split"))}
        valid_texts = valid if isinstance(valid, LabeledTexts) else load_labeled(valid, **valid_args)
    elif valid_frac == 0:  # no validation split: every label trains, the last epoch is the model
        if cfg.select == "best":
            raise UlmfitError("select='best' (--select best) needs validation data: give `valid` (--valid) or "
                              "a valid_frac (--valid-frac) above 0")
        valid_texts = None
    else:
        n_all = len(train_texts)
        train_texts, valid_texts = stratified_split(train_texts, valid_frac, cfg.seed)
        if not len(valid_texts) and n_all:
            raise UlmfitError(f"the {valid_frac:g} validation split of {n_all} examples is empty (each class keeps "
                              "at least one training example); give validation data (--valid), or train on "
                              "every label with --valid-frac 0")
    validate_training(train_texts)
    names = train_texts.label_names()
    if not resume and len(names) >= 20 and len(names) > len(train_texts) / 2:
        warn(f"{len(names):,} labels for {len(train_texts):,} training texts: most labels name a text or two, "
             "too few to learn them; is the label column the one meant (--label-col)?", progress)
    sizes = (len(train_texts), len(valid_texts) if valid_texts is not None else 0)
    if resume and sizes != (s.get("n_train", sizes[0]), s.get("n_valid", sizes[1])):
        raise UlmfitError(f"cannot resume: {out} was trained on {s.get('n_train')} + {s.get('n_valid')} examples, "
                          f"these texts give {sizes[0]} + {sizes[1]}; they are not the same data")
    if valid_texts is not None:
        check_labels(train_texts, valid_texts, "validation")
    keep_last = cfg.keeps_last(sizes[1])
    if not resume:
        sized = cfg.for_data(len(train_texts))
        if sized.stage_epochs != cfg.stage_epochs:
            n_epochs = sized.stage_epochs[-1]
            steps = n_epochs * -(-len(train_texts) // sized.bs)
            why = (f"{steps:,} steps" if steps >= cfg.min_last_steps else
                   f"{steps:,} steps: at most {MAX_LAST_EPOCHS} epochs, short of the {cfg.min_last_steps} wanted")
            say(f"{len(train_texts):,} training examples at batch size {sized.bs}: the last stage runs "
                f"{'' if keep_last else 'up to '}{n_epochs} epochs "
                f"({why}{'' if keep_last else '; early stopping applies'})")
        cfg = sized
    if valid_texts is None:
        say("no validation split (valid_frac 0): every label trains, every epoch runs and the last one is kept")
    elif keep_last and cfg.select == "auto":
        say(f"{len(valid_texts)} validation examples are too few to pick the best epoch (at most {SELECT_LAST_MAX_VALID}): "
            "every epoch runs and the last one is kept (--select best / select='best' picks by validation anyway)")
    labels = train_texts.label_names()
    if resume and labels != label_names_as_read(saved.get("labels") or []):  # the same number of texts with other labels is other data
        raise UlmfitError(f"cannot resume: {out} was trained on the labels {saved.get('labels')}, these texts have "
                          f"{labels}; they are not the same data")
    fingerprint = labeled_fingerprint(train_texts, valid_texts)
    if resume and s.get("fingerprint") and s["fingerprint"] != fingerprint:
        raise UlmfitError(f"cannot resume: {out} was trained on {sizes[0]} + {sizes[1]} examples, and these texts "
                          "give as many, but other texts or labels (or another order); they are not the same data")
    if not train_texts.multi_label:
        combined = _combined_labels(labels)
        if combined:
            say(f"note: labels such as {combined[1]!r} look like several labels joined by {combined[0]!r}; they are "
                f"classes of their own here. For several labels per text, read the data with --multi-label-sep "
                f"'{combined[0]}' (from Python: read_args={{'multi_label_sep': '{combined[0]}'}})")
    say(f"{len(train_texts):,} training and {sizes[1]:,} validation examples, {len(labels)} classes: "
        + ", ".join(f"{k} ({v})" for k, v in list(train_texts.class_counts().items())[:12]))
    train_d = ClassificationData.from_labeled(train_texts, tok_cfg, vocab, sp, labels, n_workers, progress)
    valid_d = (ClassificationData.from_labeled(valid_texts, tok_cfg, vocab, sp, labels, n_workers, progress)
               if valid_texts is not None else None)
    if not resume:
        msg = unknown_warning(unknown_share(train_d.ids), "the training texts", tok_cfg.kind, fixed_vocab=True)
        if msg:
            warn(msg, progress)
    if cfg.backwards:
        train_d.ids = _reverse(train_d.ids)
        if valid_d is not None:
            valid_d.ids = _reverse(valid_d.ids)

    if train_d.multi_label and cfg.class_weights in ("on", True):
        say("note: class weights (--class-weights on) apply to single-label data; a multi-label classifier "
            "trains each label as its own yes/no decision, without weights")
    model, arch, head = _new_classifier(lm_model, cfg, len(labels), train_d.multi_label, pretrained)
    del lm_model
    dev = resolve_device(device)
    model.to(dev)

    source = {"lm": str(lm_dir.resolve()), "data": str(Path(data).resolve()) if not isinstance(data, LabeledTexts) else None,
              "valid": str(Path(valid).resolve()) if isinstance(valid, (str, os.PathLike)) else None,
              "valid_frac": valid_frac, "read_args": read_args, "max_train": max_train,
              "n_train": len(train_texts), "n_valid": sizes[1], "fingerprint": fingerprint,
              "pretrained_encoder": pretrained}

    def save_fn(weights, step, history, state):
        ckpt.save_classifier(out, weights, arch=arch.to_dict(), head=head.to_dict(), vocab=vocab, tok_cfg=tok_cfg,
                             labels=labels, sp_model=sp, train=cfg.to_dict(), history=history, step=step,
                             extra={"source": source, "backwards": cfg.backwards, "best_epoch": state.get("best_epoch")})

    if not probed:
        writable_out(out, create=True)
    if not resume:  # the inputs are read: only now is a run that --overwrite replaces cleared
        clear_replaced_run(out)
    trainer = ClassifierTrainer(model, train_d, valid_d, cfg, out, save_fn, device=dev, progress=progress,
                                pad_id=vocab.stoi["xxpad"])
    say(precision_line(trainer.use_bf16, cfg.bf16, dev))
    if resume:
        trainer.resume()
        if trainer.stage >= len(cfg.stage_groups):  # nothing left: refuse before anything is written
            raise FinishedRun(f"{out} holds a finished run ({trainer.epoch} epochs, the model is epoch "
                              f"{trainer.best_epoch}); nothing to resume. To train longer, start a new run "
                              "with a longer last stage (--epochs N) into another --out")
        stage, done = trainer.stage, trainer.stage_epoch  # saved after a stage's last epoch, it names that stage
        while done >= cfg.stage_epochs[stage] and stage + 1 < len(cfg.stage_groups):
            stage, done = stage + 1, 0
        say(f"resuming {out} at step {trainer.step} (stage {stage + 1} of {len(cfg.stage_groups)}, "
            f"epoch {trainer.epoch + 1})")
    t0 = time.time()
    res = trainer.fit()
    for msg in training_warnings(trainer.history, res.get("best_epoch")):
        warn(msg, progress)
    res["wall_s"] = time.time() - t0
    res["out"] = str(out)
    return res


def training_warnings(history: list[dict], kept_epoch: int | None) -> list[str]:
    """What is wrong with the epoch a classifier run kept, seen on its validation texts: it predicts
    one class for all of them (a collapse: too few examples of the others, or rates too high), or
    its validation loss is far above an earlier epoch's (training diverged late, and the last epoch
    was kept). The loss, not the score: on the small validation splits where the last epoch is
    kept, macro-F1 moves by 0.1 or more between epochs by chance."""
    epochs = [h for h in history if h.get("valid_macro_f1") is not None]
    kept = next((h for h in epochs if h["epoch"] == kept_epoch), None)
    if kept is None:
        return []
    out = []
    predicted = kept.get("valid_predicted")
    if predicted is not None and len(predicted) == 1 and kept.get("valid_classes", 0) > 1:
        out.append(f"the classifier (epoch {kept['epoch']}) predicts '{predicted[0]}' for every validation text: it "
                   "has learned no other class. Give it more examples of the others, or --class-weights on if "
                   "it was off, or lower learning rates (--stage-lrs)")
    losses = [h for h in epochs if h.get("valid_loss") is not None]
    best = min(losses, key=lambda h: h["valid_loss"], default=None)
    if best is not None and kept.get("valid_loss") is not None and \
            kept["valid_loss"] > max(2 * best["valid_loss"], best["valid_loss"] + 1):
        out.append(f"the epoch kept ({kept['epoch']}) has a validation loss of {kept['valid_loss']:.3g} (macro-F1 "
                   f"{kept['valid_macro_f1']:.3f}), far above epoch {best['epoch']}'s {best['valid_loss']:.3g} "
                   f"(macro-F1 {best['valid_macro_f1']:.3f}): training went wrong late (rates too high?); "
                   "`--select best` keeps the best epoch")
    return out


def _lm_tokenizer(lm_dir: Path, lm_cfg: dict) -> tuple[TokenizerConfig, str | None]:
    """The tokenizer settings of the LM in `lm_dir` and its SentencePiece model (None: word level)."""
    tok_cfg = TokenizerConfig.from_dict(lm_cfg["tokenizer"])
    return tok_cfg, (str(lm_dir / ckpt.SPM) if tok_cfg.kind == "subword" else None)


def _combined_labels(names: list[str]) -> tuple[str, str] | None:
    """(separator, a label) where single-label data has labels made of others joined by , | or ;
    (multi-label data read without its separator), else None."""
    known = set(names)
    for sep in (",", "|", ";"):
        for name in names:
            parts = [p.strip() for p in name.split(sep)]
            if len(parts) > 1 and all(p in known for p in parts):
                return sep, name
    return None


TRAIN_CLASSIFIER_ARGS = defaults_of(train_classifier)  # its defaults as defined, for note_ignored_args


def _new_classifier(lm_model, cfg: ClassifierTrainConfig, n_classes: int, multi_label: bool, pretrained: bool = True):
    """(model, arch, head): the LM's encoder with the classifier dropouts and a new head."""
    arch = replace(lm_model.cfg, **CLASSIFIER_DROPOUTS, drop_mult=cfg.drop_mult)
    head = HeadConfig(n_classes=n_classes, bptt=cfg.bptt, max_len=cfg.max_len, multi_label=multi_label)
    torch.manual_seed(cfg.seed)
    model = AWDLSTMClassifier(arch, head)
    if pretrained:
        model.encoder.load_state_dict({k[len("encoder."):]: v for k, v in lm_model.state_dict().items()
                                       if k.startswith("encoder.")})
    return model, arch, head


@dataclass
class ClassifierTiming:
    """How long the classifier recipe takes on this machine, measured by `time_classifier`."""

    step_s: tuple  # seconds per optimizer step in each stage, at batch size `bs`
    bs: int
    predict_doc_s: float  # seconds per document of a validation pass
    cfg: ClassifierTrainConfig  # the recipe as given (its batch size and epochs are sized per data size)
    valid_frac: float = 0.1

    def seconds(self, n_docs: int) -> float:
        """Expected seconds to train the classifier on `n_docs` labeled texts (the `valid_frac` split
        of them validated after every epoch). Tokenising them is not included: about 5 s for 10,000
        review snippets on 2 cores."""
        n_valid = int(round(self.valid_frac * n_docs))
        n_train = max(n_docs - n_valid, 1)
        cfg = self.cfg.for_data(n_train)
        steps = -(-n_train // cfg.bs)
        scale = cfg.bs / self.bs  # a step's work grows with the batch
        train = sum(e * steps * s * scale for e, s in zip(cfg.stage_epochs, self.step_s))
        return train + sum(cfg.stage_epochs) * n_valid * self.predict_doc_s

    def to_dict(self) -> dict:
        return {"step_s": [round(s, 4) for s in self.step_s], "bs": self.bs,
                "predict_doc_s": round(self.predict_doc_s, 6)}


def time_classifier(lm, data: LabeledTexts, cfg: ClassifierTrainConfig | None = None, *, n_batches: int = 8,
                    max_seconds: float = 20.0, valid_frac: float = 0.1,
                    device: str | None = None) -> ClassifierTiming:
    """Measure the classifier recipe's cost on this machine without training the real model: a
    throwaway classifier on the encoder of `lm` (a directory; None = the shipped model) takes one
    untimed step on the longest batch it may time, then up to `n_batches` optimizer steps in each stage of
    `cfg` (fewer, at least 2, where they would take over about `max_seconds`: long documents) on
    batches of `data`'s texts made as the training sampler makes them (length-sorted within a
    random chunk; evenly spaced ones from short to long), then predicts them once. The global
    random state is left as it was. 10-15 s for review snippets on 2 cores; what the demo's time
    budget plans with."""
    from .api import resolve_device
    from .pretrained import default_lm

    cfg = cfg or ClassifierTrainConfig()
    if len(data) < 2:
        raise UlmfitError("timing the classifier needs at least 2 labeled texts (a batch of one cannot train)")
    with torch.random.fork_rng(devices=[]):  # loading and building models draw random numbers
        lm_dir = Path(lm) if lm is not None else default_lm(cfg.backwards)
        lm_model, lm_cfg, vocab = ckpt.load_model(lm_dir)
        tok_cfg, sp = _lm_tokenizer(lm_dir, lm_cfg)
        n_train = max(len(data) - int(round(valid_frac * len(data))), 1)
        sized = cfg.for_data(n_train)
        bs = min(sized.bs, len(data))
        # One chunk of the training sampler's work: a random sample of bs * 50 texts sorted by their
        # token length and cut into batches (SortishSampler's chunk), of which n_batches evenly spaced
        # ones are timed. (Picking by word count instead made the batches' padded length 22% longer
        # than training's on Rotten Tomatoes, and the estimate as much too high.)
        rng = np.random.default_rng(cfg.seed)
        pool = np.sort(rng.choice(len(data), min(len(data), bs * SortishSampler.CHUNK_BATCHES), replace=False))
        sub = LabeledTexts([data.texts[i] for i in pool], [data.labels[i] for i in pool], data.source)
        probe = ClassificationData.from_labeled(sub, tok_cfg, vocab, sp, sub.label_names(), 1, False)
        order = np.argsort([len(x) for x in probe.ids], kind="stable")
        sorted_batches = [[int(i) for i in order[k:k + bs]] for k in range(0, len(order) - bs + 1, bs)]
        model, _, _ = _new_classifier(lm_model, sized, max(2, len(sub.label_names())), probe.multi_label)
        del lm_model
        dev = resolve_device(device)
        model.to(dev)
        with tempfile.TemporaryDirectory() as tmp:  # the trainer's folder; nothing is saved
            trainer = ClassifierTrainer(model, probe, None, replace(sized, bs=bs), Path(tmp), lambda *a: None,
                                        device=dev, progress=False, pad_id=vocab.stoi["xxpad"])

            def spaced(m):  # m batches at the quantiles (j + 0.5) / m, from short to long
                return [sorted_batches[int((j + 0.5) * len(sorted_batches) / m)] for j in range(m)]

            # the warm-up step on the longest batch that may be timed (not the longest of all: on
            # BBC News that one step took 33 s), so no timed step takes longer
            longest = trainer.warm_up(spaced(n_batches)[-1])
            m = min(n_batches, len(sorted_batches),
                    max(2, int(max_seconds / (len(sized.stage_groups) * max(longest, 1e-6)))))
            batches = spaced(m)
            step_s = trainer.time_stages(batches)
            t = time.perf_counter()
            timed = [probe.ids[i] for b in batches for i in b]
            predict_probs(model, timed, bs, vocab.stoi["xxpad"], dev, trainer.use_bf16, probe.multi_label)
            predict_doc_s = (time.perf_counter() - t) / len(timed)
    return ClassifierTiming(tuple(step_s), bs, predict_doc_s, cfg, valid_frac)


def labeled_fingerprint(*parts) -> str:
    """A digest of the training (and validation) texts and labels, in order: a resumed run checks
    that its data is the one it started on."""
    import hashlib

    h = hashlib.sha256()
    for part in parts:
        if part is not None:
            for text, label in zip(part.texts, part.labels):
                h.update(text.encode("utf-8", "surrogatepass") + b"\0" + repr(label).encode("utf-8", "surrogatepass")
                         + b"\1")
        h.update(b"\2")
    return h.hexdigest()[:32]


class TextClassifier:
    """One trained classifier, or the average of several (ULMFiT's forward + backward ensemble)."""

    def __init__(self, members: list[tuple], labels: list[str], multi_label: bool = False):
        self.members, self.labels, self.multi_label = members, list(labels), multi_label

    def __repr__(self) -> str:
        shown = ", ".join(map(repr, self.labels[:6])) + (", ..." if len(self.labels) > 6 else "")
        what = ", ".join(f"{str(m[6])!r} ({'backward' if m[5] else 'forward'})" for m in self.members)
        kind = "multi-label, " if self.multi_label else ""
        return (f"TextClassifier({what}: {kind}{len(self.labels)} labels [{shown}], on {self.device})")

    @property
    def device(self) -> torch.device:
        """Where the classifier computes (its members all sit on one device)."""
        return next(self.members[0][0].parameters()).device

    @staticmethod
    def member_dirs(path) -> list[Path]:
        """A classifier directory, or a folder whose subfolders (fwd/, bwd/, ...) are classifiers."""
        path = Path(path)
        if (path / ckpt.CONFIG).exists():
            return [path]
        subs = sorted(p for p in path.iterdir()  # hidden folders are no members (a replaced run set aside)
                      if not p.name.startswith(".") and (p / ckpt.CONFIG).exists()) if path.is_dir() else []
        if not subs:
            ckpt.refuse_if_being_replaced(path)
            raise UlmfitError(f"{path} is neither a classifier directory nor a folder of them (no config.json)")
        # a subfolder that holds a model's weights but no config.json is a damaged member, not a
        # folder to pass over: an ensemble that quietly lost its backward model predicts differently
        for p in sorted(path.iterdir()):  # a member a run with --overwrite is replacing: not passed over either
            if p.is_dir() and p not in subs:
                ckpt.refuse_if_being_replaced(p)
        broken = [p for p in sorted(path.iterdir()) if p.is_dir() and p not in subs and (p / ckpt.WEIGHTS).exists()]
        if broken:
            raise UlmfitError(f"{broken[0]} holds model weights but no {ckpt.CONFIG}: a damaged ensemble member; "
                              f"restore it, or move it out of {path} to use the other members alone")
        return subs

    @classmethod
    def load(cls, paths, device: str | None = None) -> "TextClassifier":
        """One classifier directory, a folder of them, or a list (an ensemble, averaged). `device`:
        "auto" (default: a CUDA GPU when there is one, else the CPU), "cpu", "cuda", "cuda:1"."""
        from .api import resolve_device

        dev = resolve_device(device)
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        try:
            paths = list(paths)
        except TypeError:
            paths = []
        if not paths or not all(isinstance(p, (str, os.PathLike)) for p in paths):
            raise UlmfitError("give a classifier directory, a folder of them, or a list of directories")
        dirs = [d for p in paths for d in cls.member_dirs(p)]
        seen = {}
        for d in dirs:  # one model twice would weigh twice in the average
            if d.resolve() in seen:
                raise UlmfitError(f"{d} is given twice ({seen[d.resolve()]}); an ensemble takes each classifier once")
            seen[d.resolve()] = d
        members, labels, multi = [], None, None
        for d in dirs:
            with torch.random.fork_rng(devices=[]):  # building the model draws initial weights: not the caller's
                model, cfg, vocab = ckpt.load_classifier(d)
            named = label_names_as_read(cfg["labels"])
            if labels is not None and named != labels:
                raise UlmfitError(f"{d} predicts other labels ({named}) than {dirs[0]} ({labels}); "
                                  "an ensemble needs the same labels")
            labels = named
            this_multi = bool(cfg["head"].get("multi_label"))
            if multi is not None and this_multi != multi:
                raise UlmfitError(f"{d} is a {'multi' if this_multi else 'single'}-label classifier and {dirs[0]} is "
                                  f"not; an ensemble averages members that score the labels alike")
            multi = this_multi
            tok = TokenizerConfig.from_dict(cfg["tokenizer"])
            sp = str(d / ckpt.SPM) if tok.kind == "subword" else None
            members.append((model.to(dev), cfg, vocab, tok, sp, ckpt.classifier_reads_backwards(cfg), d))
            unfinished = _unfinished_classifier(d, cfg)
            if unfinished:  # loadable and usable, but not the model its run was to make
                warn(f"{d} {unfinished}: it predicts as it was where the run stopped; `ulmfit train-classifier "
                     f"--resume {d}` finishes it")
            note = ckpt.older_rules_note(d, cfg)
            if note:
                warn(note)
        return cls(members, labels, bool(multi))

    def predict_proba(self, texts, bs: int = 64, progress: bool = False, n_workers: int | None = None,
                      per_member: bool = False):
        """Probabilities [n texts, n labels]; the columns follow `self.labels`."""
        texts = as_texts(texts)
        bs = whole_number(bs, "bs (the batch size)")
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        probs = []
        cache: dict = {}
        for model, cfg, vocab, tok, sp, backwards, d in self.members:
            # members share encoded texts only when they tokenise alike: the whole vocabulary, the
            # tokenizer's settings and its SentencePiece model
            key = (tuple(vocab.itos), json.dumps(tok.to_dict(), sort_keys=True), sp)
            if key not in cache:
                cache[key] = _encode(texts, tok, vocab, sp, n_workers, progress)
            ids = cache[key]
            if backwards:
                ids = _reverse(ids)
            # the precision it was trained and validated in: a classifier trained with --no-bf16
            # predicts in fp32 also where bf16 would be faster
            use_bf16 = predicts_in_bf16(cfg, self.device)
            probs.append(predict_probs(model, ids, bs, vocab.stoi["xxpad"], use_bf16=use_bf16,
                                       multi_label=self.multi_label, progress=progress,
                                       desc=f"predicting ({d.name})"))
        mean = np.mean(probs, 0)
        return (mean, probs) if per_member else mean

    def predict(self, texts, bs: int = 64, threshold: float = 0.5, progress: bool = False,
                n_workers: int | None = None) -> list:
        """The label of each text (multi-label: the labels whose probability reaches `threshold`)."""
        self.check_threshold(threshold)
        p = self.predict_proba(texts, bs, progress, n_workers)
        if self.multi_label:
            return [[self.labels[j] for j in np.nonzero(row >= threshold)[0]] for row in p]
        return [self.labels[i] for i in p.argmax(1)]

    def check_threshold(self, threshold) -> None:
        if not is_real_number(threshold, 0, 1):
            raise UlmfitError(f"threshold must be a probability (0 to 1), not {threshold!r}")
        if threshold != 0.5 and not self.multi_label:
            raise UlmfitError("threshold applies to multi-label classifiers; this one gives each text its most "
                              "probable label")

    def _names(self) -> list[str]:
        """The members' folder names (fwd, bwd), or their paths where two folders share a name."""
        names = [m[6].name for m in self.members]
        return names if len(set(names)) == len(names) else [str(m[6]) for m in self.members]

    def evaluate(self, data, bs: int = 64, progress: bool = False, *, labels=None, threshold: float = 0.5) -> dict:
        """Accuracy, macro-F1, per-class scores and the confusion matrix on labeled data: a
        LabeledTexts, or a list of texts with `labels=` (one per text). `threshold`: a multi-label
        classifier gives a text each label whose probability reaches it, as `predict` does."""
        from .data.labeled import check_label_names

        self.check_threshold(threshold)

        if labels is not None and not isinstance(data, LabeledTexts):
            data = LabeledTexts(data, labels, "the texts given")
        if not isinstance(data, LabeledTexts):
            raise UlmfitError("evaluate takes labeled data: texts with labels=[...], or a LabeledTexts "
                              "(ulmfit.classifier_api.load_labeled(path), or ulmfit.data.labeled.LabeledTexts(texts, "
                              "labels, 'name')), not "
                              + type(data).__name__)
        if not len(data):
            raise UlmfitError(f"{data.source}: no examples to evaluate on")
        if self.multi_label and not data.multi_label:
            raise UlmfitError("this classifier is multi-label (several labels per text): read the evaluation data "
                              "with the separator its labels use (--multi-label-sep, e.g. ',')")
        if data.multi_label and not self.multi_label:
            raise UlmfitError("this classifier is single-label (one label per text): read the evaluation data "
                              "without a multi-label separator (--multi-label-sep)")
        check_label_names(self.labels, data, "evaluation", "the classifier's labels")
        mean, per = self.predict_proba(data.texts, bs, progress, per_member=True)
        index = {l: i for i, l in enumerate(self.labels)}
        if self.multi_label:
            y = np.zeros((len(data), len(self.labels)), dtype=np.float32)
            for r, labs in enumerate(data.labels):
                for l in labs:
                    y[r, index[l]] = 1
            rep = multilabel_report(y, mean, self.labels, threshold)
            members = {name: multilabel_report(y, p, self.labels, threshold)["exact_match"]
                       for name, p in zip(self._names(), per)}
            p = np.clip(mean, 1e-7, 1 - 1e-7)  # each label's own yes/no: binary cross-entropy, as in training
            rep["log_loss"] = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
        else:
            y = np.array([index[l] for l in data.labels])
            rep = classification_report(y, mean.argmax(1), self.labels)
            # how sure it was of the right label (accuracy is blind to it): the mean negative log-probability
            # of each text's label, without the class weights training may use
            rep["log_loss"] = float(-np.mean(np.log(np.clip(mean[np.arange(len(y)), y], 1e-7, 1.0))))
            members = {name: classification_report(y, p.argmax(1), self.labels)["accuracy"]
                       for name, p in zip(self._names(), per)}
        if len(self.members) > 1:
            rep["members"] = members
        rep["models"] = [str(m[6]) for m in self.members]
        return rep


def evaluate(model_paths, data, *, read_args: dict | None = None, report: str | os.PathLike | None = None,
             bs: int = 64, progress: bool = True, device: str | None = None, threshold: float = 0.5) -> dict:
    """Accuracy, error rate, macro-F1, per-class precision/recall and the confusion matrix, written
    to a JSON report (and the matrix to a PNG beside it); `threshold` as in `TextClassifier.evaluate`."""
    clf = TextClassifier.load(model_paths, device)
    texts = data if isinstance(data, LabeledTexts) else load_labeled(data, **_file_args(_read_args(read_args)))
    rep = clf.evaluate(texts, bs, progress, threshold=threshold)
    rep["data"] = texts.source
    if report is not None:
        write_report(rep, report)
    return rep


def write_report(rep: dict, report) -> Path | None:
    """An evaluation report as JSON, and its confusion matrix as a PNG beside it; returns the PNG's
    path. "-" is standard output; a link, pipe or device (/dev/stdout) is written through; neither
    gets a PNG."""
    to_stdout = str(report) == "-"
    report = Path(report)
    if not to_stdout and report.is_dir():
        raise UlmfitError(f"--report {report} is a folder; give a file name (e.g. {report / 'eval_report.json'})")
    if to_stdout or written_through(report):
        text = json.dumps(rep, indent=2, sort_keys=True) + "\n"
        if to_stdout or is_stdout(report):  # never reopened: that would cut a file it is redirected to
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            with open(report, "w", encoding="utf-8") as f:
                f.write(text)
        return None
    with atomic_group():  # the JSON and its PNG replace the previous pair together, never one of them
        atomic_write_json(report, rep)
        if "confusion_matrix" not in rep:
            return None
        png = report.with_suffix(".png")
        plot_confusion(rep["confusion_matrix"], rep["labels"], png)
    return png
