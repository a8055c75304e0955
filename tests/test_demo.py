"""`ulmfit demo` end to end, offline: a tiny LM and a small prepared dataset stand in for the real ones."""

import itertools
import json
import re

import pytest

from test_classifier import write_task

from ulmfit.api import pretrain
from ulmfit import demo
from ulmfit.demo import plan_classifier_docs, plan_ensemble_epochs, plan_lm_epochs, project_backward, run_demo
from ulmfit.io import TrainingInterrupted, UlmfitError
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
    assert "1 of at most 3 full epochs (none fits the 0.001-minute budget: the least the demo runs)" in out
    assert "slower than the budget" in out
    assert summary["lm_epochs"] == {"max": 3, "planned": 1}
    history = json.loads((tmp_path / "out" / "lm" / "config.json").read_text())["history"]
    assert len(history) == 2
    for n in range(1, 8):
        assert f"[{n}/7]" in out
    # the budget has no room for the backward model either: said, and the forward model is reported
    assert "no room for the backward model as well" in out and "[4/7] the backward model: skipped" in out
    assert summary["ensemble"] is False and summary["budget_plan"]["ensemble"] is False
    # nor for the few-label comparison: said, and left out of the summary
    assert "no room for the 100-label comparison" in out
    assert "[5/7] the 100-label classifier: skipped, the time budget has no room for it" in out
    assert summary["few_labels"] is None and summary["budget_plan"]["few_labels"] is None
    assert not (tmp_path / "out" / "classifier-few").exists() and "with only" not in out
    assert "ULMFiT (forward model)" in out
    assert "TF-IDF + logistic regression" in out and "ulmfit predict --model" in out
    assert 0.0 <= summary["ulmfit_accuracy"] <= 1.0 and summary["tfidf_accuracy"] > 0.8
    saved = json.loads((tmp_path / "out" / "demo_summary.json").read_text())
    assert saved["n_test"] == 80 and (tmp_path / "out" / "classifier" / "model.safetensors").exists()


def test_the_time_budget_plans_as_many_lm_epochs_as_leave_room_for_the_classifier():
    # the Zen 4 machine of 2026-11-25: 70 s an LM epoch, 83 s gone after the frozen one and the
    # classifier's timing, the classifier on all of Rotten Tomatoes 271 s
    k, projected = plan_lm_epochs(70, 83, 600, 3, 271)
    assert k == 2 and projected < 0.95 * 600
    assert plan_lm_epochs(39, 47, 600, 3, 162)[0] == 3  # the faster Zen 5 (classifier 162 s): all three
    assert plan_lm_epochs(39, 47, 600, 2, 162)[0] == 2  # never more than the maximum
    k, projected = plan_lm_epochs(200, 210, 600, 3, 700)  # far too slow: one epoch, and the overrun is projected
    assert k == 1 and projected > 600
    # a classifier on a tenth of the labels leaves room for more LM epochs
    assert plan_lm_epochs(90, 95, 600, 3, 400)[0] < plan_lm_epochs(90, 95, 600, 3, 40)[0]


def test_the_ensemble_is_planned_where_both_directions_fit_the_budget():
    # the Xeon with AMX, 2026-12-06: 40 s an LM epoch, classifiers of 203 s; with the timing, about
    # 47 s gone after the frozen epoch: both directions with 1 full LM epoch each fit (that run took
    # 577 s), and the projection says so
    k, projected = plan_ensemble_epochs(40, 47, 600, 3, 203)
    assert k == 1 and projected < 600
    assert projected > plan_lm_epochs(40, 47, 600, 3, 203)[1]  # dearer than the forward model alone
    # a budget twice as long: more epochs each, never more than the maximum
    assert plan_ensemble_epochs(39, 47, 1200, 3, 162)[0] == 3
    assert plan_ensemble_epochs(39, 47, 1200, 2, 162)[0] == 2
    # the same machine at 43 s an LM epoch and 225 s a classifier: no room for both, the forward model alone
    k, projected = plan_ensemble_epochs(43, 50, 600, 3, 225)
    assert k is None and projected > 600


