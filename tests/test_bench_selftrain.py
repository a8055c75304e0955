"""bench/selftrain_probe.py picks pseudo-labels: the most confident texts of each predicted class,
never more than asked, and reports self-training against its own base runs paired by seed. (The
probe itself trains models and is not run here.)"""

import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def st(load_bench):
    return load_bench("selftrain_probe")


def test_pseudo_labels_are_the_most_confident_of_each_predicted_class(st):
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.99, 0.01], [0.45, 0.55]])
    picked = st.pseudo_labels(probs, ["neg", "pos"], 2)
    assert [i for i, _, _ in picked] == [0, 1, 3, 4]  # in index order
    assert {i: lab for i, lab, _ in picked} == {0: "neg", 4: "neg", 1: "pos", 3: "pos"}
    assert all(c == probs[i].max() for i, _, c in picked)
    # a class predicted for fewer texts than asked gives what it has
    assert [lab for _, lab, _ in st.pseudo_labels(probs[[0, 2, 4, 1]], ["neg", "pos"], 5)] == ["neg", "neg", "neg", "pos"]


def test_the_report_pairs_self_training_with_its_base_run_by_seed(st, tmp_path):
    rows = [{"n_labels": 100, "seed": s, "variant": v, "per_class": pc, "dev_accuracy": acc,
             "test_accuracy": acc, "pseudo_accuracy": 0.9}
            for s, v, pc, acc in [(0, "base", None, 0.60), (1, "base", None, 0.62),
                                  (0, "self1", 500, 0.64), (1, "self1", 500, 0.61)]]
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = st.report(path)
    assert "base 61.00 (n=2), self1 62.50 (n=2), paired +1.50 (+4.0, -1.0)" in text and "90.0% correct" in text
