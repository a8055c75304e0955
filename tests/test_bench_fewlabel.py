"""bench/fewlabel_sweep.py chooses the few-label recipe on a dev set: the dev set must never hold a
training label, the variants must change what they say, and the ensemble must average the members'
probabilities. (The sweep itself trains models and is not run here.)"""

import json

import numpy as np
import pytest

from ulmfit.data.labeled import LabeledTexts


@pytest.fixture(scope="module")
def fl(load_bench):
    return load_bench("fewlabel_sweep")


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    labels = ["pos" if x < 0.6 else "neg" for x in rng.random(n)]
    return LabeledTexts([f"text {seed}-{i}" for i in range(n)], labels, "mem")


def test_dev_split_is_fixed_stratified_and_disjoint_from_the_pool(fl, monkeypatch):
    monkeypatch.setattr(fl, "DEV_N", 100)
    train = _data(1000)
    dev, pool = fl.dev_split(train)
    dev2, _ = fl.dev_split(train)
    assert dev.texts == dev2.texts  # the same dev set every run
    assert len(dev) == 100 and len(pool) == 900
    assert not set(dev.texts) & set(pool.texts)
    share = sum(l == "pos" for l in train.labels) / len(train)
    assert abs(sum(l == "pos" for l in dev.labels) / len(dev) - share) < 0.02


def test_variants_change_what_they_name_and_leave_the_rest(fl):
    base = fl.variant_config("base", 100, 0, False)
    assert base.bs == 16 and base.stage_epochs == (1, 1, 1, 12)  # 90 texts: 6 steps an epoch, capped at 12
    s300 = fl.variant_config("steps300", 100, 0, False)
    assert s300.stage_epochs == (1, 1, 1, 50) and s300.min_last_steps == 0
    assert s300.for_data(90).stage_epochs == (1, 1, 1, 50)  # the trainer's own sizing keeps it
    assert fl.variant_config("steps300", 1000, 0, False).stage_epochs == (1, 1, 1, 6)  # 900 texts: 57 steps
    assert fl.variant_config("head3", 100, 0, False).stage_epochs == (3, 3, 3, 12)
    lr = fl.variant_config("lr0.5x", 100, 0, False)
    assert lr.stage_lrs == tuple(x / 2 for x in base.stage_lrs) and lr.stage_epochs == base.stage_epochs
    assert fl.variant_config("dm1", 100, 0, True).drop_mult == 1.0
    assert fl.variant_config("dm1", 100, 0, True).backwards
    nv = fl.variant_config("novalid", 1000, 0, False)
    assert nv.select == "last" and nv.stage_epochs == fl.variant_config("base", 1000, 0, False).stage_epochs