def test_the_demo_reports_the_forward_backward_ensemble(tmp_path, tiny_task, capsys):
    data = tiny_task
    summary = run_demo(tmp_path / "out", "rotten-tomatoes", lm=tmp_path / "lm", lm_bwd=tmp_path / "lm-bwd",
                       data_dir=data, progress=False, minutes=0, lm_epochs=1)  # no budget: both directions
    out = capsys.readouterr().out
    assert "[4/7] the backward model" in out and "ULMFiT forward+backward" in out
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
    assert "[4/7] the backward model: skipped, the forward model took longer than planned" in out
    assert summary["ensemble"] is False and summary["budget_plan"]["ensemble"] is False
    assert summary["budget_plan"]["backward_projected_s"] > 0.06
    assert "ULMFiT (forward model)" in out and not (tmp_path / "out" / "classifier-bwd").exists()
    # a budget with room: the same plan runs both directions
    summary = run_demo(tmp_path / "out2", "rotten-tomatoes", lm=tmp_path / "lm", lm_bwd=tmp_path / "lm-bwd",
                       data_dir=data, progress=False, minutes=60, lm_epochs=1)
    assert summary["ensemble"] is True and summary["budget_plan"]["backward_projected_s"] < 3600
    # and the few-label comparison, which the plan kept room for
    assert summary["budget_plan"]["few_labels"] == 100 and summary["budget_plan"]["few_cost_s"] > 0
    assert summary["few_labels"]["n_train"] == 100


def test_a_machine_too_slow_for_all_the_labels_trains_the_classifier_on_a_sample_that_fits():
    # the AMD EPYC without AVX-512 (fp32) of 2026-12-06: 144 s an LM epoch, 162 s gone after the
    # frozen one, the classifier on all 10,246 labels 491 s; one full epoch is the least the LM gets,
    # and the classifier on all labels would overrun by 3.6 minutes
    k, projected = plan_lm_epochs(144, 162, 600, 3, 491)
    assert k == 1 and projected > 800
    n, projected = plan_classifier_docs(144, 162 + 144, 600, 491, 10_246)
    assert 0.45 * 10_246 <= n < 0.5 * 10_246
    assert abs(projected - 0.95 * 600) < 2
    # the Intel Xeon without AMX of 2026-12-02 (100 s an LM epoch, classifier 457 s): three quarters
    n, _ = plan_classifier_docs(100, 115 + 100, 600, 457, 10_246)
    assert 0.7 * 10_246 <= n < 0.8 * 10_246
    # where everything fits (Zen 4 after its 2 epochs), all labels; where not even 40% would fit, all
    # labels too, and the demo overruns rather than drop most of them
    assert plan_classifier_docs(70, 75 + 140, 600, 271, 10_246)[0] is None
    assert plan_classifier_docs(200, 210 + 200, 600, 700, 10_246)[0] is None


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


@pytest.mark.filterwarnings("ignore:the classifier .* predicts")  # 54 training texts for a tiny LM
def test_the_few_label_classifier_and_its_baseline_train_on_the_same_few_labels(tmp_path, tiny_task, capsys,
                                                                                monkeypatch):
    """ULMFiT's strength is the paper's semi-supervised setting: the LM fine-tuned on all the text,
    the classifier on few labels. The demo trains a second forward classifier on a seeded sample of
    the labels, from the same LM, and TF-IDF on the same sample, and reports both."""
    from ulmfit.classifier_api import sample_labeled
    from ulmfit.data.labeled import read_labeled

    data = tiny_task
    seen = []
    real = demo.tfidf_baseline
    monkeypatch.setattr(demo, "tfidf_baseline", lambda train, test: seen.append(train) or real(train, test))
    summary = run_demo(tmp_path / "out", "rotten-tomatoes", lm=tmp_path / "lm", data_dir=data, progress=False,
                       minutes=0, lm_epochs=1, ensemble="off", few_labels=60)
    out = capsys.readouterr().out
    assert "[4/6] the classifier again, on 60 of the 240 labels, from the same fine-tuned LM" in out
    few = tmp_path / "out" / "classifier-few"
    config = json.loads((few / "config.json").read_text())
    assert config["source"]["max_train"] == 60 and config["source"]["n_train"] + config["source"]["n_valid"] == 60
    assert config["source"]["lm"] == str((tmp_path / "out" / "lm").resolve())  # the demo's fine-tuned LM
    want = sample_labeled(read_labeled(data / "train.csv"), 60, 0)
    assert [len(t) for t in seen] == [240, 60] and list(seen[1].texts) == list(want.texts)
    rep = summary["few_labels"]
    assert rep["n_train"] == 60 and rep["classifier"] == str(few)
    assert 0 <= rep["ulmfit_accuracy"] <= 1 and 0 <= rep["tfidf_accuracy"] <= 1
    assert summary["few_labels"] == json.loads((tmp_path / "out" / "demo_summary.json").read_text())["few_labels"]
    assert "with all 240 labels:" in out and "with only 60 labels (from the same fine-tuned LM" in out
    assert out.count("    TF-IDF + logistic regression  accuracy") == 2
    # not where the classifier itself has no more labels than that
    summary = run_demo(tmp_path / "out2", "rotten-tomatoes", lm=tmp_path / "lm", data_dir=data, progress=False,
                       minutes=0, lm_epochs=1, ensemble="off", few_labels=60, max_train=50)
    assert summary["few_labels"] is None
    assert "the 60-label classifier: skipped, the classifier trains on 50 labels" in capsys.readouterr().out
    with pytest.raises(UlmfitError, match="few_labels must be 0 .* or at least 10"):
        run_demo(tmp_path / "out3", "rotten-tomatoes", lm=tmp_path / "lm", data_dir=data, few_labels=5)


