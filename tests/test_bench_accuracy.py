"""The bookkeeping of bench/accuracy.py: resuming, re-running and the report's choice of rows.
(The benchmark itself trains models and is not run here.)"""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def acc(load_bench):
    return load_bench("accuracy")


@pytest.fixture
def fake_data(acc, monkeypatch, tmp_path):
    """`exp_main` without data or models: WORK in tmp_path, a training set of n dummy labels, and a
    fine-tuned LM that is never built."""
    def setup(n):
        monkeypatch.setattr(acc, "WORK", tmp_path)
        monkeypatch.setattr(acc, "load_dataset", lambda ds: (tmp_path, [0] * n, None))
        monkeypatch.setattr(acc, "target_lm", lambda ds, bw, csv: (tmp_path / "lm", {"valid_perplexity": 50.0}))
    return setup


def _row(method="ulmfit-fwd", seed=0, accuracy=0.7, note=None):
    return dict(experiment="main", dataset="rotten-tomatoes", method=method, n_labels="all", seed=seed,
                accuracy=accuracy, note=note)


def test_results_resume_skips_done_and_retries_failed(acc, tmp_path):
    path = tmp_path / "r.jsonl"
    res = acc.Results(path)
    res.add(_row())
    res.add(_row(method="scratch", accuracy=None, note="failed: RuntimeError: boom"))
    again = acc.Results(path)
    assert len(again.rows) == 2
    assert again.has(**_row())
    assert not again.has(**_row(method="scratch"))  # a failure is tried again
    assert not again.has(**_row(seed=1))


def test_rerun_trains_again_and_report_uses_latest(acc, tmp_path):
    path = tmp_path / "r.jsonl"
    acc.Results(path).add(_row(accuracy=0.70))
    res = acc.Results(path, rerun=True)
    assert not res.has(**_row())  # --rerun: not yet run by this process
    res.add(_row(accuracy=0.75))
    assert res.has(**_row())  # but not twice in one invocation
    res.add(_row(accuracy=None, note="failed: later crash"))
    reloaded = acc.Results(path)
    assert len(reloaded.rows) == 3  # history is kept in the file
    latest = reloaded.latest()
    assert [r["accuracy"] for r in latest] == [0.75]  # the last success beats an earlier one and a later failure

    md = tmp_path / "B.md"
    md.write_text("# Benchmarks\n\nbefore\n")
    block = acc.report(reloaded, md, tmp_path / "plot.png")
    assert "75.00" in block and "70.00" not in block
    text = md.read_text()
    assert text.startswith("# Benchmarks\n\nbefore\n") and text.count(acc.MARK_BEGIN) == 1
    acc.report(reloaded, md, tmp_path / "plot.png")  # a second report replaces the block
    assert md.read_text().count(acc.MARK_BEGIN) == 1


def test_main_table_shows_runs_of_the_current_lm_recipe_and_flags_older_ones(acc, tmp_path):
    """After a dataset's LM recipe changes, its table shows the runs of the new recipe only (seeds of
    the two recipes are not averaged), and a method with none yet keeps its older runs, marked."""
    cur = acc.lm_recipe("rotten-tomatoes")
    res = acc.Results(tmp_path / "r.jsonl")
    for seed, a in ((0, 0.70), (1, 0.72)):
        res.add({**_row(seed=seed, accuracy=a), "lm_epochs": [1, 2, 2], "lm_perplexity": 135.3})
    res.add({**_row(method="ulmfit-bwd", accuracy=0.74), "lm_epochs": [1, 2, 2]})
    res.add({**_row(accuracy=0.80), "lm_epochs": cur, "lm_perplexity": 103.5})
    res.add(_row(method="tfidf", accuracy=0.85))
    block = acc.report(res, tmp_path / "B.md", tmp_path / "p.png")
    table = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in block.splitlines()
             if line.startswith("| ULMFiT") or line.startswith("| TF-IDF")}
    assert table["ULMFiT forward"] == "80.00"  # not the mean with the older seeds
    assert table["ULMFiT backward"] == "74.00 †" and "† Its LM was fine-tuned by an older recipe" in block
    assert table[acc.NAMES["tfidf"]] == "85.00"
    assert "rotten-tomatoes 103.5." in block
    res.add({**_row(method="ulmfit-bwd", accuracy=0.78), "lm_epochs": cur})
    assert "†" not in acc.report(res, tmp_path / "B.md", tmp_path / "p.png")


def test_stratified_sample_keeps_every_class(acc):
    from collections import Counter

    from ulmfit.data.labeled import LabeledTexts

    labels = ["a"] * 900 + ["b"] * 95 + ["c"] * 5
    data = LabeledTexts([f"text {i}" for i in range(1000)], labels, "mem")
    sub = acc.stratified_sample(data, 100, seed=0)
    counts = Counter(sub.labels)
    assert len(sub) == 100 and counts["c"] >= 2 and 85 <= counts["a"] <= 90 and 8 <= counts["b"] <= 10
    assert acc.stratified_sample(data, 100, seed=0).texts == sub.texts  # the seed fixes the sample
    assert acc.stratified_sample(data, 100, seed=1).texts != sub.texts
    assert acc.stratified_sample(data, 5000, seed=0) is data  # more than there is: everything


