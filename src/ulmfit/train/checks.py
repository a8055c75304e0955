"""Checks of the training settings a user writes by hand (LMTrainConfig, ClassifierTrainConfig).

The command line checks its options itself; these catch the same mistakes made from Python (a
batch size of 0, a negative rate, a misspelled schedule, a string where a number goes), which
otherwise end as a ZeroDivisionError or a PyTorch traceback at the first step, or as a run that
saves an untrained model without a word.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import fields

from ..io import UlmfitError

MAX_SEED = 2**63 - 1  # PyTorch's generators take up to 2**64 - 1: room for the offsets added per step and process


class Settings:
    """Checks one config object; each call raises UlmfitError naming the setting."""

    def __init__(self, cfg):
        self.cfg, self.name = cfg, type(cfg).__name__

    def plain_numbers(self) -> None:
        """numpy scalars (np.int64(32), np.float32(0.01)), also inside tuples, become Python numbers:
        they pass isinstance checks as numbers but config.json cannot hold them, and the first save,
        after the training time is spent, would fail."""
        def plain(v):
            if hasattr(v, "item") and getattr(v, "ndim", None) == 0:
                return v.item()
            if hasattr(v, "tolist") and getattr(v, "ndim", None) == 1:  # a numpy array of stage settings
                return tuple(v.tolist())
            if isinstance(v, (tuple, list)):
                return type(v)(plain(x) for x in v)
            return v

        for f in fields(self.cfg):
            setattr(self.cfg, f.name, plain(getattr(self.cfg, f.name)))

    def _fail(self, field: str, should: str):
        raise UlmfitError(f"{self.name}: {field} {should}, not {getattr(self.cfg, field)!r}")

    def integer(self, field: str, lo: int | None = None, none: bool = False, hi: int | None = None) -> None:
        v = getattr(self.cfg, field)
        if v is None and none:
            return
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            self._fail(field, "must be a whole number" + (" or None" if none else ""))
        if lo is not None and v < lo:
            self._fail(field, f"must be at least {lo}")
        if hi is not None and v > hi:
            self._fail(field, f"must be at most {hi:,}")

    def seed(self, field: str = "seed", none: bool = False) -> None:
        """A random seed: what numpy's and PyTorch's generators all take (0 to 2**63 - 1)."""
        self.integer(field, 0, none=none, hi=MAX_SEED)

    def number(self, field: str, lo: float | None = None, hi: float | None = None, above: bool = False,
               below: bool = False, none: bool = False, infinite: bool = False) -> None:
        """A real number in [lo, hi] (`above`: > lo, `below`: < hi); finite unless `infinite` (a
        time that never comes: inf minutes)."""
        v = getattr(self.cfg, field)
        if v is None and none:
            return
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or v != v:
            self._fail(field, "must be a number" + (" or None" if none else ""))
        if not infinite and v in (math.inf, -math.inf):
            self._fail(field, "must be a finite number")
        if lo is not None and (v <= lo if above else v < lo):
            self._fail(field, f"must be {'above' if above else 'at least'} {lo:g}")
        if hi is not None and (v >= hi if below else v > hi):
            self._fail(field, f"must be {'below' if below else 'at most'} {hi:g}")

    def schedule_and_optimizer(self) -> None:
        """The settings both trainers share: discriminative factor, schedule, Adam's betas."""
        from .schedules import SCHEDULES

        self.number("lr_div", 0, above=True)
        self.choice("schedule", tuple(SCHEDULES))
        self.number("cut_frac", 0, 1, below=True)
        self.number("ratio", 1)
        self.number("beta1", 0, 1, below=True)
        self.number("beta2", 0, 1, below=True)

    def boolean(self, *names: str) -> None:
        for field in names:
            if not isinstance(getattr(self.cfg, field), bool):
                self._fail(field, "must be True or False")

    def choice(self, field: str, choices) -> None:
        if getattr(self.cfg, field) not in choices:
            self._fail(field, f"must be one of {', '.join(map(str, choices))}")


def config_from(cls, value, defaults: dict | None = None, what: str = "train_cfg"):
    """`value` as a `cls`: an instance as it is, a dict as settings over `defaults` (the defaults of
    the command line, e.g. a frozen first epoch for fine-tuning), None as the defaults alone."""
    if value is None or isinstance(value, dict):
        given = dict(value or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(given) - known)
        if unknown:
            raise UlmfitError(f"{what}: unknown setting(s) {', '.join(map(repr, unknown))}; "
                              f"{cls.__name__} has {', '.join(sorted(known))}")
        return cls(**{**(defaults or {}), **given})
    if not isinstance(value, cls):
        raise UlmfitError(f"{what} must be a {cls.__name__} or a dict of its settings, not {type(value).__name__}")
    return value