def test_a_label_sample_without_an_example_of_every_class_is_found_before_training(tmp_path, tiny_task, capsys):
    """A classifier trained on a sample that holds no example of a class cannot be tested on a test
    set that has it (20 Newsgroups: 100 random labels of 20 classes miss one about one time in
    eight). The few-label step is then skipped, and a --max-train that does so is refused, both
    before anything trains."""
    import csv

    from ulmfit.demo import missing_classes
    from ulmfit.data.labeled import read_labeled

    data = tmp_path / "many"
    data.mkdir()
    for name, src in (("train.csv", tiny_task / "train.csv"), ("test.csv", tiny_task / "test.csv")):
        rows = list(csv.reader(open(src, newline="")))
        with open(data / name, "w", newline="") as f:  # 12 classes, 20 examples each in training
            csv.writer(f).writerows([rows[0]] + [[r[0], f"c{i % 12}"] for i, r in enumerate(rows[1:])])
    assert len(missing_classes(read_labeled(data / "train.csv"), 10, 0)) >= 2
    assert missing_classes(read_labeled(data / "train.csv"), None, 0) == []
    with pytest.raises(UlmfitError, match=r"a random 10 of the 240 labels \(--max-train\) hold no example of 'c"):
        run_demo(tmp_path / "out", "rotten-tomatoes", lm=tmp_path / "lm", data_dir=data, progress=False, minutes=0,
                 ensemble="off", max_train=10)
    assert not (tmp_path / "out" / "lm").exists()
    summary = run_demo(tmp_path / "out2", "rotten-tomatoes", lm=tmp_path / "lm", data_dir=data, progress=False,
                       minutes=0, lm_epochs=1, ensemble="off", few_labels=10)
    out = capsys.readouterr().out
    assert re.search(r"\[4/6\] the 10-label classifier: skipped, a random 10 of the labels hold no example of 'c\d+', "
                     r"'c\d+'", out), out
    assert summary["few_labels"] is None and not (tmp_path / "out2" / "classifier-few").exists()


def test_the_few_label_step_is_planned_against_what_the_demo_must_run(tmp_path, tiny_task, capsys, monkeypatch):
    """The plan after the frozen LM epoch (60 s here; the classifier 185 s on all labels, 30 s on the
    few): with --ensemble on both directions must run, and the few-label step is dropped where it
    would push them past the budget; with auto it is kept, and the backward model gives way."""
    import dataclasses

    from ulmfit import api, classifier_api
    from ulmfit.train.classify import ClassifierTrainConfig

    @dataclasses.dataclass
    class Timing:
        cfg: ClassifierTrainConfig = dataclasses.field(default_factory=ClassifierTrainConfig)
        valid_frac: float = 0.1

        def seconds(self, n):
            return 30.0 if self.valid_frac == 0 else 185.0

        def to_dict(self):
            return {}

    def plan_then_stop(*a, plan_epochs=None, **k):
        plan_epochs(60.0)
        raise KeyboardInterrupt

    monkeypatch.setattr(classifier_api, "time_classifier", lambda *a, **k: Timing())
    monkeypatch.setattr(api, "finetune_lm", plan_then_stop)
    plans = {}
    for ensemble in ("on", "auto"):
        with pytest.raises(TrainingInterrupted):
            run_demo(tmp_path / ensemble, "rotten-tomatoes", lm=tmp_path / "lm", lm_bwd=tmp_path / "lm-bwd",
                     data_dir=tiny_task, progress=False, minutes=10, ensemble=ensemble, few_labels=60)
        plans[ensemble] = json.loads((tmp_path / ensemble / "demo_state.json").read_text())["plan"]
    out = capsys.readouterr().out
    assert plans["on"]["few_labels"] is None and plans["on"]["ensemble"] is True
    assert plans["on"]["projected_s"] <= 600 and "no room for the 60-label comparison" in out
    assert plans["auto"]["few_labels"] == 60 and plans["auto"]["ensemble"] is False
    assert plans["auto"]["projected_s"] <= 0.95 * 600


