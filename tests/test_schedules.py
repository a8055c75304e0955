"""Slanted triangular learning rates and discriminative rates match ULMFiT's formulas."""

import math

import pytest

from ulmfit.train.schedules import discriminative_lrs, one_cycle, slanted_triangular


def paper_stlr(t, T, cut_frac=0.1, ratio=32, eta_max=0.01):
    cut = math.floor(T * cut_frac)
    p = t / cut if t < cut else 1 - (t - cut) / (cut * (1 / cut_frac - 1))
    return eta_max * (1 + p * (ratio - 1)) / ratio


@pytest.mark.parametrize("T", [100, 1000, 12340])
def test_stlr_matches_the_paper_at_start_peak_and_end(T):
    cut = math.floor(T * 0.1)
    for t in (0, cut, T - 1, cut // 2, (cut + T) // 2):
        assert 0.01 * slanted_triangular(t, T) == pytest.approx(paper_stlr(t, T), rel=1e-12)
    assert 0.01 * slanted_triangular(0, T) == pytest.approx(0.01 / 32)
    assert 0.01 * slanted_triangular(cut, T) == pytest.approx(0.01)
    assert slanted_triangular(T - 1, T) < 2 / 32  # back near the floor at the end


@pytest.mark.parametrize("T", [7, 128, 12345])
def test_stlr_never_goes_below_its_floor(T):
    vals = [slanted_triangular(t, T) for t in range(T)]
    assert min(vals) == pytest.approx(1 / 32)
    assert max(vals) == pytest.approx(1.0)


@pytest.mark.parametrize("T", [2, 6, 15, 19, 35, 12345])
def test_stlr_decays_over_the_whole_stage_whatever_its_length(T):
    # short stages (gradual unfreezing on a few hundred labels) anneal to near the floor at their
    # end, and never sit at the floor before it
    vals = [slanted_triangular(t, T) for t in range(T)]
    peak = vals.index(max(vals))
    assert all(a > b for a, b in zip(vals[peak:], vals[peak + 1:]))  # strictly falling after the peak
    assert vals[-1] <= 1 / 32 + (1 - 1 / 32) / max(1, T - peak) + 1e-12  # one decay step above the floor


def test_discriminative_rates_divide_by_2_6_per_group():
    lrs = discriminative_lrs(0.01, 3)
    assert lrs[2] == pytest.approx(0.01)
    assert lrs[1] == pytest.approx(0.0038, abs=5e-5)
    assert lrs[0] == pytest.approx(0.0015, abs=5e-5)


def test_one_cycle_warms_up_then_anneals():
    T = 200
    vals = [one_cycle(t, T) for t in range(T)]
    peak = max(range(T), key=lambda t: vals[t])
    assert vals[peak] == pytest.approx(1.0, abs=1e-3)
    assert vals[0] < 0.05 and vals[-1] < 0.01
    assert 0.2 * T <= peak <= 0.3 * T
