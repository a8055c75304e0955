"""The ULMFiT classifier: padding/BPT3C exactness, gradual unfreezing, learning, round trips, ensembles."""

import csv
import json
import os
from pathlib import Path
import random
import re

import numpy as np
import pytest
import torch

from ulmfit import checkpoint as ckpt
from ulmfit.api import LanguageModel, pretrain
from ulmfit.classifier_api import TextClassifier, evaluate, load_labeled, train_classifier
from ulmfit.data.labeled import LabeledTexts, read_labeled
from ulmfit.cli import main
from ulmfit.io import TrainingInterrupted, UlmfitError
from ulmfit.model.awd_lstm import preset
from ulmfit.model.classifier import AWDLSTMClassifier, HeadConfig, masked_concat_pool
from ulmfit.train.classify import ClassifierTrainConfig
from ulmfit.train.loop import LMTrainConfig


def tiny_classifier(bptt=7, max_len=1000, n_classes=3, seed=0):
    torch.manual_seed(seed)
    return AWDLSTMClassifier(preset("tiny", 60), HeadConfig(n_classes, bptt=bptt, max_len=max_len)).eval()


def batch_of(docs, pad=1):
    T = max(len(d) for d in docs)
    ids = torch.full((len(docs), T), pad, dtype=torch.long)
    for i, d in enumerate(docs):
        ids[i, : len(d)] = d
    return ids, torch.tensor([len(d) for d in docs])


def test_a_document_gets_the_same_prediction_alone_and_in_any_batch():
    m = tiny_classifier()
    torch.manual_seed(1)
    docs = [torch.randint(9, 60, (L,)) for L in (23, 4, 61, 1, 16, 40)]
    with torch.no_grad():
        together = m(*batch_of(docs))
        alone = torch.cat([m(*batch_of([d])) for d in docs])
        shuffled = m(*batch_of(docs[::-1])).flip(0)
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)
    torch.testing.assert_close(shuffled, alone, atol=1e-5, rtol=0)


def test_bpt3c_pools_the_same_features_as_one_pass_over_the_whole_document():
    m = tiny_classifier(bptt=5)
    doc = torch.randint(9, 60, (1, 37))
    enc = m.encoder
    with torch.no_grad():
        out, _ = enc(doc, state=enc._zero_state(1, enc.embedding.weight), keep_state=False)
        whole = masked_concat_pool(out, torch.ones(1, 37, dtype=torch.bool), torch.tensor([37]))
        chunked = m.bpt3c(doc, torch.tensor([37]))
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=1e-5)


def test_bpt3c_batch_of_short_and_very_long_documents():
    """The chunks that hold each document's last max_len tokens are not contiguous in such a batch
    (a regression: 20 Newsgroups, a 400-token post beside a 12,000-token one, crashed)."""
    m = tiny_classifier(bptt=7, max_len=10)
    torch.manual_seed(2)
    docs = [torch.randint(9, 60, (L,)) for L in (3, 50, 200, 9, 10, 11)]
    with torch.no_grad():
        together = m(*batch_of(docs))
        alone = torch.cat([m(*batch_of([d])) for d in docs])
        enc = m.encoder
        for d in docs:  # the pooled features: one pass over the whole document, last 10 positions
            out, _ = enc(d[None], state=enc._zero_state(1, enc.embedding.weight), keep_state=False)
            mask = torch.arange(len(d))[None] >= len(d) - 10
            ref = masked_concat_pool(out, mask, torch.tensor([len(d)]))
            torch.testing.assert_close(m.bpt3c(d[None], torch.tensor([len(d)])), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)
    # gradients reach the kept chunks of every document
    m.train()
    ids, lens = batch_of(docs)
    m.encoder.embedding.weight.grad = None
    m(ids, lens).sum().backward()
    g = m.encoder.embedding.weight.grad
    assert g is not None and float(g[docs[2][-1]].abs().sum()) > 0 and float(g[docs[0][0]].abs().sum()) > 0


def saved_bytes(m, L):
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    m.train()
    doc = torch.randint(9, 60, (2, L))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        m(doc, torch.tensor([L, L]))
    return total


def test_bpt3c_memory_is_bounded_in_a_batch_of_mixed_lengths():
    """Each document back-propagates through its own last max_len tokens only, also when the
    batch mixes lengths so that the documents' windows do not overlap (20 Newsgroups ran out of
    24 GB when every window of a spread-out batch kept the graph of all running rows)."""
    m = tiny_classifier(bptt=10, max_len=40)

    def saved(lengths):  # bytes of distinct storages that the graph keeps alive
        total, seen = 0, set()

        def pack(t):
            nonlocal total
            if t.untyped_storage().data_ptr() not in seen:
                seen.add(t.untyped_storage().data_ptr())
                total += t.untyped_storage().nbytes()
            return t

        m.train()
        torch.manual_seed(0)
        ids, lens = batch_of([torch.randint(9, 60, (L,)) for L in lengths])
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            m(ids, lens)
        return total

    aligned = saved([60] * 8)
    spread = saved([60, 400, 800, 1200, 1600, 2000, 2400, 2800])
    assert spread <= aligned * 1.5


def test_bpt3c_memory_does_not_grow_with_document_length_beyond_max_len():
    m = tiny_classifier(bptt=10, max_len=40)
    short, long_, longer = saved_bytes(m, 60), saved_bytes(m, 600), saved_bytes(m, 3000)
    assert long_ <= short * 1.1 and longer <= short * 1.1
    unbounded = tiny_classifier(bptt=10, max_len=100000)
    assert saved_bytes(unbounded, 600) > 5 * short  # the bound is what keeps it flat


# ---------------------------------------------------------------------------------------------
# End to end on a small synthetic task


def write_task(path, n, seed, labels=("neg", "pos"), skew=None):
    rng = random.Random(seed)
    cue = {"neg": ["awful", "terrible", "boring"], "pos": ["wonderful", "great", "superb"],
           "meh": ["average", "ordinary", "fine"]}
    filler = "the film was a story about people in a city and the actors did their work on screen".split()
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(n):
            lab = labels[0] if skew and rng.random() < skew else rng.choice(labels)
            words = [rng.choice(filler) for _ in range(rng.randint(8, 60))]
            for _ in range(2):
                words.insert(rng.randrange(len(words)), rng.choice(cue[lab]))
            w.writerow([" ".join(words), lab])
    return path


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    d = tmp_path_factory.mktemp("task")
    write_task(d / "train.csv", 300, 0)
    write_task(d / "test.csv", 120, 1)
    pretrain(d / "train.csv", d / "lm", preset="tiny", progress=False, n_workers=1,
             train_cfg=LMTrainConfig(epochs=1, bs=8, bptt=20, lr=1e-2, lr_div=1.0, save_every_minutes=1e9),
             fmt="csv", column="text")
    return d


FAST = dict(bs=16, stage_groups=(1, 0), stage_epochs=(1, 4), stage_lrs=(2e-2, 1e-2), lr_div=1.0, drop_mult=0.1,
            min_last_steps=0)


@pytest.fixture(scope="module")
def trained(task):
    res = train_classifier(task / "lm", task / "train.csv", task / "clf", cfg=ClassifierTrainConfig(**FAST),
                           progress=False, n_workers=1)
    return task, res


def test_a_classifier_learns_a_small_task_far_above_chance(trained):
    task, res = trained
    rep = evaluate(task / "clf", task / "test.csv", report=task / "report.json", progress=False)
    assert rep["accuracy"] > 0.9
    # the log loss: the mean negative log-probability of each text's label
    data = load_labeled(task / "test.csv")
    clf = TextClassifier.load(task / "clf")
    p = clf.predict_proba(data.texts)
    y = [clf.labels.index(l) for l in data.labels]
    assert rep["log_loss"] == pytest.approx(-np.mean(np.log(p[np.arange(len(y)), y])), rel=1e-5)
    saved = json.loads((task / "report.json").read_text())
    assert saved["confusion_matrix"] and set(saved["per_class"]) == {"neg", "pos"}
    assert (task / "report.png").read_bytes()[:4] == b"\x89PNG"
    cfg = json.loads((task / "clf" / "config.json").read_text())
    assert cfg["kind"] == "classifier" and cfg["labels"] == ["neg", "pos"] and cfg["best_epoch"] >= 1


def test_where_the_cpu_has_bf16_the_classifier_trains_and_predicts_in_it(task, tmp_path, monkeypatch):
    import torch

    from ulmfit.train.precision import bf16_supported, predicts_in_bf16

    if not bf16_supported():
        pytest.skip("this CPU has no bf16 kernels; the library trains in fp32 here")
    from ulmfit.train import classify

    monkeypatch.setenv("ULMFIT_BF16", "on")  # the suite runs in fp32 otherwise (conftest)
    real, used = classify.autocast_ctx, []
    monkeypatch.setattr(classify, "autocast_ctx", lambda on, dev: used.append(on) or real(on, dev))
    res = train_classifier(task / "lm", task / "train.csv", tmp_path / "clf", cfg=ClassifierTrainConfig(**FAST),
                           progress=False, n_workers=1)
    assert res["best_epoch"] >= 1
    assert used and all(used)  # every training and validation step in bf16
    assert predicts_in_bf16(json.loads((tmp_path / "clf" / "config.json").read_text()), torch.device("cpu"))
    assert evaluate(tmp_path / "clf", task / "test.csv", progress=False)["accuracy"] > 0.85


def test_predictions_come_back_in_input_order_and_survive_a_round_trip(trained, tmp_path):
    task, _ = trained
    clf = TextClassifier.load(task / "clf")
    # the second text is long (several BPTT chunks) with the cue density of the training texts
    # (the last, not one word alone: "terrible" by itself sits near p=0.49 in fp32, too close to call)
    texts = ["a great and wonderful film", "the actors did their work in a boring city story " * 12, "superb",
             "terrible and boring"]
    p = clf.predict_proba(texts)
    one_by_one = np.concatenate([clf.predict_proba([t]) for t in texts])
    np.testing.assert_allclose(p, one_by_one, atol=1e-5)
    assert clf.predict(texts) == ["pos", "neg", "pos", "neg"]
    model, cfg, vocab = ckpt.load_classifier(task / "clf")
    ckpt.save_classifier(tmp_path / "copy", model.state_dict(), arch=cfg["arch"], head=cfg["head"], vocab=vocab,
                         tok_cfg=clf.members[0][3], labels=cfg["labels"])
    assert np.array_equal(TextClassifier.load(tmp_path / "copy").predict_proba(texts), p)


def test_a_classifier_trained_without_bf16_predicts_without_it(trained, tmp_path, monkeypatch):
    import shutil

    from ulmfit import classifier_api

    task, _ = trained
    shutil.copytree(task / "clf", tmp_path / "fp32")
    c = json.loads((tmp_path / "fp32" / "config.json").read_text())
    c["train"]["bf16"] = False  # as `train-classifier --no-bf16` writes it
    (tmp_path / "fp32" / "config.json").write_text(json.dumps(c))
    used = []
    real = classifier_api.predict_probs

    def predict_probs(*a, use_bf16=False, **k):
        used.append(use_bf16)
        return real(*a, use_bf16=False, **k)

    from ulmfit.train import precision

    monkeypatch.setattr(precision, "bf16_pays", lambda *a, **k: True)  # a CPU where bf16 is faster
    monkeypatch.setenv("ULMFIT_BF16", "auto")  # the suite's off would keep both in fp32
    monkeypatch.setattr(classifier_api, "predict_probs", predict_probs)
    TextClassifier.load(task / "clf").predict_proba(["superb"])
    TextClassifier.load(tmp_path / "fp32").predict_proba(["superb"])
    assert used == [True, False]


def test_loading_runs_on_the_device_asked_for_leaves_the_callers_rng_and_refuses_a_missing_device(trained, monkeypatch,
                                                                                                  capsys):
    import torch

    from ulmfit import api

    task, _ = trained
    torch.manual_seed(5)
    rng = torch.random.get_rng_state()
    clf = TextClassifier.load(task / "clf", device="cpu")
    assert clf.device == torch.device("cpu") and clf.predict(["superb"]) == ["pos"]
    assert LanguageModel.load(task / "lm", device="cpu") and torch.equal(torch.random.get_rng_state(), rng)  # untouched
    assert LanguageModel.load(task / "lm", device="cpu").device == torch.device("cpu")
    if not torch.cuda.is_available():
        for load, path in ((TextClassifier.load, task / "clf"), (LanguageModel.load, task / "lm")):
            with pytest.raises(UlmfitError, match="no CUDA GPU is available"):
                load(path, device="cuda")
    with pytest.raises(UlmfitError, match="CPU or a CUDA GPU"):
        TextClassifier.load(task / "clf", device="mps")
    # each inference command hands its --device to the loader
    asked = []
    real = api.resolve_device

    def resolve(device):
        asked.append(device)
        return real("cpu")

    monkeypatch.setattr(api, "resolve_device", resolve)
    (task / "one.txt").write_text("superb\n")
    data = ["--model", str(task / "clf"), "--device", "cpu", "--quiet"]
    assert main(["predict", str(task / "one.txt"), *data]) == 0
    assert main(["evaluate", str(task / "test.csv"), *data, "--report", str(task / "dev-report.json")]) == 0
    (task / "lm-text.txt").write_text("the film was a story about people in a city and the actors\n")
    assert main(["lm-eval", str(task / "lm-text.txt"), "--model", str(task / "lm"), "--device", "cpu", "--quiet"]) == 0
    assert main(["generate", "the film", "--model", str(task / "lm"), "--tokens", "3", "--seed", "0",
                 "--device", "cpu"]) == 0
    capsys.readouterr()
    assert asked == ["cpu"] * 4


def test_gradual_unfreezing_trains_exactly_the_unfrozen_groups(task, tmp_path):
    lm_model, _, _ = ckpt.load_model(task / "lm")
    before = {k: v.clone() for k, v in lm_model.encoder.state_dict().items()}
    cfg = ClassifierTrainConfig(**{**FAST, "stage_groups": (2,), "stage_epochs": (1,), "stage_lrs": (1e-2,)})
    train_classifier(task / "lm", task / "train.csv", tmp_path / "c", cfg=cfg, progress=False, n_workers=1)
    model, _, _ = ckpt.load_classifier(tmp_path / "c")
    after = model.encoder.state_dict()
    top = f"rnns.{model.arch.n_layers - 1}."
    for k, v in before.items():
        if k.startswith(top):
            assert not torch.equal(after[k], v), k  # the top LSTM layer trained in stage "top 2"
        else:
            assert torch.equal(after[k], v), k  # embedding and lower layers are bit-identical