def test_the_demo_command_checks_few_labels_before_anything_runs(tmp_path, capsys):
    from ulmfit.cli import build_parser, main

    assert build_parser().parse_args(["demo"]).few_labels == demo.FEW_LABELS == 100
    for bad in ("5", "-1"):
        assert main(["demo", "--few-labels", bad, "--out", str(tmp_path / "d")]) == 2
        assert "--few-labels must be 0 (no few-label step) or at least 10" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


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


def test_the_classifier_timing_sizes_the_recipe_for_the_number_of_labels():
    from ulmfit.classifier_api import ClassifierTiming
    from ulmfit.train.classify import ClassifierTrainConfig

    t = ClassifierTiming(step_s=(1.0, 1.0, 2.0, 3.0), bs=32, predict_doc_s=0.01, cfg=ClassifierTrainConfig())
    # 10,000 labels: 9,000 train at batch 32 (282 steps an epoch), epochs 1 + 1 + 1 + 2; 1,000
    # validate after each of the 5 epochs
    assert t.seconds(10_000) == pytest.approx(282 * (1 + 1 + 2 + 2 * 3) + 5 * 1_000 * 0.01)
    # 1,000 labels: 900 train at batch 16 (half a probed step each, 57 steps), and the last stage
    # grows to 3 epochs to reach 150 steps
    assert t.seconds(1_000) == pytest.approx(57 * 0.5 * (1 + 1 + 2 + 3 * 3) + 6 * 100 * 0.01)


def test_the_classifier_is_timed_on_this_machine_without_touching_the_random_state(tmp_path, tiny_task):
    import torch

    from ulmfit.classifier_api import time_classifier
    from ulmfit.data.labeled import LabeledTexts, read_labeled

    train = read_labeled(tiny_task / "train.csv")
    torch.manual_seed(5)
    want = torch.rand(3)
    torch.manual_seed(5)
    timing = time_classifier(tmp_path / "lm", train, n_batches=2)
    assert torch.equal(torch.rand(3), want)
    assert len(timing.step_s) == 4 and all(s > 0 for s in timing.step_s) and timing.predict_doc_s > 0
    assert timing.bs == 16  # 216 training texts: the recipe's batch size for them
    assert timing.seconds(480) > timing.seconds(240) > 0
    with pytest.raises(UlmfitError, match="at least 2 labeled texts"):
        time_classifier(tmp_path / "lm", LabeledTexts(["one text"], ["a"], "x"))


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


def _ctrl_c(m, cls, name, when):
    """Patch cls.name (with monkeypatch `m`) to raise KeyboardInterrupt, as Ctrl-C would, on the
    call where when(self) is true."""
    real = getattr(cls, name)

    def patched(self, *a):
        if when(self):
            raise KeyboardInterrupt
        return real(self, *a)

    m.setattr(cls, name, patched)


def _clf_weights(path):
    from ulmfit import checkpoint as ckpt

    return ckpt.load_tensors(path / "model.safetensors")[0]