def test_rows_are_json_lines(acc, tmp_path):
    path = tmp_path / "r.jsonl"
    acc.Results(path).add(_row())
    line = path.read_text().splitlines()[0]
    r = json.loads(line)
    assert r["method"] == "ulmfit-fwd" and "date" in r and "commit" in r


def test_classifier_ablations_follow_the_recipe_rates(acc):
    """Gradual unfreezing is compared with the other two at the recipe's own rates and epochs, so a
    change of the default rates cannot leave the ablations on stale ones."""
    base = acc.clf_config(9000, 0)
    abl = acc.ablation_clf_configs("rotten-tomatoes", 9000, 0)
    full, last = abl["clf-full"], abl["clf-last"]
    assert full.stage_groups == (0,) and full.stage_lrs == (base.stage_lrs[-1],)
    assert last.stage_groups == (1,) and last.stage_lrs == (base.stage_lrs[0],)
    assert sum(full.stage_epochs) == sum(last.stage_epochs) == sum(base.stage_epochs)
    assert acc.train_and_eval_key(full)["stage_lrs"] == [base.stage_lrs[-1]]  # JSON-shaped, as a result row has it


def test_ablation_report_gives_paired_differences(acc, tmp_path):
    res = acc.Results(tmp_path / "r.jsonl")
    for seed, full, head in [(0, 0.76, 0.72), (1, 0.78, 0.73)]:
        # the head-only row is written first: the reference is the full recipe by name, not by order
        for method, a in [("classifier: last layer only (head)", head), ("ULMFiT (fwd): full recipe", full)]:
            res.add(dict(experiment="ablations", dataset="rotten-tomatoes", method=method, n_labels="all",
                         seed=seed, accuracy=a, seconds=10.0))
    block = acc.report(res, tmp_path / "B.md", tmp_path / "p.png")
    line = next(l for l in block.splitlines() if l.startswith("| classifier: last layer only"))
    assert "72.50 ± 0.71 (n=2)" in line and "-4.50 (seeds: -4.0, -5.0)" in line
    rows = [l for l in block.splitlines() if l.startswith("| ")]
    assert rows[1].startswith("| ULMFiT (fwd): full recipe | 77.00")  # first under the header, no difference
    only_head = acc.Results(tmp_path / "h.jsonl")
    only_head.add(dict(experiment="ablations", dataset="rotten-tomatoes", method="classifier: last layer only (head)",
                       n_labels="all", seed=0, accuracy=0.72, seconds=10.0))
    assert "| classifier: last layer only (head) | 72.00 |  |" in acc.report(only_head, tmp_path / "C.md",
                                                                               tmp_path / "p.png")


def test_ablation_report_without_its_own_full_run_compares_with_the_main_forward_model(acc, tmp_path):
    res = acc.Results(tmp_path / "r.jsonl")
    for seed, a in [(0, 0.7922), (1, 0.7899)]:
        res.add(dict(experiment="main", dataset="20newsgroups", method="ulmfit-fwd", n_labels="all", seed=seed,
                     accuracy=a, seconds=1800.0))
    res.add(dict(experiment="main", dataset="20newsgroups", method="ulmfit-bwd", n_labels="all", seed=0,
                 accuracy=0.8005, seconds=1800.0))
    res.add(dict(experiment="ablations", dataset="20newsgroups", method="LM without the cap", n_labels="all", seed=0,
                 accuracy=0.8, seconds=5000.0))
    block = acc.report(res, tmp_path / "B.md", tmp_path / "p.png")
    table = block[block.index("### Ablations: 20newsgroups"):].splitlines()
    assert table[4] == ("| ULMFiT (fwd): full recipe (the forward model of the table above) | 79.11 ± 0.16 (n=2) |  | "
                        "1800 |")
    assert table[5] == "| LM without the cap | 80.00 | +0.78 | 5000 |"  # paired with seed 0 of the forward model
    # a row whose LM ran fewer of the recipe's rounds (`lm_rounds_note`) is not the cap's effect alone
    assert acc.ran_fewer_rounds("LM without the cap (1 of the recipe's 3 LM rounds)")
    assert not acc.ran_fewer_rounds("LM without the cap")
    res.add(dict(experiment="ablations", dataset="20newsgroups", method="LM without the cap (1 of the recipe's 3 LM "
                 "rounds)", n_labels="all", seed=0, accuracy=0.767, seconds=2554.0))
    table = acc.report(res, tmp_path / "B.md", tmp_path / "p.png").splitlines()
    assert "| LM without the cap (1 of the recipe's 3 LM rounds) | 76.70 |  | 2554 |" in table


