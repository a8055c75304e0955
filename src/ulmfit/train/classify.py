"""Training the classifier (ULMFiT section 3.3): gradual unfreezing, discriminative rates, STLR.

Training runs in stages. Stage k makes the top ``stage_groups[k]`` layer groups trainable (0 = all),
trains for ``stage_epochs[k]`` epochs with its own slanted triangular schedule peaking at
``stage_lrs[k]`` for the head, each lower group 2.6x below the one above. The default stages are
fastai's refinement of the paper's recipe: head only; + last LSTM; + the one below; then
everything (at twice fastai's rates, chosen on a validation split: see bench/recipe_sweep.py).
A validation split drives the choice of the epoch: the best epoch's weights are the ones saved
as the model (and training stops early after ``patience`` epochs without improvement in the last
stage). A validation split too small to tell epochs apart (up to ``SELECT_LAST_MAX_VALID`` texts)
does not pick: every epoch runs and the last one is kept (``select``).
"""

from __future__ import annotations

import copy
import numbers
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .. import checkpoint as ckpt
from ..io import UlmfitError, append_jsonl, is_real_number, atomic_group, trim_jsonl
from ..progress import progress_bar
from .finetune import freeze_to
from .loop import (TrainingInterrupted, autocast_ctx, diverged_advice, interrupted_message, param_names,
                   sigterm_as_interrupt, stop_deferred)
from .checks import Settings
from .precision import bf16_pays
from .metrics import classification_report, multilabel_report
from .schedules import discriminative_lrs, schedule as make_schedule