def test_an_interrupted_demo_resumes_where_it_stopped_and_ends_as_an_uninterrupted_one(tmp_path, tiny_task, capsys,
                                                                                          monkeypatch):
    import torch

    from ulmfit.train.classify import ClassifierTrainer

    data = tiny_task
    kw = dict(lm=tmp_path / "lm", data_dir=data, progress=False, minutes=0, ensemble="off", lm_epochs=1)
    full = run_demo(tmp_path / "full", "rotten-tomatoes", **kw)
    with monkeypatch.context() as m:  # Ctrl-C at the classifier's 7th step
        calls = itertools.count(1)
        _ctrl_c(m, ClassifierTrainer, "_step", lambda self: next(calls) == 7)
        with pytest.raises(TrainingInterrupted, match=r"interrupted in .*classifier.*ulmfit demo --out .*cut --resume"):
            run_demo(tmp_path / "cut", "rotten-tomatoes", **kw)
    state = json.loads((tmp_path / "cut" / "demo_state.json").read_text())
    assert state["done"] == ["lm"] and not state.get("finished") and state["args"]["ensemble"] == "off"
    lm_file = tmp_path / "cut" / "lm" / "model.safetensors"
    before = lm_file.stat().st_mtime_ns
    capsys.readouterr()
    from ulmfit import classifier_api

    calls, real_train = [], classifier_api.train_classifier
    monkeypatch.setattr(classifier_api, "train_classifier", lambda *a, **k: calls.append(k) or real_train(*a, **k))
    # only `resume`: the settings are the saved ones
    summary = run_demo(tmp_path / "cut", resume=True, progress=False)
    out = capsys.readouterr().out
    assert "resuming the demo in" in out and "lm: finished before the interruption, kept" in out
    # the classifier continued from its checkpoint; then the few-label one started
    assert [(k["resume"], k["max_train"]) for k in calls] == [(True, None), (False, 100)]
    assert lm_file.stat().st_mtime_ns == before  # the LM was not trained again
    a, b = _clf_weights(tmp_path / "full" / "classifier"), _clf_weights(tmp_path / "cut" / "classifier")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4, msg=k)
    assert summary["ulmfit_accuracy"] == full["ulmfit_accuracy"]
    assert json.loads((tmp_path / "cut" / "demo_state.json").read_text())["finished"] is True
    with pytest.raises(UlmfitError, match="finished .*nothing to resume"):
        run_demo(tmp_path / "cut", resume=True, progress=False)
    with pytest.raises(UlmfitError, match="holds no demo"):
        run_demo(tmp_path / "nothing", resume=True, progress=False)
    # a damaged or foreign state file is refused, not half-read
    bad = tmp_path / "bad"
    bad.mkdir()
    for text, message in [("{not json", "not valid JSON"), ('["a"]', "not a demo state"),
                          ('{"args": {}, "done": ["lm", "rm -rf"]}', "not a demo state")]:
        (bad / "demo_state.json").write_text(text)
        with pytest.raises(UlmfitError, match=message):
            run_demo(bad, resume=True, progress=False)


def test_a_demo_interrupted_just_after_a_step_ended_keeps_that_step_on_resume(tmp_path, tiny_task, capsys,
                                                                              monkeypatch):
    """A Ctrl-C that lands after the language model's run has finished, before the demo records the
    step as done: the resumed demo used to resume that finished run, which is refused, and could not
    go on."""
    from ulmfit import api

    kw = dict(lm=tmp_path / "lm", data_dir=tiny_task, progress=False, minutes=0, ensemble="off", lm_epochs=1)
    full = run_demo(tmp_path / "full", "rotten-tomatoes", **kw)
    with monkeypatch.context() as m:
        real_ft = api.finetune_lm

        def finetune_lm(*a, **k):
            real_ft(*a, **k)
            raise KeyboardInterrupt  # the run is finished and saved; the demo has not recorded it

        m.setattr(api, "finetune_lm", finetune_lm)
        with pytest.raises(TrainingInterrupted, match=r"interrupted in .*lm;"):
            run_demo(tmp_path / "cut", "rotten-tomatoes", **kw)
    assert json.loads((tmp_path / "cut" / "demo_state.json").read_text())["done"] == []
    capsys.readouterr()
    summary = run_demo(tmp_path / "cut", resume=True, progress=False)
    assert "lm: finished before the interruption, kept" in capsys.readouterr().out
    assert summary["lm_perplexity"] == full["lm_perplexity"] and summary["ulmfit_accuracy"] == full["ulmfit_accuracy"]


def test_a_demo_interrupted_while_testing_says_its_classifier_is_saved_and_resume_only_tests(
        tmp_path, tiny_task, capsys, monkeypatch):
    from ulmfit import classifier_api

    kw = dict(lm=tmp_path / "lm", data_dir=tiny_task, progress=False, minutes=0, ensemble="off", lm_epochs=1)
    with monkeypatch.context() as m:
        def evaluate(*a, **k):
            raise KeyboardInterrupt

        m.setattr(classifier_api.TextClassifier, "evaluate", evaluate)
        with pytest.raises(TrainingInterrupted, match=r"interrupted while testing; its trained classifier is saved "
                                                      r"in .*classifier\. Test it with: ulmfit demo --out .*cut --resume"):
            run_demo(tmp_path / "cut", "rotten-tomatoes", **kw)
    capsys.readouterr()
    summary = run_demo(tmp_path / "cut", resume=True, progress=False)
    out = capsys.readouterr().out
    assert "lm: finished before the interruption, kept" in out
    assert "classifier: finished before the interruption, kept" in out
    assert 0 < summary["ulmfit_accuracy"] <= 1 and (tmp_path / "cut" / "demo_summary.json").exists()