def test_ablation_report_pairs_only_rows_whose_lms_had_the_same_recipe(acc, tmp_path):
    """20 Newsgroups' LM recipe changed (3 rounds -> one run): an ablation fine-tuned under the old
    recipe is not compared with a reference fine-tuned under the new one."""
    res = acc.Results(tmp_path / "r.jsonl")
    res.add(dict(experiment="main", dataset="20newsgroups", method="ulmfit-fwd", n_labels="all", seed=0,
                 accuracy=0.80, seconds=1800.0, lm_epochs=[12]))
    res.add(dict(experiment="ablations", dataset="20newsgroups", method="LM without the cap", n_labels="all",
                 seed=0, accuracy=0.79, seconds=5000.0, lm_epochs=[1, 2, 2]))
    res.add(dict(experiment="ablations", dataset="20newsgroups", method="no LM fine-tuning", n_labels="all",
                 seed=0, accuracy=0.70, seconds=900.0))  # no LM recipe of its own: compared as before
    table = acc.report(res, tmp_path / "B.md", tmp_path / "p.png").splitlines()
    assert ("| LM without the cap | 79.00 | n/a: no reference run of this seed had the same LM and classifier "
            "recipes | 5000 |") in table
    assert "| no LM fine-tuning | 70.00 | -10.00 | 900 |" in table
    res.add(dict(experiment="ablations", dataset="20newsgroups", method="LM without the cap", n_labels="all",
                 seed=0, accuracy=0.81, seconds=5000.0, lm_epochs=[12]))  # the same recipe again: paired
    assert "| LM without the cap | 81.00 | +1.00 | 5000 |" in acc.report(res, tmp_path / "B.md",
                                                                           tmp_path / "p.png").splitlines()


def test_ablation_report_finds_a_reference_of_the_older_recipe_in_the_history(acc, tmp_path):
    """The main table has moved on to a new LM recipe; an ablation of the old one is still compared
    with the reference run of its own recipe, seed and classifier settings, which the file keeps."""
    clf = {"stage_epochs": [1, 1, 1, 4]}
    res = acc.Results(tmp_path / "r.jsonl")
    main = dict(experiment="main", dataset="20newsgroups", method="ulmfit-fwd", n_labels="all", seed=0, seconds=1800.0)
    res.add({**main, "accuracy": 0.7597, "lm_epochs": [1], "clf": clf})
    res.add({**main, "accuracy": 0.7922, "lm_epochs": [1, 2, 2], "clf": clf})
    res.add({**main, "accuracy": 0.8111, "lm_epochs": acc.lm_recipe("20newsgroups"), "clf": clf})
    ab = dict(experiment="ablations", dataset="20newsgroups", n_labels="all", seed=0, seconds=5000.0)
    res.add({**ab, "method": "no cap", "accuracy": 0.7902, "lm_epochs": [1, 2, 2], "clf": clf})
    res.add({**ab, "method": "no cap, 1 round", "accuracy": 0.7670, "lm_epochs": [1], "clf": clf})
    res.add({**ab, "method": "no cap, other classifier", "accuracy": 0.77, "lm_epochs": [1],
             "clf": {"stage_epochs": [1, 1, 1, 2]}})
    table = acc.report(res, tmp_path / "B.md", tmp_path / "p.png").splitlines()
    assert "| ULMFiT (fwd): full recipe (the forward model of the table above) | 81.11 |  | 1800 |" in table
    # the difference is taken against a reference the table does not show, and the cell says which
    assert ("| no cap | 79.02 | -0.20 (against the same seed's earlier reference with this row's LM recipe: "
            "79.22) | 5000 |") in table
    assert ("| no cap, 1 round | 76.70 | +0.73 (against the same seed's earlier reference with this row's LM "
            "recipe: 75.97) | 5000 |") in table
    assert ("| no cap, other classifier | 77.00 | n/a: no reference run of this seed had the same LM and "
            "classifier recipes | 5000 |") in table


def test_lm_recipe_lists_each_rounds_epochs(acc, monkeypatch):
    monkeypatch.setitem(acc.LM_EPOCHS, "20newsgroups", 12)
    monkeypatch.setattr(acc, "LM_MORE", {})
    assert acc.lm_recipe("20newsgroups") == [12]
    monkeypatch.setitem(acc.LM_EPOCHS, "20newsgroups", 1)
    monkeypatch.setattr(acc, "LM_MORE", {"20newsgroups": (2, 2)})
    assert acc.lm_recipe("20newsgroups") == [1, 2, 2] and acc.lm_recipe("unlisted") == [2]


