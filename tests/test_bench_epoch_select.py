"""bench/epoch_select.py replays epoch-selection rules on recorded training runs; the replay must
be the trainer's loop (patience in the last stage only) or the comparison means nothing."""

import pytest


@pytest.fixture(scope="module")
def es(load_bench):
    return load_bench("epoch_select")


def _eps(f1s, losses=None, stages=None):
    n = len(f1s)
    stages = stages or [1, 2, 3] + [4] * (n - 3)
    losses = losses or [0.7] * n
    return [{"epoch": i + 1, "stage": s, "valid_macro_f1": f, "valid_loss": l, "valid_accuracy": f}
            for i, (f, l, s) in enumerate(zip(f1s, losses, stages))]


def test_first_best_keeps_the_earliest_tie_and_later_keeps_the_latest(es):
    eps = _eps([0.6, 0.5, 0.55, 0.6, 0.6, 0.4])
    assert es.RULES["f1-first"](eps) == 0
    assert es.RULES["f1-last"](eps) == 4


def test_patience_counts_only_last_stage_epochs(es):
    # three stage-4 epochs without improvement stop the run: the 0.9 after them is never seen
    eps = _eps([0.5, 0.4, 0.4, 0.45, 0.45, 0.45, 0.9])
    assert es.RULES["f1-first"](eps) == 0
    # the same values with improvements in between keep going and find the 0.9
    eps = _eps([0.5, 0.4, 0.4, 0.45, 0.55, 0.5, 0.9])
    assert es.RULES["f1-first"](eps) == 6


def test_ties_broken_by_loss_and_stage4_only_and_last(es):
    eps = _eps([0.6, 0.6, 0.5, 0.6, 0.3], losses=[0.69, 0.60, 0.65, 0.62, 0.9])
    assert es.RULES["f1-then-loss"](eps) == 1
    assert es.RULES["loss"](eps) == 1
    assert es.RULES["f1-stage4"](eps) == 3  # epochs 4-5 are the last stage
    assert es.RULES["last"](eps) == 4


def test_margin_keeps_an_earlier_epoch_only_when_it_got_more_than_one_validation_text_more_right(es):
    eps = _eps([0.9, 0.8, 0.85, 0.8, 0.8])  # valid_accuracy as the F1s: epoch 1 best, the last 0.1 lower
    assert es.RULES["margin"](eps, 10) == 4  # 0.1 of 10 texts: one text, not enough
    assert es.RULES["margin"](eps, 20) == 0  # 0.1 of 20: two texts
    tie = _eps([0.8, 0.9, 0.7, 0.9, 0.8])
    assert es.RULES["margin"](tie, 30) == 3  # the best, ties to the later (3 texts more right than the last)
    with pytest.raises(ValueError, match="validation texts"):
        es.RULES["margin"](eps, None)


def test_n_valid_is_recorded_or_recomputed_from_the_runs_sample_and_split(es, monkeypatch):
    calls = []
    monkeypatch.setattr(es, "valid_count", lambda ds, size, seed: calls.append((ds, size, seed)) or 20)
    monkeypatch.setattr(es, "_N_VALID", {})
    assert es.n_valid({"n_labels": 200, "seed": 1, "n_valid": 21}) == 21 and calls == []
    old = {"n_labels": 200, "seed": 1}  # an older row: Rotten Tomatoes, no count recorded
    assert es.n_valid(old) == es.n_valid(old) == 20
    assert calls == [("rotten-tomatoes", 200, 1)]  # computed once