def test_stage_groups_above_the_models_layer_groups_are_refused_before_anything_is_written(task, tmp_path):
    # the tiny model has 4 groups (embedding, 2 LSTM layers, head); 5 used to wrap around to "the head alone"
    cfg = ClassifierTrainConfig(**{**FAST, "stage_groups": (5, 0), "stage_epochs": (1, 1), "stage_lrs": (1e-2, 1e-2)})
    with pytest.raises(UlmfitError, match=r"has 4 layer groups .* 0 \(all groups\) to 4, not 5"):
        train_classifier(task / "lm", task / "train.csv", tmp_path / "c", cfg=cfg, progress=False, n_workers=1)
    assert not (tmp_path / "c").exists()
    # said before the data is read and tokenised (minutes on a large file): here, a file that is not there
    with pytest.raises(UlmfitError, match=r"has 4 layer groups"):
        train_classifier(task / "lm", task / "missing.csv", tmp_path / "c", cfg=cfg, progress=False, n_workers=1)


def test_text_the_vocabulary_barely_covers_is_warned_about_and_lm_eval_gives_its_unk_share(task, tmp_path, capsys):
    from ulmfit.text.vocab import unknown_share

    assert unknown_share([np.array([2, 0, 9, 10, 8]), np.array([2, 0])]) == 2 / 4  # markers (2, 8) do not count
    assert unknown_share([]) == 0.0
    rng = random.Random(0)
    zh = ["这部电影很好看，演员的表演非常出色", "这部电影太无聊了，我看了一半就走了", "故事很感人，值得一看", "剧情拖沓，浪费时间"]
    with open(tmp_path / "zh.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(40):  # Chinese is written without spaces: each text is one "word", unknown to the vocabulary
            w.writerow([rng.choice(zh) + "。" + rng.choice(zh) + str(i), "pos" if i % 2 else "neg"])
    capsys.readouterr()
    assert main(["lm-eval", str(tmp_path / "zh.csv"), "--column", "text", "--model", str(task / "lm")]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["unk_share"] == 1.0
    assert "100% of the words of" in out.err and "ulmfit pretrain --tokenizer subword" in out.err
    assert main(["lm-eval", str(task / "test.csv"), "--column", "text", "--model", str(task / "lm")]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["unk_share"] < 0.05 and "xxunk" not in out.err
    with pytest.warns(UserWarning, match="100% of the words of the training texts are xxunk"):
        train_classifier(task / "lm", tmp_path / "zh.csv", tmp_path / "c",
                         cfg=ClassifierTrainConfig(**{**FAST, "stage_epochs": (0, 1)}), progress=False, n_workers=1)


def test_a_forward_backward_ensemble_averages_its_members(task, trained, tmp_path):
    pretrain(task / "train.csv", tmp_path / "lm-bwd", preset="tiny", progress=False, n_workers=1, fmt="csv",
             column="text", train_cfg=LMTrainConfig(epochs=1, bs=8, bptt=20, lr=1e-2, lr_div=1.0, backwards=True,
                                                    save_every_minutes=1e9))
    train_classifier(tmp_path / "lm-bwd", task / "train.csv", tmp_path / "both" / "bwd",
                     cfg=ClassifierTrainConfig(**FAST, backwards=True), progress=False, n_workers=1)
    import shutil

    shutil.copytree(task / "clf", tmp_path / "both" / "fwd")
    texts = ["a great film", "awful"]
    ens = TextClassifier.load(tmp_path / "both")
    assert sorted(m[5] for m in ens.members) == [False, True]  # the bwd member reads reversed text
    expected = (TextClassifier.load(tmp_path / "both" / "fwd").predict_proba(texts)
                + TextClassifier.load(tmp_path / "both" / "bwd").predict_proba(texts)) / 2
    np.testing.assert_allclose(ens.predict_proba(texts), expected, atol=1e-6)


def _ctrl_c_at_step(n):
    """A ClassifierTrainer._loss that raises KeyboardInterrupt (Ctrl-C) in its n-th training step."""
    from ulmfit.train.classify import ClassifierTrainer

    real, calls = ClassifierTrainer._loss, {"n": 0}

    def loss(self, logits, yb):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return real(self, logits, yb)

    return loss


def _interrupted_run(task, out, monkeypatch, step, cfg=None):
    """A classifier run on the task (FAST settings unless `cfg`), stopped by Ctrl-C at training step `step`."""
    from ulmfit.train.classify import ClassifierTrainer

    with monkeypatch.context() as m:
        m.setattr(ClassifierTrainer, "_loss", _ctrl_c_at_step(step))
        with pytest.raises(TrainingInterrupted):
            train_classifier(task / "lm", task / "train.csv", out, cfg=cfg or ClassifierTrainConfig(**FAST),
                             progress=False, n_workers=1)


def test_an_interrupted_classifier_run_resumes(task, tmp_path, monkeypatch):
    from ulmfit.train.classify import ClassifierTrainer

    with monkeypatch.context() as m:
        m.setattr(ClassifierTrainer, "_loss", _ctrl_c_at_step(20))
        with pytest.raises(TrainingInterrupted, match="interrupted"):
            train_classifier(task / "lm", task / "train.csv", tmp_path / "c", cfg=ClassifierTrainConfig(**FAST),
                             progress=False, n_workers=1)
    state = json.loads((tmp_path / "c" / "train_state.json").read_text())
    assert state["step"] == 19
    res = train_classifier(None, None, tmp_path / "c", resume=True, progress=False)
    assert res["epochs"] == 5 and res["valid_accuracy"] > 0.8


def test_a_run_killed_after_a_stages_last_epoch_resumes_saying_the_next_stage(task, tmp_path, monkeypatch, capsys):
    from ulmfit.train.classify import ClassifierTrainer

    real = ClassifierTrainer._loss

    def killed_in_stage_2(self, logits, yb):  # as kill -9: no save after the one at the end of stage 1
        if self.stage == 1:
            raise RuntimeError("killed")
        return real(self, logits, yb)

    with monkeypatch.context() as m:
        m.setattr(ClassifierTrainer, "_loss", killed_in_stage_2)
        with pytest.raises(RuntimeError, match="killed"):
            train_classifier(task / "lm", task / "train.csv", tmp_path / "c",
                             cfg=ClassifierTrainConfig(**{**FAST, "stage_epochs": (1, 1)}), progress=False, n_workers=1)
    state = json.loads((tmp_path / "c" / "train_state.json").read_text())
    assert (state["stage"], state["stage_epoch"], state["epoch"]) == (0, 1, 1)
    capsys.readouterr()
    assert main(["train-classifier", "--resume", str(tmp_path / "c")]) == 0
    assert "(stage 2 of 2, epoch 2)" in capsys.readouterr().out


def test_an_interrupted_classifier_whose_data_moved_resumes_from_its_new_place(task, tmp_path, monkeypatch):
    import shutil

    from ulmfit.cli import main
    from ulmfit.train.classify import ClassifierTrainer

    data = tmp_path / "train.csv"
    shutil.copy(task / "train.csv", data)
    with monkeypatch.context() as m:
        m.setattr(ClassifierTrainer, "_loss", _ctrl_c_at_step(20))
        with pytest.raises(TrainingInterrupted, match="interrupted"):
            train_classifier(task / "lm", data, tmp_path / "c", cfg=ClassifierTrainConfig(**FAST),
                             progress=False, n_workers=1)
    moved = tmp_path / "moved.csv"
    data.rename(moved)
    with pytest.raises(UlmfitError, match="not there any more.*train-classifier NEW_PATH --resume"):
        train_classifier(None, None, tmp_path / "c", resume=True, progress=False)
    with pytest.raises(UlmfitError, match="not the same data"):  # other labeled texts: other split sizes
        train_classifier(None, task / "test.csv", tmp_path / "c", resume=True, progress=False)
    relabeled = tmp_path / "relabeled.csv"  # the same texts with other label names: the same sizes
    relabeled.write_bytes(re.sub(rb",(pos|neg)(\r?\n)", lambda m: b"," + {b"pos": b"good", b"neg": b"bad"}[m[1]] + m[2],
                                 moved.read_bytes()))
    assert b",good" in relabeled.read_bytes() and b",pos" not in relabeled.read_bytes()
    with pytest.raises(UlmfitError, match="trained on the labels .*neg.*not the same data"):
        train_classifier(None, relabeled, tmp_path / "c", resume=True, progress=False)
    reordered = tmp_path / "reordered.csv"  # the same rows in another order: the same sizes and labels
    head, *rows = moved.read_text(encoding="utf-8").splitlines(keepends=True)
    reordered.write_text(head + "".join(reversed(rows)), encoding="utf-8")
    with pytest.raises(UlmfitError, match="as many, but other texts or labels .*not the same data"):
        train_classifier(None, reordered, tmp_path / "c", resume=True, progress=False)
    assert main(["train-classifier", str(moved), "--resume", str(tmp_path / "c"), "--quiet"]) == 0
    saved = json.loads((tmp_path / "c" / "config.json").read_text())
    assert saved["source"]["data"] == str(moved.resolve()) and len(saved["history"]) == 5


def test_a_classifier_whose_language_model_moved_resumes_given_its_new_place(task, tmp_path, monkeypatch, capsys):
    import shutil

    from ulmfit.train.classify import ClassifierTrainer

    shutil.copytree(task / "lm", tmp_path / "lm")
    with monkeypatch.context() as m:
        m.setattr(ClassifierTrainer, "_loss", _ctrl_c_at_step(5))
        with pytest.raises(TrainingInterrupted):
            train_classifier(tmp_path / "lm", task / "train.csv", tmp_path / "c", cfg=ClassifierTrainConfig(**FAST),
                             progress=False, n_workers=1)
    shutil.move(tmp_path / "lm", tmp_path / "moved")
    with pytest.raises(UlmfitError, match=r"the language model it started from, .*lm, is not there any more; give its "
                                          r"new place: `ulmfit train-classifier --lm NEW_PLACE --resume"):
        train_classifier(None, None, tmp_path / "c", resume=True, progress=False)
    other = tmp_path / "other"  # a language model with another vocabulary is not taken for it
    pretrain(task / "test.csv", other, preset="tiny", progress=False, n_workers=1, fmt="csv", column="text",
             train_cfg=LMTrainConfig(epochs=1, bs=8, bptt=20, save_every_minutes=1e9))
    with pytest.raises(UlmfitError, match="vocabulary or tokenizer is not the one the run was trained with"):
        train_classifier(other, None, tmp_path / "c", resume=True, progress=False)
    capsys.readouterr()
    assert main(["train-classifier", "--resume", str(tmp_path / "c"), "--lm", str(tmp_path / "moved")]) == 0
    out = capsys.readouterr()
    assert "the language model is not at" in out.out and "ignored" not in out.out + out.err


def test_a_classifier_stopped_inside_a_batch_ends_as_if_never_stopped(task, tmp_path, monkeypatch):
    """Stopped in the last batch of an epoch (after its forward pass), a run used to redo that batch
    with other dropout masks, on BatchNorm statistics that had already counted it, and to report the
    epoch's train loss from that one batch; now the random state and buffers from before the batch
    and the running loss are what the training state keeps."""
    from ulmfit.train.classify import ClassifierTrainer

    cfg = ClassifierTrainConfig(**FAST)
    train_classifier(task / "lm", task / "train.csv", tmp_path / "full", cfg=cfg, progress=False, n_workers=1)
    full = json.loads((tmp_path / "full" / "train_state.json").read_text())
    per_epoch = full["history"][0]["step"]
    with monkeypatch.context() as m:
        m.setattr(ClassifierTrainer, "_loss", _ctrl_c_at_step(2 * per_epoch))  # the last batch of epoch 2
        with pytest.raises(TrainingInterrupted, match="interrupted"):
            train_classifier(task / "lm", task / "train.csv", tmp_path / "c", cfg=cfg, progress=False, n_workers=1)
    state = json.loads((tmp_path / "c" / "train_state.json").read_text())
    assert state["step"] == 2 * per_epoch - 1 and state["run_loss"] is not None
    train_classifier(None, None, tmp_path / "c", resume=True, progress=False)
    cut = json.loads((tmp_path / "c" / "train_state.json").read_text())
    assert [h["step"] for h in cut["history"]] == [h["step"] for h in full["history"]]
    assert [h["train_loss"] for h in cut["history"]] == pytest.approx([h["train_loss"] for h in full["history"]],
                                                                      rel=1e-3)
    assert [h["valid_loss"] for h in cut["history"]] == pytest.approx([h["valid_loss"] for h in full["history"]],
                                                                      rel=1e-3)
    a, b = (ckpt.load_tensors(tmp_path / d / ckpt.WEIGHTS)[0] for d in ("full", "c"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4, msg=k)


def test_a_run_on_texts_in_memory_resumes_with_the_same_texts(task, tmp_path, monkeypatch):
    """The Python API may train on LabeledTexts (the benchmarks do); the run saves no path then, so
    resuming takes the texts again, and refuses none or other ones."""
    from ulmfit.classifier_api import load_labeled
    from ulmfit.train.classify import ClassifierTrainer

    texts = load_labeled(task / "train.csv")
    with monkeypatch.context() as m:
        m.setattr(ClassifierTrainer, "_loss", _ctrl_c_at_step(20))
        with pytest.raises(TrainingInterrupted, match="interrupted"):
            train_classifier(task / "lm", texts, tmp_path / "c", cfg=ClassifierTrainConfig(**FAST),
                             progress=False, n_workers=1)
    with pytest.raises(UlmfitError, match="in memory"):
        train_classifier(None, None, tmp_path / "c", resume=True, progress=False)
    with pytest.raises(UlmfitError, match="not the same data"):
        train_classifier(None, texts.subset(range(len(texts) - 10)), tmp_path / "c", resume=True, progress=False)
    res = train_classifier(None, texts, tmp_path / "c", resume=True, progress=False)
    assert res["epochs"] == 5 and res["valid_accuracy"] > 0.8


def test_the_accuracy_benchmark_resumes_an_interrupted_classifier(task, tmp_path, monkeypatch, load_bench):
    """bench/accuracy.py resumes a classifier run stopped near a session's end, and only one of the
    same settings on the same, unchanged LM; a finished one is trained again from the start."""
    import os
    import shutil

    from ulmfit.classifier_api import load_labeled
    from ulmfit.train.classify import ClassifierTrainer

    acc = load_bench("accuracy")
    texts, test = load_labeled(task / "train.csv"), load_labeled(task / "test.csv")
    lm = tmp_path / "lm"
    shutil.copytree(task / "lm", lm)
    cfg, out = ClassifierTrainConfig(**FAST), tmp_path / "c"
    with monkeypatch.context() as m:
        m.setattr(ClassifierTrainer, "_loss", _ctrl_c_at_step(20))
        with pytest.raises(TrainingInterrupted, match="interrupted"):
            acc.train_and_eval(lm, texts, test, out, cfg)
    assert acc.interrupted_clf(out, lm, cfg)
    assert not acc.interrupted_clf(out, lm, ClassifierTrainConfig(**{**FAST, "seed": 1}))  # other settings
    assert not acc.interrupted_clf(out, task / "lm", cfg)  # another LM
    assert not acc.interrupted_clf(out, lm, cfg, pretrained=False)
    st = (out / "train_state.json").stat().st_mtime
    os.utime(lm / "model.safetensors", (st + 10, st + 10))  # the LM changed since: start again
    assert not acc.interrupted_clf(out, lm, cfg)
    os.utime(lm / "model.safetensors", (st - 10, st - 10))
    resumed = {"n": 0}
    real_resume = ClassifierTrainer.resume

    def counting(self):
        resumed["n"] += 1
        return real_resume(self)

    monkeypatch.setattr(ClassifierTrainer, "resume", counting)
    r = acc.train_and_eval(lm, texts, test, out, cfg)
    assert resumed["n"] == 1 and r["epochs"] == 5 and r["accuracy"] > 0.7
    assert not acc.interrupted_clf(out, lm, cfg)  # finished: a later call trains from the start


def test_bad_labeled_data_gets_clear_messages(task, tmp_path, capsys):
    (tmp_path / "one.csv").write_text("text,label\ngood film,pos\nnice one,pos\n")
    assert main(["train-classifier", str(tmp_path / "one.csv"), "--lm", str(task / "lm"), "--out",
                 str(tmp_path / "o"), "--quiet"]) == 2
    assert "one class" in capsys.readouterr().err
    (tmp_path / "new.csv").write_text("text,label\ngood film,pos\nbad film,neutral\n")
    assert main(["evaluate", str(tmp_path / "new.csv"), "--model", str(task / "clf"), "--quiet"]) == 2
    assert "neutral" in capsys.readouterr().err
    (tmp_path / "nocol.csv").write_text("review,stars\ngood,5\n")
    assert main(["evaluate", str(tmp_path / "nocol.csv"), "--model", str(task / "clf"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "review" in err and "stars" in err  # the available columns are listed


def test_predict_command_writes_one_row_per_input_line_in_order(trained, tmp_path, capsys):
    task, _ = trained
    (tmp_path / "in.txt").write_text("a wonderful film\nterrible and boring\nsuperb\n")
    assert main(["predict", str(tmp_path / "in.txt"), "--model", str(task / "clf"), "--output-format", "jsonl"]) == 0
    rows = [json.loads(l) for l in capsys.readouterr().out.strip().split("\n")]
    assert [r["label"] for r in rows] == ["pos", "neg", "pos"]
    assert all(abs(sum(r["probs"].values()) - 1) < 1e-4 for r in rows)


def test_multi_label_training_predicts_sets_of_labels(trained, tmp_path):
    task, _ = trained
    rng = random.Random(3)
    cues = {"action": "explosions", "comedy": "jokes", "romance": "kisses"}
    filler = "the film was a story about people in a city".split()
    with open(tmp_path / "ml.jsonl", "w") as f:
        for _ in range(240):
            labels = sorted(rng.sample(list(cues), rng.randint(1, 2)))
            words = [rng.choice(filler) for _ in range(rng.randint(6, 20))]
            for lab in labels:
                words.insert(rng.randrange(len(words)), cues[lab])
            f.write(json.dumps({"text": " ".join(words), "label": labels}) + "\n")
    cfg = ClassifierTrainConfig(**{**FAST, "stage_epochs": (1, 6)})
    train_classifier(task / "lm", tmp_path / "ml.jsonl", tmp_path / "clf", cfg=cfg, progress=False, n_workers=1)
    clf = TextClassifier.load(tmp_path / "clf")
    assert clf.multi_label and clf.labels == ["action", "comedy", "romance"]
    pred = clf.predict(["the film was jokes and kisses a story", "explosions in a city"])
    assert all(isinstance(p, list) for p in pred)
    p = clf.predict_proba(["jokes"])
    assert p.shape == (1, 3) and not np.isclose(p.sum(), 1.0)  # independent sigmoids, not a softmax
    # evaluation data read without the label separator: a hint, not "unknown labels 'action,comedy'"
    from ulmfit.data.labeled import LabeledTexts

    flat = LabeledTexts(["jokes and kisses", "explosions"], ["comedy,romance", "action"], "eval.csv")
    with pytest.raises(UlmfitError, match="multi-label.*--multi-label-sep"):
        clf.evaluate(flat)
    # every prediction right on data without one of the labels: macro-F1 is not pulled down by it
    from ulmfit.train.metrics import multilabel_report

    rep = multilabel_report(np.array([[1, 0, 0], [1, 1, 0]]), np.array([[0.9, 0.2, 0.1], [0.8, 0.7, 0.3]]),
                            ["action", "comedy", "romance"])
    assert rep["exact_match"] == rep["micro_f1"] == rep["macro_f1"] == 1.0  # romance: F1 0 of support 0 before
    assert rep["per_class"]["romance"]["support"] == 0 and rep["per_class"]["comedy"]["recall"] == 1.0
    rep = multilabel_report(np.array([[1, 0, 0]]), np.array([[0.9, 0.2, 0.6]]), ["action", "comedy", "romance"])
    assert rep["macro_f1"] == 0.5  # a label predicted but absent counts (F1 0), like a wrong class
    # a single-label classifier given multi-label data says so (it used to fail on unhashable lists)
    with pytest.raises(UlmfitError, match="single-label .*--multi-label-sep"):
        TextClassifier.load(task / "clf").evaluate(["good"], labels=[["pos", "neg"]])
    # the CLI: a threshold for predict, and evaluate's multi-label figures under their names
    from ulmfit.cli import main

    (tmp_path / "in.txt").write_text("explosions and jokes\nkisses\n")
    (tmp_path / "ml.csv").write_text('text,label\n"explosions and jokes","action,comedy"\nkisses,romance\n')
    assert main(["predict", str(tmp_path / "in.txt"), "--model", str(tmp_path / "clf"), "--threshold", "0",
                 "--out", str(tmp_path / "all.csv"), "--quiet"]) == 0
    rows = (tmp_path / "all.csv").read_text().splitlines()[1:]
    assert [r.split(",")[0] for r in rows] == ["action|comedy|romance"] * 2  # every label clears 0
    real_load = TextClassifier.load

    def load_with_a_bar(*a, **k):  # a model whose label holds the CSV's joiner
        c = real_load(*a, **k)
        c.labels = ["action|adventure", *c.labels[1:]]
        return c

    with pytest.MonkeyPatch.context() as m:
        m.setattr(TextClassifier, "load", load_with_a_bar)
        import contextlib
        import io

        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            assert main(["predict", str(tmp_path / "in.txt"), "--model", str(tmp_path / "clf"), "--out",
                         str(tmp_path / "bar.csv"), "--quiet"]) == 0
        assert "some labels hold '|'" in err.getvalue() and "--output-format jsonl" in err.getvalue()
    with pytest.raises(SystemExit) as e:  # a usage error
        main(["predict", str(tmp_path / "in.txt"), "--model", str(tmp_path / "clf"), "--threshold", "2"])
    assert e.value.code == 2
    assert main(["evaluate", str(tmp_path / "ml.csv"), "--model", str(tmp_path / "clf"), "--multi-label-sep", ",",
                 "--report", str(tmp_path / "r.json")]) == 0
    # evaluate scores at predict's --threshold: at 0 every text has every label
    assert main(["evaluate", str(tmp_path / "ml.csv"), "--model", str(tmp_path / "clf"), "--multi-label-sep", ",",
                 "--report", str(tmp_path / "r0.json"), "--threshold", "0"]) == 0
    r0 = json.loads((tmp_path / "r0.json").read_text())
    assert r0["threshold"] == 0 and r0["exact_match"] == 0 and r0["per_class"]["romance"]["recall"] == 1.0
    probs = clf.predict_proba(["explosions and jokes", "kisses"])
    y = np.array([[1, 1, 0], [0, 0, 1]])
    bce = -np.mean(y * np.log(probs) + (1 - y) * np.log(1 - probs))
    assert r0["log_loss"] == pytest.approx(bce, rel=1e-4)
    with pytest.raises(UlmfitError, match="threshold applies to multi-label classifiers"):
        TextClassifier.load(task / "clf").evaluate(["good"], labels=["pos"], threshold=0.3)


def test_multi_label_data_read_without_its_separator_gets_a_hint():
    from ulmfit.classifier_api import _combined_labels

    assert _combined_labels(["action", "action,comedy", "comedy"]) == (",", "action,comedy")
    assert _combined_labels(["a", "a | b", "b"]) == ("|", "a | b")
    assert _combined_labels(["pos", "neg", "Smith, John"]) is None  # a comma alone is no sign


def test_multi_label_class_weights_are_said_to_apply_to_single_label_data_only(task, tmp_path, capsys):
    with open(tmp_path / "ml.jsonl", "w") as f:
        for i in range(60):
            f.write(json.dumps({"text": "jokes" if i % 3 else "kisses and jokes",
                                "label": ["comedy"] if i % 3 else ["comedy", "romance"]}) + "\n")
    cfg = ClassifierTrainConfig(**{**FAST, "stage_epochs": (1, 1), "class_weights": "on"})
    train_classifier(task / "lm", tmp_path / "ml.jsonl", tmp_path / "clf", cfg=cfg, n_workers=1)
    assert "class weights (--class-weights on) apply to single-label data" in capsys.readouterr().out


def test_class_weights_auto_turns_on_only_for_imbalanced_labels():
    from ulmfit.train.classify import use_class_weights

    assert not use_class_weights("auto", [0, 1, 0, 1, 1], 2)
    assert use_class_weights("auto", [0] * 9 + [1] * 3, 2)
    assert use_class_weights("on", [0, 1], 2) and not use_class_weights("off", [0] * 9 + [1], 2)
    with pytest.raises(UlmfitError, match="class_weights"):
        ClassifierTrainConfig(class_weights="sometimes")


def test_a_small_imbalanced_task_does_not_collapse_to_the_majority_class(task, tmp_path):
    """~92% 'neg' in training: the default recipe (inverse-frequency weights, chosen automatically)
    must still find the 'pos' texts of a balanced test set."""
    write_task(tmp_path / "skewed.csv", 300, 5, skew=0.85)
    counts = read_labeled(tmp_path / "skewed.csv").class_counts()
    assert counts["neg"] > 8 * counts["pos"]
    train_classifier(task / "lm", tmp_path / "skewed.csv", tmp_path / "clf", cfg=ClassifierTrainConfig(**FAST),
                     progress=False, n_workers=1)
    rep = evaluate(tmp_path / "clf", task / "test.csv", progress=False)
    recall = {k: v["recall"] for k, v in rep["per_class"].items()}
    assert recall["pos"] > 0.6 and recall["neg"] > 0.6, recall


def test_small_label_sets_get_a_smaller_batch_and_a_longer_last_stage():
    c = ClassifierTrainConfig()  # stages 1 1 1 2, bs chosen from the data
    assert c.for_data(30_000).bs == 64 and c.for_data(30_000).stage_epochs == (1, 1, 1, 2)
    assert c.for_data(9_000).bs == 32 and c.for_data(9_000).stage_epochs == (1, 1, 1, 2)
    small = c.for_data(90)  # 6 steps per epoch at bs 16 -> capped at 12 epochs
    assert small.bs == 16 and small.stage_epochs == (1, 1, 1, 12)
    mid = c.for_data(1_500)  # bs 32, 47 steps per epoch -> 4 epochs for 150 steps
    assert mid.bs == 32 and mid.stage_epochs == (1, 1, 1, 4)
    assert ClassifierTrainConfig(bs=8, min_last_steps=0).for_data(90).stage_epochs == (1, 1, 1, 2)


def test_batchnorm_recalibration_sets_exact_evaluation_mode_statistics():
    from ulmfit.train.classify import recalibrate_batchnorm

    m = tiny_classifier()
    torch.manual_seed(2)
    docs = [torch.randint(9, 60, (L,)).tolist() for L in (5, 17, 30, 3, 12, 44, 8)]
    bn1, lin, bn2 = m.head.layers[0], m.head.layers[2], m.head.layers[4]
    assert float(bn1.running_mean.abs().max()) == 0.0  # fresh head: the initial statistics
    assert recalibrate_batchnorm(m, docs, bs=3, use_bf16=False)
    assert not m.training  # the model's mode is left as it was
    with torch.no_grad():
        feats = torch.cat([m.bpt3c(*batch_of([torch.tensor(d)])) for d in docs])
        torch.testing.assert_close(bn1.running_mean, feats.mean(0), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(bn1.running_var, feats.var(0), atol=1e-5, rtol=1e-4)
        # the second BatchNorm sees the first one already recalibrated, dropout off
        h = torch.relu(lin(bn1(feats)))
        torch.testing.assert_close(bn2.running_mean, h.mean(0), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(bn2.running_var, h.var(0), atol=1e-5, rtol=1e-4)
        # so in evaluation mode the head's first layer now standardises these documents
        z = bn1(feats)
    torch.testing.assert_close(z.mean(0), bn1.bias.detach(), atol=1e-4, rtol=0)
    m.train()
    recalibrate_batchnorm(m, docs[:1])  # one document: nothing to estimate, nothing changed
    assert m.training
    torch.testing.assert_close(bn1.running_mean, feats.mean(0), atol=1e-5, rtol=1e-4)


def test_training_with_bn_recal_saves_the_evaluation_mode_statistics_of_the_training_texts(task, tmp_path, capsys):
    from ulmfit.classifier_api import _encode
    from ulmfit.train.classify import recalibrate_batchnorm
    from ulmfit.train.precision import bf16_supported

    out = tmp_path / "clf"
    assert main(["train-classifier", str(task / "train.csv"), "--valid", str(task / "test.csv"), "--lm",
                 str(task / "lm"), "--out", str(out), "--bn-recal", "on", "--bs", "16", "--stage-groups", "1", "0",
                 "--stage-epochs", "1", "4", "--stage-lrs", "2e-2", "1e-2", "--lr-div", "1", "--drop-mult", "0.1",
                 "--min-last-steps", "0", "--workers", "1", "--quiet"]) == 0
    said = capsys.readouterr()  # --quiet: standard output is the JSON summary alone, where it was saved included
    assert json.loads(said.out)["out"] == str(out) and f"classifier saved to {out}" in said.err
    assert json.loads((out / "config.json").read_text())["train"]["bn_recal"] is True
    assert evaluate(out, task / "test.csv", progress=False)["accuracy"] > 0.9
    clf = TextClassifier.load(out)
    model, _, vocab, tok, sp, _, _ = clf.members[0]
    saved = {k: v.clone() for k, v in model.head.state_dict().items() if "running" in k}
    texts = [r[0] for r in csv.reader(open(task / "train.csv", encoding="utf-8"))][1:]
    recalibrate_batchnorm(model, _encode(texts, tok, vocab, sp, 1, False), bs=16, pad_id=vocab.stoi["xxpad"],
                          use_bf16=bf16_supported())
    for k, v in model.head.state_dict().items():
        if "running" in k:  # the saved best epoch was recalibrated on exactly these texts
            torch.testing.assert_close(v, saved[k], atol=1e-3, rtol=1e-2)


def _scripted_scores(monkeypatch, f1s):
    """The trainer's validation returns these macro-F1 values, one per epoch."""
    from ulmfit.train.classify import ClassifierTrainer

    it = iter(f1s)

    def evaluate(self, data):
        f = next(it)
        return {"loss": 1.0 - f, "accuracy": f, "macro_f1": f}

    monkeypatch.setattr(ClassifierTrainer, "evaluate", evaluate)


def test_best_epoch_selection_stops_early_and_gives_a_tie_to_the_later_epoch(task, tmp_path, monkeypatch):
    # stage 1 (head) then 4 epochs of stage 2: 0.7 at epoch 2, a tie at epoch 4 (kept: it trained longer)
    _scripted_scores(monkeypatch, [0.5, 0.7, 0.6, 0.7, 0.6])
    res = train_classifier(task / "lm", task / "train.csv", tmp_path / "a", cfg=ClassifierTrainConfig(
        **FAST, select="best"), progress=False, n_workers=1)
    assert res["best_epoch"] == 4 and res["epochs"] == 5
    # two last-stage epochs without improvement end the run at patience 2
    _scripted_scores(monkeypatch, [0.5, 0.9, 0.1, 0.1, 0.8])
    res = train_classifier(task / "lm", task / "train.csv", tmp_path / "b", cfg=ClassifierTrainConfig(
        **FAST, select="best", patience=2), progress=False, n_workers=1)
    assert res["best_epoch"] == 2 and res["epochs"] == 4
    assert json.loads((tmp_path / "b" / "config.json").read_text())["best_epoch"] == 2


def test_a_validation_split_too_small_to_choose_keeps_the_last_epoch(task, tmp_path, monkeypatch, capsys):
    """30 validation texts (10% of 300) cannot tell epochs apart: with select=auto every epoch runs,
    whatever its score and the patience, and the last one becomes the model."""
    from ulmfit.train.classify import SELECT_LAST_MAX_VALID

    assert 30 <= SELECT_LAST_MAX_VALID
    _scripted_scores(monkeypatch, [0.5, 0.9, 0.1, 0.1, 0.2])
    res = train_classifier(task / "lm", task / "train.csv", tmp_path / "c", cfg=ClassifierTrainConfig(
        **FAST, patience=1), progress=True, n_workers=1)
    assert res["best_epoch"] == 5 and res["epochs"] == 5 and res["valid_macro_f1"] == 0.2
    assert "30 validation examples are too few to pick the best epoch" in capsys.readouterr().out
    # the kept weights are the last epoch's: the saved model predicts what the trained one does
    hist = [json.loads(l) for l in (tmp_path / "c" / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in hist if "valid_macro_f1" in h] == [1, 2, 3, 4, 5]


def test_no_validation_split_trains_on_every_label_keeps_the_last_epoch_and_resumes(task, tmp_path, monkeypatch,
                                                                                     capsys):
    """valid_frac=0: all 300 labels train (none held out), no epoch is scored, the last one is the
    model, and an interrupted run resumes the same way; select='best' has nothing to pick by."""
    from ulmfit.classifier_api import load_labeled
    from ulmfit.train.classify import ClassifierTrainer

    texts = load_labeled(task / "train.csv")

    def no_eval(self, data):
        raise AssertionError("nothing to validate on")

    with monkeypatch.context() as m:
        m.setattr(ClassifierTrainer, "evaluate", no_eval)
        with monkeypatch.context() as m2:
            m2.setattr(ClassifierTrainer, "_loss", _ctrl_c_at_step(20))
            with pytest.raises(TrainingInterrupted, match="interrupted"):
                train_classifier(task / "lm", texts, tmp_path / "c", cfg=ClassifierTrainConfig(**FAST),
                                 valid_frac=0, progress=True, n_workers=1)
        out = capsys.readouterr().out
        assert "no validation split" in out and "300 training and 0 validation examples" in out
        with pytest.raises(UlmfitError, match=r"trained on 300 \+ 0 examples, these texts give 290 \+ 0"):
            train_classifier(None, texts.subset(range(290)), tmp_path / "c", resume=True, progress=False)
        res = train_classifier(None, texts, tmp_path / "c", resume=True, progress=False)
    assert res["best_epoch"] == res["epochs"] == 5 and res["select"] == "last"
    hist = [json.loads(l) for l in (tmp_path / "c" / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4, 5] and all(h["valid_accuracy"] is None for h in hist)
    assert json.loads((tmp_path / "c" / "config.json").read_text())["source"]["n_train"] == 300
    rep = evaluate(tmp_path / "c", task / "test.csv", progress=False)
    assert rep["accuracy"] > 0.9
    with pytest.raises(UlmfitError, match="needs validation data"):
        train_classifier(task / "lm", task / "train.csv", tmp_path / "d", valid_frac=0, progress=False,
                         cfg=ClassifierTrainConfig(**FAST, select="best"))


def test_select_setting_is_checked_and_decides_by_the_validation_size():
    c = ClassifierTrainConfig()
    assert c.select == "auto" and c.keeps_last(10) and c.keeps_last(200) and not c.keeps_last(201)
    assert ClassifierTrainConfig(select="last").keeps_last(5000)
    assert not ClassifierTrainConfig(select="best").keeps_last(10)
    with pytest.raises(UlmfitError, match="select must be"):
        ClassifierTrainConfig(select="first")
    # a checkpoint written before the setting existed resumes with the rule it started with
    assert ClassifierTrainConfig.from_dict({"bs": 16}).select == "best"
    assert ClassifierTrainConfig.from_dict({"select": "auto"}).select == "auto"


def test_the_select_help_states_the_threshold_the_trainer_uses():
    import argparse

    from ulmfit.cli import build_parser
    from ulmfit.train.classify import SELECT_LAST_MAX_VALID

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    p = sub.choices["train-classifier"]
    opt = next(a for a in p._actions if "--select" in a.option_strings)
    assert f"at most {SELECT_LAST_MAX_VALID} examples" in opt.help
    assert f"over {SELECT_LAST_MAX_VALID} examples" in p.description


def test_a_resumed_run_whose_later_epochs_do_not_improve_saves_a_loadable_best_model(task, tmp_path, monkeypatch):
    """The best epoch's weights restored on resume used to be saved under both of their names
    (encoder.* and bpt3c.encoder.*), and the finished model no longer loaded."""
    from safetensors.torch import load_file

    from ulmfit.train.classify import ClassifierTrainer

    _scripted_scores(monkeypatch, [0.5, 0.9, 0.1, 0.1, 0.1])  # the best is epoch 2, before the interruption
    cfg = ClassifierTrainConfig(**FAST, select="best", patience=5)
    with monkeypatch.context() as m:
        m.setattr(ClassifierTrainer, "_loss", _ctrl_c_at_step(40))  # inside epoch 3 (17 batches an epoch)
        with pytest.raises(TrainingInterrupted, match="interrupted"):
            train_classifier(task / "lm", task / "train.csv", tmp_path / "c", cfg=cfg, progress=False, n_workers=1)
    best = load_file(str(tmp_path / "c" / "model.safetensors"))
    res = train_classifier(None, None, tmp_path / "c", resume=True, progress=False)
    assert res["best_epoch"] == 2 and res["epochs"] == 5
    after = load_file(str(tmp_path / "c" / "model.safetensors"))
    assert sorted(after) == sorted(best)  # each tensor once, under the name it had
    assert all(torch.equal(after[k], best[k]) for k in best)  # still the weights of epoch 2
    clf = TextClassifier.load(tmp_path / "c")
    assert len(clf.predict(["a wonderful film", "an awful film"])) == 2


def test_resuming_a_finished_run_is_refused_and_touches_nothing(trained, tmp_path):
    import shutil

    task, _ = trained
    shutil.copytree(task / "clf", tmp_path / "clf")
    before = {p.name: p.read_bytes() for p in (tmp_path / "clf").iterdir()}
    with pytest.raises(UlmfitError, match="finished run.*nothing to resume"):
        train_classifier(None, None, tmp_path / "clf", resume=True, progress=False)
    assert {p.name: p.read_bytes() for p in (tmp_path / "clf").iterdir()} == before


def test_a_failed_overwrite_run_leaves_the_old_run_as_it_was(trained, tmp_path):
    import shutil

    task, _ = trained
    shutil.copytree(task / "clf", tmp_path / "clf")
    before = {p.name: p.read_bytes() for p in (tmp_path / "clf").iterdir()}
    with pytest.raises(UlmfitError):
        train_classifier(task / "lm", tmp_path / "missing.csv", tmp_path / "clf", overwrite=True, progress=False)
    assert {p.name: p.read_bytes() for p in (tmp_path / "clf").iterdir()} == before  # metrics.jsonl too


def test_an_overwrite_run_that_diverges_before_its_first_save_puts_the_old_run_back(trained, tmp_path):
    import shutil

    task, _ = trained
    shutil.copytree(task / "clf", tmp_path / "clf", ignore=shutil.ignore_patterns(".ulmfit-run.lock"))
    (tmp_path / "clf" / "notes.txt").write_text("mine")
    before = {p.name: p.read_bytes() for p in (tmp_path / "clf").iterdir()}
    wild = ClassifierTrainConfig(**{**FAST, "stage_lrs": (1e10, 1e10)})
    with pytest.raises(UlmfitError, match=r"the loss became nan at step \d+; nothing was saved\. Train again with "
                                          r"lower learning rates .*; the run that --overwrite was to replace is back"):
        train_classifier(task / "lm", task / "train.csv", tmp_path / "clf", cfg=wild, overwrite=True,
                         progress=False, n_workers=1)
    assert {p.name: p.read_bytes() for p in (tmp_path / "clf").iterdir() if p.name != ".ulmfit-run.lock"} == before
    # a fresh run that diverges leaves no folder with a first metrics line and nothing else
    with pytest.raises(UlmfitError, match="nothing was saved"):
        train_classifier(task / "lm", task / "train.csv", tmp_path / "new", cfg=wild, progress=False, n_workers=1)
    assert not (tmp_path / "new").exists()


def test_a_replacement_killed_before_its_first_save_gives_the_old_run_back_or_drops_it(tmp_path, monkeypatch):
    import os

    from ulmfit import api
    from ulmfit.api import REPLACED, clear_replaced_run, settle_replaced

    out = tmp_path / "run"
    out.mkdir()
    old = {n: f"old {n}" for n in ("config.json", "model.safetensors", "vocab.txt", "spm.model", "metrics.jsonl",
                                   "train_state.json", "notes.txt")}
    for name, text in old.items():
        (out / name).write_text(text)

    def files():
        return {p.name: p.read_text() for p in out.iterdir()}

    clear_replaced_run(out)  # --overwrite, its inputs read: spm.model stays (a model fine-tuned in place reads it)
    assert sorted(p.name for p in out.iterdir()) == [REPLACED, "notes.txt", "spm.model"]
    (out / "metrics.jsonl").write_text("new, step 0")  # then SIGKILL: nothing saved
    clear_replaced_run(out)  # the next --overwrite: the old run was still the last saved one
    (out / "metrics.jsonl").write_text("new, step 0")
    assert settle_replaced(out) is True and files() == old  # that one failed too: the old run is back, whole
    clear_replaced_run(out)
    (out / "config.json").write_text("new")  # the new run's first checkpoint
    assert settle_replaced(out) is False and not (out / REPLACED).exists()
    assert (out / "config.json").read_text() == "new" and not (out / "model.safetensors").exists()
    # a stop while the dropped run is removed puts none of it back over the new one
    for name, text in old.items():
        (out / name).write_text(text)
    clear_replaced_run(out)
    for name in ("config.json", "model.safetensors"):
        (out / name).write_text(f"new {name}")
    import shutil

    with monkeypatch.context() as m:
        m.setattr(shutil, "rmtree", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            settle_replaced(out)
    assert settle_replaced(out) is False
    assert {p.name: p.read_text() for p in out.iterdir()} == {
        "config.json": "new config.json", "model.safetensors": "new model.safetensors", "spm.model": "old spm.model",
        "notes.txt": "old notes.txt"}
    for p in out.iterdir():
        p.unlink()

    # a stop part-way through setting aside, or through putting back, loses nothing
    for name, text in old.items():
        (out / name).write_text(text)
    real, n = os.replace, {"calls": 0}

    def replace_then_stop(a, b, at):
        n["calls"] += 1
        if n["calls"] == at:
            raise KeyboardInterrupt  # a SIGTERM between two renames
        return real(a, b)

    for at in (2, 3):
        n["calls"] = 0
        with monkeypatch.context() as m:
            m.setattr(api.os, "replace", lambda a, b: replace_then_stop(a, b, at))
            with pytest.raises(KeyboardInterrupt):
                clear_replaced_run(out)  # config.json went first: no model is left looking whole
        assert not (out / "config.json").exists() or at == 1
        settle_replaced(out)
        assert files() == old, at
    clear_replaced_run(out)
    for at in (1, 2):
        n["calls"] = 0
        with monkeypatch.context() as m:
            m.setattr(api.os, "replace", lambda a, b: replace_then_stop(a, b, at))
            with pytest.raises(KeyboardInterrupt):
                settle_replaced(out)  # putting back, stopped: config.json comes back last
        assert not (out / "config.json").exists()
        settle_replaced(out)
        assert files() == old, at
        clear_replaced_run(out)
    settle_replaced(out)
    assert files() == old


def test_an_overwrite_run_clears_the_replaced_runs_files_and_keeps_the_users(trained, tmp_path):
    import shutil

    task, _ = trained
    shutil.copytree(task / "clf", tmp_path / "clf")
    evaluate(tmp_path / "clf", task / "test.csv", report=tmp_path / "clf" / "eval_report.json", progress=False)
    (tmp_path / "clf" / "best.safetensors").write_bytes(b"an LM run's best epoch")  # e.g. an LM folder reused
    (tmp_path / "clf" / "notes.txt").write_text("mine")
    train_classifier(task / "lm", task / "train.csv", tmp_path / "clf", cfg=ClassifierTrainConfig(**FAST),
                     overwrite=True, progress=False, n_workers=1)
    names = {p.name for p in (tmp_path / "clf").iterdir()}
    assert not names & {"eval_report.json", "eval_report.png", "best.safetensors"}  # they described the old model
    assert {"notes.txt", "config.json", "model.safetensors", "metrics.jsonl"} <= names


def test_predict_drops_a_byte_order_mark_and_checks_its_paths(trained, tmp_path, capsys):
    task, _ = trained
    (tmp_path / "bom.txt").write_bytes("\ufeffa wonderful film\nterrible\n".encode("utf-8"))
    (tmp_path / "plain.txt").write_text("a wonderful film\nterrible\n")
    model = ["--model", str(task / "clf")]
    assert main(["predict", str(tmp_path / "bom.txt"), *model]) == 0
    with_bom = capsys.readouterr().out
    assert main(["predict", str(tmp_path / "plain.txt"), *model]) == 0
    assert capsys.readouterr().out == with_bom
    assert main(["predict", str(tmp_path), *model]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "plain.txt"), *model, "--encoding", "nonsense"]) == 2
    assert "--encoding nonsense" in capsys.readouterr().err
    assert main(["predict", str(task / "test.csv"), *model]) == 0  # a table is read line by line: said so
    assert "read as plain text" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "plain.txt"), *model, "--out", str(tmp_path / "new" / "p.csv")]) == 0
    written = (tmp_path / "new" / "p.csv").read_bytes()
    assert written.count(b"\n") == 3 and b"\r" not in written  # rows end as on this system, not in CRLF



def test_predict_refuses_an_out_it_cannot_write_before_labeling_anything(trained, tmp_path, monkeypatch, capsys):
    import os

    import ulmfit.classifier_api as capi

    task, _ = trained
    (tmp_path / "plain.txt").write_text("a wonderful film\n")
    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if str(p) == str(ro) else real(p, mode, **k))
    monkeypatch.setattr(capi.TextClassifier, "load", lambda *a, **k: pytest.fail("loaded the model first"))
    assert main(["predict", str(tmp_path / "plain.txt"), "--model", str(task / "clf"), "--out",
                 str(ro / "sub" / "p.csv")]) == 2
    assert f"cannot write into {ro}" in capsys.readouterr().err


# ----- the Python API with the inputs a user would try (found by a black-box audit) -----

def test_a_single_string_or_a_non_string_item_is_refused_not_split_into_characters(trained):
    task, _ = trained
    clf = TextClassifier.load(task / "clf")
    with pytest.raises(UlmfitError, match="not a single string"):
        clf.predict("a wonderful film")
    with pytest.raises(UlmfitError, match=r"texts\[1\] is NoneType"):
        clf.predict_proba(["good", None])
    assert clf.predict(np.array(["superb", "terrible"])) == clf.predict(("superb", "terrible"))  # any sequence
    assert clf.predict_proba(t for t in ["superb"]).shape == (1, 2)


def test_labels_in_memory_may_be_numbers_and_evaluate_like_a_files_labels(task, tmp_path):
    from ulmfit.data.labeled import read_labeled

    train = read_labeled(task / "train.csv")
    as_int = LabeledTexts(train.texts, [int(lab == "pos") for lab in train.labels], "ints")
    assert set(as_int.labels) == {"0", "1"}  # the strings a CSV of 0/1 labels gives
    train_classifier(task / "lm", as_int, tmp_path / "c", cfg=ClassifierTrainConfig(**FAST),
                     progress=False, n_workers=1)
    test = read_labeled(task / "test.csv")
    rep = TextClassifier.load(tmp_path / "c").evaluate(
        LabeledTexts(test.texts, np.array([int(lab == "pos") for lab in test.labels]), "numpy ints"))
    assert rep["labels"] == ["0", "1"] and rep["accuracy"] > 0.8
    with pytest.raises(UlmfitError, match="example 2 has no label"):
        LabeledTexts(["a", "b"], ["x", None], "mem")
    with pytest.raises(UlmfitError, match=r"texts\[0\] is int"):
        LabeledTexts([5, "b"], ["x", "y"], "mem")


def test_bad_arguments_to_the_classifier_api_are_clear_errors(trained, tmp_path):
    task, _ = trained
    clf = TextClassifier.load(task / "clf")
    with pytest.raises(UlmfitError, match="give a classifier directory"):
        TextClassifier.load([])
    with pytest.raises(UlmfitError, match="no examples to evaluate"):
        clf.evaluate(LabeledTexts([], [], "empty"))
    with pytest.raises(UlmfitError, match="takes labeled data"):
        clf.evaluate([("great", "pos")])
    with pytest.raises(UlmfitError, match="path of a file or folder, not list.*LabeledTexts"):
        train_classifier(task / "lm", [("great", "pos")], tmp_path / "c")
    assert not (tmp_path / "c").exists()  # refused before anything was written
    with pytest.raises(UlmfitError, match="example 2 has an empty text"):  # as a file's reader refuses it
        train_classifier(task / "lm", LabeledTexts(["great", "  ", "awful"], ["pos", "pos", "neg"], "m"), tmp_path / "c")
    one_each = LabeledTexts(["great film", "awful film"], ["pos", "neg"], "two")
    with pytest.raises(UlmfitError, match="validation split of 2 examples is empty.*--valid-frac 0"):
        train_classifier(task / "lm", one_each, tmp_path / "c2", progress=False)


def test_an_ensemble_whose_members_tokenise_differently_averages_their_own_predictions(trained, tmp_path):
    """Members share encoded texts only when their vocabularies are the same: two vocabularies of one
    size and one beginning (their first 50 tokens) used to share them, and a member read the other's
    token ids."""
    import shutil

    from safetensors.torch import load_file, save_file

    task, _ = trained
    extra = [f"zzword{i}" for i in range(40)]  # past the 50th token, with embeddings of their own
    torch.manual_seed(0)
    rows = torch.randn(len(extra), 32)
    for name, order in (("a", extra), ("b", extra[:-2] + extra[-1:] + extra[-2:-1])):  # b: last two swapped
        d = tmp_path / "ens" / name
        shutil.copytree(task / "clf", d)
        itos = (d / "vocab.txt").read_text(encoding="utf-8").split("\n")
        itos = [w for w in itos if w] + order
        (d / "vocab.txt").write_text("\n".join(itos) + "\n", encoding="utf-8")
        t = load_file(str(d / "model.safetensors"))
        t["encoder.embedding.weight"] = torch.cat([t["encoder.embedding.weight"], rows]).contiguous()
        save_file(t, str(d / "model.safetensors"))
        cfg = json.loads((d / "config.json").read_text())
        cfg["arch"]["vocab_size"] = len(itos)
        (d / "config.json").write_text(json.dumps(cfg))
    assert len(itos) > 50
    texts = [f"a great {extra[-1]} film", f"{extra[-2]} {extra[-2]} terrible {extra[-1]}", "superb"]
    pa = TextClassifier.load(tmp_path / "ens" / "a").predict_proba(texts)
    pb = TextClassifier.load(tmp_path / "ens" / "b").predict_proba(texts)
    assert not np.allclose(pa, pb, atol=1e-4)
    np.testing.assert_allclose(TextClassifier.load(tmp_path / "ens").predict_proba(texts), (pa + pb) / 2, atol=1e-6)


def test_an_ensemble_member_without_its_config_is_an_error_not_a_smaller_ensemble(trained, tmp_path):
    import shutil

    task, _ = trained
    for d in ("fwd", "bwd"):
        shutil.copytree(task / "clf", tmp_path / "ens" / d)
    (tmp_path / "ens" / "bwd" / "config.json").unlink()
    with pytest.raises(UlmfitError, match="bwd holds model weights but no config.json"):
        TextClassifier.load(tmp_path / "ens")


def test_a_damaged_batchnorm_variance_or_a_repeated_label_is_refused_on_load(trained, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    task, _ = trained
    bad = tmp_path / "var"
    shutil.copytree(task / "clf", bad)
    t = load_file(str(bad / "model.safetensors"))
    k = next(k for k in t if k.endswith("running_var"))
    t[k] = -t[k].abs() - 1
    save_file(t, str(bad / "model.safetensors"))
    with pytest.raises(UlmfitError, match="negative variances"):
        TextClassifier.load(bad)
    twice = tmp_path / "labels"
    shutil.copytree(task / "clf", twice)
    cfg = json.loads((twice / "config.json").read_text())
    labels = cfg["labels"]
    cfg["labels"] = [labels[0]] * len(labels)
    (twice / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UlmfitError, match="names a label twice"):
        TextClassifier.load(twice)
    cfg["labels"] = labels
    del cfg["tokenizer"]
    (twice / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UlmfitError, match="no 'tokenizer' section"):
        TextClassifier.load(twice)


@pytest.mark.parametrize("settings,says", [
    ({"bs": 0}, "bs must be at least 1, not 0"),
    ({"stage_epochs": (0, 0), "stage_groups": (1, 0), "stage_lrs": (1e-2, 1e-3)}, "stage_epochs add up to 0"),
    ({"stage_lrs": (4e-2, 2e-2, -1, 2e-3)}, r"stage_lrs\[2\] must be a finite number above 0"),
    ({"schedule": "cosine"}, "schedule must be one of"),
    ({"drop_mult": "0.5"}, "drop_mult must be a number"),
])
def test_a_classifier_config_names_the_bad_setting(settings, says):
    with pytest.raises(UlmfitError, match=f"ClassifierTrainConfig: {says}"):
        ClassifierTrainConfig(**settings)


def test_read_args_are_checked_and_valid_split_reads_the_validation_folder(task, tmp_path):
    for split, n in (("train", 12), ("dev", 6)):
        for lab in ("neg", "pos"):
            d = tmp_path / "data" / split / lab
            d.mkdir(parents=True)
            for i in range(n):
                (d / f"{i}.txt").write_text(f"the film was {'awful boring' if lab == 'neg' else 'great superb'} {i}")
    with pytest.raises(UlmfitError, match="read_args: unknown option\\(s\\) 'text_column'"):
        train_classifier(task / "lm", task / "train.csv", tmp_path / "x", read_args={"text_column": "text"},
                         progress=False)
    with pytest.raises(UlmfitError, match="unknown setting\\(s\\) 'epochs'"):
        train_classifier(task / "lm", task / "train.csv", tmp_path / "x", cfg={"epochs": 3}, progress=False)
    assert not (tmp_path / "x").exists()
    torch.manual_seed(5)
    expected = torch.rand(2)
    torch.manual_seed(5)
    res = train_classifier(task / "lm", tmp_path / "data", tmp_path / "c", valid=tmp_path / "data",
                           read_args={"split": "train", "valid_split": "dev"}, progress=False, n_workers=1,
                           cfg={**FAST, "stage_epochs": (1, 1)})
    assert torch.equal(torch.rand(2), expected)  # the caller's random generator is as it was
    src = json.loads((tmp_path / "c" / "config.json").read_text())["source"]
    assert (src["n_train"], src["n_valid"]) == (24, 12) and res["out"]


def test_python_inputs_that_would_be_misread_are_refused(trained, tmp_path):
    """Texts as a generator work; one string is not a list of texts; an ensemble member twice, or
    single- and multi-label members together, are refused; so are a batch size of 0 and no path."""
    import shutil

    task, _ = trained
    gen = LabeledTexts((t for t in ["good", "bad"]), iter(["pos", "neg"]), "mem")
    assert gen.texts == ["good", "bad"] and gen.labels == ["pos", "neg"]
    with pytest.raises(UlmfitError, match="not a single string"):
        LabeledTexts("ab" * 20, ["x", "y"] * 20, "mem")
    with pytest.raises(UlmfitError, match="labels must be a list"):
        LabeledTexts(["a", "b"], "ab", "mem")
    with pytest.raises(UlmfitError, match=r"texts\[1\] is int"):
        LabeledTexts(["a", 5], ["x", "y"], "mem")
    clf = TextClassifier.load(task / "clf")
    assert clf.predict(["superb"], progress=False, n_workers=1) == ["pos"]
    with pytest.raises(UlmfitError, match="bs \\(the batch size\\) must be"):
        clf.predict(["superb"], bs=0)
    with pytest.raises(UlmfitError, match="given twice"):
        TextClassifier.load([task / "clf", task / "clf"])
    with pytest.raises(UlmfitError, match="a model is given by the path of its directory, not NoneType"):
        ckpt.load_classifier(None)
    with pytest.raises(UlmfitError, match="give a classifier directory"):
        TextClassifier.load(None)
    shutil.copytree(task / "clf", tmp_path / "ens" / "a")
    shutil.copytree(task / "clf", tmp_path / "ens" / "b")
    c = json.loads((tmp_path / "ens" / "b" / "config.json").read_text())
    c["head"]["multi_label"] = True
    (tmp_path / "ens" / "b" / "config.json").write_text(json.dumps(c))
    with pytest.raises(UlmfitError, match="is a multi-label classifier and .* is not"):
        TextClassifier.load(tmp_path / "ens")


def test_reports_leave_the_callers_matplotlib_backend_alone(trained, tmp_path):
    import matplotlib

    task, _ = trained
    before = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        evaluate(task / "clf", task / "test.csv", report=tmp_path / "r.json", progress=False)
        assert matplotlib.get_backend() == "svg" and (tmp_path / "r.png").stat().st_size > 1000
    finally:
        matplotlib.use(before)


def test_predict_keeps_one_row_per_line_and_reads_standard_input_in_its_encoding(trained, tmp_path, capsys,
                                                                              monkeypatch):
    import io
    import sys

    task, _ = trained
    model = ["--model", str(task / "clf"), "--output-format", "jsonl"]
    (tmp_path / "cr.txt").write_bytes(b"superb\rfilm\nterrible\r\nawful\n")  # a lone \r stays inside its line
    assert main(["predict", str(tmp_path / "cr.txt"), *model]) == 0
    assert len(capsys.readouterr().out.strip().split("\n")) == 3
    for encoding in ("latin-1", "utf-16"):
        stdin = io.TextIOWrapper(io.BytesIO("caf\u00e9 superb\nterrible and boring\n".encode(encoding)),
                                 encoding="utf-8")
        monkeypatch.setattr(sys, "stdin", stdin)
        assert main(["predict", "-", *model, "--encoding", encoding]) == 0
        assert [json.loads(r)["label"] for r in capsys.readouterr().out.strip().split("\n")] == ["pos", "neg"]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"caf\xe9 superb\n"), encoding="utf-8"))
    assert main(["predict", "-", *model]) == 2
    assert "standard input: cannot decode byte 0xe9 at line 1" in capsys.readouterr().err


def test_review_old_float_labels_and_utf16_lines(trained, tmp_path, capsys):
    """A classifier saved with the labels "0.0"/"1.0" (before "1.0" was read as "1") loads with the
    labels the readers give now; a UTF-16 file keeps a lone \\r inside its line, as a UTF-8 one."""
    import shutil

    task, _ = trained
    shutil.copytree(task / "clf", tmp_path / "old")
    tensors, _ = ckpt.load_tensors(tmp_path / "old" / "model.safetensors")
    ckpt.save_tensors(tmp_path / "old" / "model.safetensors", tensors, {"format": "ulmfit", "step": "1"})
    c = json.loads((tmp_path / "old" / "config.json").read_text())
    c["labels"] = ["0.0", "1.0"]
    (tmp_path / "old" / "config.json").write_text(json.dumps(c))
    assert TextClassifier.load(tmp_path / "old").labels == ["0", "1"]
    (tmp_path / "u16.txt").write_bytes("superb\rfilm\nterrible\nawful\n".encode("utf-16"))
    assert main(["predict", str(tmp_path / "u16.txt"), "--model", str(task / "clf"), "--encoding", "utf-16"]) == 0
    assert len(capsys.readouterr().out.strip().split("\n")) == 1 + 3


def test_evaluate_from_python_takes_texts_with_their_labels(trained):
    task, _ = trained
    clf = TextClassifier.load(task / "clf")
    test = read_labeled(task / "test.csv")
    assert clf.evaluate(test.texts, labels=test.labels)["accuracy"] == clf.evaluate(test)["accuracy"]
    with pytest.raises(UlmfitError, match="evaluate takes labeled data: texts with labels="):
        clf.evaluate(test.texts)
    with pytest.raises(UlmfitError, match="3 texts but 2 labels"):
        clf.evaluate(["a", "b", "c"], labels=["pos", "neg"])


def test_a_tiny_label_set_is_told_the_steps_its_last_stage_really_runs(task, tmp_path, capsys):
    """35 training examples (40 less the validation split) at batch size 16 are 3 steps an epoch:
    150 steps would need 50 epochs, the cap is 12, and the message says 36 steps, not "at least 150"."""
    data = read_labeled(task / "train.csv", fmt="csv")
    small = LabeledTexts(data.texts[:40], data.labels[:40], "small")
    cfg = ClassifierTrainConfig(**{**FAST, "min_last_steps": 150, "bs": None})
    train_classifier(task / "lm", small, tmp_path / "clf", cfg=cfg, progress=True, n_workers=1)
    out = capsys.readouterr()
    said = out.out + out.err
    assert "35 training examples at batch size 16: the last stage runs 12 epochs (36 steps: at most 12 epochs, " \
           "short of the 150 wanted)" in said, said


def test_a_disk_that_fills_during_a_checkpoint_keeps_the_previous_checkpoint_whole(task, tmp_path, monkeypatch):
    """The weights and config were written, the training state was not: before, the run held new
    weights beside an old training state and could not resume ("files from different steps")."""
    import errno

    from ulmfit import checkpoint

    real, states = checkpoint.save_file, []

    def save_file(tensors, path, *a, **k):
        if ".train_state.safetensors." in str(path):
            states.append(path)
            if len(states) == 2:  # the second checkpoint: its weights are written, then the disk is full
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(tensors, path, *a, **k)

    with monkeypatch.context() as m:
        m.setattr(checkpoint, "save_file", save_file)
        with pytest.raises(UlmfitError, match="disk full while writing .*train_state.safetensors"):
            train_classifier(task / "lm", task / "train.csv", tmp_path / "c", cfg=ClassifierTrainConfig(**FAST),
                             progress=False, n_workers=1)
    out = tmp_path / "c"
    steps = {json.loads((out / "train_state.json").read_text())["step"],
             json.loads((out / "config.json").read_text())["step"],
             ckpt.load_tensors(out / "model.safetensors")[1]["step"],
             ckpt.load_tensors(out / "train_state.safetensors")[1]["step"]}
    assert len({str(s) for s in steps}) == 1  # one checkpoint, the first
    assert not list(out.glob(".*.tmp"))
    res = train_classifier(None, None, out, resume=True, progress=False)
    assert res["epochs"] == 5


def test_predict_works_in_blocks_and_replaces_its_out_file_whole_or_not_at_all(trained, tmp_path, monkeypatch,
                                                                               capsys):
    from ulmfit import cli

    task, _ = trained
    texts = ["a wonderful film", "terrible and boring", "", "superb", "awful"]
    (tmp_path / "in.txt").write_text("\n".join(texts))  # the last line without its newline
    assert cli._count_lines(tmp_path / "in.txt") == 5
    expected = TextClassifier.load(task / "clf").predict(texts)
    sizes, real = [], TextClassifier.predict_proba

    def predict_proba(self, block, *a, **k):
        sizes.append(len(block))
        if len(sizes) == 3 and k.get("fail"):
            raise KeyboardInterrupt
        return real(self, block, *a, **{x: v for x, v in k.items() if x != "fail"})

    monkeypatch.setattr(cli, "PREDICT_BLOCK", 2)
    monkeypatch.setattr(TextClassifier, "predict_proba", predict_proba)
    out = tmp_path / "pred.csv"
    assert main(["predict", str(tmp_path / "in.txt"), "--model", str(task / "clf"), "--out", str(out)]) == 0
    assert sizes == [2, 2, 1]
    rows = out.read_text().splitlines()
    assert rows[0] == "label,p_neg,p_pos" and [r.split(",")[0] for r in rows[1:]] == expected
    assert "1 of the lines are empty" in capsys.readouterr().err
    # Ctrl-C in the third block: the earlier file stays as it was, no temporary file is left
    before = out.read_text()
    sizes.clear()
    monkeypatch.setattr(TextClassifier, "predict_proba",
                        lambda self, block, *a, **k: predict_proba(self, block, *a, **{**k, "fail": True}))
    assert main(["predict", str(tmp_path / "in.txt"), "--model", str(task / "clf"), "--out", str(out)]) == 130
    assert out.read_text() == before and sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "pred.csv"]
    # SIGTERM (systemd, `timeout`) likewise: it used to leave the hidden temporary file behind
    import os
    import signal

    sizes.clear()
    monkeypatch.setattr(TextClassifier, "predict_proba", lambda self, block, *a, **k: (
        os.kill(os.getpid(), signal.SIGTERM) if len(sizes) == 2 else None, predict_proba(self, block, *a, **k))[1])
    assert main(["predict", str(tmp_path / "in.txt"), "--model", str(task / "clf"), "--out", str(out)]) == 130
    assert out.read_text() == before and sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "pred.csv"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored
    # the input as --out would replace the texts with their predictions
    assert main(["predict", str(tmp_path / "in.txt"), "--model", str(task / "clf"), "--out",
                 str(tmp_path / "in.txt")]) == 2
    assert "is the input file" in capsys.readouterr().err and (tmp_path / "in.txt").read_text() == "\n".join(texts)


def test_predict_writes_through_a_link_or_a_pipe_given_as_out(trained, tmp_path):
    import os
    import threading

    task, _ = trained
    (tmp_path / "in.txt").write_text("superb\nawful\n")
    (tmp_path / "target.csv").write_text("old")
    (tmp_path / "link.csv").symlink_to(tmp_path / "target.csv")
    assert main(["predict", str(tmp_path / "in.txt"), "--model", str(task / "clf"), "--out",
                 str(tmp_path / "link.csv"), "--quiet"]) == 0
    assert (tmp_path / "link.csv").is_symlink() and (tmp_path / "target.csv").read_text().count("\n") == 3
    os.mkfifo(tmp_path / "fifo")
    got = []
    reader = threading.Thread(target=lambda: got.append(open(tmp_path / "fifo").read()))
    reader.start()
    assert main(["predict", str(tmp_path / "in.txt"), "--model", str(task / "clf"), "--out",
                 str(tmp_path / "fifo"), "--quiet"]) == 0
    reader.join(timeout=60)
    assert got and got[0].count("\n") == 3 and not (tmp_path / "fifo").is_file()
    # a pipe as the input (<(...), a FIFO, /dev/stdin): with a progress bar, counting its lines used to
    # read it empty, and predict wrote the header alone and exited 0
    import shlex
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "ulmfit", "predict", "--model", str(task / "clf"), "--out", str(tmp_path / "p.csv")]
    r = subprocess.run(["bash", "-c", shlex.join(cmd) + " <(printf 'superb\\nawful\\nfine\\n')"], timeout=300,
                       capture_output=True, text=True)
    assert r.returncode == 0 and (tmp_path / "p.csv").read_text().count("\n") == 4, r.stderr[-2000:]


def test_evaluate_writes_its_report_before_printing_and_refuses_a_report_that_would_replace_a_file(
        trained, tmp_path, monkeypatch, capsys):
    import shlex
    import shutil
    import subprocess
    import sys

    task, _ = trained
    # a reader of the figures that quits (`| head -1`, here `| true`): the report used to be lost
    cmd = [sys.executable, "-m", "ulmfit", "evaluate", str(task / "test.csv"), "--model", str(task / "clf"),
           "--report", str(tmp_path / "r.json"), "--quiet"]
    subprocess.run(shlex.join(cmd) + " | true", shell=True, timeout=300, check=False)
    assert json.loads((tmp_path / "r.json").read_text())["n"] == 120 and (tmp_path / "r.png").exists()
    for report, says in ((tmp_path / "r.png", "give a name ending in .json"), (task / "test.csv", "evaluation data")):
        assert main(["evaluate", str(task / "test.csv"), "--model", str(task / "clf"), "--report", str(report),
                     "--quiet"]) == 2
        assert says in capsys.readouterr().err
    assert (task / "test.csv").read_text().startswith("text,label")
    # two members in folders of the same name: each has its own score, under its path
    for run in ("a", "b"):
        shutil.copytree(task / "clf", tmp_path / run / "clf", ignore=shutil.ignore_patterns(".ulmfit-run.lock"))
    rep = TextClassifier.load([tmp_path / "a" / "clf", tmp_path / "b" / "clf"]).evaluate(
        load_labeled(task / "test.csv"))
    assert sorted(rep["members"]) == sorted(str(tmp_path / r / "clf") for r in "ab")


def test_evaluate_report_to_standard_output_or_through_a_link(trained, tmp_path, capsys):
    """`--report -` puts the JSON alone on standard output (the summary on standard error); a report
    path that is a link (as /dev/stdout is) is written through, never replaced by a plain file."""
    task, _ = trained
    args = ["evaluate", str(task / "test.csv"), "--model", str(task / "clf"), "--quiet"]
    assert main([*args, "--report", "-"]) == 0
    got = capsys.readouterr()
    rep = json.loads(got.out)
    assert rep["n"] == 120 and 0 <= rep["accuracy"] <= 1
    assert f"accuracy {rep['accuracy']:.4f}" in got.err
    assert not (Path.cwd() / "-").exists() and not (Path.cwd() / "-.png").exists()
    target = tmp_path / "elsewhere.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    assert main([*args, "--report", str(link)]) == 0
    assert link.is_symlink() and json.loads(target.read_text())["n"] == 120
    got = capsys.readouterr()  # the link may be standard output itself: the summary goes to standard error
    assert got.out == "" and "accuracy" in got.err
    assert not (tmp_path / "link.png").exists()  # no figure beside a link, a pipe or a device


def test_macro_f1_counts_a_class_that_is_predicted_but_absent_from_the_data():
    from ulmfit.train.metrics import classification_report

    rep = classification_report([0, 0, 1, 1], [0, 2, 1, 2], ["a", "b", "c"])
    assert rep["macro_f1"] == pytest.approx(4 / 9)  # a: 2/3, b: 2/3, c: 0 (as scikit-learn counts it)


def test_export_keeps_what_predict_needs_of_a_classifier_and_drops_the_training_state(trained, tmp_path, capsys):
    task, _ = trained
    out = tmp_path / "deploy"
    assert main(["export", str(task / "clf"), "--out", str(out)]) == 0
    assert "float16 weights, no training state" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "metrics.jsonl", "model.safetensors", "vocab.txt"]
    before = sum(p.stat().st_size for p in (task / "clf").iterdir() if p.suffix == ".safetensors")
    assert sum(p.stat().st_size for p in out.iterdir() if p.suffix == ".safetensors") < before / 6
    texts = ["a great film", "awful and dull", "superb acting"]
    a, b = TextClassifier.load(task / "clf"), TextClassifier.load(out)
    assert b.labels == a.labels
    np.testing.assert_allclose(b.predict_proba(texts), a.predict_proba(texts), atol=2e-3)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["kind"] == "classifier" and cfg["weights_dtype"] == "float16"
    assert cfg["exported_from"] == str((task / "clf").resolve()) and cfg["source"]["n_train"] > 0
    rep = evaluate(out, task / "test.csv", report=tmp_path / "r.json", progress=False)
    assert abs(rep["accuracy"] - evaluate(task / "clf", task / "test.csv", report=tmp_path / "r0.json",
                                          progress=False)["accuracy"]) <= 1 / 120


def test_export_of_an_ensemble_folder_exports_each_member_under_its_name(trained, tmp_path, capsys):
    import shutil

    task, _ = trained
    for d in ("fwd", "bwd"):
        shutil.copytree(task / "clf", tmp_path / "ens" / d)
    out = tmp_path / "deploy"
    assert main(["export", str(tmp_path / "ens"), "--out", str(out), "--dtype", "float32"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["bwd", "fwd"]
    assert not list(out.glob("*/train_state.*"))
    texts = ["a great film", "awful and dull"]
    np.testing.assert_allclose(TextClassifier.load(out).predict_proba(texts),
                               TextClassifier.load(tmp_path / "ens").predict_proba(texts), atol=1e-6)
    # a member of another ensemble left in --out would join this one: refused, even with --overwrite
    shutil.copytree(out / "fwd", out / "old")
    assert main(["export", str(tmp_path / "ens"), "--out", str(out), "--overwrite"]) == 2
    assert "holds the classifier old/, which is not a member" in capsys.readouterr().err
    shutil.rmtree(out / "old")
    # one classifier over an ensemble would hide its members and leave them beside it: refused
    assert main(["export", str(task / "clf"), "--out", str(out), "--overwrite"]) == 2
    assert "holds the models of an ensemble" in capsys.readouterr().err
    # an ensemble over one classifier: the classifier's files go, or loaders would read it alone
    single = tmp_path / "single"
    assert main(["export", str(task / "clf"), "--out", str(single)]) == 0
    assert main(["export", str(tmp_path / "ens"), "--out", str(single), "--overwrite"]) == 0
    assert not (single / "config.json").exists() and len(TextClassifier.load(single).members) == 2


def test_a_classifier_folder_a_live_run_trains_into_is_refused(trained, held, tmp_path):
    import shutil

    from ulmfit.io import OUT_LOCK
    from ulmfit.pretrained import export_model

    task, _ = trained
    before = {p.name: p.read_bytes() for p in (task / "clf").iterdir() if p.name != OUT_LOCK}
    holder = held(task / "clf")
    for resume in (False, True):
        with pytest.raises(UlmfitError, match=f"is in use: process {holder.pid}"):
            train_classifier(task / "lm", task / "train.csv", task / "clf", cfg=ClassifierTrainConfig(**FAST),
                             progress=False, n_workers=1, overwrite=True, resume=resume)
    assert {p.name: p.read_bytes() for p in (task / "clf").iterdir() if p.name != OUT_LOCK} == before
    # an ensemble exported over a folder whose member a run trains into: refused before anything is written
    for member in ("fwd", "bwd"):
        shutil.copytree(task / "clf", tmp_path / "ens" / member, ignore=shutil.ignore_patterns(OUT_LOCK))
        shutil.copytree(task / "clf", tmp_path / "dst" / member, ignore=shutil.ignore_patterns(OUT_LOCK))
    dst_before = {p.name: p.read_bytes() for p in (tmp_path / "dst" / "bwd").iterdir()}
    holder = held(tmp_path / "dst" / "fwd")
    with pytest.raises(UlmfitError, match=f"dst/fwd is in use: process {holder.pid}"):
        export_model(tmp_path / "ens", tmp_path / "dst", overwrite=True)
    assert {p.name: p.read_bytes() for p in (tmp_path / "dst" / "bwd").iterdir()} == dst_before


def test_export_of_an_interrupted_classifier_run_warns_that_it_is_unfinished(task, tmp_path, monkeypatch, capsys):
    _interrupted_run(task, tmp_path / "c", monkeypatch, 20)
    capsys.readouterr()
    assert main(["export", str(tmp_path / "c"), "--out", str(tmp_path / "x")]) == 0
    assert "has not finished (interrupted in stage 2 of 2)" in capsys.readouterr().err
    assert TextClassifier.load(tmp_path / "x").predict(["a great film"])


@pytest.mark.parametrize("where", ["optimizer step", "epoch end"])
def test_a_signal_inside_an_update_or_an_epochs_bookkeeping_stops_after_it_and_resumes_as_never_stopped(
        trained, tmp_path, monkeypatch, where):
    """A real Ctrl-C / SIGTERM at the worst moments: while AdamW changes the weights (the saved step
    count used to lag the weights and moments by one, and the resumed run applied the batch twice),
    and while an epoch's record and best weights are written (the record was lost, or the config
    named an epoch whose weights it did not hold)."""
    import os
    import signal

    from safetensors.torch import load_file

    from ulmfit.train.classify import ClassifierTrainer

    task, _ = trained
    cut = tmp_path / "cut"
    with monkeypatch.context() as m:
        if where == "optimizer step":
            real, n = torch.optim.AdamW.step, {"n": 0}

            def step(self, *a, **k):
                out = real(self, *a, **k)
                n["n"] += 1
                if n["n"] == 30:
                    os.kill(os.getpid(), signal.SIGINT)
                return out

            m.setattr(torch.optim.AdamW, "step", step)
        else:
            real_log = ClassifierTrainer.log

            def log(self, rec):
                if rec.get("epoch") == 3 and "valid_loss" in rec:
                    os.kill(os.getpid(), signal.SIGTERM)
                return real_log(self, rec)

            m.setattr(ClassifierTrainer, "log", log)
        with pytest.raises(TrainingInterrupted):
            train_classifier(task / "lm", task / "train.csv", cut, cfg=ClassifierTrainConfig(**FAST),
                             progress=False, n_workers=1)
    state = json.loads((cut / "train_state.json").read_text())
    if where == "optimizer step":
        assert state["step"] == 30  # the update it was in is counted, not redone
    else:
        assert state["epoch"] == 3 and [h["epoch"] for h in state["history"]] == [1, 2, 3]
    train_classifier(None, None, cut, resume=True, progress=False)
    a, b = load_file(str(task / "clf" / "model.safetensors")), load_file(str(cut / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    epochs = [json.loads(l).get("epoch") for l in (cut / "metrics.jsonl").read_text().splitlines()
              if "valid_loss" in json.loads(l)]
    assert epochs == [1, 2, 3, 4, 5]


def test_a_classifier_resumed_from_python_says_which_given_settings_it_ignores(task, tmp_path, monkeypatch, capsys):
    from ulmfit.train.classify import ClassifierTrainer

    _interrupted_run(task, tmp_path / "c", monkeypatch, 5)
    capsys.readouterr()
    with monkeypatch.context() as m:
        m.setattr(ClassifierTrainer, "_loss", _ctrl_c_at_step(3))
        with pytest.raises(TrainingInterrupted):
            train_classifier(tmp_path / "another-lm", task / "train.csv", tmp_path / "c", cfg={"bs": 4},
                             resume=True, n_workers=1, valid_frac=0.3, max_train=50)
    out = capsys.readouterr().out
    assert "ignored: bs=4 (the run's: 16)" in out and "ignored: lm=" in out
    assert "ignored: valid_frac=0.3 (the run's: 0.1), max_train=50 (the run's: None)" in out
    # the same call as the first (its config is sized for the data, as the run's was): nothing to say
    train_classifier(task / "lm", task / "train.csv", tmp_path / "c", cfg=ClassifierTrainConfig(**FAST),
                     resume=True, n_workers=1)
    assert "ignored" not in capsys.readouterr().out


def test_the_same_call_with_resume_names_nothing_ignored_when_its_config_was_sized_for_the_data(
        task, tmp_path, monkeypatch, capsys):
    from ulmfit.train.classify import ClassifierTrainer

    c = ClassifierTrainConfig(**{**FAST, "bs": None, "min_last_steps": 120})  # sized: bs 16, a longer last stage
    _interrupted_run(task, tmp_path / "c", monkeypatch, 5, cfg=c)
    saved = json.loads((tmp_path / "c" / "config.json").read_text())["train"]
    assert saved["bs"] == 16 and saved["stage_epochs"] != list(c.stage_epochs)
    capsys.readouterr()
    with monkeypatch.context() as m:
        m.setattr(ClassifierTrainer, "_loss", _ctrl_c_at_step(2))
        with pytest.raises(TrainingInterrupted):
            train_classifier(task / "lm", task / "train.csv", tmp_path / "c", cfg=c, resume=True, n_workers=1)
    assert "ignored" not in capsys.readouterr().out


def test_a_report_to_standard_output_redirected_to_a_file_is_appended_not_cut(trained, tmp_path):
    """`ulmfit evaluate ... --report /dev/stdout >> all.json` twice: both reports stay (reopening the
    file that standard output goes to with "w" had cut it to the last one)."""
    import subprocess
    import sys

    task, _ = trained
    out = tmp_path / "all.json"
    out.write_text("previous\n")
    cmd = [sys.executable, "-m", "ulmfit", "evaluate", str(task / "test.csv"), "--model", str(task / "clf"),
           "--report", "/dev/stdout", "--quiet"]
    if not os.path.exists("/dev/stdout"):
        pytest.skip("no /dev/stdout here")
    for _ in range(2):
        with open(out, "a") as f:
            assert subprocess.run(cmd, stdout=f, stderr=subprocess.PIPE, timeout=300).returncode == 0
    text = out.read_text()
    assert text.startswith("previous\n") and text.count('"n": 120') == 2


def test_a_kept_epoch_that_collapsed_or_fell_far_below_an_earlier_one_is_warned_about():
    from ulmfit.classifier_api import training_warnings

    def ep(e, f1, predicted=("neg", "pos"), loss=0.6):
        return {"epoch": e, "valid_macro_f1": f1, "valid_loss": loss, "valid_predicted": list(predicted),
                "valid_classes": 2}

    assert training_warnings([ep(1, 0.6), ep(2, 0.8)], 2) == []
    (w,) = training_warnings([ep(1, 0.45, ["pos"]), ep(2, 0.49, ["pos"])], 2)
    assert "predicts 'pos' for every validation text" in w
    # a small validation split: the score moves by chance, the loss alone says nothing diverged
    assert training_warnings([ep(1, 0.7), ep(2, 0.8, loss=0.5), ep(3, 0.6, loss=0.7)], 3) == []
    diverged = [ep(1, 0.7, loss=0.9), ep(2, 0.8, loss=0.687), ep(3, 0.49, loss=13.8)]  # select=last after it diverged
    (w,) = training_warnings(diverged, 3)
    assert "epoch kept (3) has a validation loss of 13.8 (macro-F1 0.490), far above epoch 2's 0.687" in w
    assert "--select best" in w
    assert training_warnings(diverged, 2) == []  # the best kept: fine
    assert training_warnings([{"epoch": 1, "valid_macro_f1": None}], 1) == []  # no validation data


def test_a_classifier_that_learns_one_class_only_says_so(task, tmp_path):
    import warnings

    rows = ["text,label"] + [f"a film {i},common" for i in range(60)] + ["a film odd,rare"] * 2
    (tmp_path / "skew.csv").write_text("\n".join(rows) + "\n")
    cfg = ClassifierTrainConfig(**{**FAST, "stage_epochs": (1, 1), "class_weights": "off"})
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        train_classifier(task / "lm", tmp_path / "skew.csv", tmp_path / "c", cfg=cfg, progress=False, n_workers=1,
                         valid_frac=0.5)
    said = [w for w in seen if "for every validation text" in str(w.message)]
    assert len(said) == 1 and re.search(r"predicts '(common|rare)' for every validation text", str(said[0].message)), \
        [str(w.message) for w in seen]
    from ulmfit.io import UlmfitWarning

    assert said[0].category is UlmfitWarning and said[0].filename == __file__  # shown at the caller's line


def test_a_warning_beside_the_progress_bars_is_silenced_by_the_users_filter(task, tmp_path, capsys):
    import warnings

    from ulmfit.io import UlmfitWarning

    rows = ["text,label"] + [f"a film {i},common" for i in range(60)] + ["a film odd,rare"] * 2
    (tmp_path / "skew.csv").write_text("\n".join(rows) + "\n")
    cfg = ClassifierTrainConfig(**{**FAST, "stage_epochs": (1, 1), "class_weights": "off"})
    run = dict(cfg=cfg, progress=True, n_workers=1, valid_frac=0.5)
    train_classifier(task / "lm", tmp_path / "skew.csv", tmp_path / "c", **run)
    assert "for every validation text" in capsys.readouterr().err  # printed as a line by default
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UlmfitWarning)
        train_classifier(task / "lm", tmp_path / "skew.csv", tmp_path / "c2", **run)
    assert "for every validation text" not in capsys.readouterr().err


def test_an_evaluation_report_and_its_plot_replace_the_previous_pair_together(trained, tmp_path, monkeypatch):
    import ulmfit.classifier_api as capi

    task, _ = trained
    rep = evaluate(task / "clf", task / "test.csv", progress=False)
    capi.write_report(rep, tmp_path / "r.json")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def plot_fails(*a, **k):  # as a kill or a full disk between the two writes
        raise OSError("the plot could not be written")

    monkeypatch.setattr(capi, "plot_confusion", plot_fails)
    with pytest.raises(OSError):
        capi.write_report({**rep, "n": 1}, tmp_path / "r.json")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no new JSON beside the old plot


def test_a_classifier_shows_its_members_and_labels(trained):
    task, _ = trained
    assert repr(TextClassifier.load(task / "clf")) == \
        f"TextClassifier({str(task / 'clf')!r} (forward): 2 labels ['neg', 'pos'], on cpu)"


def test_an_unfinished_classifier_loads_with_a_warning_and_the_cli_says_it_in_a_line(trained, tmp_path):
    import shutil
    import subprocess
    import sys

    task, _ = trained
    shutil.copytree(task / "clf", tmp_path / "clf", ignore=shutil.ignore_patterns(".ulmfit-run.lock"))
    state = json.loads((tmp_path / "clf" / "train_state.json").read_text())
    (tmp_path / "clf" / "train_state.json").write_text(json.dumps({**state, "stage": 0}))  # as a run stopped early
    with pytest.warns(UserWarning, match=r"is a classifier run that has not finished \(interrupted in stage 1 of 2\)"
                                         r".*train-classifier --resume"):
        TextClassifier.load(tmp_path / "clf")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TextClassifier.load(task / "clf")  # a finished one: nothing to say
    (tmp_path / "in.txt").write_text("a wonderful film\n")
    r = subprocess.run([sys.executable, "-m", "ulmfit", "predict", str(tmp_path / "in.txt"), "--model",
                        str(tmp_path / "clf"), "--quiet"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stderr.startswith(f"warning: {tmp_path / 'clf'} is a classifier run that has not "
                                                     "finished"), r.stderr


def test_as_many_labels_as_texts_is_warned_about_before_training(task, tmp_path):
    rows = ["text,label"] + [f"a film about thing {i},{i}" for i in range(60)] + ["another film,1"] * 2
    (tmp_path / "ids.csv").write_text("\n".join(rows) + "\n")  # an id column read as the label
    with pytest.warns(UserWarning, match=r"60 labels for \d+ training texts: most labels name a text or two.*"
                                         r"--label-col"):
        train_classifier(task / "lm", tmp_path / "ids.csv", tmp_path / "c", cfg=ClassifierTrainConfig(**FAST),
                         progress=False, n_workers=1)


def test_patience_0_means_no_early_stopping_as_for_the_language_model(task, tmp_path):
    """It stopped after the first epoch of the last stage (2 of 5 epochs), also under select=last."""
    cfg = ClassifierTrainConfig(**{**FAST, "stage_epochs": (1, 3), "patience": 0})
    res = train_classifier(task / "lm", task / "train.csv", tmp_path / "c", cfg=cfg, progress=False, n_workers=1)
    assert res["epochs"] == 4


def test_a_classifier_that_keeps_an_earlier_epoch_says_which(task, tmp_path, monkeypatch, capsys):
    from ulmfit.train.classify import ClassifierTrainer

    scores = iter([0.5, 0.8, 0.6, 0.6, 0.6])
    monkeypatch.setattr(ClassifierTrainer, "evaluate",
                        lambda self, data: {"loss": 0.5, "accuracy": 0.7, "macro_f1": next(scores)})
    cfg = ClassifierTrainConfig(**{**FAST, "stage_epochs": (1, 4), "patience": 2, "select": "best"})
    res = train_classifier(task / "lm", task / "train.csv", tmp_path / "c", cfg=cfg, progress=True, n_workers=1)
    assert res["best_epoch"] == 2 and res["epochs"] == 4
    assert "keeping epoch 2, the best validation macro-f1 (early stopping ended the run)" in capsys.readouterr().out


def test_an_ensemble_whose_member_is_being_replaced_is_refused_not_shrunk(trained, tmp_path):
    import shutil

    from ulmfit.api import clear_replaced_run

    task, _ = trained
    for member in ("fwd", "fwd2"):
        shutil.copytree(task / "clf", tmp_path / "ens" / member, ignore=shutil.ignore_patterns(".ulmfit-run.lock"))
    clear_replaced_run(tmp_path / "ens" / "fwd")  # a run with --overwrite into it, before its first save
    with pytest.raises(UlmfitError, match=r"ens/fwd holds no model now: a run with --overwrite is replacing it"):
        TextClassifier.load(tmp_path / "ens")  # it loaded fwd2 alone, or the set-aside folder as a member
    with pytest.raises(UlmfitError, match="holds no model now"):
        TextClassifier.load(tmp_path / "ens" / "fwd")


# ---------------------------------------------------------------------------------------------
# A model folder from elsewhere: links planted in it never reach outside it


def test_links_planted_in_a_model_folder_never_write_read_or_move_files_outside_it(trained, tmp_path, capsys):
    import shutil

    from ulmfit.api import settle_replaced
    from ulmfit.io import claim_out, release_out

    task, _ = trained
    victim = tmp_path / "victim.txt"
    victim.write_text("a user's file\n")
    clf = tmp_path / "clf"
    shutil.copytree(task / "clf", clf)
    # evaluate's default report beside the model: it wrote through the link (to ~/.bashrc, say)
    (clf / "eval_report.json").unlink(missing_ok=True)
    (clf / "eval_report.json").symlink_to(victim)
    assert main(["evaluate", str(task / "test.csv"), "--model", str(clf), "--quiet"]) == 0
    assert victim.read_text() == "a user's file\n" and not (clf / "eval_report.json").is_symlink()
    # the run lock of a training command: opened through the link, its target was cut to "PID host"
    (clf / ".ulmfit-run.lock").unlink(missing_ok=True)  # a training run's own, copied with the folder
    (clf / ".ulmfit-run.lock").symlink_to(victim)
    assert claim_out(clf)
    release_out(clf)
    assert victim.read_text() == "a user's file\n"
    # a ".ulmfit-replaced" link: another folder's files were moved into the model's
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text("{}")
    (clf / ".ulmfit-replaced").symlink_to(other)
    with pytest.raises(UlmfitError, match="is a link, not the folder"):
        settle_replaced(clf)
    assert (other / "config.json").read_text() == "{}"
    (clf / ".ulmfit-replaced").unlink()
    # export copied a word model's "spm.model" and a linked metrics.jsonl: the targets' contents, shared
    lm = tmp_path / "lm"
    shutil.copytree(task / "lm", lm)
    (lm / "metrics.jsonl").unlink()
    (lm / "metrics.jsonl").symlink_to(victim)
    (lm / "spm.model").symlink_to(victim)
    assert main(["export", str(lm), "--out", str(tmp_path / "shared")]) == 0
    shared = {p.name for p in (tmp_path / "shared").iterdir()}
    assert {"config.json", "model.safetensors", "vocab.txt"} <= shared and not shared & {"spm.model", "metrics.jsonl"}


def test_a_service_can_share_models_across_threads_and_predicting_leaves_the_process_as_it_was(trained, tmp_path):
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    task, _ = trained
    lm = LanguageModel.load(task / "lm")
    alone = [lm.generate("the film", n_tokens=12, seed=s) for s in range(8)]
    losses = [lm.evaluate([f"the film was a story {i} about people"])["loss"] for i in range(8)]
    with ThreadPoolExecutor(4) as pool:  # the carried hidden state was shared: other samples, other losses
        together = list(pool.map(lambda s: lm.generate("the film", n_tokens=12, seed=s), range(8)))
        losses_together = list(pool.map(lambda i: lm.evaluate([f"the film was a story {i} about people"])["loss"],
                                        range(8)))
    assert together == alone and losses_together == pytest.approx(losses, rel=1e-6)
    # predicting without a bar fixes no multiprocessing start method (a host's set_start_method failed after)
    code = ("import multiprocessing as mp, sys; from ulmfit import TextClassifier; "
            f"TextClassifier.load({str(task / 'clf')!r}).predict_proba(['a great film']); "
            "print(mp.get_start_method(allow_none=True))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "ULMFIT_CACHE": str(tmp_path / "cache")})
    assert r.returncode == 0 and r.stdout.strip() == "None", r.stderr[-2000:]


def test_tokenising_in_a_daemon_process_starts_no_workers(monkeypatch):
    import multiprocessing

    from ulmfit.text import tokenize

    class Daemon:
        daemon = True

    monkeypatch.setattr(multiprocessing, "current_process", lambda: Daemon())
    monkeypatch.setattr(multiprocessing, "get_context", lambda *a: (_ for _ in ()).throw(AssertionError(
        "daemonic processes are not allowed to have children")))
    texts = [f"text number {i}" for i in range(50)]
    got = list(tokenize.tokenize_parallel(texts, tokenize.TokenizerConfig(), n_workers=2, chunk_docs=10,
                                          progress=False))
    assert len(got) == 50 and got[3][:2] == ["xxbos", "text"]


def test_scripting_corners_of_predict_and_evaluate(task, trained, tmp_path, monkeypatch, capsys):
    """Found by a scripting audit: `--out -` is standard output (it made a file named "-"); UTF-16
    without a byte-order mark is an error line (a traceback and exit 1); a pipe whose format must be
    guessed is refused by name (the guess read its start, then the rows began mid-row)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.txt").write_text("a good film\na bad film\n", encoding="utf-8")
    assert main(["predict", "in.txt", "--model", str(task / "clf"), "--out", "-", "--quiet"]) == 0
    assert capsys.readouterr().out.count("\n") == 3 and not (tmp_path / "-").exists()
    (tmp_path / "le.csv").write_bytes("text,label\na good film,pos\n".encode("utf-16-le"))
    assert main(["evaluate", "le.csv", "--model", str(task / "clf"), "--encoding", "utf-16", "--quiet"]) == 2
    assert "text without a byte-order mark needs its byte order named: --encoding utf-16-le or -be" in \
        capsys.readouterr().err
    os.mkfifo(tmp_path / "fifo")  # never opened: refused before anything reads it
    assert main(["evaluate", "fifo", "--model", str(task / "clf"), "--quiet"]) == 2
    assert "is a pipe or a device, not a file: its format is guessed" in capsys.readouterr().err
    assert main(["lm-eval", "fifo", "--model", str(task / "lm"), "--quiet"]) == 2
    assert "is a pipe or a device, not a file: a language model's text is read more than once" in \
        capsys.readouterr().err


def test_an_output_path_that_cannot_be_made_is_named_as_given(task, trained, tmp_path, capsys):
    """Not a temporary name beside it (/proc/.x.csv.u33p3rmi.tmp) nor a bare "File exists"."""
    from ulmfit.io import atomic_path

    (tmp_path / "data.csv").write_text("x")
    assert main(["predict", str(tmp_path / "data.csv"), "--model", str(task / "clf"), "--out",
                 str(tmp_path / "data.csv" / "x.csv"), "--quiet"]) == 2
    assert f"{tmp_path / 'data.csv'} is a file, not a folder" in capsys.readouterr().err
    with pytest.raises(OSError) as e:
        with atomic_path(tmp_path / "data.csv" / "sub" / "y.json"):
            pass
    assert e.value.filename == str(tmp_path / "data.csv" / "sub" / "y.json")
    assert f"{tmp_path / 'data.csv'} is a file, not a folder" in str(e.value)  # the file in the way, not sub
    if os.path.isdir("/proc/self"):
        with pytest.raises(OSError) as e:
            with atomic_path("/proc/x.csv"):
                pass
        assert e.value.filename == "/proc/x.csv" and ".tmp" not in str(e.value)


def test_predict_answers_each_line_from_a_pipe_as_it_arrives(task, trained):
    """A program that writes a line to `ulmfit predict` and waits for its row (a coprocess) got it
    only after 8,192 lines or the end of the input: it waited for ever."""
    import select
    import subprocess
    import sys

    if os.name != "posix":
        pytest.skip("select() on pipes is POSIX")
    proc = subprocess.Popen([sys.executable, "-m", "ulmfit", "predict", "--model", str(task / "clf"), "--quiet"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "ULMFIT_JEMALLOC": "0"})

    def row(timeout=120.0):
        assert select.select([proc.stdout], [], [], timeout)[0], "no row came while the input stayed open"
        return proc.stdout.readline().decode()

    try:
        proc.stdin.write(b"a good film\n")
        proc.stdin.flush()
        assert row().startswith("label,")
        first = row()  # its row, with the input still open
        proc.stdin.write(b"a bad film\n")
        proc.stdin.flush()
        second = row()
        proc.stdin.close()
        assert proc.stdout.read() == b"" and proc.wait(timeout=60) == 0
    finally:
        proc.kill()
    labels = TextClassifier.load(task / "clf").labels
    assert first.split(",")[0] in labels and second.split(",")[0] in labels
    assert first.count(",") == second.count(",") == len(labels)


def test_prediction_and_language_model_calls_refuse_bad_numbers_by_name(trained, tmp_path, capsys):
    import math

    from ulmfit import LanguageModel
    from ulmfit.api import lm_eval
    from ulmfit.cli import main

    task, _ = trained
    clf = TextClassifier.load(task / "clf")
    for bad in (-1, 1.5, math.nan, math.inf, "", None):
        with pytest.raises(UlmfitError, match="threshold must be a probability"):
            clf.predict(["a film"], threshold=bad)
    with pytest.raises(UlmfitError, match="threshold applies to multi-label classifiers"):
        clf.predict(["a film"], threshold=0.3)  # a single-label classifier: as evaluate says
    (tmp_path / "in.txt").write_text("a film\n")
    assert main(["predict", str(tmp_path / "in.txt"), "--model", str(task / "clf"), "--threshold", "0.3",
                 "--quiet"]) == 2
    assert "threshold applies to multi-label classifiers" in capsys.readouterr().err

    lm = LanguageModel.load(task / "lm")
    for name, bad in (("bs", 0), ("bs", 1.5), ("bs", "3"), ("bs", None), ("bptt", -1), ("bptt", math.nan),
                      ("bptt", 1e30)):
        with pytest.raises(UlmfitError, match=name):
            lm.evaluate(["a film about a thing"], **{name: bad})
    with pytest.raises(UlmfitError, match="bs"):  # before the file is read: it does not exist
        lm_eval(task / "lm", tmp_path / "no-such-file.txt", bs=0, progress=False)
    for call, said in ((dict(seed=2**64), "seed must be a whole number from 0"), (dict(seed=-1), "seed"),
                       (dict(temperature=2**64 * 1e300), "temperature"), (dict(temperature=10**400), "temperature"),
                       (dict(top_k=True), "top_k"), (dict(n_tokens=True), "n_tokens")):
        with pytest.raises(UlmfitError, match=said):
            lm.generate("a film", **call)
    assert lm.generate("a film", n_tokens=3, temperature=2**64, seed=1)  # a huge temperature: uniform, no overflow


def test_a_model_records_its_tokeniser_rules_and_one_of_earlier_rules_says_so_on_load(trained, tmp_path):
    """A model trained on tokens of earlier tokeniser rules tokenises new text with this version's:
    said on load (UlmfitWarning), as the upgrade audit asked; a model without the record is not judged."""
    import shutil
    import warnings

    from ulmfit.io import UlmfitWarning
    from ulmfit.text.tokenize import RULES_VERSION

    task, _ = trained
    for name, kind in (("clf", "classifier"), ("lm", "language_model")):
        assert json.loads((task / name / "config.json").read_text())["tokenizer_rules"] == RULES_VERSION, kind
    load = {"clf": TextClassifier.load, "lm": LanguageModel.load}
    for name in ("clf", "lm"):
        copy = tmp_path / name
        shutil.copytree(task / name, copy, ignore=shutil.ignore_patterns(".ulmfit-run.lock"))
        for rules, said in ((RULES_VERSION - 1, True), (RULES_VERSION, False), (None, False)):
            cfg = json.loads((copy / "config.json").read_text())
            if rules is None:
                cfg.pop("tokenizer_rules")
            else:
                cfg["tokenizer_rules"] = rules
            (copy / "config.json").write_text(json.dumps(cfg))
            with warnings.catch_warnings(record=True) as got:
                warnings.simplefilter("always")
                load[name](copy)
            notes = [str(w.message) for w in got if issubclass(w.category, UlmfitWarning)
                     and "tokeniser rules of an earlier ulmfit" in str(w.message)]
            assert bool(notes) == said, (name, rules, notes)
    # an export of a model saved before the record keeps "unknown", not this version's rules
    from ulmfit.pretrained import export_model

    export_model(tmp_path / "lm", tmp_path / "exported")  # its record was removed last, above
    assert json.loads((tmp_path / "exported" / "config.json").read_text())["tokenizer_rules"] is None
