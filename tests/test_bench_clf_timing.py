"""bench/clf_timing.py puts the classifier timing's estimate beside a real training run on the same
sample (a tiny LM and task here; the benchmark itself runs on Rotten Tomatoes)."""

import pytest

from test_classifier import write_task

from ulmfit.api import pretrain
from ulmfit.data.labeled import read_labeled
from ulmfit.train.loop import LMTrainConfig


def test_the_estimate_is_put_beside_the_measured_training_time(load_bench, tmp_path):
    ct = load_bench("clf_timing")
    write_task(tmp_path / "train.csv", 240, 0)
    pretrain(tmp_path / "train.csv", tmp_path / "lm", preset="tiny", progress=False, n_workers=1, fmt="csv",
             column="text", train_cfg=LMTrainConfig(epochs=1, bs=8, bptt=20, lr=1e-2, lr_div=1.0))
    train = read_labeled(tmp_path / "train.csv")
    row = ct.measure(train, 120, tmp_path / "lm", repeats=2)
    assert row["n_docs"] == 120 and len(row["estimate_s"]) == len(row["probe_s"]) == 2
    assert all(e > 0 for e in row["estimate_s"]) and row["measured_s"] > 0
    # (the figures are rounded to 0.1 s, which is much of a tiny run)
    assert row["estimate_over_measured"] == pytest.approx(row["estimate_s"][-1] / row["measured_s"], rel=0.2)
    assert len(row["timing"]["step_s"]) == 4
    assert "measured_s" not in ct.measure(train, 120, tmp_path / "lm", do_train=False)
