"""Learning-rate schedules: ULMFiT's slanted triangular rates (section 3.2), one-cycle, constant.

Each schedule is a function of the iteration t (0-based) and the total T that returns a
multiplier in (0, 1]; the optimiser multiplies every group's own maximum rate by it, so
discriminative rates keep their ratios at every step.
"""

from __future__ import annotations

import math


def slanted_triangular(t: int, T: int, cut_frac: float = 0.1, ratio: float = 32.0) -> float:
    """eta_t / eta_max from the paper: a short linear warm-up to the peak at cut = floor(T * cut_frac),
    then a long linear decay over the remaining T - cut steps; the lowest rate is 1/ratio of the peak.

    The paper writes the decay's length as cut * (1 / cut_frac - 1), which is T - cut when T is a
    multiple of 1 / cut_frac (the formula is then the paper's to the digit). For other T it is not:
    a stage of 15 steps (cut 1) would reach the floor at step 10 and stay there for a third of the
    stage, one of 6 steps (cut floored to 0, raised to 1) would end at 57% of its peak. Short stages
    are common in gradual unfreezing on a few hundred labels, so the decay always spans T - cut."""
    cut = max(1, math.floor(T * cut_frac))
    if t < cut:
        p = t / cut
    else:
        p = 1 - (t - cut) / max(1, T - cut)
    return (1 + max(p, 0.0) * (ratio - 1)) / ratio


def one_cycle(t: int, T: int, pct_start: float = 0.25, div: float = 25.0, final_div: float = 1e4) -> float:
    """fastai's one-cycle: cosine warm-up from 1/div to the peak, cosine anneal to 1/final_div."""
    warm = max(1, int(T * pct_start))
    if t < warm:
        start, end, pos = 1 / div, 1.0, t / warm
    else:
        start, end, pos = 1.0, 1 / final_div, (t - warm) / max(1, T - warm)
    return end + (start - end) * (1 + math.cos(math.pi * min(pos, 1.0))) / 2


def constant(t: int, T: int) -> float:
    return 1.0


SCHEDULES = {"stlr": slanted_triangular, "onecycle": one_cycle, "constant": constant}


def schedule(name: str, **kwargs):
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose from {', '.join(SCHEDULES)}")
    fn = SCHEDULES[name]
    if name == "stlr":
        return lambda t, T: fn(t, T, kwargs.get("cut_frac", 0.1), kwargs.get("ratio", 32.0))
    return fn


def discriminative_lrs(lr: float, n_groups: int, factor: float = 2.6) -> list[float]:
    """eta^(l-1) = eta^l / factor: the top group (the head) gets `lr`, each group below 2.6x less."""
    return [lr / factor ** (n_groups - 1 - i) for i in range(n_groups)]