def test_a_cached_lm_of_an_older_recipe_is_refused_not_reused(acc, monkeypatch, tmp_path):
    """The cache tag of 20 Newsgroups' LM stayed `lm-all-*` when its recipe went from 1 epoch (+ later
    rounds) to 12: a finished or half-built LM of the old settings must not pass for the new one."""
    monkeypatch.setattr(acc, "WORK", tmp_path)
    monkeypatch.setitem(acc.LM_EPOCHS, "20newsgroups", 12)
    out = tmp_path / "20newsgroups" / "lm-all-fwd"
    out.mkdir(parents=True)
    old = acc.lm_config(epochs=1, backwards=False, save_every_minutes=30.0).to_dict()
    (out / "done.json").write_text(json.dumps({"valid_perplexity": 171.0, "config": old}))
    with pytest.raises(RuntimeError, match=r"epochs=1 \(now 12\).*Delete the folder"):
        acc.finetuned_lm("20newsgroups", False, tmp_path / "train.csv", "all")
    # the same settings but for how often it saved: reused as it is
    (out / "done.json").write_text(json.dumps({"valid_perplexity": 120.0, "config": {**old, "epochs": 12}}))
    assert acc.finetuned_lm("20newsgroups", False, tmp_path / "train.csv", "all")[1]["valid_perplexity"] == 120.0
    # a half-built one (state saved, not done) of other settings is refused before any training
    (out / "done.json").unlink()
    (out / "train_state.json").write_text("{}")
    from ulmfit.checkpoint import FORMAT, FORMAT_VERSION

    (out / "config.json").write_text(json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION,
                                                 "kind": "language_model", "train": old}))
    monkeypatch.setattr("ulmfit.api.finetune_lm", lambda *a, **k: pytest.fail("must not train"))
    with pytest.raises(RuntimeError, match="epochs=1"):
        acc.finetuned_lm("20newsgroups", False, tmp_path / "train.csv", "all")


def test_target_lm_runs_each_later_round_from_the_one_before(acc, monkeypatch, tmp_path):
    calls = []
    ppl = {"all": 171.0, "all-more": 145.9, "all-more2": 139.0}

    def fake(ds, backwards, texts, tag, base=None, **over):
        calls.append((tag, base, over))
        return tmp_path / tag, {"valid_perplexity": ppl[tag], "seconds": 1000.0 + ppl[tag]}

    monkeypatch.setattr(acc, "finetuned_lm", fake)
    monkeypatch.setattr(acc, "LM_MORE", {"20newsgroups": (2,)})
    out, info = acc.target_lm("20newsgroups", False, tmp_path / "train.csv")
    assert out == tmp_path / "all-more"
    assert calls == [("all", None, {"max_vocab": None}),
                     ("all-more", tmp_path / "all", {"freeze_epochs": 0, "epochs": 2})]
    assert info["seconds"] == 2316.9 and info["valid_perplexity"] == 145.9
    assert info["round_perplexities"] == [171.0, 145.9]

    calls.clear()  # a third round starts from the second, whose cache tag is unchanged
    monkeypatch.setattr(acc, "LM_MORE", {"20newsgroups": (2, 3)})
    out, info = acc.target_lm("20newsgroups", True, tmp_path / "train.csv")
    assert out == tmp_path / "all-more2"
    assert calls[2] == ("all-more2", tmp_path / "all-more", {"freeze_epochs": 0, "epochs": 3})
    assert info["round_perplexities"] == [171.0, 145.9, 139.0] and info["valid_perplexity"] == 139.0

    calls.clear()
    out, info = acc.target_lm("rotten-tomatoes", False, tmp_path / "train.csv")  # one round only
    assert out == tmp_path / "all" and [c[0] for c in calls] == ["all"]
    assert "round_perplexities" not in info

    # a variant's rounds have their own cache tags; only the first round sets the vocabulary cap
    calls.clear()
    ppl.update({"vocab-all": 160.0, "vocab-all-more": 140.0, "vocab-all-more2": 130.0})
    out, info = acc.target_lm("20newsgroups", False, tmp_path / "train.csv", prefix="vocab-", max_vocab=10**6)
    assert out == tmp_path / "vocab-all-more2"
    assert calls[0] == ("vocab-all", None, {"max_vocab": 10**6})
    assert [c[1] for c in calls[1:]] == [tmp_path / "vocab-all", tmp_path / "vocab-all-more"]
    assert all("max_vocab" not in c[2] for c in calls[1:])
    assert info["round_perplexities"] == [160.0, 140.0, 130.0]


def _fake_trainer(trained, accuracy, key=lambda out, cfg: out.name):
    """A `train_and_eval` that trains nothing: notes `key(out, cfg)` in `trained` and leaves a
    classifier folder (config.json) behind, as the real one does."""
    def fake_train(lm_dir, train, test, out, cfg, pretrained=True):
        trained.append(key(out, cfg))
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text("{}")
        return {"accuracy": accuracy}
    return fake_train


def test_rerunning_the_ensemble_alone_does_not_retrain_its_members(acc, fake_data, monkeypatch, tmp_path):
    trained = []
    fake_data(100)
    monkeypatch.setattr(acc, "train_and_eval", _fake_trainer(trained, 0.8))
    monkeypatch.setattr(acc, "ensemble_eval", lambda dirs, test: {"accuracy": 0.85, "members": [d.name for d in dirs]})
    path = tmp_path / "r.jsonl"
    acc.exp_main("rotten-tomatoes", acc.Results(path), [0], ["ulmfit-ens"])  # no members yet: both trained
    assert trained == ["clf-main-fwd-s0", "clf-main-bwd-s0"]
    acc.exp_main("rotten-tomatoes", acc.Results(path, rerun=True), [0], ["ulmfit-ens"])
    assert len(trained) == 2  # recombined, not retrained
    acc.exp_main("rotten-tomatoes", acc.Results(path, rerun=True), [0], ["ulmfit-bwd", "ulmfit-ens"])
    assert trained[2:] == ["clf-main-bwd-s0"]
    rows = acc.Results(path).rows
    methods = [r["method"] for r in rows]
    assert methods.count("ulmfit-ens") == 3 and methods.count("ulmfit-fwd") == 1
    # every ULMFiT row names its LM's fine-tuning recipe, so that the report pairs like with like
    assert all(r["lm_epochs"] == acc.lm_recipe("rotten-tomatoes") for r in rows)


