"""The learning-rate range test (Smith 2017; fastai's lr_find): raise the rate exponentially over a
few hundred batches, record the smoothed loss, and suggest a rate on the steepest part of the
descent, before the loss blows up. The model's weights are restored afterwards.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import torch

from ..io import UlmfitError, is_real_number, whole_number
from ..progress import progress_bar
from .finetune import lm_layer_groups, param_groups
from .loop import autocast_ctx


def lr_find(model, stream, *, start_lr: float = 1e-7, end_lr: float = 10.0, num: int = 100, beta: float = 0.98,
            lr_div: float = 2.6, betas=(0.8, 0.99), wd: float = 0.01, clip: float = 0.3, use_bf16: bool = False,
            progress: bool = True) -> dict:
    """Returns {"lrs", "losses", "suggestion", "min_loss_lr"}; lrs are the top group's rate."""
    for name, v in (("start_lr", start_lr), ("end_lr", end_lr), ("lr_div", lr_div)):
        if not is_real_number(v, 0, above=True):
            raise UlmfitError(f"lr_find: {name} must be a finite number above 0, not {v!r}")
    if not start_lr < end_lr:
        raise UlmfitError(f"lr_find: the rates go up from start_lr to end_lr (given {start_lr:g} and {end_lr:g})")
    num = whole_number(num, "lr_find: num (batches)", 2)
    saved = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    groups = lm_layer_groups(model)
    for g in groups:
        for p in g:
            p.requires_grad_(True)
    opt = torch.optim.AdamW(param_groups(groups, start_lr, wd, lr_div), betas=betas)
    mult = (end_lr / start_lr) ** (1 / max(1, num - 1))
    lrs, losses = [], []
    avg, best = 0.0, float("inf")
    model.train()
    model.reset()
    it = stream.iter_epoch(0)
    bar = progress_bar(total=num, desc="lr range test", unit="batch", disable=not progress)
    try:
        for i in range(num):
            try:
                x, y, _ = next(it)
            except StopIteration:
                it = stream.iter_epoch(1 + i)
                x, y, _ = next(it)
            lr = start_lr * mult ** i
            for g in opt.param_groups:
                g["lr"] = g["max_lr"] * lr / start_lr
            with autocast_ctx(use_bf16, torch.device("cpu")):
                loss, ce, _ = model.loss(x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            v = float(ce)
            avg = beta * avg + (1 - beta) * v
            smooth = avg / (1 - beta ** (i + 1))
            lrs.append(lr)
            losses.append(smooth)
            best = min(best, smooth)
            bar.update(1)
            bar.set_postfix(lr=f"{lr:.1e}", loss=f"{smooth:.3f}", refresh=False)
            if not math.isfinite(smooth) or smooth > 4 * best:
                break
    finally:
        bar.close()
        model.load_state_dict(saved)
        torch.set_rng_state(rng)
        model.reset()
    return {"lrs": lrs, "losses": losses, **suggest(lrs, losses)}


def suggest(lrs: list[float], losses: list[float]) -> dict:
    """Steepest descent of the smoothed loss (ignoring the noisy first and the diverging last tenth),
    and a tenth of the rate with the lowest loss; we suggest the smaller of the two."""
    n = len(losses)
    if n < 5:
        return {"suggestion": None, "steepest_lr": None, "min_loss_lr": None}  # a diverging start is no advice
    lo, hi = max(1, n // 10), max(2, n - n // 10)
    l = np.log10(np.asarray(lrs[lo:hi]))
    g = np.gradient(np.asarray(losses[lo:hi]), l)
    steep = float(lrs[lo + int(np.argmin(g))])
    finite = np.where(np.isfinite(losses), losses, np.inf)  # a NaN is no minimum
    min_lr = float(lrs[int(np.argmin(finite))]) / 10
    return {"suggestion": min(steep, min_lr), "steepest_lr": steep, "min_loss_lr": min_lr}


def plot_lr_find(result: dict, path: str | Path) -> Path:
    from matplotlib.figure import Figure  # not pyplot: the caller's backend (a notebook's) stays as it is

    from ..io import atomic_path

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.plot(result["lrs"], result["losses"])
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (top layer group)")
    ax.set_ylabel("smoothed training loss")
    if result.get("suggestion"):
        ax.axvline(result["suggestion"], color="red", linestyle="--", label=f"suggested {result['suggestion']:.1e}")
        ax.legend()
    ax.set_title("LR range test")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path