def test_a_demo_interrupted_in_its_language_model_keeps_its_plan_on_resume(tmp_path, tiny_task, capsys, monkeypatch):
    from ulmfit.train.loop import LMTrainer

    data = tiny_task
    kw = dict(lm=tmp_path / "lm", data_dir=data, progress=False, minutes=0.001, ensemble="off")
    with monkeypatch.context() as m:  # Ctrl-C in the first full LM epoch, after the plan
        _ctrl_c(m, LMTrainer, "set_lrs", lambda self: self.epoch == 1 and self.batch == 2)
        with pytest.raises(TrainingInterrupted, match=r"interrupted in .*lm;"):
            run_demo(tmp_path / "cut", "rotten-tomatoes", **kw)
    state = json.loads((tmp_path / "cut" / "demo_state.json").read_text())
    assert state["done"] == [] and state["plan"]["epochs"] == 1 and state["plan"]["classifier_s"] > 0
    assert state["times"]["lm"] > 0 and state["elapsed_s"] > 0
    capsys.readouterr()
    summary = run_demo(tmp_path / "cut", resume=True, progress=False)
    out = capsys.readouterr().out
    assert "time budget:" not in out  # planned once, before the interruption
    assert re.search(r"time: .*\(data \d+s, timing \d+s, lm \d+s, classifier \d+s, evaluate \d+s\)", out)
    assert "the classifier's" not in out  # and timed once
    assert summary["lm_epochs"] == {"max": 3, "planned": 1} and summary["budget_plan"]["epochs"] == 1
    history = json.loads((tmp_path / "cut" / "lm" / "config.json").read_text())["history"]
    assert [h["epoch"] for h in history if "partial_epoch" not in h] == [1, 2]


def test_the_demo_command_resumes_with_its_out_folder(tmp_path, capsys):
    from ulmfit.cli import build_parser, main

    a = build_parser().parse_args(["demo", "--resume", "--out", str(tmp_path / "d")])
    assert a.resume is True and a.out == str(tmp_path / "d")
    assert main(["demo", "--resume", "--out", str(tmp_path / "d"), "--dataset", "bbc-news", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "holds no demo" in err and "ignored: --dataset" in err and "--quiet" not in err


def test_the_demo_checks_its_out_folder_before_it_times_anything(tmp_path, capsys):
    """A file, a folder of other files and an interrupted demo are refused (the last two unless
    --overwrite); a finished demo is replaced whole, so none of it stays beside the new one."""
    from ulmfit.demo import DEMO_STATE, check_demo_out
    from ulmfit.io import release_out

    (tmp_path / "afile").write_text("x")
    with pytest.raises(UlmfitError, match="is a file"):
        check_demo_out(tmp_path / "afile", overwrite=False)
    other = tmp_path / "other"
    (other / "lm").mkdir(parents=True)
    (other / "notes.txt").write_text("mine")
    with pytest.raises(UlmfitError, match="holds files that are not a demo's.*--overwrite"):
        check_demo_out(other, overwrite=False)
    assert (other / "notes.txt").read_text() == "mine" and (other / "lm").is_dir()
    cut = tmp_path / "cut"
    (cut / "lm").mkdir(parents=True)
    (cut / DEMO_STATE).write_text(json.dumps({"args": {}, "done": [], "finished": False}))
    with pytest.raises(UlmfitError, match="holds an interrupted demo.*--resume.*--overwrite"):
        check_demo_out(cut, overwrite=False)
    assert (cut / "lm").is_dir()
    done = tmp_path / "done"
    for d in ("lm", "classifier", "lm-bwd"):
        (done / d).mkdir(parents=True)
        (done / d / "config.json").write_text("{}")
    (done / "demo_summary.json").write_text("{}")
    (done / DEMO_STATE).write_text(json.dumps({"args": {}, "done": ["lm", "classifier"], "finished": True}))
    (done / "keep.txt").write_text("not the demo's")
    check_demo_out(done, overwrite=False)
    release_out(done)
    assert "replacing the finished demo" in capsys.readouterr().out
    assert sorted(p.name for p in done.iterdir()) == ["keep.txt"]
    check_demo_out(cut, overwrite=True)  # started over when told so
    release_out(cut)
    assert not (cut / "lm").exists()
    check_demo_out(tmp_path / "new" / "demo", overwrite=False)  # made, and writable
    release_out(tmp_path / "new" / "demo")
    assert (tmp_path / "new" / "demo").is_dir()
