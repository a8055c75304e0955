"""bench/demo_fewlabel.py scores the classifier and TF-IDF on the same sample of the labels, the one
`ulmfit demo`'s few-label step draws, for each size, seed and validation split it is given."""

import json

import pytest
from test_demo import tiny_task  # noqa: F401 - the fixture: a small dataset and tiny LMs

from ulmfit.classifier_api import sample_labeled
from ulmfit.data.labeled import read_labeled


@pytest.mark.filterwarnings("ignore:the classifier .* predicts")  # 27 training texts for a tiny LM
def test_each_run_scores_classifier_and_tfidf_on_the_demos_sample(tmp_path, tiny_task, load_bench, monkeypatch,
                                                                   capsys):
    fl = load_bench("demo_fewlabel")
    data = tiny_task
    from ulmfit import datasets, demo

    monkeypatch.setattr(datasets, "get", lambda name, progress=True: data)
    seen = []
    real = demo.tfidf_baseline
    monkeypatch.setattr(demo, "tfidf_baseline", lambda train, test: seen.append(list(train.texts)) or real(train, test))
    results = tmp_path / "rows.jsonl"
    fl.main(["--lm", str(tmp_path / "lm"), "--sizes", "30", "--seeds", "0", "1", "--valid-frac", "0", "0.1",
             "--results", str(results)])
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [(r["valid_frac"], r["n"], r["seed"]) for r in rows] == [(0.0, 30, 0), (0.0, 30, 1), (0.1, 30, 0),
                                                                     (0.1, 30, 1)]
    assert all(0 <= r["ulmfit"] <= 1 and 0 <= r["tfidf"] <= 1 for r in rows)
    train = read_labeled(data / "train.csv")
    assert seen == [list(sample_labeled(train, 30, s).texts) for s in (0, 1, 0, 1)]
    assert "30 labels, valid_frac 0: ULMFiT" in capsys.readouterr().out