def test_rows_of_an_older_lm_recipe_are_trained_again(acc, fake_data, monkeypatch, tmp_path):
    """After a dataset's LM recipe changes, `main` retrains its ULMFiT rows (and the ensemble's
    members, even when only the ensemble is asked for) without --rerun; rows of the current recipe,
    and rows that predate the field, count as done."""
    trained = []
    fake_data(100)
    monkeypatch.setattr(acc, "train_and_eval", _fake_trainer(trained, 0.8))
    monkeypatch.setattr(acc, "ensemble_eval", lambda dirs, test: {"accuracy": 0.85})
    path = tmp_path / "r.jsonl"
    old = acc.Results(path)
    for m in ("ulmfit-fwd", "ulmfit-bwd", "ulmfit-ens"):
        old.add({**_row(method=m, accuracy=0.7), "lm_epochs": [1, 2, 2]})
    for d in ("fwd", "bwd"):  # their saved classifiers, of the old LMs
        saved = acc.main_clf_dir("rotten-tomatoes", d, 0)
        saved.mkdir(parents=True, exist_ok=True)
        (saved / "config.json").write_text("{}")
    res = acc.Results(path)
    assert res.stale([1, 2, 2], **_row(method="ulmfit-fwd")) is False
    assert res.stale(acc.lm_recipe("rotten-tomatoes"), **_row(method="ulmfit-fwd"))
    acc.exp_main("rotten-tomatoes", res, [0], ["ulmfit-ens"])
    assert trained == ["clf-main-fwd-s0", "clf-main-bwd-s0"]
    acc.exp_main("rotten-tomatoes", acc.Results(path), [0], ["ulmfit-fwd", "ulmfit-bwd", "ulmfit-ens"])
    assert len(trained) == 2  # all current now: nothing trained again
    latest = {r["method"]: r for r in acc.Results(path).latest()}
    assert all(latest[m]["lm_epochs"] == acc.lm_recipe("rotten-tomatoes") for m in latest)
    legacy = acc.Results(tmp_path / "legacy.jsonl")
    legacy.add(_row(method="ulmfit-fwd", accuracy=0.7))  # no lm_epochs: predates the field
    assert legacy.has(**_row(method="ulmfit-fwd"), lm_epochs=[12])
    assert not legacy.stale([12], **_row(method="ulmfit-fwd"))
    # an old row without the field, then one of an older recipe (20 Newsgroups' ensemble history):
    # the latest decides, so the run is due again
    legacy.add({**_row(method="ulmfit-ens", accuracy=0.80)})
    legacy.add({**_row(method="ulmfit-ens", accuracy=0.82), "lm_epochs": [1, 2, 2]})
    assert not legacy.has(**_row(method="ulmfit-ens"), lm_epochs=[12])
    assert legacy.has(**_row(method="ulmfit-ens"), lm_epochs=[1, 2, 2])
    legacy.add({**_row(method="ulmfit-ens", accuracy=0.83), "lm_epochs": [12]})
    assert legacy.has(**_row(method="ulmfit-ens"), lm_epochs=[12])


def test_scratch_runs_take_their_dataset_settings(acc, fake_data, monkeypatch, tmp_path):
    """From scratch: all layers at one rate, without the pretrained weights, up to 20 epochs with
    patience 5, unless the dataset has its own settings (SCRATCH_OVER)."""
    seen = {}
    fake_data(2000)
    monkeypatch.setattr(acc, "SCRATCH_OVER", {"bbc-news": {"stage_epochs": (8,)}})

    def fake_train(lm_dir, train, test, out, cfg, pretrained=True):
        seen[out.parent.name] = (cfg, pretrained)
        return {"accuracy": 0.5, "clf": acc.train_and_eval_key(cfg)}

    monkeypatch.setattr(acc, "train_and_eval", fake_train)
    for ds in ("bbc-news", "rotten-tomatoes"):
        acc.exp_main(ds, acc.Results(tmp_path / "r.jsonl"), [0], ["scratch"])
    assert seen["bbc-news"][0].stage_epochs == (8,) and seen["rotten-tomatoes"][0].stage_epochs == (20,)
    assert all(c.stage_groups == (0,) and c.patience == 5 and not pre for c, pre in seen.values())
    assert acc.scratch_recipe("rotten-tomatoes", 100, 0).stage_epochs == (20,)  # small label sets too