def test_report_tables_from_recorded_runs(es, tmp_path):
    import numpy as np

    rows = []
    for seed in (0, 1):
        for bw in (False, True):
            d = tmp_path / f"r{seed}{int(bw)}"
            d.mkdir()
            probs = np.array([[[0.9, 0.1], [0.8, 0.2]], [[0.2, 0.8], [0.9, 0.1]]], dtype=np.float32)  # 2 epochs
            np.save(d / "test_probs.npy", probs)
            np.save(d / "test_labels.npy", np.array([1, 0]))
            eps = [{"epoch": 1, "stage": 1, "valid_macro_f1": 0.5, "valid_loss": 0.7, "valid_accuracy": 0.5,
                    "test_accuracy": 0.5, "test_macro_f1": 0.33},
                   {"epoch": 2, "stage": 2, "valid_macro_f1": 0.8, "valid_loss": 0.5, "valid_accuracy": 0.8,
                    "test_accuracy": 1.0, "test_macro_f1": 1.0}]
            rows.append({"n_labels": 100, "seed": seed, "backwards": bw, "epochs": eps, "majority": 0.5,
                         "dir": str(d), "n_valid": 10})
    text = es.report(rows)
    assert "100 labels, forward (2 seeds" in text and "forward + backward ensemble (2 seeds)" in text
    assert "| f1-first | 100.00 ± 0.00 | 100.00 ± 0.00 | 0 | 2 2 |" in text
    # the ensemble of the kept epochs (epoch 2 of both) gets both test texts right
    ens = text.split("ensemble (2 seeds)")[1]
    assert "| f1-first | 100.00 ± 0.00 |" in ens


def _one_text_run(tmp_path):
    """A recorded run of 2 epochs on one test text: the first has the better validation score and
    misses the text, the second gets it right."""
    import numpy as np

    d = tmp_path / "r"
    d.mkdir()
    np.save(d / "test_probs.npy", np.array([[[0.9, 0.1]], [[0.2, 0.8]]], dtype=np.float32))
    np.save(d / "test_labels.npy", np.array([1]))
    eps = [{"epoch": 1, "stage": 1, "valid_macro_f1": 0.9, "valid_loss": 0.7, "valid_accuracy": 0.9,
            "test_accuracy": 0.0, "test_macro_f1": 0.0},
           {"epoch": 2, "stage": 2, "valid_macro_f1": 0.8, "valid_loss": 0.5, "valid_accuracy": 0.8,
            "test_accuracy": 1.0, "test_macro_f1": 1.0}]
    return d, eps


def test_report_and_load_keep_datasets_apart(es, tmp_path):
    import json

    d, eps = _one_text_run(tmp_path)
    # the same size, seed and direction on two datasets (the older Rotten Tomatoes rows name theirs too)
    rows = [{"dataset": ds, "n_labels": 100, "seed": 0, "backwards": bw, "epochs": eps, "majority": 0.5,
             "dir": str(d), "n_valid": 10} for ds in ("rotten-tomatoes", "bbc-news") for bw in (False, True)]
    path = tmp_path / "res.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    loaded = es.load(path)
    assert len(loaded) == 4  # neither dataset's runs replace the other's
    text = es.report(loaded)
    assert "\nbbc-news: 100 labels, forward (1 seeds" in text and "\n100 labels, forward (1 seeds" in text
    assert "bbc-news: 100 labels, forward + backward ensemble (1 seeds)" in text
    # each section replays its own runs: the best validation epoch (1) misses, the last one hits
    bbc = text.split("bbc-news: 100 labels, forward (1 seeds")[1].split("\n\n")[1]
    assert "| f1-first | 0.00 | 0.00 | 1 | 1 |" in bbc and "| last | 100.00 | 100.00 | 0 | 2 |" in bbc


def test_a_longer_last_stage_is_a_run_of_its_own(es, tmp_path):
    """`--last-epochs` runs (rows with `last_epochs`) neither replace the recipe's runs of the same
    dataset, size, seed and direction nor share a report section with them."""
    import json

    d, eps = _one_text_run(tmp_path)
    rows = [{"dataset": "bbc-news", "n_labels": 1775, "seed": 0, "backwards": bw, "epochs": eps, "majority": 0.5,
             "dir": str(d), "n_valid": 178, **extra} for extra in ({}, {"last_epochs": 6}) for bw in (False, True)]
    path = tmp_path / "res.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    loaded = es.load(path)
    assert len(loaded) == 4
    text = es.report(loaded)
    assert "\nbbc-news: 1775 labels, forward (1 seeds" in text
    assert "\nbbc-news: last stage 6 epochs, 1775 labels, forward (1 seeds" in text
    assert "bbc-news: last stage 6 epochs, 1775 labels, forward + backward ensemble (1 seeds)" in text
    # the recipe's section comes first and has its own ensemble
    assert text.index("bbc-news: 1775 labels, forward + backward ensemble") < text.index("last stage 6 epochs")


def test_last_epochs_must_be_positive(es):
    with pytest.raises(SystemExit):
        es.main(["run", "--last-epochs", "0"])