@dataclass
class ClassifierTrainConfig:
    bs: int | None = None  # None: 64 from 20,000 training examples, 32 from 1,000, else 16 (see for_data)
    bptt: int = 70
    max_len: int = 1400  # 20 * bptt: tokens at the end of each document that are pooled and back-propagated
    stage_groups: tuple = (1, 2, 3, 0)  # top groups trainable per stage; 0 = all (gradual unfreezing)
    stage_epochs: tuple = (1, 1, 1, 2)
    # peak rate of the head in each stage: twice fastai's 2e-2 / 1e-2 / 5e-3 / 1e-3, which scored
    # 1-2 points lower on the Rotten Tomatoes validation split (bench/recipe_sweep.py)
    stage_lrs: tuple = (4e-2, 2e-2, 1e-2, 2e-3)
    lr_div: float = 2.6
    schedule: str = "stlr"
    cut_frac: float = 0.1
    ratio: float = 32.0
    beta1: float = 0.7  # the paper's Adam betas for the classifier
    beta2: float = 0.99
    wd: float = 0.01
    clip: float = 25.0  # published classifier scripts
    drop_mult: float = 0.5
    # weight the loss by inverse class frequency: "auto" = when the largest training class is more
    # than IMBALANCE times the smallest; "on" / "off" (True / False are accepted too)
    class_weights: str = "auto"
    # picks the best epoch: macro_f1 (default: an epoch that predicts one class scores low even when
    # that class is most of the validation split) | accuracy | loss
    metric: str = "macro_f1"
    patience: int = 3  # epochs without improvement before the last stage stops early; 0: never
    # which epoch becomes the model: "best" (the best validation score; a tie goes to the later
    # epoch), "last" (the final epoch; every epoch runs, no early stopping), or "auto": "last" when the
    # validation split holds at most SELECT_LAST_MAX_VALID texts (too few to tell epochs apart: see
    # bench/epoch_select.py), else "best"
    select: str = "auto"
    bf16: bool = True
    backwards: bool = False
    seed: int = 0
    save_every_minutes: float = 10.0
    # small label sets: the last stage gets enough epochs for this many optimizer steps (<= 12
    # epochs; early stopping still applies); 0 = keep stage_epochs as given
    min_last_steps: int = 150
    # before each validation, set the head's BatchNorm statistics to the exact mean and variance of
    # their inputs in evaluation mode over up to bn_recal_docs training documents (see
    # recalibrate_batchnorm); off: the running averages of training (momentum 0.1) are used as is
    bn_recal: bool = False
    bn_recal_docs: int = 2048

    def __post_init__(self):
        self.stage_groups, self.stage_epochs, self.stage_lrs = (tuple(self.stage_groups), tuple(self.stage_epochs),
                                                                 tuple(self.stage_lrs))
        if not (len(self.stage_groups) == len(self.stage_epochs) == len(self.stage_lrs)) or not self.stage_groups:
            raise UlmfitError("stage_groups, stage_epochs and stage_lrs must have the same (non-zero) length")
        if self.class_weights not in (True, False, "auto", "on", "off"):
            raise UlmfitError("class_weights must be auto, on or off")
        if self.metric not in ("accuracy", "macro_f1", "loss"):
            raise UlmfitError("metric must be accuracy, macro_f1 or loss")
        if self.select not in ("auto", "best", "last"):
            raise UlmfitError("select must be auto, best or last")
        c = Settings(self)
        c.plain_numbers()
        c.integer("bs", 1, none=True)
        c.integer("bptt", 1)
        c.integer("max_len", 1)
        for i, (g, e, lr) in enumerate(zip(self.stage_groups, self.stage_epochs, self.stage_lrs)):
            if isinstance(g, bool) or not isinstance(g, numbers.Integral) or g < 0:
                raise UlmfitError(f"ClassifierTrainConfig: stage_groups[{i}] must be a whole number >= 0 (0: all "
                                  f"groups), not {g!r}")
            if isinstance(e, bool) or not isinstance(e, numbers.Integral) or e < 0:
                raise UlmfitError(f"ClassifierTrainConfig: stage_epochs[{i}] must be a whole number >= 0, not {e!r}")
            if not is_real_number(lr, 0, above=True):
                raise UlmfitError(f"ClassifierTrainConfig: stage_lrs[{i}] must be a finite number above 0, not {lr!r}")
        if sum(self.stage_epochs) < 1:
            raise UlmfitError("ClassifierTrainConfig: stage_epochs add up to 0; nothing would train")
        c.schedule_and_optimizer()
        for name in ("wd", "clip", "drop_mult"):
            c.number(name, 0)
        from ..model.awd_lstm import too_much_dropout
        from ..model.classifier import CLASSIFIER_DROPOUTS

        top = max(CLASSIFIER_DROPOUTS.values())
        if self.drop_mult * top >= 1:
            raise UlmfitError(f"ClassifierTrainConfig: {too_much_dropout(self.drop_mult, top)}")
        c.integer("patience", 0)
        c.boolean("bf16", "backwards", "bn_recal")
        c.seed()
        c.number("save_every_minutes", 0, infinite=True)
        c.integer("min_last_steps", 0)
        c.integer("bn_recal_docs", 1)

    def keeps_last(self, n_valid: int) -> bool:
        """Whether the final epoch becomes the model (no early stopping) for a validation split of
        n_valid texts."""
        return self.select == "last" or (self.select == "auto" and n_valid <= SELECT_LAST_MAX_VALID)

    def to_dict(self) -> dict:
        return asdict(self)

    def for_data(self, n_train: int) -> "ClassifierTrainConfig":
        """This config with the choices that depend on the number of training examples made:
        the batch size when None, and a longer last stage for small label sets (a 100-label task
        at batch size 16 has 6 steps per epoch; the default 2 epochs would not train its head)."""
        bs = self.bs or (64 if n_train >= 20_000 else 32 if n_train >= 1000 else 16)
        epochs = self.stage_epochs
        if self.min_last_steps:
            per_epoch = max(1, -(-n_train // bs))
            need = min(MAX_LAST_EPOCHS, -(-self.min_last_steps // per_epoch))
            if need > epochs[-1]:
                epochs = epochs[:-1] + (need,)
        return replace(self, bs=bs, stage_epochs=epochs)

    @classmethod
    def from_dict(cls, d: dict) -> "ClassifierTrainConfig":
        known = {f.name for f in fields(cls)}
        # a run saved before `select` existed picked the best epoch: a resume keeps doing so
        return cls(**{"select": "best", **{k: v for k, v in d.items() if k in known}})


IMBALANCE = 1.5
MAX_LAST_EPOCHS = 12
# Up to this many validation texts, select="auto" keeps the last epoch. Measured on Rotten Tomatoes
# (bench/epoch_select.py, BENCHMARKS.md "Which epoch to keep"): with 10, 20, 50 and 100 validation
# texts (100 to 1,000 labels) the epoch with the best validation score scored lower on the test set
# than the last one in 11 of 12 comparisons (4 sizes x forward, backward, ensemble; means over seeds),
# and at 10 and 20 it often fell on an early epoch that predicts nearly one class; the last epoch
# was within 0.0-1.1 points (median 0.3) of the best test epoch. Raised from 100 to 200 after BBC
# News (178 validation articles, validation accuracy 97-99% from the third epoch: one article picks
# the epoch): over its recipe and a 6-epoch last stage, 3 seeds each, the last epoch scored higher
# than the best validation score's in 4 of 6 comparisons (forward, backward, ensemble), equal in
# one and 0.07 points lower in one; in both, one run (backward, seed 2) kept its head-only first
# epoch. With 1,025 (Rotten Tomatoes, all labels) the two agree within noise, so larger splits still
# pick. cli.py's --select help repeats the number (it does not import torch to build its parser); a
# test keeps the two equal.
SELECT_LAST_MAX_VALID = 200


def use_class_weights(setting, labels, n_classes: int) -> bool:
    if setting in (True, "on"):
        return True
    if setting in (False, "off", None):
        return False
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes)
    counts = counts[counts > 0]
    return len(counts) > 1 and counts.max() > IMBALANCE * counts.min()


def class_weight_vector(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights normalised to mean 1 (classes absent from training get weight 1)."""
    counts = np.bincount(labels, minlength=n_classes).astype(float)
    w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / n_classes, 1.0)
    return torch.tensor(w / w.mean(), dtype=torch.float32)


def _length_sorted_batches(seqs: list, bs: int, pad_id: int, device):
    """(indices, ids, lengths) for evaluation: `seqs` batched by length, padded, on `device`
    (an empty sequence becomes one pad token)."""
    from ..data.clas import SortedBatches, pad_batch

    for b in SortedBatches([max(1, len(s)) for s in seqs], bs).batches():
        ids, lens = pad_batch([seqs[i] if len(seqs[i]) else [pad_id] for i in b], pad_id)
        yield b, ids.to(device), lens.to(device)


@torch.no_grad()
def predict_probs(model, seqs: list, bs: int = 64, pad_id: int = 1, device=None, use_bf16: bool = False,
                  multi_label: bool = False, progress: bool = False, desc: str = "predicting") -> np.ndarray:
    """Class probabilities for token-id sequences, batched by length, returned in input order."""
    device = device or next(model.parameters()).device
    was = model.training
    model.eval()
    out = np.zeros((len(seqs), model.head_cfg.n_classes), dtype=np.float32)
    # counted in tokens, the work each batch is: the longest documents come first, and a bar of
    # batches would promise an early end that the long ones never keep; shown after a second only
    # no bar at all without progress: a disabled tqdm still fixes multiprocessing's start method (a host
    # program's later set_start_method failed) and starts a monitor thread, on every call of a service
    bar = progress_bar(total=sum(max(1, len(s)) for s in seqs), desc=desc, unit=" tokens", unit_scale=True,
                       leave=False, delay=1.0) if progress else None
    with autocast_ctx(use_bf16, device):
        for b, ids, lens in _length_sorted_batches(seqs, bs, pad_id, device):
            logits = model(ids, lens).float()
            p = torch.sigmoid(logits) if multi_label else torch.softmax(logits, -1)
            out[np.asarray(b)] = p.cpu().numpy()
            if bar is not None:
                bar.update(int(lens.sum()))
    if bar is not None:
        bar.close()
    model.train(was)
    return out


@torch.no_grad()
def recalibrate_batchnorm(model, seqs: list, bs: int = 64, pad_id: int = 1, device=None,
                          use_bf16: bool = False) -> bool:
    """Sets the running statistics of the head's BatchNorm layers to the mean and (unbiased)
    variance of their inputs with the whole model in evaluation mode, over the documents `seqs`.

    During training the head sees features made with dropout on, and its running averages (momentum
    0.1) trail an encoder that changes every step: after a first epoch of 6 steps (90 training texts
    at batch size 16) the running mean holds 47% of the features' mean and 53% of its initial zero. Evaluation
    then normalises with statistics of neither the current network nor evaluation-mode features,
    which can push every prediction onto one class. Computing them exactly, layer by layer, from
    evaluation-mode features ("precise BatchNorm"; Wu & Johnson 2021, Li et al. 2019 on the variance
    shift that dropout causes) removes both gaps. It did not pay off in the measurement
    (bench/bn_recal.py, BENCHMARKS.md: on Rotten Tomatoes ULMFiT lost 0.1-1.7 points at 100-1,000
    labels and was unchanged with all of them), so `ClassifierTrainConfig.bn_recal` is off by
    default. Returns False (nothing changed) when the head has no BatchNorm or there are fewer
    than 2 documents."""
    layers = list(model.head.layers)
    if len(seqs) < 2 or not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in layers):
        return False
    device = device or next(model.parameters()).device
    was = model.training
    model.eval()
    with autocast_ctx(use_bf16, device):
        x = torch.cat([model.bpt3c(ids, lens).float() for _, ids, lens in
                       _length_sorted_batches(seqs, bs, pad_id, device)])
        for m in layers:  # as the head's forward runs them, each BatchNorm seeing the layers below
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
                xf = x.float()
                m.running_mean.copy_(xf.mean(0))
                m.running_var.copy_(xf.var(0, unbiased=True))
            x = m(x)
    model.train(was)
    return True


def check_stage_groups(stage_groups, n_groups: int) -> None:
    """Each stage's number of top layer groups, against the model's `n_groups` (the embedding, each
    LSTM layer, the head): freeze_to wraps a larger one around (6 of 5 groups trained the head alone)."""
    too_many = [g for g in stage_groups if g > n_groups]
    if too_many:
        raise UlmfitError(f"stage_groups {list(stage_groups)}: this model has {n_groups} layer groups (the "
                          f"embedding, {n_groups - 2} LSTM layers, the head), so each value must be 0 (all groups) "
                          f"to {n_groups}, not {too_many[0]}")


class ClassifierTrainer:
    def __init__(self, model, train_data, valid_data, cfg: ClassifierTrainConfig, out: Path, save_fn,
                 device: torch.device | None = None, progress: bool = True, pad_id: int = 1):
        if cfg.bs is None:
            cfg = cfg.for_data(len(train_data.ids))
        self.model, self.train_data, self.valid_data, self.cfg = model, train_data, valid_data, cfg
        self.out, self.save_fn, self.pad_id = Path(out), save_fn, pad_id
        self.device = device or torch.device("cpu")
        self.progress = progress
        self.use_bf16 = cfg.bf16 and (self.device.type != "cpu" or bf16_pays())
        self.groups = model.layer_groups()
        check_stage_groups(cfg.stage_groups, len(self.groups))
        self.multi_label = model.head_cfg.multi_label
        self.opt = torch.optim.AdamW([{"params": g, "lr": 0.0, "max_lr": 0.0, "weight_decay": cfg.wd} for g in self.groups],
                                     betas=(cfg.beta1, cfg.beta2), foreach=True)
        self.names = param_names(model)
        self.sched = make_schedule(cfg.schedule, cut_frac=cfg.cut_frac, ratio=cfg.ratio)
        n_classes = model.head_cfg.n_classes
        self.loss_weight = (class_weight_vector(np.asarray(train_data.labels), n_classes).to(self.device)
                            if not self.multi_label and use_class_weights(cfg.class_weights, train_data.labels,
                                                                          n_classes) else None)
        self.stage = self.stage_epoch = self.batch = self.step = self.epoch = 0
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.best_state: dict | None = None
        self.bad_epochs = 0
        self.run_loss = None  # the current epoch's running train loss (kept in the state for a resume)
        # no validation data (valid_frac 0): nothing to pick by, so the last epoch is the model
        self.keep_last = valid_data is None or cfg.keeps_last(len(valid_data.ids))
        self.history: list[dict] = []
        self.elapsed = 0.0
        self.metrics_path = self.out / "metrics.jsonl"
        from ..data.clas import SortishSampler

        lengths = [len(s) for s in train_data.ids]
        self.sampler = SortishSampler(lengths, cfg.bs, seed=cfg.seed)
        self.bn_recal_ids = []
        if cfg.bn_recal:  # a fixed sample of the training documents, the same after a resume
            n = len(train_data.ids)
            pick = (np.arange(n) if n <= cfg.bn_recal_docs else
                    np.sort(np.random.default_rng(cfg.seed).choice(n, cfg.bn_recal_docs, replace=False)))
            self.bn_recal_ids = [train_data.ids[i] for i in pick]

    # -- state -----------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"step": self.step, "stage": self.stage, "stage_epoch": self.stage_epoch, "batch": self.batch,
                "epoch": self.epoch, "best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs,
                "history": self.history, "elapsed": self.elapsed, "train": self.cfg.to_dict(), "run_loss": self.run_loss}

    def save(self) -> None:
        # model.safetensors holds the best epoch so far (what users load); the last weights, needed
        # to resume, travel in the training state.
        best = self.best_state if self.best_state is not None else self.model.state_dict()
        with atomic_group():  # weights, config and training state replace the last ones together
            self.save_fn(best, self.step, self.history, self.state())
            ckpt.save_train_state(self.out, self.opt, self.names, self.state(),
                                  extra_tensors={f"last.{k}": v for k, v in ckpt._unique_state_dict(self.model).items()})

    def resume(self) -> None:
        st = ckpt.load_train_state(self.out, self.opt, self.names, weights_prefix="last.", model=self.model)
        for k in ("step", "stage", "stage_epoch", "batch", "epoch", "best", "best_epoch", "bad_epochs", "elapsed"):
            setattr(self, k, st.get(k, getattr(self, k)))
        self.history = st.get("history", [])
        # the epoch's running train loss goes on from where it was (the loop uses it only when batch > 0)
        self.run_loss = st.get("run_loss")
        trim_jsonl(self.metrics_path, self.step)  # lines a killed run logged after its last checkpoint come again
        if self.best is not None:
            best_model, _ = ckpt.load_tensors(self.out / ckpt.WEIGHTS)
            # a deep copy keeps the model's aliases (bpt3c.encoder.* is encoder.*) one tensor, and the
            # saved best weights are copied into it in place: the file written from it names each
            # tensor once, as the first save did (new tensors here saved both names, and the model no
            # longer loaded)
            self.best_state = copy.deepcopy(self.model.state_dict())
            for k, v in best_model.items():
                self.best_state[k].copy_(v.to(self.best_state[k].dtype))

    def log(self, rec: dict) -> None:
        append_jsonl(self.metrics_path, rec)

    # -- evaluation --------------------------------------------------------------------------------
    def evaluate(self, data) -> dict:
        probs = predict_probs(self.model, data.ids, self.cfg.bs, self.pad_id, self.device, self.use_bf16,
                              self.multi_label)
        y = np.asarray(data.labels)
        if self.multi_label:
            rep = multilabel_report(y, probs, list(data.label_names))
            p = np.clip(probs, 1e-7, 1 - 1e-7)
            rep["loss"] = float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())
        else:
            rep = classification_report(y, probs.argmax(1), list(data.label_names))
            rep["loss"] = float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None)).mean())
        return rep

    def _score(self, rep: dict) -> float:
        return -rep["loss"] if self.cfg.metric == "loss" else rep[self.cfg.metric]

    # -- the loop --------------------------------------------------------------------------------
    def _loss(self, logits, yb):
        if self.multi_label:
            return F.binary_cross_entropy_with_logits(logits.float(), yb.float())
        return F.cross_entropy(logits.float(), yb, weight=self.loss_weight)

    def _step(self, b: list[int], labels: np.ndarray, trainable: list) -> torch.Tensor:
        """One optimizer step on the training documents `b` (indices) at the current rates; the loss."""
        from ..data.clas import pad_batch

        ids, lens = pad_batch([self.train_data.ids[i] for i in b], self.pad_id)
        yb = torch.as_tensor(labels[b]).to(self.device)
        with autocast_ctx(self.use_bf16, self.device):
            logits = self.model(ids.to(self.device), lens.to(self.device))
        loss = self._loss(logits, yb)
        if not torch.isfinite(loss):
            raise UlmfitError(f"the loss became {loss.detach().item()} at step {self.step}; "
                              + diverged_advice(self.out, "lower learning rates (--stage-lrs)"))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.clip:
            torch.nn.utils.clip_grad_norm_(trainable, self.cfg.clip)
        self.opt.step()
        return loss

    def _train_top(self, top: int) -> list:
        """Make the top `top` layer groups trainable (0: all of them), the rest frozen; the trainable
        parameters (what the gradient clipping sees)."""
        freeze_to(self.groups, -top if top else 0)
        return [p for g in self.groups for p in g if p.requires_grad]

    def _timing_rates(self) -> None:
        for g in self.opt.param_groups:
            g["lr"] = 1e-6  # timing: the values do not matter, the work does

    def warm_up(self, batch: list[int]) -> float:
        """One optimizer step with every layer trainable on `batch` (the longest, so that memory for
        the largest shapes and every optimizer state are in place, as after a training run's first,
        longest batch); its seconds, an upper bound on any step of that batch length or shorter."""
        trainable = self._train_top(0)
        self.model.train()
        self._timing_rates()
        t = time.perf_counter()
        self._step(batch, np.asarray(self.train_data.labels), trainable)
        return time.perf_counter() - t

    def time_stages(self, batches: list[list[int]]) -> list[float]:
        """Seconds per optimizer step in each stage of the recipe (the layers that stage trains), the
        mean over `batches` (lists of training-document indices, from short to long), after
        `warm_up`; each stage after one untimed step on the last, longest, of them (untimed steps on
        the shortest or none left the estimate 6-16% higher and less steady: memory for a stage's
        largest shapes is then in place before its clock starts). It trains the model: for timing a
        throwaway copy, not the one to keep."""
        labels = np.asarray(self.train_data.labels)
        self.model.train()
        out = []
        for top in self.cfg.stage_groups:
            trainable = self._train_top(top)
            self._timing_rates()
            self._step(batches[-1], labels, trainable)
            t = time.perf_counter()
            for b in batches:
                self._step(b, labels, trainable)
            out.append((time.perf_counter() - t) / max(len(batches), 1))
        return out

    def fit(self) -> dict:
        cfg, model = self.cfg, self.model
        labels = np.asarray(self.train_data.labels)
        t_start, last_save = time.time(), time.time()
        before = None  # (batch, random state, buffers) at the start of the current batch
        bar = None
        n_stages = len(cfg.stage_groups)
        total_epochs = sum(cfg.stage_epochs)
        ckpt.check_free_space(self.out, model, 4)  # best weights, Adam's two moments, the last weights
        with sigterm_as_interrupt():
            try:
                while self.stage < n_stages:
                    top = cfg.stage_groups[self.stage]
                    trainable = self._train_top(top)
                    lrs = discriminative_lrs(cfg.stage_lrs[self.stage], len(self.groups), cfg.lr_div)
                    for g, lr in zip(self.opt.param_groups, lrs):
                        g["max_lr"] = lr
                    last_stage = self.stage == n_stages - 1
                    while self.stage_epoch < cfg.stage_epochs[self.stage]:
                        batches = [b for b in self.sampler.batches(self.epoch) if len(b) > 1]  # BatchNorm needs 2
                        T = max(1, cfg.stage_epochs[self.stage] * len(batches))
                        model.train()
                        desc = (f"stage {self.stage + 1}/{n_stages} ({'all groups' if not top else f'top {top}'})"
                                f" epoch {self.epoch + 1}/{total_epochs}")
                        bar = progress_bar(total=len(batches), initial=self.batch, desc=desc, unit="batch",
                                           disable=not self.progress, dynamic_ncols=True)
                        run = self.run_loss if self.batch > 0 else None  # resumed inside this epoch
                        for bi in range(self.batch, len(batches)):
                            # an interrupted batch is redone from the same dropout masks and BatchNorm statistics
                            before = (bi, ckpt.rng_state(), [b.clone() for b in model.buffers()])
                            b = batches[bi]
                            t = self.stage_epoch * len(batches) + bi
                            mult = self.sched(min(t, T - 1), T)
                            for g in self.opt.param_groups:
                                g["lr"] = g["max_lr"] * mult
                            with stop_deferred():  # the update and the counters that record it, together
                                loss = self._step(b, labels, trainable)
                                self.step += 1
                                self.batch = bi + 1
                                lv = float(loss.detach())
                                run = lv if run is None else 0.95 * run + 0.05 * lv
                                self.run_loss = run  # saved with the state (a save inside the epoch)
                            bar.update(1)
                            if bi % 5 == 0:
                                bar.set_postfix(loss=f"{run:.3f}", lr=f"{self.opt.param_groups[-1]['lr']:.1e}",
                                                refresh=False)
                            if (time.time() - last_save) / 60 >= cfg.save_every_minutes:
                                self.elapsed += time.time() - t_start
                                t_start = time.time()
                                self.save()
                                last_save = time.time()
                        bar.close()
                        if cfg.bn_recal:
                            recalibrate_batchnorm(model, self.bn_recal_ids, cfg.bs, self.pad_id, self.device,
                                                  self.use_bf16)
                        rep = (self.evaluate(self.valid_data) if self.valid_data is not None else
                               {"loss": None, "accuracy": None, "macro_f1": None})
                        with stop_deferred():  # the epoch's records, best weights and save, together
                            self.elapsed += time.time() - t_start
                            t_start = time.time()
                            self.epoch += 1
                            self.stage_epoch += 1
                            self.batch, before = 0, None
                            score = self._score(rep) if self.valid_data is not None else 0.0
                            # a tie goes to the later epoch: it has trained longer at the same score
                            improved = self.keep_last or self.best is None or score >= self.best
                            if improved:
                                self.best, self.best_epoch, self.bad_epochs = score, self.epoch, 0
                                self.best_state = copy.deepcopy(model.state_dict())
                            elif last_stage:  # patience counts the epochs of the last (fully unfrozen) stage
                                self.bad_epochs += 1
                            rec = {"step": self.step, "epoch": self.epoch, "stage": self.stage + 1, "train_loss": run,
                                   "valid_loss": rep["loss"], "valid_accuracy": rep["accuracy"],
                                   "valid_macro_f1": rep["macro_f1"], "best": improved, "elapsed_s": self.elapsed}
                            if "confusion_matrix" in rep:  # single-label: which classes it predicts at all
                                cm = np.asarray(rep["confusion_matrix"])
                                rec["valid_predicted"] = [rep["labels"][i] for i in np.nonzero(cm.sum(0))[0]]
                                rec["valid_classes"] = int((cm.sum(1) > 0).sum())
                            self.history.append(rec)
                            self.log(rec)
                            if self.progress:
                                tqdm.write(f"epoch {self.epoch}: train loss {run if run is not None else float('nan'):.3f}"
                                           + ("  (no validation data)" if self.valid_data is None else
                                              f"  valid loss {rep['loss']:.3f}  accuracy {rep['accuracy']:.4f}  "
                                              f"macro-F1 {rep['macro_f1']:.4f}")
                                           + ("" if self.keep_last or not improved else "  (best)"))
                            # patience 0: no early stopping, as for the language model (it stopped after
                            # the first epoch of the last stage, whatever --select said)
                            stop = last_stage and cfg.patience > 0 and self.bad_epochs >= cfg.patience
                            if stop:
                                self.stage_epoch = cfg.stage_epochs[self.stage]
                            self.save()
                            last_save = time.time()
                    self.stage += 1
                    self.stage_epoch = 0
            except KeyboardInterrupt:
                if bar is not None:  # its line ends here, so that what is said next starts a line of its own
                    bar.close()
                if before is not None and before[0] == self.batch:  # stopped inside a batch it will redo
                    ckpt.set_rng_state(before[1])
                    with torch.no_grad():
                        for b, old in zip(model.buffers(), before[2]):
                            b.copy_(old)
                self.elapsed += time.time() - t_start
                self.save()
                raise TrainingInterrupted(interrupted_message(self.step, self.out)) from None
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
        if self.progress and not self.keep_last and self.history and self.best_epoch != self.history[-1]["epoch"]:
            tqdm.write(f"keeping epoch {self.best_epoch}, the best validation {self.cfg.metric.replace('_', '-')}"
                       + (" (early stopping ended the run)" if self.bad_epochs >= self.cfg.patience > 0 else ""))
        self.save()
        best = next((h for h in self.history if h["epoch"] == self.best_epoch), self.history[-1] if self.history else {})
        scores = {k: v for k, v in best.items()  # the classes predicted stay in metrics.jsonl
                  if k.startswith("valid_") and k not in ("valid_predicted", "valid_classes")}
        return {"best_epoch": self.best_epoch, **scores,
                "epochs": self.epoch, "steps": self.step, "select": "last" if self.keep_last else "best"}