def test_bn_recal_report_pairs_runs_by_seed_and_orders_sizes(tmp_path, load_bench):
    import sys

    sys.path.insert(0, str(ROOT / "bench"))
    mod = load_bench("bn_recal")
    path = tmp_path / "bn.jsonl"
    rows = []
    for size, seed, off, on in [("1000", 0, 0.60, 0.65), ("100", 0, 0.50, 0.40), ("100", 1, 0.70, 0.72),
                                ("100", 2, 0.55, None), ("all", 0, 0.76, 0.75)]:
        for v, acc_ in (("off", off), ("on", on)):
            if acc_ is not None:
                rows.append(dict(experiment=f"bn_recal:{v}", dataset="rotten-tomatoes", method="ulmfit-semi",
                                 n_labels=size, seed=seed, accuracy=acc_, macro_f1=acc_ - 0.01))
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = mod.report(path).splitlines()[2:]
    assert [line.split(" | ")[2] for line in table] == ["100", "1000", "all"]
    # seed 2 of 100 labels has no "on" run: only the two complete pairs count
    assert table[0].split(" | ")[3:6] == ["60.00 ± 14.14", "56.00 ± 22.63", "-4.00 (-10.0, +2.0)"]
    assert table[0].endswith("| 2 |") and "ulmfit-fwd (main recipe)" in table[2]


def test_the_semi_supervised_ensemble_trains_a_recorded_member_again_only_when_it_needs_it(acc, fake_data,
                                                                                          monkeypatch, tmp_path):
    trained = []
    fake_data(100)
    monkeypatch.setattr(acc, "stratified_sample", lambda train, size, seed: train[:size])
    monkeypatch.setattr(acc, "train_and_eval", _fake_trainer(trained, 0.6, lambda out, cfg: (out.name, cfg.backwards)))
    monkeypatch.setattr(acc, "ensemble_eval", lambda dirs, test: {"accuracy": 0.65, "members": [d.name for d in dirs]})
    path = tmp_path / "r.jsonl"
    acc.exp_sizes("rotten-tomatoes", acc.Results(path), [0], [10], ["ulmfit-semi"])  # an earlier forward row
    assert trained == [("clf-n10-semi-s0", False)]
    # its folder is gone (the benchmark cleans up), so the ensemble trains it again without recording it
    acc.exp_sizes("rotten-tomatoes", acc.Results(path), [0], [10], ["ulmfit-semi-bwd", "ulmfit-semi-ens"])
    assert trained[1:] == [("clf-n10-semi-s0", False), ("clf-n10-semibwd-s0", True)]
    rows = acc.Results(path).rows
    assert [r["method"] for r in rows] == ["ulmfit-semi", "ulmfit-semi-bwd", "ulmfit-semi-ens"]
    assert rows[-1]["members"] == ["clf-n10-semi-s0", "clf-n10-semibwd-s0"]
    acc.exp_sizes("rotten-tomatoes", acc.Results(path), [0], [10], ["ulmfit-semi-ens"])  # done: nothing trained
    assert len(trained) == 3


def test_lm_rounds_shortens_the_later_rounds_and_names_it(acc, monkeypatch, tmp_path):
    monkeypatch.setattr(acc, "LM_MORE", {"20newsgroups": (2, 2)})
    monkeypatch.setattr(acc, "LM_MORE_RECIPE", {"20newsgroups": (2, 2)})
    assert acc.lm_rounds_note("20newsgroups") == "" and acc.lm_rounds_note("bbc-news") == ""
    seen = {}
    monkeypatch.setattr(acc, "exp_ablations", lambda ds, results, seeds, methods: seen.update(
        more=dict(acc.LM_MORE), note=acc.lm_rounds_note(ds)))
    monkeypatch.setattr(acc, "_maybe_jemalloc", lambda: None)
    acc.main(["ablations", "--datasets", "20newsgroups", "--methods", "vocab", "--lm-rounds", "1",
              "--results", str(tmp_path / "r.jsonl")])
    assert seen == {"more": {"20newsgroups": ()}, "note": " (1 of the recipe's 3 LM rounds)"}
    assert acc.ran_fewer_rounds("vocab" + seen["note"])  # the report recognises the note it wrote
    with pytest.raises(SystemExit):
        acc.main(["ablations", "--lm-rounds", "0", "--results", str(tmp_path / "r.jsonl")])
    monkeypatch.setattr(acc, "LM_MORE", {"20newsgroups": (2, 2)})
    acc.main(["ablations", "--datasets", "20newsgroups", "--methods", "vocab-bwd,vocab-ens", "--lm-rounds", "2",
              "--results", str(tmp_path / "r.jsonl")])
    assert seen["note"] == " (2 of the recipe's 3 LM rounds)"
    with pytest.raises(SystemExit):  # the full recipe's row would not say it ran fewer rounds
        acc.main(["ablations", "--methods", "vocab,full", "--lm-rounds", "1", "--results", str(tmp_path / "r.jsonl")])
    with pytest.raises(SystemExit):  # a main row would be recorded as the full recipe's
        acc.main(["main", "--datasets", "20newsgroups", "--lm-rounds", "1", "--results", str(tmp_path / "r.jsonl")])