def test_run_scores_dev_and_test_and_the_ensemble_averages_the_members(fl, monkeypatch, tmp_path):
    import ulmfit.classifier_api as capi

    A = fl.A
    monkeypatch.setattr(fl, "DEV_N", 20)
    monkeypatch.setattr(A, "_maybe_jemalloc", lambda: None)  # it re-executes the process
    monkeypatch.setattr(A, "WORK", tmp_path)
    train, test = _data(200), _data(50, seed=1)
    monkeypatch.setattr(A, "load_dataset", lambda ds: (tmp_path, train, test))
    monkeypatch.setattr(A, "target_lm", lambda ds, bw, csv: (tmp_path / f"lm{bw}", {"valid_perplexity": 9.0}))
    monkeypatch.setattr(A, "commit", lambda: "abc")
    trained, valids = [], []

    def fake_train(lm_dir, sub, test_, out, cfg, valid=None):
        trained.append((out.name, len(sub), cfg.backwards))
        valids.append(valid is sub)
        out.mkdir(parents=True)
        (out / "bw").write_text(str(cfg.backwards))
        return {"best_epoch": 15, "epochs": 15, "clf": {}}

    class FakeClf:
        labels = ["neg", "pos"]

        def __init__(self, bw):
            self.bw = bw

        def predict_proba(self, texts):
            # forward: sure of every "pos" text, wrong (0.55 pos) on every "neg" one; backward: 0.7
            # "neg" everywhere. Each is right on one class only; their mean is right on both.
            if self.bw:
                return np.tile([0.7, 0.3], (len(texts), 1))
            return np.array([[0.0, 1.0] if lab == "pos" else [0.45, 0.55] for lab in lab_of(texts)])

    by_text = {t: l for d in (train, test) for t, l in zip(d.texts, d.labels)}
    lab_of = lambda texts: [by_text[t] for t in texts]  # noqa: E731
    monkeypatch.setattr(A, "train_and_eval", fake_train)
    monkeypatch.setattr(fl, "_predict", lambda clf, data, cache: clf.predict_proba(data.texts))
    monkeypatch.setattr(capi.TextClassifier, "load", staticmethod(lambda out: FakeClf((out / "bw").read_text() == "True")))
    res = tmp_path / "r.jsonl"
    argv = ["run", "--sizes", "40", "--seeds", "0", "--directions", "fwd", "bwd", "--variants", "base",
            "--results", str(res)]
    fl.main(argv)
    rows = {r["direction"]: r for r in map(json.loads, res.read_text().splitlines())}
    assert set(rows) == {"fwd", "bwd", "ens"}
    assert [t[1:] for t in trained] == [(40, False), (40, True)]
    assert not any((tmp_path / "rotten-tomatoes" / t[0]).exists() for t in trained)  # models deleted, probs kept
    pos_share = lambda d: sum(l == "pos" for l in d.labels) / len(d)  # noqa: E731
    dev, _ = fl.dev_split(train)
    assert rows["fwd"]["dev_accuracy"] == pytest.approx(pos_share(dev))
    assert rows["bwd"]["test_accuracy"] == pytest.approx(1 - pos_share(test))
    assert rows["ens"]["dev_accuracy"] == rows["ens"]["test_accuracy"] == 1.0
    assert rows["fwd"]["commit"] == "abc" and rows["fwd"]["lm_perplexity"] == 9.0
    # a second run skips what is recorded
    fl.main(argv)
    assert len(trained) == 2 and len(res.read_text().splitlines()) == 3
    assert valids == [False, False]  # the recipe's own split
    fl.main(argv[:-3] + ["novalid", "--directions", "fwd", "--results", str(res)])
    assert valids[-1] is True and trained[-1][1] == 40  # every label trains and "validates"
    out = fl.report(fl.load(res))
    assert "rotten-tomatoes, ens, dev_accuracy" in out and "| base | 100.00 (n=1) |" in out


def test_report_pairs_each_variant_with_base_by_size_and_seed(fl):
    rows = [dict(dataset="rt", direction="fwd", variant=v, n_labels=n, seed=s, dev_accuracy=acc)
            for v, n, s, acc in [("base", 100, 0, 0.60), ("base", 100, 1, 0.70), ("dm1", 100, 0, 0.65),
                                 ("dm1", 100, 1, 0.69), ("dm1", 200, 0, 0.99)]]
    out = fl.report(rows)
    assert "| base | 65.00 (n=2) | - |" in out
    # pairs: +5 and -1 points (the 200-label run has no base to pair with)
    assert "| dm1 | 67.00 (n=2) | 99.00 (n=1) | +2.00 (2; better in 1, worse in 1) |" in out


def test_predict_with_texts_tokenised_once_equals_the_librarys_predict_proba(fl, tmp_path):
    """The sweep's shortcut (each text tokenised once per vocabulary, not once per run) must give the
    library's probabilities, forward and backward."""
    import csv

    from ulmfit.api import pretrain
    from ulmfit.classifier_api import TextClassifier, train_classifier
    from ulmfit.train.classify import ClassifierTrainConfig
    from ulmfit.train.loop import LMTrainConfig

    rows = [("a fine good film " * (1 + i % 4), "pos") if i % 2 else ("a dull bad film " * (1 + i % 3), "neg")
            for i in range(60)]
    with open(tmp_path / "t.csv", "w", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *rows])
    data = LabeledTexts([r[0] for r in rows[:20]], [r[1] for r in rows[:20]], "mem")
    cache = {}
    for bw in (False, True):
        lm = tmp_path / f"lm{bw}"
        pretrain(tmp_path / "t.csv", lm, preset="tiny", progress=False, n_workers=1, fmt="csv", column="text",
                 train_cfg=LMTrainConfig(epochs=1, bs=4, bptt=10, save_every_minutes=1e9, backwards=bw))
        train_classifier(lm, tmp_path / "t.csv", tmp_path / f"clf{bw}", progress=False, n_workers=1,
                         cfg=ClassifierTrainConfig(bs=8, stage_groups=(0,), stage_epochs=(1,), stage_lrs=(1e-2,),
                                                   min_last_steps=0, backwards=bw))
        clf = TextClassifier.load(tmp_path / f"clf{bw}")
        assert clf.members[0][5] is bw
        want = clf.predict_proba(data.texts)
        assert np.allclose(fl._predict(clf, data, cache), want, atol=1e-6)
        assert np.allclose(fl._predict(clf, data, cache), want, atol=1e-6)  # from the cache
    assert len(cache) == 2  # one entry per direction
