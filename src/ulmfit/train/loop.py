"""The language-model training loop: fit, validate, checkpoint, resume.

One loop serves both ULMFiT stages that train a language model: general-domain pretraining
(all layers, one rate) and target-task fine-tuning (discriminative rates, STLR, and optionally a
first phase that trains only the top group so new words get vectors before the LSTMs move).
Every step's learning rate is each group's peak rate x the schedule's multiplier x
seq_len / bptt (AWD-LSTM's correction for variable-length BPTT).
"""

from __future__ import annotations

import functools
import math
import signal
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from .. import checkpoint as ckpt
from ..io import TrainingInterrupted, UlmfitError, append_jsonl, atomic_group, trim_jsonl
from ..progress import progress_bar
from ..model.heads import AWDLSTMLanguageModel
from . import distributed as dist_
from .finetune import freeze_to, lm_layer_groups, param_groups
from .checks import Settings
from .precision import bf16_pays
from .schedules import schedule as make_schedule


BEST_WEIGHTS = "best.safetensors"  # early stopping: the weights of the best epoch so far


@dataclass
class LMTrainConfig:
    """Everything that decides how a language model is trained (written to config.json)."""

    epochs: int = 1
    freeze_epochs: int = 0  # first train only the top group (embedding + decoder) for this many epochs
    bs: int = 64
    bptt: int = 70
    lr: float = 4e-3  # peak rate of the top group (ULMFiT's LM fine-tuning rate)
    freeze_lr: float | None = None  # peak rate while only the top group trains (default: lr)
    lr_div: float = 2.6  # discriminative factor between groups; 1.0 = one rate for all
    schedule: str = "stlr"  # stlr | onecycle | constant
    cut_frac: float = 0.1
    ratio: float = 32.0
    beta1: float = 0.8
    beta2: float = 0.99
    wd: float = 0.01  # decoupled (AdamW) weight decay
    clip: float = 0.3  # gradient-norm clipping (published LM scripts)
    ar_alpha: float = 2.0
    tar_beta: float = 1.0
    bf16: bool = True  # bfloat16 autocast on CPUs that support it (weights and optimizer stay fp32)
    variable_bptt: bool = True
    backwards: bool = False
    seed: int = 0
    max_tokens: int | None = None  # stop once this many training tokens were seen (budgeted runs)
    max_minutes: float | None = None  # ... or after this much wall time
    save_every_minutes: float = 10.0
    log_every: int = 50
    eval_every: int = 0  # also validate every this many steps (0: only at the end of each epoch)
    patience: int = 0  # stop after this many epochs without a lower validation loss, keep the best (0: off)

    def __post_init__(self):
        c = Settings(self)
        c.plain_numbers()
        c.integer("epochs", 0)
        c.integer("freeze_epochs", 0)
        if self.epochs + self.freeze_epochs < 1:
            raise UlmfitError("LMTrainConfig: epochs + freeze_epochs must be at least 1 (nothing would train)")
        c.integer("bs", 1)
        c.integer("bptt", 1)
        c.number("lr", 0, above=True)
        c.number("freeze_lr", 0, above=True, none=True)
        c.schedule_and_optimizer()
        for name in ("wd", "clip", "ar_alpha", "tar_beta"):
            c.number(name, 0)
        c.boolean("bf16", "variable_bptt", "backwards")
        c.seed()
        c.integer("max_tokens", 1, none=True)
        c.number("max_minutes", 0, none=True, infinite=True)  # 0 or None: no time limit
        c.number("save_every_minutes", 0, infinite=True)  # 0: a checkpoint after every step
        c.integer("log_every", 1)
        c.integer("eval_every", 0)
        c.integer("patience", 0)

    @classmethod
    def for_pretraining(cls, **settings) -> "LMTrainConfig":
        """The settings `ulmfit pretrain` uses, with `settings` on top: one rate for all layers."""
        return cls(**{**PRETRAIN_DEFAULTS, **settings})

    @classmethod
    def for_finetuning(cls, **settings) -> "LMTrainConfig":
        """The settings `ulmfit finetune-lm` uses, with `settings` on top: a first epoch that trains
        only the embedding and decoder (new words get vectors), then 3 with discriminative rates,
        stopped early when the held-out perplexity rises."""
        return cls(**{**FINETUNE_DEFAULTS, **settings})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LMTrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# What `ulmfit pretrain` and `ulmfit finetune-lm` (and their Python functions, given no train_cfg