def test_vocab_ensemble_trains_missing_members_once_and_is_paired_with_the_recipe_ensemble(acc, fake_data,
                                                                                           monkeypatch, tmp_path):
    trained, lms = [], []
    fake_data(100)
    monkeypatch.setattr(acc, "train_and_eval", _fake_trainer(trained, 0.8, key=lambda out, cfg: (out.name,
                                                                                              cfg.backwards)))
    monkeypatch.setattr(acc, "ensemble_eval", lambda dirs, test: {"accuracy": 0.85, "members": [d.name for d in dirs]})

    def fake_lm(ds, bw, csv, prefix="", max_vocab=None):
        lms.append((bw, prefix, max_vocab))
        return tmp_path / "lm", {"valid_perplexity": 50.0}

    monkeypatch.setattr(acc, "target_lm", fake_lm)
    res = acc.Results(tmp_path / "r.jsonl")
    acc.exp_ablations("20newsgroups", res, [0], ["vocab-ens"])
    assert trained == [("abl-vocab-s0", False), ("abl-vocab-bwd-s0", True)]
    assert lms == [(False, "vocab-", acc.UNCAPPED_VOCAB), (True, "vocab-", acc.UNCAPPED_VOCAB)]
    rows = {r["method"].split(", ")[1] if ", " in r["method"] else "fwd": r for r in res.rows}
    assert set(rows) == {"fwd", "backward model", "fwd+bwd ensemble"}
    assert rows["fwd+bwd ensemble"]["members"] == ["abl-vocab-s0", "abl-vocab-bwd-s0"]
    assert rows["backward model"]["compare_with"] == "ulmfit-bwd" and "compare_with" not in rows["fwd"]

    # again with --rerun: the members' models are there, so only the ensemble is evaluated again
    rerun = acc.Results(tmp_path / "r.jsonl", rerun=True)
    acc.exp_ablations("20newsgroups", rerun, [0], ["vocab-ens"])
    assert len(trained) == 2 and len(rerun.rows) == 4

    # its difference is taken from the recipe's ensemble, not from the forward model
    for m, a in [("ulmfit-fwd", 0.7922), ("ulmfit-ens", 0.8219)]:
        res.add(dict(experiment="main", dataset="20newsgroups", method=m, n_labels="all", seed=0, accuracy=a,
                     lm_epochs=acc.lm_recipe("20newsgroups")))  # the recipe the ablation's rows record
    assert rows["fwd"]["lm_epochs"] == rows["fwd+bwd ensemble"]["lm_epochs"] == acc.lm_recipe("20newsgroups")
    table = acc.report(acc.Results(tmp_path / "r.jsonl"), tmp_path / "B.md", tmp_path / "p.png").splitlines()
    ens = next(l for l in table if "fwd+bwd ensemble, against the recipe's ensemble" in l)
    assert "| 85.00 | +2.81 |" in ens
    assert any(l.startswith("| LM fine-tuning without the vocabulary cap (every target word seen 3 times gets an "
                            "id) | 80.00 | +0.78 |") for l in table)

    # a member whose row is recorded but whose model is gone (a new machine): a clear failure, kept as such
    import shutil
    shutil.rmtree(tmp_path / "20newsgroups" / "abl-vocab-bwd-s0")
    again = acc.Results(tmp_path / "r2.jsonl")
    for r in rows.values():
        if "ensemble" not in r["method"]:
            again.add(dict(r))
    acc.exp_ablations("20newsgroups", again, [0], ["vocab-ens"])
    assert "no saved classifier for the ensemble's member 'vocab-bwd'" in again.rows[-1]["note"]
    assert len(trained) == 2


def test_an_interrupted_lm_finetuning_continues_from_its_last_save(acc, corpus, monkeypatch, tmp_path, capsys):
    """A session's end kills a long LM round (20 Newsgroups' take longer than a session); the next
    run of the benchmark continues it from its saved state instead of starting it again."""
    from ulmfit.api import pretrain
    from ulmfit.io import TrainingInterrupted
    from ulmfit.train.loop import LMTrainConfig, LMTrainer

    fast = dict(bs=8, bptt=16, lr=1e-2, lr_div=1.0)
    pretrain(corpus, tmp_path / "base", preset="tiny", train_cfg=LMTrainConfig(epochs=1, **fast), progress=False,
             n_workers=1)
    target = tmp_path / "train.csv"
    target.write_text("text\n" + "\n".join(f"the film was wonderful and the zorblat was great {i % 5} ."
                                           for i in range(300)) + "\n")
    monkeypatch.setattr(acc, "WORK", tmp_path / "work")
    monkeypatch.setitem(acc.LM_EPOCHS, "bbc-news", 2)
    real = LMTrainer.set_lrs
    started, cuts = [], []

    def cut(self, *a):
        started.append(self.step)
        if self.step == 5 and not cuts:  # the first run only
            cuts.append(self.step)
            raise KeyboardInterrupt
        return real(self, *a)

    monkeypatch.setattr(LMTrainer, "set_lrs", cut)
    with pytest.raises(TrainingInterrupted, match="interrupted at step 5"):
        acc.finetuned_lm("bbc-news", False, target, "all", base=tmp_path / "base", **fast)
    out = tmp_path / "work" / "bbc-news" / "lm-all-fwd"
    assert not (out / "done.json").exists()
    first = len(started)
    out2, info = acc.finetuned_lm("bbc-news", False, target, "all", base=tmp_path / "base", **fast)
    assert out2 == out and info["resumed"] is True
    assert "resuming the interrupted LM fine-tuning" in capsys.readouterr().out
    assert started[first] == 5  # the second run started where the first stopped, not at step 0
    assert info["epochs_run"] == 3 and info["config"]["epochs"] == 2  # 1 frozen + 2, as first set
    # finished: the next call takes the cached result and trains nothing
    n = len(started)
    assert acc.finetuned_lm("bbc-news", False, target, "all", base=tmp_path / "base", **fast)[1] == info
    assert len(started) == n


