"""`ulmfit demo` end to end, offline: a tiny LM and a small prepared dataset stand in for the real ones."""

import json

import pytest

from test_classifier import write_task

from ulmfit.api import pretrain
from ulmfit import demo
from ulmfit.demo import (classifier_lm_epochs, plan_classifier_docs, plan_ensemble_epochs, plan_lm_epochs,
                         project_backward, run_demo)
from ulmfit.io import UlmfitError
from ulmfit.train.loop import LMTrainConfig


@pytest.fixture
def tiny_task(tmp_path):
    """A small prepared dataset in tmp_path/data and tiny forward and backward LMs pretrained on it
    in tmp_path/lm and tmp_path/lm-bwd."""
    data = tmp_path / "data"
    data.mkdir()
    write_task(data / "train.csv", 240, 0)
    write_task(data / "test.csv", 80, 1)
    pretrain(data / "train.csv", tmp_path / "lm", preset="tiny", progress=False, n_workers=1, fmt="csv",
             column="text", train_cfg=LMTrainConfig(epochs=1, bs=8, bptt=20, lr=1e-2, lr_div=1.0))
    pretrain(data / "train.csv", tmp_path / "lm-bwd", preset="tiny", progress=False, n_workers=1, fmt="csv",
             column="text", train_cfg=LMTrainConfig(epochs=1, bs=8, bptt=20, lr=1e-2, lr_div=1.0, backwards=True))
    return data


def test_demo_runs_all_stages_and_reports_beside_a_baseline(tmp_path, tiny_task, capsys):
    data = tiny_task
    # a budget no machine meets: one full LM epoch after the frozen one, and a warning that says so
    summary = run_demo(tmp_path / "out", "rotten-tomatoes", lm=tmp_path / "lm", lm_bwd=tmp_path / "lm-bwd",
                       data_dir=data, progress=False, minutes=0.001)
    out = capsys.readouterr().out
    assert "1 of at most 3 full epochs fit the 0.001-minute budget" in out and "slower than the budget" in out
    assert summary["lm_epochs"] == {"max": 3, "planned": 1}
    history = json.loads((tmp_path / "out" / "lm" / "config.json").read_text())["history"]
    assert len(history) == 2
    for n in range(1, 7):
        assert f"[{n}/6]" in out
    # the budget has no room for the backward model either: said, and the forward model is reported
    assert "no room for the backward model as well" in out and "[4/6] the backward model: skipped" in out
    assert summary["ensemble"] is False and summary["budget_plan"]["ensemble"] is False
    assert "ULMFiT (forward model)" in out
    assert "TF-IDF + logistic regression" in out and "ulmfit predict --model" in out
    assert 0.0 <= summary["ulmfit_accuracy"] <= 1.0 and summary["tfidf_accuracy"] > 0.8
    saved = json.loads((tmp_path / "out" / "demo_summary.json").read_text())
    assert saved["n_test"] == 80 and (tmp_path / "out" / "classifier" / "model.safetensors").exists()


def test_the_time_budget_plans_as_many_lm_epochs_as_leave_room_for_the_classifier():
    # Rotten Tomatoes: 10,246 snippets of 188,895 words, 5 classifier epochs
    rt = classifier_lm_epochs(188_895, 10_246, 188_895, 5)
    assert 4.4 < rt < 4.8  # measured 3.5-4.2 on AMD EPYCs, 4.6 on an Intel Xeon
    # the Zen 4 machine of 2026-11-25: 70 s an LM epoch, 75 s gone after the frozen one
    k, projected = plan_lm_epochs(70, 75, 600, 3, rt)
    assert k == 2 and projected < 0.95 * 600
    assert plan_lm_epochs(39, 42, 600, 3, rt)[0] == 3  # the faster Zen 5: all three
    assert plan_lm_epochs(39, 42, 600, 2, rt)[0] == 2  # never more than the maximum
    k, projected = plan_lm_epochs(200, 210, 600, 3, rt)  # far too slow: one epoch, and the overrun is projected
    assert k == 1 and projected > 600
    # a classifier on a tenth of the labels leaves room for more LM epochs
    tenth = classifier_lm_epochs(188_895, 1_025, 18_890, 6)
    assert plan_lm_epochs(90, 95, 600, 3, rt)[0] < plan_lm_epochs(90, 95, 600, 3, tenth)[0]