# or a dict of settings) change from LMTrainConfig's field defaults.
PRETRAIN_DEFAULTS = {"lr": 3e-3, "lr_div": 1.0}
FINETUNE_DEFAULTS = {"freeze_epochs": 1, "epochs": 3, "freeze_lr": 1e-2, "lr": 4e-3, "patience": 1}


def autocast_ctx(enabled: bool, device: torch.device):
    if not enabled:
        return nullcontext()
    if device.type == "cpu":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return torch.autocast(device.type, dtype=torch.bfloat16)


def keeps_callers_rng(fn):
    """Training seeds PyTorch's random generators (its `seed` setting) and draws from them; the
    caller's generators are put back as they were when the call returns or fails, so a notebook's
    own `torch.manual_seed` is not overridden by a training call."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        cpu = torch.random.get_rng_state()
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
        try:
            return fn(*args, **kwargs)
        finally:
            torch.random.set_rng_state(cpu)
            if cuda is not None:
                torch.cuda.set_rng_state_all(cuda)

    return run


PYTHON_RESUME = " (from Python: the same call with resume=True)"  # left out by the command line
RESUME_ADVICE = f"Continue with the same command and --resume{PYTHON_RESUME}."


def interrupted_message(step: int, out) -> str:
    """What a trainer stopped by Ctrl-C or SIGTERM says (both trainers; callers that resume by
    other means, such as bench/accuracy.py, replace RESUME_ADVICE with their own). Only process 0
    of a distributed run saves, so the others say so instead."""
    rank = dist_.rank_world()[0]
    if rank:
        return f"process {rank} was interrupted at step {step}; process 0 saves the run in {out}, if it was stopped too"
    return f"interrupted at step {step}; everything up to it is saved in {out}. {RESUME_ADVICE}"


_deferred = {"depth": 0, "signal": None}


class _Deferral:
    @staticmethod
    def drop() -> None:
        """Forget a signal that arrived in the block: the block finished the run, which then ends
        normally (a run that saved its last step is finished, not interrupted)."""
        _deferred["signal"] = None


@contextmanager
def stop_deferred():
    """A Ctrl-C or SIGTERM that arrives inside this block stops the run right after it, not in its
    middle: an optimizer step and the counters that record it, or an epoch's records, best weights
    and save, then happen whole or not at all, so the saved checkpoint agrees with itself and a
    resumed run redoes exactly what was not done. Works with the handler of `sigterm_as_interrupt`,
    which runs in the main thread: elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield _Deferral()
        return
    _deferred["depth"] += 1
    try:
        yield _Deferral()
    finally:
        _deferred["depth"] -= 1
        pending = _deferred["signal"] if _deferred["depth"] == 0 else None
        if pending is not None:
            _deferred["signal"] = None
    if pending is not None:  # only on a normal exit: an exception from the block goes on as it is
        ignore_stop_signals()
        raise KeyboardInterrupt


# Set by the command line in a torchrun worker, whose process ends when its command does.
STOPPING_ENDS_PROCESS = {"torchrun_cli": False}


@contextmanager
def sigterm_as_interrupt():
    """Treat SIGTERM (a scheduler or `kill`) like Ctrl-C so the run saves before it stops. The first
    of either signal stops the run; those that follow are ignored until the run has saved and
    returned: a Ctrl-C in the terminal of a torchrun job reaches each worker twice (from the
    terminal, and forwarded by torchrun), and the second one used to break the save."""
    signals = (signal.SIGINT, signal.SIGTERM)

    def handler(signum, frame):
        if _deferred["depth"]:  # inside stop_deferred(): stop when it ends
            _deferred["signal"] = signum
            return
        ignore_stop_signals()
        raise KeyboardInterrupt

    _deferred["signal"] = None

    try:
        old = {s: signal.signal(s, handler) for s in signals}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    except BaseException:
        if STOPPING_ENDS_PROCESS["torchrun_cli"]:
            # A torchrun worker of the command line that stops (interrupted, its partner lost, an
            # error) keeps ignoring them until it exits: torchrun's SIGTERM to the survivors,
            # arriving once the old handler (the default: die) was back, killed process 0 before
            # it said where the run was saved. From Python the handlers always come back.
            ignore_stop_signals()
            old = {}
        raise
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def ignore_stop_signals() -> None:
    """SIGINT and SIGTERM are ignored from here until `sigterm_as_interrupt` restores them: a run
    that is saving before it stops finishes the save (in the main thread; elsewhere a no-op)."""
    try:
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.SIG_IGN)
    except ValueError:
        pass