def test_lms_builds_both_directions_of_the_recipe_and_nothing_else(acc, monkeypatch, tmp_path, capsys):
    calls = []
    monkeypatch.setattr(acc, "load_dataset", lambda ds: (tmp_path, None, None))

    def fake_lm(ds, bw, csv):
        calls.append((ds, bw, csv))
        info = {"valid_perplexity": 135.0, "seconds": 600.0}
        return tmp_path / f"lm-{bw}", ({**info, "round_perplexities": [171.0, 145.9, 135.0]} if bw else info)

    monkeypatch.setattr(acc, "target_lm", fake_lm)
    monkeypatch.setattr(acc, "train_and_eval", lambda *a, **k: pytest.fail("lms trains no classifier"))
    out = acc.exp_lms("20newsgroups")
    assert calls == [("20newsgroups", False, tmp_path / "train.csv"), ("20newsgroups", True, tmp_path / "train.csv")]
    assert set(out) == {"fwd", "bwd"}
    printed = capsys.readouterr().out
    assert "20newsgroups bwd LM" in printed and "171.00 / 145.90 / 135.00" in printed


def test_an_interrupted_run_stops_the_benchmark_with_its_own_advice(acc, tmp_path):
    """Ctrl-C/SIGTERM stop the whole benchmark (no failed row is written), and the advice names the
    benchmark's command: it continues by itself, it has no --resume flag."""
    from ulmfit.train.loop import TrainingInterrupted, interrupted_message

    def stopped():
        raise TrainingInterrupted(interrupted_message(7, "/x"))

    res = acc.Results(tmp_path / "r.jsonl")
    with pytest.raises(SystemExit, match="Run the same bench/accuracy.py command again") as e:
        acc._guard(res, _row(method="ulmfit-bwd"), stopped)
    assert "--resume" not in str(e.value) and not res.rows


def test_a_misspelt_method_is_refused_before_anything_runs(acc, monkeypatch, tmp_path, capsys):
    ran = []
    monkeypatch.setattr(acc, "_maybe_jemalloc", lambda: ran.append("started"))
    for experiment, methods, says in (("main", "tfidf,ulmfit-fw", "unknown main method(s) ['ulmfit-fw']"),
                                      ("sizes", "setfit,ulmfit-sem", "unknown sizes method(s) ['ulmfit-sem']"),
                                      ("ablations", "nope", "unknown ablations method(s) ['nope']")):
        with pytest.raises(SystemExit):
            acc.main([experiment, "--methods", methods, "--results", str(tmp_path / "r.jsonl")])
        assert says in capsys.readouterr().err
    assert ran == [] and not (tmp_path / "r.jsonl").exists()


def test_the_benchmarks_keep_their_models_in_the_library_cache(load_bench, monkeypatch, tmp_path):
    """ULMFIT_CACHE moves the benchmarks' models and embeddings with the library's cache (they went to
    ~/.cache/ulmfit whatever it said); ULMFIT_BENCH_DIR still names the accuracy benchmark's folder."""
    monkeypatch.setenv("ULMFIT_CACHE", str(tmp_path / "c"))
    monkeypatch.delenv("ULMFIT_BENCH_DIR", raising=False)
    assert load_bench("accuracy").WORK == tmp_path / "c" / "bench" / "accuracy"
    assert load_bench("baselines").MINILM_CACHE == tmp_path / "c" / "bench" / "minilm"
    alloc = load_bench("allocator_memory")
    assert alloc.CACHE == tmp_path / "c" and alloc.BENCH_LM.parent.parent == tmp_path / "c" / "bench" / "accuracy"
    monkeypatch.setenv("ULMFIT_BENCH_DIR", str(tmp_path / "b"))
    assert load_bench("accuracy").WORK == tmp_path / "b"
    assert load_bench("allocator_memory").BENCH_LM == tmp_path / "b" / "rotten-tomatoes" / "lm-all-fwd"
    # by the library's rules: ~ is the home folder, an empty setting is no setting
    monkeypatch.delenv("ULMFIT_BENCH_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    for value, root in (("~/c2", tmp_path / "home" / "c2"), ("", tmp_path / "home" / ".cache" / "ulmfit")):
        monkeypatch.setenv("ULMFIT_CACHE", value)
        assert load_bench("accuracy").WORK == root / "bench" / "accuracy"
        assert load_bench("baselines").MINILM_CACHE == root / "bench" / "minilm"
        assert load_bench("allocator_memory").BENCH_LM == root / "bench" / "accuracy" / "rotten-tomatoes" / "lm-all-fwd"