def test_the_ensemble_is_planned_where_both_directions_fit_the_budget():
    rt = classifier_lm_epochs(188_895, 10_246, 188_895, 5)
    # the Zen 5 machine (39 s an LM epoch, 42 s gone) and the Xeon with AMX of 2026-12-03 (about
    # the same): both directions with 1 full epoch each fit 10 minutes, and the projection says so
    k, projected = plan_ensemble_epochs(39, 42, 600, 3, rt)
    assert k == 1 and projected <= 0.95 * 600
    assert projected > plan_lm_epochs(39, 42, 600, 3, rt)[1]  # dearer than the forward model alone
    # a budget twice as long: more epochs each, never more than the maximum
    assert plan_ensemble_epochs(39, 42, 1200, 3, rt)[0] == 3
    assert plan_ensemble_epochs(39, 42, 1200, 2, rt)[0] == 2
    # the Zen 4 machine (70 s an epoch): no room for both, so the forward model alone
    k, projected = plan_ensemble_epochs(70, 75, 600, 3, rt)
    assert k is None and projected > 600


def test_the_demo_reports_the_forward_backward_ensemble(tmp_path, tiny_task, capsys):
    data = tiny_task
    summary = run_demo(tmp_path / "out", "rotten-tomatoes", lm=tmp_path / "lm", lm_bwd=tmp_path / "lm-bwd",
                       data_dir=data, progress=False, minutes=0, lm_epochs=1)  # no budget: both directions
    out = capsys.readouterr().out
    assert "[4/6] the backward model" in out and "ULMFiT forward+backward" in out
    assert "forward model alone" in out and "backward model alone" in out
    assert summary["ensemble"] is True and set(summary["members_accuracy"]) == {"forward", "backward"}
    assert set(summary["lm_perplexity"]) == {"fine-tuned", "backward"}
    bwd = json.loads((tmp_path / "out" / "classifier-bwd" / "config.json").read_text())
    assert bwd["backwards"] is True
    assert json.loads((tmp_path / "out" / "lm-bwd" / "config.json").read_text())["train"]["backwards"] is True
    flags = f"--model {tmp_path / 'out' / 'classifier'} --model {tmp_path / 'out' / 'classifier-bwd'}"
    assert f"ulmfit predict {flags}" in out
    # without a backward partner for a forward LM of one's own, "on" is refused and "auto" runs forward only
    with pytest.raises(UlmfitError, match="--lm-bwd"):
        run_demo(tmp_path / "out2", "rotten-tomatoes", lm=tmp_path / "lm", data_dir=data, progress=False,
                 ensemble="on")
    with pytest.raises(UlmfitError, match="ensemble must be one of"):
        run_demo(tmp_path / "out2", "rotten-tomatoes", ensemble="both")


def test_the_backward_model_is_rechecked_against_the_measured_forward_times():
    # the Xeon with AMX, 2026-12-06: 40 s an LM epoch, forward LM 86 s, classifier 203 s, 290 s in:
    # the backward model fits 10 minutes (the run ended at 577 s) ...
    assert 560 < project_backward(290, 86, 203, 40) <= 600
    # ... and with a classifier 10% slower than that it would not
    assert project_backward(310, 90, 223, 42) > 600


def test_a_forward_model_slower_than_planned_skips_the_backward_one(tmp_path, tiny_task, capsys, monkeypatch):
    data = tiny_task
    # the plan after the frozen epoch finds room for both directions, but the forward model then
    # takes longer than the whole (tiny) budget: the backward model is skipped, and the demo says why
    monkeypatch.setattr(demo, "plan_ensemble_epochs", lambda *a, **k: (1, 0.01))
    summary = run_demo(tmp_path / "out", "rotten-tomatoes", lm=tmp_path / "lm", lm_bwd=tmp_path / "lm-bwd",
                       data_dir=data, progress=False, minutes=0.001)
    out = capsys.readouterr().out
    assert "for each of the forward and the backward model" in out  # the first plan
    assert "[4/6] the backward model: skipped, the forward model took longer than planned" in out
    assert summary["ensemble"] is False and summary["budget_plan"]["ensemble"] is False
    assert summary["budget_plan"]["backward_projected_s"] > 0.06
    assert "ULMFiT (forward model)" in out and not (tmp_path / "out" / "classifier-bwd").exists()
    # a budget with room: the same plan runs both directions
    summary = run_demo(tmp_path / "out2", "rotten-tomatoes", lm=tmp_path / "lm", lm_bwd=tmp_path / "lm-bwd",
                       data_dir=data, progress=False, minutes=60, lm_epochs=1)
    assert summary["ensemble"] is True and summary["budget_plan"]["backward_projected_s"] < 3600