@torch.no_grad()
def evaluate_lm(model: AWDLSTMLanguageModel, stream, use_bf16: bool = False, device=None, progress: bool = False) -> dict:
    """Mean next-token loss, perplexity and accuracy over a non-shuffled, fixed-length stream."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    model.reset()
    loss_sum, correct, n = 0.0, 0, 0
    it = stream.iter_epoch(0)
    if progress:
        it = progress_bar(it, total=stream.n_batches(0), desc="evaluating", unit="batch", leave=False)
    with autocast_ctx(use_bf16, device):
        for x, y, _ in it:
            x, y = x.to(device), y.to(device)
            _, ce, corr = model.loss(x, y, 0.0, 0.0)
            loss_sum += float(ce) * y.numel()
            correct += int(corr)
            n += y.numel()
    model.reset()
    model.train(was_training)
    if n == 0:
        raise UlmfitError("the validation data is too small to make a single batch")
    loss = loss_sum / n
    return {"loss": loss, "perplexity": math.exp(min(loss, 50)), "accuracy": correct / n, "tokens": n}


def param_names(model: torch.nn.Module) -> dict[int, str]:
    names: dict[int, str] = {}
    for name, p in model.named_parameters():  # named_parameters skips the second name of a tied weight
        names.setdefault(id(p), name)
    return names


def diverged_advice(out: Path, lower: str) -> str:
    """What a user does after the loss became NaN or infinite: --resume keeps a run's saved
    settings, so lower rates need a new run."""
    if (Path(out) / ckpt.CONFIG).exists():
        return (f"the last good checkpoint is kept in {out}. Train again with {lower} and --overwrite "
                "(--resume keeps the run's saved rates)")
    return f"nothing was saved. Train again with {lower}"


class LMTrainer:
    """Trains `model` on `train_stream`, validates on `valid_stream`, saves into `out`.

    ``save_fn(step)`` writes the model directory (weights, vocab, config); the trainer adds the
    training state beside it so ``resume()`` can continue exactly where a run stopped.

    ``plan_epochs(epoch_seconds)`` (optional, single process, needs ``freeze_epochs`` >= 1) is asked
    once, when the frozen phase ends, how many epochs the unfrozen phase gets, given the wall time
    of the last frozen epoch (validation included): a time budget that fits the schedule to the
    machine (``ulmfit demo``). The answer is clamped to 1..``cfg.epochs`` (0 stays 0) and the slanted triangular
    schedule then spans exactly that many epochs; ``self.cfg`` (saved with every checkpoint, so a
    resumed run keeps the plan) records it.
    """

    def __init__(self, model: AWDLSTMLanguageModel, train_stream, valid_stream, cfg: LMTrainConfig, out: Path,
                 save_fn, device: torch.device | None = None, progress: bool = True,
                 plan_epochs: Callable[[float], int] | None = None):
        self.model, self.train_stream, self.valid_stream = model, train_stream, valid_stream
        self.cfg, self.out, self.save_fn = replace(cfg), Path(out), save_fn
        if plan_epochs is not None and cfg.freeze_epochs < 1:
            raise UlmfitError("planning the epochs needs a frozen phase (freeze_epochs >= 1) to time an epoch by")
        self.plan_epochs = plan_epochs
        self.device = device or torch.device("cpu")
        self.rank, self.world = dist_.rank_world()
        self.main = self.rank == 0
        if plan_epochs is not None and self.world > 1:
            raise UlmfitError("planning the epochs by wall time works in a single process only")
        self.progress = progress and self.main
        self.use_bf16 = cfg.bf16 and (self.device.type != "cpu" or bf16_pays())
        if self.world > 1:  # one precision for all processes, even if their probes disagree
            self.use_bf16 = not dist_.any_process(not self.use_bf16, self.device)
        self.groups = lm_layer_groups(model)
        self.opt = torch.optim.AdamW(
            param_groups(self.groups, cfg.lr, cfg.wd, cfg.lr_div), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
            foreach=True,
        )
        self.names = param_names(model)
        self.sched = make_schedule(cfg.schedule, cut_frac=cfg.cut_frac, ratio=cfg.ratio)
        self.step = 0  # optimizer steps so far
        self.epoch = 0  # current epoch (freeze epochs first)
        self.batch = 0  # batches of the current epoch already done
        self.tokens = 0
        self.elapsed = 0.0  # training seconds over all runs of this directory
        self.history: list[dict] = []  # one record per epoch (or partial epoch at a stop)
        self.curve: list[dict] = []  # validation every eval_every steps
        self.eval_pending = False  # an eval_every validation that an interrupt cut short: redone on resume
        self.elapsed_run = 0.0  # training seconds of this invocation (for max_minutes)
        self.metrics_path = self.out / "metrics.jsonl"
        self._nb_cache: dict[int, int] = {}
        self._budget: int | None = None
        self.best_loss: float | None = None  # early stopping (cfg.patience): lowest validation loss so far
        self.best_epoch = 0
        self.kept_epoch: int | None = None  # set when the weights kept are an earlier epoch's
        self.bad_epochs = 0
        self.run_loss = None  # the current epoch's running train loss (kept in the state for a resume)
        self.best_state: dict | None = None

    # -- bookkeeping ---------------------------------------------------------------------------
    @property
    def total_epochs(self) -> int:
        return self.cfg.freeze_epochs + self.cfg.epochs

    def phase(self, epoch: int) -> tuple[int, int]:
        """(first epoch, number of epochs) of the phase `epoch` belongs to; each phase has its own schedule."""
        if epoch < self.cfg.freeze_epochs:
            return 0, self.cfg.freeze_epochs
        return self.cfg.freeze_epochs, self.cfg.epochs

    def _n_batches(self, epoch: int) -> int:
        if epoch not in self._nb_cache:
            self._nb_cache[epoch] = self.train_stream.n_batches(epoch)
        return self._nb_cache[epoch]

    def _budget_batches(self) -> int | None:
        """How many batches (counted from the very first) fit in max_tokens, from the exact BPTT lengths."""
        if not self.cfg.max_tokens:
            return None
        if self._budget is None:
            seen, count = 0, 0
            for e in range(self.total_epochs):
                for L in self.train_stream.seq_lens(e):
                    seen += self.cfg.bs * self.world * L  # the loop counts every process's tokens
                    count += 1
                    if seen >= self.cfg.max_tokens:
                        self._budget = count
                        return count
            self._budget = count
        return self._budget

    def phase_position(self, epoch: int, batch: int) -> tuple[int, int]:
        """(t, T) of the current phase's schedule."""
        start, n = self.phase(epoch)
        done = sum(self._n_batches(e) for e in range(start, epoch)) + batch
        total = sum(self._n_batches(e) for e in range(start, start + n))
        budget = self._budget_batches()
        if budget is not None:
            before = sum(self._n_batches(e) for e in range(0, start))
            total = min(total, max(1, budget - before))
        return done, max(total, 1)

    def state(self) -> dict:
        return {"step": self.step, "epoch": self.epoch, "batch": self.batch, "tokens": self.tokens,
                "elapsed": self.elapsed, "history": self.history, "curve": self.curve, "train": self.cfg.to_dict(),
                "best_loss": self.best_loss, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs,
                "run_loss": self.run_loss, "world": self.world, "eval_pending": self.eval_pending}

    def save(self) -> None:
        if not self.main:  # all processes hold the same weights; one writes them
            return
        with atomic_group():  # weights, config and training state replace the last ones together
            self.save_fn(self.step, self.history)
            ckpt.save_train_state(self.out, self.opt, self.names, self.state(), self.model.encoder.state)

    def resume(self) -> None:
        st = ckpt.load_train_state(self.out, self.opt, self.names)
        saved_world = st.get("world")  # runs saved before it was recorded: not checked
        if saved_world is not None and saved_world != self.world:
            how = (f"torchrun --nproc_per_node {saved_world} ..." if saved_world > 1 else "one process, without torchrun")
            raise UlmfitError(f"cannot resume: {self.out} was trained by {saved_world} process(es), this run has "
                              f"{self.world}; each step's batch and the position in the data depend on it. Resume it "
                              f"with {how}")
        self.step, self.epoch, self.batch = st["step"], st["epoch"], st["batch"]
        self.tokens, self.elapsed, self.history = st["tokens"], st.get("elapsed", 0.0), st.get("history", [])
        self.curve = st.get("curve", [])
        self.eval_pending = bool(st.get("eval_pending", False))
        self.best_loss, self.best_epoch = st.get("best_loss"), st.get("best_epoch", 0)
        self.bad_epochs = st.get("bad_epochs", 0)
        if self.cfg.patience and (self.out / BEST_WEIGHTS).exists():
            self.best_state, meta = ckpt.load_tensors(self.out / BEST_WEIGHTS)
            if meta.get("epoch") not in (None, str(self.best_epoch)):  # from a save that failed (before it
                # joined the checkpoint's files): not the epoch the state names
                raise UlmfitError(f"cannot resume: {self.out / BEST_WEIGHTS} holds epoch {meta.get('epoch')}, "
                                  f"and the checkpoint says the best epoch is {self.best_epoch}; the run cannot "
                                  "restore its best weights. Start it again (--overwrite), or keep it as it is")
        # Only process 0 saves, so its hidden state is the only one kept: the other processes read
        # other rows of the text and start their first resumed batch from a fresh (zero) state
        # rather than from process 0's context.
        self._resume_hidden = st.get("hidden") if self.batch > 0 and self.main else None
        # the epoch's running train loss goes on from where it was (the loop uses it only when batch > 0)
        self.run_loss = st.get("run_loss")
        if self.main:  # lines a killed run logged after its last checkpoint come again
            trim_jsonl(self.metrics_path, self.step)

    def log(self, record: dict) -> None:
        if self.main:
            append_jsonl(self.metrics_path, record)

    def validate(self) -> dict:
        if not self.valid_stream or not self.main:
            return {}
        carried = self.model.encoder.state  # the training streams continue after validation
        try:
            return evaluate_lm(self.model, self.valid_stream, self.use_bf16, self.device)
        finally:  # also when interrupted: the state saved for a resume is the training streams'
            self.model.encoder.state = carried

    def _eval_point(self, run_loss, elapsed_s: float) -> None:
        """The validation every `eval_every` steps: one point of the learning curve. Until it is
        logged, the state saved by an interrupt says that it is pending, so a resumed run does it
        first (the weights are those of this step: nothing trains in between)."""
        self.eval_pending = True
        vv = self.validate()
        with stop_deferred():  # the point and its record in metrics.jsonl, together
            if vv:
                rec = {"step": self.step, "epoch": self.epoch, "tokens": self.tokens, "train_loss": run_loss,
                       "elapsed_s": elapsed_s, **{f"valid_{k}": val for k, val in vv.items() if k != "tokens"}}
                self.curve.append(rec)
                self.log(rec)
            self.eval_pending = False
        self.model.train()

    # -- the loop ------------------------------------------------------------------------------
    def set_lrs(self, t: int, T: int, seq_len: int) -> float:
        mult = self.sched(t, T) * seq_len / self.cfg.bptt
        if self.epoch < self.cfg.freeze_epochs and self.cfg.freeze_lr:
            mult *= self.cfg.freeze_lr / self.cfg.lr
        for g in self.opt.param_groups:
            g["lr"] = g["max_lr"] * mult
        return self.opt.param_groups[-1]["lr"]

    def fit(self) -> dict:
        cfg, model = self.cfg, self.model
        t_start = time.time()
        last_save = time.time()
        result: dict = {}
        stop = False
        before = None  # (hidden state, RNG state) at the start of a batch whose update has not happened
        bar = None
        if self.main:
            # weights and Adam's two moments, and the best epoch's weights under early stopping
            ckpt.check_free_space(self.out, model, 3 + bool(cfg.patience))
        if self.world > 1:
            dist_.broadcast_parameters(model)
            # Same weights everywhere, but each process draws its own dropout masks.
            torch.manual_seed(cfg.seed + 1000 * self.rank + self.step)
        with sigterm_as_interrupt():
            try:
                if self.eval_pending:  # the run was interrupted while it validated at this step
                    self._eval_point(self.run_loss, self.elapsed)
                while self.epoch < self.total_epochs and not stop:
                    frozen = self.epoch < cfg.freeze_epochs
                    freeze_to(self.groups, -1 if frozen else 0)
                    trainable = [p for g in self.groups for p in g if p.requires_grad]
                    model.train()
                    model.reset()
                    if getattr(self, "_resume_hidden", None) is not None:
                        model.encoder.state = [(h.to(self.device), c.to(self.device)) for h, c in self._resume_hidden]
                        self._resume_hidden = None
                    n_batches = self._n_batches(self.epoch)
                    bar = progress_bar(total=n_batches, initial=self.batch, disable=not self.progress, unit="batch",
                                       desc=f"epoch {self.epoch + 1}/{self.total_epochs}"
                                       + (" (top group only)" if frozen else ""), dynamic_ncols=True)
                    run_loss, run_n, t0, tok0 = 0.0, 0, time.time(), 0
                    if self.batch > 0 and self.run_loss is not None:  # resumed inside this epoch
                        run_loss, run_n = self.run_loss, 1
                    first_batch = self.batch  # > 0 when resumed inside this epoch
                    for x, y, seq_len in self.train_stream.iter_epoch(self.epoch, self.batch):
                        # restored if this batch is interrupted, and redone with the same dropout masks;
                        # the hidden state is None at an epoch's first batch, so the pair marks the batch
                        # (an interrupt in that batch's forward pass kept the RNG its masks had advanced)
                        before = (model.encoder.state, ckpt.rng_state())
                        t, T = self.phase_position(self.epoch, self.batch)
                        lr = self.set_lrs(min(t, T - 1), T, seq_len)
                        x, y = x.to(self.device), y.to(self.device)
                        with autocast_ctx(self.use_bf16, self.device):
                            loss, ce, _ = model.loss(x, y, cfg.ar_alpha, cfg.tar_beta)
                        if not torch.isfinite(loss):
                            raise UlmfitError(
                                f"the loss became {loss.detach().item()} at step {self.step}; "
                                + diverged_advice(self.out, "a lower --lr (or --clip)")
                            )
                        self.opt.zero_grad(set_to_none=True)
                        loss.backward()
                        dist_.average_gradients(trainable)
                        if cfg.clip:
                            torch.nn.utils.clip_grad_norm_(trainable, cfg.clip)
                        # the update, the counters and the log line that record it, together
                        with stop_deferred() as deferral:
                            self.opt.step()
                            before = None
                            self.step += 1
                            self.batch += 1
                            self.tokens += y.numel() * self.world
                            tok0 += y.numel() * self.world
                            run_loss = 0.98 * run_loss + 0.02 * float(ce) if run_n else float(ce)
                            run_n += 1
                            self.run_loss = run_loss  # saved with the state (a save inside the epoch)
                            dt = time.time() - t0
                            if self.step % cfg.log_every == 0:
                                self.log({"step": self.step, "epoch": self.epoch, "tokens": self.tokens,
                                          "train_loss": run_loss, "lr": lr, "tokens_per_s": tok0 / max(dt, 1e-9),
                                          "elapsed_s": self.elapsed + time.time() - t_start})
                            if cfg.max_tokens and self.tokens >= cfg.max_tokens:
                                stop = True
                                deferral.drop()  # the budget is spent: the run ends (and saves) now anyway
                        bar.update(1)
                        if run_n % 10 == 0 or run_n == 1:
                            bar.set_postfix(loss=f"{run_loss:.3f}", ppl=f"{math.exp(min(run_loss, 50)):.1f}",
                                            tok_s=f"{tok0 / max(dt, 1e-9):,.0f}", lr=f"{lr:.2e}", refresh=False)
                        if cfg.max_minutes and (self.elapsed_run + time.time() - t_start) / 60 >= cfg.max_minutes:
                            stop = True
                        if self.world > 1 and cfg.max_minutes:
                            stop = dist_.any_process(stop, self.device)  # clocks differ; all must agree
                        if cfg.eval_every and self.step % cfg.eval_every == 0 and not stop:
                            self._eval_point(run_loss, self.elapsed + time.time() - t_start)
                        if stop:
                            break
                        if (time.time() - last_save) / 60 >= cfg.save_every_minutes:
                            self.elapsed += time.time() - t_start
                            self.elapsed_run += time.time() - t_start
                            t_start = time.time()
                            self.save()
                            last_save = time.time()
                    bar.close()
                    epoch_done = self.batch >= n_batches
                    v = self.validate()
                    # the epoch's records, best weights and save, together; best.safetensors joins the
                    # checkpoint's files (written on its own, a save that failed left it an epoch ahead)
                    with stop_deferred() as deferral, atomic_group():
                        self.elapsed += time.time() - t_start
                        self.elapsed_run += time.time() - t_start
                        t_start = time.time()
                        record = {"step": self.step, "epoch": self.epoch + (1 if epoch_done else 0),
                                  "tokens": self.tokens, "train_loss": run_loss, "elapsed_s": self.elapsed,
                                  **{f"valid_{k}": val for k, val in v.items() if k != "tokens"}}
                        if not epoch_done:
                            record["partial_epoch"] = self.batch / max(n_batches, 1)
                        self.history.append(record)
                        self.log(record)
                        if self.progress and v:
                            tqdm.write(f"epoch {self.epoch + 1}: train loss {run_loss:.3f}  valid loss {v['loss']:.3f}  "
                                       f"perplexity {v['perplexity']:.2f}  accuracy {v['accuracy']:.3f}")
                        if epoch_done:
                            self.epoch += 1
                            self.batch = 0
                            if self.plan_epochs is not None and self.epoch == cfg.freeze_epochs:
                                # a resumed partial epoch is scaled up to a whole one
                                self._plan((time.time() - t0) * n_batches / max(1, n_batches - first_batch))
                                cfg = self.cfg
                            if cfg.patience and v and self.main:
                                stop = self._early_stop(v["loss"], frozen) or stop
                            if self.world > 1 and cfg.patience:
                                stop = dist_.any_process(stop, self.device)
                        self.save()
                        last_save = time.time()
                        result = record
                        if stop or self.epoch >= self.total_epochs:
                            deferral.drop()  # that was the last epoch: the run is finished, not interrupted
            except (KeyboardInterrupt, dist_.PartnerLost) as e:
                # torchrun sends SIGTERM to the survivors of a lost process: it must not cut this save short
                ignore_stop_signals()
                if bar is not None:  # its line ends here, so that what is said next starts a line of its own
                    bar.close()
                if before is not None:  # the weights were not updated: redo this batch on resume
                    model.encoder.state = before[0]
                    ckpt.set_rng_state(before[1])
                self.elapsed += time.time() - t_start
                self.elapsed_run += time.time() - t_start
                self.save()  # process 0 alone writes
                if isinstance(e, dist_.PartnerLost):
                    if not self.main:  # the CLI says "process N stopped"; process 0 says why and where
                        raise
                    raise UlmfitError(f"the exchange of gradients between processes failed ({e}): another process "
                                      f"of this torchrun job stopped or failed; everything up to step {self.step} "
                                      f"is saved in {self.out}. Continue with the same torchrun command and "
                                      "--resume") from None
                raise TrainingInterrupted(interrupted_message(self.step, self.out)) from None
        if cfg.patience and self.best_state is not None and self.best_epoch != self.epoch:
            ckpt.load_weights(model, self.best_state, self.out / BEST_WEIGHTS)  # the lowest validation loss
            self.kept_epoch = self.best_epoch  # the saved config says so (`api._run`)
            result = {**next((h for h in self.history if h.get("epoch") == self.best_epoch), result),
                      "restored_best_epoch": self.best_epoch}
            if self.progress:
                tqdm.write(f"keeping epoch {self.best_epoch}, the lowest validation loss ({self.best_loss:.4f})")
            self.save()
        return result

    def _plan(self, epoch_seconds: float) -> None:
        """Fix the number of unfrozen epochs from the measured wall time of a frozen one."""
        k = min(self.cfg.epochs, max(1, int(self.plan_epochs(epoch_seconds)))) if self.cfg.epochs else 0
        self.cfg = replace(self.cfg, epochs=k)
        self._budget = None  # the max_tokens budget is counted over all epochs (batch counts per epoch stay)
        self.log({"step": self.step, "epoch": self.epoch, "planned_epochs": k, "frozen_epoch_s": epoch_seconds})

    def _early_stop(self, loss: float, frozen: bool) -> bool:
        """Track the best epoch (its weights in memory and in best.safetensors); True = stop now."""
        if self.best_loss is None or loss < self.best_loss:
            self.best_loss, self.best_epoch, self.bad_epochs = loss, self.epoch, 0
            self.best_state = {k: v.clone() for k, v in ckpt._unique_state_dict(self.model).items()}
            if self.main:
                ckpt.save_tensors(self.out / BEST_WEIGHTS, self.best_state, {"epoch": str(self.epoch)})
            return False
        if frozen:  # patience counts the epochs of the unfrozen phase
            return False
        self.bad_epochs += 1
        if self.bad_epochs >= self.cfg.patience:
            if self.progress:
                tqdm.write(f"validation loss has not improved for {self.bad_epochs} epoch(s): stopping early")
            return True
        return False