def test_a_machine_too_slow_for_all_the_labels_trains_the_classifier_on_a_sample_that_fits():
    rt = classifier_lm_epochs(188_895, 10_246, 188_895, 5)
    # the 2-core Intel Xeon of 2026-12-02 (fp32): 100 s an LM epoch, 115 s gone after the frozen
    # one; one full epoch is the least the LM gets, and the classifier on all labels would overrun
    k, projected = plan_lm_epochs(100, 115, 600, 3, rt)
    assert k == 1 and projected > 600
    n, projected = plan_classifier_docs(100, 115 + 100, 600, rt, 10_246)
    assert 0.5 * 10_246 <= n < 10_246
    assert abs(projected - 0.95 * 600) < 2
    # where everything fits (Zen 4 after its 2 epochs), all labels; where not even half would fit, all
    # labels too, and the demo overruns rather than drop most of them
    assert plan_classifier_docs(70, 75 + 140, 600, rt, 10_246)[0] is None
    assert plan_classifier_docs(200, 210 + 200, 600, rt, 10_246)[0] is None


def test_the_demo_trains_classifier_and_baseline_on_the_same_sample(tmp_path, tiny_task, capsys, monkeypatch):
    from ulmfit.classifier_api import sample_labeled
    from ulmfit.data.labeled import read_labeled

    data = tiny_task
    monkeypatch.setattr(demo, "plan_classifier_docs", lambda *a: (150, 1.0))  # as if the machine were slow
    seen = []
    real = demo.tfidf_baseline
    monkeypatch.setattr(demo, "tfidf_baseline", lambda train, test: seen.append(train) or real(train, test))
    summary = run_demo(tmp_path / "out", "rotten-tomatoes", lm=tmp_path / "lm", data_dir=data, progress=False,
                       minutes=0.001)
    out = capsys.readouterr().out
    assert "the classifier trains on a random 150 of the 240 labeled texts" in out
    assert "both trained on a random 150 of the 240 labeled texts" in out
    assert summary["n_train_classifier"] == 150 and summary["budget_plan"]["classifier_docs"] == 150
    source = json.loads((tmp_path / "out" / "classifier" / "config.json").read_text())["source"]
    assert source["max_train"] == 150 and source["n_train"] + source["n_valid"] == 150
    want = sample_labeled(read_labeled(data / "train.csv"), 150, 0)
    assert len(seen) == 1 and list(seen[0].texts) == list(want.texts)


def test_sample_labeled_is_a_seeded_sample_in_file_order():
    from ulmfit.classifier_api import sample_labeled
    from ulmfit.data.labeled import LabeledTexts

    texts = LabeledTexts([f"text {i}" for i in range(50)], ["a", "b"] * 25, "test")
    a, b = sample_labeled(texts, 20, 3), sample_labeled(texts, 20, 3)
    assert list(a.texts) == list(b.texts) and len(set(a.texts)) == 20
    order = [int(t.split()[1]) for t in a.texts]
    assert order == sorted(order)
    assert sample_labeled(texts, None, 3) is texts and sample_labeled(texts, 50, 3) is texts
    assert list(sample_labeled(texts, 20, 4).texts) != list(a.texts)


def test_long_documents_cost_the_classifier_less_per_word():
    # BBC News on the Zen 4 machine: 1,775 articles of 685,210 words, 6 classifier epochs; the
    # frozen LM epoch took 318 s (330 s gone), and the whole demo 1,466 s (24.4 min)
    bbc = classifier_lm_epochs(685_210, 1_775, 685_210, 6)
    assert 2.5 < bbc < 2.9  # 805 s / 318 s = 2.53 measured: an estimate on the safe side
    k, projected = plan_lm_epochs(318, 330, 600, 3, bbc)
    assert k == 1 and abs(projected - 1466) < 0.1 * 1466
    # the same words in ten times as many documents cost more
    assert classifier_lm_epochs(685_210, 17_750, 685_210, 6) > 1.4 * bbc


def test_topic_datasets_show_predictions_on_test_examples_not_movie_reviews():
    from ulmfit.data.labeled import LabeledTexts
    from ulmfit.demo import EXAMPLES, _snippet, demo_examples

    assert demo_examples("rotten-tomatoes", None) == [(t, None) for t in EXAMPLES]
    test = LabeledTexts(["Shares fell.", "  ", "The match ended 2-1.", "Markets rose.", "New phone out.",
                         "Vote on Tuesday.", "Film wins award."],
                        ["business", "sport", "sport", "business", "tech", "politics", "entertainment"], "t.csv")
    shown = demo_examples("bbc-news", test)
    # the first non-empty example of each class, at most four classes, with its true label
    assert shown == [("Shares fell.", "business"), ("The match ended 2-1.", "sport"),
                     ("New phone out.", "tech"), ("Vote on Tuesday.", "politics")]
    long = "word " * 100
    assert len(_snippet(long)) == 90 and _snippet(long).endswith("...")
    assert _snippet("a\n  b") == "a b"
